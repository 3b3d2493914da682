"""The elementary gates of a computational graph, each a forward/backward pair like charnn.nn's layers.

A gate knows only its own local derivative; backprop multiplies it by the gradient arriving from
above (the chain rule) and passes the product down. Every function works elementwise on floats
or arrays of any shape, so one gate serves a scalar graph (the lessons) or a batch.

    add          out = a + b          da = dout,        db = dout      (a gradient distributor)
    multiply     out = a * b          da = dout * b,    db = dout * a  (a gradient swapper)
    exp          out = e^a            da = dout * out                  (e^a is its own derivative)
    reciprocal   out = 1 / a          da = -dout * out^2               (d(1/a)/da = -1/a^2)

A constant operand (the -1 and +1 of the sigmoid neuron) is an operand whose gradient is dropped.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


def add_forward(a, b):
    """out = a + b -> out, cache (None: the local derivatives are 1 whatever a and b were)."""
    return a + b, None


def add_backward(dout, cache=None):
    """-> da, db: an add gate hands its upstream gradient unchanged to both inputs."""
    return dout, dout  # forward: out = a + b


class MultiplyCache(NamedTuple):
    a: object  # the inputs: each input's local derivative is the other one
    b: object


def multiply_forward(a, b):
    """out = a * b -> out, cache."""
    return a * b, MultiplyCache(a, b)


def multiply_backward(dout, cache: MultiplyCache):
    """-> da, db: each input gets the upstream gradient times the other input."""
    return dout * cache.b, dout * cache.a  # forward: out = a * b


class ExpCache(NamedTuple):
    out: object  # e^a, which is also its derivative


def exp_forward(a):
    """out = e^a -> out, cache."""
    out = np.exp(a)
    return out, ExpCache(out)


def exp_backward(dout, cache: ExpCache):
    """-> da."""
    return dout * cache.out  # forward: out = e^a, and d e^a / da = e^a


class ReciprocalCache(NamedTuple):
    out: object  # 1 / a: the derivative -1/a^2 is -out^2


def reciprocal_forward(a):
    """out = 1 / a -> out, cache."""
    out = 1.0 / a
    return out, ReciprocalCache(out)


def reciprocal_backward(dout, cache: ReciprocalCache):
    """-> da."""
    return -dout * cache.out * cache.out  # forward: out = 1/a, and d(1/a)/da = -1/a^2 = -out^2
