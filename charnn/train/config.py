"""The training configuration: one dataclass, one comment per field, the only place training's
defaults are written (the model's come from charnn.config.ModelConfig; the CLI's options read both).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace

from ..archive import read_checkpoint
from ..backend import BACKENDS, DEFAULT_BACKEND
from ..config import MODELS, ModelConfig
from ..data.corpora import default_corpus
from ..errors import CharnnError, CheckpointError
from .optim import OPTIMIZER_SLOTS, OPTIMIZERS
from .schedule import STEP_DECAY, STEP_DECAY_AFTER, learning_rate


# Arrays of H values a layer's cache keeps per character (lstm: i f o g, c, tanh c, h; gru: z r
# and the candidate, h, its input part; rnn: the pre-activation and h; mlp: its hidden layer)
CACHE_WIDTH = {"lstm": 7, "gru": 5, "rnn": 2, "mlp": 1}


@dataclass
class TrainConfig:
    corpus: str | None = None  # UTF-8 text file; None: the default corpus (see corpora.default_corpus)
    # model
    model: str = ModelConfig.model  # rnn | lstm | gru | mlp
    hidden: int = ModelConfig.hidden  # H, units per layer
    layers: int = ModelConfig.layers  # L, stacked recurrent (or MLP hidden) layers
    embed: int = ModelConfig.embed  # E, embedding width (torch-rnn's wordvec size); 0 feeds one-hot vectors
    activation: str = ModelConfig.activation  # rnn and mlp hidden nonlinearity: tanh sigmoid relu leaky_relu elu softplus
    dropout: float = ModelConfig.dropout  # after every layer, training only (char-rnn uses 0.5 for big models)
    context: int = ModelConfig.context  # K, characters of context for the mlp (makemore's block_size)
    weight_drop: float = ModelConfig.weight_drop  # DropConnect on the recurrent weights Wh, training only (AWD-LSTM)
    # data
    batch_size: int = 32  # B, parallel streams per step
    seq_len: int = 64  # T, characters per chunk = steps of backprop through time
    val_frac: float = 0.1  # last fraction of the text held out for validation (nanoGPT's split)
    # optimisation
    optimizer: str = "adam"  # adam | rmsprop | adagrad | momentum | nesterov | sgd
    lr: float = 2e-3  # learning rate (char-rnn's default for Adam/RMSprop)
    lr_schedule: str | None = None  # constant | step (char-rnn's per-epoch decay) | cosine;
    #   None: step if lr_decay or lr_decay_after is given, else constant
    lr_decay: float | None = None  # step: multiply lr by this after every epoch past lr_decay_after; None: 0.97
    lr_decay_after: float | None = None  # step: epochs at the full rate; None: 10
    min_lr: float = 0.0  # cosine: the rate reached at the last step
    warmup: int = 0  # cosine: steps of linear warm-up from 0
    clip: float = 5.0  # max global gradient norm; 0 turns clipping off
    weight_decay: float = 0.0  # decoupled (AdamW) decay of the weight matrices per step, times lr; 0: none
    ema: float = 0.0  # decay of an exponential moving average of the weights, validated beside them
    #   (and saved as the best checkpoint when it validates better); 0: no average
    steps: int | None = None  # stop after this many steps in total (counting resumed ones)
    epochs: float | None = None  # or after this many passes over the training split
    time_limit: float | None = None  # or after this many seconds of this run (then validates and saves)
    budget: float | None = None  # seconds: stop then, with the cosine schedule reaching min_lr at that
    #   moment (the lr follows the clock, so such a run depends on the machine's speed)
    eval_every: int = 200  # steps between validation passes (each also writes checkpoints)
    eval_chars: int | None = None  # score only the first N characters of the validation split; None: all
    sample_every: int = 0  # steps between printed samples, to watch the text improve; 0: never
    sample_length: int = 200  # characters in each of those samples
    seed: int = 1337  # initialisation and every other random choice
    backend: str = DEFAULT_BACKEND  # numba: fused kernels; numpy: the reference implementation (slower)
    out: str | None = None  # checkpoint path; default checkpoints/<corpus>-<model>.npz

    def training_bytes(self, vocab_size: int) -> int:
        """A lower bound on the memory a training step holds at once: the parameters with their
        gradients, optimizer slots and average, float32, plus the chunk's activations (each
        recurrent layer's cache per character, B T x CACHE_WIDTH H; the head's logits and
        probabilities, B T x 2V). It is what the run would need before its first step could finish."""
        mconf = self.model_config(vocab_size)
        copies = 2 + OPTIMIZER_SLOTS[self.optimizer] + (1 if self.ema else 0)  # param, grad, slots, average
        per_char = self.layers * CACHE_WIDTH[self.model] * self.hidden + 2 * vocab_size
        if self.model == "mlp":
            per_char += self.context * self.embed
        return 4 * (copies * mconf.param_count() + self.batch_size * self.seq_len * per_char)

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(self.model, vocab_size, self.hidden, self.layers, self.embed,
                           self.activation, self.dropout, self.context, self.weight_drop).validate()

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
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise CharnnError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.budget is not None:
            if not (self.budget > 0 and math.isfinite(self.budget)):
                raise CharnnError(f"budget must be > 0 seconds, got {self.budget!r}")
            given = [n for n in ("steps", "epochs", "time_limit") if getattr(self, n) is not None]
            if given:
                raise CharnnError(f"a budget sets when the run ends: drop {', '.join(given)}")
            if self.lr_schedule not in (None, "cosine"):
                raise CharnnError(f"a budget runs the cosine schedule to its end, not {self.lr_schedule!r}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise CharnnError(f"weight decay must be >= 0, got {self.weight_decay!r}")
        if not (self.ema == 0 or 0 < self.ema < 1):
            raise CharnnError(f"ema must be 0 (off) or a decay between 0 and 1, e.g. 0.999; got {self.ema!r}")
        if self.epochs is not None and not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise CharnnError(f"epochs must be > 0, got {self.epochs!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise CharnnError(f"learning rate must be > 0, got {self.lr!r}")
        if not (self.clip >= 0 and math.isfinite(self.clip)):
            raise CharnnError(f"clip must be >= 0 (0 disables clipping), got {self.clip!r}")
        if not 0.0 < self.val_frac < 1.0:
            raise CharnnError(f"val-frac must be between 0 and 1 (exclusive), got {self.val_frac!r}")
        return self

    def schedule(self) -> str:
        """The schedule this config asks for: lr_schedule, or, when that is None, char-rnn's step
        schedule if a decay is given and a constant rate if not."""
        if self.lr_schedule is not None:
            return self.lr_schedule
        if self.budget is not None:
            return "cosine"
        return "step" if self.lr_decay is not None or self.lr_decay_after is not None else "constant"

    def schedule_options(self, chunks_per_epoch: int, total_steps: int) -> dict:
        return dict(schedule=self.schedule(), chunks_per_epoch=chunks_per_epoch, total_steps=total_steps,
                    decay=STEP_DECAY if self.lr_decay is None else self.lr_decay,
                    decay_after=STEP_DECAY_AFTER if self.lr_decay_after is None else self.lr_decay_after,
                    min_lr=self.min_lr, warmup=self.warmup)


# Options that fix the model's shape, the data layout or the optimizer state: a resumed run must
# keep them, or it would not be the same run continued.
RESUME_FIXED = ("model", "hidden", "layers", "embed", "activation", "context", "batch_size", "seq_len", "val_frac", "optimizer")

DEFAULT_STEPS = 2000  # when neither steps, epochs nor a time limit is given
UNLIMITED = 10**12  # the step "limit" of a run bounded only by its time limit


def default_out(corpus: str, model: str) -> str:
    stem = os.path.splitext(os.path.basename(os.path.normpath(corpus)))[0] or "corpus"  # a folder may end in /
    return os.path.join("checkpoints", f"{stem}-{model}.npz")


def best_path(out: str) -> str:
    """checkpoints/x.npz -> checkpoints/x.best.npz: the checkpoint with the lowest validation loss."""
    root, ext = os.path.splitext(out)
    return root + ".best" + (ext or ".npz")


def resolve_paths(config: TrainConfig) -> TrainConfig:
    """Fill in what the defaults leave open: the corpus, the checkpoint path and the schedule's name."""
    corpus = config.corpus or default_corpus()
    return replace(config, corpus=corpus, out=config.out or default_out(corpus, config.model), lr_schedule=config.schedule())


