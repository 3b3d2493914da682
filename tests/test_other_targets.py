"""The compiled fast path on CPUs without AVX-512, whatever CPU runs the tests: a child process
with numba's target forced to another CPU (NUMBA_CPU_FEATURES="" so that none of the host's own
features are added) compiles the kernels for it and checks them against the numpy reference:
Haswell (AVX2 and FMA: a laptop without AVX-512), and x86-64 itself (SSE2 only, no FMA: the
oldest CPU numba compiles for). The product kernels then use 8-lane vectors and their 4 x 24 tile
on Haswell, 4-lane ones and a 4 x 12 tile on x86-64.
Batch-1 sampling runs there too, serially and on two threads (its atomic counters compiled for
that target).
A third child keeps the host's target but gives the kernels AVX-512's geometry: 16-float vectors,
the 6 x 64 tile, 16-float sampling panels. LLVM splits each such vector into the registers the
host has, so the code an AVX-512 CPU runs (its masks, tile and panel edges) is checked against the
reference on every CPU, not only on those with AVX-512. Every sum runs in the same order at either
width, so the Haswell child and this one must agree bit for bit (a digest of all their results).
"""
import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

# Run before anything imports the numba backend: kernels.py reads its LANES from target_lanes
# at import. The module is loaded alone, so its package's __init__ (which imports kernels) waits.
WIDE = textwrap.dedent("""
    import importlib.util, os, sys
    import charnn
    path = os.path.join(os.path.dirname(charnn.__file__), "backend", "numba", "target.py")
    spec = importlib.util.spec_from_file_location("charnn.backend.numba.target", path)
    sys.modules[spec.name] = target_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(target_module)
    target_module.target_lanes = lambda: 16
""")

