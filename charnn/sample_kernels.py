"""Batch-1 sampling compiled with numba: one kernel call runs a whole block of characters (every
layer's step, the head, temperature, top-k, softmax and the draw), so no Python runs per character.

The numpy path, `charnn.sampling._generate` (`model.step` then `pick` per character), is the
specification. For the same arguments and generator state `sample_numba` yields the same characters:
the draws are the same float64 uniforms (one per character unless argmax, taken in blocks with
`rng.random(n)`, which gives the same stream as n calls of `rng.random()`), and the pick replicates
`pick`'s arithmetic (float64 z = logits / temperature, top-k by `z >= kth`, exp(z - max), a
sequential float64 cumulative sum, `searchsorted(cdf, u * cdf[-1], side="right")` clamped to V-1).
Only the logits may differ, by float32 rounding (another summation order than BLAS), ~1e-7
relative; a draw flips only if it lands that close to a cumulative boundary. (The rounding
differences in the state stay at that level for trained models and the initialisation; weights
with expanding dynamics can amplify them over thousands of steps, as they would a change of BLAS.)

Shapes: V vocabulary, E embedding width, H hidden width, G gate width (H rnn, 4H lstm, 3H gru),
L layers, K context length (MLP), N characters in a block.

The input projection of layer 0 depends only on the input id, so it is tabulated once per sampling
call with one GEMM and layer 0 needs no input matvec:
    recurrent   x0[v] = embed.W[v] @ layer0.Wx + layer0.b          (V, G); one-hot: layer0.Wx + b
    MLP         x0[j, v] = embed.W[v] @ layer0.W[j*E:(j+1)*E]      (K, V+1, H), so that
                emb(window) @ layer0.W = sum_j x0[j, window[j]]    (concatenation = sum of blocks)

Every @njit function here is cache=True (JIT, as in charnn.kernels), reads no mutable module globals
(only the integer codes) and calls only functions of this file; weights and state are float32
(float64 models are cast on the way in). One function is parallel: `_recurrent_step` can split a
layer's hidden units over threads (see RecurrentNet, prepare and sample_ids for when it pays).
"""
from __future__ import annotations

import os
from time import perf_counter
from typing import Iterator, NamedTuple

import numpy as np
from numba import njit, prange

# error_model="numpy": no Python exception check per float division, so loops with one vectorise
JIT = dict(cache=True, error_model="numpy", nogil=True)

# activation codes, in the order of charnn.activations.ACTIVATIONS (as in charnn.kernels)
TANH, SIGMOID, RELU, LEAKY_RELU, ELU, SOFTPLUS = range(6)
ACTIVATION_CODES = {"tanh": TANH, "sigmoid": SIGMOID, "relu": RELU, "leaky_relu": LEAKY_RELU, "elu": ELU, "softplus": SOFTPLUS}
RNN, LSTM, GRU = range(3)
CELL_CODES = {"rnn": RNN, "lstm": LSTM, "gru": GRU}

FIRST_BLOCK = 8  # characters in the first kernel call, so the first output appears at once
BLOCK = 64  # characters per kernel call after that


# ---------------------------------------------------------------- weights as the kernels see them
class RecurrentNet(NamedTuple):
    """A recurrent model laid out for `_recurrent_sample` (all float32, C-contiguous).

    The hidden units are split into NB blocks of w units, block b holding units [b*w, (b+1)*w) (H
    is padded with zero units to Hp = NB*w when NB > 1). A block's columns are its units' columns of
    every gate, gate-major (i, f, o, g blocks of w for the lstm): GB = gates * w. So one thread's
    share of a layer is one contiguous (Hp, GB) matrix, streamed front to back. Padded units have
    zero rows in every matrix they feed, so they add exact zeros, and two layouts of the same Hp
    compute every logit with the same float32 operations in the same order."""

    cell: int  # RNN, LSTM or GRU
    act: int  # an activation code (the rnn's nonlinearity; unused by lstm / gru)
    x0: np.ndarray  # (NB, V, GB) layer 0's input projection of each id, bias included
    Wx: np.ndarray  # (L-1, NB, Hp, GB) input weights of layers 1..L-1
    b: np.ndarray  # (L-1, NB, GB) biases of layers 1..L-1
    Wh: np.ndarray  # (L, NB, Hp, GB) recurrent weights
    head_W: np.ndarray  # (Hp, V)
    head_b: np.ndarray  # (V,)


