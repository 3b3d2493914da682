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


# an explicit 16-float add: LLVM keeps it in one register where the target has 512-bit ones
_PROBE = """
define void @probe(ptr %p) {
  %a = load <16 x float>, ptr %p, align 4
  %b = fadd <16 x float> %a, %a
  store <16 x float> %b, ptr %p, align 4
  ret void
}
"""


@functools.cache
def target_lanes() -> int:
    """float32 lanes in one vector register of numba's target: 16 (AVX-512), 8 (AVX, AVX2) or 4
    (SSE; NEON elsewhere), as LLVM itself compiles a 16-float add for it (zmm, ymm or neither:
    ~3 ms, no numba compile), so a named CPU (NUMBA_CPU_NAME) with no feature list gets its own
    answer too."""
    llvmlite.binding.initialize_native_target()
    llvmlite.binding.initialize_native_asmprinter()
    machine = llvmlite.binding.Target.from_default_triple().create_target_machine(
        cpu=target()["cpu"], features=target()["features"], opt=2)
    asm = machine.emit_assembly(llvmlite.binding.parse_assembly(_PROBE))
    return 16 if "zmm" in asm else 8 if "ymm" in asm else 4


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
