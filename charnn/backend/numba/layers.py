"""The numba backend's layer functions: charnn.nn's exact signatures, return types and caches, with
the elementwise work done by the fused kernels in kernels.py.

Same math, different engine. Matrix products go through gemm.py (register tiles or numpy's BLAS,
whichever this machine trains the shape faster with), with each weight packed once per call. With the
tiles, a sequence's
whole time loop is one kernel call: per step the products x_t @ Wx and h_prev @ Wh (forward) or
da_t @ Wh.T (backward), then a step kernel that fuses the cell's elementwise work. With BLAS the
same loop runs here in Python, after one product for the input projections of all T steps. The
weight gradients of all T steps are single products in both cases, as in the reference.
Large scratch arrays come from scratch.py, so a training step reuses the last one's pages.
The reference modules (charnn.nn: layers, rnn, lstm, gru) are the specification;
tests/test_kernels.py checks that every function here agrees with its twin.

A first layer's input comes as ids into a table (layers.Embedded): its input projection is then a
lookup into P = table @ Wx (V, G), and its gradient a scatter of the rows into dP, then two small
products (_input_gradients), instead of three (B*T, D, G) products.

Shapes: B batch, T steps, D input width, H hidden width, G gate width, N = B*T rows, V vocabulary.
"""
from __future__ import annotations

import time

import numpy as np

from ...nn.activations import get_activation
from ...nn.gru import GRUCache
from ...nn.layers import DenseCache, Embedded, EmbeddingCache, LinearCache, SoftmaxCECache, slot_weights
from ...nn.layers import embedding_forward  # noqa: F401  not worth a kernel: one gather
from ...nn.lstm import LSTMCache
from ...nn.rnn import RNNCache
from . import kernels as K
from . import scratch
from .gemm import loop_parts, matmul, pack, use_tiles
from .threads import numba_threads


def _rows_of_ids(x: Embedded) -> np.ndarray:
    """x's ids as (N, K) int32, C-contiguous: one compiled version of each kernel."""
    return np.ascontiguousarray(x.ids, dtype=np.int32).reshape(-1, x.ids.shape[-1])


def _slot_tables(x: Embedded, W) -> np.ndarray:
    """P (K, V, G): P[k] = table @ W_k, W_k = W's rows for slot k (layers.input_projection)."""
    Wk = slot_weights(x, W)  # (K, D, G)
    P = scratch.empty((len(Wk), x.table.shape[0], W.shape[1]), np.result_type(x.dtype, W.dtype))
    for k in range(len(Wk)):
        matmul(x.table, Wk[k], out=P[k])
    return P


def _input_projection(x, W):
    """Twin of layers.input_projection: x @ W for every row at once, (..., G) C-contiguous; in the
    recurrent layers without the bias, which the step kernels add (with the tiles, their loops go
    step by step)."""
    if isinstance(x, Embedded):
        ids = _rows_of_ids(x)  # (N, K)
        P = _slot_tables(x, W)  # (K, V, G)
        out = scratch.empty((len(ids), W.shape[1]), P.dtype)
        K.lookup_rows_kernel(ids, P, out)
        return out.reshape(x.shape[:-1] + W.shape[1:])
    return matmul(x.reshape(-1, x.shape[-1]), W).reshape(x.shape[:-1] + W.shape[1:])


def _loop_input(x, Wx):
    """What a tiles time loop reads for its input projection (kernels.project_step), and the input
    width that names the loop (policy.loop_name; 0 for ids): x with Wx packed, or for Embedded x
    (one id a step, as the models give it) its ids (B, T) with P = table @ Wx (V, G). None for the
    weights where the products go to BLAS. A contiguous x (after dropout) is copied into the
    layout of the layer outputs it otherwise gets (h[:, 1:], past the h0 column), so that numba
    compiles each loop once for both instead of once per layout (~2-3 s a loop kernel)."""
    if _width(x) == 0:
        tiles = np.result_type(x.dtype, Wx.dtype) == np.float32 and use_tiles()
        return _rows_of_ids(x).reshape(x.ids.shape[:-1]), (_slot_tables(x, Wx)[0] if tiles else None), 0  # P (V, G)
    if isinstance(x, Embedded):  # several ids a step (the models give one): formed, for the loops look up one
        x = x.table[x.ids].reshape(x.shape)
    if x.flags.c_contiguous and x.shape[0] > 1:  # laid out as a layer's own h[:, 1:]: one compiled loop for both
        past_h0 = scratch.empty((x.shape[0], x.shape[1] + 1, x.shape[2]), x.dtype)[:, 1:]
        past_h0[...] = x
        x = past_h0
    return x, pack(Wx).panels, x.shape[2]


def _width(x) -> int:
    """The input width that names a layer's time loops (policy.loop_name): 0 for one id a step."""
    return 0 if isinstance(x, Embedded) and x.ids.shape[-1] == 1 else x.shape[2]


