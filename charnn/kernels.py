"""Every numba kernel in charnn, in one module (see STYLE.md, "Numba stays in its lane").

The kernels fuse the elementwise work that numpy would spread over a dozen temporary arrays per
step; matrix products stay with BLAS (numpy's matmul), called by the Python wrappers in fast.py,
which keep the exact signatures of the numpy reference functions. Each kernel's docstring names
its reference; tests/test_kernels.py checks that every pair agrees.

Conventions:
- Recurrent kernels take the whole C-contiguous (B, T, ...) cache arrays plus the step index t,
  so the inner loop over hidden units is unit-stride and vectorises; they write step t in place.
- error_model="numpy": float division by zero gives inf/nan instead of a Python exception check
  per division, which is what lets LLVM vectorise these loops at all.
- No fastmath: it would break isfinite (divergence detection relies on NaN surviving).
- cache=True is safe because every callee lives in this file and no kernel reads a mutable global.
- tanh is a rational approximation (accurate to a few float32 ulp: max relative error 3.6e-7 over
  the whole float range, measured in tests) because math.tanh compiles to a scalar libm call
  that runs ~10x slower than the vectorised loop; sigmoid is computed from it.
- Serial loops only: none of these kernels is large enough per call for threads to pay off, and
  the scatter-adds (embedding gradient) would race.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

JIT = dict(cache=True, error_model="numpy", nogil=True)

# activation codes, in the order of charnn.activations.ACTIVATIONS
TANH, SIGMOID, RELU, LEAKY_RELU, ELU, SOFTPLUS = range(6)
ACTIVATION_CODES = {"tanh": TANH, "sigmoid": SIGMOID, "relu": RELU, "leaky_relu": LEAKY_RELU, "elu": ELU, "softplus": SOFTPLUS}
LEAKY_SLOPE = 0.01


# ---------------------------------------------------------------- scalar functions
@njit(inline="always", error_model="numpy")
def tanh(x):
    """tanh(x) as x P(x^2) / Q(x^2), clamped at |x| = 7.9053 where float32 tanh is already +-1.

    Coefficients: the minimax rational fit used by Eigen's float tanh (generic_fast_tanh_float).
    """
    c = 7.90531110763549805
    x = c if x > c else x
    x = -c if x < -c else x
    x2 = x * x
    p = -2.76076847742355e-16
    p = x2 * p + 2.00018790482477e-13
    p = x2 * p + -8.60467152213735e-11
    p = x2 * p + 5.12229709037114e-08
    p = x2 * p + 1.48572235717979e-05
    p = x2 * p + 6.37261928875436e-04
    p = x2 * p + 4.89352455891786e-03
    q = 1.19825839466702e-06
    q = x2 * q + 1.18534705686654e-04
    q = x2 * q + 2.26843463243900e-03
    q = x2 * q + 4.89352518554385e-03
    return x * p / q


@njit(inline="always", error_model="numpy")
def sigmoid(x):
    return 0.5 + 0.5 * tanh(0.5 * x)  # same identity as the numpy reference: no exp to overflow


@njit(inline="always", error_model="numpy")
def activate(a, code):
    """Reference: charnn.activations.ACTIVATIONS[name].forward."""
    if code == TANH:
        return tanh(a)
    if code == SIGMOID:
        return sigmoid(a)
    if code == RELU:
        return a if a > 0 else 0.0 * a
    if code == LEAKY_RELU:
        return a if a > 0 else LEAKY_SLOPE * a
    if code == ELU:
        return a if a > 0 else math.expm1(a)
    return (a if a > 0 else 0.0 * a) + math.log1p(math.exp(-abs(a)))  # softplus


@njit(inline="always", error_model="numpy")
def activate_grad(h, code):
    """dh/da written from the output h. Reference: charnn.activations.ACTIVATIONS[name].backward."""
    if code == TANH:
        return 1.0 - h * h
    if code == SIGMOID:
        return h * (1.0 - h)
    if code == RELU:
        return 1.0 if h > 0 else 0.0
    if code == LEAKY_RELU:
        return 1.0 if h > 0 else LEAKY_SLOPE
    if code == ELU:
        return 1.0 if h > 0 else h + 1.0
    return -math.expm1(-h)  # softplus: 1 - e^-h


# ---------------------------------------------------------------- vanilla RNN
@njit(**JIT)
def rnn_step_forward_kernel(t, xa, ha, h, code):
    """h[:, t+1] = act(xa[:, t] + ha). xa (B, T, H), ha (B, H) = h[:, t] @ Wh, h (B, T+1, H).
    Reference: rnn.rnn_cell."""
    B, H = ha.shape
    for b in range(B):
        for j in range(H):
            h[b, t + 1, j] = activate(xa[b, t, j] + ha[b, j], code)


@njit(**JIT)
def rnn_step_backward_kernel(t, dhs, dh_rec, h, da, code):
    """da[:, t] = act'(h[:, t+1]) * (dhs[:, t] + dh_rec); dh_rec = da[:, t+1] @ Wh.T from the step
    after. Reference: rnn.rnn_cell_backward."""
    B, H = dh_rec.shape
    for b in range(B):
        for j in range(H):
            da[b, t, j] = activate_grad(h[b, t + 1, j], code) * (dhs[b, t, j] + dh_rec[b, j])


# ---------------------------------------------------------------- LSTM
@njit(**JIT)
def lstm_step_forward_kernel(t, xa, ha, h, c, gates, tanh_c):
    """One LSTM step written into the caches. xa (B, T, 4H) input projections, ha (B, 4H) =
    h[:, t] @ Wh; h, c (B, T+1, H); gates (B, T, 4H) post-activation i, f, o, g; tanh_c (B, T, H).
    Reference: lstm.lstm_cell."""
    B, G = ha.shape
    H = G // 4
    for b in range(B):
        for j in range(H):
            i = sigmoid(xa[b, t, j] + ha[b, j])
            f = sigmoid(xa[b, t, H + j] + ha[b, H + j])
            o = sigmoid(xa[b, t, 2 * H + j] + ha[b, 2 * H + j])
            g = tanh(xa[b, t, 3 * H + j] + ha[b, 3 * H + j])
            c_next = f * c[b, t, j] + i * g
            tc = tanh(c_next)
            gates[b, t, j] = i
            gates[b, t, H + j] = f
            gates[b, t, 2 * H + j] = o
            gates[b, t, 3 * H + j] = g
            c[b, t + 1, j] = c_next
            tanh_c[b, t, j] = tc
            h[b, t + 1, j] = o * tc


@njit(**JIT)
def lstm_step_backward_kernel(t, dhs, dh_rec, dc, c, gates, tanh_c, da):
    """Writes da[:, t] (B, 4H) and replaces dc (B, H) (the gradient of c[:, t+1]) by that of c[:, t].
    dh_rec (B, H) = da[:, t+1] @ Wh.T from the step after. Reference: lstm.lstm_cell_backward."""
    B, H = dc.shape
    for b in range(B):
        for j in range(H):
            i = gates[b, t, j]
            f = gates[b, t, H + j]
            o = gates[b, t, 2 * H + j]
            g = gates[b, t, 3 * H + j]
            tc = tanh_c[b, t, j]
            dh = dhs[b, t, j] + dh_rec[b, j]
            dct = dc[b, j] + dh * o * (1.0 - tc * tc)  # forward: h = o * tanh(c)
            da[b, t, j] = dct * g * i * (1.0 - i)  # forward: c = f*c_prev + i*g
            da[b, t, H + j] = dct * c[b, t, j] * f * (1.0 - f)
            da[b, t, 2 * H + j] = dh * tc * o * (1.0 - o)
            da[b, t, 3 * H + j] = dct * i * (1.0 - g * g)
            dc[b, j] = dct * f


# ---------------------------------------------------------------- GRU
@njit(**JIT)
def gru_step_forward_kernel(t, xa, ha, h, gates, ha_n):
    """One GRU step (reset after the recurrent matmul). xa (B, T, 3H), ha (B, 3H) = h[:, t] @ Wh,
    h (B, T+1, H), gates (B, T, 3H) post-activation r, z, n, ha_n (B, T, H). Reference: gru.gru_cell."""
    B, G = ha.shape
    H = G // 3
    for b in range(B):
        for j in range(H):
            r = sigmoid(xa[b, t, j] + ha[b, j])
            z = sigmoid(xa[b, t, H + j] + ha[b, H + j])
            hn = ha[b, 2 * H + j]
            n = tanh(xa[b, t, 2 * H + j] + r * hn)
            gates[b, t, j] = r
            gates[b, t, H + j] = z
            gates[b, t, 2 * H + j] = n
            ha_n[b, t, j] = hn
            h[b, t + 1, j] = (1.0 - z) * n + z * h[b, t, j]


@njit(**JIT)
def gru_step_backward_kernel(t, dhs, dh_rec, dh_direct, h, gates, ha_n, dxa, dha):
    """Writes dxa[:, t], dha[:, t] (B, 3H) and dh_direct (B, H), the part of dh_prev through z * h_prev.
    The gradient reaching h[:, t+1] is dhs[:, t] + dh_direct (from the step after) + dh_rec
    (= dha[:, t+1] @ Wh.T). Reference: gru.gru_cell_backward."""
    B, H = dh_rec.shape
    for b in range(B):
        for j in range(H):
            r = gates[b, t, j]
            z = gates[b, t, H + j]
            n = gates[b, t, 2 * H + j]
            dh = dhs[b, t, j] + dh_direct[b, j] + dh_rec[b, j]
            da_n = dh * (1.0 - z) * (1.0 - n * n)  # forward: h = (1-z) n + z h_prev ; n = tanh(a_n)
            dr = da_n * ha_n[b, t, j]  # forward: a_n = xa_n + r * ha_n
            da_r = dr * r * (1.0 - r)
            da_z = dh * (h[b, t, j] - n) * z * (1.0 - z)
            dxa[b, t, j] = da_r
            dxa[b, t, H + j] = da_z
            dxa[b, t, 2 * H + j] = da_n
            dha[b, t, j] = da_r
            dha[b, t, H + j] = da_z
            dha[b, t, 2 * H + j] = da_n * r
            dh_direct[b, j] = dh * z


# ---------------------------------------------------------------- softmax cross-entropy
@njit(**JIT)
def softmax_cross_entropy_kernel(logits, targets, probs):
    """Writes softmax(logits) into probs (N, V); returns the summed -log p(target) (float64).
    Reference: layers.softmax_cross_entropy_forward (which returns the mean)."""
    N, V = logits.shape
    total = 0.0
    for n in range(N):
        m = logits[n, 0]
        for v in range(1, V):
            m = max(m, logits[n, v])  # subtract the row max so exp cannot overflow
        s = 0.0
        for v in range(V):
            e = math.exp(logits[n, v] - m)
            probs[n, v] = e
            s += e
        inv = 1.0 / s
        for v in range(V):
            probs[n, v] *= inv
        total -= logits[n, targets[n]] - m - math.log(s)
    return total


@njit(**JIT)
def softmax_cross_entropy_backward_kernel(probs, targets, scale, dlogits):
    """dlogits = scale * (probs - onehot(targets)). Reference: layers.softmax_cross_entropy_backward."""
    N, V = probs.shape
    for n in range(N):
        for v in range(V):
            dlogits[n, v] = scale * probs[n, v]
        dlogits[n, targets[n]] -= scale


# ---------------------------------------------------------------- embedding
@njit(**JIT)
def embedding_backward_kernel(ids, dx, dW):
    """dW[ids[n]] += dx[n] for every row n (serial: rows repeat, so parallel adds would race).
    ids (N,), dx (N, E), dW (V, E) zeroed by the caller. Reference: layers.embedding_backward."""
    N, E = dx.shape
    for n in range(N):
        row = ids[n]
        for e in range(E):
            dW[row, e] += dx[n, e]


# ---------------------------------------------------------------- optimizer
@njit(**JIT)
def adam_kernel(p, g, m, v, beta1, beta2, step_size, v_correction, eps):
    """One Adam update of flat float32 arrays, in place, in a single pass over memory.
    Reference: optim.Adam.step."""
    # constants formed in float64 and rounded once, as numpy does with Python-float scalars
    # (1 - float32(0.999) would be off by 1e-5 relative)
    b1 = p.dtype.type(beta1)
    b2 = p.dtype.type(beta2)
    c1 = p.dtype.type(1.0 - beta1)
    c2 = p.dtype.type(1.0 - beta2)
    lr = p.dtype.type(step_size)
    vc = p.dtype.type(v_correction)
    ep = p.dtype.type(eps)
    for k in range(p.size):
        gk = g[k]
        mk = b1 * m[k] + c1 * gk
        vk = b2 * v[k] + c2 * (gk * gk)
        m[k] = mk
        v[k] = vk
        p[k] -= lr * mk / (math.sqrt(vk) * vc + ep)