class MLPNet(NamedTuple):
    """An MLP model laid out for `_mlp_sample` (all float32, C-contiguous)."""

    act: int  # an activation code
    x0: np.ndarray  # (K, V+1, H) layer 0's contribution of id v at window position j
    W: np.ndarray  # (L-1, H, H) weights of layers 1..L-1
    b: np.ndarray  # (L, H) biases of all layers
    head_W: np.ndarray  # (H, V)
    head_b: np.ndarray  # (V,)


# ---------------------------------------------------------------- kernels: linear algebra
@njit(**JIT)
def _matvec(x, W, out):
    """out = x @ W: x (D,), W (D, M) -> out (M,), float32 accumulation.

    Row k of W is added scaled by x[k], four rows per pass over out: the inner loop runs over
    contiguous memory and vectorises, out is loaded and stored a quarter as often, and W is read
    front to back (hardware prefetchers follow it; they stop at 4 KiB pages, so reading column
    slices of a wide W row by row is several times slower)."""
    D, M = W.shape
    out[:] = 0.0
    k = 0
    while k + 4 <= D:
        x0, x1, x2, x3 = x[k], x[k + 1], x[k + 2], x[k + 3]
        for j in range(M):
            out[j] += x0 * W[k, j] + x1 * W[k + 1, j] + x2 * W[k + 2, j] + x3 * W[k + 3, j]
        k += 4
    while k < D:
        xk = x[k]
        for j in range(M):
            out[j] += xk * W[k, j]
        k += 1


# ---------------------------------------------------------------- kernels: nonlinearities
@njit(**JIT)
def _exp_pos(y):
    """e^y for float32 y in [0, 20] (Cephes expf): y = n ln2 + r with |r| <= ln2 / 2, e^r by a
    polynomial, 2^n exact as the float of the integer 1 << n. Only arithmetic, so loops vectorise."""
    n = np.floor(y * np.float32(1.44269504088896341) + np.float32(0.5))  # round(y / ln2)
    r = y - n * np.float32(0.693359375)  # ln2 in two parts (Cody-Waite): r exact to float32
    r = r - n * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * (r * r) + r + np.float32(1.0)  # e^r
    return p * np.float32(np.int32(1) << np.int32(n))


@njit(**JIT)
def _tanh(a):
    """tanh of a float32 by Cephes tanhf's method, within 1.34 ulp of the exact value for every
    float32 (checked exhaustively; numpy's float32 tanh: 1.37 ulp, numba's np.tanh: 2.19 ulp).
    Written in arithmetic and selects so that the loops over the gates vectorise: numba's np.tanh
    is a scalar call of ~12 ns, which at H = 256 cost as much as the matvecs."""
    x = abs(a)
    x2 = x * x
    s = np.float32(-5.70498872745e-3)  # |a| < 0.625: tanh(x) = x + x^3 P(x^2)
    s = s * x2 + np.float32(2.06390887954e-2)
    s = s * x2 + np.float32(-5.37397155531e-2)
    s = s * x2 + np.float32(1.33314422036e-1)
    s = s * x2 + np.float32(-3.33332819422e-1)
    small = x + x * x2 * s
    e = _exp_pos(np.float32(2.0) * min(x, np.float32(10.0)))  # tanh(10) rounds to 1 in float32
    large = np.float32(1.0) - np.float32(2.0) / (e + np.float32(1.0))  # tanh(x) = 1 - 2 / (e^2x + 1)
    t = np.copysign(small if x < np.float32(0.625) else large, a)  # odd, -0.0 included
    return t if a == a else a  # NaN stays NaN


