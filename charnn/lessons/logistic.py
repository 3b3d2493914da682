"""Logistic regression p = sigmoid(x @ W + b) with the cross-entropy loss, written with charnn's
own layers: the affine map is charnn.nn.layers.linear_forward, and the loss is the library's fused
softmax cross-entropy over the two logits (0, a), because softmax((0, a))[1] = sigmoid(a - 0)
(`charnn lesson softmax` shows the identity). So

    loss = -mean(y log p + (1 - y) log(1 - p))      and      dloss/da = (p - y) / N

are exactly what charnn's language models compute over V characters, with V = 2.

Shapes: N points, D features; W (D, 1), b (1,); y (N,) ints in {0, 1}. Parameters and
gradients are dicts with the same keys ("W", "b"), so charnn.train.optim's optimizers update them.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..nn.layers import (linear_backward, linear_forward, softmax_cross_entropy_backward,
                         softmax_cross_entropy_forward)


class LogisticCache(NamedTuple):
    linear: object  # LinearCache of a = x @ W + b
    ce: object  # SoftmaxCECache of the logits (0, a)


def logistic_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, y: np.ndarray):
    """x (N, D), W (D, 1), b (1,), y (N,) -> mean cross-entropy (scalar), p (N,) = P(y = 1), cache."""
    a, lin = linear_forward(x, W, b)  # (N, 1)
    logits = np.concatenate([np.zeros_like(a), a], axis=1)  # (N, 2): softmax((0, a))[1] = sigmoid(a)
    loss, ce = softmax_cross_entropy_forward(logits, y)
    return float(loss), ce.probs[:, 1], LogisticCache(lin, ce)


def logistic_backward(cache: LogisticCache):
    """-> dx (N, D), dW (D, 1), db (1,) of the mean loss."""
    dlogits = softmax_cross_entropy_backward(1.0, cache.ce)  # (N, 2): (softmax - onehot) / N
    return linear_backward(dlogits[:, 1:], cache.linear)  # the first logit is the constant 0: no gradient


def probability(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """p (N,) = sigmoid(x @ W + b): the forward without a loss, for points with no labels."""
    return logistic_forward(x, W, b, np.zeros(len(x), dtype=np.int64))[1]