def _bias(b, dtype):
    return np.ascontiguousarray(b, dtype=dtype)


def _input_gradients(x, dxa2, W, dxa2p=None):
    """Twin of layers.input_projection_backward: dxa2 (N, G) -> dx (..., D) (for Embedded x,
    dtable (V, D)), dW (D, G). dxa2p: dxa2 packed, where the caller packed it already."""
    if isinstance(x, Embedded):
        ids = _rows_of_ids(x)  # (N, K)
        Wk = slot_weights(x, W)  # (K, D, G)
        dP = scratch.zeros((len(Wk), x.table.shape[0], dxa2.shape[1]), dxa2.dtype)  # (K, V, G)
        K.scatter_rows_kernel(ids, np.ascontiguousarray(dxa2), dP)  # forward: xa = sum_k P[k][ids_k]
        dtable = matmul(dP[0], Wk[0].T)  # (V, D); forward: P[k] = table @ W_k
        for k in range(1, len(dP)):
            dtable += matmul(dP[k], Wk[k].T)
        dW = np.empty(Wk.shape, dxa2.dtype)  # (K, D, G)
        for k in range(len(dP)):
            matmul(x.table.T, dP[k], out=dW[k])
        return dtable, dW.reshape(W.shape)
    dx = matmul(dxa2, W.T).reshape(x.shape)  # forward: xa = x @ W
    return dx, matmul(x.reshape(-1, x.shape[-1]).T, dxa2 if dxa2p is None else dxa2p)


def _weight_gradients(x, h, da2, Wx):
    """dx, dWx, dWh, db from the stacked pre-activation gradients da2 (N, G), one GEMM each."""
    B, T, _ = x.shape
    H = h.shape[-1]
    da2p = da2 if isinstance(x, Embedded) else pack(da2)  # used twice unless the input is ids
    dx, dWx = _input_gradients(x, da2, Wx, da2p)
    dWh = matmul(h[:, :T].reshape(B * T, H).T, da2p)  # each step's h_prev against its da
    db = da2.sum(axis=0)
    return dx, dWx, dWh, db


# While calibrate.py times the two ways of splitting a time loop, the seconds each loop kernel
# call took are appended here (None otherwise): the loop alone, without the weight gradients
# around it, whose time is the same either way and would only add noise.
loop_clock: list | None = None


def _run_loop(loop: str, D: int, H: int, *args):
    """kernels.<loop>_loop(*args), or <loop>_rows(*args, parts) where splitting the batch rows
    over the threads was measured to run this loop faster (gemm.loop_parts)."""
    parts = loop_parts(loop, D, H)
    t0 = time.perf_counter()
    if parts > 1:
        getattr(K, f"{loop}_rows")(*args, parts)
    else:
        getattr(K, f"{loop}_loop")(*args)
    if loop_clock is not None:
        loop_clock.append(time.perf_counter() - t0)


def _zeros_or(last, B, H, dtype):
    return scratch.zeros((B, H), dtype) if last is None else np.array(last, dtype=dtype, order="C")


# Each sequence function packs its weights once. With the tiles (packed.panels is not None) the
# whole time loop runs in one kernel call (kernels.*_loop, or *_rows where splitting the batch rows
# over the threads was measured to run that loop faster: gemm.loop_parts); otherwise the same loop
# runs here, with numpy's BLAS for the per-step product and the step kernels on one thread.

# ---------------------------------------------------------------- vanilla RNN
def rnn_forward(x, h0, Wx, Wh, b, activation="tanh"):
    """Twin of rnn.rnn_forward."""
    B, T, _ = x.shape
    H = Wh.shape[0]
    code = K.ACTIVATION_CODES[activation]
    dtype = np.result_type(x.dtype, Wx.dtype)
    bias = _bias(b, dtype)
    h = scratch.empty((B, T + 1, H), dtype)
    h[:, 0] = h0
    ha = scratch.empty((B, H), dtype)
    Whp = pack(Wh)
    src, Wxp, width = _loop_input(x, Wx)
    if Whp.panels is not None and Wxp is not None:
        _run_loop("rnn_forward", width, H, src, Wxp, bias, Whp.panels, h, scratch.empty((B, H), dtype), ha, code)
    else:
        xa = _input_projection(x, Wx)
        xa_t = scratch.empty(ha.shape, dtype)
        with numba_threads(1):  # BLAS has the cores
            for t in range(T):
                np.dot(h[:, t], Wh, out=ha)  # dot: matmul copies this strided view row by row
                xa_t[:] = xa[:, t]  # contiguous rows: the cell's vector loads want them (kernels.lanes)
                K.rnn_step_forward_kernel(t, xa_t, bias, ha, h, code)
    return h[:, 1:], RNNCache(x, h, Wx, Wh, activation)


