"""The speed benchmark (bench/harness.py, bench/speed.py) on tiny configurations: the rows have the
promised fields with sensible values. Timings are never asserted, only that they are positive."""
import json
import math
import os
import subprocess
import sys

import pytest

SPEED = os.path.join(os.path.dirname(__file__), "..", "bench", "speed.py")
sys.path.insert(0, os.path.dirname(SPEED))

import harness as bench  # noqa: E402
from harness import CONFIGS, config_by_name, make_config, run_benchmarks  # noqa: E402


def tiny(model="lstm", layers=1, hidden=16):
    return make_config(model, layers, hidden, batch_size=4, seq_len=8)


@pytest.fixture(autouse=True)
def no_settling(monkeypatch):
    monkeypatch.setattr(bench, "SETTLE_S", 0.0)  # the pauses between timed phases only matter for real runs


FAST = dict(steps=2, warmup_steps=1, sample_length=20, sample_repeats=2)


def positive(x):
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_configs_are_the_issues_five():
    assert [c["name"] for c in CONFIGS] == ["lstm-2x128", "lstm-2x256", "lstm-2x512", "gru-2x256", "rnn-1x512"]
    for c in CONFIGS:
        assert (c["batch_size"], c["seq_len"], c["vocab_size"], c["embed"], c["lr"], c["clip"]) == (32, 64, 65, 64, 2e-3, 5.0)
    assert config_by_name("rnn-1x512")["activation"] == "tanh"
    assert config_by_name(" GRU-3x7 ")["name"] == "gru-3x7"
    for bad in ("lstm", "lstm-2x", "mlp-2x256", "lstm-0x16"):
        with pytest.raises(ValueError):
            config_by_name(bad)


def test_flop_count_follows_the_formula():
    # LSTM 2x256, E 64, V 65: per character 6*(D + H)*4H per layer (D = 64, then 256) + 6*H*V for the head
    assert bench.train_flops_per_char(config_by_name("lstm-2x256")) == 6 * (64 + 256) * 1024 + 6 * (256 + 256) * 1024 + 6 * 256 * 65
    assert bench.train_flops_per_char(config_by_name("gru-2x256")) == 6 * (64 + 256) * 768 + 6 * 512 * 768 + 6 * 256 * 65
    assert bench.train_flops_per_char(config_by_name("rnn-1x512")) == 6 * (64 + 512) * 512 + 6 * 512 * 65


def test_make_model_uses_the_backend_asked_for():
    from charnn.backend import DEFAULT_BACKEND

    tiny = config_by_name("lstm-1x16")
    assert bench.make_model(tiny, backend="numpy").backend == "numpy"
    assert bench.make_model(tiny, backend="numba").backend == "numba"
    assert bench.make_model(tiny, backend=None).backend == DEFAULT_BACKEND


def test_training_is_timed_in_rounds():
    """The timed steps are split over alternating rounds, and the row's median covers them all."""
    rows = run_benchmarks([tiny("rnn")], torch=False, backend="numpy", **dict(FAST, steps=5), rounds=2)
    row = rows[0]
    assert row["charnn_train_timed_steps"] == 5 and row["charnn_train_rounds"] == 2
    assert len(row["charnn_train_chars_per_s_by_round"]) == 2 and all(map(positive, row["charnn_train_chars_per_s_by_round"]))
    assert "_times" not in row
    row = run_benchmarks([tiny("rnn")], torch=False, backend="numpy", **FAST, rounds=7)[0]
    assert row["charnn_train_timed_steps"] == 2 and row["charnn_train_rounds"] == 2  # no empty rounds
    with pytest.raises(ValueError, match="rounds"):
        run_benchmarks([tiny("rnn")], torch=False, backend="numpy", **FAST, rounds=0)


