"""Lesson 6, softmax: the output layer of every charnn model.

  - softmax(z)_i = e^z_i / sum_j e^z_j is the N-class sigmoid: for two classes,
    softmax((z1, z2))_1 = 1 / (1 + e^-(z1 - z2)) = sigmoid(z1 - z2);
  - softmax(z + c) = softmax(z) for any constant c, so charnn subtracts the row max before exp
    (charnn.nn.layers.log_softmax): without it exp overflows, to inf and then nan;
  - the cross-entropy H(p, q) = -sum_i p_i log q_i of the target p = onehot(y) and the model's
    q = softmax(z) is -log q_y, charnn's loss, and its gradient is q - p (written p - y in the
    lecture, with p the prediction), checked numerically;
  - a uniform guess q_i = 1/V scores ln V, which is why the first loss of every charnn training
    run is close to ln V.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..config import ModelConfig
from ..data.text import Vocab
from ..model import CharModel
from ..nn.activations import sigmoid
from ..nn.gradcheck import numerical_gradient, rel_error
from ..nn.layers import log_softmax, softmax_cross_entropy_backward, softmax_cross_entropy_forward
from .draw import table, vector

NAME = "softmax"
SUMMARY = "the N-class sigmoid, the max trick, cross-entropy and p - y, ln V"

PAIRS = ((2.0, -1.0), (0.5, 0.5), (-3.0, 4.0), (10.0, -10.0))  # two-class logits (z1, z2)
SHIFT = 100.0  # softmax(z + SHIFT) = softmax(z)
BIG = (1000.0, 1001.0, 1002.0)  # logits whose exp overflows float64
LOGITS = (1.0, 2.0, 0.5, -1.0, 3.0)  # a 5-class example for the cross-entropy
TARGET = 1  # its correct class
V = 65  # the vocabulary of tiny Shakespeare
SEED = 0
H = 1e-5  # step of the centred differences
TOLERANCE = 1e-8  # largest error that passes, for the identities and the gradient check


class SoftmaxResult(NamedTuple):
    pairs: list  # (z1, z2, softmax((z1, z2))_1, sigmoid(z1 - z2))
    pair_error: float  # max |softmax_1 - sigmoid(z1 - z2)| over PAIRS
    shift_error: float  # max |softmax(z + SHIFT) - softmax(z)|
    naive: np.ndarray  # e^z / sum e^z of BIG, unstabilised: nan
    stable: np.ndarray  # charnn's softmax of BIG
    exp_limits: dict  # dtype -> the largest z whose e^z is finite
    q: np.ndarray  # (5,) softmax(LOGITS)
    loss: float  # charnn's softmax_cross_entropy_forward of LOGITS, TARGET
    cross_entropy: float  # -sum p log q with p = onehot(TARGET), computed directly
    dlogits: np.ndarray  # (5,) charnn's softmax_cross_entropy_backward
    q_minus_p: np.ndarray  # (5,) q - onehot(TARGET)
    numerical: np.ndarray  # (5,) dloss/dlogits by centred differences
    grad_error: float  # relative error of dlogits against numerical
    uniform_loss: float  # the loss of all-zero logits over V classes
    ln_V: float
    init_loss: float  # a freshly initialised charnn LSTM's first loss, on random text over V characters
    init_model: str  # what that model was ("LSTM 2x256, embedding 64")
    tolerance: float


def softmax(z: np.ndarray) -> np.ndarray:
    """charnn's softmax: exp of log_softmax, which subtracts the row max first."""
    return np.exp(log_softmax(z))


