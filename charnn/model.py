"""The character models: recurrent (RNN, LSTM, GRU) and the Bengio et al. 2003 MLP n-gram model.

Shapes: B batch, T steps, V vocabulary, E embedding width (0: one-hot, so the first layer sees V),
H hidden width, G gate width (H for the RNN, 4H for the LSTM, 3H for the GRU), L layers,
K context length of the MLP.

Recurrent:  ids -> embedding (or one-hot) -> L recurrent layers (dropout after each)
                -> linear head -> softmax cross-entropy
MLP:        the K previous ids (padding id V before the start of text) -> embeddings concatenated
                -> L dense layers h = act(x @ W + b) (dropout after each) -> linear head -> softmax CE

Parameters live in one flat dict whose keys the gradients share, so optimizers, clipping,
checkpoints and gradient checks treat every model alike:

    embed.W      (V, E)        recurrent, absent when E == 0;  (V + 1, E) for the MLP (row V pads)
    layer{l}.Wx  (D_l, G)      recurrent: D_0 = E (or V), D_l = H above
    layer{l}.Wh  (H, G)
    layer{l}.b   (G,)
    layer{l}.W   (D_l, H)      MLP: D_0 = K * E, D_l = H above
    layer{l}.b   (H,)
    head.W       (H, V)
    head.b       (V,)

The state carried between chunks is a list of tuples: one per layer, (h,) for the RNN and GRU and
(h, c) for the LSTM, each (B, H); for the MLP a single ([last K-1 ids (B, K-1)],), because its
"memory" is just the preceding characters.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from types import SimpleNamespace
from typing import Callable, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .activations import ACTIVATIONS
from .data import Vocab, eval_chunks
from .errors import CharnnError
from . import gru, layers, lstm, rnn
from .gru import gru_step_forward
from .layers import dropout_backward, dropout_forward, linear_forward, one_hot
from .lstm import lstm_step_forward
from .rnn import rnn_step_forward

BACKENDS = ("numba", "numpy")
DEFAULT_BACKEND = "numba"

_OP_NAMES = ("embedding_forward", "embedding_backward", "linear_forward", "linear_backward", "dense_forward", "dense_backward",
             "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
             "rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward", "gru_backward")


def backend_ops(backend: str) -> SimpleNamespace:
    """The sequence-level functions of a backend: "numpy" is the reference (the specification),
    "numba" the same signatures with fused kernels (fast.py)."""
    if backend == "numpy":
        modules = (layers, rnn, lstm, gru)
        return SimpleNamespace(**{n: next(getattr(m, n) for m in modules if hasattr(m, n)) for n in _OP_NAMES})
    if backend == "numba":
        from . import fast

        return SimpleNamespace(**{n: getattr(fast, n) for n in _OP_NAMES})
    raise CharnnError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


# ---------------------------------------------------------------- cell families
class Cell(NamedTuple):
    """Adapts one recurrent layer type to a uniform (x, state tuple) interface."""

    gates: int  # G / H
    n_state: int  # arrays in the carried state tuple
    forward: Callable  # (x, state, Wx, Wh, b) -> hs (B, T, H), new state, cache
    backward: Callable  # (dhs, cache) -> dx, dWx, dWh, db   (no gradient flows into the carried state)
    step: Callable  # (x (B, D), state, Wx, Wh, b) -> h (B, H), new state


def _rnn_seq(x, state, Wx, Wh, b, activation, ops):
    hs, cache = ops.rnn_forward(x, state[0], Wx, Wh, b, activation)
    return hs, (hs[:, -1].copy(),), cache


def _rnn_seq_back(dhs, cache, ops):
    dx, _dh0, dWx, dWh, db = ops.rnn_backward(dhs, cache)
    return dx, dWx, dWh, db


def _rnn_step(x, state, Wx, Wh, b, activation):
    h, _ = rnn_step_forward(x, state[0], Wx, Wh, b, activation)
    return h, (h,)


def _lstm_seq(x, state, Wx, Wh, b, ops):
    hs, c_last, cache = ops.lstm_forward(x, state[0], state[1], Wx, Wh, b)
    return hs, (hs[:, -1].copy(), c_last.copy()), cache


def _lstm_seq_back(dhs, cache, ops):
    dx, _dh0, _dc0, dWx, dWh, db = ops.lstm_backward(dhs, cache)
    return dx, dWx, dWh, db


def _lstm_step(x, state, Wx, Wh, b):
    h, c, _ = lstm_step_forward(x, state[0], state[1], Wx, Wh, b)
    return h, (h, c)


def _gru_seq(x, state, Wx, Wh, b, ops):
    hs, cache = ops.gru_forward(x, state[0], Wx, Wh, b)
    return hs, (hs[:, -1].copy(),), cache


def _gru_seq_back(dhs, cache, ops):
    dx, _dh0, dWx, dWh, db = ops.gru_backward(dhs, cache)
    return dx, dWx, dWh, db


def _gru_step(x, state, Wx, Wh, b):
    h, _ = gru_step_forward(x, state[0], Wx, Wh, b)
    return h, (h,)


def make_cell(kind: str, activation: str = "tanh", ops: SimpleNamespace | None = None) -> Cell:
    """The cell's sequence functions come from the backend `ops`; its step function, used for
    sampling, is always the reference one (sampling has its own whole-loop kernel)."""
    ops = ops or backend_ops("numpy")
    if kind == "rnn":
        return Cell(1, 1, partial(_rnn_seq, activation=activation, ops=ops), partial(_rnn_seq_back, ops=ops),
                    partial(_rnn_step, activation=activation))
    if kind == "lstm":
        return Cell(4, 2, partial(_lstm_seq, ops=ops), partial(_lstm_seq_back, ops=ops), _lstm_step)
    if kind == "gru":
        return Cell(3, 1, partial(_gru_seq, ops=ops), partial(_gru_seq_back, ops=ops), _gru_step)
    raise CharnnError(f"{kind!r} is not a recurrent cell")


RECURRENT = ("rnn", "lstm", "gru")
MODELS = RECURRENT + ("mlp",)
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


# ---------------------------------------------------------------- configuration
@dataclass(frozen=True)
class ModelConfig:
    model: str = "lstm"  # "rnn", "lstm", "gru" or "mlp"
    vocab_size: int = 0  # V, taken from the corpus
    hidden: int = 256  # H, width of every recurrent / hidden layer
    layers: int = 2  # L, stacked recurrent / hidden layers
    embed: int = 64  # E, embedding width; 0 feeds one-hot vectors (char-rnn style; not for the MLP)
    activation: str = "tanh"  # nonlinearity of the vanilla RNN and the MLP hidden layers
    dropout: float = 0.0  # probability of zeroing a unit after each layer, in training only
    context: int = 3  # K, characters the MLP sees (makemore's block_size)

    def validate(self) -> "ModelConfig":
        if self.model not in MODELS:
            raise CharnnError(f"unknown model type {self.model!r}; choose from {', '.join(MODELS)}")
        for name in ("vocab_size", "hidden", "layers", "context"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise CharnnError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.embed, int) or self.embed < 0:
            raise CharnnError(f"embed must be a non-negative integer, got {self.embed!r}")
        if self.model == "mlp" and self.embed == 0:
            raise CharnnError("the mlp model needs an embedding: set embed (--embed) to a positive width")
        if self.activation not in ACTIVATIONS:
            raise CharnnError(f"unknown activation {self.activation!r}; choose from {', '.join(ACTIVATIONS)}")
        if self.activation != "tanh" and self.model in ("lstm", "gru"):
            raise CharnnError(f"activation applies to the rnn and mlp models; {self.model} gates have fixed nonlinearities")
        if not 0.0 <= self.dropout < 1.0:
            raise CharnnError(f"dropout must be in [0, 1), got {self.dropout!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        V, H, E = self.vocab_size, self.hidden, self.embed
        if self.model == "mlp":
            shapes = {"embed.W": (V + 1, E)}  # row V embeds the padding before the start of text
            for l in range(self.layers):
                shapes[f"layer{l}.W"] = (self.context * E if l == 0 else H, H)
                shapes[f"layer{l}.b"] = (H,)
            shapes["head.W"] = (H, V)
            shapes["head.b"] = (V,)
            return shapes
        G = GATES[self.model] * H
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
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for MLP layers, N(0, 1) embeddings, zero biases except the
    LSTM forget gate, whose bias starts at 1 so the cell remembers by default early in training
    (Jozefowicz et al. 2015)."""
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
        elif name.endswith(".W") and name.startswith("layer"):  # MLP dense layer
            fan_in = 1.0 / np.sqrt(shape[0])
            p = rng.uniform(-fan_in, fan_in, size=shape)
        else:
            p = rng.uniform(-k, k, size=shape)
        params[name] = p.astype(dtype)
    return params


