"""The compiled fast path on CPUs without AVX-512, whatever CPU runs the tests: a child process
with numba's target forced to another CPU (NUMBA_CPU_FEATURES="" so that none of the host's own
features are added) compiles the kernels for it and checks them against the numpy reference:
Haswell (AVX2 and FMA: a laptop without AVX-512), and x86-64 itself (SSE2 only, no FMA: the
oldest CPU numba compiles for). The product kernels then use 8-lane vectors and their 4 x 24 tile
on Haswell, 4-lane ones and a 4 x 12 tile on x86-64.
Batch-1 sampling runs there too, serially and on two threads (its atomic counters compiled for
that target).
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import json
    import numpy as np
    from charnn.backend.numba import gemm, kernels as K, layers as fast
    from charnn.backend.numba.target import target, target_lanes
    from charnn.nn import gru, layers, lstm, rnn

    out = {"target": target(), "lanes": target_lanes(), "tile": [K.MR, K.NR]}
    rng = np.random.default_rng(0)
    errors = {}
    for M, Kd, N in [(1, 3, 5), (7, 40, 75), (32, 256, 200), (130, 513, 24)]:
        A = rng.standard_normal((M, Kd), dtype=np.float32)
        B = rng.standard_normal((Kd, N), dtype=np.float32)
        ref = A.astype(np.float64) @ B
        got = gemm.matmul(A, gemm.pack(B))
        errors[f"{M}x{Kd}x{N}"] = float(np.abs(got - ref).max() / np.abs(ref).max())
    out["gemm_errors"] = errors
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
            if threads == 1:  # the logits after the prime, checked against the model's own step
                first = K.recurrent_sample_kernel(net, np.zeros((L, Hp), np.float32), np.zeros((L, Hp), np.float32), ids,
                                                  np.zeros(1), 1.0, 0, 1.0, True, np.empty(1, np.int64))
                error = float(np.abs(first - want[0]).max() / np.abs(want[0]).max())
        # three streams together: on one thread, in two groups, and two threads sharing the unit
        # blocks of the two-block layout: each stream a batch-1 run
        bnet, u3, first3 = recurrent_net(model, 1, Hp), rng.random((3, 30)), np.array([1, 4, 7])
        batch_runs = []
        for layout, parts in ((bnet, 1), (bnet, 2), (net, 2)):
            hb, cb, out3 = np.zeros((L, 3, Hp), np.float32), np.zeros((L, 3, Hp), np.float32), np.empty((3, 30), np.int64)
            K.recurrent_batch_sample_kernel(layout, hb, cb, first3, u3, 1.0, 0, 1.0, False, out3, parts)
            batch_runs.append(out3.tolist())
        singles = []
        for s_ in range(3):
            o = np.empty(30, np.int64)
            K.recurrent_sample_kernel(net, np.zeros((L, Hp), np.float32), np.zeros((L, Hp), np.float32), first3[s_:s_ + 1],
                                      u3[s_], 1.0, 0, 1.0, False, o)
            singles.append(o.tolist())
        sampled[cell] = {"logits_error": error, "threads_same_ids": runs[0] == runs[1],
                         "batch_same_ids": batch_runs[0] == batch_runs[1] == batch_runs[2] == singles}
    out["sampling"] = sampled
    asm = "".join(K.gemm_kernel.inspect_asm().values())
    out["zmm_in_gemm"] = "zmm" in asm
    out["ymm_in_gemm"] = "ymm" in asm
    out["fused_in_gemm"] = "vfmadd" in asm  # FMA instructions
    out["fmaf_in_gemm"] = "fmaf" in asm  # a library call per lane: an exact fma on a CPU without FMA
    print(json.dumps(out))
""")


@pytest.fixture(scope="module", params=["haswell", "x86-64"])
def child(request, tmp_path_factory):
    """What the child process found on one target."""
    # two numba threads even on a one-core machine, so the rows split really runs in two parts
    env = dict(os.environ, NUMBA_CPU_NAME=request.param, NUMBA_CPU_FEATURES="", CHARNN_GEMM="tiles", NUMBA_NUM_THREADS="2",
               NUMBA_CACHE_DIR=str(tmp_path_factory.mktemp(f"numba-{request.param}")))
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_tile_fits_the_targets_registers(child):
    assert child["target"]["features"] == "" and child["target"]["cpu"] in ("haswell", "x86-64")
    assert not child["zmm_in_gemm"]
    if child["target"]["cpu"] == "haswell":  # 256-bit registers and fused multiply-adds
        assert child["lanes"] == 8 and child["tile"] == [4, 24]
        assert child["ymm_in_gemm"] and child["fused_in_gemm"]
    else:  # SSE: 128-bit registers, and a multiply and an add where there is no FMA (not fmaf, ~17x slower)
        assert child["lanes"] == 4 and child["tile"] == [4, 12]
        assert not child["ymm_in_gemm"] and not child["fused_in_gemm"]
    assert not child["fmaf_in_gemm"]


def test_products_agree_with_numpy(child):
    for shape, error in child["gemm_errors"].items():
        assert error < 3e-6, shape


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
