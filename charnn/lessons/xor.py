"""Lesson 1, xor: AND and OR are linearly separable, XOR is not.

Logistic regression p = sigmoid(x1 w1 + x2 w2 + b) draws one straight line through the plane
(p = 0.5 on it). A line splits AND's and OR's four points correctly, but no line splits XOR's:
the best it can do is p = 0.5 everywhere (loss ln 2). Two fixes, both fitted here with the same
optimizer, steps and seed:
  - a feature: with x1*x2 as a third input, XOR = x1 + x2 - 2 x1 x2 is linear;
  - a hidden layer: h = tanh(x @ W + b) (charnn.nn.layers.dense_forward, the MLP model's hidden
    layer) with HIDDEN units learns its own features from x1, x2 alone.

Parameters are named as in charnn's models ("layer0.W", "head.W"), gradients share the keys, and
charnn.train.optim's Adam updates them. Shapes: N = 4 points, D features, H hidden units.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..nn.layers import dense_backward, dense_forward
from ..train.optim import make_optimizer
from .draw import number, regions, side_by_side, table, vector
from .logistic import logistic_backward, logistic_forward

NAME = "xor"
SUMMARY = "AND and OR are linearly separable, XOR is not; a hidden layer learns it"

POINTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)  # (4, 2): x1, x2
TARGETS = {"AND": np.array([0, 0, 0, 1]), "OR": np.array([0, 1, 1, 1]), "XOR": np.array([0, 1, 1, 0])}
HIDDEN = 4  # H, tanh units of the 2-layer network
STEPS = 1000  # full-batch steps of every fit
LR = 0.1  # Adam's learning rate
SEED = 0  # every fit starts from this seed's initialisation
CURVE = (0, 1, 3, 10, 30, 100, 300, 1000)  # steps at which the loss curve is printed
VIEW = (-0.5, 1.5)  # the square the decision regions are drawn over, in x1 and x2
MAP = (9, 17)  # rows x columns of the terminal map: the points 0 and 1 fall on grid lines


class Fit(NamedTuple):
    name: str  # "AND", "OR", "XOR", "XOR + x1*x2", "XOR, 2 layers"
    task: str  # the targets fitted: AND, OR or XOR
    product: bool  # x1*x2 added as a third input
    hidden: int  # H hidden units (0: logistic regression on the inputs)
    params: dict  # layer0.W (D, H), layer0.b (H,) when hidden; head.W (D or H, 1), head.b (1,)
    p: np.ndarray  # (4,) P(y = 1) at the four points after training
    correct: int  # points on the right side of p = 0.5
    losses: np.ndarray  # (STEPS + 1,) the loss before every step and after the last
    map: np.ndarray  # MAP, p over the view (first row: the top, x2 = 1.5)


class XorResult(NamedTuple):
    fits: dict  # name -> Fit, in the order above
    steps: int
    lr: float


def inputs(x: np.ndarray, product: bool) -> np.ndarray:
    """x (N, 2) -> (N, 2) or, with the product feature, (N, 3) = (x1, x2, x1*x2)."""
    return np.concatenate([x, x[:, :1] * x[:, 1:]], axis=1) if product else x


def network_forward(x: np.ndarray, params: dict, y: np.ndarray):
    """x (N, D) -> loss, p (N,), cache: logistic regression on x, or on a tanh hidden layer of x."""
    h, dense = x, None
    if "layer0.W" in params:
        h, dense = dense_forward(x, params["layer0.W"], params["layer0.b"], "tanh")  # (N, H)
    loss, p, head = logistic_forward(h, params["head.W"], params["head.b"], y)
    return loss, p, (dense, head)


def network_backward(cache) -> dict:
    """-> gradients of the loss, keyed like the parameters."""
    dense, head = cache
    grads = {}
    dh, grads["head.W"], grads["head.b"] = logistic_backward(head)  # (N, H or D)
    if dense is not None:
        _, grads["layer0.W"], grads["layer0.b"] = dense_backward(dh, dense)
    return grads


def init(D: int, hidden: int, rng: np.random.Generator) -> dict:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) weights and zero biases, as charnn.config.init_params
    initialises the MLP's dense layers."""
    params = {}
    if hidden:
        params["layer0.W"] = rng.uniform(-1, 1, (D, hidden)) / np.sqrt(D)
        params["layer0.b"] = np.zeros(hidden)
        D = hidden
    params["head.W"] = rng.uniform(-1, 1, (D, 1)) / np.sqrt(D)
    params["head.b"] = np.zeros(1)
    return params