def rnn_backward(dhs, cache: RNNCache, dh_last=None):
    """Twin of rnn.rnn_backward."""
    x, h, Wx, Wh, activation = cache
    B, T, _ = x.shape
    H = Wh.shape[0]
    code = K.ACTIVATION_CODES[activation]
    dhs = np.ascontiguousarray(dhs, dtype=h.dtype)
    da = scratch.empty((B, T, H), h.dtype)
    dh_rec = _zeros_or(dh_last, B, H, h.dtype)
    WhT = pack(Wh.T)
    if WhT.panels is not None:
        _run_loop("rnn_backward", _width(x), H, dhs, dh_rec, h, da, WhT.panels, code)
    else:
        with numba_threads(1):
            for t in reversed(range(T)):
                K.rnn_step_backward_kernel(t, dhs, dh_rec, h, da, code)
                np.dot(da[:, t], Wh.T, out=dh_rec)  # forward: a_t = ... + h_{t-1} @ Wh
    dx, dWx, dWh, db = _weight_gradients(x, h, da.reshape(B * T, H), Wx)
    return dx, dh_rec, dWx, dWh, db


# ---------------------------------------------------------------- LSTM
def lstm_forward(x, h0, c0, Wx, Wh, b):
    """Twin of lstm.lstm_forward."""
    B, T, _ = x.shape
    H = Wh.shape[0]
    dtype = np.result_type(x.dtype, Wx.dtype)
    bias = _bias(b, dtype)
    h = scratch.empty((B, T + 1, H), dtype)
    c = scratch.empty((B, T + 1, H), dtype)
    gates = scratch.empty((B, T, 4 * H), dtype)
    tanh_c = scratch.empty((B, T, H), dtype)
    h[:, 0], c[:, 0] = h0, c0
    ha = scratch.empty((B, 4 * H), dtype)
    Whp = pack(Wh)
    src, Wxp, width = _loop_input(x, Wx)
    if Whp.panels is not None and Wxp is not None:
        _run_loop("lstm_forward", width, H, src, Wxp, bias, Whp.panels, h, c, gates, tanh_c, scratch.empty((B, 4 * H), dtype), ha)
    else:
        xa = _input_projection(x, Wx)
        xa_t = scratch.empty(ha.shape, dtype)
        with numba_threads(1):  # BLAS has the cores
            for t in range(T):
                np.dot(h[:, t], Wh, out=ha)  # dot: matmul copies this strided view row by row
                xa_t[:] = xa[:, t]  # contiguous rows: the cell's vector loads want them (kernels.lanes)
                K.lstm_step_forward_kernel(t, xa_t, bias, ha, h, c, gates, tanh_c)
    return h[:, 1:], c[:, T], LSTMCache(x, h, c, gates, tanh_c, Wx, Wh)


def lstm_backward(dhs, cache: LSTMCache, dh_last=None, dc_last=None):
    """Twin of lstm.lstm_backward."""
    x, h, c, gates, tanh_c, Wx, Wh = cache
    B, T, _ = x.shape
    H = Wh.shape[0]
    dhs = np.ascontiguousarray(dhs, dtype=h.dtype)
    da = scratch.empty((B, T, 4 * H), h.dtype)
    dh_rec = _zeros_or(dh_last, B, H, h.dtype)
    dc = _zeros_or(dc_last, B, H, h.dtype)
    WhT = pack(Wh.T)
    if WhT.panels is not None:
        _run_loop("lstm_backward", _width(x), H, dhs, dh_rec, dc, c, gates, tanh_c, da, WhT.panels)
    else:
        with numba_threads(1):
            for t in reversed(range(T)):
                K.lstm_step_backward_kernel(t, dhs, dh_rec, dc, c, gates, tanh_c, da)
                np.dot(da[:, t], Wh.T, out=dh_rec)  # forward: a_t = ... + h_{t-1} @ Wh
    dx, dWx, dWh, db = _weight_gradients(x, h, da.reshape(B * T, 4 * H), Wx)
    return dx, dh_rec, dc, dWx, dWh, db


# ---------------------------------------------------------------- GRU
def gru_forward(x, h0, Wx, Wh, b):
    """Twin of gru.gru_forward."""
    B, T, _ = x.shape
    H = Wh.shape[0]
    dtype = np.result_type(x.dtype, Wx.dtype)
    bias = _bias(b, dtype)
    h = scratch.empty((B, T + 1, H), dtype)
    gates = scratch.empty((B, T, 3 * H), dtype)
    ha_n = scratch.empty((B, T, H), dtype)
    h[:, 0] = h0
    ha = scratch.empty((B, 3 * H), dtype)
    Whp = pack(Wh)
    src, Wxp, width = _loop_input(x, Wx)
    if Whp.panels is not None and Wxp is not None:
        _run_loop("gru_forward", width, H, src, Wxp, bias, Whp.panels, h, gates, ha_n, scratch.empty((B, 3 * H), dtype), ha)
    else:
        xa = _input_projection(x, Wx)
        xa_t = scratch.empty(ha.shape, dtype)
        with numba_threads(1):  # BLAS has the cores
            for t in range(T):
                np.dot(h[:, t], Wh, out=ha)  # dot: matmul copies this strided view row by row
                xa_t[:] = xa[:, t]  # contiguous rows: the cell's vector loads want them (kernels.lanes)
                K.gru_step_forward_kernel(t, xa_t, bias, ha, h, gates, ha_n)
    return h[:, 1:], GRUCache(x, h, gates, ha_n, Wx, Wh)


