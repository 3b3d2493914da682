"""Reading a corpus as strict UTF-8, and the character vocabulary: id i is the i-th smallest code point."""
from __future__ import annotations

import os

import numpy as np

from ..errors import CorpusError, VocabError


def read_corpus(path: str | os.PathLike, what: str = "corpus") -> str:
    """Read a whole corpus (or another text: `what` names it in errors) as strict UTF-8; raise
    CorpusError naming the problem otherwise."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise CorpusError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise CorpusError(f"{what} is a directory, not a text file: {path}") from None
    except OSError as e:
        raise CorpusError(f"cannot read {what} {path}: {e.strerror}") from None
    if not raw:
        raise CorpusError(f"{what} is empty: {path}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"{what} is not valid UTF-8: {path}: byte 0x{raw[e.start]:02x} at offset {e.start} ({e.reason})"
        ) from None
    if text.startswith("\ufeff"):  # a byte-order mark is encoding metadata, not text to learn
        text = text[1:]
    if not text:
        raise CorpusError(f"{what} is empty: {path}")
    return text


class Vocab:
    """The sorted set of code points of a text; id i is the i-th smallest character."""

    def __init__(self, chars):
        self.chars = list(chars)
        if not self.chars:
            raise VocabError("vocabulary is empty")
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}
        if len(self.stoi) != len(self.chars):
            raise VocabError("vocabulary has repeated characters")
        # code point -> id lookup table, so encoding a long text is one vectorised gather
        top = max(ord(c) for c in self.chars) + 1
        self._table = np.full(top, -1, dtype=np.int64)
        for i, ch in enumerate(self.chars):
            self._table[ord(ch)] = i

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        """Text -> ids (N,) int32. Raises VocabError listing characters not in the vocabulary."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        known = codes < len(self._table)
        ids = np.full(codes.shape, -1, dtype=np.int64)
        ids[known] = self._table[codes[known]]
        if (ids < 0).any():
            bad = sorted({chr(c) for c in codes[ids < 0]})
            shown = ", ".join(repr(c) for c in bad[:10]) + (" ..." if len(bad) > 10 else "")
            raise VocabError(f"{what} has {len(bad)} character(s) not in the model's vocabulary: {shown}")
        return ids.astype(np.int32)

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in np.asarray(ids).ravel())
