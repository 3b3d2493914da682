"""`charnn sample`'s controls (issue 15) from the command line: each option prints what the Python
API gives, bad input is one line, and Ctrl-C ends a `--length 0` stream cleanly (a real process)."""
import importlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from charnn import Vocab, load
from charnn.cli import main
from test_cli import assert_clean_error
from test_sampling import make_model

VOCAB = Vocab(sorted(set("abcdefgh ijk.:\n")))


@pytest.fixture
def ckpt(tmp_path, monkeypatch):
    """A tiny LSTM saved to m.npz in the working folder; (path, the model as loaded, numpy)."""
    monkeypatch.chdir(tmp_path)
    make_model("lstm", vocab=VOCAB).save("m.npz")
    return "m.npz", load("m.npz", backend="numpy")


def run(*args):
    r = CliRunner().invoke(main, ["sample", "-c", "m.npz", "--backend", "numpy", *map(str, args)], catch_exceptions=False)
    return r


def test_top_p_and_stop_strings(ckpt):
    _, model = ckpt
    r = run("--prime", "ab", "--seed", "3", "--top-p", "0.9", "-n", "200")
    free = model.sample(200, prime="ab", seed=3, top_p=0.9)
    assert r.exit_code == 0 and r.stdout == free + "\n"
    stop = free[60:63]
    want = model.sample(200, prime="ab", seed=3, top_p=0.9, stop=stop)
    assert len(want) <= 63
    assert run("--prime", "ab", "--seed", "3", "--top-p", "0.9", "-n", "200", "--stop", stop).stdout == want + "\n"
    # --length 0: until the stop string; \n in an argument is a newline; the first of several ends it
    r = run("--prime", "ab", "--seed", "3", "--top-p", "0.9", "-n", "0", "--stop", "\\n", "--stop", stop)
    assert r.exit_code == 0 and r.stdout == model.sample(0, prime="ab", seed=3, top_p=0.9, stop=["\n", stop]) + "\n"
    assert_clean_error(run("--stop", ""), "stop string")


def test_several_samples_with_a_separator(ckpt):
    _, model = ckpt
    r = run("-N", "3", "--separator", "==", "-n", "50", "--seed", "4", "--prime", "a")
    samples = model.samples(3, 50, seed=4, prime="a")
    assert r.exit_code == 0 and r.stdout == "\n==\n".join(samples) + "\n"
    assert samples[1] == run("-n", "50", "--seed", "5", "--prime", "a").stdout[:-1]  # sample i: seed + i


def test_beam_search_with_log_probabilities(ckpt):
    _, model = ckpt
    r = run("--beam", "3", "-n", "12", "--prime", "ab", "--show-logprob")
    beams = model.beam_search(3, 12, prime="ab")
    want = "---\n".join(f"ab{b.text}\nlogprob: {b.logprob:.4f}\n" for b in beams)
    assert r.exit_code == 0 and r.stdout == want
    named = {"-N": "--num-samples", "-n": "--length 0"}
    for option, value in [("--temperature", "0.5"), ("--top-p", "0.9"), ("--stop", "a"), ("-N", "2"), ("-n", "0")]:
        assert_clean_error(run("--beam", "3", option, value), "--beam", named.get(option, option))


def test_jsonl_and_logprob_report_the_models_probabilities(ckpt):
    _, model = ckpt
    r = run("--format", "jsonl", "-n", "20", "--seed", "2", "--prime", "ab", "--top-k", "4")
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    records = list(model.generate_probs(20, seed=2, prime="ab", top_k=4))
    assert r.exit_code == 0 and len(lines) == 20
    assert "".join(o["char"] for o in lines) == model.sample(20, seed=2, prime="ab", top_k=4)[2:]
    for o, rec in zip(lines, records):
        assert set(o) == {"sample", "char", "p", "logprob", "top"} and o["sample"] == 0
        assert o["p"] == rec.p and o["logprob"] == rec.logprob and o["top"] == [list(t) for t in rec.top]
        assert len(o["top"]) == 5 and o["p"] <= o["top"][0][1]
    r = run("--show-logprob", "-n", "20", "--seed", "2", "--prime", "ab", "--top-k", "4")
    assert r.stdout == model.sample(20, seed=2, prime="ab", top_k=4) + f"\nlogprob: {records[-1].logprob:.4f}\n"
    r = run("--format", "jsonl", "--beam", "2", "-n", "5", "--prime", "ab")
    assert [json.loads(line)["sample"] for line in r.stdout.splitlines()] == [0] * 5 + [1] * 5


