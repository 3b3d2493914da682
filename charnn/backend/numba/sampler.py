"""Batch-1 sampling compiled with numba: one kernel call runs a whole block of characters (every
layer's step, the head, temperature, top-k, softmax and the draw), so no Python runs per character.

The numpy path, `charnn.sampling.reference_ids` (`model.step` then `pick` per character), is the
specification. For the same arguments and generator state `sample_numba` yields the same characters:
the draws are the same float64 uniforms (one per character unless argmax, taken in blocks with
`rng.random(n)`, which gives the same stream as n calls of `rng.random()`), and the pick replicates
`pick`'s arithmetic (float64 z = logits / temperature, top-k by `z >= kth`, exp(z - max), a
sequential float64 cumulative sum, `searchsorted(cdf, u * cdf[-1], side="right")` clamped to V-1).
Only the logits may differ, by float32 rounding (another summation order than BLAS), ~1e-7
relative; a draw flips only if it lands that close to a cumulative boundary. (The rounding
differences in the state stay at that level for trained models and the initialisation; weights
with expanding dynamics can amplify them over thousands of steps, as they would a change of BLAS.)

Shapes: V vocabulary, E embedding width, H hidden width, G gate width (H rnn, 4H lstm, 3H gru),
L layers, K context length (MLP), N characters in a block.

The input projection of layer 0 depends only on the input id, so it is tabulated once per sampling
call with one GEMM and layer 0 needs no input matvec:
    recurrent   x0[v] = embed.W[v] @ layer0.Wx + layer0.b          (V, G); one-hot: layer0.Wx + b
    MLP         x0[j, v] = embed.W[v] @ layer0.W[j*E:(j+1)*E]      (K, V+1, H), so that
                emb(window) @ layer0.W = sum_j x0[j, window[j]]    (concatenation = sum of blocks)

The kernels live with every other @njit function in kernels.py (section "batch-1 sampling");
this module lays a model's weights out for them, chooses the thread count and streams the ids.
Weights and state are float32 (float64 models are cast on the way in). One kernel is parallel:
`recurrent_step_kernel` can split a layer's hidden units over threads (see RecurrentNet, prepare
and sample_ids for when it pays).
"""
from __future__ import annotations

from time import perf_counter
from typing import Iterator, NamedTuple

import numpy as np

from .kernels import ACTIVATION_CODES, CELL_CODES, mlp_sample_kernel, recurrent_sample_kernel
from .threads import cpus_busy, parallel_threads

FIRST_BLOCK = 8  # characters in the first kernel call, so the first output appears at once
BLOCK = 64  # characters per kernel call after that


# ---------------------------------------------------------------- weights as the kernels see them
class RecurrentNet(NamedTuple):
    """A recurrent model laid out for `recurrent_sample_kernel` (all float32, C-contiguous).

    The hidden units are split into NB blocks of w units, block b holding units [b*w, (b+1)*w) (H
    is padded with zero units to Hp = NB*w when NB > 1). A block's columns are its units' columns of
    every gate, gate-major (i, f, o, g blocks of w for the lstm): GB = gates * w. So one thread's
    share of a layer is one contiguous (Hp, GB) matrix, streamed front to back. Padded units have
    zero rows in every matrix they feed, so they add exact zeros, and two layouts of the same Hp
    compute every logit with the same float32 operations in the same order. One layout serves
    every thread count: `net._replace(threads=n)` shares its arrays."""

    cell: int  # RNN, LSTM or GRU
    act: int  # an activation code (the rnn's nonlinearity; unused by lstm / gru)
    x0: np.ndarray  # (NB, V, GB) layer 0's input projection of each id, bias included
    Wx: np.ndarray  # (L-1, NB, Hp, GB) input weights of layers 1..L-1
    b: np.ndarray  # (L-1, NB, GB) biases of layers 1..L-1
    Wh: np.ndarray  # (L, NB, Hp, GB) recurrent weights
    head_W: np.ndarray  # (Hp, V)
    head_b: np.ndarray  # (V,)
    threads: int = 1  # 1: the blocks of a layer run one after another; > 1: on parallel threads


class MLPNet(NamedTuple):
    """An MLP model laid out for `mlp_sample_kernel` (all float32, C-contiguous)."""

    act: int  # an activation code
    x0: np.ndarray  # (K, V+1, H) layer 0's contribution of id v at window position j
    W: np.ndarray  # (L-1, H, H) weights of layers 1..L-1
    b: np.ndarray  # (L, H) biases of all layers
    head_W: np.ndarray  # (H, V)
    head_b: np.ndarray  # (V,)


