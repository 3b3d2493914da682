"""Lesson 5, activations: sigmoid, tanh, ReLU, LeakyReLU (0.01), ELU and softplus, as charnn has
them (charnn.nn.activations: each a forward and a derivative written from the output h).

  - values and derivatives over [-6, 6];
  - where each saturates: the derivative below 0.01, so almost no gradient passes back through it;
  - whether its output is zero-centred: the mean over a standard normal input;
  - the lecture's "ReLU is up to 6 times faster than sigmoid", timed here (the one number of the
    lesson that changes from run to run, because it is a measurement of this machine);
  - and the lecture's advice tested: a vanilla RNN (charnn's RecurrentModel, trained by charnn's
    train_step) on a short built-in text with each activation and the same budget.

The RNNs run on the numpy backend, the reference: for models this small, compiling the numba
kernels for six activations would take far longer than the training.
"""
from __future__ import annotations

import math
import timeit
from typing import NamedTuple

import numpy as np

from ..config import ModelConfig
from ..data.batches import BatchStreams, split_train_val
from ..data.text import Vocab
from ..model import CharModel
from ..nn.activations import ACTIVATIONS, LEAKY_SLOPE
from ..train import TrainConfig, train_step
from ..train.optim import make_optimizer
from .draw import table

NAME = "activations"
SUMMARY = "sigmoid, tanh, ReLU, LeakyReLU, ELU, softplus, and an RNN with each"

ORDER = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus")  # the lecture's order
LABELS = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "ReLU", "leaky_relu": f"LeakyReLU {LEAKY_SLOPE:g}",
          "elu": "ELU", "softplus": "softplus"}
SPAN = 6.0  # the range [-SPAN, SPAN] looked at
SHOWN = (-6.0, -3.0, -1.0, 0.0, 1.0, 3.0, 6.0)  # where values and derivatives are printed
GRID = 1201  # points of [-SPAN, SPAN] searched for saturation (step 0.01, the printed precision)
SATURATED = 0.01  # a derivative below this passes almost no gradient back
NORMAL = 1_000_000  # draws of the standard normal input for the means
SEED = 0

TIMED = 1_000_000  # float32 values each activation is timed on
TIMING_REPEATS, TIMING_CALLS = 5, 10  # the best of 5 repeats of 10 calls

# the RNN experiment: the same budget for every activation
TEXT_CHARS = 12_000  # characters of the built-in practice text (the last 10% validates)
HIDDEN = 32  # H, one layer, one-hot inputs (char-rnn style)
BATCH, SEQ_LEN = 16, 32  # B streams x T characters per step
STEPS = 200
TARGET = 2.0  # nats: "how many steps to reach it" compares convergence speed
WORDS = ("the network learns a function from data while every gradient flows back through each layer "
         "and a small step of descent makes the loss fall on the next batch of text").split()


class Stats(NamedTuple):
    values: np.ndarray  # (len(SHOWN),) act(a) at SHOWN
    derivatives: np.ndarray  # (len(SHOWN),) act'(a) at SHOWN
    saturated: list  # [(lo, hi)] intervals of [-SPAN, SPAN] where act'(a) < SATURATED
    saturated_fraction: float  # of [-SPAN, SPAN]
    mean_normal: float  # E[act(z)] for z ~ N(0, 1), by NORMAL draws


class Timing(NamedTuple):
    relu: float  # seconds per call, best of the repeats
    sigmoid: float
    ratio: float  # sigmoid / relu: how many times faster ReLU is here
    size: int  # float32 values per call


class RNNRun(NamedTuple):
    losses: np.ndarray  # (STEPS,) training loss of every step
    final: float  # mean training loss of the last 10 steps
    val: float  # loss on the held-out tenth of the text
    steps_to_target: int | None  # first step whose last-10 mean is <= TARGET (None: not within STEPS)


class ActivationsResult(NamedTuple):
    stats: dict  # name -> Stats, in ORDER
    timing: Timing
    rnn: dict  # name -> RNNRun, in ORDER
    vocab_size: int  # V of the practice text; ln V is the loss of a uniform guess
    budget: dict  # what every RNN got: model, optimizer and data sizes


def practice_text(n_chars: int = TEXT_CHARS, seed: int = SEED) -> str:
    """Deterministic text of n_chars: words drawn at random from WORDS, lines of about 60 characters.
    Built in, so the lesson runs from a fresh install with no corpus."""
    rng = np.random.default_rng(seed)
    out, size, line = [], 0, 0
    while size < n_chars:
        w = WORDS[rng.integers(len(WORDS))]
        sep = "\n" if line > 60 else " "
        line = 0 if sep == "\n" else line + len(w) + 1
        out.append(w + sep)
        size += len(w) + 1
    return "".join(out)[:n_chars]


