"""How many threads a parallel kernel (or a training step) should run on, decided from what this
machine reports and from timing the choices as they run (Chooser; Pace for training; a training
shape's starting count is timed once, calibrate.py).

Linux only where it reads /proc; elsewhere free_cpus answers that every CPU asked for is free:
training then runs on its measured count, and the sampler still times its counts against each other.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import time

import numba
import numpy as np

from ...errors import CharnnError
from ...memory import cpus  # (imported from here by calibrate and policy too)
from .kernels import threading_probe


def halvings(n: int) -> tuple[int, ...]:
    """n and its halvings down to one: the thread counts worth timing against each other (8 -> 8, 4, 2, 1)."""
    counts = []
    while n >= 1:
        counts.append(n)
        n //= 2
    return tuple(counts)


def forced_count(variable: str) -> int | None:
    """A thread count set in environment variable `variable` (at most numba's), or None for "auto"
    or unset: the count is then chosen by timing. A value that is neither is an error."""
    value = os.environ.get(variable, "auto").strip() or "auto"
    if value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise CharnnError(f"{variable} must be auto or a whole number of threads (1, 2, ...), not {value!r}")
    return min(int(value), max(1, numba.get_num_threads()))


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


def free_cpus(wanted: int, window: float = 1e-3) -> int:
    """How many CPUs, up to `wanted`, other processes' tasks leave to this process's threads
    (Linux: the CPUs less the runnable tasks of /proc/loadavg that are not this process's own):
    the most seen at the looks of `window` seconds, at least 1; `wanted` where unknown. Looked at
    again and again because right after this process's own parallel region another task is often
    runnable for a few hundred microseconds, even on an idle machine (bench/README.md), and that is
    not competition."""
    try:
        n_cpus = cpus()
        end = time.perf_counter() + window
        most = 1
        while True:
            if n_cpus - (_runnable_tasks() - 1) >= wanted:  # every task but this thread counted as another's
                return wanted
            # own threads first: until the next parallel region they can only fall asleep, so this
            # count is never below theirs at the next look
            own = own_running_threads()
            most = max(most, min(wanted, n_cpus - (_runnable_tasks() - own)))
            if most >= wanted or time.perf_counter() >= end:
                return most
    except (OSError, ValueError, IndexError, AttributeError):
        return wanted


class Looks:
    """free_cpus(wanted, window), looked at again only once `every` seconds have passed since the
    last look: in between, the last look's answer. window: how long another task must stay
    runnable to count as taking a CPU (right after this process's own parallel region one often
    shows for a few ms, on an idle machine: bench/README.md). A look costs ~0.2 ms on a quiet
    machine and the whole window on a busy one: at most 4% of the time."""

    def __init__(self, window: float = 0.02, every: float = 0.5):
        self.window, self.every = window, every
        self.looked = -math.inf
        self.seen: dict[int, int] = {}  # wanted -> free CPUs, at the last look

    def free(self, wanted: int) -> int:
        now = time.perf_counter()
        if now - self.looked >= self.every:
            self.looked, self.seen = now, {}
        if wanted not in self.seen:
            self.seen[wanted] = free_cpus(wanted, self.window)
        return self.seen[wanted]


class Chooser:
    """Run the thread count with the lower measured time per step, and now and then try each other
    count on a short block: first at the third call (the first may compile, the second times the
    count it starts from), then at intervals that double while it stays slower, and never more
    often than keeps the probes' extra time to PROBE_SHARE of the run's (a count twice as slow is
    probed at most every 50 calls). Used by the sampler (per block of characters) and by training
    (Pace, per step). A count's cost is the lower of its last two timings: one block held up by a
    stray time slice (a parallel region stalls for a scheduler tick, ~4 ms, whenever either of its
    CPUs is taken) does not condemn it, but when the best slows down for good (another process
    takes a core: every parallel region then waits, ~100x slower) the switch comes after two blocks.
    best: a count measured best earlier (kept by policy.py): it starts there, and the first probe
    of another waits 2 x first_gap calls instead of three (the sampler's 16 blocks: about 1,000
    characters), or longer where `known` (the seconds per step measured with it) has that count
    slower, so a short sample runs on the best throughout."""

    PROBE_SHARE = 0.02

    def __init__(self, counts, first_gap: int = 8, max_gap: int = 1024, best: int | None = None,
                 known: dict | None = None):
        self.counts = list(counts)
        is_known = best in self.counts
        self.best = best if is_known else self.counts[0]
        self.first_gap, self.max_gap = first_gap, max_gap
        self.cost = {}  # seconds per step: the lower of the last two timings
        self.last = {}  # the last timing of each count
        self.gap = {n: first_gap for n in self.counts}  # calls between probes of n
        # calls until n is probed
        self.wait = {n: self._spaced(n, 2 * first_gap, known or {}) if is_known else 3 for n in self.counts}
        self.ran = {n: 0 for n in self.counts}  # steps run on n threads so far, timed or not (for reports)

    def _spaced(self, n: int, gap: int, cost: dict) -> int:
        """Calls until the next probe of n: gap, or as many as make a probe's extra time (n's cost
        over the best's, as `cost` has them) PROBE_SHARE of theirs; at most max_gap."""
        slower = cost[n] / cost[self.best] - 1 if n in cost and cost.get(self.best, 0) > 0 else 0.0
        calls = min(slower / self.PROBE_SHARE, self.max_gap) if slower > 0 else 0  # (NaN: not slower)
        return min(max(gap, math.ceil(calls)), self.max_gap)

    def next(self) -> int:
        for n in self.counts:
            if n != self.best:
                self.wait[n] -= 1
                if self.wait[n] <= 0:
                    return n
        return self.best

    def record(self, n: int, seconds: float, steps: int) -> None:
        new = seconds / steps
        self.cost[n] = min(new, self.last.get(n, new))
        self.last[n] = new
        fastest = min(self.cost, key=self.cost.get)
        if fastest != self.best:  # a probe beat the best, or the best slowed down: switch
            self.wait[self.best], self.gap[self.best] = self.first_gap, self.first_gap
            self.best = fastest
        elif n != self.best:  # a probe that lost: probe it ever less often
            self.wait[n] = self._spaced(n, self.gap[n], self.cost)
            self.gap[n] = min(2 * self.gap[n], self.max_gap)


class Pace:
    """Training's thread count, step by step: all `threads` while this machine's other tasks leave
    the CPUs free; while they take some, whichever of `threads` and the CPUs they leave
    (free_cpus) the Chooser times faster per step (two trainings side by side on two cores each run
    faster on one thread: bench/README.md, "2026-12-06 (fourth session)"). The count changes no
    result: every product block and batch row is computed the same way on any thread. The machine
    is looked at at most every half second (Looks); on a quiet one that is all it costs."""

    def __init__(self, threads: int, say=None):
        self.threads, self.say = threads, say
        self.free = threads  # CPUs left free at the last look
        self.looks = Looks()
        self.choosers = {}  # free CPUs -> the Chooser of (threads, free): the timings of such spells
        self.steps, self.told = 0, False

    def next(self) -> int:
        """The thread count of the next step."""
        self.free = self.looks.free(self.threads)
        chooser = self._chooser()
        n = self.threads if chooser is None else chooser.next()
        if n < self.threads and n == chooser.best and not self.told and self.say is not None:
            self.say(f"other tasks are using the CPUs: training runs on {n} thread{'s' * (n > 1)} "
                     f"instead of {self.threads} while that is faster")
            self.told = True
        return n

    def record(self, n: int, seconds: float) -> None:
        """A step ran on n threads in `seconds`."""
        self.steps += 1
        chooser = self._chooser()
        if chooser is not None and self.steps > 1:  # the first step may include compiling
            chooser.record(n, seconds, 1)

    def _chooser(self):
        if self.free >= self.threads:
            return None
        if self.free not in self.choosers:
            self.choosers[self.free] = Chooser((self.threads, self.free))
        return self.choosers[self.free]
