"""Let numpy's OpenBLAS use its AVX-512 kernels on CPUs that have them.

numpy's bundled OpenBLAS picks its kernels at load time from the CPU it detects, and it files
AMD Zen 4/5 under "Haswell" (AVX2). Measured on this project's AMD EPYC (Zen 5) machine, its
"SkylakeX" (AVX-512) kernels run large float32 GEMMs at ~490 GFLOP/s instead of ~250, and the
batch-32 recurrent products at 180-240 instead of 120-175. OPENBLAS_CORETYPE only takes effect
if set before OpenBLAS loads, i.e. before numpy is first imported, so charnn/__init__.py calls
this first. Forcing AVX-512 kernels on a CPU without AVX-512 would crash with an illegal
instruction, hence the flag check; a value the user already set always stands; and
CHARNN_BLAS_AUTO=0 turns the choice off.
"""
from __future__ import annotations

import os
import sys

# the instruction-set extensions OpenBLAS's SkylakeX kernels use
SKYLAKEX_FLAGS = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")


def cpu_flags() -> set[str]:
    """The CPU feature flags the Linux kernel reports (and so has enabled); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def choose_openblas_coretype(environ=None, modules=None, flags=None) -> str:
    """Set OPENBLAS_CORETYPE=SkylakeX when that is safe and useful; return what was decided."""
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if "OPENBLAS_CORETYPE" in environ:
        return f"kept OPENBLAS_CORETYPE={environ['OPENBLAS_CORETYPE']} (set by the user)"
    if environ.get("CHARNN_BLAS_AUTO", "1") == "0":
        return "left to OpenBLAS (CHARNN_BLAS_AUTO=0)"
    if "numpy" in modules:
        return "left to OpenBLAS (numpy was imported before charnn)"
    flags = cpu_flags() if flags is None else flags
    if not all(f in flags for f in SKYLAKEX_FLAGS):
        return "left to OpenBLAS (no AVX-512 on this CPU)"
    environ["OPENBLAS_CORETYPE"] = "SkylakeX"
    return "OPENBLAS_CORETYPE=SkylakeX (AVX-512 kernels)"


BLAS_CHOICE = choose_openblas_coretype()
