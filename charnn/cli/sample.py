"""`charnn sample`: text from a model, streamed to stdout."""
from __future__ import annotations

import os
import sys

import click

from ..backend import BACKENDS, DEFAULT_BACKEND
from ..checkpoint import load
from ..errors import CharnnError
from .common import POSITIVE, POSITIVE_FLOAT, fail, say


@click.command()
@click.option("--checkpoint", "-c", type=click.Path(dir_okay=False), default=None, help="Checkpoint path, or a shipped name (shakespeare) [default: the one `charnn train` wrote last, else shakespeare].")
@click.option("--length", "-n", type=click.IntRange(min=0), default=1000, show_default=True, help="Characters to generate.")
@click.option("--temperature", "-t", type=POSITIVE_FLOAT, default=1.0, show_default=True, help="Below 1: safer, more repetitive; above 1: more surprising.")
@click.option("--prime", "-p", default="", help="Text to start from (printed first); every character must be in the model's vocabulary.")
@click.option("--top-k", type=POSITIVE, default=None, help="Sample only among the K most likely characters.")
@click.option("--argmax", is_flag=True, help="Always take the most likely character (greedy).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed; the same seed gives the same text [default: fresh each run].")
@click.option("--backend", type=click.Choice(BACKENDS), default=DEFAULT_BACKEND, show_default=True, help="numba: compiled sampling loop; numpy: the reference code.")
def sample(checkpoint, length, temperature, prime, top_k, argmax, seed, backend):
    """Generate text from a trained model, streamed to stdout as it is produced.

    \b
    Examples:
      charnn sample --prime "ROMEO:" --length 500 --temperature 0.8 --seed 1
      charnn sample -c checkpoints/input-lstm.best.npz --top-k 5
    """
    try:
        model = load(checkpoint, backend=backend, note=say)
        chars = model.generate(length, temperature=temperature, prime=prime, top_k=top_k, argmax=argmax, seed=seed)
    except CharnnError as e:
        fail(str(e))
    notice = model.ops.notice("sample", model, length)
    if notice:
        say(notice)
    out = sys.stdout
    out.write(prime)
    try:
        for ch in chars:
            out.write(ch)
            if ch == "\n":
                out.flush()
        out.write("\n")
        out.flush()
    except BrokenPipeError:  # `charnn sample | head` closed the pipe: that is fine
        sys.stderr.close()
        os._exit(0)
