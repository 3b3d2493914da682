"""The numba backend: charnn.nn's functions as fused kernels compiled by numba for this CPU.

    kernels   every @njit function (one file: numba's cache is reliable only when a kernel's
              callees live in its own file)
    layers    the layer functions: charnn.nn's signatures and caches, over the kernels
    target    what numba compiles for: LLVM CPU, vector width
    gemm      matrix products: register tiles, or numpy's BLAS
    calibrate which of the two trains a shape faster here, measured once per machine and shape
    policy    the answers, remembered in the user's cache folder, and the one in effect
    scratch   recycled scratch arrays (no page faults per step)
    sampler   batch-1 sampling, a whole block of characters per kernel call
    threads   how many threads a parallel kernel should use here
    compile   compiling explicitly (`charnn compile`), and knowing whether it is done

Nothing outside this package imports numba; the rest of charnn reaches it as
charnn.backend.get_backend("numba").
"""
from __future__ import annotations

import contextlib

import numba

from ..ops import LAYER_OPS, Backend
from . import compile as _compile
from . import calibrate, gemm, kernels, layers, policy, sampler
from .threads import fast_threading, numba_threads

# A sample this short, on a machine where the sampler is not compiled yet, is quicker to compute
# with the numpy reference (the same characters) than to compile for (`charnn compile` does that).
COLD_NUMPY_MAX = 20_000


def adam_update(p, g, m, v, beta1, beta2, step_size, v_correction, eps):
    """Twin of charnn.nn.optim.adam_update: one fused pass over flat views (C-contiguous arrays)."""
    kernels.adam_kernel(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), beta1, beta2, step_size,
                        v_correction, eps)


def sample_blocks(model, length: int):
    """The compiled sampler for `model` (sampler.sample_ids), or None when the reference loop is
    the better choice: a short sample before the sampling kernels are compiled."""
    if length <= COLD_NUMPY_MAX and not _compile.is_compiled("sample"):
        return None

    def blocks(prime_ids, temperature, top_k, argmax, rng):
        first = True
        for ids in sampler.sample_ids(model, prime_ids, length, temperature, top_k, argmax, rng):
            yield ids
            if first:  # the first block ran: the kernel is compiled and cached now
                _compile.mark_compiled("sample")
                first = False

    return blocks


def notice(task: str, model, length: int = 0) -> str | None:
    """What to tell the user before `task` ("train", or "sample" of `length` characters) will take
    longer than usual."""
    lines = []
    if task == "sample" and length > COLD_NUMPY_MAX and not _compile.is_compiled("sample"):
        lines.append(f"numba compiles the sampling kernels first ({_compile.EXPECTED_S['sample']}, once; "
                     "`charnn compile` does it ahead of time)")
    if task == "train" and not _compile.is_compiled("train"):
        lines.append("first run after an install: numba compiles the training kernels now "
                     f"({_compile.EXPECTED_S['train']}, once; `charnn compile` does it ahead of time)")
    if task == "train" and not fast_threading():
        lines.append("numba has no OpenMP or TBB threading layer here (install libgomp or tbb): its fallback "
                     "starts each parallel loop ~100x slower, and training runs 2-3x slower")
    return "\n".join(lines) or None


@contextlib.contextmanager
def prepare(config, batch_size: int, seq_len: int, say=None, default: bool = False):
    """Within the block, the products are computed as this machine trains the shape fastest
    (calibrate.choose, measuring it the first time); afterwards as before. Yields the choice."""
    previous = policy.TABLE.active
    try:
        if gemm.MODE != "auto":
            choice = gemm.MODE
        else:
            D = config.param_shapes()["layer0.W" if config.model == "mlp" else "layer0.Wx"][0]  # input width
            shape = calibrate.Shape(config.model, batch_size, seq_len, D, config.hidden, config.layers, config.vocab_size)
            choice = calibrate.choose(shape, default=default, say=say)
        with numba_threads(1 if choice == "blas" else numba.get_num_threads()):  # BLAS has the cores
            yield choice
    finally:
        policy.TABLE.active = previous


NUMBA = Backend(
    name="numba",
    **{op: getattr(layers, op) for op in LAYER_OPS},
    adam_update=adam_update,
    sampler=sample_blocks,
    notice=notice,
    done=_compile.mark_compiled,
    prepare=prepare,
    decisions=gemm.decisions,
)
