"""The `charnn` command: a thin layer of option parsing over the Python API, one module per command."""
from __future__ import annotations

import click

from ..version import __version__
from .baseline import baseline
from .bench import bench
from .common import CONTEXT
from .compile import compile_
from .corpus import corpus
from .evaluate import evaluate
from .gradcheck import gradcheck
from .plot import plot
from .lesson import lesson
from .sample import sample
from .train import train
from .viz import viz


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="charnn")
def main():
    """charnn: character-level RNN/LSTM/GRU/MLP language models with hand-written backprop.

    \b
    Train on any UTF-8 text, then sample from the checkpoint:
      charnn train corpus.txt
      charnn sample --prime "ROMEO:" --length 500
    """


for command in (train, sample, evaluate, gradcheck, compile_, bench, corpus, baseline, lesson):
    main.add_command(command)
main.add_command(viz)
main.add_command(plot)

if __name__ == "__main__":
    main()
