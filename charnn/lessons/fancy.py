"""Lesson 9, fancy: the lecture's "fancy networks" slide, from the three checkpoints charnn ships.

Each model (charnn.load: LSTMs trained by charnn on tiny Shakespeare, the Stacks Project's LaTeX
and the Linux kernel's C) continues a prime at temperatures 0.2, 0.8 and 1.2. The temperature
divides the logits before the softmax (charnn.sampling.pick): below 1 it sharpens the
distribution towards the likeliest character, above 1 it flattens it. Two numbers show it:
the entropy of the next-character distribution right after the prime, and the mean surprisal
(-ln p, at temperature 1) of the sampled characters under the model.

Sampling runs on the numpy backend (the reference loop; the same characters as the compiled
sampler), so the lesson compiles nothing.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..checkpoint import load
from ..nn.layers import log_softmax

NAME = "fancy"
SUMMARY = "the shipped Shakespeare, LaTeX and Linux models at T = 0.2, 0.8, 1.2"

MODELS = (("shakespeare", "ROMEO:"), ("latex", "\\begin{lemma}"), ("linux", "static int "))  # name, prime
TEMPERATURES = (0.2, 0.8, 1.2)
LENGTH = 100  # characters sampled per temperature
SEED = 1


class Sample(NamedTuple):
    temperature: float
    text: str  # the prime and the LENGTH sampled characters
    entropy: float  # nats, of the next-character distribution after the prime at this temperature
    top: tuple  # (the likeliest next character, its probability at this temperature)
    surprisal: float  # mean -ln p of the sampled characters under the model at temperature 1


class Shipped(NamedTuple):
    name: str
    model: str  # its description, "lstm 2x512, embed 64, vocab 65"
    val_loss: float | None  # what its training run reported on the held-out tenth
    prime: str
    samples: list  # a Sample per temperature


class FancyResult(NamedTuple):
    models: list  # a Shipped per model of MODELS
    length: int
    seed: int


def next_distribution(model, prime: str) -> np.ndarray:
    """log p (V,) of the character after `prime`: the state is warmed up with model.step, as sampling does."""
    ids = model.vocab.encode(prime, "prime text")
    state = model.initial_state(1)
    for i in ids:
        logits, state = model.step(np.array([i]), state)
    return logits[0].astype(np.float64)  # (V,)


def sample_surprisal(model, texts: list, length: int) -> np.ndarray:
    """Mean -ln p (at temperature 1) of the last `length` characters of each text, all of one
    length, scored together as a batch of streams (one model.forward; ln p from its softmax)."""
    ids = np.stack([model.vocab.encode(t, "sample") for t in texts])  # (B, T + 1)
    _, cache, _ = model.forward(ids[:, :-1], ids[:, 1:], model.initial_state(len(texts)))
    B, T = ids.shape[0], ids.shape[1] - 1
    p = cache.ce.probs[np.arange(B * T), ids[:, 1:].ravel()].reshape(B, T)  # (B, T) p of each next character
    return -np.log(p[:, -length:]).mean(axis=1)  # (B,)


def run(length: int = LENGTH, seed: int = SEED) -> FancyResult:
    out = []
    for name, prime in MODELS:
        model = load(name, backend="numpy")
        logits = next_distribution(model, prime)
        texts = [model.sample(length, temperature=t, prime=prime, seed=seed) for t in TEMPERATURES]
        surprisals = sample_surprisal(model, texts, length)
        samples = []
        for temperature, text, surprisal in zip(TEMPERATURES, texts, surprisals):
            logp = log_softmax(logits / temperature)  # (V,) what pick samples from at this temperature
            top = int(np.argmax(logp))
            samples.append(Sample(temperature, text, float(-(np.exp(logp) * logp).sum()),
                                  (model.vocab.chars[top], float(np.exp(logp[top]))), float(surprisal)))
        c = model.config
        val = (model.meta.get("trained") or {}).get("val_loss")
        out.append(Shipped(name, f"{c.model} {c.layers}x{c.hidden}, embed {c.embed}, vocab {c.vocab_size}",
                           val, prime, samples))
    return FancyResult(out, length, seed)


def report(r: FancyResult) -> str:
    out = ["Lesson 9, fancy: what a character-level LSTM learns, from the three checkpoints charnn ships.", "",
           f"Each continues its prime with {r.length} characters at each temperature (seed {r.seed}). The temperature T",
           "divides the logits before the softmax: T < 1 sharpens the distribution, T > 1 flattens it.", ""]
    for m in r.models:
        val = f", validation loss {m.val_loss:.4f} nats/char" if m.val_loss is not None else ""
        out += [f"== {m.name} ({m.model}{val}), prime {m.prime!r}", ""]
        for s in m.samples:
            char, p = s.top
            out += [f"-- T = {s.temperature:g}: next-character entropy {s.entropy:.3f} nats (likeliest {char!r}, "
                    f"p = {p:.3f}); the sample's mean surprisal {s.surprisal:.3f} nats/char"]
            out += [s.text, ""]
    out += ["At 0.2 the text is safe and repeats its commonest phrases; at 1.2 it invents words. The model is the",
            "same; only the sampling changed (charnn/sampling.py pick, `charnn sample --temperature`)."]
    return "\n".join(out)
