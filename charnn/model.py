"""The character models: recurrent (RNN, LSTM, GRU) and the Bengio et al. 2003 MLP n-gram model.

Shapes: B batch, T steps, V vocabulary, E embedding width (0: one-hot, so the first layer sees V),
H hidden width, G gate width (H for the RNN, 4H for the LSTM, 3H for the GRU), L layers,
K context length of the MLP. Parameter names and shapes: charnn.config.

Recurrent:  ids -> embedding (or one-hot) -> L recurrent layers (dropout after each; in
                training each Wh may run masked, DropConnect) -> linear head -> softmax cross-entropy
                (the first layer reads its input as ids into the table: nn.layers.Embedded)
MLP:        the K previous ids (padding id V before the start of text) -> embeddings concatenated
                -> L dense layers h = act(x @ W + b) (dropout after each) -> linear head -> softmax CE
                (the first layer reads its K ids into the table: nn.layers.Embedded)

The state carried between chunks is a list of tuples: one per layer, (h,) for the RNN and GRU and
(h, c) for the LSTM, each (B, H); for the MLP a single ([last K-1 ids (B, K-1)],), because its
"memory" is just the preceding characters.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .archive import FORMAT, VERSION, write_checkpoint
from .backend import DEFAULT_BACKEND, Backend, get_backend
from .config import ModelConfig, init_params
from .data.batches import eval_chunks
from .data.text import Vocab
from .errors import CharnnError
from .nn.gru import gru_step_forward, split_gates3
from .nn.layers import Embedded, dropout_backward, dropout_forward, linear_forward, one_hot
from .nn.lstm import lstm_step_forward, split_gates
from .nn.rnn import rnn_step_forward
from . import sampling

WARM_UP_CHUNK = 1024  # prime characters per sequence forward in warm_up
# what a model-only checkpoint keeps of how it was trained (not the optimizer, RNG or carried state):
# budget_spent is the training's wall-clock seconds, weights "ema" when the average was saved
TRAINING_SUMMARY = ("config", "corpus", "step", "epoch", "val_loss", "best_val", "command", "budget_spent", "weights")


# ---------------------------------------------------------------- cell families
class Cell(NamedTuple):
    """Adapts one recurrent layer type to a uniform (x, state tuple) interface."""

    n_state: int  # arrays in the carried state tuple
    forward: Callable  # (x, state, Wx, Wh, b) -> hs (B, T, H), new state, cache
    backward: Callable  # (dhs, cache) -> dx, dWx, dWh, db   (no gradient flows into the carried state)
    step: Callable  # (x (B, D), state, Wx, Wh, b) -> h (B, H), new state
    values: Callable  # a sequence's cache -> {name: (T, H)} of its first stream (model.activations)


def _rnn_seq(x, state, Wx, Wh, b, activation, ops):
    hs, cache = ops.rnn_forward(x, state[0], Wx, Wh, b, activation)
    return hs, (hs[:, -1].copy(),), cache


def _rnn_seq_back(dhs, cache, ops):
    dx, _dh0, dWx, dWh, db = ops.rnn_backward(dhs, cache)
    return dx, dWx, dWh, db


def _rnn_step(x, state, Wx, Wh, b, activation):
    h, _ = rnn_step_forward(x, state[0], Wx, Wh, b, activation)
    return h, (h,)


def _rnn_values(cache):
    return {"h": cache.h[0, 1:]}  # (T, H)


def _lstm_seq(x, state, Wx, Wh, b, ops):
    hs, c_last, cache = ops.lstm_forward(x, state[0], state[1], Wx, Wh, b)
    return hs, (hs[:, -1].copy(), c_last.copy()), cache


def _lstm_seq_back(dhs, cache, ops):
    dx, _dh0, _dc0, dWx, dWh, db = ops.lstm_backward(dhs, cache)
    return dx, dWx, dWh, db


def _lstm_step(x, state, Wx, Wh, b):
    h, c, _ = lstm_step_forward(x, state[0], state[1], Wx, Wh, b)
    return h, (h, c)


def _lstm_values(cache):
    i, f, o, g = split_gates(cache.gates[0])  # (T, H) each
    return {"h": cache.h[0, 1:], "c": cache.c[0, 1:], "tanh_c": cache.tanh_c[0], "i": i, "f": f, "o": o, "g": g}


def _gru_seq(x, state, Wx, Wh, b, ops):
    hs, cache = ops.gru_forward(x, state[0], Wx, Wh, b)
    return hs, (hs[:, -1].copy(),), cache


def _gru_seq_back(dhs, cache, ops):
    dx, _dh0, dWx, dWh, db = ops.gru_backward(dhs, cache)
    return dx, dWx, dWh, db


def _gru_step(x, state, Wx, Wh, b):
    h, _ = gru_step_forward(x, state[0], Wx, Wh, b)
    return h, (h,)


def _gru_values(cache):
    r, z, n = split_gates3(cache.gates[0])  # (T, H) each
    return {"h": cache.h[0, 1:], "r": r, "z": z, "n": n}


def make_cell(kind: str, activation: str, ops: Backend) -> Cell:
    """The cell's sequence functions come from the backend `ops`; its step function, used by the
    reference sampler, is always the reference one (the numba backend samples with its own kernel)."""
    if kind == "rnn":
        return Cell(1, partial(_rnn_seq, activation=activation, ops=ops), partial(_rnn_seq_back, ops=ops),
                    partial(_rnn_step, activation=activation), _rnn_values)
    if kind == "lstm":
        return Cell(2, partial(_lstm_seq, ops=ops), partial(_lstm_seq_back, ops=ops), _lstm_step, _lstm_values)
    if kind == "gru":
        return Cell(1, partial(_gru_seq, ops=ops), partial(_gru_seq_back, ops=ops), _gru_step, _gru_values)
    raise CharnnError(f"{kind!r} is not a recurrent cell")


def _placeholder_targets(ids: np.ndarray) -> np.ndarray:
    """Targets to run `ids` (N,) through forward when only its activations or probabilities are
    wanted: the next ids, and id 0 after the last (what follows the text is unknown; unused)."""
    return np.append(ids[1:], 0).astype(ids.dtype)


# ---------------------------------------------------------------- the models
class ModelCache(NamedTuple):
    B: int
    T: int
    layers: list  # one cell (recurrent) or dense (MLP) cache per layer
    dropout: list  # one DropoutCache per layer
    head: object  # LinearCache
    ce: object  # SoftmaxCECache
    weight_drop: list  # recurrent: one DropoutCache per layer's Wh (DropConnect); MLP: empty


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
        self.ops = get_backend(backend)
        self.backend = self.ops.name

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
        rng: draws the dropout and weight-drop masks in training; None (evaluation) turns both off."""
        x, layer_caches, drop_caches, wdrop_caches, new_state = self._body(ids, state, rng)
        B, T = ids.shape
        loss, head_cache, ce_cache = self._head_and_loss(x, targets, B, T)
        cache = ModelCache(B, T, layer_caches, drop_caches, head_cache, ce_cache, wdrop_caches)
        return loss, cache, new_state

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
        for start, cache in self._one_stream(ids[:-1], ids[1:]):
            probs, y = cache.ce.probs, cache.ce.targets  # (T, V), (T,)
            out[start : start + len(y)] = -np.log(np.maximum(probs[np.arange(len(y)), y], 1e-45))
        return out

    def next_char_probs(self, text: str) -> np.ndarray:
        """p(next character | text[: t + 1]) for every position t of `text`: (T, V), T = len(text),
        run like `surprisal` (one stream from a zero state); row t is the guess for character t + 1."""
        ids = self._ids_to_run(text)
        return np.concatenate([cache.ce.probs for _, cache in self._one_stream(ids, _placeholder_targets(ids))])

    def activations(self, text: str) -> list[dict[str, np.ndarray]]:
        """What every layer computes at every character of `text`, by the numpy reference forward
        (one stream from a zero state, as `surprisal`, dropout off): one dict per layer of (T, H)
        float arrays, T = len(text), row t the values after reading text[t]:

            h              every model: the layer's output (what the next layer reads)
            c, tanh_c      LSTM: the cell state and tanh(c)   (h = o * tanh_c)
            i, f, o, g     LSTM: input, forget and output gates (sigmoid, in (0, 1)), candidate g (tanh)
            r, z, n        GRU: reset and update gates (sigmoid), candidate n (tanh)

        The MLP has no recurrent cells: its h are the dense layers' outputs, which see only the
        last K characters. charnn.viz correlates these with features of the text.
        """
        ids = self._ids_to_run(text)
        ref = self.with_backend("numpy")  # the reference: its caches hold every gate, stacked over time
        chunks = [[ref._layer_values(c) for c in cache.layers] for _, cache in ref._one_stream(ids, _placeholder_targets(ids))]
        return [{name: np.concatenate([chunk[l][name] for chunk in chunks]) for name in chunks[0][l]}
                for l in range(self.config.layers)]

    def _ids_to_run(self, text: str) -> np.ndarray:
        ids = self.vocab.encode(text, "text")
        if len(ids) == 0:
            raise CharnnError("no text to run the model over")
        return ids

    def _one_stream(self, x: np.ndarray, y: np.ndarray, chunk: int = 256):
        """Run ids x -> targets y (N,) as one stream from a zero state, in chunks of `chunk` with the
        state carried as in sampling; yield (start, cache) per chunk (dropout off)."""
        state = self.initial_state(1)
        for start in range(0, len(x), chunk):
            _, cache, state = self.forward(x[None, start : start + chunk], y[None, start : start + chunk], state)
            yield start, cache

    def loss(self, text: str) -> float:
        """Mean nats per character of `text` under the model (every character after the first)."""
        return self.mean_loss(self.vocab.encode(text, "text to score"))

    def generate(self, length: int, temperature: float = 1.0, prime: str = "", top_k: int | None = None,
                 argmax: bool = False, seed: int | None = None, **options):
        """Yield sampled characters one at a time, continuing `prime`: `length` of them (0: until a
        stop string, or for as long as they are read). options: top_p, stop, progress, note
        (see charnn.sampling.generate)."""
        return sampling.generate(self, length, temperature, prime, top_k, argmax, seed, **options)

    def sample(self, length: int, temperature: float = 1.0, prime: str = "", top_k: int | None = None,
               argmax: bool = False, seed: int | None = None, **options) -> str:
        """`prime` followed by `length` sampled characters (fewer if options["stop"] ends it first;
        length 0: until a stop string). The same seed gives the same text."""
        if length == 0 and not sampling.stop_strings(options.get("stop")):
            raise CharnnError("length 0 samples until a stop string, and there is none: give stop=..., "
                              "or read model.generate(0) for as long as you like")
        return prime + "".join(self.generate(length, temperature, prime, top_k, argmax, seed, **options))

    def samples(self, num_samples: int, length: int, **options) -> list[str]:
        """num_samples texts, each `prime` followed by its sampled characters, generated as one batch;
        text i is sample(length, seed=seed + i, ...). options: those of sample."""
        if length == 0 and not sampling.stop_strings(options.get("stop")):
            raise CharnnError("length 0 samples until a stop string, and there is none: give stop=...")
        texts = [[] for _ in range(num_samples)]
        for pieces in sampling.generate_many(self, num_samples, length, **options):
            for text, piece in zip(texts, pieces):
                text.append(piece)
        prime = options.get("prime", "")
        return [prime + "".join(text) for text in texts]

    def generate_many(self, num_samples: int, length: int, **options):
        """num_samples streams as one batch: yields per block a list of each stream's new text
        (see charnn.sampling.generate_many)."""
        return sampling.generate_many(self, num_samples, length, **options)

    def generate_probs(self, length: int, **options):
        """generate's characters as CharProb records: each with the model's probability of it and
        of the 5 most likely characters (see charnn.sampling.generate_probs)."""
        return sampling.generate_probs(self, length, **options)

    def beam_search(self, beam: int, length: int, prime: str = "", progress=None):
        """The `beam` most likely continuations of `length` characters, best first, as
        charnn.sampling.Beam (text, logprob, chars)."""
        return sampling.beam_search(self, beam, length, prime, progress)

    def warm_up(self, ids: np.ndarray, state=None, progress=None):
        """The state after reading ids (M,) as one stream (B = 1) from `state` (default: the initial
        state), with the sequence forward in chunks of WARM_UP_CHUNK (no dropout, no head): the
        state model.step would reach one character at a time, to float32 rounding, in a fraction of
        the time. progress(done, M) is told at the start and after each chunk."""
        state = self.initial_state(1) if state is None else state
        ids = np.asarray(ids)
        if progress is not None and len(ids):
            progress(0, len(ids))
        for start in range(0, len(ids), WARM_UP_CHUNK):
            *_, state = self._body(ids[None, start : start + WARM_UP_CHUNK], state, None)
            if progress is not None:
                progress(min(start + WARM_UP_CHUNK, len(ids)), len(ids))
        return state

    def save(self, path, extra_meta: dict | None = None) -> None:
        """Write the model alone as a checkpoint: parameters, config, vocabulary, and a summary of
        how it was trained (not the optimizer, RNG or carried state)."""
        meta = self.checkpoint_meta()
        summary = self.meta.get("trained") or self.meta.get("train")
        if summary:
            meta["trained"] = {k: summary[k] for k in TRAINING_SUMMARY if k in summary}
        meta.update(extra_meta or {})
        write_checkpoint(path, meta, self.checkpoint_arrays())

    def checkpoint_meta(self) -> dict:
        """The metadata every checkpoint of this model starts with."""
        return {"format": FORMAT, "version": VERSION, "model": self.config.to_dict(), "vocab": self.vocab.chars}

    def checkpoint_arrays(self) -> dict[str, np.ndarray]:
        return {f"param/{k}": v for k, v in self.params.items()}

    def with_backend(self, backend: str) -> "CharModel":
        """The same model (sharing its parameters) computed by another backend."""
        return self if backend == self.backend else CharModel(self.config, self.vocab, self.params, self.meta, backend)

    def __repr__(self) -> str:
        c = self.config
        n = sum(p.size for p in self.params.values())
        return f"{type(self).__name__}({c.model} {c.layers}x{c.hidden}, embed {c.embed}, vocab {c.vocab_size}, {n:,} parameters)"