# ---------------------------------------------------------------- the models
class ModelCache(NamedTuple):
    B: int
    T: int
    embed: object  # EmbeddingCache, or None for one-hot input
    layers: list  # one cell (recurrent) or dense (MLP) cache per layer
    dropout: list  # one DropoutCache per layer
    head: object  # LinearCache
    ce: object  # SoftmaxCECache


class CharModel:
    """A character model with its vocabulary: the Python API (`sample`, `generate`, `loss`,
    `save`) over the math (`forward`, `backward`, `step`), which the subclasses implement.

    `CharModel(config, vocab, params)` builds the right subclass for config.model.
    """

    def __new__(cls, config: ModelConfig, *args, **kwargs):
        if cls is CharModel:
            cls = MLPModel if config.model == "mlp" else RecurrentModel
        return super().__new__(cls)

    def __init__(self, config: ModelConfig, vocab: Vocab, params: dict[str, np.ndarray], meta: dict | None = None,
                 backend: str = DEFAULT_BACKEND):
        self.config = config.validate()
        self.vocab = vocab
        self.params = params
        self.meta = meta or {}  # what a checkpoint said about how the model was made
        self.backend = backend
        self.ops = backend_ops(backend)

    @classmethod
    def create(cls, config: ModelConfig, vocab: Vocab, seed: int | np.random.Generator = 0, dtype=np.float32,
               backend: str = DEFAULT_BACKEND):
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return CharModel(config, vocab, init_params(config, rng, dtype), backend=backend)

    @property
    def dtype(self):
        return self.params["head.W"].dtype

    def _head_and_loss(self, x, targets, B, T):
        """x (B*T, H) -> loss, head cache, CE cache."""
        logits, head_cache = self.ops.linear_forward(x, self.params["head.W"], self.params["head.b"])  # (B*T, V)
        loss, ce_cache = self.ops.softmax_cross_entropy_forward(logits, targets.reshape(B * T))
        return loss, head_cache, ce_cache

    def forward(self, ids: np.ndarray, targets: np.ndarray, state, rng: np.random.Generator | None = None):
        """ids, targets (B, T) -> mean loss in nats, cache, the state after the chunk.
        rng: draws the dropout masks in training; None (evaluation) turns dropout off."""
        x, embed_cache, layer_caches, drop_caches, new_state = self._body(ids, state, rng)
        B, T = ids.shape
        loss, head_cache, ce_cache = self._head_and_loss(x, targets, B, T)
        return loss, ModelCache(B, T, embed_cache, layer_caches, drop_caches, head_cache, ce_cache), new_state

    def backward(self, cache: ModelCache) -> dict[str, np.ndarray]:
        """Gradients of the mean loss, keyed like the parameters."""
        grads = {}
        dlogits = self.ops.softmax_cross_entropy_backward(1.0, cache.ce)
        dx, grads["head.W"], grads["head.b"] = self.ops.linear_backward(dlogits, cache.head)  # (B*T, H)
        self._body_backward(dx, cache, grads)
        return grads

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

    def surprisal(self, text: str) -> np.ndarray:
        """-ln p(c_i | c_<i) in nats for every character of `text` after the first: (len - 1,).

        Scored as one stream from a zero state (every character sees all the text before it),
        in chunks of 256 so the state is carried exactly as in sampling."""
        ids = self.vocab.encode(text, "text to score")
        out = np.empty(max(len(ids) - 1, 0))
        state = self.initial_state(1)
        for start in range(0, len(ids) - 1, 256):
            x = ids[None, start : start + 256]
            y = ids[None, start + 1 : start + 257]
            x = x[:, : y.shape[1]]
            _, cache, state = self.forward(x, y, state)
            probs = cache.ce.probs  # (T, V)
            out[start : start + y.shape[1]] = -np.log(np.maximum(probs[np.arange(y.shape[1]), y[0]], 1e-45))
        return out

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
        return f"{type(self).__name__}({c.model} {c.layers}x{c.hidden}, embed {c.embed}, vocab {c.vocab_size}, {n:,} parameters)"


