"""Optimizers and gradient clipping over parameter dicts (gradients share the parameters' keys).

Each optimizer updates the parameters in place and can export / import its state as plain
arrays plus JSON-able scalars, so a checkpoint resumes exactly.
"""
from __future__ import annotations

import numpy as np

from .errors import CharnnError


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most max_norm (0 disables).

    Returns the norm before clipping, so the caller can also detect a non-finite gradient.
    """
    norm = float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())))
    if max_norm > 0 and norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads.values():
            g *= scale
    return norm


class SGD:
    """p <- p - lr * g."""

    name = "sgd"

    def __init__(self, params, lr: float = 2e-3):
        self.lr = lr

    def step(self, params, grads) -> None:
        for k, p in params.items():
            p -= self.lr * grads[k]

    def state_dict(self):
        return {"name": self.name}, {}

    def load_state_dict(self, meta, arrays) -> None:
        pass


class Adam:
    """Adam (Kingma & Ba 2015) with bias correction.

    m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
    p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    """

    name = "adam"

    def __init__(self, params, lr: float = 2e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.t = 0
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.v = {k: np.zeros_like(p) for k, p in params.items()}

    def step(self, params, grads) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step_size = self.lr / (1.0 - b1**self.t)  # bias correction of m folded into the step size
        v_correction = 1.0 / np.sqrt(1.0 - b2**self.t)
        for k, p in params.items():
            g, m, v = grads[k], self.m[k], self.v[k]
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            p -= step_size * m / (np.sqrt(v) * v_correction + self.eps)

    def state_dict(self):
        arrays = {f"m/{k}": a for k, a in self.m.items()}
        arrays.update({f"v/{k}": a for k, a in self.v.items()})
        return {"name": self.name, "t": self.t, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}, arrays

    def load_state_dict(self, meta, arrays) -> None:
        self.t = int(meta["t"])
        self.beta1, self.beta2, self.eps = float(meta["beta1"]), float(meta["beta2"]), float(meta["eps"])
        for k in self.m:
            self.m[k][...] = arrays[f"m/{k}"]
            self.v[k][...] = arrays[f"v/{k}"]


OPTIMIZERS = {"adam": Adam, "sgd": SGD}


def make_optimizer(name: str, params, lr: float):
    if name not in OPTIMIZERS:
        raise CharnnError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, lr=lr)