@njit(**JIT)
def _sigmoid(a):
    """1 / (1 + exp(-a)) in charnn's tanh form (no overflow), float32 in and out."""
    half = np.float32(0.5)
    return half * (np.float32(1.0) + _tanh(half * a))


@njit(**JIT)
def _activate(a, h, act):
    """h = act(a), elementwise, with the formulas of charnn.activations; act is an activation
    code. The branch sits outside the loops."""
    zero = np.float32(0.0)
    if act == TANH:
        for j in range(a.shape[0]):
            h[j] = _tanh(a[j])
    elif act == SIGMOID:
        for j in range(a.shape[0]):
            h[j] = _sigmoid(a[j])
    elif act == RELU:  # max(a, 0)
        for j in range(a.shape[0]):
            h[j] = a[j] if a[j] > zero else zero
    elif act == LEAKY_RELU:  # a if a > 0 else 0.01 a
        slope = np.float32(0.01)
        for j in range(a.shape[0]):
            h[j] = a[j] if a[j] > zero else slope * a[j]
    elif act == ELU:  # a if a > 0 else expm1(min(a, 0))
        for j in range(a.shape[0]):
            h[j] = a[j] if a[j] > zero else np.expm1(a[j])
    else:  # SOFTPLUS: max(a, 0) + log1p(exp(-|a|)), exp of a non-positive number only
        for j in range(a.shape[0]):
            h[j] = max(a[j], zero) + np.log1p(np.exp(-abs(a[j])))


# ---------------------------------------------------------------- kernels: one layer, one step
# Each cell steps one block of w hidden units from its xa = x @ Wx + b and ha = h_prev @ Wh
# (gates * w,) (gate blocks of w, in the cell's gate order): h_prev, h_next, c are the block's
# (w,) views of the state. (Views, not an offset index: with an offset numba cannot see that the
# index is non-negative and the loop no longer vectorises.)
@njit(**JIT)
def _rnn_cell(xa, ha, h_next, act):
    """h_next = act(xa + ha)."""
    for j in range(xa.shape[0]):
        ha[j] = xa[j] + ha[j]  # the pre-activation a, over ha
    _activate(ha, h_next, act)


@njit(**JIT)
def _lstm_cell(xa, ha, c, h_next):
    """charnn.lstm.lstm_cell: gate blocks i, f, o, g; c updated in place."""
    w = xa.shape[0] // 4
    for j in range(w):
        i = _sigmoid(xa[j] + ha[j])
        f = _sigmoid(xa[w + j] + ha[w + j])
        o = _sigmoid(xa[2 * w + j] + ha[2 * w + j])
        g = _tanh(xa[3 * w + j] + ha[3 * w + j])
        c[j] = f * c[j] + i * g
        h_next[j] = o * _tanh(c[j])


@njit(**JIT)
def _gru_cell(xa, ha, h_prev, h_next):
    """charnn.gru.gru_cell: gate blocks r, z, n, the reset applied after the recurrent matmul
    (it scales ha_n)."""
    w = xa.shape[0] // 3
    one = np.float32(1.0)
    for j in range(w):
        r = _sigmoid(xa[j] + ha[j])
        z = _sigmoid(xa[w + j] + ha[w + j])
        n = _tanh(xa[2 * w + j] + r * ha[2 * w + j])
        h_next[j] = (one - z) * n + z * h_prev[j]


# ---------------------------------------------------------------- kernels: the head and the draw
@njit(**JIT)
def _head(h, W, b, logits):
    """logits = h @ W + b: h (H,), W (H, V), b (V,) -> logits (V,)."""
    _matvec(h, W, logits)
    for j in range(logits.shape[0]):
        logits[j] += b[j]


