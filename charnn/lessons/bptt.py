"""Lesson 8, backprop-through-time: the char-RNN itself, one training step.

A vanilla RNN (charnn's RecurrentModel: one-hot input, one tanh layer, the linear head and the
softmax cross-entropy) reads "hello" and predicts "ello!". The lesson unrolls the step by hand
with the same functions the model is made of (charnn.nn.rnn.rnn_step_forward / _backward,
charnn.nn.layers), prints the hidden state going forward and the gradient dL/dh_t coming back
through time, shows the unrolled gradients equal the model's own backward (rnn_backward over the
sequence), and prints every gradient entry beside its centred-difference estimate. That check,
on a random small model, is what `charnn gradcheck` runs (charnn.gradcheck.model_gradient_errors).

Shapes: T = 5 steps, V = 5 characters, H hidden units, one stream (B = 1).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..config import ModelConfig
from ..data.text import Vocab
from ..gradcheck import model_gradient_errors
from ..model import CharModel
from ..nn.gradcheck import numerical_gradient, rel_error
from ..nn.layers import (linear_backward, linear_forward, one_hot, softmax_cross_entropy_backward,
                         softmax_cross_entropy_forward)
from ..nn.rnn import rnn_step_backward, rnn_step_forward
from .draw import table, vector

NAME = "backprop-through-time"
SUMMARY = "a vanilla RNN unrolled over \"hello\", gradients beside finite differences"

TEXT = "hello!"  # input "hello", targets "ello!"
HIDDEN = 3  # H
SEED = 0
H = 1e-5  # step of the centred differences
TOLERANCE = 1e-6  # `charnn gradcheck`'s default threshold


class BPTTResult(NamedTuple):
    chars: list  # the vocabulary
    inputs: str
    targets: str
    h: np.ndarray  # (T, H) hidden state after each step
    p_target: np.ndarray  # (T,) the probability the model gave each target
    loss: float  # mean -log p_target
    dh_head: np.ndarray  # (T, H) dL/dh_t arriving from step t's own prediction
    dh_later: np.ndarray  # (T, H) dL/dh_t arriving through h_{t+1} from the later steps
    grads: dict  # key -> the unrolled gradient (keys as the model's parameters)
    model_grads_error: float  # max |unrolled - model.backward| over every entry
    numerical: dict  # key -> centred differences of the loss
    errors: dict  # key -> rel_error(grads[key], numerical[key])
    gradcheck: dict  # key -> model_gradient_errors of the same model (random h0, as `charnn gradcheck`)
    float32: float  # max relative error of the same centred differences taken in float32
    tolerance: float


def run(seed: int = SEED) -> BPTTResult:
    vocab = Vocab.from_text(TEXT)
    ids = vocab.encode(TEXT)[None, :]  # (1, T + 1)
    x_ids, y_ids = ids[:, :-1], ids[:, 1:]  # (1, T) each
    V, T = len(vocab), x_ids.shape[1]
    config = ModelConfig("rnn", V, HIDDEN, 1, 0, "tanh")  # one-hot input, one tanh layer
    model = CharModel.create(config, vocab, seed=seed, dtype=np.float64, backend="numpy")
    p = model.params
    Wx, Wh, b = p["layer0.Wx"], p["layer0.Wh"], p["layer0.b"]

    # forward, one step at a time (the model's sequence function runs the same rnn_cell)
    x = one_hot(x_ids, V, np.float64)  # (1, T, V)
    h_t = np.zeros((1, HIDDEN))
    hs, caches = np.empty((T, HIDDEN)), []
    for t in range(T):
        h_t, cache = rnn_step_forward(x[:, t], h_t, Wx, Wh, b)  # (1, H)
        hs[t] = h_t[0]
        caches.append(cache)
    logits, head_cache = linear_forward(hs, p["head.W"], p["head.b"])  # (T, V)
    loss, ce_cache = softmax_cross_entropy_forward(logits, y_ids[0])
    p_target = ce_cache.probs[np.arange(T), y_ids[0]]

    # backward, from the last step to the first
    grads = {}
    dlogits = softmax_cross_entropy_backward(1.0, ce_cache)  # (T, V)
    dhs, grads["head.W"], grads["head.b"] = linear_backward(dlogits, head_cache)  # (T, H)
    dh_later = np.zeros((T, HIDDEN))  # the gradient reaching h_t through h_{t+1}
    grads.update({"layer0.Wx": np.zeros_like(Wx), "layer0.Wh": np.zeros_like(Wh), "layer0.b": np.zeros_like(b)})
    dh_next = np.zeros((1, HIDDEN))
    for t in reversed(range(T)):
        dh_later[t] = dh_next[0]
        _, dh_next, dWx, dWh, db = rnn_step_backward(dhs[t][None] + dh_next, caches[t])  # both paths into h_t
        grads["layer0.Wx"] += dWx  # the weights are shared by every step: their gradients add up
        grads["layer0.Wh"] += dWh
        grads["layer0.b"] += db

    grads = {k: grads[k] for k in p}  # in the model's order
    state = model.initial_state(1)
    _, model_cache, _ = model.forward(x_ids, y_ids, state)
    own = model.backward(model_cache)
    model_error = max(float(np.abs(own[k] - grads[k]).max()) for k in grads)

    f = lambda: float(model.forward(x_ids, y_ids, state)[0])
    numerical = {k: numerical_gradient(f, v, H) for k, v in p.items()}
    errors = {k: rel_error(grads[k], numerical[k]) for k in p}
    gradcheck = model_gradient_errors(model, x_ids, y_ids, seed=seed, h=H)

    single = CharModel(config, vocab, {k: v.astype(np.float32) for k, v in p.items()}, backend="numpy")
    f32 = lambda: float(single.forward(x_ids, y_ids, single.initial_state(1))[0])
    float32 = max(rel_error(grads[k], numerical_gradient(f32, single.params[k], H)) for k in p)
    return BPTTResult(vocab.chars, TEXT[:-1], TEXT[1:], hs, p_target, float(loss), dhs, dh_later, grads,
                      model_error, numerical, errors, gradcheck, float32, TOLERANCE)


def report(r: BPTTResult) -> str:
    T = len(r.inputs)
    out = ["Lesson 8, backprop-through-time: one training step of a char-RNN, unrolled.", "",
           f"Text {TEXT!r}: the input {r.inputs!r}, the targets {r.targets!r}, vocabulary {''.join(r.chars)!r} "
           f"(V = {len(r.chars)}), one-hot inputs.",
           f"h_t = tanh(x_t @ Wx + h_(t-1) @ Wh + b) with H = {HIDDEN}, then logits = h_t @ head.W + head.b, "
           "softmax cross-entropy",
           f"(charnn.nn.rnn.rnn_step_forward, charnn.nn.layers), float64, seed {SEED}, h_0 = 0.", "",
           "Forward, t = 1 to 5:"]
    rows = [["t", "input", "target", "h_t", "p(target)", "-log p"]]
    rows += [[str(t + 1), repr(r.inputs[t]), repr(r.targets[t]), vector(r.h[t], "{:7.4f}"), f"{r.p_target[t]:.4f}",
              f"{-np.log(r.p_target[t]):.4f}"] for t in range(T)]
    out += table(rows, right={0, 4, 5}) + [f"  loss = the mean = {r.loss:.4f} (ln V = {np.log(len(r.chars)):.4f})", ""]
    out += ["Backward, t = 5 down to 1: h_t gets gradient from its own prediction and, through h_(t+1), from",
            "every later one (rnn_step_backward hands dh_prev down; the weight gradients of all steps add up):"]
    rows = [["t", "from step t's loss", "+ through h_(t+1)", "= dL/dh_t"]]
    rows += [[str(t + 1), vector(r.dh_head[t], "{:8.4f}"), vector(r.dh_later[t], "{:8.4f}"),
              vector(r.dh_head[t] + r.dh_later[t], "{:8.4f}")] for t in reversed(range(T))]
    out += table(rows, right={0}) + [
        f"  the unrolled gradients equal the model's own backward (rnn_backward over the sequence) to {r.model_grads_error:.1e}", "",
        f"Every gradient entry beside its centred difference (f(w + h) - f(w - h)) / 2h, h = {H:g}:"]
    for key, g in r.grads.items():
        num = r.numerical[key]
        rows = [[f"{key}{list(i) if g.ndim > 1 else [i[0]]}", f"{g[i]: .8f}", f"{num[i]: .8f}", f"{abs(g[i] - num[i]):.1e}"]
                for i in np.ndindex(g.shape)]
        out += table([["entry", "backprop", "numerical", "difference"]] + rows, right={1, 2, 3})
        out.append(f"  {key}: max relative error {r.errors[key]:.1e}")
        if key == "layer0.Wx":
            unused = [c for i, c in enumerate(r.chars) if not np.any(g[i])]
            if unused:
                out.append(f"  (Wx's row for {', '.join(map(repr, unused))} is exactly 0: never an input, so its "
                           "one-hot entry never multiplied anything)")
    worst = max(r.errors.values())
    out += [f"All {sum(g.size for g in r.grads.values())} entries: max relative error {worst:.1e} "
            f"(tolerance {r.tolerance:g}): {'ok' if worst <= r.tolerance else 'FAIL'}", "",
            "This is what `charnn gradcheck` does (charnn/gradcheck.py model_gradient_errors): build a small random",
            "model in float64, perturb every entry of every parameter by +-h, and compare the slope of the loss with",
            "the backpropagated gradient, reported as the max error relative to the largest gradient entry. It also",
            "starts from a random h_0, so the path into the carried state is checked too. On this same model:"]
    out += [f"  {k:<10} max relative error {v:.1e}" for k, v in r.gradcheck.items()]
    out += ["The check runs in float64 because rounding decides it: the same differences taken on a float32 copy",
            f"of the model (what charnn trains in) are off by {r.float32:.1e}, relative, against {worst:.1e} in float64."]
    return "\n".join(out)