@pytest.mark.parametrize("model", ["lstm", "gru", "rnn"])
def test_charnn_rows_without_torch(model):
    config = tiny(model)
    rows = run_benchmarks([config], torch=False, backend="numpy", **FAST)
    assert len(rows) == 1
    row = rows[0]
    assert row["kind"] == "speed" and row["config"] == f"{model}-1x16" and row["backend"] == "numpy"
    for key in ("charnn_train_chars_per_s_median", "charnn_sample_chars_per_s_median", "charnn_train_gflop_per_s_median",
                "charnn_train_step_s_median", "charnn_sample_call_s_median"):
        assert positive(row[key]), key
    assert row["charnn_train_timed_steps"] == 2 and row["charnn_sample_timed_calls"] == 2
    assert row["charnn_params"] == bench.charnn_param_count(config)
    assert row["train_flops_per_step"] == bench.train_flops_per_char(config) * 4 * 8
    assert all(math.isfinite(x) for x in row["charnn_train_loss_first_last"])
    assert row["torch_train_chars_per_s_median"] is None and row["train_ratio_charnn_over_torch"] is None
    assert "torch" in row["torch_note"]
    json.dumps(row)  # every field is JSON


def test_both_backends_give_a_row_each():
    rows = run_benchmarks(["lstm-1x8"], torch=False, backend="both", **dict(FAST, steps=1))
    assert [r["backend"] for r in rows] == ["numba", "numpy"]


def test_the_row_says_how_many_threads_each_timed_step_ran_on():
    import numba

    row = run_benchmarks([tiny("lstm")], torch=False, backend="numba", **dict(FAST, steps=5), rounds=2)[0]
    steps = row["charnn_step_threads"]
    assert sum(steps.values()) == 5 and all(1 <= int(n) <= numba.get_num_threads() for n in steps)  # summed over rounds
    assert run_benchmarks([tiny("lstm")], torch=False, backend="numpy", **FAST)[0]["charnn_step_threads"] == {}


def test_the_row_names_the_calibrations_whole_decision_for_its_shape():
    """Not only tiles or BLAS: the thread count, the time loops' splits and the packed products
    the shape's measured row holds, as `charnn compile` says them."""
    from charnn.backend.numba import gemm

    row = run_benchmarks([tiny("lstm")], torch=False, backend="numba", **dict(FAST, steps=1))[0]
    shape = [name for name in gemm.decisions() if name.startswith("lstm 1x16 ") and name.endswith(" B4 T8")]
    assert len(shape) == 1 and row["charnn_decision"] == gemm.decisions()[shape[0]]
    assert row["charnn_decision"].startswith(row["charnn_products"])
    assert run_benchmarks([tiny("lstm")], torch=False, backend="numpy", **FAST)[0]["charnn_decision"] is None


def test_the_row_says_how_many_characters_the_sampler_stepped_on_how_many_threads(monkeypatch):
    from charnn.backend.numba import compile as numba_compile

    monkeypatch.setenv("CHARNN_SAMPLE_THREADS", "1")  # no timed choice: every character on one thread
    monkeypatch.setattr(numba_compile, "is_compiled", lambda family: True)  # the compiled sampler runs
    row = run_benchmarks([tiny("lstm")], torch=False, backend="numba", **FAST)[0]
    assert row["charnn_sample_path"] == "compiled"
    assert row["charnn_sample_threads"] == {"1": FAST["sample_length"] * FAST["sample_repeats"]}
    assert row["charnn_sample_threads_stored"] is None  # never measured here
    from charnn.backend.numba import sampler
    monkeypatch.setattr(sampler, "stored_threads", lambda model, counts=None: 1)  # as if measured
    row = run_benchmarks([tiny("lstm")], torch=False, backend="numba", **FAST)[0]
    assert row["charnn_sample_threads_stored"] == 1  # what the sampler started from
    monkeypatch.setattr(numba_compile, "is_compiled", lambda family: False)  # a cold cache: the numpy loop
    row = run_benchmarks([tiny("lstm")], torch=False, backend="numba", **FAST)[0]
    assert row["charnn_sample_path"] == "reference" and row["charnn_sample_threads"] == {}  # no count claimed
    assert run_benchmarks([tiny("lstm")], torch=False, backend="numpy", **FAST)[0]["charnn_sample_threads"] == {}


def test_torch_twin_does_the_same_work():
    pytest.importorskip("torch")
    config = tiny("lstm", layers=2)
    (row,) = run_benchmarks([config], torch=True, backend="numpy", **FAST)
    for key in ("torch_train_chars_per_s_median", "torch_sample_chars_per_s_median", "train_ratio_charnn_over_torch",
                "sample_ratio_charnn_over_torch", "torch_train_gflop_per_s_median"):
        assert positive(row[key]), key
    # PyTorch keeps two bias vectors per layer (b_ih, b_hh), charnn one: that is the only difference
    assert row["torch_extra_bias_params"] == 2 * 4 * 16
    assert row["torch_note"] is None and row["torch_threads"] >= 1


