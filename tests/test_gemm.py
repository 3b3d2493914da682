"""The register-tiled matrix product (kernels.gemm_kernel via charnn.gemm) against numpy.

The kernel runs on any x86 CPU (its vectors are as wide as numba's target allows), so these tests
call it directly and never skip; the calibration that chooses between it and BLAS is tested below. Tolerance: float32 sums of up to 513 products, compared with the float64 product,
relative to its largest entry: numpy's own float32 matmul is off by up to ~1e-6 on these shapes.
"""
import contextlib
import json
import os

import numba
import numpy as np
import pytest

from charnn.backend import get_backend
from charnn.backend.numba import calibrate, gemm, layers, policy, threads
from charnn.config import ModelConfig
from charnn.errors import CharnnError
from charnn.backend.numba import kernels as K

TOL = 3e-6


def rel(a, ref):
    return np.abs(a.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30)


def tiles_product(A, B):
    Bp = np.full((-(-B.shape[1] // K.NR), B.shape[0], K.NR), np.nan, dtype=np.float32)  # padding must be written
    K.pack_panels_kernel(B, Bp)
    C = np.full((A.shape[0], B.shape[1]), np.nan, dtype=np.float32)
    K.gemm_strided(A, Bp, C)  # as gemm.matmul calls the tiles
    return C, Bp


def test_products_of_every_layout_run_one_compiled_tile_kernel(monkeypatch):
    """gemm.matmul reaches gemm_kernel through gemm_strided, which hands it A typed as strided
    whatever A's layout: numba compiles the longest kernel once, not once per layout (~8 s each)."""
    monkeypatch.setattr(gemm, "MODE", "tiles")
    rng = np.random.default_rng(3)
    B = rng.standard_normal((40, 75), dtype=np.float32)
    for A in (rng.standard_normal((9, 40), dtype=np.float32), np.asfortranarray(rng.standard_normal((9, 40), dtype=np.float32)),
              rng.standard_normal((9, 80), dtype=np.float32)[:, ::2]):
        assert rel(gemm.matmul(A, B), A.astype(np.float64) @ B) < TOL
    # what this process called it with, trainings before included (loaded from numba's cache, gemm_strided
    # brings its own copy, and gemm_kernel may show none); nothing calls it with contiguous or F arrays
    assert {sig[0].layout for sig in K.gemm_kernel.signatures} <= {"A"}
    assert {sig[0].layout for sig in K.gemm_strided.signatures} >= {"C", "F", "A"}


@pytest.mark.parametrize("M", [1, 3, 4, 5, 33])
@pytest.mark.parametrize("Kd", [0, 1, 7, 256, 513])
@pytest.mark.parametrize("N", [1, 63, 64, 65, 130])
def test_gemm_kernel_matches_numpy(M, Kd, N):
    rng = np.random.default_rng(M * 1000 + Kd * 10 + N)
    A = rng.standard_normal((M, Kd), dtype=np.float32)
    B = rng.standard_normal((Kd, N), dtype=np.float32)
    C, Bp = tiles_product(A, B)
    ref = A.astype(np.float64) @ B
    assert rel(C, ref) < TOL
    assert rel(A @ B, ref) < TOL  # numpy meets the same bound
    assert not np.isnan(Bp).any() and (Bp[-1, :, N - (Bp.shape[0] - 1) * K.NR:] == 0).all()  # zero padding


def test_strided_operands_and_output():
    """A as a transposed view and as a slice of a 3-D cache, B transposed, C a strided view."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 37), dtype=np.float32)
    H = rng.standard_normal((5, 9, 70), dtype=np.float32)
    W = rng.standard_normal((130, 70), dtype=np.float32)
    for A, B in [(X.T, rng.standard_normal((300, 70), dtype=np.float32)),  # a weight gradient's shape
                 (H[:, 3], W.T)]:  # one recurrent step's h_t, and Wh.T
        ref = A.astype(np.float64) @ B
        C, Bp = tiles_product(A, B)
        assert rel(C, ref) < TOL
        out = np.zeros((A.shape[0], 2 * B.shape[1]), dtype=np.float32)[:, ::2]
        K.gemm_strided(A, Bp, out)
        assert rel(out, ref) < TOL


@pytest.mark.parametrize("M,Kd,N", [(1, 7, 5), (3, 0, 9), (5, 130, 65), (9, 257, 64), (70, 300, 130), (130, 129, 1)])
@pytest.mark.parametrize("transposed", [False, True])
def test_packed_rows_give_gemm_kernels_bits(M, Kd, N, transposed):
    """A packed first (A.T's MR-column panels, gemm_packed_kernel) computes gemm_kernel's products bit for
    bit: the same FMAs in the same order, only A read from a copy, with the rows past the last tile
    padded and not stored, edges and K = 0 included; Ap's padding is written."""
    rng = np.random.default_rng(M * 7 + Kd + N)
    A = rng.standard_normal((Kd, M), dtype=np.float32).T if transposed else rng.standard_normal((M, Kd), dtype=np.float32)
    B = rng.standard_normal((Kd, N), dtype=np.float32)
    C, Bp = tiles_product(A, B)
    Ap = np.full((-(-M // K.MR), Kd, K.MR), np.nan, dtype=np.float32)
    packed = np.full((M, N), np.nan, dtype=np.float32)
    K.gemm_packed_strided(A, Ap, Bp, packed)
    assert np.array_equal(packed, C)
    rows = Ap.transpose(0, 2, 1).reshape(Ap.shape[0] * K.MR, Kd)  # Ap's rows in A's order
    assert not np.isnan(Ap).any() and np.array_equal(rows[:M], A) and (rows[M:] == 0).all()


def test_matmul_packs_a_where_the_table_says(table, monkeypatch):
    """gemm.matmul on the tiles packs A first only for a product the active shape measured faster
    packed (Table.packs; a transposed A, a weight gradient's X.T, and a row-major one are named
    apart), and the result is the same bits; calibrate.forced(pack=...) overrides the table within
    its block."""
    monkeypatch.setattr(gemm, "MODE", "tiles")
    rng = np.random.default_rng(5)
    X, B = rng.standard_normal((300, 37), dtype=np.float32), rng.standard_normal((300, 70), dtype=np.float32)
    name = policy.product_name(37, 300, 70)
    calls = []
    real = K.gemm_packed_strided
    monkeypatch.setattr(K, "gemm_packed_strided", lambda *a: (calls.append(a[0].shape), real(*a)))
    direct = gemm.matmul(X.T, B)
    assert calls == []  # never measured: read in place
    table.record(SHAPE.name, {"choice": "tiles", "tiles_ms": 1.0, "blas_ms": 2.0,
                              "packed": {name: {"pack": True, "direct_ms": 2.0, "packed_ms": 1.0}}})
    table.active = SHAPE.name
    assert np.array_equal(gemm.matmul(X.T, B), direct) and calls == [(37, 300)]
    assert np.array_equal(gemm.matmul(X.T, gemm.pack(B)), direct) and len(calls) == 2  # B packed by the caller too
    gemm.matmul(np.ascontiguousarray(X.T), B)  # row-major A: its own product, never measured: read in place
    assert len(calls) == 2
    with calibrate.forced("tiles", "panels", pack=False):
        gemm.matmul(X.T, B)
    assert len(calls) == 2 and table.forced_pack is None
    assert gemm.decisions()[SHAPE.name] == f"tiles, A packed: {name}"
    row = policy.product_name(37, 300, 70, transposed=False)  # a row-major A measured faster packed
    assert row == "37x300x70" and name == "37x300x70 T"
    table.record(SHAPE.name, {"choice": "tiles", "tiles_ms": 1.0, "blas_ms": 2.0,
                              "packed": {row: {"pack": True, "direct_ms": 2.0, "packed_ms": 1.0}}})
    assert np.array_equal(gemm.matmul(np.ascontiguousarray(X.T), B), direct) and calls[2:] == [(37, 300)]
    gemm.matmul(X.T, B)  # and the transposed one, not measured so, read in place
    assert len(calls) == 3


def test_long_sums_are_as_accurate_as_blas():
    """k is summed in blocks of KB (a 2048-term running sum was 4x less accurate than BLAS)."""
    rng = np.random.default_rng(1)
    worst_tiles, worst_blas = 0.0, 0.0
    for _ in range(5):
        A = rng.standard_normal((8, 2048), dtype=np.float32)
        B = rng.standard_normal((2048, 64), dtype=np.float32)
        ref = A.astype(np.float64) @ B
        worst_tiles = max(worst_tiles, rel(tiles_product(A, B)[0], ref))
        worst_blas = max(worst_blas, rel(A @ B, ref))
    assert worst_tiles < 2 * worst_blas, (worst_tiles, worst_blas)


def test_nan_and_inf_propagate():
    """No fastmath beyond contraction: a NaN in A reaches every entry of its row."""
    A = np.ones((6, 300), dtype=np.float32)
    A[1, 5] = np.nan
    A[5, 299] = np.inf
    B = np.ones((300, 70), dtype=np.float32)
    C, _ = tiles_product(A, B)
    assert np.isnan(C[1]).all() and np.isposinf(C[5]).all()
    assert (C[[0, 2, 3, 4]] == 300).all()


def test_same_result_with_one_or_two_threads():
    """Every output tile is summed by one thread in a fixed order: bit-identical results."""
    rng = np.random.default_rng(2)
    A = rng.standard_normal((37, 300), dtype=np.float32)
    B = rng.standard_normal((300, 200), dtype=np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one, _ = tiles_product(A, B)
        numba.set_num_threads(before)
        two, _ = tiles_product(A, B)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one, two)


@pytest.mark.parametrize("tiles", [True, False])
def test_matmul_wrapper(monkeypatch, tiles):
    """charnn.gemm.matmul: the same product with the tiles on or off, packed or not, out= or not;
    float64 always goes to numpy (the gradient checks run in float64)."""
    monkeypatch.setattr(gemm, "MODE", "tiles" if tiles else "blas")
    rng = np.random.default_rng(3)
    A = rng.standard_normal((9, 40), dtype=np.float32)
    B = rng.standard_normal((40, 75), dtype=np.float32)
    ref = A.astype(np.float64) @ B
    packed = gemm.pack(B)
    assert (packed.panels is not None) == tiles
    out = np.empty((9, 75), dtype=np.float32)
    for result in (gemm.matmul(A, B), gemm.matmul(A, packed), gemm.matmul(A, packed, out=out)):
        assert result.dtype == np.float32 and rel(result, ref) < TOL
    assert np.shares_memory(gemm.matmul(A, packed, out=out), out)
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    assert gemm.pack(B64).panels is None
    assert np.array_equal(gemm.matmul(A64, B64), A64 @ B64)
    with pytest.raises(ValueError, match="do not align"):
        gemm.matmul(A, B.T)


def test_mode_from_environment(monkeypatch):
    """CHARNN_GEMM chooses for every shape; anything else is one clear error."""
    for value, mode in (("", "auto"), ("auto", "auto"), ("tiles", "tiles"), ("blas", "blas")):
        monkeypatch.setenv("CHARNN_GEMM", value)
        assert gemm._mode("CHARNN_GEMM", gemm.MODES) == mode
    monkeypatch.setenv("CHARNN_GEMM", "mkl")
    with pytest.raises(CharnnError, match="CHARNN_GEMM must be one of auto, tiles, blas"):
        gemm._mode("CHARNN_GEMM", gemm.MODES)
    for value, count in (("auto", None), ("", None), ("1", 1), ("64", numba.get_num_threads())):
        monkeypatch.setenv("CHARNN_TRAIN_THREADS", value)
        assert threads.forced_count("CHARNN_TRAIN_THREADS") == count
    for value in ("all", "0", "-1", "1.5"):
        monkeypatch.setenv("CHARNN_TRAIN_THREADS", value)
        with pytest.raises(CharnnError, match="CHARNN_TRAIN_THREADS must be auto or a whole number"):
            threads.forced_count("CHARNN_TRAIN_THREADS")
    monkeypatch.setenv("CHARNN_SPLIT", "columns")
    with pytest.raises(CharnnError, match="CHARNN_SPLIT must be one of auto, panels, rows"):
        gemm._mode("CHARNN_SPLIT", ("auto",) + policy.SPLITS)


@pytest.fixture
def table(tmp_path, monkeypatch):
    """A fresh calibration table in a folder of its own, as the one gemm consults."""
    monkeypatch.setenv("CHARNN_CACHE_DIR", str(tmp_path))
    fresh = policy.Table()
    monkeypatch.setattr(policy, "TABLE", fresh)
    monkeypatch.setattr(gemm, "TABLE", fresh)
    monkeypatch.setattr(calibrate, "TABLE", fresh)
    monkeypatch.setattr(gemm, "MODE", "auto")
    return fresh


SHAPE = calibrate.Shape("lstm", 3, 5, 7, 16, 2, 11)


def test_auto_mode_follows_the_choice_in_effect(table):
    """In auto mode every product goes the way the shape in effect was measured to go."""
    rng = np.random.default_rng(4)
    A = rng.standard_normal((9, 40), dtype=np.float32)
    B = rng.standard_normal((40, 75), dtype=np.float32)
    assert table.current() == "tiles"  # nothing measured yet
    for choice in ("blas", "tiles"):
        table.record(SHAPE.name, {"choice": choice, "tiles_ms": 1.0, "blas_ms": 1.0})
        table.active = SHAPE.name
        assert gemm.use_tiles() == (choice == "tiles") and (gemm.pack(B).panels is not None) == (choice == "tiles")
        assert rel(gemm.matmul(A, B), A.astype(np.float64) @ B) < TOL
        assert gemm.decisions() == {SHAPE.name: choice, "in effect": choice, "shape in effect": SHAPE.name}


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "mlp"])
def test_calibration_times_a_training_pass_both_ways(table, cell, monkeypatch):
    shape = SHAPE._replace(cell=cell, L=1 if cell == "mlp" else 2)
    monkeypatch.setattr(calibrate, "_quiet", lambda n: True)  # as on a quiet machine, whatever else runs
    threads = numba.get_num_threads()
    row = calibrate.measure(shape)
    assert set(row) - {"splits", "threads", "threads_ms", "packed"} == {"choice", "tiles_ms", "blas_ms"}
    assert row["tiles_ms"] > 0 and row["blas_ms"] > 0 and row["choice"] in ("tiles", "blas")
    if row["choice"] == "blas":
        assert row["blas_ms"] < row["tiles_ms"] and "threads" not in row
    assert gemm.MODE == "auto" and table.forced_split is None and layers.loop_clock is None  # restored
    assert numba.get_num_threads() == threads
    if row["choice"] == "tiles" and threads > 1:  # the tiles' pass timed on every count of thread_counts
        assert set(row["threads_ms"]) == {str(n) for n in calibrate.thread_counts()} and row["threads"] in calibrate.thread_counts()
        # the lowest median, as stored (rounded to 1 us: a tie there is still the lower one unrounded)
        assert row["threads"] == threads or row["threads_ms"][str(row["threads"])] <= row["threads_ms"][str(threads)]
    if row["choice"] == "tiles" and row.get("threads", 1) > 1 and cell != "mlp":  # each time loop timed split both ways
        loops = {policy.loop_name(f"{cell}_{d}", D, shape.H) for d in ("forward", "backward") for D in (0, shape.H)}  # layer 0 reads ids
        assert set(row["splits"]) == loops
        for timed in row["splits"].values():  # the faster one (times equal once rounded: either)
            assert timed["split"] in (("rows",) if timed["rows_ms"] < timed["panels_ms"] else
                                      ("panels",) if timed["rows_ms"] > timed["panels_ms"] else policy.SPLITS)
    else:
        assert "splits" not in row
    if row["choice"] == "tiles":  # each product timed with A read in place and packed
        H, D, BT = shape.H, shape.D, shape.B * shape.T
        G = {"lstm": 4, "gru": 3}.get(cell, 1) * H
        if cell != "mlp":
            assert policy.product_name(H, BT, G) in row["packed"]  # dWh (and, past layer 0, dWx)
            assert policy.product_name(BT, G, H, transposed=False) in row["packed"]  # layer 1's dx
        assert policy.product_name(H, BT, shape.V) in row["packed"]  # the head's dW
        assert policy.product_name(BT, H, shape.V, transposed=False) in row["packed"]  # the head's logits
        for timed in row["packed"].values():
            assert timed["pack"] == (timed["packed_ms"] < timed["direct_ms"]) or timed["packed_ms"] == timed["direct_ms"]
    else:
        assert "packed" not in row
    assert table.forced_pack is None and gemm.products_seen is None


@pytest.fixture
def two_threads():
    if numba.get_num_threads() < 2:
        pytest.skip("numba runs on one thread here: no thread count to choose")


class Counted:
    """Stands in for calibrate.numba_threads and a pass: pass i takes seconds(n, i) on n threads,
    read from a clock that only the passes move."""

    def __init__(self, seconds):
        self.seconds, self.n, self.now, self.passes = seconds, None, 0.0, []

    @contextlib.contextmanager
    def threads(self, n):
        self.n = n
        yield
        self.n = None

    def run(self):
        self.now += self.seconds(self.n, len(self.passes))
        self.passes.append(self.n)


@pytest.mark.parametrize("seconds, chosen", [
    (lambda n, i: 0.01 * n, 1),  # fewer threads always faster: one
    (lambda n, i: 0.01 / n, 8),  # more always faster: all, and one thread CLEARLY slower is timed once
    (lambda n, i: (0.010 if n == 8 else 0.009 if n == 4 else 0.05) + (0.002 if i == 8 else 0), 4),  # one slow pass of 4 does not decide
    (lambda n, i: {8: 0.010, 4: 0.05, 2: 0.0095, 1: 0.008}[n] + (0.003 if i == 7 else 0), 1),
    (lambda n, i: {8: 0.010, 4: 0.012, 2: 0.0095, 1: 0.015}[n] + (0.02 if i in (1, 5) else 0), 2),  # 8's median is its slow one
])
def test_the_thread_count_is_the_one_of_the_lowest_median(monkeypatch, seconds, chosen):
    counted = Counted(seconds)
    monkeypatch.setattr(calibrate, "thread_counts", lambda: (8, 4, 2, 1))
    monkeypatch.setattr(calibrate, "numba_threads", counted.threads)
    monkeypatch.setattr(calibrate.time, "perf_counter", lambda: counted.now)
    monkeypatch.setattr(calibrate, "_quiet", lambda n: True)
    found = calibrate.measure_threads(counted.run)
    assert found["threads"] == chosen and set(found["threads_ms"]) == {"8", "4", "2", "1"}
    assert counted.passes[0] == 8  # the untimed pass first (first touch), then the timed ones
    timed = counted.passes[1:]
    assert timed[:4] == [8, 4, 2, 1]  # alternating
    if chosen == 8 and seconds(1, 0) > 2 * seconds(8, 0):
        assert timed.count(1) == 1  # CLEARLY slower
    assert len(timed) <= 4 * calibrate.REPEATS
    monkeypatch.setattr(calibrate, "_quiet", lambda n: False)  # other tasks use the CPUs: nothing measured
    counted.passes.clear()
    assert calibrate.measure_threads(counted.run) == {} and counted.passes == []  # one count: nothing to time it against


def _measured(monkeypatch, passes: dict, counts: tuple, wanted, busy_at_end=False) -> tuple[dict, int]:
    """calibrate.measure's row for a pass whose k-th run on each way (products, threads) takes
    passes[way][k] seconds, and the number of runs; `wanted` in place of calibrate._wanted;
    busy_at_end: other tasks take CPUs by the end (the tiles then compared with BLAS on counts[0])."""
    clock, runs, mode = [0.0], {}, {}

    @contextlib.contextmanager
    def on(n):
        mode["threads"] = n
        yield

    def run():
        way = (gemm.MODE, mode["threads"])
        clock[0] += passes[way][runs.get(way, 0)]
        runs[way] = runs.get(way, 0) + 1

    monkeypatch.setattr(calibrate, "_pass", lambda shape, rng: run)
    monkeypatch.setattr(calibrate, "every_way", lambda: [])
    monkeypatch.setattr(calibrate, "numba_threads", on)
    monkeypatch.setattr(calibrate.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(calibrate, "SETTLE_S", 0.0)
    monkeypatch.setattr(calibrate, "_quiet", lambda n: not (busy_at_end and sum(runs.values())))
    monkeypatch.setattr(calibrate, "_splits", lambda shape, rng, threads: {})
    monkeypatch.setattr(calibrate, "measure_packing", lambda run, rng: {})
    monkeypatch.setattr(calibrate, "_wanted", wanted)
    return calibrate.measure(SHAPE, counts), sum(runs.values())


def test_calibration_stops_timing_what_cannot_change_its_choice(monkeypatch):
    """Random pass times, noisy, with spikes: the choice (tiles or BLAS, and the thread count) is
    the one that timing every way REPEATS times makes, with fewer passes."""
    def every_pass(times):  # what _timed timed before: REPEATS passes of each way, CLEARLY slower ones once
        firsts = [ts[0] for ts in times.values() if ts]
        return {way for way, ts in times.items() if len(ts) < calibrate.REPEATS and not (ts and ts[0] > calibrate.CLEARLY * min(firsts))}

    wanted = calibrate._wanted
    # two threads beaten by one, but BLAS is held against two where the CPUs are busy by the end: its third pass counts
    passes = {("tiles", 2): [1.0, 1.0, 1.0, 0.5], ("tiles", 1): [0.8] * 4, ("blas", 1): [0.9] * 4}
    for busy, chosen in ((False, ("tiles", 1)), (True, ("tiles", None))):
        assert [(row["choice"], row.get("threads")) for row, _ in (_measured(monkeypatch, passes, (2, 1), w, busy)
                                                                   for w in (every_pass, wanted))] == [chosen] * 2
    rng = np.random.default_rng(11)
    saved = 0
    for case in range(400):
        counts = (8, 4, 2, 1) if case % 2 else (2, 1)
        ways = [("tiles", n) for n in counts] + [("blas", 1)]
        base = {way: rng.uniform(0.5, 2.0) for way in ways}
        sigma = rng.uniform(0.0, 0.4)
        passes = {way: [base[way] * rng.lognormal(0, sigma) * (rng.uniform(1.5, 3) if rng.random() < 0.1 else 1)
                        for _ in range(calibrate.REPEATS + 1)] for way in ways}
        busy = case % 3 == 2
        full, full_runs = _measured(monkeypatch, passes, counts, every_pass, busy)
        fast, fast_runs = _measured(monkeypatch, passes, counts, wanted, busy)
        assert (fast["choice"], fast.get("threads")) == (full["choice"], full.get("threads")), (case, passes)
        assert fast_runs <= full_runs
        saved += full_runs - fast_runs
    assert saved > 400  # more than a pass a case


def test_a_split_or_packing_stops_timing_once_the_lower_median_is_known():
    """Two ways raced (calibrate._race: an untimed round, then up to REPEATS): where it stops
    early, the passes left out could not change which median is the lower (a tie goes to the
    second way, as measure_splits and measure_packing have it)."""
    rng = np.random.default_rng(5)
    early = 0
    for _ in range(2000):
        a, b = (list(rng.lognormal(0, 0.3, calibrate.REPEATS + 1) * rng.uniform(0.7, 1.4)) for _ in range(2))
        lower = calibrate._median_ms(a[1:]) < calibrate._median_ms(b[1:])  # every timed pass
        left = {"a": iter(a), "b": iter(b)}
        ms = calibrate._race({name: (lambda name=name: next(left[name])) for name in left})
        early += len(list(left["a"])) > 0
        assert ms["a"] < ms["b"] if lower else ms["a"] > ms["b"]
    assert early > 300
    assert calibrate._median_range([0.3, 0.1], 3) == (0.1, 0.3) and calibrate._median_range([0.2], 3) == (0.0, float("inf"))
    assert calibrate._median_range([0.1, 0.3, 0.2], 3) == (0.2, 0.2)


def test_calibration_thread_counts_halve_down_to_one():
    counts = calibrate.thread_counts()
    assert counts[0] == numba.get_num_threads() and counts[-1] == 1
    assert all(a // 2 == b for a, b in zip(counts, counts[1:]))


def test_a_shape_measured_without_its_thread_count_gets_it_later(table, monkeypatch, two_threads):
    """A row of the tiles without "threads" (the CPUs were busy, or an earlier charnn) gets its
    count measured at a later start, once, the choice kept; fewer threads: its splits timed again
    on that count; training then runs on it, CHARNN_TRAIN_THREADS overriding."""
    row = {"choice": "tiles", "tiles_ms": 1.0, "blas_ms": 2.0, "splits": {"old": {"split": "rows"}}}
    table.record(SHAPE.name, dict(row))
    said, timed = [], []
    monkeypatch.setattr(calibrate, "_quiet", lambda n: False)
    assert calibrate.choose(SHAPE, say=said.append) == "tiles" and said == [] and "threads" not in table.known()[SHAPE.name]
    monkeypatch.setattr(calibrate, "_quiet", lambda n: True)
    monkeypatch.setattr(calibrate, "measure_threads", lambda run: timed.append(run) or {"threads": 1, "threads_ms": {"2": 2.0, "1": 1.0}})
    monkeypatch.setattr(calibrate, "measure", lambda shape, counts=None: pytest.fail("the choice measured again"))
    monkeypatch.setattr(calibrate, "measure_splits", lambda shape, rng: pytest.fail("splits timed on one thread"))
    assert calibrate.choose(SHAPE, say=said.append) == "tiles" and calibrate.choose(SHAPE, say=said.append) == "tiles"
    assert len(timed) == 1 and len(said) == 1 and "on 1 and 2 threads" in said[0] and "once on this machine" in said[0]
    stored = policy.Table().known()[SHAPE.name]
    assert stored == {"choice": "tiles", "tiles_ms": 1.0, "blas_ms": 2.0, "threads": 1, "threads_ms": {"2": 2.0, "1": 1.0}}
    assert table.threads() == 1 and gemm.decisions()[SHAPE.name] == "tiles on 1 thread"
    config = ModelConfig(model="lstm", vocab_size=SHAPE.V, hidden=SHAPE.H, layers=SHAPE.L, embed=SHAPE.D)
    numba_backend = get_backend("numba")
    with numba_backend.prepare(config, SHAPE.B, SHAPE.T) as choice:
        assert choice == "tiles" and numba.get_num_threads() == 1
    monkeypatch.setattr(gemm, "TRAIN_THREADS", 2)  # CHARNN_TRAIN_THREADS=2, read at import
    with numba_backend.prepare(config, SHAPE.B, SHAPE.T):
        assert numba.get_num_threads() == 2


def test_time_loops_split_as_measured(table, monkeypatch):
    """A loop measured faster split by rows runs split by rows (numba's thread count of parts), any
    other by panels; CHARNN_SPLIT overrides the table."""
    table.record(SHAPE.name, {"choice": "tiles", "tiles_ms": 1.0, "blas_ms": 2.0,
                              "splits": {policy.loop_name("lstm_forward", 7, 16): {"split": "rows", "panels_ms": 2.0, "rows_ms": 1.0},
                                         policy.loop_name("lstm_backward", 7, 16): {"split": "panels", "panels_ms": 1.0, "rows_ms": 2.0}}})
    table.active = SHAPE.name
    threads = numba.get_num_threads()
    assert gemm.loop_parts("lstm_forward", 7, 16) == threads and gemm.loop_parts("lstm_backward", 7, 16) == 1
    assert gemm.loop_parts("lstm_forward", 16, 16) == 1 and gemm.loop_parts("gru_forward", 7, 16) == 1  # never measured
    monkeypatch.setattr(gemm, "SPLIT_MODE", "panels")
    assert gemm.loop_parts("lstm_forward", 7, 16) == 1
    monkeypatch.setattr(gemm, "SPLIT_MODE", "rows")
    assert gemm.loop_parts("lstm_backward", 7, 16) == threads
    assert gemm.decisions()[SHAPE.name] == "tiles, rows split: lstm_forward D7 H16"
    assert policy.loop_name("lstm_forward", 0, 16) == "lstm_forward ids H16"  # a first layer's loop


def test_choice_is_measured_once_stored_and_reused(table, monkeypatch):
    """The first run of a shape measures it and writes the file; a new process (a new Table)
    reads the same choice back without measuring, so the same seed gives the same losses."""
    calls, said = [], []
    monkeypatch.setattr(calibrate, "measure", lambda shape, counts=None: calls.append(shape) or {"choice": "blas", "tiles_ms": 2.0, "blas_ms": 1.0})
    assert calibrate.choose(SHAPE, say=said.append) == "blas" and calibrate.choose(SHAPE, say=said.append) == "blas"
    assert calls == [SHAPE] and len(said) == 1 and "once on this machine" in said[0]
    assert table.active == SHAPE.name and table.current() == "blas"
    with open(policy.path(), encoding="utf-8") as f:
        (section,) = json.load(f)["sections"]
    assert section["key"] == policy.key() and section["shapes"][SHAPE.name]["choice"] == "blas"
    again = policy.Table()
    assert again.known() == {SHAPE.name: {"choice": "blas", "tiles_ms": 2.0, "blas_ms": 1.0}}
    assert again.current() == "tiles"  # no default recorded: outside training the tiles
    calibrate.choose(SHAPE, default=True)
    assert policy.Table().current() == "blas" and len(calls) == 1


OTHER = '{"key": {"cpu_model": "another"}, "shapes": {"x": {"choice": "tiles"}}}'


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"sections": 3}', '{"sections": [' + OTHER + ']}',
                                     '{"sections": [{"key": null, "shapes": {"x": {"choice": "gpu"}}}]}'])
def test_calibration_file_of_another_machine_or_damaged_is_measured_again(table, monkeypatch, content):
    monkeypatch.setattr(calibrate, "measure", lambda shape, counts=None: {"choice": "blas", "tiles_ms": 3.0, "blas_ms": 1.0})
    os.makedirs(policy.cache_folder(), exist_ok=True)
    with open(policy.path(), "w", encoding="utf-8") as f:
        f.write(content)
    assert calibrate.choose(SHAPE) == "blas"
    assert policy.Table().known() == {SHAPE.name: {"choice": "blas", "tiles_ms": 3.0, "blas_ms": 1.0}}
    with open(policy.path(), encoding="utf-8") as f:
        sections = json.load(f)["sections"]
    assert (json.loads(OTHER) in sections) == (OTHER in content)  # another configuration's answers are kept


def test_calibration_in_an_unwritable_place_still_decides(table, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("CHARNN_CACHE_DIR", str(blocker / "cache"))  # below a file: cannot be created
    monkeypatch.setattr(calibrate, "measure", lambda shape, counts=None: {"choice": "blas", "tiles_ms": 1.0, "blas_ms": 0.5})
    assert calibrate.choose(SHAPE) == "blas" and table.current() == "blas"


def test_cache_folder_default(monkeypatch):
    monkeypatch.delenv("CHARNN_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert policy.cache_folder() == os.path.join("/somewhere", "charnn")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert policy.cache_folder() == os.path.join(os.path.expanduser("~"), ".cache", "charnn")


def test_training_prepares_its_shape(tmp_path, corpus_file, table):
    """charnn.train chooses for its own shape before the first step, says when it measures, and
    leaves the choice in effect before it as it was."""
    import charnn
    from charnn.train import Reporter

    messages = []

    class Listener(Reporter):
        def message(self, text):
            messages.append(text)

    config = charnn.TrainConfig(corpus=str(corpus_file), model="gru", hidden=16, layers=1, embed=8, batch_size=4,
                                seq_len=8, steps=2, eval_every=2, out=str(tmp_path / "m.npz"))
    charnn.train(config, reporter=Listener())
    (name,) = [n for n in table.known()]
    assert name.startswith("gru 1x16 D8 ") and name.endswith(" B4 T8") and table.active is None
    assert any("register tiles on" in m and "and with BLAS" in m for m in messages)


def test_tile_uses_the_targets_full_vector_width():
    """The tile's sums live in registers as wide as the target has (zmm with AVX-512), even where
    LLVM's tuning would cap its vectoriser at 256 bits (Intel cores): the vectors are explicit."""
    from numba import njit

    from charnn.backend.numba.target import target, target_lanes

    @njit(fastmath={"contract"}, error_model="numpy")
    def one_tile(A, Bp, C):  # not cached, so its machine code can be inspected
        K._gemm_tile(A, Bp, 0, 0, K.MR, 0, A.shape[1], C, K.NR)

    rng = np.random.default_rng(5)
    A = rng.standard_normal((K.MR, 37), dtype=np.float32)
    B = rng.standard_normal((37, K.NR), dtype=np.float32)
    Bp = np.empty((1, 37, K.NR), np.float32)
    K.pack_panels_kernel(B, Bp)
    C = np.empty((K.MR, K.NR), np.float32)
    one_tile(A, Bp, C)
    assert rel(C, A.astype(np.float64) @ B) < TOL
    asm = "".join(one_tile.inspect_asm().values())
    assert K.LANES == target_lanes() and K.NR % K.LANES == 0
    assert ("zmm" in asm) == (K.LANES == 16)
    assert ("vfmadd" in asm) == ("+fma" in target()["features"].split(","))  # fused where the CPU has FMA


INTEL_TUNING_CHILD = """
import json, re
import numpy as np
from numba import njit
from charnn.backend.numba import kernels as K
from charnn.backend.numba.target import target_lanes

def fmas(dispatcher, signature):  # compiled, never run: the host need not have the target's features
    dispatcher.compile(signature)
    found = re.findall(r"vfmadd\\w*\\s+[^\\n]*", "".join(dispatcher.inspect_asm().values()))
    return {"zmm": sum("zmm" in f for f in found), "ymm": sum("ymm" in f for f in found)}

@njit(fastmath={"contract"}, error_model="numpy")
def plain(a, b, c):  # the same arithmetic as a loop, left to LLVM's vectoriser
    for j in range(c.shape[0]):
        c[j] += a[j] * b[j]

def arithmetic(dispatcher, signature):  # the vector instructions of a kernel's math
    dispatcher.compile(signature)
    found = re.findall(r"\\tv(?:fn?madd|mul|add|sub|div)\\w*ps\\s+[^\\n]*", "".join(dispatcher.inspect_asm().values()))
    return {"zmm": sum("zmm" in f for f in found), "ymm": sum("ymm" in f for f in found)}

def rows(n):  # n contiguous float32 rows
    return "void(" + ", ".join(["float32[::1]"] * n) + ")"

print(json.dumps({"lanes": target_lanes(), "gemm": fmas(K.gemm_kernel, "void(float32[:, :], float32[:, :, ::1], float32[:, ::1])"),
                  "gemm_packed": fmas(K.gemm_packed_kernel, "void(float32[:, :, ::1], float32[:, :, ::1], float32[:, ::1])"),
                  "plain": fmas(plain, "void(float32[::1], float32[::1], float32[::1])"),
                  "cells": {name: arithmetic(getattr(K, name), signature) for name, signature in (
                      ("lstm_row_forward", rows(8)), ("lstm_row_backward", rows(7)), ("gru_row_forward", rows(7)),
                      ("gru_row_backward", rows(8)), ("lstm_block_forward", rows(4)))},
                  "sampler": {name: arithmetic(getattr(K, name), signature) for name, signature in (
                      ("matvec", "void(float32[::1], float32[:, :, ::1], float32[::1])"),
                      ("batch_matvec", "void(float32[:, ::1], float32[:, :, ::1], float32[:, ::1])"))}}))
"""


def test_tile_and_cells_keep_512_bit_vectors_under_intels_tuning(tmp_path):
    """Compiled for an Intel AVX-512 core (LLVM's "sapphirerapids", which tunes its vectoriser to
    256-bit vectors), the tile's fused multiply-adds, the cells' arithmetic and the sampler's
    products (kernels.lanes) still use zmm registers: the control, a plain loop of the same
    arithmetic, gets ymm from the same compiler. Compile only, so any x86 host checks the code an Intel Xeon would run (before
    the vectors were explicit, the tiles and the cells ran at half width there: bench/README.md,
    "Explicit vectors in the tiles", "Explicit vectors in the cells")."""
    import platform
    import subprocess
    import sys

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("LLVM's x86 targets: this host is " + platform.machine())
    env = dict(os.environ, NUMBA_CPU_NAME="sapphirerapids", NUMBA_CPU_FEATURES="+avx512f",
               NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    done = subprocess.run([sys.executable, "-c", INTEL_TUNING_CHILD], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["lanes"] == 16
    assert found["plain"]["ymm"] > 0 and found["plain"]["zmm"] == 0  # the tuning in effect: 256-bit vectoriser
    assert found["gemm"]["zmm"] > 0 and found["gemm"]["ymm"] == 0
    assert found["gemm_packed"]["zmm"] > 0 and found["gemm_packed"]["ymm"] == 0
    for name, widths in found["cells"].items():
        assert widths["zmm"] > 0 and widths["ymm"] == 0, (name, widths)
    for name, widths in found["sampler"].items():
        assert widths["zmm"] > 0 and widths["ymm"] == 0, (name, widths)


def test_blas_runs_numba_on_one_thread_and_restores(table, monkeypatch):
    """With BLAS doing the products, numba's kernels run on one thread inside prepare's block
    (the two thread pools would fight for the cores); the thread count is restored after it."""
    from charnn.backend.numba import NUMBA
    from charnn.backend.numba.threads import numba_threads
    from charnn.config import ModelConfig

    before = numba.get_num_threads()
    with numba_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    for hidden, choice in ((16, "blas"), (17, "tiles")):
        config = ModelConfig(model="lstm", vocab_size=11, hidden=hidden, layers=2, embed=7)
        monkeypatch.setattr(calibrate, "measure", lambda shape, counts=None, c=choice: {"choice": c, "tiles_ms": 1.0, "blas_ms": 1.0})
        with NUMBA.prepare(config, 3, 5) as chosen:
            assert chosen == choice and gemm.use_tiles() == (choice == "tiles")
            assert numba.get_num_threads() == (1 if choice == "blas" else before)
        assert numba.get_num_threads() == before and table.active is None


def test_sampling_choices_are_kept_beside_the_products_and_damaged_ones_ignored(table):
    """policy.Table keeps batch-1 sampling's thread counts in the same section as the products'
    choices; writing either keeps the other; a damaged sampling entry is dropped, not trusted."""
    product = {"choice": "tiles", "tiles_ms": 1.0, "blas_ms": 2.0}
    sample = {"threads": 2, "us_per_char": {"1": 9.0, "2": 5.0}}
    table.record(SHAPE.name, product)
    table.record_sampling("lstm tanh 2x16, threads 1/2", sample)
    table.record(SHAPE.name, product)
    again = policy.Table()
    assert again.known() == {SHAPE.name: product} and again.sampling() == {"lstm tanh 2x16, threads 1/2": sample}
    with open(policy.path(), encoding="utf-8") as f:
        saved = json.load(f)
    for damaged in ([1, 2], {"a": {"threads": "two"}, "b": {"threads": 0}, "c": 3, "d": {"threads": 1}}):
        saved["sections"][0]["sampling"] = damaged
        with open(policy.path(), "w", encoding="utf-8") as f:
            json.dump(saved, f)
        again = policy.Table()
        assert again.known() == {SHAPE.name: product}
        assert again.sampling() == ({"d": {"threads": 1}} if isinstance(damaged, dict) else {})


def test_a_forced_way_holds_within_its_block_only(table):
    """calibrate.forced: the products and time loops go the forced way inside, whatever the table
    says, and as before afterwards, also when the block raises."""
    table.record(SHAPE.name, {"choice": "tiles", "tiles_ms": 1.0, "blas_ms": 2.0})
    table.active = SHAPE.name
    with calibrate.forced("blas", "rows"):
        assert not gemm.use_tiles() and table.split("lstm_forward", 7, 16) == "rows"
    with pytest.raises(KeyError), calibrate.forced("tiles", "rows"):
        raise KeyError
    assert gemm.MODE == "auto" and table.forced_split is None and gemm.use_tiles()
    assert table.split("lstm_forward", 7, 16) == "panels"


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_the_training_warm_up_runs_every_way_a_step_can_compute(table, monkeypatch, backend):
    """`charnn compile` runs its tiny training steps in every way the backend can compute them, so
    that whichever the calibration chooses later (tiles or BLAS, time loops split by panels or by
    rows) is compiled already: none compiles while it is being timed, or during a training run."""
    import charnn.compile as warm

    seen = []
    real = warm.train_step

    def recording(model, *args, **kwargs):
        seen.append((model.config.model, gemm.use_tiles(), table.split("lstm_forward", 8, 8), table.packs("any")))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(warm, "train_step", recording)
    warm.warm_up_training(backend)
    models = {"lstm", "gru", "rnn", "mlp"}
    if backend == "numpy":  # one way: the reference
        assert {m for m, _, _, _ in seen} == models and len(seen) == 10
        return
    ways = {(way == "tiles", split, way == "tiles" and split == "rows") for way, split in calibrate.WAYS}
    assert ways == {(True, "panels", False), (True, "rows", True), (False, "panels", False)}  # the tiles with A packed once
    for model in models:
        assert {(tiles, split, packs) for m, tiles, split, packs in seen if m == model} == ways, model
    assert gemm.MODE == "auto" and table.forced_split is None and table.forced_pack is None
