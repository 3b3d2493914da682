"""charnn.recycle: memory is reused only after every array that could see it has died."""
import gc

import numpy as np
import pytest

from charnn.backend.numba import scratch as recycle

SHAPE = (64, 1024)  # 256 KiB, above MIN_BYTES


@pytest.fixture(autouse=True)
def empty_pool():
    recycle.clear()
    yield
    recycle.clear()


def address(a):
    return a.__array_interface__["data"][0]


def test_reuses_a_dead_arrays_memory():
    a = recycle.empty(SHAPE, np.float32)
    assert a.shape == SHAPE and a.dtype == np.float32 and a.flags.c_contiguous and a.flags.writeable
    assert address(a) % recycle.ALIGN == 0
    where = address(a)
    del a
    b = recycle.empty(SHAPE, np.float32)
    assert address(b) == where


def test_never_hands_out_live_memory():
    a = recycle.empty(SHAPE, np.float32)
    b = recycle.empty(SHAPE, np.float32)  # a is alive: fresh memory
    assert not np.shares_memory(a, b)
    tail = a[1:].reshape(-1)  # a derived view keeps the buffer in use
    del a
    gc.collect()
    c = recycle.empty(SHAPE, np.float32)
    assert not np.shares_memory(c, tail) and not np.shares_memory(c, b)
    tail[:] = 1.0
    c[:] = 2.0
    assert (tail == 1.0).all()


def test_other_shapes_dtypes_and_small_arrays_are_separate():
    a = recycle.empty(SHAPE, np.float32)
    where = address(a)
    del a
    assert address(recycle.empty(SHAPE, np.float64)) != where
    assert address(recycle.empty((1024, 64), np.float32)) != where
    small = recycle.empty((3, 4), np.float32)
    assert small.shape == (3, 4) and small.base is None  # plain np.empty
    z = recycle.zeros(SHAPE, np.float32)
    assert (z == 0).all()


def test_pool_is_bounded(monkeypatch):
    monkeypatch.setattr(recycle, "MAX_PER_SHAPE", 2)
    arrays = [recycle.empty(SHAPE, np.float32) for _ in range(5)]
    del arrays
    assert len(recycle._free[(SHAPE, np.dtype(np.float32).str)]) == 2
    monkeypatch.setattr(recycle, "MAX_SHAPES", 3)
    for n in range(1, 6):
        del_me = recycle.empty((n, 1 << 14), np.float32)
        del del_me
    assert len(recycle._free) <= 3
