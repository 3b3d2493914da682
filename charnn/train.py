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
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from .checkpoint import model_arrays, model_from_checkpoint, model_meta, read_checkpoint, write_checkpoint
from .corpora import default_corpus
from .data import BatchStreams, Vocab, split_train_val
from .encoded import EncodedCorpus, encode_corpus
from .errors import CharnnError, CheckpointError, CorpusError, DivergedError, VocabError
from .model import BACKENDS, MODELS, CharModel, ModelConfig, init_params
from .optim import OPTIMIZERS, clip_grad_norm, make_optimizer
from .schedule import learning_rate


@dataclass
class TrainConfig:
    corpus: str | None = None  # UTF-8 text file; None: the default corpus (see corpora.default_corpus)
    # model
    model: str = "lstm"  # rnn | lstm | gru | mlp
    hidden: int = 256  # H, units per layer
    layers: int = 2  # L, stacked recurrent (or MLP hidden) layers
    embed: int = 64  # E, embedding width (torch-rnn's wordvec size); 0 feeds one-hot vectors
    activation: str = "tanh"  # rnn and mlp hidden nonlinearity: tanh sigmoid relu leaky_relu elu softplus
    dropout: float = 0.0  # after every layer, training only (char-rnn uses 0.5 for big models)
    context: int = 3  # K, characters of context for the mlp (makemore's block_size)
    # data
    batch_size: int = 32  # B, parallel streams per step
    seq_len: int = 64  # T, characters per chunk = steps of backprop through time
    val_frac: float = 0.1  # last fraction of the text held out for validation (nanoGPT's split)
    # optimisation
    optimizer: str = "adam"  # adam | rmsprop | adagrad | momentum | nesterov | sgd
    lr: float = 2e-3  # learning rate (char-rnn's default for Adam/RMSprop)
    lr_schedule: str = "constant"  # constant | step (char-rnn's per-epoch decay) | cosine
    lr_decay: float = 0.97  # step: multiply lr by this at the end of every epoch after lr_decay_after
    lr_decay_after: float = 10  # step: epochs at the full rate
    min_lr: float = 0.0  # cosine: the rate reached at the last step
    warmup: int = 0  # cosine: steps of linear warm-up from 0
    clip: float = 5.0  # max global gradient norm; 0 turns clipping off
    steps: int | None = None  # stop after this many steps in total (counting resumed ones)
    epochs: float | None = None  # or after this many passes over the training split
    time_limit: float | None = None  # or after this many seconds of this run (then validates and saves)
    eval_every: int = 200  # steps between validation passes (each also writes checkpoints)
    eval_chars: int | None = None  # score only the first N characters of the validation split; None: all
    sample_every: int = 0  # steps between printed samples, to watch the text improve; 0: never
    sample_length: int = 200  # characters in each of those samples
    seed: int = 1337  # initialisation and every other random choice
    backend: str = "numba"  # numba: fused kernels; numpy: the reference implementation (slower)
    out: str | None = None  # checkpoint path; default checkpoints/<corpus>-<model>.npz

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(self.model, vocab_size, self.hidden, self.layers, self.embed,
                           self.activation, self.dropout, self.context).validate()

    def validate(self) -> "TrainConfig":
        if self.model not in MODELS:
            raise CharnnError(f"unknown model {self.model!r}; choose from {', '.join(MODELS)}")
        self.model_config(1)  # the model options, checked once in one place
        # and the schedule's (the total is known for sure only once the corpus is read; train() checks again)
        learning_rate(0, self.lr, **self.schedule_options(1, self.steps or self.warmup + 1))
        if self.backend not in BACKENDS:
            raise CharnnError(f"unknown backend {self.backend!r}; choose from {', '.join(BACKENDS)}")
        if self.optimizer not in OPTIMIZERS:
            raise CharnnError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        for name in ("hidden", "layers", "batch_size", "seq_len", "eval_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise CharnnError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.embed, int) or self.embed < 0:
            raise CharnnError(f"embed must be 0 (one-hot) or a positive integer, got {self.embed!r}")
        for name in ("steps", "eval_chars"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise CharnnError(f"{name.replace('_', ' ')} must be a positive integer, got {v!r}")
        if not isinstance(self.sample_every, int) or self.sample_every < 0 or not isinstance(self.sample_length, int) or self.sample_length < 1:
            raise CharnnError("sample_every must be >= 0 and sample_length >= 1")
        if self.time_limit is not None and not self.time_limit > 0:
            raise CharnnError(f"time limit must be > 0 seconds, got {self.time_limit!r}")
        if self.epochs is not None and not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise CharnnError(f"epochs must be > 0, got {self.epochs!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise CharnnError(f"learning rate must be > 0, got {self.lr!r}")
        if not (self.clip >= 0 and math.isfinite(self.clip)):
            raise CharnnError(f"clip must be >= 0 (0 disables clipping), got {self.clip!r}")
        if not 0.0 < self.val_frac < 1.0:
            raise CharnnError(f"val-frac must be between 0 and 1 (exclusive), got {self.val_frac!r}")
        return self

    def schedule_options(self, chunks_per_epoch: int, total_steps: int) -> dict:
        return dict(schedule=self.lr_schedule, chunks_per_epoch=chunks_per_epoch, total_steps=total_steps,
                    decay=self.lr_decay, decay_after=self.lr_decay_after, min_lr=self.min_lr, warmup=self.warmup)


# Options that fix the model's shape, the data layout or the optimizer state: a resumed run must
# keep them, or it would not be the same run continued.
RESUME_FIXED = ("model", "hidden", "layers", "embed", "activation", "context", "batch_size", "seq_len", "val_frac", "optimizer")

DEFAULT_STEPS = 2000  # when neither steps, epochs nor a time limit is given
UNLIMITED = 10**12  # the step "limit" of a run bounded only by its time limit


def default_out(corpus: str, model: str) -> str:
    stem = os.path.splitext(os.path.basename(corpus))[0] or "corpus"
    return os.path.join("checkpoints", f"{stem}-{model}.npz")


def best_path(out: str) -> str:
    """checkpoints/x.npz -> checkpoints/x.best.npz: the checkpoint with the lowest validation loss."""
    root, ext = os.path.splitext(out)
    return root + ".best" + (ext or ".npz")


def resolve_paths(config: TrainConfig) -> TrainConfig:
    """Fill in the default corpus and checkpoint path."""
    corpus = config.corpus or default_corpus()
    return replace(config, corpus=corpus, out=config.out or default_out(corpus, config.model))


def config_from_checkpoint(path) -> TrainConfig:
    """The training configuration a checkpoint was written with (for --resume)."""
    meta, _ = read_checkpoint(path)
    if "train" not in meta:
        raise CheckpointError(f"{path} holds a model but no training state, so it cannot be resumed")
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in meta["train"]["config"].items() if k in known})


class Reporter:
    """Receives progress events; the default one is silent. See progress.py for the console one."""

    def start(self, *, step: int, total_steps: int, chars_per_step: int, model: CharModel, config: TrainConfig, n_train: int, n_val: int): ...
    def step(self, *, step: int, loss: float, chars_per_s: float): ...
    def eval(self, *, step: int, val_loss: float, best: bool): ...
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


class _InterruptFlag:
    """Turns the first Ctrl-C into a flag checked between steps, so the step in flight finishes and
    the checkpoint is consistent; a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.set = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


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


def train(config: TrainConfig, resume: str | None = None, reporter: Reporter | None = None,
          command: str | None = None) -> TrainResult:
    """Train a model as `config` says, or continue the run saved in `resume`.

    Writes the latest state to config.out at every evaluation and at the end, and the best
    validation state next to it (see best_path). Raises CharnnError subclasses for bad input,
    DivergedError if the loss stops being finite, KeyboardInterrupt after saving on Ctrl-C.
    command: the command line that started the run, recorded in the checkpoints.
    """
    config = resolve_paths(config.validate())
    reporter = reporter or Reporter()
    corpus, out = config.corpus, config.out
    encoded = encode_corpus(corpus)  # ids (N,) memory-mapped from a cache next to the corpus

    if resume is not None:
        meta, arrays = read_checkpoint(resume)
        if "train" not in meta:
            raise CheckpointError(f"{resume} holds a model but no training state, so it cannot be resumed")
        saved = meta["train"]
        changed = [k for k in RESUME_FIXED if saved["config"].get(k) != getattr(config, k)]
        if changed:
            raise CharnnError(
                f"cannot resume {resume} with a different " + ", ".join(f"{k} ({saved['config'].get(k)!r} -> {getattr(config, k)!r})" for k in changed)
            )
        model = model_from_checkpoint(meta, arrays, resume, config.backend)
        if model.config.dropout != config.dropout:  # dropout may change on resume; it shapes nothing
            model = CharModel(replace(model.config, dropout=config.dropout), model.vocab, model.params, model.meta, config.backend)
        ids = ids_in_vocab(encoded, model.vocab)
        rng = np.random.default_rng()
        rng.bit_generator.state = saved["rng"]
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
    optimizer = make_optimizer(config.optimizer, model.params, config.lr, config.backend)
    state = model.initial_state(config.batch_size)
    step, best_val, val_loss = 0, math.inf, None

    if resume is not None:
        optimizer.load_state_dict(saved["optimizer"], {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")})
        step = int(saved["step"])
        best_val = float(saved["best_val"]) if saved.get("best_val") is not None else math.inf
        val_loss = saved.get("val_loss")
        for l, layer_state in enumerate(state):
            for i, s in enumerate(layer_state):
                s[...] = arrays[f"state/{l}/{i}"]

    limits = []
    if config.steps is not None:
        limits.append(config.steps)
    if config.epochs is not None:
        limits.append(math.ceil(config.epochs * cpe))
    # a time limit alone means "train for that long"; with nothing given, DEFAULT_STEPS
    total_steps = min(limits) if limits else (UNLIMITED if config.time_limit else DEFAULT_STEPS)
    schedule = config.schedule_options(cpe, total_steps)
    learning_rate(step, config.lr, **schedule)  # a bad schedule fails before any work is done
    dropout_rng = rng if config.dropout > 0 else None  # masks come from the run's RNG, saved with it

    corpus_info = {"path": os.path.abspath(corpus), "chars": len(ids), "sha256": encoded.sha256}
    B, T = config.batch_size, config.seq_len
    has_best = not math.isinf(best_val) and os.path.exists(best_path(out))
    result = TrainResult(model, step, out, best_path(out) if has_best else None, val_loss, None, 0.0)
    saved_step = [None]  # step of the newest checkpoint on disk, for the divergence message

    def save(path):
        opt_meta, opt_arrays = optimizer.state_dict()
        meta = model_meta(model)
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
        }
        arrays = model_arrays(model)
        arrays.update({f"optim/{k}": v for k, v in opt_arrays.items()})
        for l, layer_state in enumerate(state):
            for i, s in enumerate(layer_state):
                arrays[f"state/{l}/{i}"] = s
        write_checkpoint(path, meta, arrays)

    def evaluate_and_save():
        nonlocal val_loss, best_val
        val_loss = model.mean_loss(val_ids, n_streams=B, seq_len=T)
        improved = val_loss < best_val
        if improved:
            best_val = val_loss
            save(best_path(out))
            result.best_checkpoint = best_path(out)
        save(out)
        saved_step[0] = step
        result.val_history.append((step, val_loss))
        reporter.eval(step=step, val_loss=val_loss, best=improved)

    # A blow-up does not always reach inf or NaN: with fused multiply-adds (the numba backend's
    # products) an overflowing sum stays +-inf instead of turning NaN, tanh maps it to +-1, and the
    # loss can sit at 1e30 for ever. So, like char-rnn's "loss is exploding" check (3x its first
    # loss), a loss above three times that of guessing uniformly (ln V) also counts as diverged.
    exploding_loss = 3.0 * max(math.log(model.config.vocab_size), 1.0)
    reporter.start(step=step, total_steps=total_steps, chars_per_step=B * T, model=model, config=config,
                   n_train=len(train_ids), n_val=len(val_ids))
    from .gemm import fast_threading, kernels_cached  # here: `import charnn` stays free of numba

    if config.backend == "numba" and not kernels_cached():
        reporter.message("first run after an install: numba compiles the training kernels once (10-20 s), "
                         "then caches them for every later run")
    if config.backend == "numba" and not fast_threading():
        reporter.message("numba has no OpenMP or TBB threading layer here (install libgomp or tbb): "
                         "its fallback starts each parallel loop ~100x slower, and training runs 2-3x slower")
    train_seconds, start_step, started = 0.0, step, time.perf_counter()
    try:
        with _InterruptFlag() as interrupted:
            while step < total_steps and not interrupted.set:
                t0 = time.perf_counter()
                chunk = step % cpe
                if chunk == 0:  # a new epoch restarts every stream at its beginning, from a zero state
                    state = model.initial_state(B)
                x, y = streams.batch(chunk)
                with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is caught just below
                    loss, cache, new_state = model.forward(x, y, state, dropout_rng)
                    grads = model.backward(cache)
                    norm = clip_grad_norm(grads, config.clip)
                if not (math.isfinite(float(loss)) and math.isfinite(norm) and float(loss) <= exploding_loss):
                    kept = f"kept the last good checkpoint {out} (step {saved_step[0]})" if saved_step[0] is not None else "no checkpoint had been written yet"
                    raise DivergedError(
                        f"training diverged at step {step + 1}: loss {float(loss)}, gradient norm {norm}; {kept}. Try a lower --lr or --clip"
                    )
                optimizer.lr = learning_rate(step, config.lr, **schedule)
                optimizer.step(model.params, grads)
                state = new_state
                step += 1
                train_seconds += time.perf_counter() - t0
                result.losses.append(float(loss))
                rate = (step - start_step) * B * T / max(train_seconds, 1e-9)
                reporter.step(step=step, loss=float(loss), chars_per_s=rate)
                out_of_time = config.time_limit is not None and time.perf_counter() - started >= config.time_limit
                if step % config.eval_every == 0 or step == total_steps or out_of_time:
                    evaluate_and_save()
                if config.sample_every and step % config.sample_every == 0:
                    # its own seed: watching the samples must not change the training run
                    reporter.sample(step=step, text=model.sample(config.sample_length, temperature=0.8, seed=step))
                if out_of_time:
                    reporter.message(f"time limit of {config.time_limit:g} s reached at step {step}")
                    break
            if interrupted.set:
                if saved_step[0] != step:
                    save(out)
                    saved_step[0] = step
                reporter.message(f"interrupted at step {step}; saved {out}")
                raise KeyboardInterrupt
    finally:
        reporter.close()
    result.step = step
    result.val_loss = val_loss
    result.best_val = None if math.isinf(best_val) else best_val
    result.chars_per_s = (step - start_step) * B * T / max(train_seconds, 1e-9)
    return result
