"""Where corpora come from: the default training text when none is named."""
from __future__ import annotations

import os

from .errors import CorpusError

DEFAULT_CORPUS = "shakespeare.txt"


def corpus_dirs() -> list[str]:
    """Folders searched for named corpora, in order: $CHARNN_CORPORA, ./corpora, ../shared/corpora."""
    dirs = []
    if os.environ.get("CHARNN_CORPORA"):
        dirs.append(os.environ["CHARNN_CORPORA"])
    dirs.append("corpora")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the source checkout
    dirs.append(os.path.join(here, "..", "shared", "corpora"))
    return dirs


def find_corpus(name: str) -> str | None:
    for d in corpus_dirs():
        path = os.path.join(d, name)
        if os.path.isfile(path):
            return os.path.normpath(path)
    return None


def default_corpus() -> str:
    """tiny Shakespeare from the corpus folders, or a clear error saying what to pass instead."""
    path = find_corpus(DEFAULT_CORPUS)
    if path is None:
        raise CorpusError(
            f"no corpus given and no default {DEFAULT_CORPUS} found in {', '.join(corpus_dirs())}: "
            f"pass a text file, e.g. `charnn train mytext.txt`, or set CHARNN_CORPORA"
        )
    return path
