"""What a model is, before any of its math runs: its configuration, its parameters' names and
shapes, and their initialisation.

Shapes: V vocabulary, E embedding width (0: one-hot, so the first layer sees V), H hidden width,
G gate width (H for the RNN, 4H for the LSTM, 3H for the GRU), L layers, K context length of the MLP.

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
"""
from __future__ import annotations

import math

from dataclasses import asdict, dataclass, replace

import numpy as np

from .errors import CharnnError
from .nn.activations import ACTIVATIONS

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
    weight_drop: float = 0.0  # DropConnect on each recurrent layer's Wh (AWD-LSTM): probability of
    #   zeroing a recurrent weight, one mask per training chunk; recurrent models, training only

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
        if not 0.0 <= self.weight_drop < 1.0:
            raise CharnnError(f"weight drop must be in [0, 1), got {self.weight_drop!r}")
        if self.weight_drop and self.model == "mlp":
            raise CharnnError("weight drop acts on recurrent weights (Wh); the mlp has none")
        return self

    def draws_masks(self) -> bool:
        """Whether training draws random masks (dropout, weight drop): then forward needs an rng."""
        return self.dropout > 0 or self.weight_drop > 0

    def to_dict(self) -> dict:
        return asdict(self)

    def param_count(self) -> int:
        """The number of parameters, from param_shapes of at most two layers (every layer after
        the first has the same shapes), so a config of 10**9 layers is counted without listing them."""
        two = replace(self, layers=min(self.layers, 2)).param_shapes()
        size = {k: math.prod(v) for k, v in two.items()}
        repeated = sum(n for k, n in size.items() if k.startswith("layer1."))
        return sum(size.values()) + max(self.layers - 2, 0) * repeated

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
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for MLP layers, N(0, 1) embeddings, zero biases. (The LSTM
    forget gate's bias too: started at 1, as Jozefowicz et al. 2015 advise, it trained these
    corpora slower at every step measured; bench/README.md, "The forget gate's bias".)"""
    H = config.hidden
    k = 1.0 / np.sqrt(H)
    params = {}
    for name, shape in config.param_shapes().items():
        if name == "embed.W":
            p = rng.standard_normal(shape)
        elif name.endswith(".b"):
            p = np.zeros(shape)
        elif name.endswith(".W") and name.startswith("layer"):  # MLP dense layer
            fan_in = 1.0 / np.sqrt(shape[0])
            p = rng.uniform(-fan_in, fan_in, size=shape)
        else:
            p = rng.uniform(-k, k, size=shape)
        params[name] = p.astype(dtype)
    return params
