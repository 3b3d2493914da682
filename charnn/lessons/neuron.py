"""Lesson 3, neuron: L(w, x) = 1 / (1 + exp(-(x0 w0 + x1 w1 + w2))), the lecture's sigmoid neuron.

First as a graph of elementary gates (charnn.lessons.gates: multiply, add, exp, reciprocal; the
-1 and +1 are constant operands), backpropagated gate by gate. Then in one piece: the whole
chain exp-add-reciprocal is the sigmoid, whose derivative is sigma (1 - sigma), which is how
charnn.nn.activations writes it, and the neuron is charnn's dense layer with a sigmoid
(charnn.nn.layers.dense_forward / dense_backward). Both are checked against centred differences.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..nn.activations import get_activation
from ..nn.gradcheck import numerical_gradient, rel_error
from ..nn.layers import dense_backward, dense_forward
from .draw import table
from .gates import (add_backward, add_forward, exp_backward, exp_forward, multiply_backward, multiply_forward,
                    reciprocal_backward, reciprocal_forward)

NAME = "neuron"
SUMMARY = "a sigmoid neuron as multiply/add/exp/reciprocal gates, gate by gate"

WEIGHTS = (2.0, -3.0, -3.0)  # w0, w1, w2 (the bias): the lecture's numbers
INPUTS = (-1.0, -2.0)  # x0, x1
H = 1e-5  # step of the centred differences
TOLERANCE = 1e-8  # largest relative error that passes
ORDER = ("w0", "x0", "w1", "x1", "w2")  # the inputs, in the order their gradients are listed

# the graph in forward order: node, what it computes, the node it feeds, and the local derivative
# d(that node)/d(this node) that backprop multiplies by
GRAPH = (("w0", "input", "x0*w0", "x0"), ("x0", "input", "x0*w0", "w0"),
         ("w1", "input", "x1*w1", "x1"), ("x1", "input", "x1*w1", "w1"), ("w2", "input", "s", "1"),
         ("x0*w0", "multiply", "sum", "1"), ("x1*w1", "multiply", "sum", "1"),
         ("sum", "add x0*w0 + x1*w1", "s", "1"), ("s", "add sum + w2", "-s", "-1"),
         ("-s", "multiply s by -1", "exp", "exp(-s)"), ("exp", "exp(-s)", "1+exp", "1"),
         ("1+exp", "add 1", "L", "-1/(1+exp)^2"), ("L", "reciprocal 1/(1+exp)", None, None))


class NeuronResult(NamedTuple):
    values: dict  # node -> forward value (GRAPH's nodes and the inputs)
    grads: dict  # node -> dL/dnode, from the gates
    gates: np.ndarray  # (5,) dL/d(w0, x0, w1, x1, w2) from the gates
    sigma: float  # sigmoid(s), from charnn's sigmoid
    local: float  # sigma (1 - sigma): dL/ds in one step
    dense: np.ndarray  # (5,) the same gradient from charnn's dense layer with a sigmoid
    numerical: np.ndarray  # (5,) by centred differences
    gate_error: float  # relative error of `gates` against `numerical`
    dense_error: float  # and of `dense`
    tolerance: float


def neuron_forward(w0, x0, w1, x1, w2):
    """-> L, cache: every node's value and each gate's cache, in GRAPH's order."""
    v, c = {"w0": w0, "x0": x0, "w1": w1, "x1": x1, "w2": w2}, {}
    v["x0*w0"], c["x0*w0"] = multiply_forward(x0, w0)
    v["x1*w1"], c["x1*w1"] = multiply_forward(x1, w1)
    v["sum"], c["sum"] = add_forward(v["x0*w0"], v["x1*w1"])
    v["s"], c["s"] = add_forward(v["sum"], w2)
    v["-s"], c["-s"] = multiply_forward(v["s"], -1.0)
    v["exp"], c["exp"] = exp_forward(v["-s"])
    v["1+exp"], c["1+exp"] = add_forward(v["exp"], 1.0)
    v["L"], c["L"] = reciprocal_forward(v["1+exp"])
    return v["L"], (v, c)