class RecurrentModel(CharModel):
    """Embedding (or one-hot) -> L stacked RNN / LSTM / GRU layers -> head."""

    def __init__(self, config, vocab, params, meta=None, backend=DEFAULT_BACKEND):
        super().__init__(config, vocab, params, meta, backend)
        self.cell = make_cell(config.model, config.activation, self.ops)

    def _layer_values(self, cache) -> dict[str, np.ndarray]:
        return self.cell.values(cache)

    def initial_state(self, B: int) -> list[tuple[np.ndarray, ...]]:
        H = self.config.hidden
        return [tuple(np.zeros((B, H), dtype=self.dtype) for _ in range(self.cell.n_state)) for _ in range(self.config.layers)]

    def _inputs(self, ids):
        """ids (B, T) -> x (B, T, E): the embedded characters (E = V: one-hot)."""
        if self.config.embed:
            return self.ops.embedding_forward(ids, self.params["embed.W"])[0]
        return one_hot(ids, self.config.vocab_size, self.dtype)

    def _table(self):
        """The table the first layer reads its input from: the embedding (V, E), or for one-hot
        input the identity (V, V)."""
        if self.config.embed:
            return self.params["embed.W"]
        return np.eye(self.config.vocab_size, dtype=self.dtype)

    def _body(self, ids, state, rng):
        p, B, T = self.params, *ids.shape
        x = Embedded(ids[..., None], self._table())  # (B, T, E), never formed: the first layer looks up table @ Wx
        layer_caches, drop_caches, wdrop_caches, new_state = [], [], [], []
        for l in range(self.config.layers):
            # DropConnect is dropout applied to the weights: one mask over Wh for the whole chunk
            Wh, wdrop = dropout_forward(p[f"layer{l}.Wh"], self.config.weight_drop, rng)  # (H, G)
            x, s, cache = self.cell.forward(x, state[l], p[f"layer{l}.Wx"], Wh, p[f"layer{l}.b"])  # (B, T, H)
            x, drop = dropout_forward(x, self.config.dropout, rng)  # between layers and before the head
            layer_caches.append(cache)
            drop_caches.append(drop)
            wdrop_caches.append(wdrop)
            new_state.append(s)
        return x.reshape(B * T, -1), layer_caches, drop_caches, wdrop_caches, new_state

    def _body_backward(self, dx, cache, grads):
        dx = dx.reshape(cache.B, cache.T, -1)  # (B, T, H)
        for l in reversed(range(self.config.layers)):
            dx = dropout_backward(dx, cache.dropout[l])
            dx, grads[f"layer{l}.Wx"], dWh, grads[f"layer{l}.b"] = self.cell.backward(dx, cache.layers[l])
            grads[f"layer{l}.Wh"] = dropout_backward(dWh, cache.weight_drop[l])  # forward: Wh_used = Wh * mask
        if self.config.embed:
            grads["embed.W"] = dx  # layer 0's input gradient is its table's (V, E)

    def step(self, ids: np.ndarray, state):
        """One character per stream: ids (B,) -> logits (B, V), new state. Used by sampling."""
        p = self.params
        x = self._inputs(ids[:, None])[:, 0]  # (B, E)
        new_state = []
        for l in range(self.config.layers):
            x, s = self.cell.step(x, state[l], p[f"layer{l}.Wx"], p[f"layer{l}.Wh"], p[f"layer{l}.b"])
            new_state.append(s)
        logits, _ = linear_forward(x, p["head.W"], p["head.b"])  # (B, V)
        return logits, new_state


