"""Training curves: `charnn plot LOG... -o loss.png` draws the train and validation loss of one or
several runs (their <out>.log.jsonl, charnn.train.log) against steps or wall-clock time, with
matplotlib (the optional extra charnn[plot]) on its Agg backend, to PNG or SVG by the suffix.
"""
from __future__ import annotations

import math
import os

from ..errors import CharnnError
from ..files import atomic_path
from ..train.log import read_log

FORMATS = (".png", ".svg")
AXES = {"step": ("step", "step"), "time": ("time", "wall-clock time (s)")}  # --x: record field, axis label


def _pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no window), or one line saying how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise CharnnError("drawing plots needs matplotlib: pip install 'charnn[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_logs(logs, out: str | os.PathLike, x: str = "step", title: str | None = None, dpi: int = 100) -> None:
    """Draw the train loss (line) and validation loss (line with dots) of every log in `logs`
    against `x` ("step" or "time"), one colour per run, labelled by the log's file name; loss in
    nats per character on the left axis, bits on the right. out: a .png or .svg path."""
    out = os.fspath(out)
    ext = os.path.splitext(out)[1].lower()
    if ext not in FORMATS:
        raise CharnnError(f"cannot tell the format of {out}: name it .png or .svg")
    if x not in AXES:
        raise CharnnError(f"x must be one of {', '.join(AXES)}, got {x!r}")
    logs = [os.fspath(p) for p in logs]
    if not logs:
        raise CharnnError("no training log to plot")
    runs = [(p, read_log(p)) for p in logs]  # every log read before matplotlib is
    plt = _pyplot()
    field, label = AXES[x]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    try:
        for k, (path, records) in enumerate(runs):
            colour = f"C{k % 10}"
            name = os.path.basename(path).removesuffix(".jsonl").removesuffix(".log")
            for event, key, style in (("train", "train_loss", dict(lw=1.2, alpha=0.75)),
                                      ("val", "val_loss", dict(lw=1.8, marker="o", ms=4))):
                pts = [(r[field], r[key]) for r in records if r.get("event") == event and isinstance(r.get(key), (int, float))]
                if pts:
                    ax.plot(*zip(*pts), color=colour, label=f"{name} {'train' if event == 'train' else 'validation'}", **style)
        if not ax.lines:
            raise CharnnError(f"{', '.join(logs)}: no train or validation losses to plot yet")
        ax.set_xlabel(label)
        ax.set_ylabel("loss (nats/char)")
        ax.secondary_yaxis("right", functions=(lambda n: n / math.log(2), lambda b: b * math.log(2))).set_ylabel("bits/char")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(title or "charnn training loss")
        fig.tight_layout()
        try:
            with atomic_path(out, suffix=ext) as tmp:
                fig.savefig(tmp, format=ext[1:], dpi=dpi)
        except OSError as e:
            raise CharnnError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