class RecurrentModel(CharModel):
    """Embedding (or one-hot) -> L stacked RNN / LSTM / GRU layers -> head."""

    def __init__(self, config, vocab, params, meta=None, backend=DEFAULT_BACKEND):
        super().__init__(config, vocab, params, meta, backend)
        self.cell = make_cell(config.model, config.activation, self.ops)

    def initial_state(self, B: int) -> list[tuple[np.ndarray, ...]]:
        H = self.config.hidden
        return [tuple(np.zeros((B, H), dtype=self.dtype) for _ in range(self.cell.n_state)) for _ in range(self.config.layers)]

    def _inputs(self, ids):
        if self.config.embed:
            return self.ops.embedding_forward(ids, self.params["embed.W"])
        return one_hot(ids, self.config.vocab_size, self.dtype), None

    def _body(self, ids, state, rng):
        p, B, T = self.params, *ids.shape
        x, embed_cache = self._inputs(ids)  # (B, T, E)
        layer_caches, drop_caches, new_state = [], [], []
        for l in range(self.config.layers):
            x, s, cache = self.cell.forward(x, state[l], p[f"layer{l}.Wx"], p[f"layer{l}.Wh"], p[f"layer{l}.b"])  # (B, T, H)
            x, drop = dropout_forward(x, self.config.dropout, rng)  # between layers and before the head
            layer_caches.append(cache)
            drop_caches.append(drop)
            new_state.append(s)
        return x.reshape(B * T, -1), embed_cache, layer_caches, drop_caches, new_state

    def _body_backward(self, dx, cache, grads):
        dx = dx.reshape(cache.B, cache.T, -1)  # (B, T, H)
        for l in reversed(range(self.config.layers)):
            dx = dropout_backward(dx, cache.dropout[l])
            dx, grads[f"layer{l}.Wx"], grads[f"layer{l}.Wh"], grads[f"layer{l}.b"] = self.cell.backward(dx, cache.layers[l])
        if cache.embed is not None:
            grads["embed.W"] = self.ops.embedding_backward(dx, cache.embed)

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


