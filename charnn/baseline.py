"""Character n-gram baselines: interpolated Kneser-Ney, orders 1 to K, on the trainer's split.

Shapes: N characters, V vocabulary, K the highest order, n_k distinct k-grams, Q queries.

The model (Chen & Goodman 1998, "An empirical study of smoothing techniques", interpolated
Kneser-Ney with absolute discounting). A k-gram is a context h of k-1 characters followed by a
character w; h' is h without its first character. The order-n model is

    p_n(w | h)   = (c(hw) - D(c(hw)))+ / c(h.)  +  gamma(h) p_low,n-1(w | h')      raw counts c
    p_low,k(w|h) = (N(.hw) - D(N(.hw)))+ / N(.h.) + gamma(h) p_low,k-1(w | h')     continuation counts
    p_low,0(w)   = 1 / V                                                           uniform
    gamma(h)     = sum over the w seen after h of D(count of hw) / (the same denominator)

c(hw) counts the occurrences of hw in the training text, c(h.) = sum_w c(hw). N(.hw), the
continuation count, is the number of distinct characters seen before hw, the start of the text
counting as one (as <s> does for a sentence), and N(.h.) = sum_w N(.hw). A context h never seen
with a follower is skipped: p(w | h) = p_low(w | h'). So order 1 is the unigram interpolated with
the uniform distribution over the whole vocabulary (built, as the trainer builds it, from the whole
text), and a character never seen in training still has probability > 0; with one discount and
every character seen in training, order 1 is exactly the plain unigram c(w) / N. The order-n model uses raw
counts at its top level and continuation counts below it, so every order is its own model; they
share their levels and are scored together.

Discounts, per level and separately for raw and continuation counts (each from the counts that
level uses, as KenLM does), from n_r, the number of k-grams counted exactly r times:
  "modified" (the default; Chen & Goodman's modified KN, three discounts, what KenLM uses): with
      Y = n1 / (n1 + 2 n2): D1 = 1 - 2Y n2/n1, D2 = 2 - 3Y n3/n2, D3+ = 3 - 4Y n4/n3.
      Chen & Goodman found it the best of the methods they compared; on the three corpora here it
      beats one discount at every order above 1.
  "single" (interpolated KN with one discount per level): D = n1 / (n1 + 2 n2).
A discount must lie in (0, r] for a count of r: the probabilities then sum to 1 and every context
passes some mass down. Where the counts of counts do not give that (too few k-grams seen once or
twice, as in the unigram counts of a long text), the level takes FALLBACK, KenLM's fallback.

Counting is one streaming pass over the training ids, CHUNK characters at a time (plus K-1
characters of history from the block before). Level k is a sorted table of the distinct k-grams,
key = (index of its (k-1)-character prefix in level k-1) * V + w, with their counts; a block's
k-grams are counted with np.unique and merged in, and the next level's keys are re-indexed (the
re-indexing is monotonic, so the tables stay sorted). After every block the memory the finished
model will take is projected from the table sizes (model_bytes); over the limit, the highest order
is dropped, with a note. Scoring looks up every context of every position in the same tables.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from .data.batches import split_train_val
from .data.corpora import default_corpus
from .data.encoded import encode_corpus
from .data.text import Vocab
from .errors import CharnnError, CorpusError
from .train.config import TrainConfig

DEFAULT_MAX_ORDER = 10  # the highest order counted (the Karpathy-Johnson-Fei-Fei paper goes to 20)
DEFAULT_MEMORY = 1 << 30  # bytes the finished model may take (model_bytes); beyond, orders are dropped
SMOOTHINGS = ("modified", "single")  # three discounts per level (modified KN) or one
DEFAULT_SMOOTHING = "modified"
FALLBACK = (0.5, 1.0, 1.5)  # D1, D2, D3+ where the counts of counts give no valid discount (KenLM's)
CHUNK = 1 << 20  # characters counted per block: ~50 MB of transient arrays at K = 10
EVAL_CHUNK = 1 << 18  # characters scored per block: ~(2K + 4) * 8 bytes each, ~45 MB at K = 10


def count_dtype(n: int) -> np.dtype:
    """Counts of a text of n characters: int32 while they fit, else int64."""
    return np.dtype(np.int32 if n < 2**31 else np.int64)


def model_bytes(sizes, itemsize: int) -> int:
    """Bytes of the arrays of an NGramModel whose levels 0..K hold sizes[k] k-grams, with counts of
    `itemsize` bytes: per k-gram its key (8) and count; below the top its continuation count; and
    as a context of the level above, a denominator and a gamma (8) for the raw counts (k < K) and
    for the continuation counts (k < K-1). NGramModel.level_bytes measures the same arrays."""
    K = len(sizes) - 1
    per = [8 + itemsize + (0 < k < K) * itemsize + (k < K) * (itemsize + 8) + (k < K - 1) * (itemsize + 8)
           for k in range(K + 1)]
    return sum(n * b for n, b in zip(sizes, per))


def discounts(counts: np.ndarray, smoothing: str = DEFAULT_SMOOTHING) -> tuple[np.ndarray, bool]:
    """(D1, D2, D3+) (3,) for the counts of one level, and whether FALLBACK replaced the estimate."""
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == r)) for r in (1, 2, 3, 4))
    with np.errstate(divide="ignore", invalid="ignore"):
        Y = np.float64(n1) / (n1 + 2 * n2)
        if smoothing == "single":
            D = np.array([Y, Y, Y])
        else:
            D = np.array([1 - 2 * Y * n2 / n1, 2 - 3 * Y * n3 / np.float64(n2), 3 - 4 * Y * n4 / np.float64(n3)])
    if not (np.all(np.isfinite(D)) and np.all(D > 0) and np.all(D <= (1, 2, 3))):
        return np.array(FALLBACK), True
    return D, False


class NGramCounts(NamedTuple):
    """What the counting pass keeps: levels 0..K, level 0 the empty context."""
    keys: list  # [k] (n_k,) int64, sorted: (index of the (k-1)-gram prefix in level k-1) * V + w
    counts: list  # [k] (n_k,) occurrences of each k-gram in the text
    vocab_size: int  # V
    n: int  # N, characters counted
    head: np.ndarray  # (min(K, N),) int64: the first characters, whose k-grams have the start of the text before them
    notes: list  # what was given up, e.g. orders dropped for the memory limit


def _find(keys: np.ndarray, V: int, h: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(Q,) index of the k-gram h w in a level's sorted keys, -1 where h is -1 or h w is not there."""
    key = np.maximum(h, 0) * V + w  # (Q,)
    at = np.searchsorted(keys, key)  # (Q,)
    found = (h >= 0) & (at < len(keys))
    found[found] = keys[at[found]] == key[found]
    return np.where(found, at, -1)


