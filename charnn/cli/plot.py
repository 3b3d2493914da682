"""`charnn plot`: training curves from <out>.log.jsonl files (charnn.viz.plot_logs)."""
from __future__ import annotations

import click

from ..errors import CharnnError
from ..viz.plot import AXES, plot_logs
from .common import fail, say


@click.command()
@click.argument("logs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", "-o", type=click.Path(dir_okay=False), default="loss.png", show_default=True, help="The figure: .png or .svg.")
@click.option("--x", "x", type=click.Choice(list(AXES)), default="step", show_default=True, help="Horizontal axis: steps, or wall-clock seconds.")
@click.option("--title", default=None, help="Title of the figure [default: charnn training loss].")
@click.option("--quiet", is_flag=True, help="Do not say where the figure went.")
def plot(logs, out, x, title, quiet):
    """Draw train and validation loss against steps (or time, --x time) for one or several runs,
    from the logs `charnn train` writes beside its checkpoints (<out>.log.jsonl). Needs
    matplotlib: pip install 'charnn[plot]'.

    \b
    Examples:
      charnn plot checkpoints/input-lstm.log.jsonl -o loss.png
      charnn plot runs/a.log.jsonl runs/b.log.jsonl --x time -o compare.svg
    """
    try:
        plot_logs(logs, out, x=x, title=title)
    except CharnnError as e:
        fail(str(e))
    if not quiet:
        say(f"wrote {out}")
