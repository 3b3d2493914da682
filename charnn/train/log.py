"""The training log: one JSON line per progress report and per validation pass, appended to
<out>.log.jsonl (log_path) while training runs, so the curves of a run can be drawn (`charnn plot`)
or read by anything that reads JSON lines.

    {"event": "start", "step": 0, "time": 0.0, "command": "charnn train ..."}   each (re)start
    {"event": "train", "step": 120, "epoch": 0.2314, "chars": 245760, "train_loss": 1.93, "train_bits": 2.78,
     "lr": 0.002, "chars_per_s": 51234.5, "time": 8.41}
    {"event": "val", "step": 200, ..., "val_loss": 1.71, "val_bits": 2.47, "best": true, ...}

step: steps done; epoch: step / chunks per epoch; chars: training characters seen (step * B * T);
train_loss: the mean over the steps since the previous train line, in nats (a line every
max(1, eval_every // 10) steps and at the last step); val_loss: the whole validation split (or
--eval-chars of it); lr: the rate of the step; chars_per_s: this run's training throughput,
evaluation excluded; time: wall-clock seconds since the run first started, counting only time
spent running.

A resumed run appends to the same file: its start line names the step it resumed from, and
read_log drops what an earlier run logged past that step (work lost when it was killed after its
last checkpoint), so the series stay those of one uninterrupted run and time goes on from there.
A new run with the same out starts from step 0 and so supersedes the old lines the same way.
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Callable

from ..errors import CharnnError

PROGRESS_LINES = 10  # train lines per eval_every steps


def log_path(out: str) -> str:
    """checkpoints/x.npz -> checkpoints/x.log.jsonl, beside the checkpoints (like best_path)."""
    root, _ = os.path.splitext(out)
    return root + ".log.jsonl"


class TrainLog:
    """A Reporter (train.loop's interface) that appends the log's lines and passes every event on
    to `inner`. chunks_per_epoch: of the run's streams; lr_at(step): the rate the schedule gives
    the step (0-based). A failed write is said once through inner.message and logging stops;
    training goes on."""

    def __init__(self, path: str, inner, *, chunks_per_epoch: int, lr_at: Callable[[int], float], command: str | None = None):
        self.path, self.inner, self.cpe, self.lr_at, self.command = path, inner, chunks_per_epoch, lr_at, command
        self.file = None
        self.losses: list[float] = []  # train losses since the last train line

    # ------------------------------------------------------------ the Reporter events
    def start(self, *, step, total_steps, chars_per_step, model, config, n_train, n_val):
        self.chars_per_step, self.total = chars_per_step, total_steps
        self.every = max(1, config.eval_every // PROGRESS_LINES)
        try:
            self.file = open(self.path, "a", encoding="utf-8")
            if self.file.tell() and not _ends_with_newline(self.path):
                self.file.write("\n")  # a line cut short by a kill: start a fresh one
        except OSError as e:
            raise CharnnError(f"cannot write the training log {self.path}: {e.strerror or e}") from None
        kept = read_log(self.path, until=step)
        self.offset = kept[-1]["time"] if kept else 0.0  # time goes on from where the resumed run was
        self.t0 = time.perf_counter()
        self.rate = 0.0
        self._write({"event": "start", "step": step, "time": self.offset, "command": self.command})
        self.inner.start(step=step, total_steps=total_steps, chars_per_step=chars_per_step, model=model,
                         config=config, n_train=n_train, n_val=n_val)

    def step(self, *, step, loss, chars_per_s):
        self.losses.append(loss)
        self.rate = chars_per_s
        if step % self.every == 0 or step == self.total:
            mean = math.fsum(self.losses) / len(self.losses)
            self._write(self._line("train", step, train_loss=mean, train_bits=mean / math.log(2)))
            self.losses = []
        self.inner.step(step=step, loss=loss, chars_per_s=chars_per_s)

    def eval(self, *, step, val_loss, best, ema_loss=None):
        average = {} if ema_loss is None else {"ema_loss": ema_loss, "ema_bits": ema_loss / math.log(2)}
        self._write(self._line("val", step, val_loss=val_loss, val_bits=val_loss / math.log(2), **average, best=bool(best)))
        self.inner.eval(step=step, val_loss=val_loss, best=best, ema_loss=ema_loss)

    def sample(self, *, step, text):
        self.inner.sample(step=step, text=text)

    def message(self, text):
        self.inner.message(text)

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None
        self.inner.close()

    def __getattr__(self, name):  # any other Reporter event goes straight to inner
        if name == "inner":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    # ------------------------------------------------------------ writing
    def _line(self, event: str, step: int, **values) -> dict:
        return {"event": event, "step": step, "epoch": round(step / self.cpe, 4), "chars": step * self.chars_per_step,
                **values, "lr": self.lr_at(step - 1), "chars_per_s": round(self.rate, 1),
                "time": round(self.offset + time.perf_counter() - self.t0, 3)}

    def _write(self, record: dict) -> None:
        if self.file is None:
            return
        try:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()  # a line is on disk when written: a killed run keeps its log
        except OSError as e:
            self.file = None
            self.inner.message(f"cannot append to the training log {self.path} ({e.strerror or e}); training goes on without it")


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def read_log(path: str | os.PathLike, until: int | None = None) -> list[dict]:
    """The records of a training log, in order, as one uninterrupted run: a start line at step s
    drops the records an earlier run wrote past s. until: keep only records up to that step.
    Lines that are not JSON objects (one cut short by a kill) are skipped. Raises CharnnError if
    the file cannot be read or holds no record."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CharnnError(f"cannot read training log {path}: {getattr(e, 'strerror', None) or e}") from None
    records: list[dict] = []
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if not isinstance(r, dict) or not isinstance(r.get("step"), int) or not isinstance(r.get("time"), (int, float)):
            continue
        if r.get("event") == "start":
            records = [k for k in records if k["step"] <= r["step"]]
        records.append(r)
    if until is not None:
        records = [r for r in records if r["step"] <= until]
    if not records and until is None:
        raise CharnnError(f"{path} holds no training log lines")
    return records
