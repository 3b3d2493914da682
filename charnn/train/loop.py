"""Training: truncated backprop through time over B parallel streams, with periodic validation,
checkpoints (latest + best), exact resume, divergence detection and Ctrl-C that saves first.

Every step consumes the next chunk of the training streams, so the data position is a function
of the step: chunk = step % chunks_per_epoch. A checkpoint stores the step, the recurrent state
carried into the next chunk, the optimizer state and the RNG state, which is all it takes for a
resumed run to produce bit-identical losses to an uninterrupted one.
"""
from __future__ import annotations

import math
import os
import signal
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import NamedTuple

import numpy as np

from ..archive import read_checkpoint, write_checkpoint
from ..checkpoint import model_from_checkpoint, remember_latest
from ..config import init_params
from ..data.batches import BatchStreams, split_train_val
from ..data.encoded import EncodedCorpus, encode_corpus
from ..data.text import Vocab
from ..files import exclusive
from ..errors import CharnnError, CheckpointError, CorpusError, DivergedError, VocabError
from ..memory import require
from ..model import CharModel
from .config import (DEFAULT_STEPS, RESUME_FIXED, UNLIMITED, TrainConfig, best_path, resolve_paths,
                     resume_config)
from .log import TrainLog, log_path
from .optim import WeightAverage, clip_grad_norm, decay_weights, make_optimizer
from .schedule import learning_rate


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped training after the latest state was saved to `checkpoint`;
    `signum` is the signal's number (SIGINT, SIGTERM)."""

    def __init__(self, checkpoint: str, signum: int = signal.SIGINT):
        super().__init__(checkpoint)
        self.checkpoint = checkpoint
        self.signum = int(signum)


def _members(arrays: dict[str, np.ndarray], prefix: str, expected: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays under prefix, keyed without it; ValueError unless they are exactly the keys of
    expected with their shapes, in a float dtype (loading assigns in place, and numpy would
    broadcast a (1, 1) array into any shape)."""
    held = {k[len(prefix):]: a for k, a in arrays.items() if k.startswith(prefix)}
    if held.keys() != expected.keys():
        missing, extra = sorted(expected.keys() - held.keys()), sorted(held.keys() - expected.keys())
        raise ValueError(f"{prefix}{(missing or extra)[0]} is {'missing' if missing else 'not expected'}")
    for k, a in held.items():
        if a.shape != expected[k].shape or a.dtype.kind != "f":
            raise ValueError(f"{prefix}{k} is {a.dtype}{a.shape}, expected {expected[k].dtype}{expected[k].shape}")
    return held


def _count(v) -> int:
    """A step count from a checkpoint's JSON: a non-negative integer (not a bool, not a float)."""
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"step {v!r} is not a count")
    return v


class StepResult(NamedTuple):
    loss: float  # mean nats per character of the chunk, before the update
    grad_norm: float  # global L2 norm of the gradients, before clipping
    state: list  # the state to carry into the next chunk


def train_step(model: CharModel, optimizer, x: np.ndarray, y: np.ndarray, state, *, lr: float, clip: float,
               dropout_rng: np.random.Generator | None = None, loss_limit: float = math.inf,
               weight_decay: float = 0.0) -> StepResult:
    """One step of truncated backprop through time: forward over the chunk x -> y (B, T) from
    `state`, backward, global-norm clipping, the decoupled weight decay (decay_weights), then the
    optimizer's update at learning rate lr.
    Training, the benchmark and the compile warm-up all run this. Raises DivergedError, before
    touching the parameters, if the loss or gradient is not finite or the loss exceeds loss_limit."""
    with model.ops.pace():  # the numba backend: on as many threads as run fastest now
        with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is caught just below
            loss, cache, new_state = model.forward(x, y, state, dropout_rng)
            grads = model.backward(cache)
            norm = clip_grad_norm(grads, clip)
        loss = float(loss)
        if not (math.isfinite(loss) and math.isfinite(norm) and loss <= loss_limit):
            raise DivergedError(f"loss {loss}, gradient norm {norm}")
        decay_weights(model.params, lr, weight_decay)
        optimizer.lr = lr
        optimizer.step(model.params, grads)
    return StepResult(loss, norm, new_state)


