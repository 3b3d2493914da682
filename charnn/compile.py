"""Compiling the numba backend ahead of time: what `charnn compile` runs.

Each family of kernels is compiled by running it once on tiny models, through the same code paths
real runs take (charnn.train.train_step, the backend's sampler), so every argument layout the
kernels meet is covered; numba caches the machine code on disk, and the backend records that it is
done (charnn.backend.numba.compile). Nothing else in charnn compiles except at the first use of a
kernel, and nothing compiles in the background: `charnn compile` compiles groups of kernels in
child processes at once where there are CPUs for them, and waits for them.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from .backend import get_backend
from .checkpoint import load
from .config import MODELS, RECURRENT, ModelConfig
from .data.corpora import find_corpus, DEFAULT_CORPUS
from .data.text import Vocab, read_corpus
from .errors import CharnnError
from .memory import cpus
from .model import CharModel
from .sampling import Draw
from .train.config import TrainConfig
from .train.loop import train_step
from .train.optim import make_optimizer

DEFAULT_VOCAB = 65  # tiny Shakespeare's, when the default corpus is absent

def warm_up_training(backend: str = "numba", models: tuple[str, ...] = MODELS) -> None:
    """One tiny float32 training step of every model family (of `models`) and input layout the
    kernels see, in every way the backend can compute it (its products on tiles or BLAS, ...:
    whichever the calibration later chooses is compiled already): two layers (the second's input
    is a strided view of the first's output, or a fresh array after dropout), with and without
    dropout, embeddings and one-hot input. The kernels' argument types depend on layouts, not sizes."""
    vocab = Vocab(list("abc"))
    ids = np.array([[0, 1, 2, 1, 0]] * 2)
    configs = [ModelConfig(model=m, hidden=8, layers=2, embed=e, dropout=d, vocab_size=3)
               for m in RECURRENT if m in models for e, d in ((4, 0.0), (4, 0.1), (0, 0.0))]
    if "mlp" in models:
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


# What compiling runs, in units a process each can run: sampling (one stream, several) and the
# training steps of each cell (which compile the products, packing and Adam they share as well).
UNITS = {"sample": warm_up_sampling, "sample-batch": warm_up_batch_sampling,
         **{f"train-{m}": functools.partial(warm_up_training, models=(m,)) for m in MODELS}}
FAMILIES = {"sample": ("sample",), "sample-batch": ("sample-batch",), "train": tuple(f"train-{m}" for m in MODELS)}
# The units in phases of groups; the groups of a phase may compile at once, a process each. numba
# rewrites a kernel's cache index unlocked when it saves a new signature of it, so two processes
# must never compile different signatures of one kernel at once (the index could end up naming one
# signature's file for another's code). Training shares with sampling only the GRU's and RNN's
# row kernels, and every cell's training shares the products: the LSTM's and MLP's compile those
# first, beside sampling, and the GRU and the RNN follow. Each phase is checked (clashes).
PHASES = ((("sample", "sample-batch"), ("train-lstm", "train-mlp")), (("train-gru",), ("train-rnn",)))


def run_units(units, backend: str = "numba") -> tuple[dict[str, set[str]], float]:
    """Run these UNITS here, one after another: ({kernel: {argument types}} of what compiled, seconds)."""
    t = time.perf_counter()
    with get_backend(backend).recording() as kernels:
        for unit in units:
            UNITS[unit](backend)
    return dict(kernels), time.perf_counter() - t


def clashes(groups: list[dict[str, set[str]]]) -> list[str]:
    """The kernels that more than one of these groups (what each compiled, run at once) compiled,
    with more than one argument type among them: numba's cache of each may be mixed up."""
    seen: dict[str, list[set[str]]] = {}
    for kernels in groups:
        for name, types in kernels.items():
            seen.setdefault(name, []).append(set(types))
    return sorted(name for name, sets in seen.items() if len(sets) > 1 and len(set().union(*sets)) > 1)


def exit_with_parent(stream) -> None:
    """End this process when `stream` (its stdin, the parent's pipe) reaches its end: the parent
    closed it or died, so a compiling child never outlives a stopped `charnn compile`."""
    stream.read()
    os._exit(1)


def _child(backend: str, units: list[str]) -> None:
    """A compiling child process: run the units, print what compiled as one JSON line."""
    threading.Thread(target=exit_with_parent, args=(sys.stdin,), daemon=True).start()
    kernels, seconds = run_units(units, backend)
    print(json.dumps({"kernels": {name: sorted(types) for name, types in kernels.items()}, "seconds": seconds}))


# a child's program: this process's import path (so it imports this charnn), then _child
_CHILD = ("import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
          "from charnn.compile import _child; _child(sys.argv[2], sys.argv[3:])")


class _Process:
    """A child Python compiling a group of units; its output goes to files (no pipe to fill up)."""

    def __init__(self, group, backend: str):
        self.group = group
        self.out, self.err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(sys.path), backend, *group],
                                            stdin=subprocess.PIPE, stdout=self.out, stderr=self.err)
        except OSError as e:
            self.out.close(), self.err.close()
            raise CharnnError(f"could not start a Python to compile in ({e}); `charnn compile --processes 1` "
                              "compiles in this process") from None

    def result(self) -> tuple[dict[str, set[str]], float]:
        self.out.seek(0), self.err.seek(0)
        if self.process.returncode != 0:
            said = self.err.read().decode(errors="replace").strip().splitlines()
            raise CharnnError(f"compiling {', '.join(self.group)} in a child process failed: "
                              f"{said[-1] if said else f'exit status {self.process.returncode}'}")
        lines = self.out.read().decode(errors="replace").strip().splitlines()
        if not lines:
            raise CharnnError(f"compiling {', '.join(self.group)} in a child process ended without its report")
        found = json.loads(lines[-1])
        return {name: set(types) for name, types in found["kernels"].items()}, found["seconds"]

    def close(self) -> None:
        if self.process.poll() is None:  # stopped early (Ctrl-C, an error elsewhere)
            self.process.kill()
            self.process.wait()
        self.process.stdin.close()
        self.out.close(), self.err.close()


