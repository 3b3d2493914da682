import os
import shutil
import tempfile

import numpy as np
import pytest

# The numba backend's product calibration (charnn.backend.numba.calibrate) is stored in a folder of
# the tests' own, not in the user's cache; subprocesses inherit it.
if "CHARNN_CACHE_DIR" not in os.environ:
    os.environ["CHARNN_CACHE_DIR"] = _TEST_CACHE = tempfile.mkdtemp(prefix="charnn-test-cache-")
else:
    _TEST_CACHE = None


def pytest_unconfigure(config):
    if _TEST_CACHE:
        shutil.rmtree(_TEST_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _own_working_folder(tmp_path_factory, monkeypatch):
    """Every test runs in an empty folder of its own: what the CLI writes under the working folder
    (checkpoints/, checkpoints/.latest, which a plain `charnn sample` reads) never lands in the checkout."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly hex "
         "jumbo vexing pangrams and shakespeare writes: to be, or not to be!").split()


def make_text(n_chars: int, seed: int = 0) -> str:
    """Deterministic English-like text with line breaks, built from a fixed word list."""
    rng = np.random.default_rng(seed)
    out, size, line = [], 0, 0
    while size < n_chars:
        w = WORDS[rng.integers(len(WORDS))]
        sep = "\n" if line > 50 else " "
        line = 0 if sep == "\n" else line + len(w) + 1
        out.append(w + sep)
        size += len(w) + 1
    return "".join(out)[:n_chars]


@pytest.fixture
def text():
    return make_text(6000)


@pytest.fixture
def corpus_file(tmp_path, text):
    path = tmp_path / "tiny.txt"
    path.write_text(text, encoding="utf-8")
    return path


def shared_corpora_dir():
    """CHARNN_CORPORA, else ../shared/corpora beside the repository, else None."""
    env = os.environ.get("CHARNN_CORPORA")
    if env and os.path.isdir(env):
        return env
    here = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "corpora")
    return os.path.normpath(here) if os.path.isdir(here) else None


@pytest.fixture
def shakespeare():
    d = shared_corpora_dir()
    path = d and os.path.join(d, "shakespeare.txt")
    if not path or not os.path.isfile(path):
        pytest.skip("tiny Shakespeare not available: set CHARNN_CORPORA to a folder holding shakespeare.txt")
    return path
