"""What this CPU can do at best, for reading the other benchmarks: one JSON line each.

    python bench/peak.py

- "fma": charnn's own product tile (kernels._gemm_tile) run over and over on a B panel that stays
  in cache, so nothing but its fused multiply-adds limits it: the ceiling of the tiles' GFLOP/s
  here, on 1 thread and on all of numba's (a VM's "cores" may share one physical core's units).
- "memory": bytes per second one thread reads (a vectorised sum), all of numba's threads read
  together (each its own part of the array), and numpy copies, from arrays of growing size:
  batch-1 sampling reads every weight once per character, its threads each their own part, so
  its speed is bounded by the read rate at the model's weight size.
"""
from __future__ import annotations

import json
import time

import numba
import numpy as np
from numba import njit, prange

from charnn.backend.numba import kernels as K
from charnn.backend.numba.target import describe

CONTRACT = {"contract"}


@njit(fastmath=CONTRACT, error_model="numpy")
def _tiles(A, Bp, C, reps):
    for _ in range(reps):
        K._gemm_tile(A, Bp, 0, 0, K.MR, 0, A.shape[1], C, K.NR)


@njit(parallel=True, fastmath=CONTRACT, error_model="numpy")
def _tiles_parallel(A, Bp, C, reps):
    for t in prange(C.shape[0]):
        for _ in range(reps):
            K._gemm_tile(A, Bp, 0, 0, K.MR, 0, A.shape[1], C[t], K.NR)


@njit(fastmath=True)
def _read(a):  # a vectorised sum in any order: as fast as the memory delivers
    s = np.float32(0.0)
    for i in range(a.size):
        s += a[i]
    return s


@njit(parallel=True, fastmath=True)
def _read_parts(a, parts, reps):
    """Each thread sums its own contiguous part of a, reps times, as batch-1 sampling's threads read
    theirs character after character: in one parallel region, so that waking the threads is not timed."""
    sums = np.zeros(parts, np.float32)
    for p in prange(parts):
        for _ in range(reps):
            sums[p] += _read(a[p * a.size // parts : (p + 1) * a.size // parts])
    return sums.sum()


def _best(f, repeats=5):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def fma_peak(k_rows: int = 256, reps: int = 40_000) -> dict:
    threads = numba.get_num_threads()
    rng = np.random.default_rng(0)
    A = rng.random((K.MR, k_rows), dtype=np.float32)
    Bp = rng.random((1, k_rows, K.NR), dtype=np.float32)
    C, Cs = np.empty((K.MR, K.NR), np.float32), np.empty((threads, K.MR, K.NR), np.float32)
    _tiles(A, Bp, C, 1), _tiles_parallel(A, Bp, Cs, 1)  # compile
    flops = 2.0 * K.MR * K.NR * k_rows * reps
    one = flops / _best(lambda: _tiles(A, Bp, C, reps)) / 1e9
    many = threads * flops / _best(lambda: _tiles_parallel(A, Bp, Cs, reps)) / 1e9
    return {"kind": "fma", "tile": [K.MR, K.NR], "panel_kb": k_rows * K.NR * 4 // 1024,
            "gflop_per_s_1_thread": round(one, 1), f"gflop_per_s_{threads}_threads": round(many, 1), **describe()}


def memory_rates(sizes_mb=(1, 3, 12, 48, 256)) -> list[dict]:
    threads = numba.get_num_threads()
    rows = []
    for mb in sizes_mb:
        a = np.ones(mb * (1 << 20) // 4, np.float32)
        b = np.empty_like(a)
        _read(a)
        read = a.nbytes / _best(lambda: _read(a)) / 1e9
        reps = max(1, (64 << 20) // a.nbytes)  # 64 MB or more read per region
        _read_parts(a, threads, 1)
        together = reps * a.nbytes / _best(lambda: _read_parts(a, threads, reps)) / 1e9
        copy = 2 * a.nbytes / _best(lambda: np.copyto(b, a)) / 1e9
        rows.append({"kind": "memory", "mb": mb, "read_gb_per_s": round(read, 1),
                     f"read_gb_per_s_{threads}_threads": round(together, 1), "copy_gb_per_s": round(copy, 1)})
    return rows


if __name__ == "__main__":
    print(json.dumps(fma_peak()), flush=True)
    for row in memory_rates():
        print(json.dumps(row), flush=True)
