"""Lesson 7, sgd: x_{t+1} = x_t - lr * dx, on logistic regression.

The problem: the lecture's neuron p = sigmoid(x0 w0 + x1 w1 + w2) fitted to 40 points of two
overlapping clouds (charnn.lessons.logistic: charnn's linear layer and softmax cross-entropy),
with an L2 penalty (LAMBDA/2) |w|^2 on the weights, the "data loss + regularisation loss" of the
lecture. Gradient descent (charnn.train.optim.SGD) is run at four rates:
  - too small: converges, slowly;
  - good: converges in a few steps;
  - just above 2 / (the largest curvature at the minimum): overshoots and never settles;
  - too large, above 2 / LAMBDA: far from the data only the penalty's curvature LAMBDA is left,
    every step multiplies |w| by |1 - lr LAMBDA| > 1, and the loss grows without bound.
The curvature is measured: the Hessian at the minimum by centred differences of the gradient.
Then momentum and Adam (charnn.train.optim) on the same problem, from the same start.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..train.optim import make_optimizer
from .draw import table
from .jacobian import numerical_jacobian
from .logistic import logistic_backward, logistic_forward

NAME = "sgd"
SUMMARY = "gradient descent on logistic regression: rates, momentum, Adam"

N = 20  # points per class
CENTRES = ((-1.0, -1.0), (1.0, 1.0))  # the two clouds, standard deviation 1
LAMBDA = 0.1  # weight of the L2 penalty (LAMBDA/2) |w|^2 (the bias is not penalised)
SEED = 0
STEPS = 200
RATES = (("too small", 0.1), ("good", 1.0), ("above 2/curvature", 8.0), ("too large", 30.0))
OPTIMIZERS = (("sgd", 0.1), ("momentum", 0.1), ("adam", 0.1))  # compared at the same rate
MINIMUM_STEPS = 2000  # plain gradient descent at the good rate, to find the minimum
CONVERGED = 1e-6  # within this of the minimum's loss counts as converged
DIVERGED = 1e6  # a loss above this (or not finite) counts as diverged: the run stops
SHOWN = (0, 1, 2, 5, 10, 50, 200)  # steps whose loss is printed


class Descent(NamedTuple):
    optimizer: str
    lr: float
    losses: np.ndarray  # (steps + 1,) the loss before each step and after the last; nan after a divergence
    diverged_at: int | None  # the step whose loss passed DIVERGED
    converged_at: int | None  # the first step within CONVERGED of the minimum (and staying there)
    grad_norm: float  # of the final parameters (nan after a divergence)
    theta: np.ndarray  # (3,) the final w0, w1, w2


class SGDResult(NamedTuple):
    minimum: float  # the loss at the minimum
    w: np.ndarray  # (3,) w0, w1, w2 at the minimum
    curvature: float  # the Hessian's largest eigenvalue at the minimum
    curvatures: np.ndarray  # (3,) all its eigenvalues
    rates: dict  # label -> Descent (plain SGD at RATES)
    optimizers: dict  # name -> Descent (OPTIMIZERS)
    steps: int


def clouds(seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """x (2N, 2): N points around each of CENTRES; y (2N,): their class, 0 or 1."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(c, 1.0, (N, 2)) for c in CENTRES])
    return x, np.repeat([0, 1], N)


def params_of(theta: np.ndarray) -> dict:
    """The parameter dict the optimizers update, as views of the flat theta (3,) = (w0, w1, w2)."""
    return {"W": theta[:2].reshape(2, 1), "b": theta[2:]}


def loss_and_grads(params: dict, x: np.ndarray, y: np.ndarray):
    """-> the penalised mean cross-entropy, and its gradients keyed like params."""
    loss, _, cache = logistic_forward(x, params["W"], params["b"], y)
    _, dW, db = logistic_backward(cache)
    W = params["W"]
    return loss + 0.5 * LAMBDA * float((W * W).sum()), {"W": dW + LAMBDA * W, "b": db}


def descend(name: str, lr: float, x, y, steps: int = STEPS, minimum: float | None = None) -> Descent:
    theta = np.zeros(3)
    params = params_of(theta)
    optimizer = make_optimizer(name, params, lr)
    losses = np.full(steps + 1, np.nan)
    diverged = None
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is stopped just below
        for step in range(steps + 1):
            loss, grads = loss_and_grads(params, x, y)
            losses[step] = loss
            if not loss <= DIVERGED:
                diverged = step
                break
            if step < steps:
                optimizer.step(params, grads)
    grad_norm = np.nan if diverged is not None else float(np.sqrt(sum((g * g).sum() for g in grads.values())))
    converged = None
    if minimum is not None and diverged is None:
        far = np.flatnonzero(np.abs(losses - minimum) > CONVERGED)  # steps still away from the minimum
        if far.size == 0:
            converged = 0
        elif far[-1] < steps:  # close from the step after the last far one to the end
            converged = int(far[-1]) + 1
    return Descent(name, lr, losses, diverged, converged, grad_norm, theta)


