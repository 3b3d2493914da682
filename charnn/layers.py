"""Feed-forward layers as forward/backward pairs: embedding lookup, affine map, softmax cross-entropy.

Shapes: B batch, T steps, N = B*T rows, V vocabulary, E embedding width, D input width, M output width.

Every function is dtype-generic: training runs in float32, gradient checks call the same code in
float64. Each backward returns gradients in the order of its forward's differentiable arguments.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


# ---------------------------------------------------------------- embedding
class EmbeddingCache(NamedTuple):
    ids: np.ndarray  # (B, T) ints in [0, V)
    V: int


def embedding_forward(ids: np.ndarray, W: np.ndarray):
    """x = W[ids]: ids (B, T) ints, W (V, E) -> x (B, T, E), cache."""
    x = W[ids]  # (B, T, E)
    return x, EmbeddingCache(ids, W.shape[0])


def embedding_backward(dx: np.ndarray, cache: EmbeddingCache) -> np.ndarray:
    """dx (B, T, E) -> dW (V, E)."""
    E = dx.shape[-1]
    dW = np.zeros((cache.V, E), dtype=dx.dtype)
    # forward: x = W[ids]; a row used several times collects the sum of its gradients
    np.add.at(dW, cache.ids.ravel(), dx.reshape(-1, E))
    return dW


def one_hot(ids: np.ndarray, V: int, dtype=np.float32) -> np.ndarray:
    """ids (B, T) -> (B, T, V) with a single 1 per row: the classic char-rnn input."""
    x = np.zeros(ids.shape + (V,), dtype=dtype)
    np.put_along_axis(x, ids[..., None], 1, axis=-1)
    return x


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