CHILD = textwrap.dedent("""
    import hashlib
    import json
    import os
    import tempfile
    import llvmlite.binding
    import numpy as np
    from charnn.backend.numba import gemm, kernels as K, layers as fast
    from charnn.backend.numba.target import target, target_lanes
    from charnn.nn import gru, layers, lstm, rnn

    out = {"target": target(), "lanes": target_lanes(), "tile": [K.MR, K.NR]}
    rng = np.random.default_rng(0)
    bits = []  # every result the kernels computed, for the digest at the end
    errors = {}
    for M, Kd, N in [(1, 3, 5), (7, 40, 75), (32, 256, 200), (130, 513, 24)]:
        A = rng.standard_normal((M, Kd), dtype=np.float32)
        B = rng.standard_normal((Kd, N), dtype=np.float32)
        ref = A.astype(np.float64) @ B
        got = gemm.matmul(A, gemm.pack(B))
        bits.append(got)
        errors[f"{M}x{Kd}x{N}"] = float(np.abs(got - ref).max() / np.abs(ref).max())
    out["gemm_errors"] = errors
    packed_same = []  # A packed first (gemm.py, where measured faster): the direct product's bits
    for M, Kd, N in [(7, 40, 75), (130, 300, 70)]:
        Bp = gemm.pack_panels(rng.standard_normal((Kd, N), dtype=np.float32))
        for A in (rng.standard_normal((M, Kd), dtype=np.float32), rng.standard_normal((Kd, M), dtype=np.float32).T):
            direct, packed = np.empty((M, N), np.float32), np.empty((M, N), np.float32)
            K.gemm_strided(A, Bp, direct)
            K.gemm_packed_strided(A, np.empty((-(-M // K.MR), Kd, K.MR), np.float32), Bp, packed)
            packed_same.append(bool(np.array_equal(direct, packed)))
    out["packed_a_same_bits"] = packed_same
    x = rng.standard_normal((3, 7, 5)).astype(np.float32) * 0.5
    h0 = rng.standard_normal((3, 16)).astype(np.float32) * 0.5
    cells = {}
    for name, ref_mod, G in (("lstm", lstm, 64), ("gru", gru, 48), ("rnn", rnn, 16)):
        Wx = rng.standard_normal((5, G)).astype(np.float32) * 0.3
        Wh = rng.standard_normal((16, G)).astype(np.float32) * 0.3
        b = rng.standard_normal(G).astype(np.float32) * 0.1
        args = (x, h0, h0, Wx, Wh, b) if name == "lstm" else (x, h0, Wx, Wh, b)
        want, _ = getattr(ref_mod, name + "_forward")(*args)[0], None
        got = getattr(fast, name + "_forward")(*args)[0]
        cells[name] = float(np.abs(got - want).max())
        bits.append(got)
        gemm.SPLIT_MODE = "rows"  # the same layer, each thread the whole sequence for its own rows
        out.setdefault("rows_split_equal", {})[name] = bool(np.array_equal(getattr(fast, name + "_forward")(*args)[0], got))
        gemm.SPLIT_MODE = "auto"
        # the models' first layer: ids into a table, forward and the table's gradient
        xe = layers.Embedded(rng.integers(0, 6, (3, 7, 1)).astype(np.int32), rng.standard_normal((6, 5)).astype(np.float32))
        eargs = (xe,) + args[1:]
        dhs = rng.standard_normal((3, 7, 16)).astype(np.float32) * 0.1
        want, ref_cache = getattr(ref_mod, name + "_forward")(*eargs)[0], getattr(ref_mod, name + "_forward")(*eargs)[-1]
        got, cache = getattr(fast, name + "_forward")(*eargs)[0], getattr(fast, name + "_forward")(*eargs)[-1]
        dtable = getattr(fast, name + "_backward")(dhs, cache)[0]
        dtable_ref = getattr(ref_mod, name + "_backward")(dhs, ref_cache)[0]
        bits += [got, dtable]
        out.setdefault("ids_errors", {})[name] = [float(np.abs(got - want).max()),
                                                  float(np.abs(dtable - dtable_ref).max() / np.abs(dtable_ref).max())]
    out["cell_forward_errors"] = cells
    # batch-1 sampling: the serial run, and the two-thread one (one parallel region, atomic counters)
    from charnn import CharModel, ModelConfig
    from charnn.data.text import Vocab
    from charnn.backend.numba.sampler import recurrent_net
    vocab = Vocab(list("abcdefgh ij.\\n"))
    sampled = {}
    for cell in ("lstm", "gru", "rnn"):
        config = ModelConfig(model=cell, vocab_size=len(vocab), hidden=40, layers=2, embed=8)
        model = CharModel.create(config, vocab, seed=1, backend="numpy")
        for p in model.params.values():
            p += rng.normal(0.0, 0.3, p.shape).astype(p.dtype)
        ids = rng.integers(0, len(vocab), 9)
        state = model.initial_state(1)
        for i in ids:
            want, state = model.step(np.array([i]), state)
        net = recurrent_net(model, 2)
        runs = []
        for threads in (1, 2):
            L, Hp = net.Wh.shape[0], net.Wh.shape[3]
            h, c, ids_out = np.zeros((L, Hp), np.float32), np.zeros((L, Hp), np.float32), np.empty(60, np.int64)
            K.recurrent_sample_kernel(net._replace(threads=threads), h, c, ids, np.linspace(0, 0.99, 60), 1.0, 0, 1.0,
                                      False, ids_out)
            runs.append(ids_out.tolist())
            bits.append(ids_out)
            if threads == 1:  # the logits after the prime, checked against the model's own step
                first = K.recurrent_sample_kernel(net, np.zeros((L, Hp), np.float32), np.zeros((L, Hp), np.float32), ids,
                                                  np.zeros(1), 1.0, 0, 1.0, True, np.empty(1, np.int64))
                error = float(np.abs(first - want[0]).max() / np.abs(want[0]).max())
                bits.append(first)
        # three streams together: on one thread, in two groups, and two threads sharing the unit
        # blocks of the two-block layout: each stream a batch-1 run
        bnet, u3, first3 = recurrent_net(model, 1, Hp), rng.random((3, 30)), np.array([1, 4, 7])
        batch_runs = []
        for layout, parts in ((bnet, 1), (bnet, 2), (net, 2)):
            hb, cb, out3 = np.zeros((L, 3, Hp), np.float32), np.zeros((L, 3, Hp), np.float32), np.empty((3, 30), np.int64)
            K.recurrent_batch_sample_kernel(layout, hb, cb, first3, u3, 1.0, 0, 1.0, False, out3, parts)
            batch_runs.append(out3.tolist())
            bits.append(out3)
        singles = []
        for s_ in range(3):
            o = np.empty(30, np.int64)
            K.recurrent_sample_kernel(net, np.zeros((L, Hp), np.float32), np.zeros((L, Hp), np.float32), first3[s_:s_ + 1],
                                      u3[s_], 1.0, 0, 1.0, False, o)
            singles.append(o.tolist())
        sampled[cell] = {"logits_error": error, "threads_same_ids": runs[0] == runs[1],
                         "batch_same_ids": batch_runs[0] == batch_runs[1] == batch_runs[2] == singles}
    out["sampling"] = sampled
    # a few training steps of a two-layer LSTM: the loops both ways, weight gradients, Adam
    import charnn
    with tempfile.TemporaryDirectory() as folder:
        corpus = os.path.join(folder, "text.txt")
        with open(corpus, "w") as f:
            f.write("".join(vocab.chars[i] for i in rng.integers(0, len(vocab), 3000)))
        result = charnn.train(charnn.TrainConfig(corpus=corpus, model="lstm", hidden=40, layers=2, embed=8, batch_size=4,
                                                 seq_len=16, steps=6, eval_every=6, seed=3, backend="numba",
                                                 out=os.path.join(folder, "m.npz")))
    out["losses"] = [float(x) for x in result.losses]
    bits.append(np.array(out["losses"]))
    out["digest"] = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in bits)).hexdigest()
    asm = "".join(K.gemm_kernel.inspect_asm().values())
    out["zmm_in_gemm"] = "zmm" in asm
    out["ymm_in_gemm"] = "ymm" in asm
    out["fused_in_gemm"] = "vfmadd" in asm  # FMA instructions
    out["fmaf_in_gemm"] = "fmaf" in asm  # a library call per lane: an exact fma on a CPU without FMA
    out["host_features"] = llvmlite.binding.get_host_cpu_features().flatten()
    print(json.dumps(out))
""")