@njit(**JIT)
def _kth_largest(z, k, top):
    """The k-th largest value of z (V,), counting repeats, as np.partition(z, -k)[-k]: an insertion
    sort of the k largest into top (V,) scratch. (Loops, not np.sort: they compile in a fraction
    of the time.)"""
    n = 0  # top[:n] holds the largest values seen so far, descending
    for j in range(z.shape[0]):
        v = z[j]
        if n == k and not v > top[k - 1]:
            continue
        i = n if n < k else k - 1  # the slot freed at the end
        while i > 0 and top[i - 1] < v:
            top[i] = top[i - 1]
            i -= 1
        top[i] = v
        n = min(n + 1, k)
    return top[k - 1]


@njit(**JIT)
def _pick(logits, u, temperature, top_k, argmax, z, top, cdf):
    """charnn.sampling.pick with its uniform draw u in [0, 1) given: logits (V,) float32 -> id.
    top_k <= 0 means no top-k; z, top, cdf (V,) float64 are scratch."""
    V = logits.shape[0]
    if argmax:
        best = 0
        for j in range(1, V):
            if logits[j] > logits[best]:  # strict: the first of equal maxima, as np.argmax
                best = j
        return best
    zmax = -np.inf
    for j in range(V):
        z[j] = np.float64(logits[j]) / temperature
        zmax = max(zmax, z[j])  # the max is always kept, so this is also the max of the kept values
    kth = -np.inf
    if 0 < top_k < V:
        kth = _kth_largest(z, top_k, top)  # ties with it are kept (z >= kth), as in pick
    total = 0.0
    for j in range(V):
        if z[j] >= kth:
            total += np.exp(z[j] - zmax)  # subtracting the max keeps exp finite at low temperature
        cdf[j] = total  # a dropped character adds exp(-inf) = 0: the same sequential cumsum
    target = u * total
    i = 0
    while i < V - 1 and cdf[i] <= target:  # searchsorted(cdf, target, side="right"), clamped to V-1
        i += 1
    return i


# ---------------------------------------------------------------- kernels: whole blocks
@njit(**JIT)
def _layer_block(net, l, x_id, blk, h, c, h_next, xa, ha):
    """Layer l's step for the units of block blk: its xa[blk], ha[blk] (GB,), then the cell.
    h, c (L, Hp) hold the state, h[l - 1] already stepped; writes the block's units of h_next (Hp,)
    and c[l]."""
    xa_b, ha_b = xa[blk], ha[blk]  # (GB,)
    if l == 0:
        xa_b[:] = net.x0[blk, x_id]  # embed.W[x_id] @ Wx0 + b0, tabulated
    else:
        _matvec(h[l - 1], net.Wx[l - 1, blk], xa_b)  # the layer below, already stepped
        for j in range(xa_b.shape[0]):
            xa_b[j] += net.b[l - 1, blk, j]
    _matvec(h[l], net.Wh[l, blk], ha_b)  # h_prev @ Wh
    w = xa_b.shape[0] // (4 if net.cell == LSTM else 3 if net.cell == GRU else 1)
    j0, j1 = blk * w, (blk + 1) * w  # the block's units
    if net.cell == LSTM:
        _lstm_cell(xa_b, ha_b, c[l, j0:j1], h_next[j0:j1])
    elif net.cell == GRU:
        _gru_cell(xa_b, ha_b, h[l, j0:j1], h_next[j0:j1])
    else:
        _rnn_cell(xa_b, ha_b, h_next[j0:j1], net.act)