def _merge(keys: np.ndarray, counts: np.ndarray, fresh: np.ndarray, n_fresh: np.ndarray):
    """Add the counts n_fresh (m,) of the sorted distinct keys fresh (m,) to a level's table.
    Returns the merged keys and counts, the index of each fresh key in them (m,), and the
    positions in the old table where the new keys went in (sorted)."""
    at = np.searchsorted(keys, fresh)  # (m,) where each fresh key is, or would go, in the old table
    new = np.ones(len(fresh), dtype=bool)  # (m,) not in the old table
    inside = at < len(keys)
    new[inside] = keys[at[inside]] != fresh[inside]
    inserted = at[new]
    keys = np.insert(keys, inserted, fresh[new])
    counts = np.insert(counts, inserted, 0)
    where = at + np.cumsum(new) - new  # (m,) moved along by the new keys before it
    counts[where] += n_fresh
    return keys, counts, where, inserted


def count_ngrams(ids: np.ndarray, vocab_size: int, max_order: int = DEFAULT_MAX_ORDER, memory: int = DEFAULT_MEMORY,
                 chunk: int = CHUNK, progress: Callable[[str], None] | None = None) -> NGramCounts:
    """Count the k-grams of ids (N,), k = 1..max_order, in one streaming pass of `chunk` characters
    at a time (see the module docstring). If the finished model would take more than `memory`
    bytes, the highest orders are dropped (said in notes and to `progress`); CharnnError if even
    order 1 does not fit."""
    N, V, K = len(ids), vocab_size, max_order
    if not (isinstance(K, int) and K >= 1):
        raise CharnnError(f"max order must be a positive integer, got {K!r}")
    if N < 1:
        raise CorpusError("nothing to count: the text is empty")
    dtype = count_dtype(N)
    keys = [np.zeros(1, np.int64)] + [np.zeros(0, np.int64) for _ in range(K)]
    counts = [np.array([N], dtype)] + [np.zeros(0, dtype) for _ in range(K)]
    notes = []
    for start in range(0, N, chunk):
        lo = max(0, start - K + 1)  # K-1 characters of history, whose k-grams the last block counted
        x = np.asarray(ids[lo : start + chunk]).astype(np.int64)  # (b,)
        new = start - lo  # the k-grams ending at x[new:] are this block's to count
        g = np.zeros(len(x), np.int64)  # (b,) index of the (k-1)-gram ending at each x[j]; k = 1: the empty one
        for k in range(1, K + 1):
            j0 = k - 1  # the first position a k-gram ends at
            if j0 >= len(x):
                break
            parent = 0 if k == 1 else g[j0 - 1 : -1]  # (b - j0,) the (k-1)-gram ending one character earlier
            key = parent * V + x[j0:]  # (b - j0,) the k-gram ending at each x[j], j >= j0
            fresh, inverse, n_fresh = np.unique(key, return_inverse=True, return_counts=True)  # (m,) (b - j0,) (m,)
            n_fresh -= np.bincount(inverse[: max(new - j0, 0)], minlength=len(fresh))  # the last block counted those
            keys[k], counts[k], where, inserted = _merge(keys[k], counts[k], fresh, n_fresh)
            if k < K and len(inserted):  # level k's indices moved: so do the prefixes in level k+1's keys
                moved = np.cumsum(np.bincount(inserted, minlength=len(keys[k]) - len(inserted) + 1))  # new keys at or before each old index
                keys[k + 1] += V * moved[keys[k + 1] // V]
            g = np.full(len(x), -1, np.int64)
            g[j0:] = where[inverse]
        done = min(start + chunk, N)
        size = lambda: model_bytes([len(k) for k in keys], dtype.itemsize)  # of the finished model
        if model_bytes([len(k) for k in keys[:2]], dtype.itemsize) > memory:
            raise CharnnError(f"the memory limit of {format_bytes(memory)} is too small even for the unigram counts "
                              f"({format_bytes(model_bytes([len(k) for k in keys[:2]], dtype.itemsize))})")
        while size() > memory:  # order 1 fits, so this ends at K >= 1
            note = (f"order {K} dropped: orders 1-{K} would take {format_bytes(size())} (after {done:,} of {N:,} "
                    f"characters), over the memory limit of {format_bytes(memory)}")
            notes.append(note)
            if progress:
                progress(note)
            del keys[K], counts[K]
            K -= 1
        if progress and N > chunk:
            progress(f"counted {done:,} of {N:,} characters: {sum(len(k) for k in keys[1:]):,} n-grams of orders 1-{K}, "
                     f"{format_bytes(size())}")
    return NGramCounts(keys, counts, V, N, np.asarray(ids[:K]).astype(np.int64), notes)


def format_bytes(n: int) -> str:
    """1536 -> '1.5 KiB', in the largest binary unit that keeps the number at 1 or more."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n} bytes"


class NGramModel:
    """Interpolated Kneser-Ney character models of orders 1..max_order, from counts.

    Level k (0..K) holds, per distinct k-gram: keys and counts (from the counting pass), the
    continuation count (k < K), and as a context of level k+1, the denominators and gammas of the
    raw (k < K) and continuation (k < K-1) interpolations. Discounts are per level: top_D[k] for
    raw counts (level k as the top of the order-k model), low_D[k] for continuation counts.
    """

    def __init__(self, counts: NGramCounts, vocab: Vocab, smoothing: str = DEFAULT_SMOOTHING):
        if smoothing not in SMOOTHINGS:
            raise CharnnError(f"unknown smoothing {smoothing!r}; choose from {', '.join(SMOOTHINGS)}")
        if len(vocab) != counts.vocab_size:
            raise CharnnError(f"the vocabulary has {len(vocab)} characters, the counts {counts.vocab_size}")
        self.vocab, self.smoothing, self.notes = vocab, smoothing, list(counts.notes)
        self.keys, self.counts = counts.keys, counts.counts
        V, K = counts.vocab_size, len(counts.keys) - 1
        self.V, self.max_order, self.n_train = V, K, counts.n
        dtype = counts.counts[0].dtype

        # continuation counts: N(.hw) = the (k+1)-grams whose suffix is hw, + 1 for the one at the start
        first = [0]  # [k] index in level k of the text's first k characters, -1 if it is shorter
        for k in range(1, K + 1):
            first.append(_find(self.keys[k], V, np.array(first[-1:]), counts.head[k - 1 : k])[0] if k <= len(counts.head) else -1)
        self.cont = [np.zeros(0, dtype) for _ in range(K + 1)]  # [k] (n_k,) for 0 < k < K
        suffix = np.zeros(len(self.keys[1]), np.int64)  # (n_k,) index in level k-1 of each k-gram's last k-1 characters
        for k in range(2, K + 1):  # the suffix of x h' w is h' w: w after the suffix of its prefix x h'
            suffix = _find(self.keys[k - 1], V, suffix[self.keys[k] // V], self.keys[k] % V)  # (n_k,)
            self.cont[k - 1] = np.bincount(suffix, minlength=len(self.keys[k - 1])).astype(dtype)
            if first[k - 1] >= 0:
                self.cont[k - 1][first[k - 1]] += 1

        top = [discounts(self.counts[k], smoothing) for k in range(1, K + 1)]
        low = [discounts(self.cont[k], smoothing) for k in range(1, K)]
        self.top_D = [np.zeros(3)] + [D for D, _ in top]  # [k] (3,): D1, D2, D3+ of level k's raw counts
        self.low_D = [np.zeros(3)] + [D for D, _ in low]  # [k] (3,): of its continuation counts
        self.fallback = {"top": [f for _, f in top], "low": [f for _, f in low]}  # [k-1]: FALLBACK used

        # per context h (level k), the denominator sum_w c(hw) and gamma(h) = sum_w D(c(hw)) / it
        self.top_total, self.top_gamma = self._denominators(self.counts, self.top_D, K)
        self.low_total, self.low_gamma = self._denominators(self.cont, self.low_D, K - 1)

    def _denominators(self, counts: list, D: list, top: int):
        """For levels k < top, as contexts of level k+1 (counts[k+1], discounts D[k+1]): the
        denominators (n_k,) and gammas (n_k,) float64, 0 for a context never seen with a follower."""
        totals, gammas = [], []
        for k in range(top):
            parent = self.keys[k + 1] // self.V  # (n_k+1,) sorted
            c = counts[k + 1]
            total = np.bincount(parent, weights=c, minlength=len(self.keys[k]))  # (n_k,)
            d = D[k + 1][np.clip(c, 1, 3) - 1]  # (n_k+1,) the discount of each child
            totals.append(total.astype(c.dtype))
            gammas.append(np.bincount(parent, weights=d, minlength=len(self.keys[k])) / np.maximum(total, 1))
        return totals, gammas

    @classmethod
    def from_text(cls, text: str, max_order: int = DEFAULT_MAX_ORDER, smoothing: str = DEFAULT_SMOOTHING,
                  vocab: Vocab | None = None) -> "NGramModel":
        """Count all of `text` (vocabulary: its characters, unless given)."""
        vocab = vocab or Vocab.from_text(text)
        return cls(count_ngrams(vocab.encode(text), len(vocab), max_order), vocab, smoothing)

    # ---------------------------------------------------------------------------------------
    # Scoring

    def _history(self, x: np.ndarray) -> np.ndarray:
        """(K, b) int64: [k, j] the index in level k of the k characters ending at x[j], -1 if
        unseen in training (or j < k-1); row 0 is the empty context, 0."""
        H = np.full((self.max_order, len(x)), -1, np.int64)
        H[0] = 0
        if self.max_order > 1 and len(x):
            H[1] = _find(self.keys[1], self.V, np.zeros(len(x), np.int64), x)
        for k in range(2, self.max_order):  # the k characters ending at x[j]: x[j] after the k-1 ending at x[j-1]
            H[k, 1:] = _find(self.keys[k], self.V, H[k - 1, :-1], x[1:])
        return H

    def _interpolate(self, k: int, low: bool, h: np.ndarray, hw: np.ndarray, p_lower: np.ndarray) -> np.ndarray:
        """p(w | h) at level k (Q,): (c(hw) - D(c(hw)))+ / c(h.) + gamma(h) p_lower, or p_lower
        where h is unseen (h = -1, or no follower in training); continuation counts if low."""
        c, D = (self.cont[k], self.low_D[k]) if low else (self.counts[k], self.top_D[k])
        total, gamma = (self.low_total[k - 1], self.low_gamma[k - 1]) if low else (self.top_total[k - 1], self.top_gamma[k - 1])
        t = np.zeros(len(h))  # (Q,) the denominator
        t[h >= 0] = total[h[h >= 0]]
        n = np.zeros(len(h))  # (Q,) the count of h w
        n[hw >= 0] = c[hw[hw >= 0]]
        seen = t > 0
        alpha = np.where(n > 0, n - D[np.clip(n, 1, 3).astype(np.int64) - 1], 0.0) / np.where(seen, t, 1.0)  # D <= count
        g = np.ones(len(h))  # (Q,) an unseen context passes all its mass down
        g[seen] = gamma[h[seen]]
        return alpha + g * p_lower

    def _probs(self, ctx: np.ndarray, w: np.ndarray) -> np.ndarray:
        """p_n(w | context) for n = 1..K: (K, Q). ctx (K, Q): [k] the index of the context's last k
        characters in level k, -1 if unseen (row 0, the empty context, is 0); w (Q,) the characters."""
        K, Q = self.max_order, len(w)
        out = np.empty((K, Q))
        p_low = np.full(Q, 1.0 / self.V)  # level 0: uniform over the vocabulary
        for k in range(1, K + 1):
            h = ctx[k - 1]  # (Q,)
            hw = _find(self.keys[k], self.V, h, w)  # (Q,)
            out[k - 1] = self._interpolate(k, False, h, hw, p_low)  # the order-k model: raw counts on top
            if k < K:
                p_low = self._interpolate(k, True, h, hw, p_low)
        return out

    def surprisal(self, ids: np.ndarray | str, chunk: int = EVAL_CHUNK) -> np.ndarray:
        """-ln p_n(x_t | the n-1 characters before it) in nats for every order n and every
        character after the first of ids (N,) or a text: (K, N-1). Near the start the longer
        contexts are missing and count as unseen. Scored `chunk` targets at a time; the result
        does not depend on it."""
        ids = self.vocab.encode(ids, "text to score") if isinstance(ids, str) else np.asarray(ids)
        K = self.max_order
        out = np.empty((K, max(len(ids) - 1, 0)))
        for a in range(1, len(ids), chunk):  # targets a .. a+chunk-1
            lo = max(0, a - K + 1)  # the K-1 characters of history of target a
            x = ids[lo : a + chunk].astype(np.int64)  # (b,)
            ctx = self._history(x)[:, :-1]  # (K, b-1) the contexts of the targets x[1:]
            p = self._probs(ctx, x[1:])  # (K, b-1)
            out[:, a - 1 : lo + len(x) - 1] = -np.log(p[:, a - 1 - lo :])  # the targets before a were the last block's
        return out

    def loss(self, ids: np.ndarray | str) -> np.ndarray:
        """Mean nats per character of ids or a text (every character after the first), per order: (K,)."""
        return self.surprisal(ids).mean(axis=1)

    def distribution(self, context: str, order: int | None = None) -> np.ndarray:
        """p(w | context) for every character w of the vocabulary (V,) under the order-`order`
        model (default: the highest); only the last order-1 characters of context matter."""
        order = self._order(order)
        x = self.vocab.encode(context[max(0, len(context) - order + 1) :] if order > 1 else "", "context")
        ctx = np.full((self.max_order, self.V), -1, np.int64)  # (K, V) the same context for every w
        ctx[0] = 0
        if len(x):
            ctx[:] = self._history(x.astype(np.int64))[:, -1:]
        return self._probs(ctx, np.arange(self.V))[order - 1]

    def prob(self, context: str, char: str, order: int | None = None) -> float:
        """p(char | context) under the order-`order` model (default: the highest)."""
        return float(self.distribution(context, order)[self.vocab.encode(char, "character")[0]])

    def _order(self, order: int | None) -> int:
        if order is None:
            return self.max_order
        if not (isinstance(order, int) and 1 <= order <= self.max_order):
            raise CharnnError(f"order must be between 1 and {self.max_order}, got {order!r}")
        return order

    # ---------------------------------------------------------------------------------------
    # What it holds

    def level_bytes(self, k: int) -> int:
        """Bytes of level k's arrays (its k-grams and their statistics as contexts)."""
        arrays = [self.keys[k], self.counts[k], self.cont[k]]
        arrays += [a[k] for a in (self.top_total, self.top_gamma, self.low_total, self.low_gamma) if k < len(a)]
        return sum(a.nbytes for a in arrays)

    def contexts(self, k: int) -> int:
        """Distinct (k-1)-character contexts seen with a follower: the contexts of order k."""
        return int(np.count_nonzero(self.top_total[k - 1]))


@dataclass
class OrderResult:
    """One order of a baseline: its model's size and its validation loss."""
    order: int
    contexts: int  # distinct (order-1)-character contexts seen in training with a follower
    ngrams: int  # distinct n-grams of this order in training
    bytes: int  # memory of this order's level of the model
    discounts: list  # D1, D2, D3+ of its raw counts (the top of its model)
    discount_fallback: bool  # the counts of counts gave no valid discount: FALLBACK was used
    nats: float  # mean validation loss per character
    bits: float


@dataclass
class BaselineResult:
    """charnn baseline: the n-gram models of orders 1..max_order scored on the validation split."""
    corpus: str | None  # the file, or None for a text given directly
    smoothing: str
    val_frac: float
    vocab_size: int
    train_chars: int
    val_chars: int  # characters scored: all of the validation split but its first
    max_order: int  # the highest order counted (lower than asked when the memory limit dropped some)
    memory_limit: int
    bytes: int  # memory of the whole model (all orders)
    count_seconds: float
    eval_seconds: float
    orders: list = field(default_factory=list)  # OrderResult, order 1 first
    notes: list = field(default_factory=list)
    model: NGramModel | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["model"]
        return d

    def best(self) -> OrderResult:
        return min(self.orders, key=lambda r: r.nats)


def ngram_baseline(corpus: str | os.PathLike | None = None, *, text: str | None = None,
                   max_order: int = DEFAULT_MAX_ORDER, val_frac: float = TrainConfig.val_frac,
                   smoothing: str = DEFAULT_SMOOTHING, memory: int = DEFAULT_MEMORY,
                   progress: Callable[[str], None] | None = None) -> BaselineResult:
    """Count n-grams of orders 1..max_order on the training split of `corpus` (a UTF-8 file;
    default: the trainer's default corpus) or of `text`, and score each order on the validation
    split: the split, vocabulary and scored characters are the trainer's (split_train_val, the
    vocabulary of the whole text, every validation character after the first). Progress lines
    go to `progress`.

        r = charnn.ngram_baseline("shakespeare.txt", max_order=5)
        r.orders[-1].nats, r.model.prob("ROME", "O")
    """
    if smoothing not in SMOOTHINGS:
        raise CharnnError(f"unknown smoothing {smoothing!r}; choose from {', '.join(SMOOTHINGS)}")
    if not (isinstance(memory, int) and memory > 0):
        raise CharnnError(f"memory limit must be a positive number of bytes, got {memory!r}")
    if text is not None:
        if corpus is not None:
            raise CharnnError("give a corpus file or a text, not both")
        if not text:
            raise CorpusError("the text is empty")
        vocab = Vocab.from_text(text)
        ids = vocab.encode(text)
    else:
        corpus = os.fspath(corpus) if corpus is not None else default_corpus()
        encoded = encode_corpus(corpus)  # the trainer's ids: memory-mapped, vocabulary of the whole text
        vocab, ids = encoded.vocab, encoded.ids
    train_ids, val_ids = split_train_val(ids, val_frac)
    if len(val_ids) < 2 or len(train_ids) < 1:
        raise CorpusError(f"corpus too short: the validation split ({val_frac:g} of {len(ids)} characters) has fewer than 2")

    t0 = time.perf_counter()
    counts = count_ngrams(train_ids, len(vocab), max_order, memory, progress=progress)
    model = NGramModel(counts, vocab, smoothing)
    t1 = time.perf_counter()
    if progress and len(train_ids) > CHUNK:
        progress(f"scoring {len(val_ids) - 1:,} validation characters")
    nats = model.loss(val_ids)  # (K,)
    t2 = time.perf_counter()

    orders = [OrderResult(k, model.contexts(k), len(model.keys[k]), model.level_bytes(k), [float(d) for d in model.top_D[k]],
                          model.fallback["top"][k - 1], float(nats[k - 1]), float(nats[k - 1] / math.log(2)))
              for k in range(1, model.max_order + 1)]
    total = sum(model.level_bytes(k) for k in range(model.max_order + 1))
    return BaselineResult(None if corpus is None else str(corpus), smoothing, val_frac, len(vocab), len(train_ids),
                          len(val_ids) - 1, model.max_order, memory, total, t1 - t0, t2 - t1, orders, model.notes, model)
