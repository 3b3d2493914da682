"""How much memory the machine can give, and refusing work that would not fit, with the figures;
and how many CPUs this process may use (cpus).

A model, a corpus or a sample that needs more memory than the machine has available would swap the
machine to a standstill or die in numpy's MemoryError with a traceback. charnn estimates what a
job needs before it allocates, and refuses it with both numbers only when it truly cannot fit: the
estimates count what must be held at once (a lower bound), and an unknown amount of free memory
refuses nothing.
"""
from __future__ import annotations

import os

from .errors import CharnnError


def cpus() -> int:
    """The CPUs this process may run on (its affinity mask; the machine's count where unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def available_bytes() -> int | None:
    """The memory available to a new allocation without swapping: Linux's MemAvailable (free
    memory plus the caches the kernel can drop), else the free physical pages, else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def human(n: float) -> str:
    """1536 -> '1.5 KB', 3.2e9 -> '3.2 GB' (powers of 1024, one decimal)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:,.0f} bytes" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError  # unreachable


def require(need: float, what: str, advice: str = "", available: int | None = None) -> None:
    """CharnnError if `need` bytes are more than the machine has available (available: measured
    when None). `what` names the job ("an lstm 2x100000"); advice ends the message."""
    available = available_bytes() if available is None else available
    if available is not None and need > available:
        tail = f"; {advice}" if advice else ""
        raise CharnnError(f"{what} needs about {human(need)} of memory, and this machine has {human(available)} available{tail}")
