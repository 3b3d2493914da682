"""LSTM layer (Hochreiter & Schmidhuber 1997, with a forget gate; no peepholes).

Shapes: B batch, T steps, D input width, H hidden width, G = 4H gate width.

    a = x @ Wx + h_prev @ Wh + b            # (B, G), columns in gate order i, f, o, g
    i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o)
    g = tanh(a_g)
    c_next = f * c_prev + i * g
    h_next = o * tanh(c_next)

The three sigmoid gates come first so one sigmoid call covers columns [0, 3H). The step math lives
once in `lstm_cell` / `lstm_cell_backward`; steps (sampling) and sequences (training) share it.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .activations import sigmoid
from .layers import input_projection, input_projection_backward


def split_gates(z: np.ndarray):
    """Views of the i, f, o, g column blocks of a (..., 4H) array."""
    H = z.shape[-1] // 4
    return z[..., :H], z[..., H : 2 * H], z[..., 2 * H : 3 * H], z[..., 3 * H :]


def lstm_cell(xa, h_prev, c_prev, Wh):
    """One step from the input projection xa = x @ Wx + b (B, G).

    -> h_next (B, H), c_next (B, H), gates (B, G) post-activation i, f, o, g, tanh_c (B, H).
    """
    H = h_prev.shape[-1]
    a = xa + h_prev @ Wh  # (B, G)
    gates = np.empty_like(a)  # (B, G)
    gates[:, : 3 * H] = sigmoid(a[:, : 3 * H])
    gates[:, 3 * H :] = np.tanh(a[:, 3 * H :])
    i, f, o, g = split_gates(gates)
    c_next = f * c_prev + i * g  # (B, H)
    tanh_c = np.tanh(c_next)  # (B, H)
    h_next = o * tanh_c  # (B, H)
    return h_next, c_next, gates, tanh_c


def lstm_cell_backward(dh_next, dc_next, c_prev, gates, tanh_c):
    """-> da (B, G) gradient of the pre-activations, dc_prev (B, H). (dh_prev = da @ Wh.T.)"""
    i, f, o, g = split_gates(gates)
    do = dh_next * tanh_c  # forward: h_next = o * tanh_c
    dc = dc_next + dh_next * o * (1.0 - tanh_c * tanh_c)  # forward: tanh_c = tanh(c_next)
    da = np.empty_like(gates)
    da_i, da_f, da_o, da_g = split_gates(da)
    da_i[...] = dc * g * i * (1.0 - i)  # forward: c_next = f*c_prev + i*g ; i = sigmoid(a_i)
    da_f[...] = dc * c_prev * f * (1.0 - f)  # f = sigmoid(a_f)
    da_o[...] = do * o * (1.0 - o)  # o = sigmoid(a_o)
    da_g[...] = dc * i * (1.0 - g * g)  # g = tanh(a_g)
    dc_prev = dc * f
    return da, dc_prev


# ---------------------------------------------------------------- one step
class LSTMStepCache(NamedTuple):
    x: np.ndarray  # (B, D)
    h_prev: np.ndarray  # (B, H)
    c_prev: np.ndarray  # (B, H)
    gates: np.ndarray  # (B, G)
    tanh_c: np.ndarray  # (B, H)
    Wx: np.ndarray  # (D, G)
    Wh: np.ndarray  # (H, G)


def lstm_step_forward(x, h_prev, c_prev, Wx, Wh, b):
    """x (B, D), h_prev, c_prev (B, H), Wx (D, G), Wh (H, G), b (G,) -> h_next, c_next (B, H), cache."""
    h_next, c_next, gates, tanh_c = lstm_cell(x @ Wx + b, h_prev, c_prev, Wh)
    return h_next, c_next, LSTMStepCache(x, h_prev, c_prev, gates, tanh_c, Wx, Wh)


def lstm_step_backward(dh_next, dc_next, cache: LSTMStepCache):
    """-> dx (B, D), dh_prev (B, H), dc_prev (B, H), dWx (D, G), dWh (H, G), db (G,)."""
    da, dc_prev = lstm_cell_backward(dh_next, dc_next, cache.c_prev, cache.gates, cache.tanh_c)
    dx = da @ cache.Wx.T  # forward: a = x @ Wx + h_prev @ Wh + b
    dh_prev = da @ cache.Wh.T
    dWx = cache.x.T @ da
    dWh = cache.h_prev.T @ da
    db = da.sum(axis=0)
    return dx, dh_prev, dc_prev, dWx, dWh, db


# ---------------------------------------------------------------- a sequence
class LSTMCache(NamedTuple):
    x: object  # (B, T, D), or layers.Embedded (ids into a table)
    h: np.ndarray  # (B, T+1, H): h[:, 0] is h0, h[:, t+1] the output of step t
    c: np.ndarray  # (B, T+1, H): c[:, 0] is c0
    gates: np.ndarray  # (B, T, G) post-activation i, f, o, g
    tanh_c: np.ndarray  # (B, T, H) tanh(c[:, t+1])
    Wx: np.ndarray  # (D, G)
    Wh: np.ndarray  # (H, G)


def lstm_forward(x, h0, c0, Wx, Wh, b):
    """x (B, T, D) or layers.Embedded, h0, c0 (B, H) -> hs (B, T, H), c_last (B, H), cache. hs[:, -1] is h_last."""
    B, T, _ = x.shape
    H = Wh.shape[0]
    G = 4 * H
    xa = input_projection(x, Wx) + b  # (B, T, G): the input projections of all steps at once
    h = np.empty((B, T + 1, H), dtype=xa.dtype)
    c = np.empty((B, T + 1, H), dtype=xa.dtype)
    gates = np.empty((B, T, G), dtype=xa.dtype)
    tanh_c = np.empty((B, T, H), dtype=xa.dtype)
    h[:, 0], c[:, 0] = h0, c0
    for t in range(T):
        h[:, t + 1], c[:, t + 1], gates[:, t], tanh_c[:, t] = lstm_cell(xa[:, t], h[:, t], c[:, t], Wh)
    return h[:, 1:], c[:, T], LSTMCache(x, h, c, gates, tanh_c, Wx, Wh)


def lstm_backward(dhs, cache: LSTMCache, dh_last=None, dc_last=None):
    """dhs (B, T, H) [+ dh_last, dc_last (B, H): gradients into the carried final state]
    -> dx (B, T, D) (for Embedded x: dtable (V, D)), dh0 (B, H), dc0 (B, H), dWx (D, G), dWh (H, G), db (G,)."""
    x, h, c, gates, tanh_c, Wx, Wh = cache
    B, T, _ = x.shape
    H = Wh.shape[0]
    da = np.empty((B, T, 4 * H), dtype=h.dtype)
    dh_next = np.zeros((B, H), dtype=h.dtype) if dh_last is None else dh_last
    dc_next = np.zeros((B, H), dtype=h.dtype) if dc_last is None else dc_last
    for t in reversed(range(T)):
        da[:, t], dc_next = lstm_cell_backward(dhs[:, t] + dh_next, dc_next, c[:, t], gates[:, t], tanh_c[:, t])
        dh_next = da[:, t] @ Wh.T  # forward: a_t = ... + h_{t-1} @ Wh
    dx, dWx = input_projection_backward(da, x, Wx)  # forward: xa = input_projection(x, Wx) + b
    da2 = da.reshape(B * T, 4 * H)
    dWh = h[:, :T].reshape(B * T, H).T @ da2  # each step's h_prev against its da
    db = da2.sum(axis=0)
    return dx, dh_next, dc_next, dWx, dWh, db