def gru_backward(dhs, cache: GRUCache, dh_last=None):
    """Twin of gru.gru_backward."""
    x, h, gates, ha_n, Wx, Wh = cache
    B, T, _ = x.shape
    H = Wh.shape[0]
    dhs = np.ascontiguousarray(dhs, dtype=h.dtype)
    dxa = scratch.empty((B, T, 3 * H), h.dtype)
    dha = scratch.empty((B, T, 3 * H), h.dtype)
    dh_rec = scratch.zeros((B, H), h.dtype)
    dh_direct = _zeros_or(dh_last, B, H, h.dtype)  # the carried-state gradient enters like a direct one
    WhT = pack(Wh.T)
    if WhT.panels is not None:
        _run_loop("gru_backward", _width(x), H, dhs, dh_rec, dh_direct, h, gates, ha_n, dxa, dha, WhT.panels)
    else:
        with numba_threads(1):
            for t in reversed(range(T)):
                K.gru_step_backward_kernel(t, dhs, dh_rec, dh_direct, h, gates, ha_n, dxa, dha)
                np.dot(dha[:, t], Wh.T, out=dh_rec)  # forward: ha = h_prev @ Wh
    dxa2 = dxa.reshape(B * T, 3 * H)
    dx, dWx = _input_gradients(x, dxa2, Wx)
    dWh = matmul(h[:, :T].reshape(B * T, H).T, dha.reshape(B * T, 3 * H))
    db = dxa2.sum(axis=0)
    return dx, dh_direct + dh_rec, dWx, dWh, db


# ---------------------------------------------------------------- affine map (the head)
def linear_forward(x, W, b):
    """Twin of layers.linear_forward."""
    y = _input_projection(x, W)  # (N, M)
    y += b
    return y, LinearCache(x, W)


def linear_backward(dy, cache: LinearCache):
    """Twin of layers.linear_backward."""
    dx, dW = _input_gradients(cache.x, dy, cache.W)  # forward: y = x @ W + b
    db = dy.sum(axis=0)  # (M,)
    return dx, dW, db


def dense_forward(x, W, b, activation="tanh"):
    """Twin of layers.dense_forward: this module's affine map, then the reference activation."""
    a, lin = linear_forward(x, W, b)  # (N, M)
    h = get_activation(activation).forward(a)  # (N, M)
    return h, DenseCache(lin, h, activation)


def dense_backward(dh, cache: DenseCache):
    """Twin of layers.dense_backward."""
    da = get_activation(cache.activation).backward(dh, cache.h)  # forward: h = act(a)
    return linear_backward(da, cache.linear)


# ---------------------------------------------------------------- embedding and loss
def embedding_backward(dx, cache: EmbeddingCache):
    """Twin of layers.embedding_backward."""
    E = dx.shape[-1]
    dW = np.zeros((1, cache.V, E), dtype=dx.dtype)
    K.scatter_rows_kernel(np.ascontiguousarray(cache.ids, dtype=np.int32).reshape(-1, 1), np.ascontiguousarray(dx).reshape(-1, E), dW)
    return dW[0]


def softmax_cross_entropy_forward(logits, targets):
    """Twin of layers.softmax_cross_entropy_forward."""
    logits = np.ascontiguousarray(logits)
    targets = np.ascontiguousarray(targets)
    probs = np.empty_like(logits)
    total = K.softmax_cross_entropy_kernel(logits, targets, probs, np.empty(logits.shape[0]))
    return logits.dtype.type(total / logits.shape[0]), SoftmaxCECache(probs, targets)


def softmax_cross_entropy_backward(dloss, cache: SoftmaxCECache):
    """Twin of layers.softmax_cross_entropy_backward."""
    dlogits = np.empty_like(cache.probs)
    K.softmax_cross_entropy_backward_kernel(cache.probs, cache.targets, float(dloss) / cache.probs.shape[0], dlogits)
    return dlogits


__all__ = [
    "embedding_forward", "embedding_backward", "linear_forward", "linear_backward", "dense_forward", "dense_backward",
    "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
    "rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward", "gru_backward",
]
