"""Sampling compiled with numba: one kernel call runs a whole block of characters (every layer's
step, the head, temperature, top-k, top-p, softmax and the draw), so no Python runs per character;
for one stream (sample_ids) or a batch of S streams stepped together (sample_batch_ids).

The numpy path, `charnn.sampling.reference_steps` (`model.step` then `pick` per character), is the
specification. For the same arguments and generator state `sample_numba` yields the same characters:
the draws are the same float64 uniforms (one per character unless argmax, taken in blocks with
`rng.random(n)`, which gives the same stream as n calls of `rng.random()`), and the pick replicates
`pick`'s arithmetic (float64 z = logits / temperature, top-k by `z >= kth`, exp(z - max), a
sequential float64 cumulative sum, top-p by adding the weights heaviest first (equal weights in id
order) until they reach top_p times that sum, `searchsorted(cdf, u * cdf[-1], side="right")`
clamped to V-1).
Only the logits may differ, by float32 rounding (another summation order than BLAS), ~1e-7
relative; a draw flips only if it lands that close to a cumulative boundary. (The rounding
differences in the state stay at that level for trained models and the initialisation; weights
with expanding dynamics can amplify them over thousands of steps, as they would a change of BLAS.)

A batch of S streams (`sample_batch_ids`) gives each stream the characters of a batch-1 run with
that stream's generator, bit for bit: the batch kernels sum every row as the batch-1 kernels do and
use the unit layout of the same padded width Hp. The streams share the prime: its warm-up runs once.

Shapes: V vocabulary, E embedding width, H hidden width, G gate width (H rnn, 4H lstm, 3H gru),
L layers, K context length (MLP), N characters in a block, S streams.

The input projection of layer 0 depends only on the input id, so it is tabulated once per sampling
call with one product and layer 0 needs no input matvec:
    recurrent   x0[v] = embed.W[v] @ layer0.Wx + layer0.b          (V, G); one-hot: layer0.Wx + b
    MLP         x0[j, v] = embed.W[v] @ layer0.W[j*E:(j+1)*E]      (K, V+1, H), so that
                emb(window) @ layer0.W = sum_j x0[j, window[j]]    (concatenation = sum of blocks)

The kernels live with every other @njit function in kernels.py (section "batch-1 sampling");
this module lays a model's weights out for them, chooses the thread count and streams the ids.
Weights and state are float32 (float64 models are cast on the way in). The kernels can run on
several threads: `recurrent_sample_kernel` and `recurrent_batch_sample_kernel` split a layer's
hidden units over them (see RecurrentNet, prepare and sample_ids for when it pays), and the batch
kernels can run groups of streams on threads of their own where there are more threads than unit
blocks (batch_thread_counts, Batch.layout, sample_batch_ids).
"""
from __future__ import annotations

import math
import weakref
from time import perf_counter
from typing import Iterator, NamedTuple

import numba
import numpy as np

from .kernels import (ACTIVATION_CODES, CELL_CODES, PANEL, batch_matvec, mlp_batch_sample_kernel, mlp_sample_kernel,
                      recurrent_batch_sample_kernel, recurrent_sample_kernel)
from .policy import TABLE
from .threads import Chooser, Looks, forced_count, halvings, parallel_threads

FIRST_BLOCK = 8  # characters in the first kernel call, so the first output appears at once
BLOCK = 64  # characters per kernel call after that
WARM_BLOCK = 1 << 14  # prime characters per kernel call in the warm-up, between progress reports
LOOKS = Looks()  # the CPUs other tasks leave, for the thread counts of the sampling calls of the next half second


