"""Measuring whether this machine trains a given shape faster with charnn's register tiles or with
numpy's BLAS (the answer is kept by policy.py).

Both are timed on what a training step really runs, not on products alone: one forward and
backward pass of the shape's recurrent layers and softmax head, through layers.py, on random
weights, alternating between the two ways a few times (with a pause at each switch, so that
neither inherits the other's still-spinning threads) and keeping the medians. Products timed
alone mislead: BLAS can win a product in isolation and still lose the step, because its threads
and numba's compete for the cores between products (bench/README.md, "Tiles or BLAS").

The tiles' pass is timed in the same rounds on numba's thread count and on halvings of it down to
one, and compared with BLAS on the count it ran fastest on: a small shape on many cores, or numba
running more threads than the CPUs it really gets, can step faster on fewer.
With the tiles chosen on more than one thread, each of the shape's time loops (forward and
backward, per input width) is timed split both ways, by panels and by batch rows (kernels.py):
the rows split wins where the weights fit each core's cache, and loses where they do not, which
depends on the CPU. Then each of the pass's products is timed with A read in place and packed
first (measure_packing): the copy pays where many column panels reuse it and A's rows are far
apart (a weight gradient's X.T; on some CPUs any A whose rows are a multiple of 4 KB apart), and
how much depends on the CPU. Every thread count, both splits and both
ways of reading A compute the same bits, so these choices change only the speed.
"""
from __future__ import annotations

import contextlib
import functools
import time
from typing import NamedTuple

import numba
import numpy as np

from ...config import GATES
from ...nn.layers import Embedded
from . import gemm, layers
from .threads import cpus, free_cpus, halvings, numba_threads
from .policy import DEFAULT, SPLITS, TABLE, loop_name

REPEATS = 3  # timed passes per way (and per split of a time loop)
SETTLE_S = 0.2  # pause before a pass that follows the other way's: idle BLAS threads spin ~0.1 s
CLEARLY = 2.0  # a way this many times slower than the fastest pass after its first pass is not timed further
WAYS = (("tiles", "panels"), ("tiles", "rows"), ("blas", "panels"))  # (products, time loops' split): what a step can run


@contextlib.contextmanager
def forced(way: str, split: str, pack: bool | None = None):
    """Within the block, the products go to `way` ("tiles" or "blas") and the time loops split by
    `split`, whatever this machine's table says, and (pack not None) the tiles pack every product's
    A, or none; afterwards as before."""
    before = gemm.MODE, TABLE.forced_split, TABLE.forced_pack
    gemm.MODE, TABLE.forced_split, TABLE.forced_pack = way, split, pack
    try:
        yield
    finally:
        gemm.MODE, TABLE.forced_split, TABLE.forced_pack = before


def every_way():
    """One context manager per way a training step can compute here (WAYS; the tiles' products
    with their A packed in one of them, as they are in no other), so that a warm-up
    run inside each compiles every kernel a later run may choose (charnn.compile)."""
    return [forced(way, split, pack=way == "tiles" and split == "rows") for way, split in WAYS]


class Shape(NamedTuple):
    """What a training step's products depend on: cell ("lstm", "gru", "rnn", "mlp"), B batch,
    T steps, D input width (embedding, one-hot vocabulary, or the MLP's context x embedding),
    H hidden width, L layers, V vocabulary."""
    cell: str
    B: int
    T: int
    D: int
    H: int
    L: int
    V: int

    @property
    def name(self) -> str:
        return f"{self.cell} {self.L}x{self.H} D{self.D} V{self.V} B{self.B} T{self.T}"