class MLPModel(CharModel):
    """Bengio et al. 2003 / makemore: embeddings of the previous K characters, concatenated,
    -> L dense layers -> head. Padding id V stands for "before the start of the text"."""

    def initial_state(self, B: int):
        K, V = self.config.context, self.config.vocab_size
        return [(np.full((B, K - 1), V, dtype=np.int32),)]

    def _windows(self, ids, state):
        """ids (B, T) -> windows (B, T, K) of ids ending at each position, and the new state."""
        K = self.config.context
        ctx = np.concatenate([state[0][0], ids.astype(np.int32)], axis=1)  # (B, K-1+T)
        windows = sliding_window_view(ctx, K, axis=1)  # (B, T, K): windows[:, t] = ctx[:, t : t+K]
        return windows, [(ctx[:, ctx.shape[1] - (K - 1) :].copy(),)]

    def _body(self, ids, state, rng):
        p, B, T = self.params, *ids.shape
        windows, new_state = self._windows(ids, state)
        emb, embed_cache = self.ops.embedding_forward(windows, p["embed.W"])  # (B, T, K, E)
        x = emb.reshape(B * T, -1)  # (B*T, K*E): the K embeddings side by side
        layer_caches, drop_caches = [], []
        for l in range(self.config.layers):
            x, cache = self.ops.dense_forward(x, p[f"layer{l}.W"], p[f"layer{l}.b"], self.config.activation)  # (B*T, H)
            x, drop = dropout_forward(x, self.config.dropout, rng)
            layer_caches.append(cache)
            drop_caches.append(drop)
        return x, embed_cache, layer_caches, drop_caches, new_state

    def _body_backward(self, dx, cache, grads):
        for l in reversed(range(self.config.layers)):
            dx = dropout_backward(dx, cache.dropout[l])
            dx, grads[f"layer{l}.W"], grads[f"layer{l}.b"] = self.ops.dense_backward(dx, cache.layers[l])
        K, E = self.config.context, self.config.embed
        grads["embed.W"] = self.ops.embedding_backward(dx.reshape(cache.B, cache.T, K, E), cache.embed)

    def step(self, ids: np.ndarray, state):
        """ids (B,) -> logits (B, V), new state: the same dense forward as training, one position."""
        x, _, _, _, new_state = self._body(ids[:, None], state, None)
        logits, _ = linear_forward(x, self.params["head.W"], self.params["head.b"])  # (B, V)
        return logits, new_state
