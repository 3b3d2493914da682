"""`charnn gradcheck`: the hand-written backward pass against numerical derivatives."""
from __future__ import annotations

import click

from ..config import MODELS
from ..errors import CharnnError
from ..gradcheck import gradcheck_model
from ..nn.activations import ACTIVATIONS
from .common import POSITIVE, POSITIVE_FLOAT, fail


@click.command()
@click.option("--model", type=click.Choice(MODELS), default="lstm", show_default=True, help="Model to check.")
@click.option("--activation", type=click.Choice(list(ACTIVATIONS)), default="tanh", show_default=True, help="Nonlinearity (rnn and mlp).")
@click.option("--layers", type=POSITIVE, default=2, show_default=True, help="Layers of the small model.")
@click.option("--hidden", type=POSITIVE, default=6, show_default=True, help="Units per layer of the small model.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True, help="Check with dropout (masks held fixed).")
@click.option("--weight-drop", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True, help="Check with DropConnect on Wh (masks held fixed; recurrent models).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random model and data.")
@click.option("--threshold", type=POSITIVE_FLOAT, default=1e-6, show_default=True, help="Largest relative error that passes.")
def gradcheck(model, activation, layers, hidden, dropout, weight_drop, seed, threshold):
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
    try:
        errors = gradcheck_model(model, activation, layers=layers, hidden=hidden, dropout=dropout, weight_drop=weight_drop, seed=seed)
    except CharnnError as e:
        fail(str(e))
    act = f" ({activation})" if model in ("rnn", "mlp") else ""
    click.echo(f"gradient check: {model}{act}, {layers} layers x {hidden} units, float64, threshold {threshold:g}")
    width = max(len(k) for k in errors)
    for key, err in errors.items():
        click.echo(f"  {key:<{width}}  max relative error {err:.2e}  {'ok' if err <= threshold else 'FAIL'}")
    worst = max(errors.values())
    if worst > threshold:
        fail(f"gradient check failed: max relative error {worst:.2e} > {threshold:g}")
    click.echo(f"passed: max relative error {worst:.2e}")