# ---------------------------------------------------------------- weights as the kernels see them
class RecurrentNet(NamedTuple):
    """A recurrent model laid out for `recurrent_sample_kernel` (all float32, C-contiguous).

    The hidden units are split into NB blocks of w units, block b holding units [b*w, (b+1)*w) (H
    is padded with zero units to Hp = NB*w when NB > 1). A block's columns are its units' columns of
    every gate, gate-major (i, f, o, g blocks of w for the lstm): GB = gates * w. So one thread's
    share of a layer is one (Hp, GB) matrix, stored as its vector panels (P, Hp, PANEL), P =
    ceil(GB / PANEL), each streamed front to back (kernels.matvec). Padded units have zero rows in
    every matrix they feed, so they add exact zeros, and two layouts of the same Hp compute every
    logit with the same float32 operations in the same order. One layout serves every thread
    count: `net._replace(threads=n)` shares its arrays."""

    cell: int  # RNN, LSTM or GRU
    act: int  # an activation code (the rnn's nonlinearity; unused by lstm / gru)
    x0: np.ndarray  # (NB, V, GB) layer 0's input projection of each id, bias included
    Wx: np.ndarray  # (L-1, NB, P, Hp, PANEL) input weights of layers 1..L-1, by block, in vector panels
    b: np.ndarray  # (L-1, NB, GB) biases of layers 1..L-1
    Wh: np.ndarray  # (L, NB, P, Hp, PANEL) recurrent weights, by block, in vector panels
    head_W: np.ndarray  # (NB, Ph, Hp, PANEL) the head's columns in NB blocks of Vb = ceil(V / NB), in vector panels
    head_b: np.ndarray  # (V,)
    threads: int = 1  # 1: the blocks of a layer run one after another; > 1: on parallel threads


class MLPNet(NamedTuple):
    """An MLP model laid out for `mlp_sample_kernel` (all float32, C-contiguous)."""

    act: int  # an activation code
    x0: np.ndarray  # (K, V+1, H) layer 0's contribution of id v at window position j
    W: np.ndarray  # (L-1, P, H, PANEL) weights of layers 1..L-1 in vector panels
    b: np.ndarray  # (L, H) biases of all layers
    head_W: np.ndarray  # (Ph, H, PANEL) head.W (H, V) in vector panels
    head_b: np.ndarray  # (V,)


