"""Matrix products for the numba backend: the register tiles of kernels.gemm_kernel, or numpy's
matmul (BLAS), whichever this machine computes faster at the shape (float32 only; float64 always
goes to BLAS). Same results either way, to float32 rounding (tests/test_gemm.py).

Why two: the tiles are compiled by numba for the CPU at hand, at its full vector width, while
numpy's OpenBLAS brings kernels of its own that may be better or worse on a given CPU and shape.
Which one wins is measured once per machine and training shape (calibrate.py, policy.py), never
guessed from flags, and a run uses one of them for all its products.
bench/gemm.py prints both side by side; the measurements are in bench/README.md.

A product whose right-hand side is reused (a recurrent weight, applied at every step) is packed
once: `Wp = pack(Wh)`, then `matmul(h_t, Wp, out=ha)` per step. A product may pack A too (its
MR-row strips, as BLAS libraries do), where the calibration measured that faster: a weight
gradient's A, X.T, is read with a row of X between two k steps.
CHARNN_GEMM=tiles or =blas overrides the calibration (read once, at import); the numpy backend
never uses the tiles. With the tiles, a time loop's threads split each step's products by panels
or the whole sequence by batch rows (kernels.py), as measured per loop (`loop_parts`);
CHARNN_SPLIT=panels or =rows overrides that, and CHARNN_TRAIN_THREADS=n the thread count a
training step runs on (also measured per shape).
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numba
import numpy as np

from ...errors import CharnnError
from . import kernels as K
from . import scratch
from .policy import DEFAULT, SPLITS, TABLE, product_name
from .threads import forced_count

MODES = ("auto", "tiles", "blas")


def _mode(variable: str, modes: tuple) -> str:
    mode = os.environ.get(variable, "auto") or "auto"
    if mode not in modes:
        raise CharnnError(f"{variable} must be one of {', '.join(modes)}, not {mode!r}")
    return mode


MODE = _mode("CHARNN_GEMM", MODES)
SPLIT_MODE = _mode("CHARNN_SPLIT", ("auto",) + SPLITS)
TRAIN_THREADS = forced_count("CHARNN_TRAIN_THREADS")  # None: the count measured for the shape (calibrate.py)


def loop_parts(loop: str, D: int, H: int) -> int:
    """How many batch-row parts a tiles time loop (kernels.<loop>_loop, e.g. "lstm_forward", at
    input width D and hidden width H) runs in: numba's thread count where the rows split is the
    measured (or forced) choice, else 1, which means the loop splits each step's products by panels."""
    split = SPLIT_MODE if SPLIT_MODE != "auto" and TABLE.forced_split is None else TABLE.split(loop, D, H)
    return numba.get_num_threads() if split == "rows" else 1


def use_tiles() -> bool:
    """Whether float32 products go to the tiles now: CHARNN_GEMM's mode, else the measured choice
    of the shape in effect (policy.py)."""
    if MODE != "auto":
        return MODE == "tiles"
    return TABLE.current() == "tiles"


class Packed(NamedTuple):
    """B (K, N) ready for repeated products: its NR-column panels (P, K, NR), or B itself when
    the products go to BLAS."""
    B: np.ndarray
    panels: np.ndarray | None


def pack_panels(B: np.ndarray) -> np.ndarray:
    """B (K, N) float32, any strides -> its NR-column panels (P, K, NR) for the tiles."""
    K_, N = B.shape
    panels = scratch.empty((-(-N // K.NR), K_, K.NR), np.float32)
    K.pack_panels_kernel(B, panels)
    return panels


def pack(B: np.ndarray) -> Packed:
    """B (K, N), any strides -> Packed, for matmul(A, packed): packed for the tiles if they
    compute the products now (use_tiles)."""
    if B.dtype != np.float32 or not use_tiles():
        return Packed(B, None)
    return Packed(B, pack_panels(B))


# While calibrate.py looks for the products whose A could be packed, the tiles' products add their
# (M, K, N, transposed) here under product_name (None otherwise).
products_seen: dict | None = None


def _tiles(A: np.ndarray, panels: np.ndarray, out: np.ndarray) -> None:
    """out = A @ B on the tiles, B packed as panels; A packed first where the table says packing
    runs this product faster (policy.Table.packs). The same bits either way."""
    M, K_ = A.shape
    if M > 1 and out.flags.c_contiguous:
        transposed = A.strides[0] < A.strides[1]  # X.T: a weight gradient's
        name = product_name(M, K_, out.shape[1], transposed)
        if products_seen is not None:
            products_seen[name] = (M, K_, out.shape[1], transposed)
        if TABLE.packs(name):
            K.gemm_packed_strided(A, scratch.empty((-(-M // K.MR), K_, K.MR), np.float32), panels, out)
            return
    K.gemm_strided(A, panels, out)


def matmul(A: np.ndarray, B, out: np.ndarray | None = None) -> np.ndarray:
    """A (M, K) @ B (K, N) -> (M, N), into `out` if given. B is an array or a Packed (a Packed
    with panels goes to the tiles: the choice was made when it was packed)."""
    packed = B if isinstance(B, Packed) else None
    Bm = packed.B if packed is not None else B
    if A.shape[1] != Bm.shape[0]:
        raise ValueError(f"matmul: shapes {A.shape} and {Bm.shape} do not align")
    if out is None:
        out = scratch.empty((A.shape[0], Bm.shape[1]), np.result_type(A, Bm))
    float32 = A.dtype == np.float32 and Bm.dtype == np.float32 and out.dtype == np.float32
    if packed is not None and packed.panels is not None and float32:
        _tiles(A, packed.panels, out)
        return out
    if packed is None and float32 and use_tiles():
        _tiles(A, pack_panels(Bm), out)
        return out
    if out.flags.c_contiguous:
        np.dot(A, Bm, out=out)  # dot, not matmul: matmul copies a strided A row by row
    else:
        out[...] = A @ Bm
    return out


def decisions() -> dict:
    """The choices this machine has measured, by training shape (calibrate.Shape.name: "tiles on
    2 threads, rows split: lstm_forward ids H256, A packed: 256x2048x1024 T"), the one in
    effect now ("in effect": "tiles" or "blas") and, where a measured row applies (no CHARNN_GEMM),
    the name of that row ("shape in effect": the shape being trained, else "default")."""
    choices = {}
    for name, row in sorted(TABLE.known().items()):
        splits = row.get("splits") if isinstance(row.get("splits"), dict) else {}
        rows = [loop for loop, r in sorted(splits.items()) if isinstance(r, dict) and r.get("split") == "rows"]
        packed = row.get("packed") if isinstance(row.get("packed"), dict) else {}
        packs = [product for product, r in sorted(packed.items()) if isinstance(r, dict) and r.get("pack") is True]
        threads = row.get("threads")
        choices[name] = (row["choice"] + (f" on {threads} thread{'s' * (threads > 1)}" if isinstance(threads, int) else "")
                         + (f", rows split: {'; '.join(rows)}" if rows else "") + (f", A packed: {'; '.join(packs)}" if packs else ""))
    choices["in effect"] = MODE if MODE != "auto" else TABLE.current()
    applied = TABLE.active if TABLE.active in choices else DEFAULT if DEFAULT in choices else None
    if MODE == "auto" and applied is not None:
        choices["shape in effect"] = applied
    return choices
