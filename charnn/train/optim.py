"""Optimizers and gradient clipping over parameter dicts (gradients share the parameters' keys).

Each optimizer updates the parameters in place and can export / import its state as plain
arrays plus JSON-able scalars, so a checkpoint resumes exactly. Every optimizer reads its public
`lr` attribute inside step(), so a trainer can set it before each step to follow a schedule
(see schedule.py). Adam's elementwise update comes from the backend (charnn.nn.optim.adam_update
or its compiled twin); the others are written here.

    sgd        p <- p - lr g
    momentum   heavy-ball momentum, PyTorch's convention (nesterov: its look-ahead variant)
    adagrad    Karpathy's min-char-rnn
    rmsprop    torch/optim's rmsprop with char-rnn's settings
    adam       Kingma & Ba, with bias correction

In the equations g is the gradient, p the parameter; state arrays have the parameter's shape and
dtype, and all arithmetic is elementwise.
"""
from __future__ import annotations

from functools import partial

import math

import numpy as np

from ..backend import Backend
from ..errors import CharnnError
from ..nn.optim import adam_update


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most max_norm (0 disables).

    Returns the norm before clipping, so the caller can also detect a non-finite gradient.
    """
    # einsum, not np.vdot: vdot is a BLAS call, and OpenBLAS's worker threads then spin for tens of
    # milliseconds, taking a core from the numba backend's threads in the next step
    norm = float(np.sqrt(sum(float(np.einsum("i,i", g.ravel(), g.ravel())) for g in grads.values())))
    if max_norm > 0 and norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads.values():
            g *= scale
    return norm


class SGD:
    """p <- p - lr * g."""

    name = "sgd"
    slots = 0  # state arrays of each parameter's size

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
    slots = 2  # state arrays of each parameter's size

    def __init__(self, params, lr: float = 2e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 update=adam_update):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.update = update  # charnn.nn.optim.adam_update, or a backend's twin
        if update is not adam_update and not all(p.flags.c_contiguous for p in params.values()):
            raise CharnnError("a compiled Adam updates flat views of the parameters: they must be C-contiguous")
        self.t = 0
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.v = {k: np.zeros_like(p) for k, p in params.items()}

    def step(self, params, grads) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step_size = self.lr / (1.0 - b1**self.t)  # bias correction of m folded into the step size
        v_correction = 1.0 / math.sqrt(1.0 - b2**self.t)  # a Python float keeps the update in float32
        for k, p in params.items():
            self.update(p, grads[k], self.m[k], self.v[k], b1, b2, step_size, v_correction, self.eps)

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


class Momentum:
    """SGD with momentum, in PyTorch's convention (torch.optim.SGD, dampening 0).

    v <- mu v + g
    p <- p - lr v                 (nesterov=False, heavy ball)
    p <- p - lr (g + mu v)        (nesterov=True, with the v just updated)

    v starts at zero, so the first step is plain SGD in both forms. The lr multiplies v when
    it is applied rather than when it is accumulated, so a scheduled lr change takes effect at
    once instead of fading in through v. The name is "nesterov" when nesterov=True, so a saved
    state reloads as the same optimizer.
    """

    name = "momentum"
    slots = 1  # state arrays of each parameter's size

    def __init__(self, params, lr: float = 1e-2, mu: float = 0.9, nesterov: bool = False):
        self.lr, self.mu, self.nesterov = lr, mu, bool(nesterov)
        self.name = "nesterov" if self.nesterov else "momentum"
        self.v = {k: np.zeros_like(p) for k, p in params.items()}

    def step(self, params, grads) -> None:
        lr, mu = self.lr, self.mu
        for k, p in params.items():
            g, v = grads[k], self.v[k]
            v *= mu
            v += g
            if self.nesterov:
                p -= lr * (g + mu * v)
            else:
                p -= lr * v

    def state_dict(self):
        return {"name": self.name, "mu": self.mu, "nesterov": self.nesterov}, {f"v/{k}": a for k, a in self.v.items()}

    def load_state_dict(self, meta, arrays) -> None:
        self.mu, self.nesterov = float(meta["mu"]), bool(meta["nesterov"])
        self.name = "nesterov" if self.nesterov else "momentum"
        for k in self.v:
            self.v[k][...] = arrays[f"v/{k}"]


class Adagrad:
    """Adagrad as in Karpathy's min-char-rnn.py: the squared gradients are summed, never decayed.

    mem <- mem + g^2
    p   <- p - lr g / sqrt(mem + eps)       eps = 1e-8, inside the square root as in min-char-rnn

    The effective step only shrinks, so Adagrad tolerates a large lr (min-char-rnn uses 1e-1).
    """

    name = "adagrad"
    slots = 1  # state arrays of each parameter's size

    def __init__(self, params, lr: float = 1e-1, eps: float = 1e-8):
        self.lr, self.eps = lr, eps
        self.mem = {k: np.zeros_like(p) for k, p in params.items()}

    def step(self, params, grads) -> None:
        for k, p in params.items():
            g, mem = grads[k], self.mem[k]
            mem += g * g
            p -= self.lr * g / np.sqrt(mem + self.eps)

    def state_dict(self):
        return {"name": self.name, "eps": self.eps}, {f"mem/{k}": a for k, a in self.mem.items()}

    def load_state_dict(self, meta, arrays) -> None:
        self.eps = float(meta["eps"])
        for k in self.mem:
            self.mem[k][...] = arrays[f"mem/{k}"]


class RMSprop:
    """RMSprop as char-rnn runs it: torch/optim's rmsprop.lua with char-rnn's settings.

    m <- alpha m + (1 - alpha) g^2
    p <- p - lr g / (sqrt(m) + eps)         eps outside the square root, as in rmsprop.lua

    alpha = 0.95 is char-rnn's -decay_rate default (passed to optim.rmsprop as alpha; the
    library's own default is 0.99) and eps = 1e-8 is rmsprop.lua's default, which char-rnn keeps.
    m starts at zero with no bias correction, so the first steps are large: lr / sqrt(1 - alpha)
    per unit-sign gradient, about 4.5 lr.
    """

    name = "rmsprop"
    slots = 1  # state arrays of each parameter's size

    def __init__(self, params, lr: float = 2e-3, alpha: float = 0.95, eps: float = 1e-8):
        self.lr, self.alpha, self.eps = lr, alpha, eps
        self.m = {k: np.zeros_like(p) for k, p in params.items()}

    def step(self, params, grads) -> None:
        alpha = self.alpha
        for k, p in params.items():
            g, m = grads[k], self.m[k]
            m *= alpha
            m += (1.0 - alpha) * (g * g)
            p -= self.lr * g / (np.sqrt(m) + self.eps)

    def state_dict(self):
        return {"name": self.name, "alpha": self.alpha, "eps": self.eps}, {f"m/{k}": a for k, a in self.m.items()}

    def load_state_dict(self, meta, arrays) -> None:
        self.alpha, self.eps = float(meta["alpha"]), float(meta["eps"])
        for k in self.m:
            self.m[k][...] = arrays[f"m/{k}"]


# name -> constructor taking (params, lr=...). Each optimizer's state_dict()["name"] is its key here.
OPTIMIZERS = {
    "adagrad": Adagrad,
    "adam": Adam,
    "momentum": Momentum,
    "nesterov": partial(Momentum, nesterov=True),
    "rmsprop": RMSprop,
    "sgd": SGD,
}
OPTIMIZER_SLOTS = {name: getattr(make, "func", make).slots for name, make in OPTIMIZERS.items()}


def make_optimizer(name: str, params, lr: float, ops: Backend | None = None):
    """Build the optimizer called `name` (a key of OPTIMIZERS) over params, with learning rate lr;
    ops: the backend whose update rules it uses (default: the reference ones)."""
    if name not in OPTIMIZERS:
        raise CharnnError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    if name == "adam" and ops is not None:  # the one optimizer with a fused kernel: the default one
        return Adam(params, lr=lr, update=ops.adam_update)
    return OPTIMIZERS[name](params, lr=lr)


def decay_weights(params: dict[str, np.ndarray], lr: float, weight_decay: float) -> None:
    """Decoupled weight decay (AdamW, Loshchilov & Hutter 2019), before the optimizer's update:

        p <- p - lr * weight_decay * p      for every matrix (ndim >= 2: embed.W, Wx, Wh, head.W)

    Biases are not decayed (nanoGPT's and PyTorch's usual grouping). Decoupled means the decay
    is not added to the gradient, so Adam's per-weight scaling does not shrink it; PyTorch's AdamW
    multiplies by (1 - lr * weight_decay) the same way, then takes the Adam step."""
    if weight_decay == 0:
        return
    for p in params.values():
        if p.ndim >= 2:
            p *= p.dtype.type(1.0 - lr * weight_decay)  # in the parameter's dtype: float32 stays float32


class WeightAverage:
    """An exponential moving average of the weights, debiased as Adam debiases its first moment:

        m_t   = d m_{t-1} + (1 - d) p_t,    m_0 = 0          (p_t: the weights after update t)
        ema_t = m_t / (1 - d^t)  =  sum_{s=1..t} (1 - d) d^(t-s) p_s / (1 - d^t)

    so ema_t is a true weighted average of the weights after every update so far (the weights sum
    to 1), recent ones counting most, and early random weights fade out without a warm-up rule.
    d = 0.999 averages over roughly the last 1 / (1 - d) = 1000 updates.
    """

    def __init__(self, params: dict[str, np.ndarray], decay: float):
        if not 0.0 < decay < 1.0:
            raise CharnnError(f"ema decay must be between 0 and 1 (exclusive), got {decay!r}")
        self.decay = float(decay)
        self.t = 0
        self.m = {k: np.zeros_like(p) for k, p in params.items()}

    def update(self, params: dict[str, np.ndarray]) -> None:
        self.t += 1
        d = self.decay
        for k, p in params.items():
            m = self.m[k]
            m *= m.dtype.type(d)
            m += m.dtype.type(1.0 - d) * p  # forward: m_t = d m_{t-1} + (1 - d) p_t

    def averaged(self) -> dict[str, np.ndarray]:
        """The averaged weights ema_t, as new arrays in the parameters' dtype (after at least one update)."""
        if self.t == 0:
            raise CharnnError("no weights have been averaged yet (update() first)")
        correction = 1.0 / (1.0 - self.decay**self.t)
        return {k: (m * m.dtype.type(correction)) for k, m in self.m.items()}

    def state_dict(self):
        return {"decay": self.decay, "t": self.t}, dict(self.m)

    def load_state_dict(self, meta, arrays) -> None:
        self.decay, self.t = float(meta["decay"]), int(meta["t"])
        for k in self.m:
            self.m[k][...] = arrays[k]