# ---------------------------------------------------------------- Python: model -> kernel
def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def vector_panels(W) -> np.ndarray:
    """W (..., D, M) -> Wp (..., P, D, PANEL) float32, P = ceil(M / PANEL): each matrix's vector
    panels for kernels.matvec, Wp[..., p, k, j] = W[..., k, p*PANEL + j], zero past column M (the
    layout of kernels.pack_panels_kernel, at the samplers' panel width). In numpy: a layout is
    built once per model, and the packing kernel is compiled by training's units, which compile
    beside sampling's (charnn.compile.PHASES)."""
    W = np.asarray(W)
    *lead, D, M = W.shape
    P = -(-M // PANEL)
    padded = np.zeros((*lead, D, P * PANEL), dtype=np.float32)
    padded[..., :M] = W
    return np.ascontiguousarray(np.moveaxis(padded.reshape(*lead, D, P, PANEL), -2, -3))


def _product(A, B) -> np.ndarray:
    """A (M, K) @ B (K, N) in float32 on this thread: numpy's BLAS would leave its worker threads
    spinning for a while after the call, on the cores the parallel sampling threads need next."""
    out = np.empty((A.shape[0], B.shape[1]), dtype=np.float32)
    batch_matvec(_f32(A), vector_panels(B), out)
    return out


def _unit_blocks(W, gates: int, n_blocks: int, Hp: int, out: np.ndarray) -> np.ndarray:
    """W (D, gates*H) -> out (n_blocks, rows, gates*w), zeros on entry, w = Hp / n_blocks: block b
    holds the columns of units [b*w, (b+1)*w) of every gate, gate-major; units past H and rows past
    D stay zero. One pass over W, written straight into its place in the stacked layout."""
    D, G = W.shape
    H, w = G // gates, Hp // n_blocks
    src = W.reshape(D, gates, H)
    dest = out.view()
    dest.shape = (n_blocks, out.shape[1], gates, w)  # raises rather than copy: the writes must land in out
    for b in range(n_blocks):
        u0, u1 = b * w, min((b + 1) * w, H)
        if u1 > u0:
            dest[b, :D, :, : u1 - u0] = src[:, :, u0:u1]
    return out


def padded_width(H: int, n_blocks: int) -> int:
    """Hp: H rounded up to n_blocks blocks of whole 64-byte lines (no false sharing between threads)."""
    return H if n_blocks == 1 else -(-H // (16 * n_blocks)) * 16 * n_blocks


def recurrent_net(model, n_blocks: int = 1, Hp: int | None = None) -> RecurrentNet:
    """A RecurrentModel's weights in the kernel's layout: Hp units (H padded with zero units; by
    default padded_width(H, n_blocks)) in n_blocks blocks. Layouts of equal Hp share a state."""
    cfg, p = model.config, model.params
    L, (H, G) = cfg.layers, p["layer0.Wh"].shape
    gates = G // H
    Hp = padded_width(H, n_blocks) if Hp is None else Hp
    GB = gates * Hp // n_blocks
    x0 = (_product(p["embed.W"], p["layer0.Wx"]) if cfg.embed else p["layer0.Wx"]) + p["layer0.b"]  # (V, G)

    V = p["head.W"].shape[1]
    x0_blocks = np.zeros((n_blocks, x0.shape[0], GB), dtype=np.float32)
    Wx = np.zeros((L - 1, n_blocks, Hp, GB), dtype=np.float32)
    b = np.zeros((L - 1, n_blocks, GB), dtype=np.float32)
    Wh = np.zeros((L, n_blocks, Hp, GB), dtype=np.float32)
    for l in range(L):
        _unit_blocks(p[f"layer{l}.Wh"], gates, n_blocks, Hp, Wh[l])
        if l > 0:
            _unit_blocks(p[f"layer{l}.Wx"], gates, n_blocks, Hp, Wx[l - 1])
            _unit_blocks(p[f"layer{l}.b"][None], gates, n_blocks, Hp, b[l - 1, :, None])  # one row
    Vb = -(-V // n_blocks)
    head_W = np.zeros((Hp, n_blocks * Vb), dtype=np.float32)
    head_W[:H, :V] = p["head.W"]
    head_W = head_W.reshape(Hp, n_blocks, Vb).transpose(1, 0, 2)  # (NB, Hp, Vb), a view: vector_panels copies it
    return RecurrentNet(
        cell=CELL_CODES[cfg.model],
        act=ACTIVATION_CODES[cfg.activation],
        x0=_unit_blocks(x0, gates, n_blocks, Hp, x0_blocks),
        Wx=vector_panels(Wx),
        b=b,
        Wh=vector_panels(Wh),
        head_W=vector_panels(head_W),
        head_b=_f32(p["head.b"]),
    )


_KEPT: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> (config, params copy, {(NB, Hp): net})


def kept_recurrent_net(model, n_blocks: int = 1, Hp: int | None = None) -> RecurrentNet:
    """recurrent_net(model, n_blocks, Hp), built once and kept for the model's lifetime while its
    config and parameters stay the same bit for bit, as a copy kept with it shows (checked at each
    call, one read of the parameters). A series of samples then reuses one layout: rebuilding it
    costs up to ~2 ms a call, and its fresh arrays start outside the caches (bench/README.md)."""
    Hp = padded_width(model.config.hidden, n_blocks) if Hp is None else Hp
    kept = _KEPT.get(model)
    if kept is None or kept[0] != model.config or not _same_bits(model.params, kept[1]):
        kept = _KEPT[model] = (model.config, {k: np.array(v, copy=True) for k, v in model.params.items()}, {})
    nets = kept[2]
    if (n_blocks, Hp) not in nets:
        nets[n_blocks, Hp] = recurrent_net(model, n_blocks, Hp)
    return nets[n_blocks, Hp]


def _same_bits(params: dict, copies: dict) -> bool:
    """Whether every array of params equals its copy bit for bit (NaN and -0.0 included)."""
    if params.keys() != copies.keys():
        return False
    for k, a in params.items():
        b = copies[k]
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        as_int = f"i{a.itemsize}"  # float32 or float64, compared as integers of their width
        if not np.array_equal(a.view(as_int), b.view(as_int)):
            return False
    return True


def mlp_net(model) -> MLPNet:
    """An MLPModel's weights in the kernel's layout."""
    cfg, p = model.config, model.params
    K, E, L = cfg.context, cfg.embed, cfg.layers
    W0, emb = p["layer0.W"], p["embed.W"]  # (K*E, H), (V+1, E)
    H = W0.shape[1]
    x0 = np.stack([_product(emb, W0[j * E : (j + 1) * E]) for j in range(K)])  # (K, V+1, H)
    return MLPNet(
        act=ACTIVATION_CODES[cfg.activation],
        x0=_f32(x0),
        W=vector_panels(np.stack([p[f"layer{l}.W"] for l in range(1, L)]) if L > 1 else np.zeros((0, H, H))),
        b=_f32(np.stack([p[f"layer{l}.b"] for l in range(L)])),
        head_W=vector_panels(p["head.W"]),
        head_b=_f32(p["head.b"]),
    )


def _check(model) -> None:
    cfg = model.config
    if cfg.activation not in ACTIVATION_CODES:
        raise NotImplementedError(f"no numba sampling kernel for activation {cfg.activation!r}")
    if cfg.model not in CELL_CODES and cfg.model != "mlp":
        raise NotImplementedError(f"no numba sampling kernel for model type {cfg.model!r}")


def forced_threads() -> int | None:
    """CHARNN_SAMPLE_THREADS: the thread count batch-1 sampling runs on without timing the choice
    (at most numba's), or None for "auto" or unset (the choice is timed: thread_counts)."""
    return forced_count("CHARNN_SAMPLE_THREADS")


def thread_counts(model, threads: int | None = None) -> tuple[int, ...]:
    """The thread counts a recurrent model's batch-1 sampling may run on (see prepare): one block
    of at least 64 units per thread."""
    return _thread_choice(max(1, model.config.hidden // 64), threads)


def _thread_choice(most: int, threads: int | None) -> tuple[int, ...]:
    """(threads,), or CHARNN_SAMPLE_THREADS's count, where one is given; else 1 and n with its
    halvings, n up to `most` threads ((1, 2) on two cores, (1, 2, 4, 8) on eight), to be timed
    against each other as the sample runs (Chooser), or (1,)."""
    threads = forced_threads() if threads is None else threads
    if threads is not None:
        return (max(1, int(threads)),)
    # whether parallel threads pay depends on the weights' size against this CPU's caches and on
    # its parallel regions' cost: not guessed, but timed
    n = min(parallel_threads(), most)
    # a parallel region waits for a time slice of every busy CPU it needs (~100x slower): only the
    # CPUs other tasks leave free
    n = LOOKS.free(n) if n > 1 else 1
    return tuple(sorted(halvings(n)))


def prepare(model, threads: int | None = None):
    """A charnn model -> (kernel, nets, state): for each thread count n in nets, `kernel(nets[n],
    *state, feed, u, temperature, top_k, top_p, argmax, out)` samples on n threads, every layout
    sharing the state, which is carried in place from call to call (from the model's initial state).

    threads: 1 serial; n > 1 each recurrent layer's hidden units in n blocks run on parallel threads;
    None: serial and, for recurrent models of at least two blocks of 64 units when numba has a fast
    threading layer and other tasks leave at least two CPUs free, also parallel on those CPUs
    (thread_counts), to be chosen between as they run (see sample_ids). The MLP always runs serially.
    Raises NotImplementedError for a model or activation no kernel covers."""
    _check(model)
    cfg = model.config
    if cfg.model in CELL_CODES:
        counts = thread_counts(model, threads)
        shared = []  # one layout, built at first use, run serially or in parallel

        def layout(n):
            if not shared:
                shared.append(kept_recurrent_net(model, max(counts)))
            return shared[0]._replace(threads=n)

        nets = _Layouts(counts, layout)
        Hp = padded_width(cfg.hidden, max(counts))
        state = (np.zeros((cfg.layers, Hp), dtype=np.float32), np.zeros((cfg.layers, Hp), dtype=np.float32))
        return recurrent_sample_kernel, nets, state
    return mlp_sample_kernel, {1: mlp_net(model)}, (np.full(cfg.context, cfg.vocab_size, dtype=np.int64),)


def batch_thread_counts(streams: int, threads: int | None = None, blocks: int = 1) -> tuple[int, ...]:
    """The thread counts S streams sampled together may run on: 1 (one after another) and, where
    numba has a fast threading layer and other tasks leave CPUs free, the halvings of those CPUs up
    to the larger of `blocks` (the threads then share each layer's unit blocks: Batch.layout) and S
    (one group of streams a thread), to be chosen between as they run (sample_batch_ids). threads:
    a count to run on without a choice (default CHARNN_SAMPLE_THREADS, if set), at most that larger."""
    most = max(streams, blocks)
    return tuple(dict.fromkeys(min(n, most) for n in _thread_choice(most, threads)))


class Batch(NamedTuple):
    """What sample_batch_ids runs: the batch-1 kernel and state for the shared warm-up, the batch
    kernel, the layouts it takes, and the axis of the streams in the batch kernel's state arrays."""

    kernel: object  # recurrent_sample_kernel or mlp_sample_kernel: warms up `state`
    batch_kernel: object  # recurrent_batch_sample_kernel or mlp_batch_sample_kernel
    net: object  # RecurrentNet with one unit block (of the batch-1 run's padded width), or MLPNet
    state: tuple  # the batch-1 state: (h, c) (L, Hp) or (window (K,),)
    axis: int  # of the streams in the batch state: 1 for h, c (L, S, Hp); 0 for windows (S, K)
    blocks_net: object = None  # RecurrentNet of the same Hp in NB > 1 unit blocks (the batch-1 one), or None

    @property
    def blocks(self) -> int:
        """NB: how many threads at most can share each layer's unit blocks (1: none)."""
        return 1 if self.blocks_net is None else self.blocks_net.Wh.shape[1]

    def layout(self, threads: int, streams: int) -> tuple:
        """(net, parts) for the batch kernel to step `streams` streams on `threads` threads: n <= NB
        threads share each layer's unit blocks, so every weight is read once a step by one core
        (on a Zen 3, 1.06-1.35x as fast as groups of streams, each reading every weight:
        bench/README.md); more threads than blocks take groups of streams, one a thread, on the
        one-block layout, which one thread also runs (its larger panels run faster alone)."""
        if 1 < threads <= self.blocks:
            return self.blocks_net, threads
        return self.net, max(1, min(threads, streams))


def prepare_batch(model) -> Batch:
    """A charnn model -> its Batch. The unit layouts have the padded width Hp of the batch-1 run
    (prepare), so that a stream's numbers are the batch-1 run's."""
    _check(model)
    cfg = model.config
    if cfg.model in CELL_CODES:
        NB = max(thread_counts(model))
        Hp = padded_width(cfg.hidden, NB)
        state = (np.zeros((cfg.layers, Hp), dtype=np.float32), np.zeros((cfg.layers, Hp), dtype=np.float32))
        return Batch(recurrent_sample_kernel, recurrent_batch_sample_kernel, kept_recurrent_net(model, 1, Hp), state, 1,
                     kept_recurrent_net(model, NB, Hp) if NB > 1 else None)
    window = np.full(cfg.context, cfg.vocab_size, dtype=np.int64)
    return Batch(mlp_sample_kernel, mlp_batch_sample_kernel, mlp_net(model), (window,), 0)


class _Layouts(dict):
    """{thread count: layout}, each built the first time it is asked for (sample_ids asks outside
    its timed call: copying the weights into the layout costs milliseconds). The counts of one
    prepare share one set of weight arrays (RecurrentNet.threads differs)."""

    def __init__(self, counts, build):
        super().__init__()
        self.counts, self.build = tuple(counts), build

    def __iter__(self):
        return iter(self.counts)

    def __len__(self):
        return len(self.counts)

    def __contains__(self, n):
        return n in self.counts

    def __missing__(self, n):
        if n not in self.counts:
            raise KeyError(n)
        layout = self[n] = self.build(n)
        return layout


_CHOOSERS: dict[tuple, Chooser] = {}  # what sample_ids has timed in this process, per shape


def _shape(model) -> tuple:
    """What a sample's timings depend on: the model's kind and sizes, not its weights."""
    cfg = model.config
    return cfg.model, cfg.activation, cfg.layers, cfg.hidden, cfg.vocab_size


def sample_name(model, counts) -> str:
    """How policy.py's table names a batch-1 sampling choice: what the thread count's speed depends
    on (the layers' sizes; not the vocabulary, whose head is a small part of a step) and the
    counts chosen between, e.g. "lstm tanh 2x512, threads 1/2"."""
    cfg = model.config
    return f"{cfg.model} {cfg.activation} {cfg.layers}x{cfg.hidden}, threads {'/'.join(map(str, counts))}"


def stored_threads(model, counts=None) -> int | None:
    """The thread count batch-1 sampling of the model's shape starts from, as measured on this
    machine (measure_threads, or earlier samples) and kept by policy.py; None if never measured."""
    counts = thread_counts(model) if counts is None else counts
    row = TABLE.sampling().get(sample_name(model, counts))
    return row["threads"] if row is not None and row["threads"] in counts else None


def chooser_for(model, counts) -> Chooser:
    """The Chooser of this process for a model's shape and thread counts: the timings of every
    earlier sample of that shape carry over (they depend on the shape, not on the weights), so a
    series of short samples runs at the faster count from its first block instead of relearning
    it in each (a 500-character sample is only 8 blocks). A new one starts from the count this
    machine measured best (stored_threads)."""
    key = (*_shape(model), tuple(counts))
    if key not in _CHOOSERS:
        known = _known_costs(TABLE.sampling().get(sample_name(model, counts)))
        _CHOOSERS[key] = Chooser(list(counts), best=stored_threads(model, counts), known=known)
    return _CHOOSERS[key]


def _known_costs(row) -> dict[int, float]:
    """A kept sampling row's "us_per_char" as {count: us}, the entries that are a count and a
    positive time (the table is a file in the user's cache folder: anything else is left out)."""
    us = row.get("us_per_char") if isinstance(row, dict) else None
    if not isinstance(us, dict):
        return {}
    return {int(n): float(t) for n, t in us.items()
            if str(n).isdigit() and isinstance(t, (int, float)) and math.isfinite(t) and t > 0}


def remember(model, chooser: Chooser) -> None:
    """Keep the chooser's best count for the model's shape (policy.py) once it has timed every
    count, where that differs from what is kept: the next process starts from it."""
    if len(chooser.counts) < 2 or len(chooser.cost) < len(chooser.counts):
        return
    if stored_threads(model, chooser.counts) != chooser.best:
        us = {str(n): round(chooser.cost[n] * 1e6, 3) for n in chooser.counts}
        TABLE.record_sampling(sample_name(model, chooser.counts), {"threads": chooser.best, "us_per_char": us})


CALIBRATION_CHARS = 512  # characters per timed call of measure_threads
CALIBRATION_ROUNDS = 5  # timed calls per thread count, alternating


def measure_threads(model) -> dict | None:
    """Time batch-1 sampling of the model's shape on each thread count it may run on (thread_counts),
    alternating, CALIBRATION_ROUNDS calls of CALIBRATION_CHARS greedy characters each after an
    untimed round (on the model's weights: the time depends on the sizes only), and keep the count
    with the lower median time per character (policy.py) as the one its samples start from; the
    chooser still times both as a sample runs. Returns the kept row, or None where there is no
    choice (one thread, or a busy machine)."""
    kernel, nets, state = prepare(model)
    counts = sorted(nets)
    if len(counts) < 2:
        return None
    feed, u, out = np.zeros(1, dtype=np.int64), np.zeros(CALIBRATION_CHARS), np.empty(CALIBRATION_CHARS, dtype=np.int64)
    times = {n: [] for n in counts}
    for r in range(CALIBRATION_ROUNDS + 1):
        for n in counts:
            net = nets[n]
            t0 = perf_counter()
            kernel(net, *state, feed, u, 1.0, 0, 1.0, True, out)
            if r > 0:  # the first round may load the kernel
                times[n].append((perf_counter() - t0) / CALIBRATION_CHARS)
            feed[0] = out[-1]
    median = {n: sorted(ts)[len(ts) // 2] for n, ts in times.items()}
    row = {"threads": min(counts, key=median.get), "us_per_char": {str(n): round(median[n] * 1e6, 3) for n in counts}}
    TABLE.record_sampling(sample_name(model, counts), row)
    return row


def steps_by_threads(model) -> dict[int, int]:
    """{thread count: characters} that batch-1 samples of the model's shape have stepped through on
    that many threads in this process (prime and sample, after the warm-up of a long prime), so
    that a benchmark can say what ran."""
    total: dict[int, int] = {}
    for key, chooser in _CHOOSERS.items():
        if key[:-1] == _shape(model):
            for n, k in chooser.ran.items():
                total[n] = total.get(n, 0) + k
    return total


def _draw_args(model, temperature, top_k, top_p, argmax) -> tuple:
    """The kernels' (temperature, top_k, top_p, argmax): top_k 0 for none (as pick for k >= V),
    top_p 1.0 for none."""
    V = model.config.vocab_size
    top_k = int(top_k) if top_k is not None and top_k < V else 0
    top_p = float(top_p) if top_p is not None else 1.0
    return float(temperature), top_k, top_p, bool(argmax)


def warm_up(kernel, net, state, ids, progress=None) -> None:
    """Step the state through ids (M,) in kernel calls of WARM_BLOCK ids (the same operations as one
    call), telling progress(done, M) at the start and after each."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    no_draws, none = np.zeros(0), np.empty(0, dtype=np.int64)
    if progress is not None and len(ids):
        progress(0, len(ids))
    for a in range(0, len(ids), WARM_BLOCK):
        b = min(a + WARM_BLOCK, len(ids))
        feed = np.zeros(b - a + 1, dtype=np.int64)  # the kernel steps feed[:-1]; feed[-1] feeds no draw
        feed[:-1] = ids[a:b]
        kernel(net, *state, feed, no_draws, 1.0, 0, 1.0, True, none)
        if progress is not None:
            progress(b, len(ids))


def sample_ids(model, prime_ids, length: int | None, temperature: float = 1.0, top_k: int | None = None,
               argmax: bool = False, rng: np.random.Generator | None = None, threads: int | None = None,
               first_block: int = FIRST_BLOCK, block: int = BLOCK, top_p: float | None = None,
               progress=None) -> Iterator[np.ndarray]:
    """Yield the `length` sampled ids (None: without end) as int64 arrays of up to `block` ids (the
    first of up to `first_block`), continuing prime_ids (M,) (M >= 1) from the model's initial state.
    prime_ids[:-1] is stepped through first, telling progress(done, M - 1) as it goes (warm_up).

    Each block draws its uniforms at once (`rng.random(n)`, none if argmax), so when the iterator
    is exhausted rng is where n single draws would have left it; in between it runs ahead by up to
    one block. threads: see prepare; with a choice, the process's Chooser for the shape
    (chooser_for) picks by timing the blocks (a probe of the other choice is a whole block). The
    choice never changes the ids: every layout computes each logit with the same float32
    operations in the same order."""
    kernel, nets, state = prepare(model, threads)
    chooser = chooser_for(model, sorted(nets))
    draw = _draw_args(model, temperature, top_k, top_p, argmax)
    feed = np.asarray(prime_ids, dtype=np.int64).reshape(-1)
    if len(feed) > 1:
        warm_up(kernel, nets[chooser.best], state, feed[:-1], progress)
        feed = feed[-1:]
    done, calls = 0, 0
    while length is None or done < length:
        threads_now = chooser.next()
        net = nets[threads_now]  # built at first use: outside the timed call
        # probes run whole blocks too: a short parallel probe can time well where whole blocks do not
        n = first_block if calls == 0 else block
        n = n if length is None else min(n, length - done)
        u = np.zeros(n) if argmax else rng.random(n)  # (n,) the same stream as n rng.random() calls
        out = np.empty(n, dtype=np.int64)
        t0 = perf_counter()
        kernel(net, *state, feed, u, *draw, out)
        chooser.ran[threads_now] += len(feed) - 1 + n
        if calls > 0:  # the first call may include compiling
            chooser.record(threads_now, perf_counter() - t0, len(feed) - 1 + n)
        yield out
        feed = out[-1:]  # the next block continues from the last id sampled
        done += n
        calls += 1
    remember(model, chooser)


_BATCH_CHOOSERS: dict[tuple, Chooser] = {}  # sample_batch_ids' timings in this process, per shape and streams


def sample_batch_ids(model, warm_ids, first_ids, length: int | None, temperature: float = 1.0,
                     top_k: int | None = None, top_p: float | None = None, argmax: bool = False, rngs=(),
                     alive: np.ndarray | None = None, progress=None, first_block: int = FIRST_BLOCK,
                     block: int = BLOCK, threads: int | None = None) -> Iterator[np.ndarray]:
    """S streams sampled together: yield blocks (S, n) int64 of up to `length` ids per stream (None:
    without end), stream s continuing first_ids[s] (S,) after the shared warm_ids (M,) and drawing
    its uniforms from rngs[s], as sample_ids would with first_ids[s] appended to warm_ids.
    alive (S,) bool is read before each block: a stream set False there is stepped no more, draws
    no more, and its row of the blocks is -1. The iterator ends when no stream is alive.
    threads: see batch_thread_counts; with a choice, a Chooser of this process for the shape and S
    times the blocks (per stream character) and runs the faster. The choice never changes the ids."""
    batch = prepare_batch(model)
    warm_up(batch.kernel, batch.net, batch.state, warm_ids, progress)
    S = len(first_ids)
    counts = batch_thread_counts(S, threads, batch.blocks)
    key = (*_shape(model), S, counts)
    if key not in _BATCH_CHOOSERS:
        _BATCH_CHOOSERS[key] = Chooser(list(counts))
    chooser = _BATCH_CHOOSERS[key]
    states = [np.ascontiguousarray(np.repeat(np.expand_dims(a, batch.axis), S, axis=batch.axis)) for a in batch.state]
    alive = np.ones(S, dtype=bool) if alive is None else alive
    draw = _draw_args(model, temperature, top_k, top_p, argmax)
    current = np.asarray(first_ids, dtype=np.int64).copy()  # (S,) each stream's next input
    done, calls = 0, 0
    while length is None or done < length:
        rows = np.flatnonzero(alive)
        if rows.size == 0:
            return
        n = first_block if done == 0 else block
        n = n if length is None else min(n, length - done)
        u = np.zeros((rows.size, n)) if argmax else np.stack([rngs[s].random(n) for s in rows])  # (A, n)
        out = np.empty((rows.size, n), dtype=np.int64)
        threads_now = chooser.next()
        net, parts = batch.layout(threads_now, rows.size)
        t0 = perf_counter()
        if rows.size == S:
            batch.batch_kernel(net, *states, current, u, *draw, out, parts)
        else:  # the live streams' states, stepped, then put back
            live = [np.ascontiguousarray(np.take(a, rows, axis=batch.axis)) for a in states]
            batch.batch_kernel(net, *live, current[rows], u, *draw, out, parts)
            for a, b in zip(states, live):
                index = [slice(None)] * a.ndim
                index[batch.axis] = rows
                a[tuple(index)] = b
        chooser.ran[threads_now] += rows.size * n
        if calls > 0:  # the first call may include compiling
            chooser.record(threads_now, perf_counter() - t0, rows.size * n)
        full = np.full((S, n), -1, dtype=np.int64)
        full[rows] = out
        current[rows] = out[:, -1]
        yield full
        done += n
        calls += 1
