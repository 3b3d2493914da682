"""charnn: character-level language models (RNN, LSTM) in numpy with hand-written backprop.

    import charnn
    model = charnn.load("checkpoints/corpus-lstm.npz")
    print(model.sample(300, temperature=0.8, prime="ROMEO:", seed=1))
    print(model.loss("some text"))          # mean nats per character

    result = charnn.train(charnn.TrainConfig(corpus="input.txt", steps=500))
"""
__version__ = "0.1.0"

from ._blas import BLAS_CHOICE  # noqa: E402,F401  first: it must run before numpy loads OpenBLAS
from .checkpoint import load
from .data import Vocab, read_corpus
from .errors import CharnnError, CheckpointError, CorpusError, DivergedError, VocabError
from .model import CharModel, ModelConfig
from .train import TrainConfig, TrainResult, train

__all__ = [
    "load", "train", "TrainConfig", "TrainResult", "CharModel", "ModelConfig", "Vocab", "read_corpus",
    "CharnnError", "CheckpointError", "CorpusError", "DivergedError", "VocabError", "__version__",
]
