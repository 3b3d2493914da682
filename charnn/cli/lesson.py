"""`charnn lesson`: the lecture's ideas, one short deterministic run each (charnn.lessons)."""
from __future__ import annotations

import click

from ..errors import CharnnError
from ..lessons import LESSONS, figures, get, with_figures
from .common import fail, say


@click.command()
@click.argument("name", required=False)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw the lesson's figure to this file (.png, .svg, .pdf); needs matplotlib (charnn[plot]).")
def lesson(name, plot_path):
    """Run a lesson of the lecture on charnn's own layers, or list them.

    Each lesson is seeded and prints the same numbers every run (the activations lesson's
    timing line is the one exception: it measures this machine). The numbers come from
    charnn.lessons.NAME.run(); the text from its report().

    \b
    Examples:
      charnn lesson                       # the list
      charnn lesson chain-rule
      charnn lesson xor --plot xor.png
    """
    if name is None:
        width = max(len(n) for n in LESSONS)
        click.echo("The lecture, runnable: charnn lesson NAME runs one (a few seconds, the same output every run).")
        for i, l in enumerate(LESSONS.values(), 1):
            click.echo(f"  {i}. {l.name:<{width}}  {l.summary}")
        click.echo(f"--plot FILE draws a figure for: {', '.join(with_figures())} (needs matplotlib: pip install 'charnn[plot]').")
        return
    try:
        chosen = get(name)
        if plot_path is not None:
            if chosen.plot is None:
                raise CharnnError(f"lesson {name} has no figure; these do: {', '.join(with_figures())}")
            figures.check(plot_path)  # before the lesson runs: a missing matplotlib fails at once
        result = chosen.run()
        click.echo(chosen.report(result))
        if plot_path is not None:
            chosen.plot(result, plot_path)
            say(f"figure written to {plot_path}")
    except CharnnError as e:
        fail(str(e))
