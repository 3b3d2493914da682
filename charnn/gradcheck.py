"""Gradient checks of whole models: every parameter's analytic gradient against centred finite
differences of the mean loss (charnn.nn.gradcheck), on small random float64 models.

This is what `charnn gradcheck` runs: backprop is just the chain rule, and this is the proof that
it was applied correctly.
"""
from __future__ import annotations

import numpy as np

from .config import ModelConfig
from .data.text import Vocab
from .model import CharModel
from .nn.gradcheck import numerical_gradient, rel_error, sample_indices


def random_state(model, B: int, rng: np.random.Generator):
    """A nonzero starting state, so the gradient paths through h0/c0 are exercised too.
    (The MLP's state is integer context ids: random characters instead of padding.)"""
    V = model.config.vocab_size
    return [tuple(0.5 * rng.standard_normal(s.shape) if s.dtype.kind == "f" else rng.integers(0, V + 1, s.shape).astype(s.dtype)
                  for s in layer) for layer in model.initial_state(B)]


def model_gradient_errors(model, ids: np.ndarray, targets: np.ndarray, entries: int | None = None,
                          seed: int = 0, h: float = 1e-5) -> dict[str, float]:
    """Per parameter, the max relative error between model.backward and finite differences of
    the mean loss. The model should hold float64 parameters. With dropout or weight drop
    configured, every evaluation draws the same masks (a freshly seeded generator each time), so
    the function being differentiated is fixed."""
    rng = np.random.default_rng(seed)
    B = ids.shape[0]
    state = random_state(model, B, rng)
    masks = lambda: np.random.default_rng(seed + 1) if model.config.draws_masks() else None
    _, cache, _ = model.forward(ids, targets, state, masks())
    grads = model.backward(cache)

    def f():
        return float(model.forward(ids, targets, state, masks())[0])

    errors = {}
    for key, p in model.params.items():
        idx = sample_indices(p.shape, entries, rng)
        num = numerical_gradient(f, p, h, idx)
        ana = np.zeros_like(num)
        for i in idx:
            ana[i] = grads[key][i]
        errors[key] = rel_error(ana, num)
    return errors


def gradcheck_model(model: str = "lstm", activation: str = "tanh", *, vocab_size: int = 8, hidden: int = 6,
                    layers: int = 2, embed: int = 5, context: int = 3, dropout: float = 0.0, batch: int = 3,
                    steps: int = 5, seed: int = 0, weight_drop: float = 0.0) -> dict[str, float]:
    """Build a small random float64 model and return, per parameter, the max relative error of
    its analytic gradient against centred finite differences (every entry is checked)."""
    vocab = Vocab([chr(ord("a") + i) for i in range(vocab_size)])
    config = ModelConfig(model, vocab_size, hidden, layers, embed, activation, dropout, context, weight_drop)
    m = CharModel.create(config, vocab, seed=seed, dtype=np.float64, backend="numpy")  # the reference math
    rng = np.random.default_rng(seed + 100)
    ids = rng.integers(0, vocab_size, (batch, steps))
    targets = rng.integers(0, vocab_size, (batch, steps))
    return model_gradient_errors(m, ids, targets, seed=seed)
