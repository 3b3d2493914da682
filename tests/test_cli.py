"""The command line through click's CliRunner: train -> sample, and every bad input gives a
one-line error and a non-zero exit, never a traceback."""
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from charnn.cli import main

SMALL = ["--hidden", "16", "--layers", "1", "--embed", "8", "--batch-size", "4", "--seq-len", "16"]


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def invoke(runner, *args):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_clean_error(result, *fragments):
    assert result.exit_code != 0, result.output
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert "Traceback" not in result.output
    for frag in fragments:
        assert frag in lines[0], lines[0]


def test_train_then_sample(runner, corpus_file):
    r = invoke(runner, "train", corpus_file, *SMALL, "--steps", "20", "--eval-every", "10")
    assert r.exit_code == 0, r.output
    assert "validation loss" in r.output and "chars/s" in r.output
    assert os.path.exists("checkpoints/tiny-lstm.npz") and os.path.exists("checkpoints/tiny-lstm.best.npz")
    a = invoke(runner, "sample", "--length", "80", "--seed", "3", "--prime", "the ")
    assert a.exit_code == 0 and a.output.startswith("the ") and len(a.output) == len("the ") + 80 + 1
    b = invoke(runner, "sample", "--checkpoint", "checkpoints/tiny-lstm.npz", "--length", "80", "--seed", "3", "--prime", "the ")
    assert b.output == a.output  # the default checkpoint is the one just written; same seed, same text
    g = invoke(runner, "sample", "-n", "30", "--argmax", "--temperature", "0.5", "--top-k", "3")
    assert g.exit_code == 0 and len(g.output) == 31


def test_first_run_says_it_compiles(runner, corpus_file, monkeypatch, tmp_path):
    """The first training run of a cell after an install spends up to a minute compiling before
    step 1: it says so, only then (charnn's stamp beside numba's cache says when), and --quiet
    silences it."""
    import charnn.backend.numba as numba_backend

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "fresh-cache"))  # no stamp there yet
    r = invoke(runner, "train", corpus_file, *SMALL, "--steps", "2", "--eval-every", "2", "--quiet")
    assert r.exit_code == 0 and "compiles" not in r.output
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "another-cache"))
    r = invoke(runner, "train", corpus_file, *SMALL, "--steps", "2", "--eval-every", "2")
    assert r.exit_code == 0 and "numba compiles the training kernels now" in r.output
    r = invoke(runner, "train", corpus_file, *SMALL, "--steps", "2", "--eval-every", "2")
    assert r.exit_code == 0 and "compiles" not in r.output and "threading layer" not in r.output
    # another cell's kernels are not compiled by an LSTM run: that run says so too, once
    r = invoke(runner, "train", corpus_file, *SMALL, "--steps", "2", "--eval-every", "2", "--model", "gru")
    assert r.exit_code == 0 and "first gru training after an install: numba compiles the training kernels now" in r.output
    r = invoke(runner, "train", corpus_file, *SMALL, "--steps", "2", "--eval-every", "2", "--model", "gru")
    assert r.exit_code == 0 and "compiles" not in r.output
    monkeypatch.setattr(numba_backend, "fast_threading", lambda: False)  # numba fell back to "workqueue"
    r = invoke(runner, "train", corpus_file, *SMALL, "--steps", "2", "--eval-every", "2")
    assert r.exit_code == 0 and "no OpenMP or TBB threading layer" in r.output


def test_quiet_and_resume(runner, corpus_file):
    r = invoke(runner, "train", corpus_file, *SMALL, "--steps", "10", "--eval-every", "5", "--quiet", "--model", "rnn")
    assert r.exit_code == 0 and r.output == ""
    r = invoke(runner, "train", corpus_file, "--resume", "checkpoints/tiny-rnn.npz", "--steps", "15")
    assert r.exit_code == 0, r.output
    assert "resuming at step 10" in r.output and "done: step 15" in r.output
    r = invoke(runner, "train", corpus_file, "--resume", "checkpoints/tiny-rnn.npz", "--hidden", "32")
    assert_clean_error(r, "cannot resume", "hidden")


