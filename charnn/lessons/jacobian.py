"""Lesson 4, jacobian: backprop in matrix form.

For y = f(x) with x of N numbers and y of M, the Jacobian J (M, N) holds dy_j/dx_i, and the chain
rule multiplies Jacobians. This lesson measures J by centred differences (a row at a time, with
charnn.nn.gradcheck.numerical_gradient) for
  - y = x: J is the identity;
  - y = x @ W (charnn's layout; the lecture's y = W x): J = W.T, the lecture's W;
  - h = tanh(a), elementwise: J is diagonal, diag(1 - h^2), every other entry exactly 0;
  - one LSTM step (charnn.nn.lstm.lstm_step_forward): J of h_next with respect to x, a full matrix;
and shows that each backward function computes the vector-Jacobian product dy @ J directly,
never J itself. Then the sizes for an LSTM layer of charnn's default shape: the Jacobian would
take hundreds of gigabytes; the vector-Jacobian product, the gradient, is the parameters' size.

Shapes: B batch, T steps, D (or E) input width, H hidden width, G = 4H gate width.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ..config import ModelConfig
from ..nn.activations import get_activation
from ..nn.gradcheck import numerical_gradient
from ..nn.layers import linear_backward, linear_forward
from ..nn.lstm import lstm_step_backward, lstm_step_forward
from ..train.config import TrainConfig
from .draw import number, side_by_side, table

NAME = "jacobian"
SUMMARY = "the Jacobians of x, Wx and tanh; backprop forms dy @ J, never J"

SEED = 0
H = 1e-5  # step of the centred differences
TOLERANCE = 1e-8  # largest max-abs difference of a measured Jacobian from its formula that passes
BYTES = 4  # float32, what charnn trains in


class JacobianResult(NamedTuple):
    identity: np.ndarray  # (4, 4) measured Jacobian of y = x
    W: np.ndarray  # (3, 4) the weights of y = x @ W
    linear: np.ndarray  # (4, 3) measured Jacobian of y = x @ W + b
    tanh_h: np.ndarray  # (5,) h = tanh(a)
    tanh: np.ndarray  # (5, 5) measured Jacobian of h = tanh(a)
    lstm: np.ndarray  # (2, 3) measured Jacobian of one LSTM step's h_next with respect to its x
    errors: dict  # what was compared -> max abs difference
    tolerance: float
    sizes: dict  # the default LSTM layer's sizes: see layer_sizes


def numerical_jacobian(f: Callable[[], np.ndarray], x: np.ndarray, h: float = H) -> np.ndarray:
    """J (M, N): row j is the numerical gradient of output j of f() (M values) with respect to x
    (N values), which f reads and numerical_gradient perturbs in place."""
    M = np.ravel(f()).size
    return np.stack([numerical_gradient(lambda: float(np.ravel(f())[j]), x, h).ravel() for j in range(M)])


def layer_sizes(model: ModelConfig | None = None, train: TrainConfig | None = None) -> dict:
    """How many numbers one LSTM layer's Jacobian would hold, against its vector-Jacobian
    products, for a model and batch: by default charnn's (charnn.config.ModelConfig, TrainConfig)."""
    model, train = model or ModelConfig(), train or TrainConfig()
    B, T, E, Hh = train.batch_size, train.seq_len, model.embed, model.hidden
    shapes = ModelConfig("lstm", 1, Hh, 1, E).param_shapes()  # layer 0: input width E
    params = sum(int(np.prod(shapes[k])) for k in ("layer0.Wx", "layer0.Wh", "layer0.b"))
    outputs, inputs = B * T * Hh, B * T * E  # the chunk's hs (B, T, H) and its x (B, T, E)
    return {"B": B, "T": T, "E": E, "H": Hh, "G": 4 * Hh, "outputs": outputs, "inputs": inputs, "params": params,
            "jacobian": outputs * (inputs + params), "vjp": inputs + params}