def view_points(shape=MAP) -> np.ndarray:
    """The (rows * cols, 2) grid of (x1, x2) over VIEW, row by row from the top (x2 largest)."""
    rows, cols = shape
    x1 = np.linspace(*VIEW, cols)
    x2 = np.linspace(*VIEW, rows)[::-1]
    g1, g2 = np.meshgrid(x1, x2)
    return np.stack([g1.ravel(), g2.ravel()], axis=1)


def predict(fit: Fit, x: np.ndarray) -> np.ndarray:
    """P(y = 1) (N,) of a fitted model at points x (N, 2)."""
    return network_forward(inputs(x, fit.product), fit.params, np.zeros(len(x), dtype=np.int64))[1]


def fit_one(name: str, task: str, product: bool = False, hidden: int = 0, steps: int = STEPS, lr: float = LR,
        seed: int = SEED) -> Fit:
    """Train one model on the four points by full-batch Adam, the loss recorded at every step."""
    x, y = inputs(POINTS, product), TARGETS[task]
    params = init(x.shape[1], hidden, np.random.default_rng(seed))
    optimizer = make_optimizer("adam", params, lr)
    losses = np.empty(steps + 1)
    for step in range(steps):
        losses[step], _, cache = network_forward(x, params, y)
        optimizer.step(params, network_backward(cache))
    losses[steps], p, _ = network_forward(x, params, y)
    done = Fit(name, task, product, hidden, params, p, int(((p >= 0.5) == y).sum()), losses, None)
    return done._replace(map=predict(done, view_points()).reshape(MAP))


def run(steps: int = STEPS, lr: float = LR, seed: int = SEED) -> XorResult:
    specs = [("AND", "AND", False, 0), ("OR", "OR", False, 0), ("XOR", "XOR", False, 0),
             ("XOR + x1*x2", "XOR", True, 0), ("XOR, 2 layers", "XOR", False, HIDDEN)]
    fits = {name: fit_one(name, task, product, hidden, steps, lr, seed) for name, task, product, hidden in specs}
    return XorResult(fits, steps, lr)


# ---------------------------------------------------------------- the narration
def _marks(fit: Fit) -> dict:
    """Where the four points fall on the terminal map, each shown by its label."""
    rows, cols = MAP
    span = VIEW[1] - VIEW[0]
    out = {}
    for (x1, x2), label in zip(POINTS, TARGETS[fit.task]):
        r = int(round((VIEW[1] - x2) / span * (rows - 1)))
        c = int(round((x1 - VIEW[0]) / span * (cols - 1)))
        out[(r, c)] = str(label)
    return out


def _weights(fit: Fit) -> list[str]:
    p = fit.params
    if not fit.hidden:
        names = "w1 w2 w12" if fit.product else "w1 w2"
        return [f"({names}) = {vector(p['head.W'], '{:6.2f}')}   b = {number(p['head.b'][0], '{:6.2f}')}"]
    return [f"layer0.W = {vector(p['layer0.W'][0], '{:6.2f}')}  (from x1)",
            f"           {vector(p['layer0.W'][1], '{:6.2f}')}  (from x2)",
            f"layer0.b = {vector(p['layer0.b'], '{:6.2f}')}",
            f"head.W   = {vector(p['head.W'], '{:6.2f}')}   head.b = {number(p['head.b'][0], '{:6.2f}')}"]


