"""Matrix products: charnn's register-tiled kernel (charnn.backend.numba.gemm) against numpy's BLAS, one JSON line
per shape on stdout, at 1 and 2 threads.

    python bench/gemm.py
    python bench/gemm.py --shapes 32x256x1024,2048x256x1024 --repeats 200

The shapes are M x K x N of C = A @ B as an LSTM 2x256 / 2x512 training step at batch 32,
sequence 64 meets them: a recurrent step (32 rows), an input projection (2048 rows), a weight
gradient (K = 2048). Threads: numba's via numba.set_num_threads, OpenBLAS's through
OPENBLAS_NUM_THREADS (read when numpy loads, so each thread count runs in its own process).
Packing B into panels is timed separately (a recurrent weight is packed once per sequence).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = "32x256x1024,32x1024x256,32x512x2048,32x2048x512,2048x64x1024,2048x256x1024,256x2048x1024,512x2048x2048"


def _median_seconds(f, repeats):
    f()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def measure(shapes, threads, repeats):
    import numba
    import numpy as np

    from charnn.backend.numba import kernels as K

    numba.set_num_threads(threads)
    rng = np.random.default_rng(0)
    cases = []
    for M, Kd, N in dict.fromkeys(shapes):
        A = rng.standard_normal((M, Kd), dtype=np.float32)
        B = rng.standard_normal((Kd, N), dtype=np.float32)
        panels = np.empty((-(-N // K.NR), Kd, K.NR), dtype=np.float32)
        cases.append((M, Kd, N, A, B, panels, np.empty((M, N), dtype=np.float32)))
    # Every tiles timing comes before the first BLAS call: OpenBLAS's idle worker threads keep
    # spinning for tens of milliseconds after a call and take a core from numba's threads
    # (measured: 2-thread tiles at 160 GFLOP/s right after a BLAS call, 420 without).
    timed = {}
    for M, Kd, N, A, B, panels, C in cases:
        flops = 2.0 * M * Kd * N
        n = max(5, min(repeats, int(2e10 / flops)))  # about 20 GFLOP per timing
        t_pack = _median_seconds(lambda: K.pack_panels_kernel(B, panels), n)
        timed[M, Kd, N] = (flops, n, t_pack, _median_seconds(lambda: K.gemm_strided(A, panels, C), n), C.copy())
    for M, Kd, N, A, B, panels, C in cases:
        flops, n, t_pack, t_tiles, tiles_C = timed[M, Kd, N]
        ref = A.astype(np.float64) @ B  # numpy's BLAS from here on
        err = float(np.abs(tiles_C - ref).max() / np.abs(ref).max())
        t_blas = _median_seconds(lambda: np.dot(A, B, out=C), n)
        yield {
            "shape": f"{M}x{Kd}x{N}", "threads": threads,
            "blas_gflop_per_s": flops / t_blas / 1e9, "tiles_gflop_per_s": flops / t_tiles / 1e9,
            "ratio_tiles_over_blas": t_blas / t_tiles, "pack_us": t_pack * 1e6, "tiles_us": t_tiles * 1e6,
            "tiles_rel_error": err, "charnn_default_choice": _choice(),
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "(auto)"),
        }


def _choice():
    """How charnn's training computes products here outside a calibrated run: CHARNN_GEMM's mode,
    or the measured choice of `charnn compile`'s default shape ("tiles" until one is measured)."""
    from charnn.backend.numba import gemm

    return gemm.decisions()["in effect"]


def parse_shapes(text):
    shapes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError(f"bad shape {item!r}: want MxKxN, e.g. 32x256x1024")
        shapes.append(tuple(int(p) for p in parts))
    return shapes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default=SHAPES, help="comma-separated MxKxN")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts, each in its own process")
    p.add_argument("--repeats", type=int, default=100, help="timed calls per measurement (fewer for big shapes)")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        shapes = parse_shapes(args.shapes)
        threads = [int(t) for t in args.threads.split(",")]
    except ValueError as e:
        p.error(str(e))
    if args.child:
        for row in measure(shapes, args.child, args.repeats):
            print(json.dumps(row), flush=True)
        return 0
    for t in threads:
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(t))
        cmd = [sys.executable, __file__, "--child", str(t), "--shapes", args.shapes, "--repeats", str(args.repeats)]
        code = subprocess.call(cmd, env=env)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