def _pass(shape: Shape, rng) -> callable:
    """A function running one forward and backward pass of `shape`'s layers and head."""
    B, T, D, H, V = shape.B, shape.T, shape.D, shape.H, shape.V
    G = GATES.get(shape.cell, 1) * H  # the mlp's layers: H wide

    def w(*s):
        return (rng.standard_normal(s) * 0.1).astype(np.float32)

    # layer 0 reads ids into a table, as in training (the MLP's K ids a row timed as one of width D:
    # its lookups cost the same whichever way the products go)
    x = Embedded(rng.integers(0, V, (B * T, 1) if shape.cell == "mlp" else (B, T, 1)).astype(np.int32), w(V, D))
    weights = [(w(D if l == 0 else H, G), w(H, G), w(G)) for l in range(shape.L)]
    Wy, by = w(H, V), w(V)
    targets = rng.integers(0, V, size=B * T)
    h0 = np.zeros((B, H), np.float32)

    def run():
        caches, inp = [], x
        for Wx, Wh, b in weights:
            if shape.cell == "mlp":
                inp, cache = layers.dense_forward(inp, Wx, b)
            elif shape.cell == "lstm":
                inp, _, cache = layers.lstm_forward(inp, h0, h0, Wx, Wh, b)
            else:
                inp, cache = getattr(layers, f"{shape.cell}_forward")(inp, h0, Wx, Wh, b)
            caches.append(cache)
        logits, head = layers.linear_forward(inp.reshape(B * T, H), Wy, by)
        _, ce = layers.softmax_cross_entropy_forward(logits, targets)
        d, _, _ = layers.linear_backward(layers.softmax_cross_entropy_backward(1.0, ce), head)
        d = d.reshape(inp.shape)
        for cache in reversed(caches):
            if shape.cell == "mlp":
                d = layers.dense_backward(d, cache)[0]
            else:
                d = getattr(layers, f"{shape.cell}_backward")(d, cache)[0]
    return run


