"""Knowing whether the kernels are compiled, without reading numba's internals.

numba compiles a kernel at its first call and caches the machine code on disk (cache=True: in
__pycache__ beside kernels.py, or NUMBA_CACHE_DIR), so only the first run after an install pays:
about a minute for what a first training run needs, under a minute for batch-1 sampling's
kernels and a minute and a half for sampling several streams (charnn.compile, `charnn compile`, pays it all
up front, every way a step can compute: about two minutes on two cores). That a family has been
compiled is recorded in a stamp file of charnn's own beside numba's cache, keyed by everything the
machine code depends on, so a run can say before it starts that it will compile.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sys

import llvmlite.binding
import numba
from numba.core import event

from ...version import __version__
from ...files import atomic_write
from . import kernels

EXPECTED_S = {"train": "about a minute", "sample": "under a minute", "sample-batch": "about a minute and a half"}


def cache_dir() -> str:
    """Where numba caches charnn's kernels (and where the stamp goes)."""
    return os.environ.get("NUMBA_CACHE_DIR") or os.path.join(os.path.dirname(os.path.abspath(kernels.__file__)), "__pycache__")


@functools.cache  # kernels.py, numba and the CPU do not change while a process runs
def _key() -> dict:
    with open(kernels.__file__, "rb") as f:
        source = hashlib.sha256(f.read()).hexdigest()
    return {"charnn": __version__, "kernels_sha256": source, "numba": numba.__version__,
            "python": sys.version.split()[0], "cpu": llvmlite.binding.get_host_cpu_name(),
            "cpu_features": llvmlite.binding.get_host_cpu_features().flatten()}


def _stamp(family: str) -> str:
    return os.path.join(cache_dir(), f"charnn-compiled-{family}.json")


_FOUND: dict[str, dict] = {}  # stamp -> the key found in it, in this process: compiled they stay


def is_compiled(family: str) -> bool:
    """Whether this family's kernels ("train", "sample" or "sample-batch") were compiled for this machine and this
    kernels.py (by `charnn compile` or an earlier run). A yes is remembered for the process (a
    sampling call asks twice): its kernels stay compiled in memory whatever happens to the stamp."""
    stamp, key = _stamp(family), _key()
    if _FOUND.get(stamp) == key:
        return True
    try:
        with open(stamp, encoding="utf-8") as f:
            found = json.load(f)
    except (OSError, ValueError):
        return False
    if found == key:
        _FOUND[stamp] = found
    return found == key


def mark_compiled(family: str) -> None:
    """Record that the family's kernels are in numba's cache now; quietly nothing if the cache
    folder is not writable (numba then does not cache either)."""
    if is_compiled(family):
        return
    try:
        with atomic_write(_stamp(family), "w", encoding="utf-8") as f:
            json.dump(_key(), f)
    except OSError:
        pass


class _Compiles(event.Listener):
    """Collects {kernel's module.qualname: {argument types}} from numba's compile events (numba's
    public event API): what compiles, and so is saved to the disk cache, while it listens."""

    def __init__(self):
        self.kernels: dict[str, set[str]] = {}

    def on_start(self, ev):
        dispatcher = ev.data["dispatcher"]
        if dispatcher.stats.cache_path is not None:  # cached on disk (overloads and inlined helpers are not)
            name = f"{dispatcher.py_func.__module__}.{dispatcher.py_func.__qualname__}"
            self.kernels.setdefault(name, set()).add(str(tuple(ev.data["args"])))

    def on_end(self, ev):
        pass


@contextlib.contextmanager
def recording():
    """Within it, the kernels numba compiles into its disk cache (cache=True: charnn's, but inlined ones):
    yields {kernel: {argument types}}, filled as they compile (one loaded from the cache is not)."""
    listener = _Compiles()
    with event.install_listener("numba:compile", listener):
        yield listener.kernels