def naive_softmax(z: np.ndarray) -> np.ndarray:
    """The textbook formula without the max subtracted (what not to do)."""
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def run(seed: int = SEED) -> SoftmaxResult:
    pairs = [(z1, z2, float(softmax(np.array([z1, z2]))[0]), float(sigmoid(z1 - z2))) for z1, z2 in PAIRS]
    pair_error = max(abs(s - g) for _, _, s, g in pairs)
    z = np.array(LOGITS)
    shift_error = float(np.abs(softmax(z + SHIFT) - softmax(z)).max())
    with np.errstate(over="ignore", invalid="ignore"):  # the overflow is the point
        naive = naive_softmax(np.array(BIG))
    stable = softmax(np.array(BIG))
    exp_limits = {np.dtype(t).name: float(np.log(np.finfo(t).max)) for t in (np.float32, np.float64)}

    logits, targets = z[None, :].copy(), np.array([TARGET])  # (1, 5), (1,): one row, as charnn's loss takes them
    loss, cache = softmax_cross_entropy_forward(logits, targets)
    q = cache.probs[0]
    p = np.eye(len(LOGITS))[TARGET]  # the target distribution: one-hot
    cross_entropy = float(-(p * np.log(q)).sum())
    dlogits = softmax_cross_entropy_backward(1.0, cache)[0]
    numerical = numerical_gradient(lambda: float(softmax_cross_entropy_forward(logits, targets)[0]), logits, H)[0]

    uniform_loss = float(softmax_cross_entropy_forward(np.zeros((1, V)), np.array([0]))[0])
    rng = np.random.default_rng(seed)
    config = ModelConfig(vocab_size=V)  # charnn's default model: LSTM 2 x 256, embedding 64
    model = CharModel.create(config, Vocab([chr(32 + i) for i in range(V)]), seed=seed, backend="numpy")
    ids = rng.integers(0, V, (16, 17))  # 16 streams of 16 predictions
    init_loss = float(model.forward(ids[:, :-1], ids[:, 1:], model.initial_state(16))[0])
    return SoftmaxResult(pairs, pair_error, shift_error, naive, stable, exp_limits, q, float(loss), cross_entropy,
                         dlogits, q - p, numerical, rel_error(dlogits, numerical), uniform_loss, math.log(V),
                         init_loss, f"{config.model.upper()} {config.layers}x{config.hidden}, embedding {config.embed}",
                         TOLERANCE)


def _ok(err: float, tol: float) -> str:
    return f"{err:.1e} (tolerance {tol:g}): {'ok' if err <= tol else 'FAIL'}"


def report(r: SoftmaxResult) -> str:
    out = ["Lesson 6, softmax: the N-class sigmoid, the max trick, cross-entropy and its gradient, and ln V.", "",
           "softmax(z)_i = e^z_i / sum_j e^z_j. For two classes it is the sigmoid of the difference:"]
    rows = [["z1", "z2", "softmax(z)_1", "sigmoid(z1 - z2)"]]
    rows += [[f"{z1:g}", f"{z2:g}", f"{s:.12f}", f"{g:.12f}"] for z1, z2, s, g in r.pairs]
    out += table(rows, right={0, 1, 2, 3})
    out += [f"  largest difference {_ok(r.pair_error, r.tolerance)}", "",
            f"Adding a constant to every logit changes nothing: max |softmax(z + {SHIFT:g}) - softmax(z)| = "
            f"{_ok(r.shift_error, r.tolerance)}",
            "so charnn subtracts each row's max before exp (charnn/nn/layers.py log_softmax and",
            f"softmax_cross_entropy_forward). e^z overflows float32 above z = {r.exp_limits['float32']:.2f} and "
            f"float64 above {r.exp_limits['float64']:.2f}:",
            f"  z = {vector(BIG, '{:g}')}   e^z / sum e^z      = {vector(r.naive, '{:.4f}')}   (inf / inf)",
            f"  {'':{len(vector(BIG, '{:g}')) + 4}}   the max subtracted = {vector(r.stable, '{:.4f}')}", ""]
    z = vector(LOGITS, "{:g}")
    out += [f"Cross-entropy H(p, q) = -sum_i p_i log q_i, for logits z = {z} and target class {TARGET}",
            f"(p = onehot({TARGET})), q = softmax(z) = {vector(r.q, '{:.4f}')}:",
            f"  -sum p log q = -log q_{TARGET} = {r.cross_entropy:.6f};  charnn's softmax_cross_entropy_forward: {r.loss:.6f}",
            "Its gradient with respect to the logits is q - p (the lecture's p - y, p the prediction):"]
    rows = [["", *(f"z{i}" for i in range(len(LOGITS)))],
            ["softmax_cross_entropy_backward"] + [f"{v:.6f}" for v in r.dlogits],
            ["q - p"] + [f"{v:.6f}" for v in r.q_minus_p],
            ["numerical"] + [f"{v:.6f}" for v in r.numerical]]
    out += table(rows, right=set(range(1, len(LOGITS) + 1)))
    out += [f"  backward against centred differences (h = {H:g}): max relative error {_ok(r.grad_error, r.tolerance)}", "",
            f"A uniform guess, q_i = 1/V for V = {V} characters (tiny Shakespeare's), scores -log(1/V) = ln V:",
            f"  all-zero logits: loss {r.uniform_loss:.6f};  ln {V} = {r.ln_V:.6f}",
            f"  a freshly initialised {r.init_model} (charnn's default model) "
            f"on random text: first loss {r.init_loss:.4f}",
            "That is why every charnn training run starts near ln V: a loss far above it at step 1 means a bug",
            "in the initialisation; one below ln V later means the model has learnt something."]
    return "\n".join(out)
