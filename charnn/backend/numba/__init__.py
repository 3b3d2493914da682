"""The numba backend: charnn.nn's functions as fused kernels compiled by numba for this CPU.

    kernels   every @njit function (one file: numba's cache is reliable only when a kernel's
              callees live in its own file)
    layers    the layer functions: charnn.nn's signatures and caches, over the kernels
    target    what numba compiles for: LLVM CPU, vector width
    gemm      matrix products: register tiles, or numpy's BLAS
    calibrate which of the two trains a shape faster here, measured once per machine and shape
    policy    the answers, remembered in the user's cache folder, and the one in effect
    scratch   recycled scratch arrays (no page faults per step)
    sampler   sampling, a whole block of characters per kernel call (one stream or a batch)
    threads   how many threads a parallel kernel (or a training step) should use here
    compile   compiling explicitly (`charnn compile`), and knowing whether it is done

Nothing outside this package imports numba; the rest of charnn reaches it as
charnn.backend.get_backend("numba").
"""
from __future__ import annotations

import contextlib
import time

import numba
import numpy as np

from ..ops import LAYER_OPS, Backend
from . import compile as _compile
from . import calibrate, gemm, kernels, layers, policy, sampler
from .threads import Pace, fast_threading, numba_threads

# A sample this short, on a machine where the sampler is not compiled yet, is quicker to compute
# with the numpy reference (the same characters) than to compile for (`charnn compile` does that).
COLD_NUMPY_MAX = 20_000


def adam_update(p, g, m, v, beta1, beta2, step_size, v_correction, eps):
    """Twin of charnn.nn.optim.adam_update: one fused pass over flat views (C-contiguous arrays)."""
    kernels.adam_kernel(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), beta1, beta2, step_size,
                        v_correction, eps)


def sample_blocks(model, work: int | None, streams: int = 1):
    """The compiled sampler for `model` and `streams` streams (sampler.sample_ids for one,
    sample_batch_ids for more), or None when the reference loop is the better choice: a short
    sample (work: the characters to step through, prime and sample of every stream; None: without
    end) before the sampling kernels are compiled."""
    family = sample_family(streams)
    sampler.forced_threads()  # a bad CHARNN_SAMPLE_THREADS is an error whichever code samples
    if work is not None and work <= COLD_NUMPY_MAX and not _compile.is_compiled(family):
        return None

    def blocks(warm_ids, first_ids, length, draw, rngs, alive, progress=None):
        if streams == 1:  # the batch-1 kernel, with its choice of threads
            feed = np.append(np.asarray(warm_ids, dtype=np.int64), first_ids[0])
            ids = sampler.sample_ids(model, feed, length, draw.temperature, draw.top_k, draw.argmax, rngs[0],
                                     top_p=draw.top_p, progress=progress)
        else:
            ids = sampler.sample_batch_ids(model, warm_ids, first_ids, length, draw.temperature, draw.top_k,
                                           draw.top_p, draw.argmax, rngs, alive, progress)
        first = True
        for block in ids:
            yield block.reshape(streams, -1)  # (S, n)
            if first:  # the first block ran: the kernel is compiled and cached now
                _compile.mark_compiled(family)
                first = False
            if not alive.any():
                return

    return blocks


def sample_family(streams: int) -> str:
    """The kernels a sample of `streams` streams runs: "sample" (batch-1) or "sample-batch"."""
    return "sample" if streams == 1 else "sample-batch"


def compiled_family(task: str, model=None) -> str:
    """The stamp a task's run leaves once its kernels are compiled: a training run's covers its
    cell only ("train-gru"); `charnn compile`'s "train" covers every cell and every way."""
    return f"{task}-{model.config.model}" if task == "train" and model is not None else task


def done(task: str, model=None) -> None:
    """A run of `task` (of `model`) got past its first step: what it compiled is in numba's cache."""
    _compile.mark_compiled(compiled_family(task, model))


def notice(task: str, model, length: int | None = 0) -> str | None:
    """What to tell the user before `task` ("train", or "sample" / "sample-batch" stepping through
    `length` characters, None: without end) will take longer than usual."""
    lines = []
    long_sample = length is None or length > COLD_NUMPY_MAX
    if task.startswith("sample") and long_sample and not _compile.is_compiled(task):
        lines.append(f"numba compiles the sampling kernels first ({_compile.EXPECTED_S[task]}, once; "
                     "`charnn compile` does it ahead of time)")
    if task == "train" and not (_compile.is_compiled("train") or _compile.is_compiled(compiled_family(task, model))):
        lines.append(f"first {model.config.model} training after an install: numba compiles the training kernels now "
                     f"({_compile.EXPECTED_S['train']}, once; `charnn compile` does it ahead of time)")
    if task == "train" and not fast_threading():
        lines.append("numba has no OpenMP or TBB threading layer here (install libgomp or tbb): its fallback "
                     "starts each parallel loop ~100x slower, and training runs 2-3x slower")
    return "\n".join(lines) or None


_PACE: list = [None]  # the Pace of the training in progress (prepare), or None


@contextlib.contextmanager
def prepare(config, batch_size: int, seq_len: int, say=None, default: bool = False):
    """Within the block, the products are computed as this machine trains the shape fastest
    (calibrate.choose, measuring it the first time), and each training step (pace) runs on the
    thread count its Pace chooses, starting from the count measured fastest for the shape
    (CHARNN_TRAIN_THREADS: that count instead); afterwards as before. Yields the choice."""
    previous, previous_pace = policy.TABLE.active, _PACE[0]
    try:
        if gemm.MODE != "auto":
            choice = gemm.MODE
        else:
            D = config.param_shapes()["layer0.W" if config.model == "mlp" else "layer0.Wx"][0]  # input width
            shape = calibrate.Shape(config.model, batch_size, seq_len, D, config.hidden, config.layers, config.vocab_size)
            choice = calibrate.choose(shape, default=default, say=say)
        tiles_threads = gemm.TRAIN_THREADS or (policy.TABLE.threads() if gemm.MODE == "auto" else numba.get_num_threads())
        with numba_threads(1 if choice == "blas" else tiles_threads):  # BLAS has the cores
            threads = numba.get_num_threads()
            _PACE[0] = Pace(threads, say) if choice == "tiles" and threads > 1 else None  # BLAS: its own threads
            yield choice
    finally:
        policy.TABLE.active, _PACE[0] = previous, previous_pace


@contextlib.contextmanager
def pace():
    """Around one training step (train_step): the step runs on the thread count the Pace of the
    training in progress chooses (all of numba's threads unless other tasks want the CPUs), and
    its time is told to that Pace; outside prepare, as is."""
    current = _PACE[0]
    if current is None:
        yield
        return
    n = current.next()
    with numba_threads(n):
        t0 = time.perf_counter()
        yield  # a step that raises is not timed
        seconds = time.perf_counter() - t0
    current.record(n, seconds)


NUMBA = Backend(
    name="numba",
    **{op: getattr(layers, op) for op in LAYER_OPS},
    adam_update=adam_update,
    sampler=sample_blocks,
    notice=notice,
    done=done,
    prepare=prepare,
    pace=pace,
    decisions=gemm.decisions,
    calibrate_sampling=sampler.measure_threads,
    ways=calibrate.every_way,
    recording=_compile.recording,
)
