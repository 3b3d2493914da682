"""`charnn baseline`: n-gram baselines on the trainer's split (a thin layer over charnn.baseline)."""
from __future__ import annotations

import json
import re

import click

from ..baseline import DEFAULT_MAX_ORDER, DEFAULT_MEMORY, DEFAULT_SMOOTHING, SMOOTHINGS, format_bytes, ngram_baseline
from ..errors import CharnnError
from ..train import TrainConfig
from .common import POSITIVE, fail, say

UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


class Size(click.ParamType):
    """A number of bytes: 1000000, 512M, 1.5G (K, M, G, T: powers of 1024)."""
    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:i?B)?\s*", str(value), re.IGNORECASE)
        if not m or float(m[1]) * UNITS[m[2].upper()] < 1:
            self.fail(f"{value!r} is not a size in bytes such as 512M or 2G", param, ctx)
        return int(float(m[1]) * UNITS[m[2].upper()])


@click.command()
@click.argument("corpus", required=False, type=click.Path(dir_okay=False))
@click.option("--max-order", type=POSITIVE, default=DEFAULT_MAX_ORDER, show_default=True, help="Count and score orders 1 to this.")
@click.option("--val-frac", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=TrainConfig.val_frac, show_default=True,
              help="Last fraction of the text held out for validation (the trainer's split).")
@click.option("--smoothing", type=click.Choice(SMOOTHINGS), default=DEFAULT_SMOOTHING, show_default=True,
              help="Kneser-Ney discounts per order: modified (three, by count 1, 2, 3+) or single.")
@click.option("--memory", type=Size(), default=f"{DEFAULT_MEMORY // 2**30}G", show_default=True,
              help="Most memory the counts may take; beyond it the highest orders are dropped, with a message.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Output: a table, or JSON.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def baseline(corpus, max_order, val_frac, smoothing, memory, fmt, quiet):
    """Character n-gram baselines for CORPUS (default: tiny Shakespeare, if present): interpolated
    Kneser-Ney models of orders 1 to --max-order, counted in one pass over the first 90% of the
    text and scored on the last 10%, the split `charnn train` validates on.

    Prints, per order, the distinct contexts and n-grams, the memory they take, and the validation
    loss in nats and bits per character; then the counting and scoring times.

    \b
    Examples:
      charnn baseline ../shared/corpora/shakespeare.txt
      charnn baseline linux.txt --max-order 6 --format json > linux-ngrams.json
    """
    try:
        r = ngram_baseline(corpus, max_order=max_order, val_frac=val_frac, smoothing=smoothing, memory=memory,
                           progress=None if quiet else say)
    except CharnnError as e:
        fail(str(e))
    if quiet:  # what was given up changes the result: said even when quiet
        for note in r.notes:
            say(note)
    if fmt == "json":
        click.echo(json.dumps(r.to_dict(), indent=2))
        return
    click.echo(f"{r.corpus}: {r.smoothing} Kneser-Ney, counted on the first {r.train_chars:,} characters, scored on "
               f"the last {r.val_chars + 1:,} (--val-frac {r.val_frac:g}; every one but the first), vocabulary {r.vocab_size}")
    click.echo(f"{'order':>5} {'contexts':>10} {'n-grams':>10} {'memory':>11} {'nats/char':>10} {'bits/char':>10}")
    for o in r.orders:
        click.echo(f"{o.order:>5} {o.contexts:>10,} {o.ngrams:>10,} {format_bytes(o.bytes):>11} {o.nats:>10.4f} {o.bits:>10.4f}")
    best = r.best()
    click.echo(f"best: order {best.order}, {best.nats:.4f} nats/char = {best.bits:.4f} bits/char; "
               f"{format_bytes(r.bytes)} in all; counted in {r.count_seconds:.1f} s, scored in {r.eval_seconds:.1f} s")