def derivative(name: str, a: np.ndarray) -> np.ndarray:
    """act'(a), from charnn's backward with an upstream gradient of 1 (written from h = act(a))."""
    act = ACTIVATIONS[name]
    h = act.forward(a)
    return act.backward(np.ones_like(h), h)


def saturation(name: str) -> tuple[list, float]:
    """The intervals of [-SPAN, SPAN] where the derivative is below SATURATED, and their share."""
    a = np.linspace(-SPAN, SPAN, GRID)
    low = derivative(name, a) < SATURATED  # (GRID,)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], low.astype(np.int8), [0]])))  # run starts, run ends + 1
    intervals = [(float(a[s]), float(a[e - 1])) for s, e in zip(edges[::2], edges[1::2])]
    return intervals, float(low.mean())


def time_activations(size: int = TIMED, seed: int = SEED) -> Timing:
    """Seconds per forward call of ReLU and of sigmoid on `size` float32 values: timeit, the best of
    TIMING_REPEATS repeats of TIMING_CALLS calls (the best is the least disturbed by other work)."""
    a = np.random.default_rng(seed).standard_normal(size).astype(np.float32)
    seconds = {}
    for name in ("relu", "sigmoid"):
        forward = ACTIVATIONS[name].forward
        seconds[name] = min(timeit.repeat(lambda: forward(a), number=TIMING_CALLS, repeat=TIMING_REPEATS)) / TIMING_CALLS
    return Timing(seconds["relu"], seconds["sigmoid"], seconds["sigmoid"] / seconds["relu"], size)


def train_rnn(activation: str, text: str, seed: int = SEED, steps: int = STEPS) -> RNNRun:
    """A one-layer vanilla RNN with `activation`, trained by charnn's train_step for `steps` steps
    with TrainConfig's optimizer, learning rate and clipping, then scored on the held-out tenth."""
    tc = TrainConfig()
    vocab = Vocab.from_text(text)
    train_ids, val_ids = split_train_val(vocab.encode(text), tc.val_frac)
    streams = BatchStreams(train_ids, BATCH, SEQ_LEN)
    config = ModelConfig("rnn", len(vocab), HIDDEN, 1, 0, activation)
    model = CharModel.create(config, vocab, seed=seed, backend="numpy")
    optimizer = make_optimizer(tc.optimizer, model.params, tc.lr, model.ops)
    losses = np.empty(steps)
    state = None
    for step in range(steps):
        chunk = step % streams.chunks_per_epoch
        if chunk == 0:
            state = model.initial_state(BATCH)  # a new epoch starts the streams again
        batch = streams.batch(chunk)
        losses[step], _, state = train_step(model, optimizer, batch.x, batch.y, state, lr=tc.lr, clip=tc.clip)
    smooth = np.convolve(losses, np.ones(10) / 10, mode="valid")  # smooth[i]: mean of steps i .. i+9
    reached = np.flatnonzero(smooth <= TARGET)
    return RNNRun(losses, float(smooth[-1]), model.mean_loss(val_ids),
                  int(reached[0]) + 10 if reached.size else None)


def run(seed: int = SEED) -> ActivationsResult:
    z = np.random.default_rng(seed).standard_normal(NORMAL)
    shown = np.array(SHOWN)
    stats = {}
    for name in ORDER:
        intervals, fraction = saturation(name)
        stats[name] = Stats(ACTIVATIONS[name].forward(shown), derivative(name, shown), intervals, fraction,
                            float(ACTIVATIONS[name].forward(z).mean()))
    text = practice_text(TEXT_CHARS, seed)
    rnn = {name: train_rnn(name, text, seed) for name in ORDER}
    tc = TrainConfig()
    budget = {"hidden": HIDDEN, "batch": BATCH, "seq_len": SEQ_LEN, "steps": STEPS, "optimizer": tc.optimizer,
              "lr": tc.lr, "clip": tc.clip, "chars": TEXT_CHARS}
    return ActivationsResult(stats, time_activations(TIMED, seed), rnn, len(set(text)), budget)


# ---------------------------------------------------------------- the narration
def _intervals(intervals: list) -> str:
    if not intervals:
        return "nowhere"
    return " and ".join(f"[{lo:.2f}, {hi:.2f}]" for lo, hi in intervals)