def report(result: XorResult) -> str:
    f = result.fits
    out = ["Lesson 1, xor: one layer draws one straight line; XOR needs two (or a better feature).", ""]
    rows = [["x1", "x2", "AND", "OR", "XOR"]]
    rows += [[f"{a:.0f}", f"{b:.0f}", *(str(TARGETS[t][i]) for t in ("AND", "OR", "XOR"))] for i, (a, b) in enumerate(POINTS)]
    out += ["The four points and their labels:"] + table(rows, right={0, 1, 2, 3, 4}) + [""]
    out += [f"Logistic regression p = sigmoid(x1 w1 + x2 w2 + b): charnn's linear layer and its softmax",
            f"cross-entropy over two classes. Adam lr {result.lr:g}, {result.steps} full-batch steps, seed {SEED}:", ""]
    for fit in f.values():
        what = (f"{fit.hidden} tanh units, then logistic regression" if fit.hidden
                else "inputs x1, x2, x1*x2" if fit.product else "inputs x1, x2")
        out.append(f"  {fit.name} ({what}):")
        out += ["    " + line for line in _weights(fit)]
        out.append(f"    p at (0,0) (0,1) (1,0) (1,1) = {vector(fit.p, '{:.3f}')}   {fit.correct} of 4 correct, "
                   f"loss {fit.losses[-1]:.4f}")
    xor = f["XOR"]
    out += ["", f"  No line separates XOR: the best logistic regression is p = 0.5 everywhere, loss ln 2 = {np.log(2):.4f}",
            f"  (here {xor.losses[-1]:.4f}, {xor.correct} of 4). With x1*x2 the points are separable; the hidden layer",
            "  learns such features itself.", ""]
    curve = [c for c in CURVE if c <= result.steps]
    rows = [["loss at step"] + [str(c) for c in curve]]
    rows += [[fit.name] + [f"{fit.losses[c]:.4f}" for c in curve] for fit in f.values()]
    out += ["Loss curves:"] + table(rows, right=set(range(1, len(curve) + 1))) + [""]
    maps = [regions(fit.map, _marks(fit)) for fit in f.values()]
    names = list(f)
    out += [f"Decision regions over x1, x2 in [{VIEW[0]}, {VIEW[1]}] (x1 to the right, x2 up): '#' predicts 1,",
            "'.' predicts 0, and the digits are the four points' labels.", ""]
    out += side_by_side(maps[:3], names[:3]) + [""] + side_by_side(maps[3:], names[3:])
    return "\n".join(out)


def plot(result: XorResult, path) -> None:
    """The five decision regions as maps of p, and the loss curves."""
    from . import figures

    fig = figures.figure(12, 7.5)
    axes = fig.subplots(2, 3)
    grid = view_points((101, 101))
    for ax, fit in zip(axes.ravel(), result.fits.values()):
        p = predict(fit, grid).reshape(101, 101)
        ax.imshow(p, extent=(*VIEW, *VIEW), cmap="coolwarm", vmin=0, vmax=1)
        ax.contour(np.linspace(*VIEW, 101), np.linspace(*VIEW, 101)[::-1], p, levels=[0.5], colors="k")
        y = TARGETS[fit.task]
        ax.scatter(POINTS[:, 0], POINTS[:, 1], c=["w" if v == 0 else "k" for v in y], s=90, edgecolors="k")
        ax.set_title(f"{fit.name}: {fit.correct} of 4 (black: label 1)")
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    ax = axes.ravel()[-1]
    for fit in result.fits.values():
        ax.plot(np.arange(1, result.steps + 2), fit.losses, label=fit.name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step + 1")
    ax.set_ylabel("loss (nats)")
    ax.set_title("loss curves")
    ax.legend(fontsize=8)
    figures.save(fig, path)