TARGETS = ("haswell", "x86-64", "16 lanes")
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")  # Haswell and x86-64 are x86 CPUs


@pytest.fixture(scope="module")
def children(tmp_path_factory):
    """The three child processes, started together: each compiles the kernels on one core for
    ~3-4 minutes, so side by side they take half the time on two cores. Their output goes to
    files, which no child can fill and block on."""
    folder = tmp_path_factory.mktemp("targets")
    running = {}
    for name in TARGETS if X86 else ("16 lanes",):
        # two numba threads even on a one-core machine, so the rows split really runs in two parts;
        # each its own cache folders: numba's cache and the calibration's table are keyed by the
        # target, not by the kernels' LANES
        slug = name.replace(" ", "-")
        env = dict(os.environ, CHARNN_GEMM="tiles", NUMBA_NUM_THREADS="2", NUMBA_CACHE_DIR=str(folder / f"numba-{slug}"),
                   CHARNN_CACHE_DIR=str(folder / f"charnn-{slug}"))
        code = CHILD
        if name == "16 lanes":
            code = WIDE + CHILD
        else:
            env.update(NUMBA_CPU_NAME=name, NUMBA_CPU_FEATURES="")
        with open(folder / f"{slug}.out", "w") as out, open(folder / f"{slug}.err", "w") as err:
            running[name] = (subprocess.Popen([sys.executable, "-c", code], env=env, stdout=out, stderr=err, cwd=folder),
                             folder / slug)
    yield running
    for process, _ in running.values():
        if process.poll() is None:
            process.kill()
            process.wait()


def found(children, name: str) -> dict:
    """What the child process found on target `name` (for "16 lanes": the host's, at AVX-512's width)."""
    if name not in children:
        pytest.skip(f"{name} is an x86 target; this host is {platform.machine()}")
    process, stem = children[name]
    assert process.wait(timeout=1200) == 0, stem.with_suffix(".err").read_text()[-3000:]
    return json.loads(stem.with_suffix(".out").read_text().strip().splitlines()[-1])


@pytest.fixture(scope="module", params=TARGETS)
def child(request, children):
    return found(children, request.param)


def test_the_tile_fits_the_targets_registers(child):
    if child["lanes"] == 16:  # the host's target at AVX-512's width: zmm only where the host has them
        assert child["tile"] == [6, 64] and not child["fmaf_in_gemm"]
        assert child["zmm_in_gemm"] == ("+avx512f" in child["host_features"].split(","))
        return
    assert child["target"]["features"] == "" and child["target"]["cpu"] in ("haswell", "x86-64")
    assert not child["zmm_in_gemm"]
    if child["target"]["cpu"] == "haswell":  # 256-bit registers and fused multiply-adds
        assert child["lanes"] == 8 and child["tile"] == [4, 24]
        assert child["ymm_in_gemm"] and child["fused_in_gemm"]
    else:  # SSE: 128-bit registers, and a multiply and an add where there is no FMA (not fmaf, ~17x slower)
        assert child["lanes"] == 4 and child["tile"] == [4, 12]
        assert not child["ymm_in_gemm"] and not child["fused_in_gemm"]
    assert not child["fmaf_in_gemm"]


def test_the_vector_width_changes_no_bit(children):
    """Every sum runs over k in the same order whatever the tile's shape or the vectors' width, so
    the AVX2 target and AVX-512's width compute the same bits, products, cells, samples and training
    losses alike (with fused multiply-adds on both: x86-64 has none, so its bits differ)."""
    avx2, wide = found(children, "haswell"), found(children, "16 lanes")
    if "+fma" not in wide["host_features"].split(","):
        pytest.skip("the host has no FMA, so its own target's sums round differently from Haswell's")
    assert len(avx2["losses"]) == 6
    assert avx2["digest"] == wide["digest"]


def test_products_agree_with_numpy(child):
    for shape, error in child["gemm_errors"].items():
        assert error < 3e-6, shape
    assert child["packed_a_same_bits"] == [True] * 4  # row-major and transposed A, two shapes


def test_recurrent_cells_agree_with_the_reference(child):
    for cell, error in child["cell_forward_errors"].items():
        assert error < 2.5e-5, cell


def test_cells_reading_ids_agree_with_the_reference(child):
    assert set(child["ids_errors"]) == {"lstm", "gru", "rnn"}
    for cell, (forward, dtable) in child["ids_errors"].items():
        assert forward < 2.5e-5 and dtable < 2e-5, cell


def test_the_row_split_loops_compute_the_same_bits(child):
    assert child["rows_split_equal"] == {"lstm": True, "gru": True, "rnn": True}


def test_batch_1_sampling_agrees_with_the_model_and_two_threads_sample_the_same_ids(child):
    assert set(child["sampling"]) == {"lstm", "gru", "rnn"}
    for cell, result in child["sampling"].items():
        assert result["logits_error"] < 1e-5 and result["threads_same_ids"], cell
        assert result["batch_same_ids"], cell  # streams together, serially or in groups on threads