def config_from_checkpoint(path) -> TrainConfig:
    """The training configuration a checkpoint was written with (for --resume)."""
    meta, _ = read_checkpoint(path)
    if "train" not in meta:
        raise CheckpointError(f"{path} holds a model but no training state, so it cannot be resumed")
    saved = meta["train"].get("config") if isinstance(meta["train"], dict) else None
    if not isinstance(saved, dict):
        raise CheckpointError(f"corrupt checkpoint {path}: the training state is not the expected JSON")
    known = {f.name for f in fields(TrainConfig)}
    try:
        return TrainConfig(**{k: v for k, v in saved.items() if k in known}).validate()
    except (CharnnError, TypeError, ValueError) as e:
        raise CheckpointError(f"corrupt checkpoint {path}: bad training configuration ({e})") from None


def resume_config(path, **changes) -> TrainConfig:
    """The configuration to continue the run saved in `path` with: the saved options, with
    `changes` (the ones the user named again) applied. A new stopping point (steps, epochs or
    time_limit) replaces all three saved ones; a decay given without a schedule selects the step
    schedule, as it does for a new run."""
    saved = vars(config_from_checkpoint(path))
    changes = {k: v for k, v in changes.items() if not (k == "corpus" and v is None)}
    if changes.keys() & {"steps", "epochs", "time_limit", "budget"}:
        saved.update(steps=None, epochs=None, time_limit=None, budget=None)
    if changes.keys() & {"lr_decay", "lr_decay_after"} and "lr_schedule" not in changes:
        changes["lr_schedule"] = "step"
    return TrainConfig(**{**saved, **changes})
