import math
from functools import partial

import pytest

from charnn.errors import CharnnError
from charnn.train.schedule import SCHEDULES, learning_rate


def test_constant_is_base_lr_everywhere():
    lr = partial(learning_rate, base_lr=2e-3, schedule="constant", chunks_per_epoch=7, total_steps=100)
    assert [lr(s) for s in (0, 1, 50, 100, 10_000)] == [2e-3] * 5


def test_step_decays_at_each_epoch_end_from_decay_after_on():
    # 5 chunks per epoch; char-rnn's defaults: decay 0.97 after epoch 10
    lr = partial(learning_rate, base_lr=1.0, schedule="step", chunks_per_epoch=5, total_steps=1000)
    assert lr(0) == 1.0
    assert lr(49) == 1.0  # last step of epoch 10 (E = 9 finished epochs)
    assert lr(50) == 0.97  # epoch 10 has ended and 10 >= decay_after: the 11th epoch runs decayed
    assert lr(54) == 0.97  # constant within the epoch
    assert lr(55) == 0.97**2
    assert lr(99) == 0.97**10  # E = 19 finished epochs, decays at the ends of epochs 10..19
    assert lr(100) == 0.97**11


def test_step_matches_char_rnn_loop():
    """Replay train.lua's loop: after iteration i (1-based), if i % ntrain == 0 and i / ntrain >= after, decay."""
    ntrain, decay = 3, 0.5
    for after in (0, 0.5, 1, 2, 2.5, 4):
        running = 1.0
        for i in range(1, 8 * ntrain + 1):
            step = i - 1  # iteration i performs the update of 0-based step i - 1
            got = learning_rate(step, 1.0, schedule="step", chunks_per_epoch=ntrain, total_steps=100,
                                decay=decay, decay_after=after)
            assert got == running, (after, step)
            if i % ntrain == 0 and i / ntrain >= after:
                running *= decay


def test_step_with_decay_one_never_decays():
    assert learning_rate(10_000, 0.1, schedule="step", chunks_per_epoch=2, total_steps=1, decay=1.0) == 0.1


def test_cosine_warmup_midpoint_and_end():
    lr = partial(learning_rate, base_lr=1.0, schedule="cosine", chunks_per_epoch=1, total_steps=110,
                 min_lr=0.1, warmup=10)
    assert lr(0) == pytest.approx(1 / 11, rel=1e-15)  # warmup's first step already moves (nanoGPT's (it+1)/(warmup+1))
    assert lr(5) == pytest.approx(6 / 11, rel=1e-15)
    assert lr(9) == pytest.approx(10 / 11, rel=1e-15)
    assert lr(10) == 1.0  # warmup ends at base_lr
    assert lr(60) == pytest.approx((1.0 + 0.1) / 2, rel=1e-15)  # halfway through the cosine
    assert lr(35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)), rel=1e-15)
    assert lr(110) == 0.1  # the end is min_lr exactly
    assert lr(111) == lr(10_000) == 0.1  # and stays there


def test_cosine_without_warmup_starts_at_base_lr():
    lr = partial(learning_rate, base_lr=3e-3, schedule="cosine", chunks_per_epoch=1, total_steps=100)
    assert lr(0) == 3e-3 and lr(50) == pytest.approx(1.5e-3, rel=1e-15) and lr(100) == 0.0


@pytest.mark.parametrize("schedule,warmup", [("constant", 0), ("step", 0), ("cosine", 0), ("cosine", 25)])
def test_non_increasing_after_warmup(schedule, warmup):
    lrs = [learning_rate(s, 1e-2, schedule=schedule, chunks_per_epoch=4, total_steps=200, decay=0.9,
                         decay_after=3, min_lr=1e-4, warmup=warmup) for s in range(300)]
    assert all(b <= a for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))
    assert all(a < b for a, b in zip(lrs[:warmup], lrs[1:warmup + 1]))  # warmup strictly rises
    assert all(0 <= lr <= 1e-2 for lr in lrs)


def test_schedules_listed():
    assert SCHEDULES == ("constant", "step", "cosine")


@pytest.mark.parametrize("kwargs,message", [
    (dict(schedule="linear"), "unknown lr schedule 'linear'"),
    (dict(decay=0.0), "lr decay must be in \\(0, 1\\]"),
    (dict(decay=1.5), "lr decay must be in \\(0, 1\\]"),
    (dict(decay=float("nan")), "lr decay must be in \\(0, 1\\]"),
    (dict(decay_after=-1), "decay-after must be"),
    (dict(min_lr=-1e-3), "min lr must be >= 0"),
    (dict(min_lr=0.5), "min lr 0.5 is above the learning rate 0.1"),
    (dict(warmup=-1), "warmup must be"),
    (dict(base_lr=0.0), "learning rate must be > 0"),
    (dict(step=-1), "step must be >= 0"),
    (dict(schedule="step", chunks_per_epoch=0), "chunks_per_epoch >= 1"),
    (dict(schedule="cosine", total_steps=10, warmup=10), "more total steps \\(10\\) than warmup steps \\(10\\)"),
])
def test_validation(kwargs, message):
    args = dict(step=0, base_lr=0.1, schedule="cosine", chunks_per_epoch=10, total_steps=100)
    args.update(kwargs)
    step, base_lr = args.pop("step"), args.pop("base_lr")
    with pytest.raises(CharnnError, match=message) as e:
        learning_rate(step, base_lr, **args)
    assert "\n" not in str(e.value)