def test_startup_row_compiles_into_its_own_temporary_cache():
    """Fresh processes and the installed console script, each with an empty temporary
    NUMBA_CACHE_DIR: nothing of the user's caches is used or touched."""
    from charnn.backend.numba.compile import cache_dir

    def files():
        return sorted(os.listdir(cache_dir())) if os.path.isdir(cache_dir()) else []

    before = files()
    row = bench.startup_times(tiny("rnn"), backend="numba", sample_length=20)
    assert row["kind"] == "startup" and row["cache_files_after_probe"] > 0
    for key in ("probe_cold_import_charnn_s", "probe_cold_first_train_step_s", "probe_cold_first_sample_call_s",
                "probe_warm_first_train_step_s", "probe_warm_first_sample_call_s", "cli_sample_wall_s_cold", "cli_sample_wall_s_warm"):
        assert positive(row[key]), key
    assert files() == before


def test_speed_script_prints_json_lines_only():
    proc = subprocess.run([sys.executable, SPEED, "--configs", "rnn-1x8", "--steps", "1", "--warmup", "0", "--sample-length", "10",
                           "--sample-repeats", "1", "--no-torch", "--no-startup", "--backend", "numpy"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["config"] == "rnn-1x8"
    assert "torch skipped" in proc.stderr
    bad = subprocess.run([sys.executable, SPEED, "--configs", "lstm-big"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "bad configuration name" in bad.stderr


def test_budget_model_specs_name_cell_shape_dropout_and_context():
    import budget

    assert budget.parse_model("lstm:2x256:0.2") == {"model": "lstm", "layers": 2, "hidden": 256, "dropout": 0.2}
    assert budget.parse_model("rnn:1x512") == {"model": "rnn", "layers": 1, "hidden": 512, "dropout": 0.0}
    assert budget.parse_model("mlp:3x512:0.2:16") == {"model": "mlp", "layers": 3, "hidden": 512, "dropout": 0.2,
                                                      "context": 16}


def test_budget_rows_record_charnn_regularisers(corpus_file, capsys):
    import budget

    budget.main([str(corpus_file), "--budget", "1s", "--model", "lstm:1x16:0.1", "--batch-size", "4", "--seq-len", "8",
                 "--embed", "8", "--eval-every", "5", "--weight-drop", "0.3", "--ema", "0.9", "--weight-decay", "0.01"])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["engine"] == "charnn" and row["model"] == "lstm" and row["dropout"] == 0.1
    assert (row["weight_drop"], row["ema"], row["weight_decay"]) == (0.3, 0.9, 0.01)
    assert row["steps"] > 0 and math.isfinite(row["best_val"]) and row["ema_history"]


def _speed_row(config, train, sample, gflops, other=0.01, llvm="znver4"):
    return {"kind": "speed", "config": config, "train_ratio_charnn_over_torch": train, "sample_ratio_charnn_over_torch": sample,
            "charnn_train_gflop_per_s_median": gflops, "torch_train_gflop_per_s_median": gflops / train,
            "charnn_sample_chars_per_s_median": 1000.0 * sample, "torch_sample_chars_per_s_median": 1000.0,
            "charnn_other_processes_cpu_fraction": other, "torch_other_processes_cpu_fraction": 0.0,
            "charnn_decision": "tiles on 2 threads, rows split: lstm_forward ids H256", "charnn_sample_threads_stored": 2,
            "env": {"cpu": "Some CPU", "llvm_cpu": llvm}}


def test_portable_report_runs_both_targets_and_summarises(tmp_path, monkeypatch, capsys):
    """bench/portable.py with its child processes faked: the AVX2 children get the AVX2
    environment, runs alternate between the targets, every raw output lands in a file, and the
    summary gives each configuration's ratios run by run."""
    import portable

    calls = []

    def fake_run(args, isa, say):
        calls.append((isa, args[0] if args[0] == "-c" else os.path.basename(args[0])))
        assert portable.isa_env(isa)["NUMBA_CPU_NAME" if isa == "avx2" else "PATH"]
        if args[0] == "-c":
            return json.dumps({"key": {"cpu_model": "Some CPU (R)", "llvm_cpu": isa}, "shapes": {}})
        if "step_profile" in args[0]:
            return json.dumps({"kind": "profile", "config": "lstm-2x256", "step_ms": 50.0 + len(calls)}) + "\n"
        if "peak" in args[0]:
            return "\n".join(json.dumps(r) for r in (
                {"kind": "fma", "gflop_per_s_1_thread": 100.0, "gflop_per_s_2_threads": 200.0},
                {"kind": "memory", "mb": 1, "read_gb_per_s": 40.0, "read_gb_per_s_2_threads": 90.0},
                {"kind": "memory", "mb": 3, "read_gb_per_s": 30.0, "read_gb_per_s_2_threads": 70.0})) + "\n"
        if "sample_profile" in args[0]:
            return json.dumps({"kind": "sample_profile", "config": "lstm-2x256", "weight_mb": 3.2}) + "\n"
        run = sum(1 for c in calls if c == (isa, "speed.py"))
        llvm = "haswell" if isa == "avx2" else "znver4"
        return json.dumps(_speed_row("lstm-2x256", 1.0 + run / 10 + (isa == "avx2") / 100, 10.0 + run, 150.0, 0.02 * run, llvm)) + "\n"

    monkeypatch.setattr(portable, "_run", fake_run)
    portable.main(["--out-dir", str(tmp_path), "--markdown"])
    speed_calls = [isa for isa, what in calls if what == "speed.py"]
    assert speed_calls == ["native", "avx2", "native", "avx2"]  # alternating
    assert portable.isa_env("avx2", {})["NUMBA_CPU_NAME"] == "haswell" and "NUMBA_CPU_NAME" not in portable.isa_env("native", {})
    wide = portable.isa_env("native-wide", {})
    assert "NUMBA_CPU_NAME" not in wide and wide["NUMBA_CPU_FEATURES"].endswith(",-prefer-256-bit") and "+" in wide["NUMBA_CPU_FEATURES"]
    names = sorted(p.name.split("some-cpu-r-native-")[1] for p in tmp_path.iterdir())  # model and LLVM's core name
    assert names == ["avx2-run1.jsonl", "avx2-run2.jsonl", "decisions.json", "native-run1.jsonl", "native-run2.jsonl",
                     "peak.jsonl", "sample-profile.jsonl", "step-profile-avx2-run1.jsonl", "step-profile-avx2-run2.jsonl", "step-profile-native-run1.jsonl",
                     "step-profile-native-run2.jsonl", "step-profile-native-wide-run1.jsonl", "step-profile-native-wide-run2.jsonl"]
    out, err = capsys.readouterr()
    line, profile, found = [json.loads(l) for l in out.splitlines()]
    assert profile == {"kind": "portable_profile", "config": "lstm-2x256",  # alternating, after the 6 calls before
                       "step_ms": {"native": [57.0, 60.0], "avx2": [58.0, 61.0], "native-wide": [59.0, 62.0]}}
    assert line["kind"] == "portable" and line["config"] == "lstm-2x256"
    assert line["train_ratio"] == {"native": [1.1, 1.2], "avx2": [1.11, 1.21]}
    assert line["sample_ratio"] == {"native": [11.0, 12.0], "avx2": [11.0, 12.0]}
    assert line["llvm_cpu"] == {"native": "znver4", "avx2": "haswell"} and line["max_other_cpu_fraction"] == 0.04
    assert "| lstm-2x256 | 1.10 / 1.20 | 150 / 136 | 1.11 / 1.21 | 11.00 / 12.00 | 11.00 / 12.00 |" in err
    assert "| config | decisions, native | decisions, AVX2 |" in err
    assert ("| lstm-2x256 | tiles on 2 threads, rows split: lstm_forward ids H256; sampling on 2 threads "
            "| tiles on 2 threads, rows split: lstm_forward ids H256; sampling on 2 threads |") in err
    # the machine's ceilings (peak.py, first, and sample_profile.py), natively and once
    assert [what for isa, what in calls if what in ("peak.py", "sample_profile.py")] == ["peak.py", "sample_profile.py"]
    assert calls.index(("native", "peak.py")) < calls.index(("native", "speed.py"))
    assert found["kind"] == "portable_bounds" and found["fma_gflop_per_s"] == 200.0 and found["fma_threads"] == "2"
    assert found["configs"]["lstm-2x256"] == {
        "train_gflop_per_s": 150.0, "peak_fraction": 0.75, "weight_mb": 3.2,
        "sample_gb_per_s": 36.8,  # 3.2 MB x the median of 11k and 12k chars/s
        "gb_per_s_for_10x": 32.0, "one_thread_read_gb_per_s": 30.0, "all_threads_read_gb_per_s": 70.0}  # the 3 MB row: nearest
    assert "- training, native: >= 1.1x PyTorch in every run: yes (lowest 1.10, lstm-2x256)" in err
    assert "- training, AVX2: >= 1.2x PyTorch in every run: no (lowest 1.11, lstm-2x256)" in err
    assert "- sampling, native: >= 10x PyTorch in every run: yes (lowest 11.00, lstm-2x256)" in err
    assert "| lstm-2x256 | 3.20 | 36.8 | 32.0 | 30.0 | 70.0 |" in err
    assert "200 GFLOP/s on 2 threads; lstm-2x256 trained at up to 150 GFLOP/s, 75% of it" in err


def test_peak_reads_on_one_thread_and_on_all_together():
    """bench/peak.py: the tile's multiply-add rate on 1 and all threads, and read rates by one thread
    and by all of numba's, each reading its own part (what portable.py's sampling bounds use)."""
    import numba
    import peak

    fma = peak.fma_peak(reps=20)
    threads = numba.get_num_threads()
    assert positive(fma["gflop_per_s_1_thread"]) and positive(fma[f"gflop_per_s_{threads}_threads"])
    (row,) = peak.memory_rates(sizes_mb=(1,))
    assert row["mb"] == 1 and all(positive(row[k]) for k in ("read_gb_per_s", f"read_gb_per_s_{threads}_threads", "copy_gb_per_s"))


def test_sample_profile_times_streams_together_on_one_thread_and_in_groups(capsys):
    import sample_profile

    sample_profile.main(["--configs", "gru-2x256", "--chars", "60", "--streams", "3"])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["streams"] == 3 and positive(row["batch_us_1_threads"])
    assert all(positive(v) for k, v in row.items() if k.startswith("batch_us_"))


def test_portable_report_takes_the_targets_asked_for(tmp_path, monkeypatch, capsys):
    """--isas: only those targets run, alternating in the order given, and the table has a column
    each; sse4 holds every library to a CPU without AVX; an unknown target is refused."""
    import portable

    calls = []

    def fake_run(args, isa, say):
        calls.append((isa, args[0] if args[0] == "-c" else os.path.basename(args[0])))
        if args[0] == "-c":
            return json.dumps({"key": {"cpu_model": "Some CPU", "llvm_cpu": isa}, "shapes": {}})
        return json.dumps(_speed_row("rnn-1x512", 1.5 if isa == "sse4" else 2.0, 9.0, 80.0, 0.0, isa)) + "\n"

    monkeypatch.setattr(portable, "_run", fake_run)
    portable.main(["--out-dir", str(tmp_path), "--isas", "native,sse4", "--no-profile", "--no-bounds", "--runs", "1", "--markdown"])
    assert [isa for isa, what in calls if what == "speed.py"] == ["native", "sse4"]
    sse4 = portable.isa_env("sse4", {})
    assert sse4["NUMBA_CPU_NAME"] == "nehalem" and sse4["NUMBA_CPU_FEATURES"] == "" and sse4["ATEN_CPU_CAPABILITY"] == "default"
    err = capsys.readouterr().err
    assert "| config | train, native | GFLOP/s charnn / PyTorch | train, SSE4.2 | sample, native | sample, SSE4.2 |" in err
    assert "| rnn-1x512 | 2.00 | 80 / 40 | 1.50 | 9.00 | 9.00 |" in err
    with pytest.raises(SystemExit):
        portable.main(["--out-dir", str(tmp_path), "--isas", "native,avx3"])
