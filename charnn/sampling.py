"""Sampling text from a model, one character at a time, with the step function training uses.

Shapes: V vocabulary, H hidden width; sampling runs a single stream (B = 1).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from .errors import CharnnError


def pick(logits: np.ndarray, rng: np.random.Generator, temperature: float = 1.0,
         top_k: int | None = None, argmax: bool = False) -> int:
    """Choose the next id from logits (V,): greedy, or sampled from softmax(logits / temperature)
    restricted to the top_k most likely characters."""
    if argmax:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature  # (V,)
    if top_k is not None and top_k < z.size:
        kth = np.partition(z, -top_k)[-top_k]
        z = np.where(z >= kth, z, -np.inf)
    p = np.exp(z - z.max())  # unnormalised; subtracting the max keeps exp finite at low temperature
    cdf = np.cumsum(p)
    u = rng.random() * cdf[-1]  # one uniform draw per character keeps the stream reproducible
    return min(int(np.searchsorted(cdf, u, side="right")), z.size - 1)


def check_sampling_options(length: int, temperature: float, top_k: int | None) -> None:
    if not isinstance(length, (int, np.integer)) or length < 0:
        raise CharnnError(f"length must be a non-negative integer, got {length!r}")
    if not np.isfinite(temperature) or temperature <= 0:
        raise CharnnError(f"temperature must be > 0, got {temperature!r}")
    if top_k is not None and top_k < 1:
        raise CharnnError(f"top-k must be at least 1, got {top_k!r}")


def generate(model, length: int, temperature: float = 1.0, prime: str = "", top_k: int | None = None,
             argmax: bool = False, seed: int | None = None) -> Iterator[str]:
    """Yield `length` characters continuing `prime`.

    With no prime the model starts from a newline when its vocabulary has one (the start of a
    line is a natural place to begin), otherwise from a character chosen by the seeded RNG.
    Validation happens before the first character is yielded.
    """
    check_sampling_options(length, temperature, top_k)
    vocab = model.vocab
    prime_ids = vocab.encode(prime, "prime text") if prime else None
    rng = np.random.default_rng(seed)
    if prime_ids is None:
        start = vocab.stoi["\n"] if "\n" in vocab.stoi else int(rng.integers(len(vocab)))
        prime_ids = np.array([start], dtype=np.int32)
    if getattr(model, "backend", "numpy") == "numba":
        from . import fast_sampling as fs  # the whole loop compiled; same characters as _generate

        if length > fs.COLD_NUMPY_MAX or fs.is_compiled(model):
            return fs.sample_numba(model, prime_ids, length, temperature, top_k, argmax, rng)
        # first run after an install: numpy now (quicker than compiling), compiled from the next run
        model = type(model)(model.config, model.vocab, model.params, model.meta, backend="numpy")
        return _then(_generate(model, prime_ids, length, temperature, top_k, argmax, rng), fs.schedule_warm_up())
    return _generate(model, prime_ids, length, temperature, top_k, argmax, rng)


def _then(chars: Iterator[str], action) -> Iterator[str]:
    """chars, then action() once they are all out (so it does not compete with producing them)."""
    yield from chars
    action()


def _generate(model, prime_ids, length, temperature, top_k, argmax, rng) -> Iterator[str]:
    state = model.initial_state(1)
    for i in prime_ids[:-1]:  # warm the state up on the prime; only its last character's output is used
        _, state = model.step(np.array([i]), state)
    current = int(prime_ids[-1])
    chars = model.vocab.chars
    for _ in range(length):
        logits, state = model.step(np.array([current]), state)
        current = pick(logits[0], rng, temperature, top_k, argmax)
        yield chars[current]
