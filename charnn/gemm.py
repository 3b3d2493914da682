"""Matrix products for the numba backend: the AVX-512 tiles of kernels.gemm_kernel where they
beat numpy's BLAS, numpy's matmul everywhere else. Same results either way, to float32 rounding.

Why this exists: numpy's bundled OpenBLAS runs its AVX2 ("Haswell") kernels on AMD Zen 4/5 (and
this project's environment pins that choice with OPENBLAS_CORETYPE), about 100 GFLOP/s a core.
numba compiles kernels for the host CPU, so on an AVX-512 machine the register-tiled kernel in
kernels.py runs the same products at 210-270 GFLOP/s a core (bench/gemm.py prints both).
Without AVX-512 its 4 x 64 tile would not fit in the 16 AVX2 registers, and OpenBLAS's own
kernels are the right tool: the tiles are used only when the CPU reports avx512f.

A product whose right-hand side is reused (a recurrent weight, applied at every step) is packed
once: `Wp = pack(Wh)`, then `matmul(h_t, Wp, out=ha)` per step.
CHARNN_GEMM=blas turns the tiles off (for comparison); the numpy backend never uses them.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from . import kernels as K
from . import recycle
from ._blas import cpu_flags


def _tiles_enabled() -> bool:
    choice = os.environ.get("CHARNN_GEMM", "auto")
    return choice != "blas" and "avx512f" in cpu_flags()


TILES = _tiles_enabled()


class Packed(NamedTuple):
    """B (K, N) ready for repeated products: its NR-column panels (P, K, NR), or B itself when
    the tiles are not used (float64, or no AVX-512)."""
    B: np.ndarray
    panels: np.ndarray | None


def pack(B: np.ndarray) -> Packed:
    """B (K, N), any strides -> Packed, for matmul(A, packed)."""
    if not (TILES and B.dtype == np.float32):
        return Packed(B, None)
    K_, N = B.shape
    panels = recycle.empty((-(-N // K.NR), K_, K.NR), np.float32)
    K.pack_panels_kernel(B, panels)
    return Packed(B, panels)


def matmul(A: np.ndarray, B, out: np.ndarray | None = None) -> np.ndarray:
    """A (M, K) @ B (K, N) -> (M, N), into `out` if given. B is an array or a Packed."""
    packed = B if isinstance(B, Packed) else None
    Bm = packed.B if packed is not None else B
    if A.shape[1] != Bm.shape[0]:
        raise ValueError(f"matmul: shapes {A.shape} and {Bm.shape} do not align")
    if out is None:
        out = recycle.empty((A.shape[0], Bm.shape[1]), np.result_type(A, Bm))
    if not (TILES and A.dtype == np.float32 and Bm.dtype == np.float32 and out.dtype == np.float32):
        if out.flags.c_contiguous:
            np.dot(A, Bm, out=out)  # dot, not matmul: matmul copies a strided A row by row
        else:
            out[...] = A @ Bm
        return out
    if packed is None or packed.panels is None:
        packed = pack(Bm)
    K.gemm_kernel(A, packed.panels, out)
    return out


def kernels_cached() -> bool:
    """Whether the product kernel is compiled in this process or in numba's on-disk cache for the
    current kernels.py: False on the first training run after an install, whose first step then
    spends ~15 s compiling (train.py says so). Reads numba's cache index, an internal; if numba
    changes it, the answer is True (the message is then simply not shown)."""
    if not TILES or K.gemm_kernel.overloads:
        return True
    try:
        return bool(K.gemm_kernel._cache._cache_file._load_index())
    except Exception:  # noqa: BLE001  numba internals moved
        return True


def fast_threading() -> bool:
    """Whether numba's parallel loops start quickly here: an OpenMP or TBB threading layer, or a
    single thread. numba's last-resort "workqueue" layer takes ~80 us to start each one, and the
    training loop starts three per recurrent step (measured: LSTM 2x256 at 20k chars/s instead of 56k)."""
    import numba

    from .fast_sampling import parallel_threads

    return numba.get_num_threads() == 1 or parallel_threads() > 1