def _phase_in_processes(phase, backend: str, processes: int):
    """Run a phase's groups, up to `processes` child processes at once; yield (group, what
    compiled, seconds) as each ends."""
    waiting, running = list(phase), []
    try:
        while waiting or running:
            while waiting and len(running) < processes:
                running.append(_Process(waiting.pop(0), backend))
            ended = [p for p in running if p.process.poll() is not None]
            if not ended:
                time.sleep(0.05)
            for p in ended:
                running.remove(p)
                kernels, seconds = p.result()
                p.close()
                yield p.group, kernels, seconds
    finally:
        for p in running:
            p.close()


def compile_kernels(say=None, backend: str = "numba", processes: int | None = 1) -> float:
    """Compile every kernel of the backend for this machine and record it, then calibrate; returns
    the seconds taken. say: receives a line as each group of kernels is compiled. processes: how
    many groups compile at once, each in a child Python process that this call waits for (1: all
    here, one after another, starting no process; None: as many as there are CPUs to run them)."""
    say = say or (lambda line: None)
    ops = get_backend(backend)
    if processes is None:  # (no Python to start: here)
        processes = min(cpus(), max(map(len, PHASES))) if sys.executable else 1
    t0 = time.perf_counter()
    say(f"compiling the kernels (once per install), "
        f"{f'{processes} processes at a time' if processes > 1 else 'in this process'} ...")
    done: set[str] = set()
    for phase in PHASES:
        if processes > 1:  # (a child finds the backend by its name)
            ended = _phase_in_processes(phase, ops.name, processes)
        else:
            ended = ((group, *run_units(group, backend)) for group in phase)
        compiled = []
        with contextlib.closing(ended):  # stopped early, its processes are ended too
            for group, kernels, seconds in ended:
                say(f"  {', '.join(group)}: {seconds:.1f} s")
                compiled.append(kernels)
                done.update(group)
        mixed = clashes(compiled) if processes > 1 else []
        if mixed:
            raise CharnnError(f"two processes compiled {', '.join(mixed)} at once, so numba's cache of them may be "
                              "mixed up: empty numba's cache and run `charnn compile --processes 1`")
        for family, units in FAMILIES.items():  # compiled in full with this phase
            if done.issuperset(units) and any(unit in group for group in phase for unit in units):
                ops.done(family)
    say(f"  all compiled in {time.perf_counter() - t0:.1f} s")
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
