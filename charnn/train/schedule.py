"""Learning-rate schedules: the lr for a step as a pure function of the step number.

Because the lr depends only on the step (never on an lr carried from the previous step, as
char-rnn's train.lua keeps it), a resumed run recomputes exactly the lr an uninterrupted run
would have used, and a checkpoint needs to store nothing for the schedule.

    constant   base_lr throughout
    step       char-rnn's per-epoch exponential decay (-learning_rate_decay, -learning_rate_decay_after)
    cosine     nanoGPT's get_lr: linear warmup, then cosine from base_lr down to min_lr
"""
from __future__ import annotations

import math

from ..errors import CharnnError

SCHEDULES = ("constant", "step", "cosine")
STEP_DECAY = 0.97  # char-rnn's -learning_rate_decay
STEP_DECAY_AFTER = 10  # char-rnn's -learning_rate_decay_after (epochs)


def learning_rate(
    step: int,
    base_lr: float,
    *,
    schedule: str,
    chunks_per_epoch: int,
    total_steps: int,
    decay: float = STEP_DECAY,
    decay_after: float = STEP_DECAY_AFTER,
    min_lr: float = 0.0,
    warmup: int = 0,
    progress: float | None = None,
) -> float:
    """The learning rate for the update of step `step` (0-based: the number of steps already taken).

    constant:
        lr = base_lr.

    step (char-rnn): train.lua runs, after the update of iteration i (1-based) that ends an
    epoch (i % ntrain == 0), with epoch = i / ntrain,
        if epoch >= learning_rate_decay_after then lr = lr * learning_rate_decay end
    so each finished epoch e = 1, 2, ... with e >= decay_after multiplies the lr by `decay` once,
    and the decay takes effect from the first step of epoch e + 1. Here, with
    E = step // chunks_per_epoch finished epochs before this step,
        n  = the number of e in 1..E with e >= decay_after = max(0, E - max(1, ceil(decay_after)) + 1)
        lr = base_lr * decay ** n
    For a whole decay_after >= 1 (char-rnn's default is 10) that is
    base_lr * decay ** (E - decay_after + 1) once E >= decay_after, else base_lr: with the defaults
    the first decayed step is the first step of the 11th epoch (E = 10). decay_after = 0 behaves as 1
    (the first decay is at the end of the first epoch, never before any training). char-rnn
    multiplies the running lr n times; decay ** n can differ from that in the last bit.

    cosine (nanoGPT's get_lr, with lr_decay_iters = total_steps):
        step < warmup:                  lr = base_lr * (step + 1) / (warmup + 1)   (never 0: no wasted step)
        warmup <= step <= total_steps:  r = (step - warmup) / (total_steps - warmup)
                                        lr = min_lr + 0.5 (1 + cos(pi r)) (base_lr - min_lr)
        step > total_steps:             lr = min_lr
    so lr = base_lr at step = warmup, (base_lr + min_lr) / 2 halfway, and min_lr at total_steps.
    progress (a run with a time budget): r = progress, the fraction of the budget spent (clipped to
    [0, 1]) instead of the fraction of the steps, so the rate reaches min_lr when the time is up.

    Raises CharnnError for an unknown schedule or out-of-range settings.
    """
    _check(step, base_lr, schedule, chunks_per_epoch, total_steps, decay, decay_after, min_lr, warmup)

    if schedule == "constant":
        return float(base_lr)

    if schedule == "step":
        finished_epochs = step // chunks_per_epoch
        first_decay = max(1, math.ceil(decay_after))  # the first epoch whose end decays the lr
        n_decays = max(0, finished_epochs - first_decay + 1)
        return float(base_lr * decay**n_decays)

    # cosine
    if step < warmup:
        return float(base_lr * (step + 1) / (warmup + 1))
    if step > total_steps and progress is None:
        return float(min_lr)
    if progress is not None:
        ratio = min(max(progress, 0.0), 1.0)
    else:
        ratio = (step - warmup) / (total_steps - warmup)  # 0 at the end of warmup, 1 at total_steps
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
    return float(min_lr + coeff * (base_lr - min_lr))


def _check(step, base_lr, schedule, chunks_per_epoch, total_steps, decay, decay_after, min_lr, warmup) -> None:
    """Raise CharnnError, with a one-line message, for settings no schedule can make sense of."""
    if schedule not in SCHEDULES:
        raise CharnnError(f"unknown lr schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    if step < 0:
        raise CharnnError(f"step must be >= 0, got {step!r}")
    if not (base_lr > 0 and math.isfinite(base_lr)):
        raise CharnnError(f"learning rate must be > 0, got {base_lr!r}")
    if not 0.0 < decay <= 1.0:
        raise CharnnError(f"lr decay must be in (0, 1] (1 turns decay off), got {decay!r}")
    if not (decay_after >= 0 and math.isfinite(decay_after)):
        raise CharnnError(f"lr decay-after must be a number of epochs >= 0, got {decay_after!r}")
    if not (min_lr >= 0 and math.isfinite(min_lr)):
        raise CharnnError(f"min lr must be >= 0, got {min_lr!r}")
    if min_lr > base_lr:
        raise CharnnError(f"min lr {min_lr!r} is above the learning rate {base_lr!r}")
    if warmup < 0:
        raise CharnnError(f"warmup must be a number of steps >= 0, got {warmup!r}")
    if schedule == "step" and chunks_per_epoch < 1:
        raise CharnnError(f"the step schedule needs chunks_per_epoch >= 1, got {chunks_per_epoch!r}")
    if schedule == "cosine" and not total_steps > warmup:
        raise CharnnError(f"the cosine schedule needs more total steps ({total_steps!r}) than warmup steps ({warmup!r})")
