"""Vanilla (Elman) RNN layer: h_t = act(x_t @ Wx + h_{t-1} @ Wh + b), act tanh by default.

Shapes: B batch, T steps, D input width, H hidden width.

`activation` names one of charnn.activations.ACTIVATIONS (tanh, sigmoid, relu, leaky_relu, elu,
softplus); every derivative there is written from the output h, so the caches hold only h.

The step math lives once in `rnn_cell`; the step functions (used by sampling) and the sequence
functions (used by training) both call it. The sequence forward projects all T inputs in one GEMM,
so only the recurrent product h_prev @ Wh runs per step; the backward likewise collects the
pre-activation gradients of all steps and forms dx, dWx, dWh and db in one GEMM each.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .activations import get_activation
from .layers import input_projection, input_projection_backward


def rnn_cell(xa: np.ndarray, h_prev: np.ndarray, Wh: np.ndarray, activation: str = "tanh") -> np.ndarray:
    """One step from the input projection xa = x @ Wx + b (B, H) -> h_next (B, H)."""
    return get_activation(activation).forward(xa + h_prev @ Wh)  # (B, H)


def rnn_cell_backward(dh_next: np.ndarray, h_next: np.ndarray, activation: str = "tanh") -> np.ndarray:
    """Gradient of the pre-activation a from dh_next (B, H) -> da (B, H)."""
    return get_activation(activation).backward(dh_next, h_next)  # forward: h_next = act(a)


# ---------------------------------------------------------------- one step
class RNNStepCache(NamedTuple):
    x: np.ndarray  # (B, D)
    h_prev: np.ndarray  # (B, H)
    h_next: np.ndarray  # (B, H)
    Wx: np.ndarray  # (D, H)
    Wh: np.ndarray  # (H, H)
    activation: str


def rnn_step_forward(x, h_prev, Wx, Wh, b, activation="tanh"):
    """x (B, D), h_prev (B, H), Wx (D, H), Wh (H, H), b (H,) -> h_next (B, H), cache."""
    h_next = rnn_cell(x @ Wx + b, h_prev, Wh, activation)
    return h_next, RNNStepCache(x, h_prev, h_next, Wx, Wh, activation)


def rnn_step_backward(dh_next, cache: RNNStepCache):
    """dh_next (B, H) -> dx (B, D), dh_prev (B, H), dWx (D, H), dWh (H, H), db (H,)."""
    da = rnn_cell_backward(dh_next, cache.h_next, cache.activation)  # (B, H)
    dx = da @ cache.Wx.T  # forward: a = x @ Wx + h_prev @ Wh + b
    dh_prev = da @ cache.Wh.T
    dWx = cache.x.T @ da
    dWh = cache.h_prev.T @ da
    db = da.sum(axis=0)
    return dx, dh_prev, dWx, dWh, db


# ---------------------------------------------------------------- a sequence
class RNNCache(NamedTuple):
    x: object  # (B, T, D), or layers.Embedded (ids into a table)
    h: np.ndarray  # (B, T+1, H): h[:, 0] is h0, h[:, t+1] the state after step t
    Wx: np.ndarray  # (D, H)
    Wh: np.ndarray  # (H, H)
    activation: str


def rnn_forward(x, h0, Wx, Wh, b, activation="tanh"):
    """x (B, T, D) or layers.Embedded, h0 (B, H) -> hs (B, T, H) (hs[:, -1] is the state to carry), cache."""
    B, T, _ = x.shape
    H = Wh.shape[0]
    xa = input_projection(x, Wx) + b  # (B, T, H): the input projections of all steps at once
    h = np.empty((B, T + 1, H), dtype=xa.dtype)
    h[:, 0] = h0
    for t in range(T):
        h[:, t + 1] = rnn_cell(xa[:, t], h[:, t], Wh, activation)
    return h[:, 1:], RNNCache(x, h, Wx, Wh, activation)


def rnn_backward(dhs, cache: RNNCache, dh_last=None):
    """dhs (B, T, H) [+ dh_last (B, H), gradient into the carried final state]
    -> dx (B, T, D) (for Embedded x: dtable (V, D)), dh0 (B, H), dWx (D, H), dWh (H, H), db (H,)."""
    x, h, Wx, Wh, activation = cache
    B, T, _ = x.shape
    H = Wh.shape[0]
    da = np.empty((B, T, H), dtype=h.dtype)
    dh_next = np.zeros((B, H), dtype=h.dtype) if dh_last is None else dh_last
    for t in reversed(range(T)):
        da[:, t] = rnn_cell_backward(dhs[:, t] + dh_next, h[:, t + 1], activation)
        dh_next = da[:, t] @ Wh.T  # forward: a_t = ... + h_{t-1} @ Wh
    dx, dWx = input_projection_backward(da, x, Wx)  # forward: xa = input_projection(x, Wx) + b
    da2 = da.reshape(B * T, H)
    dWh = h[:, :T].reshape(B * T, H).T @ da2  # each step's h_prev against its da
    db = da2.sum(axis=0)
    return dx, dh_next, dWx, dWh, db