# ---------------------------------------------------------------- Python: model -> kernel
def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _stack(arrays, shape) -> np.ndarray:
    """Stack float32 arrays into one C-contiguous array; shape is used when there are none."""
    return _f32(np.stack(arrays)) if arrays else np.zeros(shape, dtype=np.float32)


def _unit_blocks(W, gates: int, n_blocks: int, Hp: int, rows: int | None = None) -> np.ndarray:
    """W (D, gates*H) -> (n_blocks, rows, gates*w), w = Hp / n_blocks: block b holds the columns of
    units [b*w, (b+1)*w) of every gate, gate-major; units past H and rows past D are zero."""
    D, G = W.shape
    H, w = G // gates, Hp // n_blocks
    rows = D if rows is None else rows
    Wp = np.zeros((rows, gates, Hp), dtype=np.float32)
    Wp[:D, :, :H] = W.reshape(D, gates, H)
    return _f32(Wp.reshape(rows, gates, n_blocks, w).transpose(2, 0, 1, 3).reshape(n_blocks, rows, gates * w))


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
    x0 = (p["embed.W"] @ p["layer0.Wx"] if cfg.embed else p["layer0.Wx"]) + p["layer0.b"]  # (V, G) one GEMM

    def blocks(W, rows=None):
        return _unit_blocks(W, gates, n_blocks, Hp, rows)

    return RecurrentNet(
        cell=CELL_CODES[cfg.model],
        act=ACTIVATION_CODES[cfg.activation],
        x0=blocks(x0),
        Wx=_stack([blocks(p[f"layer{l}.Wx"], Hp) for l in range(1, L)], (0, n_blocks, Hp, GB)),
        b=_stack([blocks(p[f"layer{l}.b"][None])[:, 0] for l in range(1, L)], (0, n_blocks, GB)),
        Wh=_stack([blocks(p[f"layer{l}.Wh"], Hp) for l in range(L)], (0, n_blocks, Hp, GB)),
        head_W=_f32(np.concatenate([p["head.W"], np.zeros((Hp - H, p["head.W"].shape[1]))])),
        head_b=_f32(p["head.b"]),
    )


def mlp_net(model) -> MLPNet:
    """An MLPModel's weights in the kernel's layout."""
    cfg, p = model.config, model.params
    K, E, L = cfg.context, cfg.embed, cfg.layers
    W0, emb = p["layer0.W"], p["embed.W"]  # (K*E, H), (V+1, E)
    H = W0.shape[1]
    x0 = np.stack([emb @ W0[j * E : (j + 1) * E] for j in range(K)])  # (K, V+1, H)
    return MLPNet(
        act=ACTIVATION_CODES[cfg.activation],
        x0=_f32(x0),
        W=_stack([_f32(p[f"layer{l}.W"]) for l in range(1, L)], (0, H, H)),
        b=_stack([_f32(p[f"layer{l}.b"]) for l in range(L)], (0, H)),
        head_W=_f32(p["head.W"]),
        head_b=_f32(p["head.b"]),
    )


# Recurrent weights from which splitting layers over threads is tried: below it a parallel
# region's start and its stalls cost more than half the work saves (bench/README.md, "Sampling threads").
PARALLEL_MIN_BYTES = 6 << 20


