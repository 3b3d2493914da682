"""Sampling text from a model, one character at a time, with the step function training uses.

The controls (each an option of `charnn sample`):
    temperature, top_k, top_p  the distribution each character is drawn from, in this order: the
                  logits divided by the temperature; then only the top_k most likely characters
                  kept; then only the nucleus, the smallest set of the most likely whose
                  probabilities add up to at least top_p (equal probabilities: the lower id first)
    argmax        the most likely character instead of a draw
    seed          stream i draws from np.random.default_rng(seed + i): stream i of a batch is the
                  single run with seed + i, and a single run is today's run with that seed
    stop          generation ends after the first occurrence of any stop string, which is kept; the
                  occurrence must end in the generated text but may begin in the prime
    length 0      no length: until a stop string (from generate: for as long as it is read)
    num_samples   N streams stepped together as one batch (B = N)
    beam          beam search: the K most likely continuations found (deterministic)

Two paths give the characters. The model's backend may have a compiled sampler
(model.ops.sampler) for one stream or a batch; it yields the same characters as the reference loop,
`reference_steps` (model.step, then pick for each stream), which is the specification. What needs
the model's probabilities at every step (generate_probs, beam_search) runs the reference loop, on
the numpy backend.

Shapes: V vocabulary, S streams (the batch), K beam width, M prime characters.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np

from .errors import CharnnError
from .nn.layers import log_softmax

# Primes up to this long are read one model.step at a time, as they always were (so a seed keeps
# its text); longer ones with the model's sequence forward (model.warm_up), many times faster.
PRIME_STEP_MAX = 1000
TOP = 5  # alternatives reported with each character (generate_probs)


class Draw(NamedTuple):
    """How each character is chosen from the logits (see pick)."""

    temperature: float = 1.0  # below 1: safer, more repetitive; above 1: more surprising
    top_k: int | None = None  # keep only the k most likely characters (None: all)
    top_p: float | None = None  # then keep only the nucleus of probability top_p (None: all)
    argmax: bool = False  # the most likely character: no draw at all


class CharProb(NamedTuple):
    """One generated character with the model's own probabilities at its step: the softmax of the
    logits, before temperature, top-k and top-p."""

    sample: int  # the stream (or beam, best first) it belongs to
    char: str
    p: float  # the model's probability of char
    logprob: float  # ln of the model's probability of the sample up to and including char
    top: tuple  # the TOP most likely (char, p), most likely first (equal p: the lower id first)


class Beam(NamedTuple):
    """One result of beam_search."""

    text: str  # the continuation (without the prime)
    logprob: float  # ln of its probability under the model, given the prime
    chars: tuple  # a CharProb per character


# ---------------------------------------------------------------- one character
def weights(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
            top_p: float | None = None) -> np.ndarray:
    """The unnormalised float64 weights (V,) that pick draws from, given logits (V,): softmax of
    logits / temperature, restricted to the top_k most likely (ties with the k-th kept), then to the
    nucleus of top_p."""
    z = logits.astype(np.float64) / temperature  # (V,)
    if top_k is not None and top_k < z.size:
        kth = np.partition(z, -top_k)[-top_k]
        z = np.where(z >= kth, z, -np.inf)
    p = np.exp(z - z.max())  # (V,) subtracting the max keeps exp finite at low temperature
    if top_p is not None and top_p < 1.0:
        p = nucleus(p, top_p)
    return p


def nucleus(p: np.ndarray, top_p: float) -> np.ndarray:
    """Weights p (V,) >= 0 -> p outside the nucleus set to 0: the nucleus is the smallest set of the
    heaviest weights (equal weights: the lower id first) whose sum reaches top_p times the sum of
    all (the sum taken in id order; if rounding keeps it short, all are kept)."""
    order = np.argsort(-p, kind="stable")  # heaviest first; stable: equal weights in id order
    mass = np.cumsum(p[order])  # (V,) sequential sums, as the compiled sampler adds them
    n = min(int(np.searchsorted(mass, top_p * np.cumsum(p)[-1], side="left")) + 1, p.size)
    kept = np.zeros_like(p)
    kept[order[:n]] = p[order[:n]]
    return kept


def pick(logits: np.ndarray, rng: np.random.Generator, temperature: float = 1.0,
         top_k: int | None = None, argmax: bool = False, top_p: float | None = None) -> int:
    """Choose the next id from logits (V,): greedy, or drawn from weights(logits, temperature,
    top_k, top_p) with one uniform from rng."""
    if argmax:
        return int(np.argmax(logits))
    p = weights(logits, temperature, top_k, top_p)  # (V,)
    cdf = np.cumsum(p)
    u = rng.random() * cdf[-1]  # one uniform draw per character keeps the stream reproducible
    return min(int(np.searchsorted(cdf, u, side="right")), p.size - 1)


# ---------------------------------------------------------------- options
def check_sampling_options(length: int, temperature: float, top_k: int | None, top_p: float | None = None) -> None:
    if not isinstance(length, (int, np.integer)) or length < 0:
        raise CharnnError(f"length must be a non-negative integer (0: until a stop string), got {length!r}")
    if not np.isfinite(temperature) or temperature <= 0:
        raise CharnnError(f"temperature must be > 0, got {temperature!r}")
    if top_k is not None and top_k < 1:
        raise CharnnError(f"top-k must be at least 1, got {top_k!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise CharnnError(f"top-p must be in (0, 1], got {top_p!r}")


def stop_strings(stop) -> tuple[str, ...]:
    """stop: None, a string, or strings -> a tuple of non-empty strings."""
    stops = () if stop is None else (stop,) if isinstance(stop, str) else tuple(stop)
    if any(not isinstance(s, str) or not s for s in stops):
        raise CharnnError("a stop string must be non-empty text")
    return stops


def stream_seeds(seed: int | None, n: int) -> list[int]:
    """The seeds of n streams: seed, seed + 1, ..., seed + n - 1 (no seed: a fresh base from the
    operating system's entropy)."""
    if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
        raise CharnnError(f"seed must be a non-negative integer, got {seed!r}")
    base = np.random.SeedSequence().entropy if seed is None else int(seed)
    return [base + i for i in range(n)]


class _Stop:
    """Watches one stream for the first occurrence of any stop string that ends in the generated
    text (it may begin in the prime): cut(text) keeps text up to and including it."""

    def __init__(self, stops: tuple[str, ...], prime: str):
        self.stops = stops
        self.keep = max(map(len, stops), default=1) - 1  # characters of context an occurrence can need
        self.tail = prime[len(prime) - self.keep:] if self.keep else ""

    def cut(self, text: str) -> tuple[str, bool]:
        """The new text, cut after the first stop string; whether one ended in it."""
        if not self.stops:
            return text, False
        s, old = self.tail + text, len(self.tail)
        ends = [i + len(x) for x in self.stops if (i := s.find(x, max(0, old - len(x) + 1))) >= 0]
        if ends:
            return s[old:min(ends)], True
        self.tail = s[len(s) - self.keep:] if self.keep else ""
        return text, False


def _start(model, prime: str, rngs) -> tuple[np.ndarray, np.ndarray]:
    """The shared warm-up ids (M,) and each stream's first input id (S,): the prime's last character,
    or with no prime a newline when the vocabulary has one (the start of a line is a natural place
    to begin), else a character drawn by the stream's generator."""
    vocab = model.vocab
    if prime:
        ids = vocab.encode(prime, "prime text")
        return ids[:-1], np.full(len(rngs), ids[-1], dtype=np.int64)
    if "\n" in vocab.stoi:
        first = [vocab.stoi["\n"]] * len(rngs)
    else:
        first = [int(rng.integers(len(vocab))) for rng in rngs]
    return np.zeros(0, dtype=np.int32), np.array(first, dtype=np.int64)


# ---------------------------------------------------------------- the reference loop
def warm_state(model, ids: np.ndarray, progress=None):
    """The state (B = 1) after reading ids (M,) from the initial state: one model.step per character
    for up to PRIME_STEP_MAX of them, else model.warm_up (the sequence forward; the same state to
    float32 rounding, tests/test_sampling.py), telling progress(done, M)."""
    if len(ids) > PRIME_STEP_MAX:
        return model.warm_up(ids, progress=progress)
    state = model.initial_state(1)
    for i in ids:
        _, state = model.step(np.array([i]), state)
    return state


def reference_steps(model, warm_ids, first_ids, length: int | None, draw: Draw, rngs, alive,
                    progress=None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The specification of sampling: warm the state up on warm_ids (shared by the streams), then per
    step one model.step of the live streams as a batch and a pick for each from its own generator,
    each sampled id fed back in; stream s starts from first_ids[s] (S,). Yields per step
    (rows (A,) the live streams, their ids (A,), their logits (A, V)) for up to `length` steps
    (None: without end). alive (S,) bool is read before each step: a stream set False there is
    stepped no more and draws no more. The iterator ends when no stream is alive."""
    state = warm_state(model, np.asarray(warm_ids), progress)
    S = len(first_ids)
    state = [tuple(np.repeat(a, S, axis=0) for a in layer) for layer in state]  # (S, ...) each
    current, rows = np.asarray(first_ids), np.arange(S)
    t = 0
    while length is None or t < length:
        live = np.flatnonzero(alive)
        if live.size == 0:
            return
        if live.size < rows.size:  # drop the streams that stopped from the batch
            keep = np.searchsorted(rows, live)
            state = [tuple(a[keep] for a in layer) for layer in state]
            current, rows = current[keep], live
        logits, state = model.step(current, state)  # (A, V)
        current = np.array([pick(logits[i], rngs[s], draw.temperature, draw.top_k, draw.argmax, draw.top_p)
                            for i, s in enumerate(rows)])  # (A,)
        yield rows, current, logits
        t += 1


def reference_blocks(model, warm_ids, first_ids, length, draw, rngs, alive, progress=None) -> Iterator[np.ndarray]:
    """reference_steps as the compiled samplers yield: blocks (S, 1) of ids, -1 for a stopped stream."""
    for rows, ids, _ in reference_steps(model, warm_ids, first_ids, length, draw, rngs, alive, progress):
        block = np.full((len(first_ids), 1), -1, dtype=np.int64)
        block[rows, 0] = ids
        yield block


def stream_blocks(model, warm_ids, first_ids, length, draw, rngs, alive, progress=None, note=None):
    """The sampled ids of S = len(rngs) streams in blocks (S, n): from the model's compiled sampler
    if it has one for this work, else from the reference loop (numpy). note(message) is told when
    the compiled sampler will first compile."""
    S = len(rngs)
    work = None if length is None else len(warm_ids) + S * length  # characters to step through
    compiled = model.ops.sampler(model, work, S)
    if compiled is None:
        return reference_blocks(model.with_backend("numpy"), warm_ids, first_ids, length, draw, rngs, alive, progress)
    message = model.ops.notice("sample" if S == 1 else "sample-batch", model, work)
    if message and note:
        note(message)
    return compiled(warm_ids, first_ids, length, draw, rngs, alive, progress)


def _pieces(blocks, alive, chars: list[str], stops: list[_Stop]) -> Iterator[list[str]]:
    """Blocks (S, n) of ids -> per block the S streams' new texts, each cut after its first stop
    string (the stream is then no longer alive); a stopped stream's text is ""."""
    for block in blocks:
        pieces = []
        for s, row in enumerate(block.tolist()):
            if row[0] < 0:
                pieces.append("")
                continue
            text, stopped = stops[s].cut("".join(chars[i] for i in row))
            if stopped:
                alive[s] = False
            pieces.append(text)
        yield pieces


# ---------------------------------------------------------------- the API
class _Streams(NamedTuple):
    """The streams of one sampling call, set up by _prepare."""

    draw: Draw
    rngs: list  # (S,) np.random.Generator, stream s's: default_rng(seed + s)
    warm_ids: np.ndarray  # (M,) the prime but its last character, read once for all streams
    first_ids: np.ndarray  # (S,) each stream's first input
    stoppers: list  # (S,) _Stop
    alive: np.ndarray  # (S,) bool: False once a stream has met a stop string
    length: int | None  # characters per stream; None: without end


def _prepare(model, num_samples, length, temperature, prime, top_k, argmax, seed, top_p, stop) -> _Streams:
    """Validate the options and set up the streams."""
    check_sampling_options(length, temperature, top_k, top_p)
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise CharnnError(f"the number of samples must be at least 1, got {num_samples!r}")
    stops = stop_strings(stop)
    rngs = [np.random.default_rng(s) for s in stream_seeds(seed, num_samples)]
    warm_ids, first_ids = _start(model, prime, rngs)
    return _Streams(Draw(float(temperature), top_k, top_p, bool(argmax)), rngs, warm_ids, first_ids,
                    [_Stop(stops, prime) for _ in rngs], np.ones(num_samples, dtype=bool), length or None)


def generate_many(model, num_samples: int, length: int, temperature: float = 1.0, prime: str = "",
                  top_k: int | None = None, argmax: bool = False, seed: int | None = None,
                  top_p: float | None = None, stop=None, progress=None, note=None) -> Iterator[list[str]]:
    """num_samples streams continuing `prime`, stepped together as one batch: yields, block by block,
    a list of each stream's new text ("" once it has stopped). Stream i is the single run
    generate(..., seed=seed + i): bit for bit with the compiled sampler; on the numpy reference the
    batch's products are one BLAS call, whose rows can round in the last float32 bit unlike a single
    row's, so a character could differ where a draw lands that close to a boundary (as between the
    compiled and the reference loop). length 0: until every stream has met a stop string (without stop
    strings, for as long as it is read). progress(done, M) hears how the warm-up on a long prime
    goes; note(message) is told before the compiled sampler first compiles. Options are validated
    before this returns."""
    st = _prepare(model, num_samples, length, temperature, prime, top_k, argmax, seed, top_p, stop)
    blocks = stream_blocks(model, st.warm_ids, st.first_ids, st.length, st.draw, st.rngs, st.alive, progress, note)
    return _pieces(blocks, st.alive, model.vocab.chars, st.stoppers)


def generate(model, length: int, temperature: float = 1.0, prime: str = "", top_k: int | None = None,
             argmax: bool = False, seed: int | None = None, top_p: float | None = None, stop=None,
             progress=None, note=None) -> Iterator[str]:
    """Yield the characters continuing `prime`, one at a time: `length` of them, fewer if a stop
    string ends it first (length 0: until a stop string, or for as long as it is read).

    With no prime the model starts from a newline when its vocabulary has one, otherwise from a
    character chosen by the seeded generator. Validation happens before the first character is
    yielded. See generate_many for progress and note."""
    pieces = generate_many(model, 1, length, temperature, prime, top_k, argmax, seed, top_p, stop, progress, note)
    return (ch for piece in pieces for ch in piece[0])


def generate_probs(model, length: int, temperature: float = 1.0, prime: str = "", top_k: int | None = None,
                   argmax: bool = False, seed: int | None = None, top_p: float | None = None, stop=None,
                   num_samples: int = 1, progress=None) -> Iterator[CharProb]:
    """generate_many's characters with the model's probabilities: a CharProb per character, the
    streams' characters of each step in stream order. Always the reference loop (numpy), which
    has the logits of every step; its characters are those of the compiled sampler."""
    st = _prepare(model, num_samples, length, temperature, prime, top_k, argmax, seed, top_p, stop)
    steps = reference_steps(model.with_backend("numpy"), st.warm_ids, st.first_ids, st.length, st.draw, st.rngs,
                            st.alive, progress)
    return _probs(steps, st.alive, model.vocab.chars, st.stoppers)


def _top(logp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """logp (..., V) -> the ids (..., TOP) of the TOP most likely, most likely first (equal ones in
    id order), and their log-probabilities (..., TOP)."""
    top = np.argsort(-logp, axis=-1, kind="stable")[..., :TOP]
    return top, np.take_along_axis(logp, top, axis=-1)


def _char_prob(chars, sample: int, v: int, logp_v: float, top, top_logp, logprob: float) -> CharProb:
    """The CharProb of id v, of log-probability logp_v, at a step whose TOP most likely are top."""
    return CharProb(sample, chars[v], float(np.exp(logp_v)), float(logprob),
                    tuple((chars[j], float(np.exp(lp))) for j, lp in zip(top.tolist(), top_logp.tolist())))


def _probs(steps, alive, chars, stoppers) -> Iterator[CharProb]:
    logprob = np.zeros(len(alive))  # (S,) each stream's ln p so far
    for rows, ids, logits in steps:
        logp = log_softmax(logits.astype(np.float64))  # (A, V) the model's own distribution
        top, top_logp = _top(logp)  # (A, TOP)
        for i, s in enumerate(rows):
            v = int(ids[i])
            logprob[s] += logp[i, v]
            yield _char_prob(chars, int(s), v, logp[i, v], top[i], top_logp[i], logprob[s])
            if stoppers[s].cut(chars[v])[1]:
                alive[s] = False


def beam_search(model, beam: int, length: int, prime: str = "", progress=None) -> list[Beam]:
    """The `beam` most likely continuations of `length` characters found by beam search, best first.

    Each step extends every kept continuation by every character and keeps the `beam` of highest
    log-probability under the model (its own softmax: no temperature, top-k or top-p); equal
    scores keep the earlier continuation, then the lower id. The kept continuations run as one
    batch of model.step (numpy). Deterministic; exact (the `beam` most likely of all V**length)
    when beam >= V**(length - 1). With no prime it starts from a newline."""
    if not isinstance(beam, (int, np.integer)) or beam < 1:
        raise CharnnError(f"the beam width must be at least 1, got {beam!r}")
    if not isinstance(length, (int, np.integer)) or length < 1:
        raise CharnnError(f"beam search needs a length of at least 1 character, got {length!r}")
    if not prime and "\n" not in model.vocab.stoi:
        raise CharnnError("beam search starts from a prime: this vocabulary has no newline to start from")
    model = model.with_backend("numpy")
    chars, V = model.vocab.chars, len(model.vocab)
    warm_ids, first_ids = _start(model, prime, [None])
    state = warm_state(model, warm_ids, progress)
    current, scores = first_ids, np.zeros(1)  # (B,) the kept continuations' last ids, their ln p
    steps = []  # per step, per kept continuation: parent row, id, its logp, its parent's TOP
    for _ in range(length):
        logits, state = model.step(current, state)  # (B, V)
        logp = log_softmax(logits.astype(np.float64))  # (B, V)
        candidates = (scores[:, None] + logp).ravel()  # (B*V,) every continuation by one character
        best = np.argsort(-candidates, kind="stable")[:beam]  # (K,) ties: the earlier row, the lower id
        parent, current = np.divmod(best, V)  # (K,) each
        top, top_logp = _top(logp[parent])  # (K, TOP)
        steps.append((parent, current, logp[parent, current], top, top_logp))
        scores = candidates[best]
        state = [tuple(a[parent] for a in layer) for layer in state]
    beams = []
    for k in range(len(scores)):
        path, row = [], k
        for parent, ids, logp, top, top_logp in reversed(steps):  # follow continuation k back to the prime
            path.append((int(ids[row]), logp[row], top[row], top_logp[row]))
            row = parent[row]
        logprob, probs = 0.0, []
        for v, logp_v, top, top_logp in reversed(path):
            logprob += logp_v  # the same additions, in the same order, as the scores
            probs.append(_char_prob(chars, k, v, logp_v, top, top_logp, logprob))
        beams.append(Beam("".join(p.char for p in probs), float(scores[k]), tuple(probs)))
    return beams