def _median_ms(seconds: list) -> float:
    return sorted(seconds)[len(seconds) // 2] * 1e3


def _median_range(seconds: list, total: int) -> tuple[float, float]:
    """The lowest and highest median (_median_ms's middle pass) that `total` passes can have once
    these `seconds` are among them, whatever the passes still to come take."""
    known, unknown, middle = sorted(seconds), total - len(seconds), total // 2
    return (known[middle - unknown] if middle >= unknown else 0.0), (known[middle] if middle < len(known) else float("inf"))


def _beaten(ranges: dict) -> set:
    """The ways of {way: (lowest, highest) median they can end with (_median_range)} whose median
    can no longer be the lowest: the least it can be is above the most another's can. Timing
    them further would change no choice, only the time calibrating takes."""
    best = min((high for _, high in ranges.values()), default=float("inf"))
    return {way for way, (low, _) in ranges.items() if low > best}


def _race(ways: dict) -> dict:
    """{name: median ms} of two ways that compute the same thing, {name: a function that runs it
    once and returns the seconds that count}: alternating, after an untimed round (compiling, first
    touch), REPEATS rounds, or fewer once it is known which median is the lower (_beaten)."""
    times = {name: [] for name in ways}
    for round_ in range(REPEATS + 1):
        for name, seconds in ways.items():
            t = seconds()
            if round_:
                times[name].append(t)
        if _beaten({name: _median_range(ts, REPEATS) for name, ts in times.items()}):
            break
    return {name: _median_ms(ts) for name, ts in times.items()}


def measure(shape: Shape, counts: tuple[int, ...] | None = None) -> dict:
    """{"choice", "tiles_ms", "blas_ms"}: the median time of a pass each way, over the passes
    timed (_timed stops timing a way once no pass could change the choice, a way CLEARLY slower
    after one: that pass's time), and the choice: BLAS if all its
    passes were faster than all the tiles', else the tiles. The tiles are timed on every count
    of thread_counts() in the same rounds and compared with BLAS on the count they ran fastest on
    (_counted; on too many threads they would hand BLAS shapes it loses); with the tiles
    chosen, the row keeps that count ("threads", "threads_ms") and its time loops' splits ("splits").
    counts: the tiles' thread counts to time (default _counts_to_time())."""
    rng = np.random.default_rng(0)
    tiny, run = _pass(shape._replace(B=2, T=2, D=3, H=4, V=5), rng), _pass(shape, rng)
    for way in every_way():  # untimed, on a tiny copy: compiling whatever `charnn compile` did not
        with way:
            tiny()
    counts = counts or _counts_to_time()
    times = _timed(run, [("tiles", n) for n in counts] + [("blas", 1)])  # BLAS has the cores, as prepare gives them
    tiles = {n: times[("tiles", n)] for n in counts}
    counted = _counted(tiles)
    threads = counted.get("threads", counts[0])
    # BLAS only when every BLAS pass beat every tiles pass: within the noise, charnn's own code,
    # whose rounding does not depend on which BLAS build numpy brought
    blas = max(times[("blas", 1)]) < min(tiles[threads])
    row = {"choice": "blas" if blas else "tiles", "tiles_ms": round(_median_ms(tiles[threads]), 3),
           "blas_ms": round(_median_ms(times[("blas", 1)]), 3)}
    if row["choice"] == "tiles":
        row.update(counted, **_splits(shape, rng, threads))
        with numba_threads(threads):
            row["packed"] = measure_packing(run, rng)
    return row


def measure_threads(run) -> dict:
    """{"threads", "threads_ms"} for a pass on the tiles (`run`), as measure finds them; {} where
    the count is not timed (_counts_to_time)."""
    counts = _counts_to_time()
    times = _timed(run, [("tiles", n) for n in counts])
    return _counted({n: times[("tiles", n)] for n in counts})


def thread_counts() -> tuple[int, ...]:
    """The thread counts a training pass is timed on: numba's, then halvings down to one (8, 4, 2, 1)."""
    return halvings(numba.get_num_threads())


QUIET_LOOK_S = 0.05  # right after this process's own parallel region a stray task often shows as runnable


def _quiet(n: int) -> bool:
    """Whether other processes leave this process every CPU it may use, up to n, at some look
    within QUIET_LOOK_S (at once on a quiet machine)."""
    wanted = min(n, cpus())
    return free_cpus(wanted, QUIET_LOOK_S) >= wanted


def _counts_to_time() -> tuple[int, ...]:
    """The tiles' thread counts to time: thread_counts() on a quiet machine; else just the one the
    tiles run on (CHARNN_TRAIN_THREADS's, or numba's while other tasks use the CPUs: what a busy
    moment measured would be kept for good, so a later start measures it; meanwhile each step's
    Pace adapts, threads.py)."""
    if gemm.TRAIN_THREADS is not None:
        return (gemm.TRAIN_THREADS,)
    counts = thread_counts()
    return counts if len(counts) > 1 and _quiet(counts[0]) else counts[:1]


def _counted(tiles: dict) -> dict:
    """{"threads": n, "threads_ms": {"count": median ms}} from the tiles' passes on each count
    {count: [seconds]}: the count of the lowest median; {} for a single count, or where other tasks
    took CPUs by the end (measure_threads)."""
    counts = list(tiles)
    if len(counts) == 1 or not _quiet(counts[0]):
        return {}
    ms = {n: _median_ms(ts) for n, ts in tiles.items()}
    # the median: one pass held up by a stray time slice does not decide (the count changes no result,
    # so unlike BLAS against the tiles neither side needs the benefit of the doubt)
    chosen = min(counts, key=ms.get)
    return {"threads": chosen, "threads_ms": {str(n): round(t, 3) for n, t in ms.items()}}


def _timed(run, ways: list) -> dict:
    """{(products, threads): [seconds]}: `run` timed with its products on `products` ("tiles" or
    "blas", time loops split by panels) and numba on `threads` threads, each way in turn, REPEATS
    rounds, after an untimed pass (first touch); a way is not timed again once no pass of it could
    change measure's choice (_wanted: among them a way CLEARLY slower at its first pass). A pause comes before
    each pass whose products go the other way than the last's: a training run uses one way only,
    and neither may inherit the other's still-spinning threads."""
    times = {way: [] for way in ways}
    last = None
    for _ in range(REPEATS):
        for way in ways:
            if way not in _wanted(times):
                continue
            products, threads = way
            if last not in (None, products):
                time.sleep(SETTLE_S)
            with forced(products, "panels"), numba_threads(threads):
                if last is None:
                    run()
                t0 = time.perf_counter()
                run()
                times[way].append(time.perf_counter() - t0)
            last = products
    return times


def _wanted(times: dict) -> set:
    """The ways of _timed's {(products, threads): [seconds]} that a pass still to come could change
    measure's choice for; the others are not timed further. Not wanted:
    - a way whose first pass was CLEARLY slower than the fastest first pass (the round that times
      every way once decides it, as it would with every pass timed);
    - a way with REPEATS passes;
    - while BLAS can still win: a thread count of the tiles whose median can no longer be the
      lowest (_beaten), unless it is the first count, the one BLAS is held against where the
      CPUs are busy by the end (_counted);
    - once BLAS cannot win (one of its passes as slow as the fastest of each count it may be
      held against: it is chosen only if all its passes beat all of that count's): BLAS, the
      beaten counts, and every count once only one is not beaten."""
    firsts = [ts[0] for ts in times.values() if ts]
    clearly = {way for way, ts in times.items() if ts and ts[0] > CLEARLY * min(firsts)}
    tiles = [way for way in times if way[0] == "tiles"]
    ranges = {way: _median_range(times[way], len(times[way]) if way in clearly else REPEATS) for way in tiles}
    beaten = _beaten(ranges)
    blas = [way for way in times if way[0] == "blas"]
    held_against = [way for way in tiles if way not in beaten or way == tiles[0]]  # what measure may compare BLAS with
    blas_lost = any(times[b] and all(times[t] and max(times[b]) >= min(times[t]) for t in held_against) for b in blas)
    contending = len(tiles) - len(beaten) > 1
    open_ = {way for way in times if way not in clearly and len(times[way]) < REPEATS}
    if blas and not blas_lost:
        return open_ & {*blas, *held_against}
    return open_ & {way for way in tiles if way not in beaten and contending}


def _splits(shape: Shape, rng, threads: int) -> dict:
    """{"splits": measure_splits on `threads` threads} where a step's time loops run on more than one."""
    if threads == 1 or shape.cell == "mlp":
        return {}
    with numba_threads(threads):
        return {"splits": measure_splits(shape, rng)}


def measure_splits(shape: Shape, rng) -> dict:
    """{loop_name: {"split", "panels_ms", "rows_ms"}} for each time loop of `shape`: the layer
    function (forward, or backward on its cache) run with each split forced, its time loop alone
    timed (layers.loop_clock), the two raced (_race); the rows split where its median is the lower."""
    B, T, H = shape.B, shape.T, shape.H
    G = GATES[shape.cell] * H
    forward, backward = getattr(layers, f"{shape.cell}_forward"), getattr(layers, f"{shape.cell}_backward")
    h0 = np.zeros((B, H), np.float32)
    found = {}
    try:
        for width in [0] if shape.L == 1 else [0, H]:  # layer 0 reads ids (loop_name's width 0), later layers h
            if width == 0:  # ids into a (V, D) table
                D = shape.D
                table = (rng.standard_normal((shape.V, D)) * 0.5).astype(np.float32)
                x = Embedded(rng.integers(0, shape.V, (B, T, 1)).astype(np.int32), table)
            else:
                D = H
                x = (rng.standard_normal((B, T, D)) * 0.5).astype(np.float32)
            Wx, Wh, b = [(rng.standard_normal(s) * 0.1).astype(np.float32) for s in ((D, G), (H, G), (G,))]
            dhs = (rng.standard_normal((B, T, H)) * 0.1).astype(np.float32)
            state = (h0, h0) if shape.cell == "lstm" else (h0,)
            with forced("tiles", "panels"):
                cache = forward(x, *state, Wx, Wh, b)[-1]
            passes = {"forward": lambda: forward(x, *state, Wx, Wh, b), "backward": lambda: backward(dhs, cache)}
            for direction, run in passes.items():
                def loops(split, run=run):  # the time loops' seconds in one run of the layer function
                    layers.loop_clock = []
                    with forced("tiles", split):
                        run()
                    return sum(layers.loop_clock)
                ms = _race({split: functools.partial(loops, split) for split in SPLITS})
                found[loop_name(f"{shape.cell}_{direction}", width, H)] = {"split": "rows" if ms["rows"] < ms["panels"] else "panels",
                                                     "panels_ms": round(ms["panels"], 3), "rows_ms": round(ms["rows"], 3)}
    finally:
        layers.loop_clock = None
    return found


def measure_packing(run, rng) -> dict:
    """{product_name: {"pack", "direct_ms", "packed_ms"}} for each product of the pass `run` (on the
    tiles): that product on random arrays of its shape and A's layout (transposed or row-major),
    with A read in place and packed first, raced (_race); "pack" where the packed median is the
    lower. The two compute the same bits, so only the speed is at stake."""
    gemm.products_seen = seen = {}
    try:
        with forced("tiles", "panels", pack=False):
            run()
    finally:
        gemm.products_seen = None
    found = {}
    for name, (M, K_, N, transposed) in sorted(seen.items()):
        A = rng.standard_normal((K_, M) if transposed else (M, K_), dtype=np.float32)
        A = A.T if transposed else A  # X.T, as a weight gradient's; or row-major
        Bm = rng.standard_normal((K_, N), dtype=np.float32)
        B, out = gemm.Packed(Bm, gemm.pack_panels(Bm)), np.empty((M, N), np.float32)

        def product(pack, A=A, B=B, out=out):  # gemm.matmul as training calls it
            with forced("tiles", "panels", pack=pack):
                t0 = time.perf_counter()
                gemm.matmul(A, B, out=out)
                return time.perf_counter() - t0
        ms = _race({"direct": functools.partial(product, False), "packed": functools.partial(product, True)})
        found[name] = {"pack": ms["packed"] < ms["direct"], "direct_ms": round(ms["direct"], 3), "packed_ms": round(ms["packed"], 3)}
    return found


def choose(shape: Shape, default: bool = False, say=None) -> str:
    """Make `shape`'s choice the one in effect in this process, measuring it first if this machine
    has not (saying so through `say`); default=True also records it as the choice outside training.
    A shape measured on the tiles without its thread count (measured while the CPUs were busy, or by
    an earlier charnn) gets the count measured now, if the CPUs are free: the choice itself stays."""
    known = TABLE.known()
    if shape.name not in known:
        counts = _counts_to_time()  # the ones said are the ones timed
        if say:
            say(f"timing a training step of {shape.name} with register tiles on {_listed(counts)} "
                f"thread{'s' * (counts != (1,))} and with BLAS (once on this machine) ...")
        TABLE.record(shape.name, measure(shape, counts))
    elif _lacks_threads(known[shape.name]) and _quiet(numba.get_num_threads()):
        if say:
            say(f"timing a training step of {shape.name} on {_listed(thread_counts())} threads (once on this machine) ...")
        rng = np.random.default_rng(0)
        row = {**known[shape.name], **measure_threads(_pass(shape, rng))}
        threads = row.get("threads", numba.get_num_threads())
        if threads != numba.get_num_threads():  # its splits were timed on numba's count: again on this one
            row.pop("splits", None)
            row.update(_splits(shape, rng, threads))
        TABLE.record(shape.name, row)
    default_row = {**known[shape.name], "shape": shape.name}
    if default and known.get(DEFAULT) != default_row:  # written only when it changes
        TABLE.record(DEFAULT, default_row)
    TABLE.active = shape.name
    return known[shape.name]["choice"]


def _listed(counts) -> str:
    """(8, 4, 2, 1) -> "1, 2, 4 and 8"."""
    words = [str(n) for n in sorted(counts)]
    return " and ".join([", ".join(words[:-1]), words[-1]]) if len(words) > 1 else words[0]


def _lacks_threads(row: dict) -> bool:
    return (row["choice"] == "tiles" and "threads" not in row and numba.get_num_threads() > 1
            and gemm.TRAIN_THREADS is None)