def test_bad_corpus_inputs(runner, tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "bin.txt").write_bytes(b"abc\xff\xfedef")
    (tmp_path / "short.txt").write_text("just a few words\n")
    assert_clean_error(invoke(runner, "train", "missing.txt"), "corpus not found", "missing.txt")
    assert_clean_error(invoke(runner, "train", "empty.txt"), "corpus is empty")
    assert_clean_error(invoke(runner, "train", "bin.txt"), "not valid UTF-8", "offset 3")
    assert_clean_error(invoke(runner, "train", "short.txt"), "corpus too short")


@pytest.mark.parametrize("variable, value", [("CHARNN_TRAIN_THREADS", "all"), ("CHARNN_GEMM", "mkl")])
def test_a_bad_backend_variable_is_one_line(tmp_path, corpus_file, variable, value):
    """CHARNN_TRAIN_THREADS (the training step's thread count instead of the measured one) and
    CHARNN_GEMM are read when the numba backend is imported: a bad value is one line before the
    run starts, and no checkpoint or log is written."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARNN_")}
    env.update({variable: value, "CHARNN_CACHE_DIR": str(tmp_path / "cache")})
    done = subprocess.run([sys.executable, "-m", "charnn", "train", str(corpus_file), *SMALL, "--steps", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    lines = [l for l in (done.stdout + done.stderr).splitlines() if l.strip()]
    assert done.returncode != 0 and len(lines) == 1 and lines[0].startswith("Error:"), lines
    assert f"{variable} must be" in lines[0] and not list(tmp_path.glob("checkpoints/*"))


@pytest.mark.parametrize("option,value", [
    ("--hidden", "0"), ("--layers", "-2"), ("--batch-size", "0"), ("--seq-len", "-1"), ("--lr", "0"),
    ("--lr", "-1e-3"), ("--steps", "0"), ("--epochs", "0"), ("--val-frac", "1"), ("--val-frac", "0"),
    ("--clip", "-1"), ("--model", "transformer"), ("--optimizer", "lion"), ("--hidden", "many"),
])
def test_nonsense_training_options(runner, corpus_file, option, value):
    r = invoke(runner, "train", corpus_file, option, value)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert option in r.output or "Invalid value" in r.output


def test_bad_sampling_inputs(runner, corpus_file, tmp_path, monkeypatch):
    monkeypatch.setattr("charnn.checkpoint.SHIPPED", str(tmp_path / "no-shipped-checkpoints"))
    assert_clean_error(invoke(runner, "sample"), "no checkpoint given")
    assert_clean_error(invoke(runner, "sample", "-c", "nope.npz"), "checkpoint not found")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    assert_clean_error(invoke(runner, "sample", "-c", "bad.npz"), "not a readable checkpoint")
    np.savez(tmp_path / "foreign.npz", a=np.zeros(2))
    assert_clean_error(invoke(runner, "sample", "-c", "foreign.npz"), "not a charnn checkpoint")
    invoke(runner, "train", corpus_file, *SMALL, "--steps", "5", "--quiet")
    assert_clean_error(invoke(runner, "sample", "--prime", "ROMEO§"), "prime text", "'R'", "'§'")
    for option, value in [("--temperature", "0"), ("--temperature", "-1"), ("--length", "-5"), ("--top-k", "0")]:
        r = invoke(runner, "sample", option, value)
        assert r.exit_code == 2 and option in r.output and "Traceback" not in r.output


def test_help_lists_every_option_with_its_default(runner):
    out = invoke(runner, "train", "--help").output
    for opt in ["--model", "--hidden", "--layers", "--batch-size", "--seq-len", "--lr", "--optimizer", "--clip",
                "--steps", "--epochs", "--eval-every", "--val-frac", "--seed", "--out", "--resume", "--quiet"]:
        assert opt in out
    assert "default: 256" in out and "default: 0.002" in out
    out = invoke(runner, "sample", "--help").output
    for opt in ["--checkpoint", "--length", "--temperature", "--prime", "--top-k", "--argmax", "--seed", "--top-p",
                "--stop", "--num-samples", "--separator", "--beam", "--show-logprob", "--prime-file", "--format"]:
        assert opt in out
    assert "then --top-k, then" in " ".join(out.split())  # the order of the filters


def test_python_dash_m(tmp_path):
    r = subprocess.run([sys.executable, "-m", "charnn", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and "Usage: charnn" in r.stdout


def test_console_script_exit_code_and_stderr(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "charnn")
    if not os.path.exists(exe):
        pytest.skip("console script not installed next to this interpreter")
    r = subprocess.run([exe, "train", "missing.txt"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == "" and r.stderr.strip() == "Error: corpus not found: missing.txt"


@pytest.mark.parametrize("model,extra", [
    ("rnn", ["--activation", "relu", "--optimizer", "rmsprop"]),
    ("gru", ["--dropout", "0.2", "--optimizer", "nesterov", "--lr", "0.05"]),
    ("mlp", ["--context", "5", "--activation", "elu", "--optimizer", "adagrad", "--lr", "0.1"]),
    ("lstm", ["--lr-schedule", "cosine", "--warmup", "3", "--min-lr", "1e-4", "--optimizer", "momentum", "--lr", "0.05"]),
])
def test_every_model_trains_and_samples(runner, corpus_file, model, extra):
    r = invoke(runner, "train", corpus_file, *SMALL, "--model", model, *extra, "--steps", "12", "--eval-every", "6")
    assert r.exit_code == 0, r.output
    s = invoke(runner, "sample", "-n", "40", "--seed", "1", "--prime", "the")
    assert s.exit_code == 0 and s.output.startswith("the") and len(s.output) == 44


def test_lr_decay_implies_the_step_schedule(runner, corpus_file):
    from charnn.archive import read_checkpoint

    invoke(runner, "train", corpus_file, *SMALL, "--steps", "3", "--quiet", "--lr-decay", "0.5", "--lr-decay-after", "2")
    meta, _ = read_checkpoint("checkpoints/tiny-lstm.npz")
    assert meta["train"]["config"]["lr_schedule"] == "step" and meta["train"]["config"]["lr_decay"] == 0.5


def test_bad_model_family_options(runner, corpus_file):
    assert_clean_error(invoke(runner, "train", corpus_file, "--model", "lstm", "--activation", "relu"), "activation")
    assert_clean_error(invoke(runner, "train", corpus_file, "--model", "mlp", "--embed", "0"), "embedding")
    for option, value in [("--dropout", "1"), ("--dropout", "-0.1"), ("--activation", "swish"), ("--context", "0"),
                          ("--lr-schedule", "linear"), ("--lr-decay", "0"), ("--lr-decay", "1.5")]:
        r = invoke(runner, "train", corpus_file, option, value)
        assert r.exit_code == 2 and option in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("model,activation", [("rnn", "tanh"), ("lstm", "tanh"), ("gru", "tanh"), ("mlp", "softplus")])
def test_gradcheck_command_passes(runner, model, activation):
    r = invoke(runner, "gradcheck", "--model", model, "--activation", activation)
    assert r.exit_code == 0, r.output
    assert "head.W" in r.output and "layer1.b" in r.output and "passed" in r.output


def test_gradcheck_command_checks_weight_drop(runner):
    r = invoke(runner, "gradcheck", "--model", "lstm", "--weight-drop", "0.3", "--dropout", "0.2")
    assert r.exit_code == 0 and "layer1.Wh" in r.output and "passed" in r.output, r.output
    assert_clean_error(invoke(runner, "gradcheck", "--model", "mlp", "--weight-drop", "0.3"), "the mlp has none")


def test_gradcheck_command_fails_on_a_wrong_backward(runner, monkeypatch):
    import charnn.nn.activations as acts

    right = acts.ACTIVATIONS["elu"]
    monkeypatch.setitem(acts.ACTIVATIONS, "elu", acts.Activation(right.forward, lambda dh, h: dh * (h > 0)))  # drops the a<0 branch
    r = invoke(runner, "gradcheck", "--model", "rnn", "--activation", "elu")
    assert r.exit_code == 1 and "FAIL" in r.output and "gradient check failed" in r.output


def test_eval_reports_loss_and_shows_surprisal(runner, corpus_file, text, tmp_path):
    invoke(runner, "train", corpus_file, *SMALL, "--steps", "15", "--quiet", "--backend", "numpy")
    (tmp_path / "held.txt").write_text(text[:500])
    r = invoke(runner, "eval", "checkpoints/tiny-lstm.npz", "held.txt")
    assert r.exit_code == 0, r.output
    assert "499 characters scored" in r.output and "nats/char" in r.output and "bits/char" in r.output
    import charnn
    model = charnn.load("checkpoints/tiny-lstm.npz", backend="numpy")
    nats = model.surprisal(text[:500])
    assert f"loss {nats.mean():.4f} nats/char" in r.output
    # one stream from a zero state: the same as the model's own chunked scoring with one stream
    assert nats.mean() == pytest.approx(model.mean_loss(model.vocab.encode(text[:500]), n_streams=1, seq_len=64), rel=1e-5)
    shown = runner.invoke(main, ["eval", "checkpoints/tiny-lstm.npz", "held.txt", "--show"], color=True)
    assert "\x1b[" in shown.output and text[:40].split()[0] in click_unstyle(shown.output)
    assert_clean_error(invoke(runner, "eval", "checkpoints/tiny-lstm.npz", "missing.txt"), "corpus not found")
    (tmp_path / "odd.txt").write_text("ZZZ§")
    assert_clean_error(invoke(runner, "eval", "checkpoints/tiny-lstm.npz", "odd.txt"), "not in the model's vocabulary")


def click_unstyle(s):
    import click
    return click.unstyle(s)


def test_bench_command_rejects_unknown_configs(runner):
    assert_clean_error(invoke(runner, "bench", "--configs", "lstm-2x256,transformer-1x1"), "bad configuration name")


@pytest.fixture
def shipped(runner, corpus_file, tmp_path, monkeypatch):
    """A folder of shipped checkpoints holding one `shakespeare`: a model trained to run/m.npz
    (which checkpoints/.latest then names)."""
    import charnn

    folder = tmp_path / "shipped"
    monkeypatch.setattr("charnn.checkpoint.SHIPPED", str(folder))
    invoke(runner, "train", corpus_file, *SMALL, "--steps", "3", "--quiet", "--out", "run/m.npz")
    folder.mkdir()
    charnn.load("run/m.npz").save(folder / "shakespeare.npz")
    return folder


def test_shipped_names_and_fallback(runner, shipped):
    os.remove("checkpoints/.latest")
    a = invoke(runner, "sample", "-n", "30", "--seed", "2")  # nothing trained here: the shipped model
    b = invoke(runner, "sample", "-n", "30", "--seed", "2", "--checkpoint", "shakespeare")
    c = invoke(runner, "sample", "-n", "30", "--seed", "2", "--checkpoint", "run/m.npz")
    assert a.exit_code == 0 and a.output == b.output == c.output
    assert_clean_error(invoke(runner, "sample", "--checkpoint", "latex"), "checkpoint not found")


def test_a_deleted_last_checkpoint_falls_back_to_the_shipped_one(runner, shipped):
    """checkpoints/.latest names a run whose folder was removed since: say so, sample the shipped
    model; with no shipped model either, one line saying what to pass."""
    import shutil

    shutil.rmtree("run")
    r = invoke(runner, "sample", "-n", "30", "--seed", "2")
    assert r.exit_code == 0 and "is gone: using the shipped shakespeare" in r.output
    shutil.rmtree(shipped)
    assert_clean_error(invoke(runner, "sample", "-n", "30"), "is gone", "--checkpoint")


def test_sample_every_prints_samples(runner, corpus_file):
    r = invoke(runner, "train", corpus_file, *SMALL, "--steps", "6", "--sample-every", "3", "--sample-length", "20")
    assert r.exit_code == 0 and r.output.count("--- sample at step") == 2
