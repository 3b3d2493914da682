"""charnn: character-level language models (RNN, LSTM, GRU, MLP) in numpy with hand-written backprop.

    import charnn
    model = charnn.load("shakespeare")      # a shipped checkpoint, or a path
    print(model.sample(300, temperature=0.8, prime="ROMEO:", seed=1))
    print(model.loss("some text"))          # mean nats per character

    result = charnn.train(charnn.TrainConfig(corpus="input.txt", steps=500))

Importing charnn loads numpy only; numba is loaded when the numba backend is first used, and
`charnn.compile_kernels()` (`charnn compile`) compiles it ahead of time.
"""
from .baseline import NGramModel, ngram_baseline
from .compile import compile_kernels
from .checkpoint import load
from .config import ModelConfig
from .data.text import Vocab, read_corpus
from .errors import CharnnError, CheckpointError, CorpusError, DivergedError, LockedError, VocabError
from .model import CharModel
from .train import TrainConfig, TrainResult, resume, train
from .version import __version__
from . import viz  # charnn.viz.find_cells, page_data, plot_logs (matplotlib only when plotting)

__all__ = [
    "load", "train", "resume", "TrainConfig", "TrainResult", "CharModel", "ModelConfig", "Vocab", "read_corpus",
    "compile_kernels", "ngram_baseline", "NGramModel", "CharnnError", "CheckpointError", "CorpusError", "DivergedError", "LockedError", "VocabError", "__version__",
]
