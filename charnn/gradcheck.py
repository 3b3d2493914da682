"""Numerical gradient checking: centred finite differences against the hand-written backward.

    df/dx[i] ~= (f(x + h e_i) - f(x - h e_i)) / 2h        error O(h^2)

Run in float64: with h = 1e-5 the truncation error is ~1e-10 and rounding ~1e-11 relative, so a
correct backward agrees to ~1e-8 or better, while a wrong one is off by O(1).
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-5, indices=None) -> np.ndarray:
    """Gradient of the scalar f() with respect to x, which f reads and this perturbs in place.

    indices: optional list of index tuples to check (others are left 0), for large arrays.
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    for idx in indices if indices is not None else np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        f_plus = f()
        x[idx] = old - h
        f_minus = f()
        x[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * h)
    return grad


def rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max |analytic - numeric|, relative to the largest gradient entry of either.

    Scaling by the array's largest entry (not elementwise) keeps entries that are nearly zero
    from reporting huge relative errors that are only rounding noise.
    """
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(n).max(initial=0.0), 1e-12)
    return float(np.abs(a - n).max(initial=0.0) / scale)


def sample_indices(shape, n: int | None, rng: np.random.Generator):
    """All indices of `shape`, or n of them chosen at random (without repeats)."""
    size = int(np.prod(shape))
    if n is None or n >= size:
        return list(np.ndindex(shape))
    flat = rng.choice(size, size=n, replace=False)
    return [np.unravel_index(i, shape) for i in flat]


def random_state(model, B: int, rng: np.random.Generator):
    """A nonzero starting state, so the gradient paths through h0/c0 are exercised too.
    (The MLP's state is integer context ids: random characters instead of padding.)"""
    V = model.config.vocab_size
    return [tuple(0.5 * rng.standard_normal(s.shape) if s.dtype.kind == "f" else rng.integers(0, V + 1, s.shape).astype(s.dtype)
                  for s in layer) for layer in model.initial_state(B)]


def model_gradient_errors(model, ids: np.ndarray, targets: np.ndarray, entries: int | None = None,
                          seed: int = 0, h: float = 1e-5) -> dict[str, float]:
    """Per parameter, the max relative error between model.backward and finite differences of
    the mean loss. The model should hold float64 parameters. With dropout configured, every
    evaluation draws the same masks (a freshly seeded generator each time), so the function
    being differentiated is fixed."""
    rng = np.random.default_rng(seed)
    B = ids.shape[0]
    state = random_state(model, B, rng)
    masks = lambda: np.random.default_rng(seed + 1) if model.config.dropout > 0 else None
    _, cache, _ = model.forward(ids, targets, state, masks())
    grads = model.backward(cache)

    def f():
        return float(model.forward(ids, targets, state, masks())[0])

    errors = {}
    for key, p in model.params.items():
        idx = sample_indices(p.shape, entries, rng)
        num = numerical_gradient(f, p, h, idx)
        ana = np.zeros_like(num)
        for i in idx:
            ana[i] = grads[key][i]
        errors[key] = rel_error(ana, num)
    return errors


def gradcheck_model(model: str = "lstm", activation: str = "tanh", *, vocab_size: int = 8, hidden: int = 6,
                    layers: int = 2, embed: int = 5, context: int = 3, dropout: float = 0.0, batch: int = 3,
                    steps: int = 5, seed: int = 0) -> dict[str, float]:
    """Build a small random float64 model and return, per parameter, the max relative error of
    its analytic gradient against centred finite differences (every entry is checked)."""
    from .data import Vocab
    from .model import CharModel, ModelConfig

    vocab = Vocab([chr(ord("a") + i) for i in range(vocab_size)])
    config = ModelConfig(model, vocab_size, hidden, layers, embed, activation, dropout, context)
    m = CharModel.create(config, vocab, seed=seed, dtype=np.float64, backend="numpy")  # the reference math
    rng = np.random.default_rng(seed + 100)
    ids = rng.integers(0, vocab_size, (batch, steps))
    targets = rng.integers(0, vocab_size, (batch, steps))
    return model_gradient_errors(m, ids, targets, seed=seed)


def assert_gradients_match(f: Callable[[], float], analytic, *arrays, tol: float = 1e-7) -> None:
    """Assert each analytic gradient equals the numerical gradient of scalar f() with respect to
    its array (the arrays are paired with `analytic` in order), to max relative error `tol`."""
    for a, x in zip(analytic, arrays):
        err = rel_error(a, numerical_gradient(f, x))
        assert err < tol, f"relative error {err:.2e} >= {tol:g}"
