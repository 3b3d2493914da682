"""`charnn viz`: the page of a model's cells over a text (charnn.viz.page_data, write_page)."""
from __future__ import annotations

import os

import click

from ..checkpoint import load
from ..data.text import read_corpus
from ..errors import CharnnError
from ..viz.page import STRONG, page_data, write_page
from .common import fail, say

DEFAULT_CHARS = 2000  # a page of 2.9 MB for an LSTM 2x256 (the size: charnn/viz/page.py)


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--out", "-o", type=click.Path(dir_okay=False), default="cells.html", show_default=True, help="The HTML page to write.")
@click.option("--layer", type=click.IntRange(min=0), default=None, help="Layer shown first [default: that of the best cell found].")
@click.option("--cell", type=click.IntRange(min=0), default=None, help="Cell shown first [default: the best cell found; with --cell alone, layer 0].")
@click.option("--chars", "-n", type=click.IntRange(min=2), default=DEFAULT_CHARS, show_default=True, help="Characters of FILE to run the model over.")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True, help="Character offset in FILE to start at.")
@click.option("--quiet", is_flag=True, help="No progress output on stderr.")
def viz(checkpoint, file, out, layer, cell, chars, start, quiet):
    """Write a page showing what the model in CHECKPOINT computes over FILE: every character
    coloured by one cell (step through cells and layers with the arrow keys), the model's
    top guesses and surprisal under the pointer, the cells that correlate best with simple
    features of the text (quotes, bracket depth, line position, indentation, comments, LaTeX
    math, newlines), and how saturated the gates are. One self-contained HTML file; it opens
    offline in any browser. The best cells found are listed on stdout.

    \b
    Examples:
      charnn viz linux kernel.c -o cells.html
      charnn viz latex paper.tex --start 10000 --chars 3000 -o latex.html
      charnn viz checkpoints/input-lstm.npz input.txt --layer 1 --cell 42
    """
    try:
        model = load(checkpoint, backend="numpy")
        whole = read_corpus(file)
        if start >= len(whole) - 1:
            raise CharnnError(f"{file} has {len(whole):,} characters: --start {start} leaves fewer than 2")
        text = whole[start : start + chars]
        source = f"{os.path.basename(file)} [{start:,}:{start + len(text):,}]"
        data = page_data(model, text, title=os.path.basename(checkpoint), source=source, layer=layer, cell=cell)
        size = write_page(out, data)
    except CharnnError as e:
        fail(str(e))
    names = data["value_names"]
    for feature in data["feature_order"]:
        found = [c for c in data["found"][feature] if abs(c["r"]) >= STRONG]
        cells = ", ".join(f"layer {c['layer']} cell {c['cell']} {names[c['value']]} r={c['r']:+.3f}" for c in found[:3])
        click.echo(f"{feature:8s} {cells or '-'}")
    if not quiet:
        s = data["start"]
        say(f"wrote {out} ({size / 1e6:.1f} MB, {len(text):,} characters), showing layer {s['layer']} cell {s['cell']} {names[s['value']]}")
