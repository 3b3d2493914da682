"""Console progress for training: a live status line on a terminal, periodic log lines otherwise.

Writes to stderr so that stdout stays clean for text (samples) a user may pipe somewhere.
"""
from __future__ import annotations

import math
import sys
import time

import click

from ..train.config import UNLIMITED
from ..train.loop import Reporter


def _rate(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class ConsoleReporter(Reporter):
    def __init__(self, stream=None, log_seconds: float = 10.0):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.log_seconds = log_seconds  # how often a line is logged when there is no terminal
        self.val = None
        self._last_draw = 0.0
        self._width = 0

    def _echo(self, text: str) -> None:
        if self.live and self._width:
            text = "\r" + " " * self._width + "\r" + text  # clear the status line first
            self._width = 0
        click.echo(text, file=self.stream)

    def start(self, *, step, total_steps, chars_per_step, model, config, n_train, n_val):
        self.total, self.t_start = total_steps, time.perf_counter()
        self.first_step = step
        n = sum(p.size for p in model.params.values())
        verb = "resuming at step %d of" % step if step else "training for"
        steps = f"{total_steps} steps" if total_steps < UNLIMITED else f"{config.budget or config.time_limit:g} s"
        self._echo(
            f"{config.model} {config.layers}x{config.hidden}, {n:,} parameters, vocab {model.config.vocab_size}; "
            f"{n_train:,} train / {n_val:,} validation chars; {verb} {steps}, {chars_per_step} chars a step "
            f"-> {config.out}"
        )

    def _line(self, step, loss, rate) -> str:
        val = f"val {self.val:.4f}" if self.val is not None else "val -"
        elapsed = time.perf_counter() - self.t_start
        if self.total >= UNLIMITED:  # bounded by time only: no meaningful percentage
            return f"step {step} | loss {loss:.4f} | {val} | {_rate(rate)} chars/s | {_clock(elapsed)} elapsed"
        left = (self.total - step) * elapsed / max(step - self.first_step, 1)
        return (f"step {step}/{self.total} {step / self.total:4.0%} | loss {loss:.4f} | {val} | "
                f"{_rate(rate)} chars/s | ETA {_clock(left)}")

    def step(self, *, step, loss, chars_per_s):
        now = time.perf_counter()
        if self.live:
            if now - self._last_draw >= 0.1 or step == self.total:
                line = self._line(step, loss, chars_per_s)
                self.stream.write("\r" + line.ljust(self._width))
                self.stream.flush()
                self._width = len(line)
                self._last_draw = now
        elif now - self._last_draw >= self.log_seconds:
            self._echo(self._line(step, loss, chars_per_s))
            self._last_draw = now

    def eval(self, *, step, val_loss, best, ema_loss=None):
        self.val = val_loss if ema_loss is None else min(val_loss, ema_loss)
        mark = " (best)" if best else ""
        average = "" if ema_loss is None else f"; average of the weights {ema_loss:.4f} nats"
        self._echo(f"step {step}: validation loss {val_loss:.4f} nats = {val_loss / math.log(2):.4f} bits/char{average}{mark}")

    def sample(self, *, step, text):
        self._echo(f"--- sample at step {step} ---\n{text}\n---")

    def message(self, text):
        self._echo(text)

    def close(self):
        if self.live and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
