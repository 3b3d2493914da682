"""Feed-forward layers as forward/backward pairs: embedding lookup, affine map, softmax cross-entropy.

Shapes: B batch, T steps, N = B*T rows, V vocabulary, E embedding width, D input width, M output width.

Every function is dtype-generic: training runs in float32, gradient checks call the same code in
float64. Each backward returns gradients in the order of its forward's differentiable arguments.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .activations import get_activation


# ---------------------------------------------------------------- embedding
class EmbeddingCache(NamedTuple):
    ids: np.ndarray  # (B, T) ints in [0, V)
    V: int


def embedding_forward(ids: np.ndarray, W: np.ndarray):
    """x = W[ids]: ids (B, T) ints, W (V, E) -> x (B, T, E), cache."""
    x = W[ids]  # (B, T, E)
    return x, EmbeddingCache(ids, W.shape[0])


def embedding_backward(dx: np.ndarray, cache: EmbeddingCache) -> np.ndarray:
    """dx (..., E), ids of the same leading shape -> dW (V, E): a row used several times collects
    the sum of its gradients."""
    E = dx.shape[-1]
    ids = cache.ids.ravel()  # (N,)
    return one_hot(ids, cache.V, dx.dtype).T @ dx.reshape(len(ids), E)  # forward: x = W[ids] = one_hot(ids) @ W


def one_hot(ids: np.ndarray, V: int, dtype=np.float32) -> np.ndarray:
    """ids (B, T) -> (B, T, V) with a single 1 per row: the classic char-rnn input."""
    x = np.zeros(ids.shape + (V,), dtype=dtype)
    np.put_along_axis(x, ids[..., None], 1, axis=-1)
    return x


# ---------------------------------------------------------------- a first layer's input, as ids
class Embedded(NamedTuple):
    """A recurrent layer's input given as ids into a table, x = table[ids] (B, T, D), which is
    never formed: the layer needs only x @ Wx, and an embedding followed by a linear map is one
    table, (table @ Wx)[ids], with V rows to compute instead of B*T. For one-hot input the table
    is the identity (D = V). The recurrent models feed their first layer this way."""
    ids: np.ndarray  # (B, T) ints in [0, V)
    table: np.ndarray  # (V, D)

    @property
    def shape(self) -> tuple:
        return self.ids.shape + self.table.shape[1:]  # (B, T, D), as x's

    @property
    def dtype(self):
        return self.table.dtype


def input_projection(x, Wx: np.ndarray) -> np.ndarray:
    """xa = x @ Wx for every step at once: x (B, T, D) or Embedded, Wx (D, G) -> xa (B, T, G)."""
    if isinstance(x, Embedded):
        return (x.table @ Wx)[x.ids]  # (B, T, G): x @ Wx = table[ids] @ Wx = (table @ Wx)[ids]
    B, T, D = x.shape
    return (x.reshape(B * T, D) @ Wx).reshape(B, T, -1)  # one GEMM for all steps


def input_projection_backward(dxa: np.ndarray, x, Wx: np.ndarray):
    """dxa (B, T, G) -> dx (B, T, D), or for Embedded x the table's gradient dtable (V, D); dWx (D, G)."""
    if isinstance(x, Embedded):
        dP = embedding_backward(dxa, EmbeddingCache(x.ids, x.table.shape[0]))  # (V, G); forward: xa = P[ids]
        return dP @ Wx.T, x.table.T @ dP  # forward: P = table @ Wx
    B, T, D = x.shape
    dxa2 = dxa.reshape(B * T, -1)  # (N, G)
    return (dxa2 @ Wx.T).reshape(B, T, D), x.reshape(B * T, D).T @ dxa2  # forward: xa = x @ Wx


# ---------------------------------------------------------------- linear
class LinearCache(NamedTuple):
    x: np.ndarray  # (N, D)
    W: np.ndarray  # (D, M)


def linear_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray):
    """y = x @ W + b: x (N, D), W (D, M), b (M,) -> y (N, M), cache."""
    y = x @ W + b  # (N, M)
    return y, LinearCache(x, W)


def linear_backward(dy: np.ndarray, cache: LinearCache):
    """dy (N, M) -> dx (N, D), dW (D, M), db (M,)."""
    dx = dy @ cache.W.T  # (N, D)
    dW = cache.x.T @ dy  # (D, M)
    db = dy.sum(axis=0)  # (M,)
    return dx, dW, db


# ---------------------------------------------------------------- dense = linear + activation
class DenseCache(NamedTuple):
    linear: LinearCache
    h: np.ndarray  # (N, M) post-activation output
    activation: str


def dense_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, activation: str = "tanh"):
    """h = act(x @ W + b): x (N, D) -> h (N, M), cache. The MLP's hidden layer."""
    a, lin = linear_forward(x, W, b)  # (N, M)
    h = get_activation(activation).forward(a)  # (N, M)
    return h, DenseCache(lin, h, activation)


def dense_backward(dh: np.ndarray, cache: DenseCache):
    """dh (N, M) -> dx (N, D), dW (D, M), db (M,)."""
    da = get_activation(cache.activation).backward(dh, cache.h)  # forward: h = act(a)
    return linear_backward(da, cache.linear)


# ---------------------------------------------------------------- inverted dropout
class DropoutCache(NamedTuple):
    mask: np.ndarray | None  # same shape as x: 0 for dropped units, 1/(1-p) for kept ones


def dropout_forward(x: np.ndarray, p: float, rng: np.random.Generator | None):
    """Zero each unit with probability p and scale the survivors by 1/(1-p), so the expected
    activation is unchanged and evaluation (rng=None or p=0) is the identity."""
    if rng is None or p <= 0.0:
        return x, DropoutCache(None)
    mask = (rng.random(x.shape, dtype=np.float32) >= p).astype(x.dtype) / x.dtype.type(1.0 - p)
    return x * mask, DropoutCache(mask)


def dropout_backward(dy: np.ndarray, cache: DropoutCache) -> np.ndarray:
    return dy if cache.mask is None else dy * cache.mask  # forward: y = x * mask


# ---------------------------------------------------------------- softmax cross-entropy
class SoftmaxCECache(NamedTuple):
    probs: np.ndarray  # (N, V) softmax of the logits
    targets: np.ndarray  # (N,) target ids


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """logits (..., V) -> log-probabilities (..., V)."""
    z = logits - logits.max(axis=-1, keepdims=True)  # subtract the row max so exp cannot overflow
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax_cross_entropy_forward(logits: np.ndarray, targets: np.ndarray):
    """Mean negative log-likelihood of the targets, in nats.

    logits (N, V), targets (N,) ints -> loss (scalar), cache. Fused: the softmax is computed once
    and reused by the backward, whose gradient is then simply probs - onehot(targets).
    """
    N = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)  # (N, V); row max subtracted so exp cannot overflow
    e = np.exp(z)  # (N, V)
    s = e.sum(axis=1, keepdims=True)  # (N, 1)
    rows = np.arange(N)
    logp = z[rows, targets] - np.log(s[:, 0])  # (N,) log p(target)
    loss = -logp.mean()
    return loss, SoftmaxCECache(e / s, targets)


def softmax_cross_entropy_backward(dloss, cache: SoftmaxCECache) -> np.ndarray:
    """dloss (scalar, usually 1) -> dlogits (N, V)."""
    N = cache.probs.shape[0]
    dlogits = cache.probs.copy()  # forward: loss = -mean(log softmax(logits)[target])
    dlogits[np.arange(N), cache.targets] -= 1
    dlogits *= dloss / N
    return dlogits
