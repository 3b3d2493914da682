"""`charnn eval`: score a text under a model."""
from __future__ import annotations

import math

import click

from ..backend import BACKENDS, DEFAULT_BACKEND
from ..checkpoint import load
from ..data.text import read_corpus
from ..errors import CharnnError
from .common import fail


@click.command(name="eval")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--show", is_flag=True, help="Print the text coloured by how surprising each character was.")
@click.option("--backend", type=click.Choice(BACKENDS), default=DEFAULT_BACKEND, show_default=True, help="Compute backend.")
def evaluate(checkpoint, file, show, backend):
    """Score FILE under the model in CHECKPOINT: mean loss in nats and bits per character.

    Every character after the first is predicted from all the text before it (one stream,
    state carried). With --show, each character is coloured by its surprisal: green below
    1 bit, plain to 4 bits, yellow to 8, red above. CHECKPOINT may be a shipped name (shakespeare).

    \b
    Examples:
      charnn eval checkpoints/input-lstm.npz holdout.txt
      charnn eval shakespeare sonnet.txt --show
    """
    try:
        model = load(checkpoint, backend=backend)
        text = read_corpus(file)
        if len(text) < 2:
            raise CharnnError(f"{file} has a single character: nothing to predict")
        nats = model.surprisal(text)
    except CharnnError as e:
        fail(str(e))
    if show:
        bits = nats / math.log(2)
        colour = lambda b: "green" if b < 1 else None if b < 4 else "yellow" if b < 8 else "red"
        out = [text[0]] + [click.style(ch, fg=colour(b)) if colour(b) and not ch.isspace() else ch for ch, b in zip(text[1:], bits)]
        click.echo("".join(out), color=True)
    mean = float(nats.mean())
    click.echo(f"{file}: {len(nats)} characters scored, loss {mean:.4f} nats/char = {mean / math.log(2):.4f} bits/char")