def report(r: ActivationsResult) -> str:
    out = ["Lesson 5, activations: what each nonlinearity does to the signal going forward and the gradient going back.", ""]
    rows = [["act(a) at a ="] + [f"{a:g}" for a in SHOWN]]
    rows += [[LABELS[n]] + [f"{v:.3f}" for v in r.stats[n].values] for n in ORDER]
    out += ["Values (charnn/nn/activations.py):"] + table(rows, right=set(range(1, len(SHOWN) + 1))) + [""]
    rows = [["act'(a) at a ="] + [f"{a:g}" for a in SHOWN]]
    rows += [[LABELS[n]] + [f"{v:.3f}" for v in r.stats[n].derivatives] for n in ORDER]
    out += ["Derivatives, from each activation's backward (written from the output h; at a kink, the left one):"]
    out += table(rows, right=set(range(1, len(SHOWN) + 1))) + [""]
    rows = [["", f"derivative < {SATURATED:g} on", "share", "mean over N(0, 1)", "zero-centred"]]
    for n in ORDER:
        s = r.stats[n]
        rows.append([LABELS[n], _intervals(s.saturated), f"{s.saturated_fraction:.0%}", f"{s.mean_normal:+.3f}",
                     "yes" if abs(s.mean_normal) < 0.05 else "no"])
    out += [f"Saturation over [-{SPAN:g}, {SPAN:g}] (almost no gradient passes back there) and centring",
            f"({NORMAL:,} standard normal inputs):"] + table(rows, right={2, 3}) + [""]
    t = r.timing
    out += [f"Speed: one forward call on {t.size:,} float32 values, best of {TIMING_REPEATS} x {TIMING_CALLS} calls (timeit):",
            f"  ReLU {t.relu * 1e3:.2f} ms, sigmoid {t.sigmoid * 1e3:.2f} ms: ReLU is {t.ratio:.1f} times faster on this machine now",
            "  (the lecture says up to 6; this line is a measurement and changes from run to run).", ""]
    b = r.budget
    out += [f"A vanilla RNN with each activation, the same budget: {b['hidden']} hidden units, one-hot input, "
            f"{b['steps']} steps of",
            f"{b['batch']} x {b['seq_len']} characters, {b['optimizer']} lr {b['lr']:g}, clip {b['clip']:g} "
            f"(TrainConfig's), the same seed; a built-in text",
            f"of {b['chars']:,} characters (V = {r.vocab_size}, so a uniform guess scores ln V = {math.log(r.vocab_size):.3f} nats):"]
    rows = [["", "train loss (last 10 steps)", "validation loss", f"steps to {TARGET:g} nats"]]
    for n in ORDER:
        run_ = r.rnn[n]
        rows.append([LABELS[n], f"{run_.final:.3f}", f"{run_.val:.3f}",
                     str(run_.steps_to_target) if run_.steps_to_target is not None else f"not in {b['steps']}"])
    out += table(rows, right={1, 2, 3}) + [""]
    best = min(ORDER, key=lambda n: r.rnn[n].val)
    worst = max(ORDER, key=lambda n: r.rnn[n].val)
    out += [f"Best here: {LABELS[best]} ({r.rnn[best].val:.3f}); worst: {LABELS[worst]} ({r.rnn[worst].val:.3f}). "
            "The lecture's advice: do not use",
            "sigmoid except in the last layer (its output is never zero-centred and its derivative is at most 0.25);",
            "charnn's RNN and MLP take --activation, and tanh is the default. The factor of 6 in the lecture",
            "(Krizhevsky et al. 2012) was counted in training steps to an error rate, the last column above, not in",
            "time per call."]
    return "\n".join(out)


def plot(r: ActivationsResult, path) -> None:
    """Values and derivatives over [-SPAN, SPAN], and the RNN training curves."""
    from . import figures

    fig = figures.figure(15, 4.5)
    values, derivatives, losses = fig.subplots(1, 3)
    a = np.linspace(-SPAN, SPAN, 1201)
    for n in ORDER:
        values.plot(a, ACTIVATIONS[n].forward(a), label=LABELS[n])
        derivatives.plot(a, derivative(n, a), label=LABELS[n])
        losses.plot(np.arange(1, len(r.rnn[n].losses) + 1), r.rnn[n].losses, label=LABELS[n])
    derivatives.axhline(SATURATED, color="k", lw=0.5, ls=":")
    values.set(title="act(a)", xlabel="a", ylim=(-1.5, 3))
    derivatives.set(title="act'(a), from the backward", xlabel="a")
    losses.axhline(math.log(r.vocab_size), color="k", lw=0.5, ls=":")
    losses.set(title="vanilla RNN, same budget", xlabel="step", ylabel="training loss (nats)")
    for ax in (values, derivatives, losses):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    figures.save(fig, path)