@njit(parallel=True, **JIT)
def _recurrent_step(net, h, c, x_id, h_next, xa, ha):
    """Advance every layer one step on input id x_id: h, c (L, Hp) in place. With NB > 1 unit
    blocks (xa, ha (NB, GB) scratch, h_next (Hp,)) the blocks of a layer run on parallel threads."""
    NB = xa.shape[0]
    for l in range(h.shape[0]):
        if NB == 1:  # no parallel region to start (~1 us each)
            _layer_block(net, l, x_id, np.int64(0), h, c, h_next, xa, ha)
        else:
            # safe in parallel: block blk writes only xa[blk], ha[blk] and its own units of h_next
            # and c[l]; it reads h[l - 1] (stepped before this loop) and h[l], which no block
            # writes (h_next is copied into h[l] after the loop).
            for blk in prange(NB):
                _layer_block(net, l, x_id, np.int64(blk), h, c, h_next, xa, ha)  # int64: one compile
        for j in range(h.shape[1]):  # a loop, not h[l, :] = h_next: parallel=True would make that
            h[l, j] = h_next[j]  # slice copy a parallel region of its own


@njit(**JIT)
def _recurrent_sample(net, h, c, feed, u, temperature, top_k, argmax, out):
    """Step through feed (M,) ids, then sample N = len(out) ids into out, each step's input the
    previous step's output; u (N,) float64 holds one uniform per sampled id (unused if argmax).
    feed[:-1] only warms the state (prime text); the first id sampled follows feed[-1].
    h, c (L, Hp) float32 are the carried state, updated in place (c unused but for the lstm).
    Returns the logits (V,) of the last step."""
    L, Hp = h.shape
    NB, GB = net.Wh.shape[1], net.Wh.shape[3]
    V = net.head_b.shape[0]
    h_next = np.empty(Hp, dtype=np.float32)
    xa = np.empty((NB, GB), dtype=np.float32)
    ha = np.empty((NB, GB), dtype=np.float32)
    logits = np.empty(V, dtype=np.float32)
    z, top, cdf = np.empty(V), np.empty(V), np.empty(V)
    for t in range(feed.shape[0] - 1):
        _recurrent_step(net, h, c, feed[t], h_next, xa, ha)
    current = feed[feed.shape[0] - 1]
    for t in range(out.shape[0]):
        _recurrent_step(net, h, c, current, h_next, xa, ha)
        _head(h[L - 1], net.head_W, net.head_b, logits)
        current = _pick(logits, u[t], temperature, top_k, argmax, z, top, cdf)
        out[t] = current
    return logits


@njit(**JIT)
def _mlp_step(net, window, x_id, a, h):
    """Shift x_id into window (K,) (the last K ids, padding id V before the text) and run the dense
    layers: h (H,) gets the last layer's output; a (H,) scratch."""
    K = window.shape[0]
    for j in range(K - 1):
        window[j] = window[j + 1]
    window[K - 1] = x_id
    a[:] = 0.0
    for j in range(K):  # emb(window) @ W0 as the sum of the K tabulated blocks
        row = net.x0[j, window[j]]  # (H,)
        for m in range(a.shape[0]):
            a[m] += row[m]
    for m in range(a.shape[0]):
        a[m] += net.b[0, m]
    H = a.shape[0]
    _activate(a, h, net.act)
    for l in range(1, net.b.shape[0]):
        _matvec(h, net.W[l - 1], a)  # (H,) h @ W; a and h are distinct arrays
        for m in range(H):
            a[m] += net.b[l, m]
        _activate(a, h, net.act)


@njit(**JIT)
def _mlp_sample(net, window, feed, u, temperature, top_k, argmax, out):
    """`_recurrent_sample` for the MLP: the carried state is window (K,) int64, updated in place."""
    H = net.b.shape[1]
    V = net.head_b.shape[0]
    a = np.empty(H, dtype=np.float32)
    h = np.empty(H, dtype=np.float32)
    logits = np.empty(V, dtype=np.float32)
    z, top, cdf = np.empty(V), np.empty(V), np.empty(V)
    for t in range(feed.shape[0] - 1):
        _mlp_step(net, window, feed[t], a, h)
    current = feed[feed.shape[0] - 1]
    for t in range(out.shape[0]):
        _mlp_step(net, window, current, a, h)
        _head(h, net.head_W, net.head_b, logits)
        current = _pick(logits, u[t], temperature, top_k, argmax, z, top, cdf)
        out[t] = current
    return logits


