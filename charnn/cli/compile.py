"""`charnn compile`: compile the numba kernels now, instead of at the first run that needs them."""
from __future__ import annotations

import click

from ..compile import compile_kernels
from .common import say


@click.command(name="compile")
def compile_():
    """Compile every numba kernel for this machine, once (~2 min); numba caches them on disk.
    Then time the default model's matrix products both ways (charnn's register tiles, on numba's
    thread count and fewer, and numpy's BLAS) and remember the faster for each shape (~2 s; in
    ~/.cache/charnn, or CHARNN_CACHE_DIR; CHARNN_GEMM=tiles or =blas and CHARNN_TRAIN_THREADS=n
    override it), and time sampling the checkpoint `charnn sample`
    reads by default on one thread and on several (~1 s; CHARNN_SAMPLE_THREADS overrides it).

    Without it, the first training run compiles the training kernels it needs (~1 min) and times
    its products as it meets them, and the first long sample compiles the sampling kernels (10-20 s);
    each run says so when it has to. Nothing ever compiles in the background.

    \b
    Example:
      charnn compile
    """
    seconds = compile_kernels(say)
    say(f"compiled in {seconds:.1f} s; later runs start at once")
