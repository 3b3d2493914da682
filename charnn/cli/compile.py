"""`charnn compile`: compile the numba kernels now, instead of at the first run that needs them."""
from __future__ import annotations

import click

from ..compile import PHASES, compile_kernels
from ..errors import CharnnError
from .common import POSITIVE, fail, say


@click.command(name="compile")
@click.option("--processes", type=POSITIVE, default=None,
              help="Groups of kernels compiled at once, each in a child process; 1: in this process "
                   f"[default: the CPUs this process may use, at most {max(map(len, PHASES))}]")
def compile_(processes):
    """Compile every numba kernel for this machine, once (~2 min on two cores);
    numba caches them on disk. Groups of kernels compile at once in child processes, as many as
    there are CPUs for (--processes), and the command waits for them.
    Then time the default model's matrix products both ways (charnn's register tiles, on numba's
    thread count and fewer, and numpy's BLAS) and remember the faster for each shape (~2 s; in
    ~/.cache/charnn, or CHARNN_CACHE_DIR; CHARNN_GEMM=tiles or =blas and CHARNN_TRAIN_THREADS=n
    override it), and time sampling the checkpoint `charnn sample`
    reads by default on one thread and on several (~1 s; CHARNN_SAMPLE_THREADS overrides it).

    Without it, the first training run compiles the training kernels it needs (~1 min) and times
    its products as it meets them, and the first long sample compiles the sampling kernels (under a minute);
    each run says so when it has to. Nothing ever compiles in the background.

    \b
    Examples:
      charnn compile
      charnn compile --processes 1    # all in this process, one group after another
    """
    try:
        seconds = compile_kernels(say, processes=processes)
    except CharnnError as e:
        fail(str(e))
    say(f"done in {seconds:.1f} s; later runs start at once")