def prepare(model, threads: int | None = None):
    """A charnn model -> (kernel, nets, state): for each thread count n in nets, `kernel(nets[n],
    *state, feed, u, temperature, top_k, argmax, out)` samples on n threads, every layout sharing
    the state, which is carried in place from call to call (from the model's initial state).

    threads: 1 serial; n > 1 each recurrent layer's hidden units in n blocks run on parallel threads;
    None: serial and, for recurrent models with at least PARALLEL_MIN_BYTES of weights when numba has
    a fast threading layer and no other task is running on the CPUs, also parallel, to be chosen
    between as they run (see sample_ids). The MLP always runs serially.
    Raises NotImplementedError for a model or activation no kernel covers."""
    cfg = model.config
    if cfg.activation not in ACTIVATION_CODES:
        raise NotImplementedError(f"no numba sampling kernel for activation {cfg.activation!r}")
    if cfg.model in CELL_CODES:
        H = cfg.hidden
        if threads is None:
            streamed = [k for k in model.params if k.endswith(".Wh") or (k.endswith(".Wx") and k != "layer0.Wx")]
            nbytes = 4 * sum(model.params[k].size for k in streamed)  # read every step (layer0.Wx is tabulated)
            n = min(parallel_threads(), max(1, H // 64)) if nbytes >= PARALLEL_MIN_BYTES else 1
            # a parallel region waits for a time slice of every busy CPU it needs: ~100x slower
            counts = (1, n) if n > 1 and not cpus_busy(n) else (1,)
        else:
            counts = (max(1, int(threads)),)
        shared = []  # one layout, built at first use, run serially or in parallel

        def layout(n):
            if not shared:
                shared.append(recurrent_net(model, max(counts)))
            return shared[0]._replace(threads=n)

        nets = _Layouts(counts, layout)
        Hp = padded_width(H, max(counts))
        state = (np.zeros((cfg.layers, Hp), dtype=np.float32), np.zeros((cfg.layers, Hp), dtype=np.float32))
        return recurrent_sample_kernel, nets, state
    if cfg.model == "mlp":
        return mlp_sample_kernel, {1: mlp_net(model)}, (np.full(cfg.context, cfg.vocab_size, dtype=np.int64),)
    raise NotImplementedError(f"no numba sampling kernel for model type {cfg.model!r}")


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


class _Chooser:
    """Run the thread count with the lower measured time per step, and now and then try each other
    count on a short block: first at the third call (the first may compile, the second times the
    default), then at intervals that double while it stays slower, so that the probes cost little.
    A count's cost is the lower of its last two timings: one block held up by a stray time slice
    (a parallel region stalls for a scheduler tick, ~4 ms, whenever either of its CPUs is taken)
    does not condemn it, but when the best slows down for good (another process takes a core:
    every parallel region then waits, ~100x slower) the switch comes after two blocks."""

    def __init__(self, counts, first_gap: int = 8, max_gap: int = 1024):
        self.counts, self.best = list(counts), counts[0]
        self.first_gap, self.max_gap = first_gap, max_gap
        self.cost = {}  # seconds per step: the lower of the last two timings
        self.last = {}  # the last timing of each count
        self.gap = {n: first_gap for n in self.counts}  # calls between probes of n
        self.wait = {n: 3 for n in self.counts}  # calls until n is probed

    def next(self) -> int:
        for n in self.counts:
            if n != self.best:
                self.wait[n] -= 1
                if self.wait[n] <= 0:
                    return n
        return self.best

    def record(self, n: int, seconds: float, steps: int) -> None:
        new = seconds / steps
        self.cost[n] = min(new, self.last.get(n, new))
        self.last[n] = new
        fastest = min(self.cost, key=self.cost.get)
        if fastest != self.best:  # a probe beat the best, or the best slowed down: switch
            self.wait[self.best], self.gap[self.best] = self.first_gap, self.first_gap
            self.best = fastest
        elif n != self.best:  # a probe that lost: probe it ever less often
            self.wait[n] = self.gap[n]
            self.gap[n] = min(2 * self.gap[n], self.max_gap)


def sample_ids(model, prime_ids, length: int, temperature: float = 1.0, top_k: int | None = None,
               argmax: bool = False, rng: np.random.Generator | None = None, threads: int | None = None,
               first_block: int = FIRST_BLOCK, block: int = BLOCK) -> Iterator[np.ndarray]:
    """Yield the `length` sampled ids as int64 arrays of up to `block` ids (the first of up to
    `first_block`), continuing prime_ids (M,) (M >= 1) from the model's initial state.

    Each block draws its uniforms at once (`rng.random(n)`, none if argmax), so when the iterator
    is exhausted rng is where n single draws would have left it; in between it runs ahead by up to
    one block. threads: see prepare; with a choice, a _Chooser picks by timing the blocks (a probe
    of the other choice is a whole block). The choice never changes the ids: every
    layout computes each logit with the same float32 operations in the same order."""
    kernel, nets, state = prepare(model, threads)
    chooser = _Chooser(sorted(nets))
    V = model.config.vocab_size
    top_k = int(top_k) if top_k is not None and top_k < V else 0  # 0: no top-k (as pick for k >= V)
    temperature, argmax = float(temperature), bool(argmax)
    feed = np.asarray(prime_ids, dtype=np.int64).reshape(-1)
    done, calls = 0, 0
    while done < length:
        threads_now = chooser.next()
        net = nets[threads_now]  # built at first use: outside the timed call
        # probes run whole blocks too: a short parallel probe can time well where whole blocks do not
        n = min(first_block if calls == 0 else block, length - done)
        u = np.zeros(n) if argmax else rng.random(n)  # (n,) the same stream as n rng.random() calls
        out = np.empty(n, dtype=np.int64)
        t0 = perf_counter()
        kernel(net, *state, feed, u, temperature, top_k, argmax, out)
        if calls > 0:  # the first call may include compiling
            chooser.record(threads_now, perf_counter() - t0, len(feed) - 1 + n)
        yield out
        feed = out[-1:]  # the next block continues from the last id sampled
        done += n
        calls += 1