def run(seed: int = SEED, steps: int = STEPS) -> SGDResult:
    x, y = clouds(seed)
    best = descend("sgd", dict(RATES)["good"], x, y, MINIMUM_STEPS)
    minimum, theta = float(best.losses[-1]), best.theta.copy()
    params = params_of(theta)  # the minimum, which numerical_jacobian perturbs in place
    flat_grad = lambda: np.concatenate([g.ravel() for g in loss_and_grads(params, x, y)[1].values()])
    hessian = numerical_jacobian(flat_grad, theta)  # (3, 3): the gradient's Jacobian
    curvatures = np.linalg.eigvalsh((hessian + hessian.T) / 2)

    rates = {label: descend("sgd", lr, x, y, steps, minimum) for label, lr in RATES}
    optimizers = {name: descend(name, lr, x, y, steps, minimum) for name, lr in OPTIMIZERS}
    return SGDResult(minimum, theta.copy(), float(curvatures[-1]), curvatures, rates, optimizers, steps)


def _loss(v: float) -> str:
    return "-" if np.isnan(v) else f"{v:.4f}" if v < 1e4 else f"{v:.1e}"


def _rows(runs: dict, shown) -> list[list[str]]:
    rows = [["loss at step", "lr"] + [str(s) for s in shown] + ["outcome"]]
    for label, d in runs.items():
        if d.diverged_at is not None:
            outcome = f"diverged at step {d.diverged_at} (loss > {DIVERGED:g})"
        elif d.converged_at is not None:
            outcome = f"converged at step {d.converged_at}"
        else:
            outcome = f"not converged, |grad| {d.grad_norm:.1e}"
        rows.append([label, f"{d.lr:g}"] + [_loss(d.losses[s]) for s in shown] + [outcome])
    return rows


def report(r: SGDResult) -> str:
    shown = [s for s in SHOWN if s <= r.steps]
    out = ["Lesson 7, sgd: gradient descent, x_{t+1} = x_t - lr * dx, and what the learning rate does.", "",
           f"Logistic regression p = sigmoid(x0 w0 + x1 w1 + w2) on {2 * N} points from two overlapping clouds, loss =",
           f"mean cross-entropy + ({LAMBDA:g}/2)(w0^2 + w1^2). Every run starts from w = 0 (loss ln 2).",
           f"The minimum (found by {MINIMUM_STEPS} steps at the good rate): loss {r.minimum:.6f} at "
           f"w = ({r.w[0]:.4f}, {r.w[1]:.4f}, {r.w[2]:.4f}).",
           f"Curvature there (the Hessian's eigenvalues, by finite differences of the gradient): "
           + ", ".join(f"{c:.4f}" for c in r.curvatures) + ".",
           f"Gradient descent is stable near the minimum for lr < 2 / {r.curvature:.4f} = {2 / r.curvature:.2f}; "
           f"far from it only the",
           f"penalty curves the loss ({LAMBDA:g}), and above lr = 2 / {LAMBDA:g} = {2 / LAMBDA:g} every step "
           "overshoots further than the last.", "",
           "Plain SGD (charnn.train.optim.SGD) at four rates:"]
    out += table(_rows(r.rates, shown), right=set(range(1, len(shown) + 2))) + [""]
    out += ["The same problem with momentum (mu 0.9) and Adam (charnn.train.optim.Momentum, Adam), all at lr 0.1:"]
    out += table(_rows(r.optimizers, shown), right=set(range(1, len(shown) + 2))) + [""]
    out += [f"(converged: within {CONVERGED:g} of the minimum's loss from that step on.) charnn trains with Adam by "
            "default, lr 2e-3,",
            "and clips the gradient's norm (train_step, charnn/train/loop.py): a run whose loss becomes NaN or",
            "infinite stops with an error and keeps its last good checkpoint."]
    return "\n".join(out)


def plot(r: SGDResult, path) -> None:
    """Loss above the minimum against the step, for every run (log scale)."""
    from . import figures

    fig = figures.figure(12, 4.5)
    rates, optimizers = fig.subplots(1, 2)
    for ax, runs, title in ((rates, r.rates, "plain SGD at four rates"), (optimizers, r.optimizers, "lr 0.1")):
        for label, d in runs.items():
            ax.plot(np.arange(len(d.losses)), np.maximum(d.losses - r.minimum, 1e-16), label=f"{label} (lr {d.lr:g})")
        ax.set_yscale("log")
        ax.set(title=title, xlabel="step", ylabel="loss - minimum", ylim=(1e-16, 1e7))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    figures.save(fig, path)
