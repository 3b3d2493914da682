"""The `charnn` command: a thin layer of option parsing over the Python API."""
from __future__ import annotations

import os
import shlex
import sys

import click

from . import __version__
from .checkpoint import load
from .clitools import fail as _fail
from .errors import CharnnError
from .activations import ACTIVATIONS
from .model import BACKENDS, MODELS
from .optim import OPTIMIZERS
from .schedule import SCHEDULES
from .progress import ConsoleReporter
from .train import TrainConfig, config_from_checkpoint, resolve_paths, train as run_training

LATEST = os.path.join("checkpoints", ".latest")  # path of the checkpoint `charnn train` wrote last

POSITIVE = click.IntRange(min=1)
POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="charnn")
def main():
    """charnn: character-level RNN/LSTM/GRU/MLP language models with hand-written backprop.

    \b
    Train on any UTF-8 text, then sample from the checkpoint:
      charnn train corpus.txt
      charnn sample --prime "ROMEO:" --length 500
    """


@main.command()
@click.argument("corpus", required=False, type=click.Path(dir_okay=False))
@click.option("--model", type=click.Choice(MODELS), default="lstm", show_default=True, help="Recurrent cell, or the Bengio MLP n-gram model.")
@click.option("--hidden", type=POSITIVE, default=256, show_default=True, help="Units per layer (H).")
@click.option("--layers", type=POSITIVE, default=2, show_default=True, help="Stacked recurrent / MLP hidden layers (L).")
@click.option("--embed", type=click.IntRange(min=0), default=64, show_default=True, help="Embedding width (E); 0 feeds one-hot vectors (not for mlp).")
@click.option("--activation", type=click.Choice(list(ACTIVATIONS)), default="tanh", show_default=True, help="Nonlinearity of the rnn and of the mlp hidden layers.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True, help="Dropout after every layer, training only.")
@click.option("--context", type=POSITIVE, default=3, show_default=True, help="Characters of context for --model mlp (K).")
@click.option("--batch-size", type=POSITIVE, default=32, show_default=True, help="Parallel streams per step (B).")
@click.option("--seq-len", type=POSITIVE, default=64, show_default=True, help="Characters per chunk, the truncated-BPTT length (T).")
@click.option("--lr", type=POSITIVE_FLOAT, default=2e-3, show_default=True, help="Learning rate.")
@click.option("--optimizer", type=click.Choice(sorted(OPTIMIZERS)), default="adam", show_default=True, help="Optimizer (rmsprop is char-rnn's, alpha 0.95; adagrad min-char-rnn's).")
@click.option("--lr-schedule", type=click.Choice(SCHEDULES), default=None, help="constant; step: char-rnn's per-epoch decay; cosine: to --min-lr at the last step [default: step if --lr-decay is given, else constant].")
@click.option("--lr-decay", type=click.FloatRange(0, 1, min_open=True), default=0.97, show_default=True, help="step schedule: multiply the rate by this after every epoch past --lr-decay-after.")
@click.option("--lr-decay-after", type=click.FloatRange(min=0), default=10, show_default=True, help="step schedule: epochs at the full rate.")
@click.option("--min-lr", type=click.FloatRange(min=0), default=0.0, show_default=True, help="cosine schedule: the final rate.")
@click.option("--warmup", type=click.IntRange(min=0), default=0, show_default=True, help="cosine schedule: steps of linear warm-up.")
@click.option("--clip", type=click.FloatRange(min=0), default=5.0, show_default=True, help="Max global gradient norm; 0 disables clipping.")
@click.option("--steps", type=POSITIVE, default=None, help="Stop after this many steps in total [default: 2000 unless --epochs is given].")
@click.option("--epochs", type=POSITIVE_FLOAT, default=None, help="Stop after this many passes over the training split (the earlier of --steps/--epochs wins).")
@click.option("--sample-every", type=click.IntRange(min=0), default=0, show_default=True, help="Print a sample every N steps to watch the text improve; 0: never.")
@click.option("--sample-length", type=POSITIVE, default=200, show_default=True, help="Characters in each of those samples.")
@click.option("--time-limit", type=POSITIVE_FLOAT, default=None, help="Or stop after this many seconds (then validate and save).")
@click.option("--eval-every", type=POSITIVE, default=200, show_default=True, help="Steps between validation passes; each writes the checkpoints.")
@click.option("--eval-chars", type=click.IntRange(min=1), default=None, help="Score only the first N characters of the validation split [default: all of it]; for very large corpora.")
@click.option("--val-frac", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1, show_default=True, help="Last fraction of the text held out for validation.")
@click.option("--seed", type=int, default=1337, show_default=True, help="Random seed: same seed and options, same run.")
@click.option("--backend", type=click.Choice(BACKENDS), default="numba", show_default=True, help="numba: fused compiled kernels; numpy: the plain reference code.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Checkpoint path [default: checkpoints/<corpus>-<model>.npz]; the best-validation one goes to <out>.best.npz.")
@click.option("--resume", type=click.Path(dir_okay=False), default=None, help="Continue the run saved in this checkpoint (other options default to its values).")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.pass_context
def train(ctx, corpus, resume, quiet, **options):
    """Train a model on CORPUS, a UTF-8 text file (default: tiny Shakespeare, if present).

    Progress, validation loss (nats and bits/char) and throughput go to stderr. The latest state
    is written to --out at every validation pass, the best one to <out>.best.npz; Ctrl-C saves
    before it exits and --resume continues exactly where the run stopped.

    \b
    Examples:
      charnn train input.txt
      charnn train input.txt --model rnn --hidden 512 --layers 1 --steps 5000
      charnn train input.txt --resume checkpoints/input-lstm.npz --steps 8000
    """
    config = None
    source = lambda name: ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    if options["lr_schedule"] is None:  # asking for a decay means the char-rnn step schedule
        options["lr_schedule"] = "step" if source("lr_decay") or source("lr_decay_after") else "constant"
    try:
        if resume:
            # a resumed run keeps its saved options unless the user names them again
            saved = vars(config_from_checkpoint(resume))
            given = {k: v for k, v in options.items() if source(k) or k == "lr_schedule" and options[k] != "constant"}
            if given.keys() & {"steps", "epochs", "time_limit"}:  # a new stopping point replaces the saved one
                saved.update(steps=None, epochs=None, time_limit=None)
            config = TrainConfig(**{**saved, **given, "corpus": corpus or saved["corpus"]})
        else:
            config = TrainConfig(corpus=corpus, **options)
        config = resolve_paths(config)
        command = " ".join(["charnn"] + [shlex.quote(a) for a in sys.argv[1:]])
        result = run_training(config, resume=resume, reporter=None if quiet else ConsoleReporter(), command=command)
    except KeyboardInterrupt:
        _remember_if_written(config)
        if config is not None and config.out and os.path.exists(config.out):
            _fail(f"interrupted; saved {config.out}: add --resume {config.out} to continue", 130)
        _fail("interrupted before any checkpoint was written", 130)
    except CharnnError as e:
        _remember_if_written(config)
        _fail(str(e))
    _remember(result.checkpoint)
    if not quiet:
        best = f", best {result.best_val:.4f} in {result.best_checkpoint}" if result.best_val is not None else ""
        click.echo(f"done: step {result.step}, validation loss {result.val_loss:.4f} nats{best}; "
                   f"{result.chars_per_s:,.0f} chars/s; checkpoint {result.checkpoint}", err=True)


@main.command()
@click.option("--model", type=click.Choice(MODELS), default="lstm", show_default=True, help="Model to check.")
@click.option("--activation", type=click.Choice(list(ACTIVATIONS)), default="tanh", show_default=True, help="Nonlinearity (rnn and mlp).")
@click.option("--layers", type=POSITIVE, default=2, show_default=True, help="Layers of the small model.")
@click.option("--hidden", type=POSITIVE, default=6, show_default=True, help="Units per layer of the small model.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True, help="Check with dropout (masks held fixed).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random model and data.")
@click.option("--threshold", type=POSITIVE_FLOAT, default=1e-6, show_default=True, help="Largest relative error that passes.")
def gradcheck(model, activation, layers, hidden, dropout, seed, threshold):
    """Check the hand-written backward pass against numerical derivatives.

    Builds a small random model in float64 and compares, for every entry of every parameter,
    the gradient from backpropagation with the centred difference (f(w+h) - f(w-h)) / 2h.
    Prints the max relative error per parameter; exits 1 if any exceeds --threshold.
    Backprop is just the chain rule: this is the proof that it was applied correctly.

    \b
    Examples:
      charnn gradcheck --model gru
      charnn gradcheck --model rnn --activation relu
    """
    from .gradcheck import gradcheck_model

    try:
        errors = gradcheck_model(model, activation, layers=layers, hidden=hidden, dropout=dropout, seed=seed)
    except CharnnError as e:
        _fail(str(e))
    act = f" ({activation})" if model in ("rnn", "mlp") else ""
    click.echo(f"gradient check: {model}{act}, {layers} layers x {hidden} units, float64, threshold {threshold:g}")
    width = max(len(k) for k in errors)
    for key, err in errors.items():
        click.echo(f"  {key:<{width}}  max relative error {err:.2e}  {'ok' if err <= threshold else 'FAIL'}")
    worst = max(errors.values())
    if worst > threshold:
        _fail(f"gradient check failed: max relative error {worst:.2e} > {threshold:g}")
    click.echo(f"passed: max relative error {worst:.2e}")


@main.command(name="eval")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--show", is_flag=True, help="Print the text coloured by how surprising each character was.")
@click.option("--backend", type=click.Choice(BACKENDS), default="numba", show_default=True, help="Compute backend.")
def evaluate(checkpoint, file, show, backend):
    """Score FILE under the model in CHECKPOINT: mean loss in nats and bits per character.

    Every character after the first is predicted from all the text before it (one stream,
    state carried). With --show, each character is coloured by its surprisal: green below
    1 bit, plain to 4 bits, yellow to 8, red above.

    \b
    Examples:
      charnn eval checkpoints/input-lstm.npz holdout.txt
      charnn eval checkpoints/input-lstm.npz sonnet.txt --show
    """
    import math

    from .data import read_corpus

    try:
        model = load(resolve_checkpoint(checkpoint), backend=backend)
        text = read_corpus(file)
        if len(text) < 2:
            raise CharnnError(f"{file} has a single character: nothing to predict")
        nats = model.surprisal(text)
    except CharnnError as e:
        _fail(str(e))
    if show:
        bits = nats / math.log(2)
        colour = lambda b: "green" if b < 1 else None if b < 4 else "yellow" if b < 8 else "red"
        out = [text[0]] + [click.style(ch, fg=colour(b)) if colour(b) and not ch.isspace() else ch for ch, b in zip(text[1:], bits)]
        click.echo("".join(out), color=True)
    mean = float(nats.mean())
    click.echo(f"{file}: {len(nats)} characters scored, loss {mean:.4f} nats/char = {mean / math.log(2):.4f} bits/char")


@main.command()
@click.option("--configs", default=None, help="Comma-separated subset, e.g. lstm-2x256,gru-2x256 [default: all five].")
@click.option("--steps", type=POSITIVE, default=21, show_default=True, help="Timed training steps per configuration.")
@click.option("--rounds", type=POSITIVE, default=3, show_default=True, help="Alternate charnn and PyTorch training in this many rounds (the steps split between them).")
@click.option("--backend", type=click.Choice([*BACKENDS, "both"]), default="numba", show_default=True, help="charnn backend to time.")
@click.option("--no-torch", is_flag=True, help="Skip PyTorch even if it is installed.")
@click.option("--startup/--no-startup", default=False, show_default=True, help="Also time first calls and `charnn sample` cold/warm start (clears numba's cache).")
def bench(configs, steps, rounds, backend, no_torch, startup):
    """Time training and sampling chars/s against PyTorch on this CPU; one JSON line per configuration.

    The same as `python bench/speed.py`. PyTorch is optional (`pip install torch==2.13.0`).
    """
    import json

    from .bench import config_by_name, iter_benchmarks

    try:
        chosen = [config_by_name(n) for n in configs.split(",") if n.strip()] if configs else None
    except ValueError as e:
        _fail(str(e))
    note = lambda text: click.echo(text, err=True)
    for row in iter_benchmarks(chosen, steps=steps, backend=backend, torch=not no_torch, startup=startup, note=note,
                               rounds=rounds):
        click.echo(json.dumps(row))


def _remember(path: str) -> None:
    """Record the checkpoint just written, so a plain `charnn sample` finds it."""
    try:
        os.makedirs(os.path.dirname(LATEST), exist_ok=True)
        with open(LATEST, "w", encoding="utf-8") as f:
            f.write(os.path.abspath(path) + "\n")
    except OSError:
        pass  # only a convenience; sampling with --checkpoint still works


def _remember_if_written(config) -> None:
    if config is not None and config.out and os.path.exists(config.out):
        _remember(config.out)


SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "checkpoints")  # the checkout's


def resolve_checkpoint(name: str | None) -> str:
    """A path as given; a bare name (`shakespeare`) that is no file here is a shipped checkpoint;
    nothing: the checkpoint `charnn train` wrote last, else the shipped `shakespeare`."""
    if name:
        shipped = os.path.join(SHIPPED, name + ".npz")
        if not os.path.exists(name) and os.sep not in name and os.path.exists(shipped):
            return shipped
        return name
    try:
        with open(LATEST, encoding="utf-8") as f:
            path = f.read().strip()
    except OSError:
        path = ""
    if path:
        return path
    if os.path.exists(os.path.join(SHIPPED, "shakespeare.npz")):
        return os.path.join(SHIPPED, "shakespeare.npz")
    raise CharnnError("no checkpoint given and none trained here yet: run `charnn train CORPUS` first, or pass --checkpoint PATH")


@main.command()
@click.option("--checkpoint", "-c", type=click.Path(dir_okay=False), default=None, help="Checkpoint path, or a shipped name (shakespeare) [default: the one `charnn train` wrote last, else shakespeare].")
@click.option("--length", "-n", type=click.IntRange(min=0), default=1000, show_default=True, help="Characters to generate.")
@click.option("--temperature", "-t", type=POSITIVE_FLOAT, default=1.0, show_default=True, help="Below 1: safer, more repetitive; above 1: more surprising.")
@click.option("--prime", "-p", default="", help="Text to start from (printed first); every character must be in the model's vocabulary.")
@click.option("--top-k", type=POSITIVE, default=None, help="Sample only among the K most likely characters.")
@click.option("--argmax", is_flag=True, help="Always take the most likely character (greedy).")
@click.option("--seed", type=int, default=None, help="Random seed; the same seed gives the same text [default: fresh each run].")
@click.option("--backend", type=click.Choice(BACKENDS), default="numba", show_default=True, help="numba: compiled sampling loop; numpy: the reference code.")
def sample(checkpoint, length, temperature, prime, top_k, argmax, seed, backend):
    """Generate text from a trained model, streamed to stdout as it is produced.

    \b
    Examples:
      charnn sample --prime "ROMEO:" --length 500 --temperature 0.8 --seed 1
      charnn sample -c checkpoints/input-lstm.best.npz --top-k 5
    """
    try:
        model = load(resolve_checkpoint(checkpoint), backend=backend)
        chars = model.generate(length, temperature=temperature, prime=prime, top_k=top_k, argmax=argmax, seed=seed)
    except CharnnError as e:
        _fail(str(e))
    out = sys.stdout
    out.write(prime)
    try:
        for ch in chars:
            out.write(ch)
            if ch == "\n":
                out.flush()
        out.write("\n")
        out.flush()
    except BrokenPipeError:  # `charnn sample | head` closed the pipe: that is fine
        sys.stderr.close()
        os._exit(0)


from .corpus_cli import corpus  # noqa: E402  (the `charnn corpus` group lives in its own module)

main.add_command(corpus)

if __name__ == "__main__":
    main()
