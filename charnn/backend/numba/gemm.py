"""Matrix products for the numba backend: the AVX-512 register tiles of kernels.gemm_kernel for
float32 on CPUs that have AVX-512, numpy's matmul (BLAS) everywhere else. Same results either way,
to float32 rounding (tests/test_gemm.py).

Why: numba compiles the tiles for the host CPU, while numpy's bundled OpenBLAS may run kernels
for an older instruction set than the CPU has (bench/gemm.py prints both side by side; the
measurements are in bench/README.md). Without AVX-512 the 4 x 64 tile would not fit in the 16
AVX2 registers, and OpenBLAS's own kernels are the right tool.

A product whose right-hand side is reused (a recurrent weight, applied at every step) is packed
once: `Wp = pack(Wh)`, then `matmul(h_t, Wp, out=ha)` per step.
CHARNN_GEMM=blas turns the tiles off (for comparison); the numpy backend never uses them.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from . import kernels as K
from . import scratch


def cpu_flags() -> set[str]:
    """The CPU feature flags the Linux kernel reports (and so has enabled); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


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
    panels = scratch.empty((-(-N // K.NR), K_, K.NR), np.float32)
    K.pack_panels_kernel(B, panels)
    return Packed(B, panels)


def matmul(A: np.ndarray, B, out: np.ndarray | None = None) -> np.ndarray:
    """A (M, K) @ B (K, N) -> (M, N), into `out` if given. B is an array or a Packed."""
    packed = B if isinstance(B, Packed) else None
    Bm = packed.B if packed is not None else B
    if A.shape[1] != Bm.shape[0]:
        raise ValueError(f"matmul: shapes {A.shape} and {Bm.shape} do not align")
    if out is None:
        out = scratch.empty((A.shape[0], Bm.shape[1]), np.result_type(A, Bm))
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