# ---------------------------------------------------------------- Python: model -> kernel
def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _stack(arrays, shape) -> np.ndarray:
    """Stack float32 arrays into one C-contiguous array; shape is used when there are none."""
    return _f32(np.stack(arrays)) if arrays else np.zeros(shape, dtype=np.float32)


def _unit_blocks(W, gates: int, n_blocks: int, Hp: int, rows: int | None = None) -> np.ndarray:
    """W (D, gates*H) -> (n_blocks, rows, gates*w), w = Hp / n_blocks: block b holds the columns of
    units [b*w, (b+1)*w) of every gate, gate-major; units past H and rows past D are zero."""
    D, G = W.shape
    H, w = G // gates, Hp // n_blocks
    rows = D if rows is None else rows
    Wp = np.zeros((rows, gates, Hp), dtype=np.float32)
    Wp[:D, :, :H] = W.reshape(D, gates, H)
    return _f32(Wp.reshape(rows, gates, n_blocks, w).transpose(2, 0, 1, 3).reshape(n_blocks, rows, gates * w))


def padded_width(H: int, n_blocks: int) -> int:
    """Hp: H rounded up to n_blocks blocks of whole 64-byte lines (no false sharing between threads)."""
    return H if n_blocks == 1 else -(-H // (16 * n_blocks)) * 16 * n_blocks


def recurrent_net(model, n_blocks: int = 1, Hp: int | None = None) -> RecurrentNet:
    """A RecurrentModel's weights in the kernel's layout: Hp units (H padded with zero units; by
    default padded_width(H, n_blocks)) in n_blocks blocks. Layouts of equal Hp share a state."""
    cfg, p = model.config, model.params
    L, (H, G) = cfg.layers, p["layer0.Wh"].shape
    gates = G // H
    Hp = padded_width(H, n_blocks) if Hp is None else Hp
    GB = gates * Hp // n_blocks
    x0 = (p["embed.W"] @ p["layer0.Wx"] if cfg.embed else p["layer0.Wx"]) + p["layer0.b"]  # (V, G) one GEMM

    def blocks(W, rows=None):
        return _unit_blocks(W, gates, n_blocks, Hp, rows)

    return RecurrentNet(
        cell=CELL_CODES[cfg.model],
        act=ACTIVATION_CODES[cfg.activation],
        x0=blocks(x0),
        Wx=_stack([blocks(p[f"layer{l}.Wx"], Hp) for l in range(1, L)], (0, n_blocks, Hp, GB)),
        b=_stack([blocks(p[f"layer{l}.b"][None])[:, 0] for l in range(1, L)], (0, n_blocks, GB)),
        Wh=_stack([blocks(p[f"layer{l}.Wh"], Hp) for l in range(L)], (0, n_blocks, Hp, GB)),
        head_W=_f32(np.concatenate([p["head.W"], np.zeros((Hp - H, p["head.W"].shape[1]))])),
        head_b=_f32(p["head.b"]),
    )


def mlp_net(model) -> MLPNet:
    """An MLPModel's weights in the kernel's layout."""
    cfg, p = model.config, model.params
    K, E, L = cfg.context, cfg.embed, cfg.layers
    W0, emb = p["layer0.W"], p["embed.W"]  # (K*E, H), (V+1, E)
    H = W0.shape[1]
    x0 = np.stack([emb @ W0[j * E : (j + 1) * E] for j in range(K)])  # (K, V+1, H)
    return MLPNet(
        act=ACTIVATION_CODES[cfg.activation],
        x0=_f32(x0),
        W=_stack([_f32(p[f"layer{l}.W"]) for l in range(1, L)], (0, H, H)),
        b=_stack([_f32(p[f"layer{l}.b"]) for l in range(L)], (0, H)),
        head_W=_f32(p["head.W"]),
        head_b=_f32(p["head.b"]),
    )


PARALLEL_MIN_BYTES = 1 << 20  # recurrent weights from which splitting layers over threads can pay


def parallel_threads() -> int:
    """Threads worth splitting a layer over: numba's thread count if it has a threading layer that
    starts a parallel region in ~1 us (OpenMP, TBB), else 1 (its workqueue fallback takes ~80 us)."""
    import numba

    if numba.config.THREADING_LAYER == "workqueue":
        return 1
    try:
        from numba.np.ufunc import omppool  # noqa: F401
    except ImportError:
        try:
            from numba.np.ufunc import tbbpool  # noqa: F401
        except ImportError:
            return 1
    return numba.get_num_threads()


def cpus_busy(threads: int) -> bool:
    """Whether other tasks are running on the CPUs that `threads` parallel threads would need
    (Linux: the count of runnable tasks in /proc/loadavg, less this one); False where unknown."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            runnable = int(f.read().split()[3].split("/")[0])
        cpus = len(os.sched_getaffinity(0))
    except (OSError, ValueError, IndexError, AttributeError):
        return False
    return runnable - 1 + threads > cpus


def prepare(model, threads: int | None = None):
    """A charnn model -> (kernel, nets, state): for each thread count n in nets, `kernel(nets[n],
    *state, feed, u, temperature, top_k, argmax, out)` samples on n threads, every layout sharing
    the state, which is carried in place from call to call (from the model's initial state).

    threads: 1 serial; n > 1 each recurrent layer's hidden units in n blocks run on parallel threads;
    None: serial and, for recurrent models with at least PARALLEL_MIN_BYTES of weights when numba has
    a fast threading layer and no other task is running on the CPUs, also parallel, to be chosen
    between as they run (see sample_ids). The MLP always runs serially.
    Raises NotImplementedError for a model or activation no kernel covers."""
    cfg = model.config
    if cfg.activation not in ACTIVATION_CODES:
        raise NotImplementedError(f"no numba sampling kernel for activation {cfg.activation!r}")
    if cfg.model in CELL_CODES:
        H = cfg.hidden
        if threads is None:
            streamed = [k for k in model.params if k.endswith(".Wh") or (k.endswith(".Wx") and k != "layer0.Wx")]
            nbytes = 4 * sum(model.params[k].size for k in streamed)  # read every step (layer0.Wx is tabulated)
            n = min(parallel_threads(), max(1, H // 64)) if nbytes >= PARALLEL_MIN_BYTES else 1
            # a parallel region waits for a time slice of every busy CPU it needs: ~100x slower
            counts = (1, n) if n > 1 and not cpus_busy(n) else (1,)
        else:
            counts = (max(1, int(threads)),)
        Hp = padded_width(H, max(counts))
        nets = {n: recurrent_net(model, n, Hp) for n in counts}
        state = (np.zeros((cfg.layers, Hp), dtype=np.float32), np.zeros((cfg.layers, Hp), dtype=np.float32))
        return _recurrent_sample, nets, state
    if cfg.model == "mlp":
        return _mlp_sample, {1: mlp_net(model)}, (np.full(cfg.context, cfg.vocab_size, dtype=np.int64),)
    raise NotImplementedError(f"no numba sampling kernel for model type {cfg.model!r}")


class _Chooser:
    """Run the thread count with the lower measured time per step, and now and then try each other
    count on a short block: first at the third call (the first may compile, the second times the
    default), then at intervals that double while it stays slower, so that the probes cost little.
    Every call updates the cost of its count, so when the best slows down (another process takes a
    core: every parallel region then waits for a time slice, ~100x slower) the switch is at once."""

    def __init__(self, counts, first_gap: int = 8, max_gap: int = 1024):
        self.counts, self.best = list(counts), counts[0]
        self.first_gap, self.max_gap = first_gap, max_gap
        self.cost = {}  # seconds per step, a moving average
        self.gap = {n: first_gap for n in self.counts}  # calls between probes of n
        self.wait = {n: 3 for n in self.counts}  # calls until n is probed

    def next(self) -> int:
        for n in self.counts:
            if n != self.best:
                self.wait[n] -= 1
                if self.wait[n] <= 0:
                    return n
        return self.best

    def is_probe(self, n: int) -> bool:
        return n != self.best

    def record(self, n: int, seconds: float, steps: int) -> None:
        new = seconds / steps
        self.cost[n] = new if n not in self.cost else 0.5 * (self.cost[n] + new)  # smooths the noise
        fastest = min(self.cost, key=self.cost.get)
        if fastest != self.best:  # a probe beat the best, or the best slowed down: switch
            self.wait[self.best], self.gap[self.best] = self.first_gap, self.first_gap
            self.best = fastest
        elif n != self.best:  # a probe that lost: probe it ever less often
            self.wait[n] = self.gap[n]
            self.gap[n] = min(2 * self.gap[n], self.max_gap)


def sample_ids(model, prime_ids, length: int, temperature: float = 1.0, top_k: int | None = None,
               argmax: bool = False, rng: np.random.Generator | None = None, threads: int | None = None,
               first_block: int = FIRST_BLOCK, block: int = BLOCK) -> Iterator[np.ndarray]:
    """Yield the `length` sampled ids as int64 arrays of up to `block` ids (the first of up to
    `first_block`), continuing prime_ids (M,) (M >= 1) from the model's initial state.

    Each block draws its uniforms at once (`rng.random(n)`, none if argmax), so when the iterator
    is exhausted rng is where n single draws would have left it; in between it runs ahead by up to
    one block. threads: see prepare; with a choice, a _Chooser picks by timing the blocks (probes
    of the slower choice run `first_block` characters). The choice never changes the ids: every
    layout computes each logit with the same float32 operations in the same order."""
    kernel, nets, state = prepare(model, threads)
    chooser = _Chooser(sorted(nets))
    V = model.config.vocab_size
    top_k = int(top_k) if top_k is not None and top_k < V else 0  # 0: no top-k (as pick for k >= V)
    temperature, argmax = float(temperature), bool(argmax)
    feed = np.asarray(prime_ids, dtype=np.int64).reshape(-1)
    done, calls = 0, 0
    while done < length:
        threads_now = chooser.next()
        n = min(first_block if calls == 0 or chooser.is_probe(threads_now) else block, length - done)
        u = np.zeros(n) if argmax else rng.random(n)  # (n,) the same stream as n rng.random() calls
        out = np.empty(n, dtype=np.int64)
        t0 = perf_counter()
        kernel(nets[threads_now], *state, feed, u, temperature, top_k, argmax, out)
        if calls > 0:  # the first call may include compiling
            chooser.record(threads_now, perf_counter() - t0, len(feed) - 1 + n)
        yield out
        feed = out[-1:]  # the next block continues from the last id sampled
        done += n
        calls += 1


def sample_numba(model, prime_ids, length: int, temperature: float = 1.0, top_k: int | None = None,
                 argmax: bool = False, rng: np.random.Generator | None = None,
                 threads: int | None = None) -> Iterator[str]:
    """`charnn.sampling._generate` compiled: the same arguments, the same characters yielded one at
    a time (computed a block at a time; see sample_ids)."""
    chars = model.vocab.chars
    for ids in sample_ids(model, prime_ids, length, temperature, top_k, argmax, rng, threads):
        for i in ids.tolist():
            yield chars[i]


def step_logits(model, ids, threads: int = 1) -> np.ndarray:
    """Test hook: the kernel's logits (V,) after stepping ids (M,) from the initial state, to set
    against the last logits of a chain of `model.step` calls."""
    kernel, nets, state = prepare(model, threads)
    feed = np.asarray(ids, dtype=np.int64).reshape(-1)
    return kernel(nets[max(nets)], *state, feed, np.zeros(1), 1.0, 0, True, np.empty(1, dtype=np.int64))
