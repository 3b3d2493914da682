"""Backends, picked by name: the same layer functions computed two ways.

    numpy   charnn.nn itself, the reference (the specification); numpy only
    numba   charnn.backend.numba: fused kernels compiled by numba, with the same signatures and
            caches. The only place in charnn that imports numba.

    ops = get_backend("numba")
    hs, c_last, cache = ops.lstm_forward(x, h0, c0, Wx, Wh, b)
"""
from __future__ import annotations

from ..errors import CharnnError
from .ops import Backend
from .reference import NUMPY

BACKENDS = ("numba", "numpy")
DEFAULT_BACKEND = "numba"


def get_backend(name: str | Backend) -> Backend:
    """The backend called `name` ("numba" or "numpy"); a Backend is returned as it is."""
    if isinstance(name, Backend):
        return name
    if name == "numpy":
        return NUMPY
    if name == "numba":
        from .numba import NUMBA  # imported on first use: `import charnn` does not load numba

        return NUMBA
    raise CharnnError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
