"""`charnn bench`: runs the benchmark in the checkout's bench/speed.py (it is not part of the package)."""
from __future__ import annotations

import os
import runpy
import sys

import click

from .common import fail

SPEED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench", "speed.py")


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args):
    """Time training and sampling against PyTorch on this CPU: `python bench/speed.py ARGS`.

    One JSON line per configuration on stdout; `charnn bench --help` lists its options.
    PyTorch is optional (`pip install torch==2.13.0`).
    """
    if not os.path.isfile(SPEED):
        fail(f"the benchmark lives in the source checkout ({SPEED} not found): clone the repository to run it")
    sys.argv = [SPEED, *args]
    sys.path.insert(0, os.path.dirname(SPEED))
    try:
        runpy.run_path(SPEED, run_name="__main__")
    except SystemExit as e:
        if e.code not in (0, None):
            raise
