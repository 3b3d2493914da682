"""The character model: input (embedding or one-hot) -> L recurrent layers -> linear head -> softmax CE.

Shapes: B batch, T steps, V vocabulary, E embedding width (0: one-hot, so the first layer sees V),
H hidden width, G gate width (H for the RNN, 4H for the LSTM), L layers.

Parameters live in one flat dict whose keys the gradients share, so optimizers, clipping,
checkpoints and gradient checks treat every model alike:

    embed.W      (V, E)       absent when E == 0
    layer{l}.Wx  (D_l, G)     D_0 = E (or V), D_l = H above
    layer{l}.Wh  (H, G)
    layer{l}.b   (G,)
    head.W       (H, V)
    head.b       (V,)

The recurrent state carried between chunks is a list with one tuple per layer: (h,) for the RNN,
(h, c) for the LSTM, each (B, H).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple

import numpy as np

from .data import Vocab, eval_chunks
from .errors import CharnnError
from .layers import (
    embedding_backward,
    embedding_forward,
    linear_backward,
    linear_forward,
    one_hot,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from .lstm import lstm_backward, lstm_forward, lstm_step_forward
from .rnn import rnn_backward, rnn_forward, rnn_step_forward


# ---------------------------------------------------------------- cell families
class Cell(NamedTuple):
    """Adapts one recurrent layer type to a uniform (x, state tuple) interface."""

    gates: int  # G / H
    n_state: int  # arrays in the carried state tuple
    forward: Callable  # (x, state, Wx, Wh, b) -> hs (B, T, H), new state, cache
    backward: Callable  # (dhs, cache) -> dx, dWx, dWh, db   (no gradient flows into the carried state)
    step: Callable  # (x (B, D), state, Wx, Wh, b) -> h (B, H), new state


def _rnn_seq(x, state, Wx, Wh, b):
    hs, cache = rnn_forward(x, state[0], Wx, Wh, b)
    return hs, (hs[:, -1].copy(),), cache


def _rnn_seq_back(dhs, cache):
    dx, _dh0, dWx, dWh, db = rnn_backward(dhs, cache)
    return dx, dWx, dWh, db


def _rnn_step(x, state, Wx, Wh, b):
    h, _ = rnn_step_forward(x, state[0], Wx, Wh, b)
    return h, (h,)


def _lstm_seq(x, state, Wx, Wh, b):
    hs, c_last, cache = lstm_forward(x, state[0], state[1], Wx, Wh, b)
    return hs, (hs[:, -1].copy(), c_last.copy()), cache


def _lstm_seq_back(dhs, cache):
    dx, _dh0, _dc0, dWx, dWh, db = lstm_backward(dhs, cache)
    return dx, dWx, dWh, db


def _lstm_step(x, state, Wx, Wh, b):
    h, c, _ = lstm_step_forward(x, state[0], state[1], Wx, Wh, b)
    return h, (h, c)


CELLS = {
    "rnn": Cell(1, 1, _rnn_seq, _rnn_seq_back, _rnn_step),
    "lstm": Cell(4, 2, _lstm_seq, _lstm_seq_back, _lstm_step),
}


# ---------------------------------------------------------------- configuration
@dataclass(frozen=True)
class ModelConfig:
    model: str = "lstm"  # recurrent cell: "rnn" (tanh) or "lstm"
    vocab_size: int = 0  # V, taken from the corpus
    hidden: int = 256  # H, width of every recurrent layer
    layers: int = 2  # L, stacked recurrent layers
    embed: int = 64  # E, embedding width; 0 feeds one-hot vectors (char-rnn style)

    def validate(self) -> "ModelConfig":
        if self.model not in CELLS:
            raise CharnnError(f"unknown model type {self.model!r}; choose from {', '.join(CELLS)}")
        for name in ("vocab_size", "hidden", "layers"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise CharnnError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.embed, int) or self.embed < 0:
            raise CharnnError(f"embed must be a non-negative integer, got {self.embed!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        V, H, E = self.vocab_size, self.hidden, self.embed
        G = CELLS[self.model].gates * H
        shapes = {}
        if E:
            shapes["embed.W"] = (V, E)
        for l in range(self.layers):
            D = (E or V) if l == 0 else H
            shapes[f"layer{l}.Wx"] = (D, G)
            shapes[f"layer{l}.Wh"] = (H, G)
            shapes[f"layer{l}.b"] = (G,)
        shapes["head.W"] = (H, V)
        shapes["head.b"] = (V,)
        return shapes


def init_params(config: ModelConfig, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
    """PyTorch-style initialisation: U(-1/sqrt(H), 1/sqrt(H)) for recurrent and head weights,
    N(0, 1) embeddings, zero biases except the LSTM forget gate, whose bias starts at 1 so the
    cell remembers by default early in training (Jozefowicz et al. 2015)."""
    H = config.hidden
    k = 1.0 / np.sqrt(H)
    params = {}
    for name, shape in config.param_shapes().items():
        if name == "embed.W":
            p = rng.standard_normal(shape)
        elif name.endswith(".b"):
            p = np.zeros(shape)
            if config.model == "lstm" and name.startswith("layer"):
                p[H : 2 * H] = 1.0  # forget gate block of i, f, o, g
        else:
            p = rng.uniform(-k, k, size=shape)
        params[name] = p.astype(dtype)
    return params


# ---------------------------------------------------------------- the model
class ModelCache(NamedTuple):
    B: int
    T: int
    embed: object  # EmbeddingCache, or None for one-hot input
    layers: list  # one cell cache per layer
    head: object  # LinearCache
    ce: object  # SoftmaxCECache


class CharModel:
    """A trained or freshly initialised character model with its vocabulary.

    The Python API: `sample`, `generate`, `loss` and `save`; `forward`/`backward`/`step` are the
    math underneath, used by training, sampling and the tests.
    """

    def __init__(self, config: ModelConfig, vocab: Vocab, params: dict[str, np.ndarray], meta: dict | None = None):
        self.config = config.validate()
        self.vocab = vocab
        self.params = params
        self.cell = CELLS[config.model]
        self.meta = meta or {}  # what a checkpoint said about how the model was made

    @classmethod
    def create(cls, config: ModelConfig, vocab: Vocab, seed: int | np.random.Generator = 0, dtype=np.float32):
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return cls(config, vocab, init_params(config, rng, dtype))

    @property
    def dtype(self):
        return self.params["head.W"].dtype

    def initial_state(self, B: int) -> list[tuple[np.ndarray, ...]]:
        H = self.config.hidden
        return [tuple(np.zeros((B, H), dtype=self.dtype) for _ in range(self.cell.n_state)) for _ in range(self.config.layers)]

    def _inputs(self, ids):
        if self.config.embed:
            return embedding_forward(ids, self.params["embed.W"])
        return one_hot(ids, self.config.vocab_size, self.dtype), None

    def forward(self, ids: np.ndarray, targets: np.ndarray, state):
        """ids, targets (B, T) -> mean loss in nats, cache, the state after the chunk."""
        p = self.params
        B, T = ids.shape
        x, embed_cache = self._inputs(ids)  # (B, T, E)
        layer_caches, new_state = [], []
        for l in range(self.config.layers):
            x, s, cache = self.cell.forward(x, state[l], p[f"layer{l}.Wx"], p[f"layer{l}.Wh"], p[f"layer{l}.b"])
            layer_caches.append(cache)
            new_state.append(s)
        logits, head_cache = linear_forward(x.reshape(B * T, -1), p["head.W"], p["head.b"])  # (B*T, V)
        loss, ce_cache = softmax_cross_entropy_forward(logits, targets.reshape(B * T))
        return loss, ModelCache(B, T, embed_cache, layer_caches, head_cache, ce_cache), new_state

    def backward(self, cache: ModelCache) -> dict[str, np.ndarray]:
        """Gradients of the mean loss, keyed like the parameters."""
        grads = {}
        dlogits = softmax_cross_entropy_backward(1.0, cache.ce)
        dx, grads["head.W"], grads["head.b"] = linear_backward(dlogits, cache.head)
        dx = dx.reshape(cache.B, cache.T, -1)  # (B, T, H)
        for l in reversed(range(self.config.layers)):
            dx, grads[f"layer{l}.Wx"], grads[f"layer{l}.Wh"], grads[f"layer{l}.b"] = self.cell.backward(dx, cache.layers[l])
        if cache.embed is not None:
            grads["embed.W"] = embedding_backward(dx, cache.embed)
        return grads

    def step(self, ids: np.ndarray, state):
        """One character per stream: ids (B,) -> logits (B, V), new state. Used by sampling."""
        p = self.params
        x, _ = self._inputs(ids[:, None])
        x = x[:, 0]  # (B, E)
        new_state = []
        for l in range(self.config.layers):
            x, s = self.cell.step(x, state[l], p[f"layer{l}.Wx"], p[f"layer{l}.Wh"], p[f"layer{l}.b"])
            new_state.append(s)
        logits, _ = linear_forward(x, p["head.W"], p["head.b"])  # (B, V)
        return logits, new_state

    # ------------------------------------------------------------ the Python API
    def mean_loss(self, ids: np.ndarray, n_streams: int = 32, seq_len: int = 64) -> float:
        """Mean nats per predicted character over every target of `ids` (see data.eval_chunks)."""
        total, count, state = 0.0, 0, None
        for batch, reset in eval_chunks(ids, n_streams, seq_len):
            if reset:
                state = self.initial_state(batch.x.shape[0])
            loss, _, state = self.forward(batch.x, batch.y, state)
            total += float(loss) * batch.y.size
            count += batch.y.size
        if count == 0:
            raise CharnnError("need at least two characters to score: each one is predicted from the one before")
        return total / count

    def loss(self, text: str) -> float:
        """Mean nats per character of `text` under the model (every character after the first)."""
        return self.mean_loss(self.vocab.encode(text, "text to score"))

    def generate(self, length: int, temperature: float = 1.0, prime: str = "", top_k: int | None = None,
                 argmax: bool = False, seed: int | None = None):
        """Yield `length` sampled characters one at a time, continuing `prime`."""
        from .sampling import generate

        return generate(self, length, temperature=temperature, prime=prime, top_k=top_k, argmax=argmax, seed=seed)

    def sample(self, length: int, temperature: float = 1.0, prime: str = "", top_k: int | None = None,
               argmax: bool = False, seed: int | None = None) -> str:
        """`prime` followed by `length` sampled characters. The same seed gives the same text."""
        return prime + "".join(self.generate(length, temperature, prime, top_k, argmax, seed))

    def save(self, path) -> None:
        """Write the model (no training state) as a checkpoint."""
        from .checkpoint import save_model

        save_model(path, self)

    def __repr__(self) -> str:
        c = self.config
        n = sum(p.size for p in self.params.values())
        return f"CharModel({c.model} {c.layers}x{c.hidden}, embed {c.embed}, vocab {c.vocab_size}, {n:,} parameters)"
