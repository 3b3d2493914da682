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
    """A first layer's input given as ids into a table: each row of x is the table rows of its K
    ids side by side, ids (..., K) -> x (..., K*D). x is never formed: the layer needs only x @ W,
    and an embedding followed by a linear map is one table per slot k, table @ W_k (V, G), where
    W_k are W's rows for slot k; so x @ W = sum over k of (table @ W_k)[ids[..., k]], with K*V rows
    to compute instead of one per row of x. The recurrent models feed their first layer this way
    with K = 1 (the identity is the table for one-hot input, D = V), the MLP its context of K."""
    ids: np.ndarray  # (..., K) ints in [0, V)
    table: np.ndarray  # (V, D)

    @property
    def shape(self) -> tuple:
        return self.ids.shape[:-1] + (self.ids.shape[-1] * self.table.shape[1],)  # (..., K*D), as x's

    @property
    def dtype(self):
        return self.table.dtype


def slot_weights(x: Embedded, W: np.ndarray) -> np.ndarray:
    """W (K*D, G) -> (K, D, G): W_k, the rows that multiply slot k's table row."""
    return W.reshape(x.ids.shape[-1], x.table.shape[1], W.shape[1])


def input_projection(x, W: np.ndarray) -> np.ndarray:
    """xa = x @ W for every row at once: x (..., D) or Embedded, W (D, G) -> xa (..., G)."""
    if isinstance(x, Embedded):
        P = x.table @ slot_weights(x, W)  # (K, V, G): P[k] = table @ W_k
        return sum(P[k][x.ids[..., k]] for k in range(len(P)))  # (..., G): x @ W = sum_k table[ids_k] @ W_k
    return (x.reshape(-1, x.shape[-1]) @ W).reshape(x.shape[:-1] + W.shape[1:])  # one GEMM for all rows


def input_projection_backward(dxa: np.ndarray, x, W: np.ndarray):
    """dxa (..., G) -> dx (..., D), or for Embedded x the table's gradient dtable (V, D); dW (D, G)."""
    G = W.shape[1]
    dxa2 = dxa.reshape(-1, G)  # (N, G)
    if isinstance(x, Embedded):
        ids2, V = x.ids.reshape(len(dxa2), -1), x.table.shape[0]  # (N, K)
        # forward: xa = sum_k P[k][ids_k], so P[k] collects the rows of dxa by slot k's ids
        dP = np.stack([embedding_backward(dxa2, EmbeddingCache(ids2[:, k], V)) for k in range(ids2.shape[1])])  # (K, V, G)
        Wk = slot_weights(x, W)  # (K, D, G)
        dtable = sum(dP[k] @ Wk[k].T for k in range(len(dP)))  # (V, D); forward: P[k] = table @ W_k
        return dtable, (x.table.T @ dP).reshape(W.shape)  # dW_k = table.T @ dP[k]
    D = x.shape[-1]
    return (dxa2 @ W.T).reshape(x.shape), x.reshape(-1, D).T @ dxa2  # forward: xa = x @ W


# ---------------------------------------------------------------- linear
class LinearCache(NamedTuple):
    x: object  # (N, D), or Embedded
    W: np.ndarray  # (D, M)


def linear_forward(x, W: np.ndarray, b: np.ndarray):
    """y = x @ W + b: x (N, D) (or Embedded: the MLP's first layer), W (D, M), b (M,) -> y (N, M), cache."""
    y = input_projection(x, W) + b  # (N, M)
    return y, LinearCache(x, W)


def linear_backward(dy: np.ndarray, cache: LinearCache):
    """dy (N, M) -> dx (N, D) (for Embedded x: dtable (V, E)), dW (D, M), db (M,)."""
    dx, dW = input_projection_backward(dy, cache.x, cache.W)  # forward: y = x @ W + b
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
