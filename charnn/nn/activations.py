"""Elementwise activations h = act(a), each with its derivative written from the output h.

Every derivative here can be expressed through h alone, so layers cache only post-activation
values (the cheapest form for the backward, and what the LSTM/GRU caches hold too):

    tanh        h = tanh(a)                        dh/da = 1 - h^2
    sigmoid     h = 1 / (1 + e^-a)                 dh/da = h (1 - h)
    relu        h = max(a, 0)                      dh/da = [h > 0]
    leaky_relu  h = a if a > 0 else 0.01 a         dh/da = 1 if h > 0 else 0.01
    elu         h = a if a > 0 else e^a - 1        dh/da = 1 if h > 0 else h + 1
    softplus    h = log(1 + e^a)                   dh/da = sigmoid(a) = 1 - e^-h

At the kink a = 0 of relu / leaky_relu / elu the derivative used is the left one.
All forward formulas are written so no exp can overflow for any finite a.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ..errors import CharnnError

LEAKY_SLOPE = 0.01  # PyTorch's default negative slope


def sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # tanh form: no exp(-a) overflow for a << 0


def softplus(a):
    return np.maximum(a, 0) + np.log1p(np.exp(-np.abs(a)))  # exp of a non-positive number only


def elu(a):
    return np.where(a > 0, a, np.expm1(np.minimum(a, 0)))  # minimum: no exp overflow in the unused branch


class Activation(NamedTuple):
    forward: Callable  # a -> h
    backward: Callable  # (dh, h) -> da


ACTIVATIONS = {
    "tanh": Activation(np.tanh, lambda dh, h: dh * (1.0 - h * h)),
    "sigmoid": Activation(sigmoid, lambda dh, h: dh * h * (1.0 - h)),
    "relu": Activation(lambda a: np.maximum(a, 0), lambda dh, h: dh * (h > 0)),
    "leaky_relu": Activation(lambda a: np.where(a > 0, a, LEAKY_SLOPE * a),
                             lambda dh, h: dh * np.where(h > 0, 1.0, LEAKY_SLOPE).astype(h.dtype)),
    "elu": Activation(elu, lambda dh, h: dh * np.where(h > 0, 1.0, h + 1.0).astype(h.dtype)),
    "softplus": Activation(softplus, lambda dh, h: dh * -np.expm1(-h)),  # 1 - e^-h, accurate for tiny h
}


def get_activation(name: str) -> Activation:
    if name not in ACTIVATIONS:
        raise CharnnError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]