class Reporter:
    """Receives progress events; the default one is silent. See progress.py for the console one."""

    def start(self, *, step: int, total_steps: int, chars_per_step: int, model: CharModel, config: TrainConfig, n_train: int, n_val: int): ...
    def step(self, *, step: int, loss: float, chars_per_s: float): ...
    def eval(self, *, step: int, val_loss: float, best: bool, ema_loss: float | None = None): ...
    def sample(self, *, step: int, text: str): ...
    def message(self, text: str): ...
    def close(self): ...


@dataclass
class TrainResult:
    model: CharModel
    step: int
    checkpoint: str  # latest state
    best_checkpoint: str | None  # lowest validation loss so far
    val_loss: float | None  # at the last evaluation
    best_val: float | None
    chars_per_s: float  # training throughput of this run, evaluation excluded
    losses: list[float] = field(default_factory=list)  # train loss of every step this run took
    val_history: list[tuple[int, float]] = field(default_factory=list)
    ema_history: list[tuple[int, float]] = field(default_factory=list)  # validation of the averaged weights (--ema)
    products: str | None = None  # how the backend computed the matrix products ("tiles", "blas"; numpy: None)


class InterruptFlag:
    """Turns the first Ctrl-C (or SIGTERM) into a flag checked between steps, so the step in flight
    finishes and the checkpoint is consistent; a second Ctrl-C interrupts at once. `charnn sample`
    streams under it too, so Ctrl-C never lands inside a write."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)  # SIGTERM: what `kill` and service managers send

    def __init__(self):
        self.set = False
        self.signum = signal.SIGINT
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set, self.signum = True, signum

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def _check_writable(out: str) -> None:
    """CheckpointError unless a checkpoint can be written beside `out` (the folder is created)."""
    folder = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".charnn-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoints to {folder}: {e.strerror or e} (choose another --out)") from None
    if os.path.isdir(out):
        raise CheckpointError(f"--out {out} is a folder: name the checkpoint file, e.g. {os.path.join(out, 'model.npz')}")


def ids_in_vocab(encoded: EncodedCorpus, vocab: Vocab) -> np.ndarray:
    """The corpus's ids in another vocabulary (a resumed model's), which must hold every character
    of the corpus; the same array when the vocabularies are equal."""
    if encoded.vocab == vocab:
        return encoded.ids
    try:  # the corpus's characters in the model's vocabulary: corpus id -> model id
        lookup = vocab.encode("".join(encoded.vocab.chars), "corpus")
    except VocabError as e:
        raise VocabError(f"cannot resume on this corpus: {e}") from None
    return lookup[encoded.ids]


def resume(path, reporter: Reporter | None = None, command: str | None = None, remember: bool = False,
           new_corpus: bool = False, **changes) -> TrainResult:
    """Continue the run saved in `path`, with its saved options except `changes` (resume_config):
    `charnn train --resume PATH [options]` is resume(PATH, **options named on the command line)."""
    return train(resume_config(path, **changes), resume=path, reporter=reporter, command=command, remember=remember,
                 new_corpus=new_corpus)


def train(config: TrainConfig, resume: str | None = None, reporter: Reporter | None = None,
          command: str | None = None, remember: bool = False, new_corpus: bool = False) -> TrainResult:
    """Train a model as `config` says, or continue the run saved in `resume`: see _train. Holds
    <out>.lock while it runs, so that a second run with the same out refuses instead of
    overwriting the first's checkpoints."""
    config = resolve_paths(config.validate())
    _check_writable(config.out)  # now, not at the first checkpoint an hour from now
    with exclusive(config.out, "checkpoint"):
        return _train(config, resume, reporter, command, remember, new_corpus)


