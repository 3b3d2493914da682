"""Recycled scratch arrays for the numba backend: `empty(shape, dtype)` is np.empty that reuses
the memory of an earlier array of the same shape once nothing refers to it any more.

Why: a training step allocates the same large arrays every time (the caches of each layer, the
gradients, the packed weights; ~25 MB a step for LSTM 2x256). glibc returns blocks that large to
the operating system when they are freed, so every step starts on fresh pages, and each page's
first touch is a fault (a third to two thirds of a forward pass: bench/README.md). Reusing the
arrays keeps their pages mapped.

Safety: an array is only reused after it has died. `empty` hands out a view of a pooled buffer
through an intermediate array with a finalizer; CPython runs it when the last array that could
see the memory (the result, or any slice or reshape of it, all of which hold that intermediate
as their .base) goes away, and only then does the buffer go back to the pool.

The pool keeps at most MAX_PER_SHAPE free buffers per (shape, dtype) and MAX_SHAPES shapes
(least recently used first out), so memory stays bounded when shapes change (evaluation
batches, other models in the same process).
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import numpy as np

MAX_PER_SHAPE = 4
MAX_SHAPES = 64
ALIGN = 64
MIN_BYTES = 1 << 16  # smaller arrays come from malloc's own free lists, which already reuse them

_free: OrderedDict[tuple, list] = OrderedDict()
_lock = threading.Lock()


def _release(key, buffer):
    with _lock:
        pool = _free.get(key)
        if pool is None:
            pool = _free[key] = []
            while len(_free) > MAX_SHAPES:
                _free.popitem(last=False)
        if len(pool) < MAX_PER_SHAPE:
            pool.append(buffer)


def empty(shape, dtype=np.float32) -> np.ndarray:
    """np.empty(shape, dtype), C-contiguous, possibly reusing a dead array's memory."""
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in (shape if isinstance(shape, tuple) else (shape,)))
    size = dtype.itemsize
    for n in shape:
        size *= n
    if size < MIN_BYTES:
        return np.empty(shape, dtype=dtype)
    key = (shape, dtype.str)
    with _lock:
        pool = _free.get(key)
        buffer = pool.pop() if pool else None
        if pool is not None:
            _free.move_to_end(key)
    if buffer is None:  # 64-byte aligned, a cache line: AVX-512 loads never straddle two
        raw = np.empty(size + ALIGN, dtype=np.uint8)
        start = -raw.__array_interface__["data"][0] % ALIGN
        buffer = raw[start:start + size]
    # `owner` stands between the pooled buffer and everything handed out. numpy points a view's
    # .base at the first array up the chain that owns its data or whose base is not an array, so
    # a plain buffer.view() would let slices of the result skip it and outlive it. owner's base is
    # a memoryview, so owner is where every later slice, reshape or transpose stops.
    owner = np.frombuffer(memoryview(buffer), dtype=dtype)
    weakref.finalize(owner, _release, key, buffer).atexit = False
    return owner.reshape(shape)


def zeros(shape, dtype=np.float32) -> np.ndarray:
    """np.zeros through `empty`."""
    out = empty(shape, dtype)
    out.fill(0)
    return out


def clear() -> None:
    """Drop every pooled buffer (tests; or to give the memory back)."""
    with _lock:
        _free.clear()