def run(seed: int = SEED) -> JacobianResult:
    rng = np.random.default_rng(seed)
    errors = {}

    x = rng.standard_normal(4)  # (4,)
    identity = numerical_jacobian(lambda: x.copy(), x)
    errors["y = x: J - I"] = np.abs(identity - np.eye(4)).max()

    x = rng.standard_normal((1, 3))  # (1, 3): one row, as charnn's layers take them
    W, b = rng.standard_normal((3, 4)), rng.standard_normal(4)
    linear = numerical_jacobian(lambda: linear_forward(x, W, b)[0], x)  # (4, 3)
    errors["y = x @ W + b: J - W.T"] = np.abs(linear - W.T).max()
    dy = rng.standard_normal((1, 4))
    dx, _, _ = linear_backward(dy, linear_forward(x, W, b)[1])
    errors["linear_backward's dx - dy @ J"] = np.abs(dx - dy @ linear).max()

    a = rng.standard_normal(5)  # (5,)
    tanh = get_activation("tanh")
    tanh_J = numerical_jacobian(lambda: tanh.forward(a), a)  # (5, 5)
    h = tanh.forward(a)
    errors["h = tanh(a): diagonal - (1 - h^2)"] = np.abs(np.diag(tanh_J) - (1 - h * h)).max()
    errors["h = tanh(a): largest entry off the diagonal"] = np.abs(tanh_J - np.diag(np.diag(tanh_J))).max()
    dh = rng.standard_normal(5)
    errors["tanh's backward - dh @ J"] = np.abs(tanh.backward(dh, h) - dh @ tanh_J).max()

    D, Hh = 3, 2
    x = rng.standard_normal((1, D))
    h_prev, c_prev = rng.standard_normal((1, Hh)), rng.standard_normal((1, Hh))
    Wx, Wh, b = rng.standard_normal((D, 4 * Hh)), rng.standard_normal((Hh, 4 * Hh)), rng.standard_normal(4 * Hh)
    lstm = numerical_jacobian(lambda: lstm_step_forward(x, h_prev, c_prev, Wx, Wh, b)[0], x)  # (H, D)
    dh = rng.standard_normal((1, Hh))
    cache = lstm_step_forward(x, h_prev, c_prev, Wx, Wh, b)[2]
    dx = lstm_step_backward(dh, np.zeros((1, Hh)), cache)[0]
    errors["lstm_step_backward's dx - dh @ J"] = np.abs(dx - dh @ lstm).max()
    return JacobianResult(identity, W, linear, h, tanh_J, lstm, {k: float(v) for k, v in errors.items()},
                          TOLERANCE, layer_sizes())


def _matrix(M: np.ndarray, indent: str = "    ") -> list[str]:
    return [indent + " ".join(number(v) for v in row) for row in M]


def _bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def report(r: JacobianResult) -> str:
    s = r.sizes
    out = ["Lesson 4, jacobian: backprop in matrix form multiplies by Jacobians, without ever forming them.", "",
           "For y = f(x), the Jacobian J holds dy_j/dx_i (one row per output). Measured here by centred",
           f"differences (h = {H:g}), a row at a time:", "",
           "y = x: the identity", *_matrix(r.identity), "",
           "y = x @ W + b (charnn's layout, x a row; the lecture writes y = W x): J = W.T, the lecture's W",
           *side_by_side([_matrix(r.linear, ""), _matrix(r.W.T, "")], ["J, measured", "W.T"]), "",
           "h = tanh(a), elementwise: J is diagonal, diag(1 - h^2)", *_matrix(r.tanh), "",
           "h_next of one LSTM step with respect to its input x (charnn.nn.lstm.lstm_step_forward, H = 2, D = 3):",
           "a full matrix", *_matrix(r.lstm), "",
           "Backprop never builds these: each backward function takes the gradient dy arriving from above and",
           "returns dy @ J, the vector-Jacobian product, straight from the forward's cache (linear_backward:",
           "dx = dy @ W.T; an activation's backward: dh * (1 - h^2), the diagonal times dh).", ""]
    rows = [["check", "max abs difference", ""]]
    rows += [[k, f"{v:.1e}", "ok" if v <= r.tolerance else "FAIL"] for k, v in r.errors.items()]
    out += table(rows, right={1}) + [f"  (tolerance {r.tolerance:g})", ""]
    out += [f"Why never J: one LSTM layer of charnn's default model (E = {s['E']}, H = {s['H']}, G = 4H = {s['G']})",
            f"on one default batch (B = {s['B']} streams, T = {s['T']} steps) maps",
            f"  {s['inputs']:,} inputs (B*T*E) and {s['params']:,} parameters (Wx, Wh, b) to {s['outputs']:,} outputs (B*T*H).",
            f"  Its Jacobian would hold {s['outputs']:,} x {s['inputs'] + s['params']:,} = {s['jacobian']:.2e} numbers: "
            f"{_bytes(s['jacobian'] * BYTES)} in float32.",
            f"  The vector-Jacobian product is {s['vjp']:,} numbers, one per input and parameter: "
            f"{_bytes(s['vjp'] * BYTES)}.",
            "  That is lstm_backward (charnn/nn/lstm.py): dx, dWx, dWh, db from dhs, one step at a time."]
    return "\n".join(out)