class MLPModel(CharModel):
    """Bengio et al. 2003 / makemore: embeddings of the previous K characters, concatenated,
    -> L dense layers -> head. Padding id V stands for "before the start of the text"."""

    def _layer_values(self, cache) -> dict[str, np.ndarray]:
        return {"h": cache.h}  # (T, H) for one stream

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
        x = Embedded(windows.reshape(B * T, -1), p["embed.W"])  # (B*T, K*E): the K embeddings side by side, never formed
        layer_caches, drop_caches = [], []
        for l in range(self.config.layers):
            x, cache = self.ops.dense_forward(x, p[f"layer{l}.W"], p[f"layer{l}.b"], self.config.activation)  # (B*T, H)
            x, drop = dropout_forward(x, self.config.dropout, rng)
            layer_caches.append(cache)
            drop_caches.append(drop)
        return x, layer_caches, drop_caches, [], new_state

    def _body_backward(self, dx, cache, grads):
        for l in reversed(range(self.config.layers)):
            dx = dropout_backward(dx, cache.dropout[l])
            dx, grads[f"layer{l}.W"], grads[f"layer{l}.b"] = self.ops.dense_backward(dx, cache.layers[l])
        grads["embed.W"] = dx  # layer 0's input gradient is its table's (V+1, E)

    def warm_up(self, ids: np.ndarray, state=None, progress=None):
        """The state after reading ids (M,): the MLP's state is its last K-1 ids (no layer runs)."""
        state = self.initial_state(1) if state is None else state
        _, state = self._windows(np.asarray(ids)[None], state)
        if progress is not None:
            progress(len(ids), len(ids))
        return state

    def step(self, ids: np.ndarray, state):
        """ids (B,) -> logits (B, V), new state: the same dense forward as training, one position."""
        x, *_, new_state = self._body(ids[:, None], state, None)
        logits, _ = linear_forward(x, self.params["head.W"], self.params["head.b"])  # (B, V)
        return logits, new_state