def test_prime_file(ckpt, tmp_path, monkeypatch):
    _, model = ckpt
    prime = "abc hij.\n" * 400  # 3600 characters: warmed up by the sequence forward
    (tmp_path / "prime.txt").write_text(prime, encoding="utf-8")
    monkeypatch.setattr(importlib.import_module("charnn.cli.sample"), "PROGRESS_AFTER_S", 0.0)  # (the module)
    r = run("--prime-file", "prime.txt", "-n", "40", "--seed", "1")
    assert r.exit_code == 0 and r.stdout == model.sample(40, prime=prime, seed=1)[len(prime):] + "\n"
    assert "reading the prime: 3,599 of 3,599 characters (100%)" in r.stderr
    assert "reading the prime" not in run("--prime-file", "prime.txt", "-n", "5", "--quiet").stderr
    (tmp_path / "bin.txt").write_bytes(b"ab\xffc")
    (tmp_path / "odd.txt").write_text("ROMEO§")
    assert_clean_error(run("--prime-file", "missing.txt"), "prime file not found", "missing.txt")
    assert_clean_error(run("--prime-file", "bin.txt"), "prime file is not valid UTF-8", "offset 2")
    assert_clean_error(run("--prime-file", "odd.txt"), "prime text", "not in the model's vocabulary", "'R'")
    assert_clean_error(run("--prime-file", "prime.txt", "--prime", "ab"), "--prime or --prime-file")


def test_ctrl_c_ends_an_endless_stream_cleanly(ckpt):
    """A real process streaming `--length 0` gets SIGINT: exit code 130, stdout holds the sample as
    far as it got (the seeded characters, the line ended), stderr one line and no traceback."""
    path, model = ckpt
    cmd = [sys.executable, "-m", "charnn", "sample", "-c", path, "--backend", "numpy", "-n", "0", "--prime", "ab",
           "--seed", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=os.getcwd(), bufsize=0)
    try:
        head = b""  # read from the pipe itself: a buffered read could keep bytes communicate() never sees
        while len(head) < 300:  # streamed: flushed at newlines and every 256 characters
            chunk = os.read(proc.stdout.fileno(), 300 - len(head))
            if not chunk:
                break
            head += chunk
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    out = (head + rest).decode("utf-8")
    assert proc.returncode == 130, err
    assert out.startswith("ab") and out.endswith("\n") and len(out) > 300
    generated = out[2:-1]
    assert generated == model.sample(len(generated), prime="ab", seed=1)[2:]
    assert b"Traceback" not in err and f"interrupted after {len(generated):,} characters" in err.decode()


def test_sample_threads_can_be_forced_and_a_bad_value_is_one_line(ckpt, monkeypatch):
    """CHARNN_SAMPLE_THREADS sets batch-1 sampling's thread count instead of timing the choice
    (at most numba's threads); a value that is no count is one line, whichever code would sample."""
    import numba
    from charnn.backend.numba import sampler

    model = load("m.npz", backend="numba")
    monkeypatch.setenv("CHARNN_SAMPLE_THREADS", "1")
    assert sampler.thread_counts(model) == (1,)
    monkeypatch.setenv("CHARNN_SAMPLE_THREADS", "64")
    assert sampler.thread_counts(model) == (numba.get_num_threads(),)
    for value in ("auto", ""):  # the default: timed as it samples (sampler.thread_counts)
        monkeypatch.setenv("CHARNN_SAMPLE_THREADS", value)
        assert sampler.forced_threads() is None
    monkeypatch.setenv("CHARNN_SAMPLE_THREADS", "two")
    r = CliRunner().invoke(main, ["sample", "-c", "m.npz", "--backend", "numba", "-n", "20"])
    assert_clean_error(r, "CHARNN_SAMPLE_THREADS must be auto or a whole number")
