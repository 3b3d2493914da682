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
    Validation happens before the first character is yielded. The model's backend may sample with
    a compiled loop (model.ops.sampler); it yields the same characters as reference_ids.
    """
    check_sampling_options(length, temperature, top_k)
    vocab = model.vocab
    prime_ids = vocab.encode(prime, "prime text") if prime else None
    rng = np.random.default_rng(seed)
    if prime_ids is None:
        start = vocab.stoi["\n"] if "\n" in vocab.stoi else int(rng.integers(len(vocab)))
        prime_ids = np.array([start], dtype=np.int32)
    compiled = model.ops.sampler(model, length)
    if compiled is None:  # the reference loop, with the reference math
        blocks = reference_ids(model.with_backend("numpy"), prime_ids, length, temperature, top_k, argmax, rng)
    else:
        blocks = compiled(prime_ids, temperature, top_k, argmax, rng)
    return _chars(blocks, vocab.chars)


def _chars(blocks: Iterator[np.ndarray], chars: list[str]) -> Iterator[str]:
    for ids in blocks:
        for i in ids.tolist():
            yield chars[i]


def reference_ids(model, prime_ids, length, temperature, top_k, argmax, rng) -> Iterator[np.ndarray]:
    """The specification of sampling: warm the state up on prime_ids, then per character
    model.step and pick, each sampled id fed back in. Yields the ids one at a time, as (1,) arrays."""
    state = model.initial_state(1)
    for i in prime_ids[:-1]:  # warm the state up on the prime; only its last character's output is used
        _, state = model.step(np.array([i]), state)
    current = int(prime_ids[-1])
    for _ in range(length):
        logits, state = model.step(np.array([current]), state)
        current = pick(logits[0], rng, temperature, top_k, argmax)
        yield np.array([current])
