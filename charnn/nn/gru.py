"""GRU layer (Cho et al. 2014), in the cuDNN/PyTorch form: the reset gate is applied AFTER the
recurrent matmul, with a single bias b (no separate recurrent bias).

Shapes: B batch, T steps, D input width, H hidden width, G = 3H gate width.

    xa = x @ Wx + b                         # (B, G), columns in gate order r, z, n
    ha = h_prev @ Wh                        # (B, G), the one recurrent GEMM per step
    r = sigmoid(xa_r + ha_r)                # reset gate
    z = sigmoid(xa_z + ha_z)                # update gate
    n = tanh(xa_n + r * ha_n)               # candidate; reset applied after the matmul
    h_next = (1 - z) * n + z * h_prev

Because r multiplies ha_n = (h_prev @ Wh)_n rather than h_prev itself, all three blocks of ha come
from one GEMM, and a sequence's input projections xa of all T steps from another. The price is that
the gradient of ha differs from that of xa in the n block (d ha_n = d a_n * r), so the backward
carries two (B, G) gradients, dxa and dha. The step math lives once in `gru_cell` /
`gru_cell_backward`; steps (sampling) and sequences (training) share it.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .activations import sigmoid
from .layers import input_projection, input_projection_backward


def split_gates3(z: np.ndarray):
    """Views of the r, z, n column blocks of a (..., 3H) array."""
    H = z.shape[-1] // 3
    return z[..., :H], z[..., H : 2 * H], z[..., 2 * H :]


def gru_cell(xa, h_prev, Wh):
    """One step from the input projection xa = x @ Wx + b (B, G).

    -> h_next (B, H), gates (B, G) post-activation r, z, n, ha_n (B, H) = (h_prev @ Wh)_n.
    """
    H = h_prev.shape[-1]
    ha = h_prev @ Wh  # (B, G)
    gates = np.empty_like(xa)  # (B, G)
    gates[:, : 2 * H] = sigmoid(xa[:, : 2 * H] + ha[:, : 2 * H])  # r, z
    r, z, n = split_gates3(gates)
    _, _, xa_n = split_gates3(xa)
    ha_n = ha[:, 2 * H :]  # (B, H)
    n[...] = np.tanh(xa_n + r * ha_n)  # (B, H)
    h_next = (1.0 - z) * n + z * h_prev  # (B, H)
    return h_next, gates, ha_n


def gru_cell_backward(dh_next, h_prev, gates, ha_n):
    """-> dxa (B, G) gradient of xa = x @ Wx + b, dha (B, G) gradient of ha = h_prev @ Wh,
    dh_prev_direct (B, H) the part of dh_prev through the z * h_prev term.

    The full dh_prev = dh_prev_direct + dha @ Wh.T. dxa and dha agree in the r and z blocks (there
    xa and ha are simply added) and differ in the n block, where ha_n is scaled by r.
    """
    r, z, n = split_gates3(gates)
    dn = dh_next * (1.0 - z)  # forward: h_next = (1 - z) * n + z * h_prev
    dz = dh_next * (h_prev - n)
    dh_prev_direct = dh_next * z
    dxa = np.empty_like(gates)
    dxa_r, dxa_z, dxa_n = split_gates3(dxa)
    dxa_n[...] = dn * (1.0 - n * n)  # forward: n = tanh(a_n), a_n = xa_n + r * ha_n
    dr = dxa_n * ha_n  # forward: a_n = xa_n + r * ha_n (the reason ha_n is cached)
    dxa_r[...] = dr * r * (1.0 - r)  # forward: r = sigmoid(xa_r + ha_r)
    dxa_z[...] = dz * z * (1.0 - z)  # forward: z = sigmoid(xa_z + ha_z)
    dha = dxa.copy()  # r, z blocks: xa and ha enter as a plain sum
    _, _, dha_n = split_gates3(dha)
    dha_n *= r  # forward: a_n = xa_n + r * ha_n, so d ha_n = d a_n * r
    return dxa, dha, dh_prev_direct


# ---------------------------------------------------------------- one step
class GRUStepCache(NamedTuple):
    x: np.ndarray  # (B, D)
    h_prev: np.ndarray  # (B, H)
    gates: np.ndarray  # (B, G)
    ha_n: np.ndarray  # (B, H)
    Wx: np.ndarray  # (D, G)
    Wh: np.ndarray  # (H, G)


def gru_step_forward(x, h_prev, Wx, Wh, b):
    """x (B, D), h_prev (B, H), Wx (D, G), Wh (H, G), b (G,) -> h_next (B, H), cache."""
    h_next, gates, ha_n = gru_cell(x @ Wx + b, h_prev, Wh)
    return h_next, GRUStepCache(x, h_prev, gates, ha_n, Wx, Wh)


def gru_step_backward(dh_next, cache: GRUStepCache):
    """dh_next (B, H) -> dx (B, D), dh_prev (B, H), dWx (D, G), dWh (H, G), db (G,)."""
    dxa, dha, dh_prev_direct = gru_cell_backward(dh_next, cache.h_prev, cache.gates, cache.ha_n)
    dx = dxa @ cache.Wx.T  # forward: xa = x @ Wx + b
    dh_prev = dh_prev_direct + dha @ cache.Wh.T  # forward: ha = h_prev @ Wh (plus z * h_prev)
    dWx = cache.x.T @ dxa
    dWh = cache.h_prev.T @ dha
    db = dxa.sum(axis=0)
    return dx, dh_prev, dWx, dWh, db


# ---------------------------------------------------------------- a sequence
class GRUCache(NamedTuple):
    x: object  # (B, T, D), or layers.Embedded (ids into a table)
    h: np.ndarray  # (B, T+1, H): h[:, 0] is h0, h[:, t+1] the output of step t
    gates: np.ndarray  # (B, T, G) post-activation r, z, n
    ha_n: np.ndarray  # (B, T, H) (h[:, t] @ Wh)_n
    Wx: np.ndarray  # (D, G)
    Wh: np.ndarray  # (H, G)


def gru_forward(x, h0, Wx, Wh, b):
    """x (B, T, D) or layers.Embedded, h0 (B, H) -> hs (B, T, H) (hs[:, -1] is the state to carry), cache."""
    B, T, _ = x.shape
    H = Wh.shape[0]
    G = 3 * H
    xa = input_projection(x, Wx) + b  # (B, T, G): the input projections of all steps at once
    h = np.empty((B, T + 1, H), dtype=xa.dtype)
    gates = np.empty((B, T, G), dtype=xa.dtype)
    ha_n = np.empty((B, T, H), dtype=xa.dtype)
    h[:, 0] = h0
    for t in range(T):
        h[:, t + 1], gates[:, t], ha_n[:, t] = gru_cell(xa[:, t], h[:, t], Wh)
    return h[:, 1:], GRUCache(x, h, gates, ha_n, Wx, Wh)


def gru_backward(dhs, cache: GRUCache, dh_last=None):
    """dhs (B, T, H) [+ dh_last (B, H), gradient into the carried final state]
    -> dx (B, T, D) (for Embedded x: dtable (V, D)), dh0 (B, H), dWx (D, G), dWh (H, G), db (G,)."""
    x, h, gates, ha_n, Wx, Wh = cache
    B, T, _ = x.shape
    H = Wh.shape[0]
    G = 3 * H
    dxa = np.empty((B, T, G), dtype=h.dtype)
    dha = np.empty((B, T, G), dtype=h.dtype)
    dh_next = np.zeros((B, H), dtype=h.dtype) if dh_last is None else dh_last
    for t in reversed(range(T)):
        dxa[:, t], dha[:, t], dh_direct = gru_cell_backward(dhs[:, t] + dh_next, h[:, t], gates[:, t], ha_n[:, t])
        dh_next = dh_direct + dha[:, t] @ Wh.T  # forward: ha_t = h_{t-1} @ Wh (plus z * h_{t-1})
    dx, dWx = input_projection_backward(dxa, x, Wx)  # forward: xa = input_projection(x, Wx) + b
    dWh = h[:, :T].reshape(B * T, H).T @ dha.reshape(B * T, G)  # each step's h_prev against its dha
    db = dxa.reshape(B * T, G).sum(axis=0)
    return dx, dh_next, dWx, dWh, db