def neuron_backward(dL, cache) -> dict:
    """-> node -> dL/dnode for every node and input, walking GRAPH backwards."""
    _, c = cache
    g = {"L": dL}
    g["1+exp"] = reciprocal_backward(g["L"], c["L"])  # forward: L = 1 / (1+exp)
    g["exp"], _ = add_backward(g["1+exp"], c["1+exp"])  # 1+exp = exp + 1 (the 1 is a constant)
    g["-s"] = exp_backward(g["exp"], c["exp"])  # exp = e^(-s)
    g["s"], _ = multiply_backward(g["-s"], c["-s"])  # -s = s * -1 (the -1 is a constant)
    g["sum"], g["w2"] = add_backward(g["s"], c["s"])  # s = sum + w2
    g["x0*w0"], g["x1*w1"] = add_backward(g["sum"], c["sum"])  # sum = x0*w0 + x1*w1
    g["x0"], g["w0"] = multiply_backward(g["x0*w0"], c["x0*w0"])
    g["x1"], g["w1"] = multiply_backward(g["x1*w1"], c["x1*w1"])
    return g


def run(weights=WEIGHTS, inputs=INPUTS) -> NeuronResult:
    (w0, w1, w2), (x0, x1) = weights, inputs
    L, cache = neuron_forward(w0, x0, w1, x1, w2)
    values, grads = cache[0], neuron_backward(1.0, cache)
    gates = np.array([grads[k] for k in ORDER])

    # in one piece: charnn's dense layer h = sigmoid(x @ W + b), x (1, 2), W (2, 1), b (1,)
    x = np.array([[x0, x1]])
    W, b = np.array([[w0], [w1]]), np.array([w2])
    h, dense_cache = dense_forward(x, W, b, "sigmoid")  # (1, 1)
    dx, dW, db = dense_backward(np.ones_like(h), dense_cache)
    dense = np.array([dW[0, 0], dx[0, 0], dW[1, 0], dx[0, 1], db[0]])
    sigma = float(h[0, 0])
    local = float(get_activation("sigmoid").backward(1.0, sigma))  # sigma (1 - sigma)

    v = np.array([w0, x0, w1, x1, w2], dtype=np.float64)  # (5,) in ORDER, what the differences perturb
    numerical = numerical_gradient(lambda: neuron_forward(*v)[0], v, H)
    return NeuronResult(values, grads, gates, sigma, local, dense, numerical,
                        rel_error(gates, numerical), rel_error(dense, numerical), TOLERANCE)


def report(r: NeuronResult) -> str:
    v, g = r.values, r.grads
    out = ["Lesson 3, neuron: a sigmoid neuron as a graph of elementary gates, backpropagated one gate at a time.", "",
           "L(w, x) = 1 / (1 + exp(-(x0 w0 + x1 w1 + w2)))   at   "
           f"w0 = {v['w0']:g}, x0 = {v['x0']:g}, w1 = {v['w1']:g}, x1 = {v['x1']:g}, w2 = {v['w2']:g}", "",
           "Forward (top to bottom), then backward (bottom to top): each gradient dL/dnode is the gate's local",
           "derivative times the gradient of the node above it.", ""]
    rows = [["node", "computes", "value", "dL/dnode", "= local derivative * gradient above"]]
    for node, gate, feeds, local in GRAPH:
        how = f"{local} * dL/d({feeds})" if feeds else "(the output: dL/dL = 1)"
        rows.append([node, gate, f"{v[node]:.3f}", f"{g[node]:.3f}", how])
    out += table(rows, right={2, 3}) + [""]
    out += [f"In one piece: exp, add 1 and reciprocal together are the sigmoid, sigma(s) = {r.sigma:.4f} at s = {v['s']:g},",
            f"and its derivative is sigma (1 - sigma) = {r.local:.4f} (charnn/nn/activations.py writes it from the output),",
            f"the same number the three gates gave dL/ds one by one ({g['s']:.4f}). The neuron is charnn's dense layer",
            "h = sigmoid(x @ W + b) (charnn/nn/layers.py dense_forward); its dense_backward gives:", ""]
    rows = [["", *ORDER], ["gates"] + [f"{a:.6f}" for a in r.gates], ["dense layer"] + [f"{a:.6f}" for a in r.dense],
            ["numerical"] + [f"{a:.6f}" for a in r.numerical]]
    out += table(rows, right=set(range(1, 6))) + [""]
    for what, err in (("gates", r.gate_error), ("dense layer", r.dense_error)):
        out.append(f"  {what} against centred differences (h = {H:g}): max relative error {err:.1e} "
                   f"(tolerance {r.tolerance:g}): {'ok' if err <= r.tolerance else 'FAIL'}")
    return "\n".join(out)
