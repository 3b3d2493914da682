"""Corpus reading, the character vocabulary, the train/validation split and batch streams.

Shapes: N characters, B parallel streams (batch), T steps per chunk, L characters per stream.

Training follows char-rnn / torch-rnn: the training text is cut into B contiguous streams, and
consecutive chunks of T characters from each stream form consecutive batches, so the hidden state
at the end of one chunk is the right starting state for the next (truncated backprop through time).
"""
from __future__ import annotations

import os
from typing import Iterator, NamedTuple

import numpy as np

from .errors import CorpusError, VocabError


def read_corpus(path: str | os.PathLike) -> str:
    """Read a whole corpus as strict UTF-8; raise CorpusError naming the problem otherwise."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise CorpusError(f"corpus not found: {path}") from None
    except IsADirectoryError:
        raise CorpusError(f"corpus is a directory, not a text file: {path}") from None
    except OSError as e:
        raise CorpusError(f"cannot read corpus {path}: {e.strerror}") from None
    if not raw:
        raise CorpusError(f"corpus is empty: {path}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"corpus is not valid UTF-8: {path}: byte 0x{raw[e.start]:02x} at offset {e.start} ({e.reason})"
        ) from None
    if text.startswith("\ufeff"):  # a byte-order mark is encoding metadata, not text to learn
        text = text[1:]
    if not text:
        raise CorpusError(f"corpus is empty: {path}")
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


def split_train_val(ids: np.ndarray, val_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous split: the first (1 - val_frac) of the text trains, the last val_frac validates."""
    if not 0.0 < val_frac < 1.0:
        raise CorpusError(f"val_frac must be between 0 and 1, got {val_frac}")
    n_train = int(round(len(ids) * (1.0 - val_frac)))
    return ids[:n_train], ids[n_train:]


class Batch(NamedTuple):
    x: np.ndarray  # (B, T) input ids
    y: np.ndarray  # (B, T) target ids: the character after each input


class BatchStreams:
    """B contiguous streams over `ids`; chunk k of an epoch is columns [kT, (k+1)T) of every stream."""

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int):
        B, T = batch_size, seq_len
        L = (len(ids) - 1) // B  # characters per stream (each needs one more for its last target)
        if L < T:
            raise CorpusError(
                f"corpus too short: the training split has {len(ids)} characters, one batch needs "
                f"{B * T + 1} (batch size {B} x sequence length {T} + 1); use a longer text or "
                f"lower --batch-size / --seq-len"
            )
        self.B, self.T, self.L = B, T, L
        self.X = ids[: B * L].reshape(B, L)  # views: ids may be a memory map larger than memory
        self.Y = ids[1 : B * L + 1].reshape(B, L)
        self.chunks_per_epoch = L // T  # a partial chunk at the end of each stream is skipped

    def batch(self, k: int) -> Batch:
        """The k-th chunk of an epoch, 0 <= k < chunks_per_epoch."""
        cols = slice(k * self.T, (k + 1) * self.T)
        return Batch(self.X[:, cols].astype(np.int32), self.Y[:, cols].astype(np.int32))  # copies: ids may be uint8


def eval_chunks(ids: np.ndarray, n_streams: int, seq_len: int) -> Iterator[tuple[Batch, bool]]:
    """Cover every target of `ids` exactly once, as (batch, reset_state) pairs.

    The text is cut into n_streams streams read in chunks of seq_len (the last chunk may be
    shorter); the few targets left over when len(ids)-1 is not a multiple of n_streams are scored
    by one final single-stream pass. reset_state says the batch starts fresh streams.
    """
    n_targets = len(ids) - 1
    if n_targets < 1:
        return
    S = max(1, min(n_streams, n_targets))
    L = n_targets // S
    X = ids[: S * L].reshape(S, L)
    Y = ids[1 : S * L + 1].reshape(S, L)
    for k, start in enumerate(range(0, L, seq_len)):
        cols = slice(start, min(start + seq_len, L))
        yield Batch(X[:, cols].astype(np.int32), Y[:, cols].astype(np.int32)), k == 0
    tail = ids[S * L :]  # the targets not yet scored: ids[S*L+1:], predicted from ids[S*L:-1]
    for k, start in enumerate(range(0, len(tail) - 1, seq_len)):
        stop = min(start + seq_len, len(tail) - 1)
        yield Batch(tail[None, start:stop].astype(np.int32), tail[None, start + 1 : stop + 1].astype(np.int32)), k == 0
