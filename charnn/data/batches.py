"""The train/validation split and the batch streams of truncated backprop through time.

Shapes: N characters, B parallel streams (batch), T steps per chunk, L characters per stream.

Training follows char-rnn / torch-rnn: the training text is cut into B contiguous streams, and
consecutive chunks of T characters from each stream form consecutive batches, so the hidden state
at the end of one chunk is the right starting state for the next (truncated backprop through time).
"""
from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np

from ..errors import CorpusError


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
