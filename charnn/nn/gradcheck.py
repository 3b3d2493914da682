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


def assert_gradients_match(f: Callable[[], float], analytic, *arrays, tol: float = 1e-7) -> None:
    """Assert each analytic gradient equals the numerical gradient of scalar f() with respect to
    its array (the arrays are paired with `analytic` in order), to max relative error `tol`."""
    for a, x in zip(analytic, arrays):
        err = rel_error(a, numerical_gradient(f, x))
        assert err < tol, f"relative error {err:.2e} >= {tol:g}"
