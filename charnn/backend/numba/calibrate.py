"""Measuring whether this machine trains a given shape faster with charnn's register tiles or with
numpy's BLAS (the answer is kept by policy.py).

Both are timed on what a training step really runs, not on products alone: one forward and
backward pass of the shape's recurrent layers and softmax head, through layers.py, on random
weights, alternating between the two ways a few times (with a pause at each switch, so that
neither inherits the other's still-spinning threads) and keeping the medians. Products timed
alone mislead: BLAS can win a product in isolation and still lose the step, because its threads
and numba's compete for the cores between products (bench/README.md, "Tiles or BLAS").

With the tiles on more than one thread, each of the shape's time loops (forward and backward, per
input width) is then timed split both ways, by panels and by batch rows (kernels.py): the rows
split wins where the weights fit each core's cache, and loses where they do not, which depends on
the CPU. Both splits compute the same bits, so this choice changes only the speed.
"""
from __future__ import annotations

import contextlib
import time
from typing import NamedTuple

import numba
import numpy as np

from ...config import GATES
from ...nn.layers import Embedded
from . import gemm, layers
from .threads import numba_threads
from .policy import DEFAULT, SPLITS, TABLE, loop_name

REPEATS = 3  # timed passes per way (and per split of a time loop)
SETTLE_S = 0.2  # pause before a pass that follows the other way's: idle BLAS threads spin ~0.1 s
CLEARLY = 2.0  # a way this many times slower than the other after its first pass is not timed further
WAYS = (("tiles", "panels"), ("tiles", "rows"), ("blas", "panels"))  # (products, time loops' split): what a step can run


@contextlib.contextmanager
def forced(way: str, split: str):
    """Within the block, the products go to `way` ("tiles" or "blas") and the time loops split by
    `split`, whatever this machine's table says; afterwards as before."""
    before = gemm.MODE, TABLE.forced_split
    gemm.MODE, TABLE.forced_split = way, split
    try:
        yield
    finally:
        gemm.MODE, TABLE.forced_split = before


def every_way():
    """One context manager per way a training step can compute here (WAYS), so that a warm-up
    run inside each compiles every kernel a later run may choose (charnn.compile)."""
    return [forced(way, split) for way, split in WAYS]


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


def measure(shape: Shape) -> dict:
    """{"choice", "tiles_ms", "blas_ms"}: the median time of a pass each way (a way dropped after
    one pass for being CLEARLY slower gets that pass's time), and the choice: BLAS if all its
    passes were faster than all the tiles', else the tiles."""
    rng = np.random.default_rng(0)
    tiny, run = _pass(shape._replace(B=2, T=2, D=3, H=4, V=5), rng), _pass(shape, rng)
    times = {"tiles": [], "blas": []}
    for way in every_way():  # untimed, on a tiny copy: compiling whatever `charnn compile` did not
        with way:
            tiny()
    for _ in range(REPEATS):
        for way, other in (("tiles", "blas"), ("blas", "tiles")):
            if times[way] and times[other] and times[way][0] > CLEARLY * min(times[other]):
                continue
            time.sleep(SETTLE_S)  # a training run uses one way only: neither may inherit the other's spinning threads
            # the tiles timed as they run before their loops' splits are measured; BLAS has the cores, as prepare gives them
            with forced(way, "panels"), numba_threads(1 if way == "blas" else numba.get_num_threads()):
                t0 = time.perf_counter()
                run()
                times[way].append(time.perf_counter() - t0)
    ms = {way: _median_ms(ts) for way, ts in times.items()}
    # BLAS only when every BLAS pass beat every tiles pass: within the noise, charnn's own code,
    # whose rounding does not depend on which BLAS build numpy brought
    blas = max(times["blas"]) < min(times["tiles"])
    row = {"choice": "blas" if blas else "tiles", "tiles_ms": round(ms["tiles"], 3), "blas_ms": round(ms["blas"], 3)}
    if row["choice"] == "tiles" and numba.get_num_threads() > 1 and shape.cell != "mlp":
        row["splits"] = measure_splits(shape, rng)
    return row


def measure_splits(shape: Shape, rng) -> dict:
    """{loop_name: {"split", "panels_ms", "rows_ms"}} for each time loop of `shape`: the layer
    function (forward, or backward on its cache) run with each split forced, alternating, REPEATS
    times each, and its time loop alone timed (layers.loop_clock); the rows split where its median
    is the lower."""
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
                times = {split: [] for split in SPLITS}
                for _ in range(REPEATS + 1):  # the first round untimed: compiling, first touch
                    for split in SPLITS:
                        layers.loop_clock = []
                        with forced("tiles", split):
                            run()
                        times[split].append(sum(layers.loop_clock))
                ms = {split: _median_ms(ts[1:]) for split, ts in times.items()}
                found[loop_name(f"{shape.cell}_{direction}", width, H)] = {"split": "rows" if ms["rows"] < ms["panels"] else "panels",
                                                     "panels_ms": round(ms["panels"], 3), "rows_ms": round(ms["rows"], 3)}
    finally:
        layers.loop_clock = None
    return found


def choose(shape: Shape, default: bool = False, say=None) -> str:
    """Make `shape`'s choice the one in effect in this process, measuring it first if this machine
    has not (saying so through `say`); default=True also records it as the choice outside training."""
    known = TABLE.known()
    if shape.name not in known:
        if say:
            say(f"timing a training step of {shape.name} with register tiles and with BLAS (once on this machine) ...")
        TABLE.record(shape.name, measure(shape))
    default_row = {**known[shape.name], "shape": shape.name}
    if default and known.get(DEFAULT) != default_row:  # written only when it changes
        TABLE.record(DEFAULT, default_row)
    TABLE.active = shape.name
    return known[shape.name]["choice"]
