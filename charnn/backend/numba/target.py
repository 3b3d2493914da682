"""What numba compiles for: the LLVM target CPU and its vector width, read from numba's public
settings (NUMBA_CPU_NAME, NUMBA_CPU_FEATURES) and the host CPU, as numba itself decides them."""
from __future__ import annotations

import functools
import platform

import llvmlite.binding
from numba import config


@functools.cache  # numba reads its settings once per process, and the CPU does not change
def target() -> dict:
    """{"cpu": LLVM CPU name, "features": "+avx2,+fma,..."} of the code numba generates here."""
    name = config.CPU_NAME or llvmlite.binding.get_host_cpu_name()
    if config.CPU_FEATURES is not None:  # set by the user (or "" for a named CPU alone)
        features = config.CPU_FEATURES
    else:
        features = llvmlite.binding.get_host_cpu_features().flatten()
    return {"cpu": name, "features": features}


def target_lanes() -> int:
    """float32 lanes in one vector register: 16 where the target has AVX-512, else 8 (AVX2).
    A named CPU with no feature list counts as 8: the kernels stay correct at any width, since
    LLVM splits a vector wider than the target's registers."""
    return 16 if "+avx512f" in target()["features"].split(",") else 8


@functools.cache
def cpu_model() -> str:
    """The CPU's marketing name (Linux: /proc/cpuinfo's "model name"), else platform's guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe() -> dict:
    """What the compiled code runs on, for reports: CPU model, LLVM target CPU, vector width."""
    return {"cpu_model": cpu_model(), "llvm_cpu": target()["cpu"], "vector_bits": 32 * target_lanes()}
