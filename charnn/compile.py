"""Compiling the numba backend ahead of time: what `charnn compile` runs.

Each family of kernels is compiled by running it once on tiny models, through the same code paths
real runs take (charnn.train.train_step, the backend's sampler), so every argument layout the
kernels meet is covered; numba caches the machine code on disk, and the backend records that it is
done (charnn.backend.numba.compile). Nothing else in charnn compiles except at the first use of a
kernel, and nothing compiles in the background.
"""
from __future__ import annotations

import time

import numpy as np

from .backend import get_backend
from .checkpoint import load
from .config import ModelConfig
from .data.corpora import find_corpus, DEFAULT_CORPUS
from .data.text import Vocab, read_corpus
from .errors import CharnnError
from .model import CharModel
from .sampling import Draw
from .train.config import TrainConfig
from .train.loop import train_step
from .train.optim import make_optimizer

DEFAULT_VOCAB = 65  # tiny Shakespeare's, when the default corpus is absent

def warm_up_training(backend: str = "numba") -> None:
    """One tiny float32 training step of every model family and input layout the kernels see, in
    every way the backend can compute it (its products on tiles or BLAS, ...: whichever the
    calibration later chooses is compiled already): two layers (the second's input is a strided
    view of the first's output, or a fresh array after dropout), with and without dropout,
    embeddings and one-hot input. The kernels' argument types depend on layouts, not sizes."""
    vocab = Vocab(list("abc"))
    ids = np.array([[0, 1, 2, 1, 0]] * 2)
    configs = [ModelConfig(model=m, hidden=8, layers=2, embed=e, dropout=d, vocab_size=3)
               for m in ("lstm", "gru", "rnn") for e, d in ((4, 0.0), (4, 0.1), (0, 0.0))]
    configs.append(ModelConfig(model="mlp", hidden=8, layers=2, embed=4, context=3, vocab_size=3))
    for way in get_backend(backend).ways():
        with way:
            for config in configs:
                model = CharModel.create(config, vocab, backend=backend)
                optimizer = make_optimizer("adam", model.params, 1e-3, model.ops)
                train_step(model, optimizer, ids[:, :-1], ids[:, 1:], model.initial_state(2), lr=1e-3, clip=5.0,
                           dropout_rng=np.random.default_rng(0))


def warm_up_sampling(backend: str = "numba", streams: int = 1) -> None:
    """The first block of a long sample of `streams` streams from one recurrent model and one MLP,
    with top-p (the kernels take it in every call): the sampling kernels' argument types do not
    depend on sizes, cell or activation."""
    vocab = Vocab(list("ab"))
    for config in (ModelConfig(model="lstm", hidden=32, layers=2, embed=4, vocab_size=2),
                   ModelConfig(model="mlp", hidden=8, layers=1, embed=4, context=3, vocab_size=2)):
        model = CharModel.create(config, vocab, backend=backend)
        blocks = model.ops.sampler(model, 10**9, streams)  # as a sample too long for the reference loop asks
        if blocks is not None:
            draw = Draw(temperature=1.0, top_k=None, top_p=0.9, argmax=False)
            rngs = [np.random.default_rng(i) for i in range(streams)]
            next(blocks(np.array([0, 1]), np.zeros(streams, dtype=np.int64), 10, draw, rngs, np.ones(streams, bool)))


def warm_up_batch_sampling(backend: str = "numba") -> None:
    """warm_up_sampling for the kernels that sample several streams at once (--num-samples)."""
    warm_up_sampling(backend, streams=2)


def calibrate_products(config: TrainConfig | None = None, vocab_size: int | None = None, backend: str = "numba",
                       say=None) -> str | None:
    """Measure, once for this machine, how the backend best computes the products of a training
    run of `config` (default: the defaults, on the default corpus's vocabulary) and make it the
    choice outside training too (charnn.backend.numba.calibrate). Returns the choice."""
    config = config or TrainConfig()
    if vocab_size is None:
        corpus = config.corpus or find_corpus(DEFAULT_CORPUS)
        try:
            vocab_size = len(Vocab.from_text(read_corpus(corpus))) if corpus else DEFAULT_VOCAB
        except CharnnError:
            vocab_size = DEFAULT_VOCAB
    with get_backend(backend).prepare(config.model_config(vocab_size), config.batch_size, config.seq_len,
                                      say=say, default=True) as choice:
        return choice


def calibrate_sampling(checkpoint=None, backend: str = "numba") -> tuple[str, dict] | None:
    """Measure, for this machine, the thread count batch-1 sampling of a checkpoint's model shape
    runs fastest on (default: the checkpoint a plain `charnn sample` reads), and keep it as the
    count its samples start from (charnn.backend.numba.sampler.measure_threads). Returns (the
    model's description, the measurement), or None where there is no checkpoint or no choice."""
    try:
        model = load(checkpoint, backend=backend)
        row = model.ops.calibrate_sampling(model)
    except (CharnnError, NotImplementedError):  # none to read, or a model no sampling kernel covers
        return None
    cfg = model.config
    return (f"{cfg.model} {cfg.layers}x{cfg.hidden}", row) if row else None


def compile_kernels(say=None, backend: str = "numba") -> float:
    """Compile every kernel of the backend for this machine and record it; returns the seconds taken.
    say: receives a line before and after each family."""
    say = say or (lambda line: None)
    ops = get_backend(backend)
    t0 = time.perf_counter()
    for family, warm_up in (("sample", warm_up_sampling), ("sample-batch", warm_up_batch_sampling),
                            ("train", warm_up_training)):
        t = time.perf_counter()
        say(f"compiling the {family} kernels (once per install) ...")
        warm_up(backend)
        ops.done(family)
        say(f"  done in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    choice = calibrate_products(backend=backend, say=say)
    if choice:  # the default shape's decisions: "tiles on 2 threads, rows split: ..."
        decided = ops.decisions().get("default", choice).replace("tiles", "register tiles", 1).replace("blas", "BLAS", 1)
        say(f"  products: {decided} ({time.perf_counter() - t:.1f} s)")
    t = time.perf_counter()
    found = calibrate_sampling(backend=backend)
    if found:
        name, row = found
        times = ", ".join(f"{us:.1f} us a character on {n}" for n, us in row["us_per_char"].items())
        say(f"  sampling {name}: {row['threads']} thread{'s' * (row['threads'] > 1)} ({times}; "
            f"{time.perf_counter() - t:.1f} s)")
    return time.perf_counter() - t0
