"""How many threads a parallel kernel should run on, decided from what this machine reports.

Linux only where it reads /proc; elsewhere the answers are the safe ones (one thread, not busy).
"""
from __future__ import annotations

import contextlib
import functools
import os
import time

import numba
import numpy as np

from .kernels import threading_probe


def parallel_threads() -> int:
    """Threads worth splitting a layer over: numba's thread count if it has a threading layer that
    starts a parallel region quickly (OpenMP, TBB), else 1 (its workqueue fallback is ~80x slower
    to start one: bench/README.md)."""
    if numba.get_num_threads() == 1 or _slow_layer():
        return 1
    return numba.get_num_threads()


@functools.cache  # the layer is chosen once per process
def _slow_layer() -> bool:
    threading_probe(np.zeros(2))  # numba picks its threading layer at the first parallel region
    return numba.threading_layer() == "workqueue"


@contextlib.contextmanager
def numba_threads(n: int):
    """Within the block numba's parallel loops (started from this thread) run on n threads; then
    as before. One where BLAS does the products: its threads and numba's spin while they wait for
    work, and on a machine with few cores each switch between them waits for the scheduler
    (bench/README.md, "Tiles or BLAS": 13x slower per recurrent step, measured)."""
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(n, before)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def fast_threading() -> bool:
    """Whether numba's parallel loops start quickly here (see parallel_threads): the training
    loop starts three per recurrent step, so the slow fallback costs it 2-3x."""
    return numba.get_num_threads() == 1 or parallel_threads() > 1


def own_running_threads() -> int:
    """Threads of this process that are running or runnable (Linux: state R in
    /proc/self/task/*/stat), this one included: BLAS worker threads spin for a while after a
    matrix product and are counted in /proc/loadavg, but they are not competition."""
    running = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue  # the thread ended
        running += stat[stat.rindex(")") + 2] == "R"  # the state follows the parenthesised name
    return max(running, 1)


def _runnable_tasks() -> int:
    """Tasks running or runnable on the whole machine now (Linux: /proc/loadavg's fourth field)."""
    with open("/proc/loadavg", encoding="ascii") as f:
        return int(f.read().split()[3].split("/")[0])


def cpus_busy(threads: int, window: float = 1e-3) -> bool:
    """Whether other processes' tasks are running on the CPUs that `threads` parallel threads
    would need (Linux: the runnable tasks of /proc/loadavg less this process's own); False where
    unknown. Busy only if the CPUs look taken at every look for `window` seconds: right after
    this process's own parallel region another task is often runnable for a few hundred
    microseconds (a quarter of the looks on an idle machine), and that is not competition."""
    try:
        cpus = len(os.sched_getaffinity(0))
        end = time.perf_counter() + window
        while True:
            if _runnable_tasks() - 1 + threads <= cpus:  # this thread is one of them: idle CPUs enough
                return False
            # own threads first: until the next parallel region they can only fall asleep, so this
            # count is never below theirs at the next look
            own = own_running_threads()
            if _runnable_tasks() - own + threads <= cpus:
                return False
            if time.perf_counter() >= end:
                return True
    except (OSError, ValueError, IndexError, AttributeError):
        return False
