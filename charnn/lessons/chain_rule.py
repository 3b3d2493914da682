"""Lesson 2, chain-rule: f(x, y, z) = (x + y) z at x = -2, y = 5, z = -4.

The graph has two gates, q = x + y and f = q z. Forward: q = 3, f = -12. Backward, from f down,
each gradient is the gate's local derivative times the gradient arriving from above:
df/dz = q = 3, df/dq = z = -4, and the add gate passes df/dq to both inputs: df/dx = df/dy = -4.
Then the same three numbers from centred finite differences (charnn.nn.gradcheck).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..nn.gradcheck import numerical_gradient, rel_error
from .gates import add_backward, add_forward, multiply_backward, multiply_forward

NAME = "chain-rule"
SUMMARY = "f = (x + y) z at (-2, 5, -4): forward, backward, finite differences"

POINT = (-2.0, 5.0, -4.0)  # x, y, z: the lecture's numbers
H = 1e-5  # step of the centred differences
TOLERANCE = 1e-8  # largest relative error of the numerical check that passes


class ChainRuleResult(NamedTuple):
    x: float
    y: float
    z: float
    q: float  # x + y
    f: float  # q z
    df_dz: float
    df_dq: float
    df_dx: float
    df_dy: float
    numerical: np.ndarray  # (3,) df/dx, df/dy, df/dz by centred differences
    rel_error: float  # of (df/dx, df/dy, df/dz) against `numerical`
    tolerance: float


def f_forward(x, y, z):
    """-> f, q, and the two gates' caches."""
    q, add_cache = add_forward(x, y)
    f, mul_cache = multiply_forward(q, z)
    return f, q, (add_cache, mul_cache)


def f_backward(df, caches):
    """-> df/dq, df/dx, df/dy, df/dz, walking the graph from its output."""
    add_cache, mul_cache = caches
    dq, dz = multiply_backward(df, mul_cache)  # forward: f = q * z
    dx, dy = add_backward(dq, add_cache)  # forward: q = x + y
    return dq, dx, dy, dz


def run(point=POINT) -> ChainRuleResult:
    x, y, z = point
    f, q, caches = f_forward(x, y, z)
    dq, dx, dy, dz = f_backward(1.0, caches)
    v = np.array(point, dtype=np.float64)  # (3,) what the finite differences perturb
    numerical = numerical_gradient(lambda: f_forward(*v)[0], v, H)
    err = rel_error(np.array([dx, dy, dz]), numerical)
    return ChainRuleResult(x, y, z, q, f, dz, dq, dx, dy, numerical, err, TOLERANCE)


def _n(v: float) -> str:
    return f"{v:g}" if v >= 0 else f"({v:g})"


def _graph(r: ChainRuleResult) -> list[str]:
    """The graph in characters: each gate under the '+' corners of the wires that feed it."""
    top = f"    x = {r.x:>3g} ---+"  # its '+' is the column of the add gate
    add = top.index("+")
    middle = " " * (add - 1) + f"(+)--- q = {r.q:g} ---+"
    mul = len(middle) - 1  # the column of the multiply gate
    return [top, middle,
            f"    y = {r.y:>3g} ---+".ljust(mul - 1) + f"(*)--- f = {r.f:g}",
            f"    z = {r.z:>3g} ".ljust(mul, "-") + "+"]


def report(r: ChainRuleResult) -> str:
    out = ["Lesson 2, chain-rule: backpropagation is the chain rule, applied one gate at a time.", "",
           f"f(x, y, z) = (x + y) * z at x = {r.x:g}, y = {r.y:g}, z = {r.z:g}, as a graph of two gates:", "",
           *_graph(r), "",
           "Forward, inputs to output:",
           f"  q = x + y = {_n(r.x)} + {_n(r.y)} = {r.q:g}",
           f"  f = q * z = {_n(r.q)} * {_n(r.z)} = {r.f:g}", "",
           "Backward, output to inputs: each gradient is the gate's local derivative times the gradient from above.",
           "  df/df = 1",
           f"  df/dz = q * df/df = {r.df_dz:g}                  (a multiply gate gives each input the other input)",
           f"  df/dq = z * df/df = {r.df_dq:g}",
           f"  df/dx = dq/dx * df/dq = 1 * {_n(r.df_dq)} = {r.df_dx:g}    (an add gate passes the gradient on to both inputs)",
           f"  df/dy = dq/dy * df/dq = 1 * {_n(r.df_dq)} = {r.df_dy:g}", "",
           f"Checked by centred differences (f(v + h) - f(v - h)) / 2h, h = {H:g} (charnn.nn.gradcheck.numerical_gradient):"]
    for name, ana, num in zip(("x", "y", "z"), (r.df_dx, r.df_dy, r.df_dz), r.numerical):
        out.append(f"  df/d{name}  backprop {ana:10.6f}   numerical {num:10.6f}")
    ok = "ok" if r.rel_error <= r.tolerance else "FAIL"
    out += [f"  max relative error {r.rel_error:.1e} (tolerance {r.tolerance:g}): {ok}", "",
            "charnn's layers are built the same way: linear_backward (charnn/nn/layers.py) is the multiply",
            "gate for matrices (dx = dy @ W.T, dW = x.T @ dy), and the bias gradient db = dy.sum(0) is the add gate's."]
    return "\n".join(out)
