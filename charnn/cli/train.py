"""`charnn train`: option parsing over charnn.train / charnn.resume. Every default is read from
TrainConfig (tests/test_cli.py checks they agree); no rule lives here."""
from __future__ import annotations

import shlex
import sys

import click

from ..backend import BACKENDS
from ..config import MODELS
from ..errors import CharnnError
from ..nn.activations import ACTIVATIONS
from ..train import Interrupted, TrainConfig, resume, train as run_training
from ..train.optim import OPTIMIZERS
from ..train.schedule import SCHEDULES, STEP_DECAY, STEP_DECAY_AFTER
from .common import DURATION, POSITIVE, POSITIVE_FLOAT, fail
from .progress import ConsoleReporter

D = TrainConfig  # the defaults


@click.command()
@click.argument("corpus", required=False, type=click.Path())
@click.option("--model", type=click.Choice(MODELS), default=D.model, show_default=True, help="Recurrent cell, or the Bengio MLP n-gram model.")
@click.option("--hidden", type=POSITIVE, default=D.hidden, show_default=True, help="Units per layer (H).")
@click.option("--layers", type=POSITIVE, default=D.layers, show_default=True, help="Stacked recurrent / MLP hidden layers (L).")
@click.option("--embed", type=click.IntRange(min=0), default=D.embed, show_default=True, help="Embedding width (E); 0 feeds one-hot vectors (not for mlp).")
@click.option("--activation", type=click.Choice(list(ACTIVATIONS)), default=D.activation, show_default=True, help="Nonlinearity of the rnn and of the mlp hidden layers.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=D.dropout, show_default=True, help="Dropout after every layer, training only.")
@click.option("--weight-drop", type=click.FloatRange(0, 1, max_open=True), default=D.weight_drop, show_default=True, help="DropConnect on the recurrent weights (AWD-LSTM): zero each weight of Wh with this probability, one mask per chunk, training only.")
@click.option("--context", type=POSITIVE, default=D.context, show_default=True, help="Characters of context for --model mlp (K).")
@click.option("--batch-size", type=POSITIVE, default=D.batch_size, show_default=True, help="Parallel streams per step (B).")
@click.option("--seq-len", type=POSITIVE, default=D.seq_len, show_default=True, help="Characters per chunk, the truncated-BPTT length (T).")
@click.option("--lr", type=POSITIVE_FLOAT, default=D.lr, show_default=True, help="Learning rate.")
@click.option("--optimizer", type=click.Choice(sorted(OPTIMIZERS)), default=D.optimizer, show_default=True, help="Optimizer (rmsprop is char-rnn's, alpha 0.95; adagrad min-char-rnn's).")
@click.option("--lr-schedule", type=click.Choice(SCHEDULES), default=D.lr_schedule, help="constant; step: char-rnn's per-epoch decay; cosine: to --min-lr at the last step [default: step if --lr-decay or --lr-decay-after is given, else constant].")
@click.option("--lr-decay", type=click.FloatRange(0, 1, min_open=True), default=D.lr_decay, help=f"step schedule: multiply the rate by this after every epoch past --lr-decay-after [default: {STEP_DECAY}].")
@click.option("--lr-decay-after", type=click.FloatRange(min=0), default=D.lr_decay_after, help=f"step schedule: epochs at the full rate [default: {STEP_DECAY_AFTER}].")
@click.option("--min-lr", type=click.FloatRange(min=0), default=D.min_lr, show_default=True, help="cosine schedule: the final rate.")
@click.option("--warmup", type=click.IntRange(min=0), default=D.warmup, show_default=True, help="cosine schedule: steps of linear warm-up.")
@click.option("--clip", type=click.FloatRange(min=0), default=D.clip, show_default=True, help="Max global gradient norm; 0 disables clipping.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=D.weight_decay, show_default=True, help="Decoupled (AdamW) weight decay of the weight matrices: each step multiplies them by 1 - lr * this.")
@click.option("--ema", type=click.FloatRange(0, 1, max_open=True), default=D.ema, show_default=True, help="Keep an exponential moving average of the weights with this decay (e.g. 0.999), validate it too, and save it as the best checkpoint when it validates better; 0: off.")
@click.option("--steps", type=POSITIVE, default=D.steps, help="Stop after this many steps in total [default: 2000 unless --epochs is given].")
@click.option("--epochs", type=POSITIVE_FLOAT, default=D.epochs, help="Stop after this many passes over the training split (the earlier of --steps/--epochs wins).")
@click.option("--sample-every", type=click.IntRange(min=0), default=D.sample_every, show_default=True, help="Print a sample every N steps to watch the text improve; 0: never.")
@click.option("--sample-length", type=POSITIVE, default=D.sample_length, show_default=True, help="Characters in each of those samples.")
@click.option("--time-limit", type=POSITIVE_FLOAT, default=D.time_limit, help="Or stop after this many seconds (then validate and save).")
@click.option("--budget", type=DURATION, default=D.budget, help="Train for this long (e.g. 10m, 1.5h): sets the time limit and a cosine schedule that reaches --min-lr when the time is up (the lr follows the clock, so the run depends on the machine's speed).")
@click.option("--eval-every", type=POSITIVE, default=D.eval_every, show_default=True, help="Steps between validation passes; each writes the checkpoints.")
@click.option("--eval-chars", type=click.IntRange(min=1), default=D.eval_chars, help="Score only the first N characters of the validation split [default: all of it]; for very large corpora.")
@click.option("--val-frac", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=D.val_frac, show_default=True, help="Last fraction of the text held out for validation.")
@click.option("--seed", type=click.IntRange(min=0), default=D.seed, show_default=True, help="Random seed: same seed and options, same run.")
@click.option("--backend", type=click.Choice(BACKENDS), default=D.backend, show_default=True, help="numba: fused compiled kernels; numpy: the plain reference code.")
@click.option("--out", type=click.Path(dir_okay=False), default=D.out, help="Checkpoint path [default: checkpoints/<corpus>-<model>.npz]; the best-validation one goes to <out>.best.npz.")
@click.option("--resume", "resume_from", type=click.Path(dir_okay=False), default=None, help="Continue the run saved in this checkpoint (other options default to its values).")
@click.option("--new-corpus", is_flag=True, help="With --resume: go on even though CORPUS is not the text the run was trained on (otherwise refused).")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.pass_context
def train(ctx, corpus, resume_from, new_corpus, quiet, **options):
    """Train a model on CORPUS, a UTF-8 text file (default: tiny Shakespeare, if present), or a
    folder: its text files in byte order of their paths (hidden and binary files left out).

    Progress, validation loss (nats and bits/char) and throughput go to stderr. The latest state
    is written to --out at every validation pass, the best one to <out>.best.npz; Ctrl-C saves
    before it exits and --resume continues exactly where the run stopped.

    \b
    Examples:
      charnn train input.txt
      charnn train input.txt --model rnn --hidden 512 --layers 1 --steps 5000
      charnn train input.txt --resume checkpoints/input-lstm.npz --steps 8000
    """
    given = {k: v for k, v in options.items() if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}
    run = dict(reporter=None if quiet else ConsoleReporter(),
               command=" ".join(["charnn"] + [shlex.quote(a) for a in sys.argv[1:]]), remember=True)
    try:
        if resume_from:
            result = resume(resume_from, corpus=corpus, new_corpus=new_corpus, **given, **run)
        else:
            if new_corpus:
                fail("--new-corpus goes with --resume")
            result = run_training(TrainConfig(corpus=corpus, **given), **run)
    except Interrupted as e:
        fail(f"interrupted; saved {e.checkpoint}: add --resume {e.checkpoint} to continue", 128 + e.signum)
    except KeyboardInterrupt:
        fail("interrupted before any checkpoint was written", 130)
    except CharnnError as e:
        fail(str(e))
    if not quiet:
        best = f", best {result.best_val:.4f} in {result.best_checkpoint}" if result.best_val is not None else ""
        click.echo(f"done: step {result.step}, validation loss {result.val_loss:.4f} nats{best}; "
                   f"{result.chars_per_s:,.0f} chars/s; checkpoint {result.checkpoint}", err=True)