def _train(config: TrainConfig, resume: str | None = None, reporter: Reporter | None = None,
           command: str | None = None, remember: bool = False, new_corpus: bool = False) -> TrainResult:
    """Train a model as `config` says, or continue the run saved in `resume` (whose fixed options
    config must keep; resume() merges the saved options for you).

    Writes the latest state to config.out at every evaluation and at the end, and the best
    validation state next to it (see best_path). Raises CharnnError subclasses for bad input,
    DivergedError if the loss stops being finite, Interrupted (a KeyboardInterrupt) after saving on
    Ctrl-C. command: the command line that started the run, recorded in the checkpoints.
    remember: record config.out as the latest checkpoint (charnn.load() with no path finds it).
    new_corpus: resume even though the corpus is not the text the run was trained on (its SHA-256
    differs); without it that is refused, since the run would not be the one continued.
    config arrives validated and with its paths resolved (train does both).
    """
    reporter = reporter or Reporter()
    corpus, out = config.corpus, config.out
    encoded = encode_corpus(corpus, note=reporter.message)  # ids (N,) memory-mapped from a cache next to the corpus

    V = len(encoded.vocab)  # a resumed model's vocabulary holds at least the corpus's
    require(config.training_bytes(V), f"training an {config.model} {config.layers}x{config.hidden} with batch {config.batch_size} x {config.seq_len}",
            "choose a smaller --hidden, --layers, --batch-size or --seq-len")
    if resume is not None:
        meta, arrays = read_checkpoint(resume)
        if "train" not in meta:
            raise CheckpointError(f"{resume} holds a model but no training state, so it cannot be resumed")
        saved = meta["train"]
        if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
            raise CheckpointError(f"corrupt checkpoint {resume}: the training state is not the expected JSON")
        changed = [k for k in RESUME_FIXED if saved["config"].get(k) != getattr(config, k)]
        if changed:
            raise CharnnError(
                f"cannot resume {resume} with a different " + ", ".join(f"{k} ({saved['config'].get(k)!r} -> {getattr(config, k)!r})" for k in changed)
            )
        model = model_from_checkpoint(meta, arrays, resume, config.backend)
        if (model.config.dropout, model.config.weight_drop) != (config.dropout, config.weight_drop):
            # the regularisers may change on resume; they shape nothing
            model = CharModel(replace(model.config, dropout=config.dropout, weight_drop=config.weight_drop),
                              model.vocab, model.params, model.meta, config.backend)
        ids = ids_in_vocab(encoded, model.vocab)
        was = saved.get("corpus") if isinstance(saved.get("corpus"), dict) else {}
        if was.get("sha256") != encoded.sha256 and not new_corpus:
            raise CorpusError(
                f"the corpus is not the text {resume} was trained on ({was.get('chars', '?')} characters, sha256 "
                f"{str(was.get('sha256'))[:12]}...; now {len(encoded.ids)}, {encoded.sha256[:12]}...): resuming would not "
                "continue the same run. Start a new run, or add --new-corpus to train these weights on the new text")
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = saved["rng"]
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise CheckpointError(f"corrupt checkpoint {resume}: bad random-generator state ({type(e).__name__}: {e})") from None
    else:
        vocab, ids = encoded.vocab, encoded.ids
        rng = np.random.default_rng(config.seed)
        mconf = config.model_config(len(vocab))
        model = CharModel(mconf, vocab, init_params(mconf, rng), backend=config.backend)

    train_ids, val_ids = split_train_val(ids, config.val_frac)
    if config.eval_chars is not None:  # a huge corpus: a fixed prefix keeps validation affordable
        val_ids = val_ids[: config.eval_chars + 1]  # +1: N scored characters need N+1 ids
    if len(val_ids) < 2:
        raise CorpusError(f"corpus too short: the validation split ({config.val_frac:g} of {len(ids)} characters) has fewer than 2")
    streams = BatchStreams(train_ids, config.batch_size, config.seq_len)
    cpe = streams.chunks_per_epoch
    optimizer = make_optimizer(config.optimizer, model.params, config.lr, model.ops)
    state = model.initial_state(config.batch_size)
    average = WeightAverage(model.params, config.ema) if config.ema else None
    step, best_val, val_loss, spent = 0, math.inf, None, 0.0  # spent: seconds of the budget used before this run

    if resume is not None:
        try:  # a stranger's or a damaged file: every field is checked by using it, and any misfit is one line
            carried = {f"{l}/{i}": s for l, layer in enumerate(state) for i, s in enumerate(layer)}
            for key, s in _members(arrays, "state/", carried).items():
                carried[key][...] = s
            optimizer.load_state_dict(saved["optimizer"], _members(arrays, "optim/", optimizer.state_dict()[1]))
            step = _count(saved["step"])
            best_val = float(saved["best_val"]) if saved.get("best_val") is not None else math.inf
            val_loss = None if saved.get("val_loss") is None else float(saved["val_loss"])
            spent = float(saved.get("budget_spent") or 0.0)
            if average is not None and saved.get("ema"):  # a run started without --ema starts its average now
                average.load_state_dict(saved["ema"], _members(arrays, "ema/", average.m))
            if not all(np.isfinite(a).all() for k, a in arrays.items() if k.startswith(("optim/", "state/", "ema/"))):
                raise ValueError("NaN or inf in the optimizer state, carried state or average")
            if saved.get("weights") == "ema":  # param/ holds the average: train on from the trained weights
                for k, live in _members(arrays, "live/", model.params).items():
                    model.params[k][...] = live
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as e:
            raise CheckpointError(f"corrupt checkpoint {resume}: bad training state ({type(e).__name__}: {e})") from None

    limits = []
    if config.steps is not None:
        limits.append(config.steps)
    if config.epochs is not None:
        limits.append(math.ceil(config.epochs * cpe))
    # a time limit alone means "train for that long"; with nothing given, DEFAULT_STEPS
    total_steps = min(limits) if limits else (UNLIMITED if config.time_limit or config.budget else DEFAULT_STEPS)
    time_limit = config.time_limit if config.budget is None else max(config.budget - spent, 0.0)
    schedule = config.schedule_options(cpe, total_steps)
    learning_rate(step, config.lr, **schedule)  # a bad schedule fails before any work is done
    dropout_rng = rng if model.config.draws_masks() else None  # masks come from the run's RNG, saved with it

    corpus_info = {"path": os.path.abspath(corpus), "chars": len(ids), "sha256": encoded.sha256}
    B, T = config.batch_size, config.seq_len
    has_best = not math.isinf(best_val) and os.path.exists(best_path(out))
    result = TrainResult(model, step, out, best_path(out) if has_best else None, val_loss, None, 0.0)
    saved_step = [None]  # step of the newest checkpoint on disk, for the divergence message

    def save(path, averaged=None):
        """Write the training state to path; averaged: the weights' average, written as the model
        (param/) with the trained weights beside it (live/), for a best checkpoint the average won."""
        opt_meta, opt_arrays = optimizer.state_dict()
        meta = model.checkpoint_meta()
        meta["train"] = {
            "config": asdict(config),
            "corpus": corpus_info,
            "step": step,
            "epoch": step // cpe,
            "chunk": step % cpe,
            "chunks_per_epoch": cpe,
            "val_loss": val_loss,
            "best_val": None if math.isinf(best_val) else best_val,
            "optimizer": opt_meta,
            "rng": rng.bit_generator.state,
            "command": command or (saved.get("command") if resume is not None else None),
            "budget_spent": spent + (time.perf_counter() - started),
        }
        arrays = model.checkpoint_arrays()
        if average is not None:
            meta["train"]["ema"], ema_arrays = average.state_dict()
            arrays.update({f"ema/{k}": v for k, v in ema_arrays.items()})
        if averaged is not None:
            meta["train"]["weights"] = "ema"
            arrays.update({f"live/{k}": v for k, v in model.params.items()})
            arrays.update({f"param/{k}": v for k, v in averaged.items()})
        arrays.update({f"optim/{k}": v for k, v in opt_arrays.items()})
        for l, layer_state in enumerate(state):
            for i, s in enumerate(layer_state):
                arrays[f"state/{l}/{i}"] = s
        write_checkpoint(path, meta, arrays)
        if remember and path == out:
            remember_latest(out)

    def evaluate_and_save():
        nonlocal val_loss, best_val
        val_loss = model.mean_loss(val_ids, n_streams=B, seq_len=T)
        averaged = ema_loss = None
        if average is not None and average.t > 0:
            averaged = average.averaged()
            ema_loss = CharModel(model.config, model.vocab, averaged, model.meta, model.backend).mean_loss(val_ids, n_streams=B, seq_len=T)
            result.ema_history.append((step, ema_loss))
        use_average = ema_loss is not None and ema_loss < val_loss
        candidate = ema_loss if use_average else val_loss
        improved = candidate < best_val
        if improved:
            best_val = candidate
            save(best_path(out), averaged if use_average else None)
            result.best_checkpoint = best_path(out)
        save(out)
        saved_step[0] = step
        result.val_history.append((step, val_loss))
        reporter.eval(step=step, val_loss=val_loss, best=improved, ema_loss=ema_loss)

    # A blow-up does not always reach inf or NaN: with fused multiply-adds (the numba backend's
    # products) an overflowing sum stays +-inf instead of turning NaN, tanh maps it to +-1, and the
    # loss can sit at 1e30 for ever. So, like char-rnn's "loss is exploding" check (3x its first
    # loss), a loss above three times that of guessing uniformly (ln V) also counts as diverged.
    exploding_loss = 3.0 * max(math.log(model.config.vocab_size), 1.0)
    # the training log <out>.log.jsonl: a Reporter that writes a line per progress report and evaluation
    lr_used = {}  # step -> the rate its update used (with a budget it follows the clock, not the step alone)
    reporter = TrainLog(log_path(out), reporter, chunks_per_epoch=cpe, command=command,
                        lr_at=lambda s: lr_used.get(s, learning_rate(s, config.lr, **schedule)))
    reporter.start(step=step, total_steps=total_steps, chars_per_step=B * T, model=model, config=config,
                   n_train=len(train_ids), n_val=len(val_ids))
    notice = model.ops.notice("train", model)
    if notice:
        reporter.message(notice)
    train_seconds, start_step, started = 0.0, step, time.perf_counter()
    try:  # prepare: how this run's products are computed (numba: measured once per machine and shape)
        with InterruptFlag() as interrupted, model.ops.prepare(model.config, B, T, say=reporter.message) as products:
            result.products = products
            while step < total_steps and not interrupted.set:
                t0 = time.perf_counter()
                chunk = step % cpe
                if chunk == 0:  # a new epoch restarts every stream at its beginning, from a zero state
                    state = model.initial_state(B)
                x, y = streams.batch(chunk)
                try:
                    progress = None if config.budget is None else (spent + time.perf_counter() - started) / config.budget
                    lr = learning_rate(step, config.lr, **schedule, progress=progress)
                    lr_used.clear()
                    lr_used[step] = lr
                    loss, _, new_state = train_step(model, optimizer, x, y, state, lr=lr, clip=config.clip, dropout_rng=dropout_rng,
                                                    loss_limit=exploding_loss, weight_decay=config.weight_decay)
                except DivergedError as e:
                    kept = f"kept the last good checkpoint {out} (step {saved_step[0]})" if saved_step[0] is not None else "no checkpoint had been written yet"
                    raise DivergedError(f"training diverged at step {step + 1}: {e}; {kept}. Try a lower --lr or --clip") from None
                if step == start_step:
                    model.ops.done("train", model)  # the kernels this cell's training step needs are compiled and cached now
                state = new_state
                step += 1
                if average is not None:
                    average.update(model.params)
                train_seconds += time.perf_counter() - t0
                result.losses.append(loss)
                rate = (step - start_step) * B * T / max(train_seconds, 1e-9)
                reporter.step(step=step, loss=loss, chars_per_s=rate)
                out_of_time = time_limit is not None and time.perf_counter() - started >= time_limit
                if step % config.eval_every == 0 or step == total_steps or out_of_time:
                    evaluate_and_save()
                if config.sample_every and step % config.sample_every == 0:
                    # its own seed: watching the samples must not change the training run
                    reporter.sample(step=step, text=model.sample(config.sample_length, temperature=0.8, seed=step))
                if out_of_time:
                    reporter.message(f"time limit of {config.budget or time_limit:g} s reached at step {step}")
                    break
            if interrupted.set:
                if saved_step[0] != step:
                    save(out)
                    saved_step[0] = step
                reporter.message(f"interrupted at step {step}; saved {out}")
                raise Interrupted(out, interrupted.signum)
    finally:
        reporter.close()
    result.step = step
    result.val_loss = val_loss
    result.best_val = None if math.isinf(best_val) else best_val
    result.chars_per_s = (step - start_step) * B * T / max(train_seconds, 1e-9)
    return result
