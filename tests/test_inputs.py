"""Bad and extreme input, tried as a user would: every numeric option at its extremes, folders as
corpora, a corpus that changed under a run, a damaged ids cache, jobs too big for the machine, and
damaged training state at --resume. Each ends in a run or in one clean error, never a traceback."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import charnn
from charnn import TrainConfig, train
from charnn.archive import read_checkpoint, write_checkpoint
from charnn.cli import main
from charnn.data.encoded import encode_corpus
from charnn.errors import CharnnError, CheckpointError, CorpusError

BASE = ["--hidden", "8", "--layers", "1", "--embed", "4", "--batch-size", "2", "--seq-len", "8",
        "--steps", "2", "--eval-every", "1000", "--time-limit", "2", "--quiet"]
EXTREMES = ["0", "1", "-1", "nan", "1000000000000"]
TRAIN_OPTIONS = ["--hidden", "--layers", "--embed", "--dropout", "--context", "--batch-size", "--seq-len", "--lr",
                 "--lr-decay", "--lr-decay-after", "--min-lr", "--warmup", "--clip", "--weight-decay", "--ema",
                 "--steps", "--epochs", "--sample-every", "--sample-length", "--time-limit", "--budget",
                 "--eval-every", "--eval-chars", "--val-frac", "--seed"]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def clean(result) -> bool:
    """Exit 0, or a non-zero exit whose last line is one `Error: ...` line; never a traceback."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return False
    if result.exit_code == 0:
        return True
    lines = [l for l in result.output.strip().splitlines() if l]
    return bool(lines) and lines[-1].startswith("Error:") and "Traceback" not in result.output


@pytest.mark.parametrize("option", TRAIN_OPTIONS)
def test_every_numeric_training_option_at_its_extremes(option, corpus_file, tmp_path):
    for value in EXTREMES:
        base = list(BASE)
        if option in ("--steps", "--time-limit", "--budget"):  # they set the end; a budget allows no other
            i = base.index(option) if option in base else None
            if i is not None:
                del base[i : i + 2]
            if option == "--budget":
                base = [a for a in base]
                for o in ("--steps", "--time-limit"):
                    if o in base:
                        j = base.index(o)
                        del base[j : j + 2]
                if value == "1000000000000":
                    base += ["--steps", "2"]  # refused: a budget sets the end itself
        result = run("train", corpus_file, "--out", tmp_path / "m.npz", *base, option, value)
        assert clean(result), (option, value, result.output, result.exception)


@pytest.mark.parametrize("option", ["--length", "--temperature", "--top-k", "--seed"])
def test_every_numeric_sampling_option_at_its_extremes(option):
    for value in EXTREMES:
        if option == "--length" and value in ("0", "1000000000000"):
            continue  # both stream until stopped: test_a_huge_length_streams_in_constant_memory, tests/test_cli_sample.py
        result = run("sample", "--length", "20", option, value)
        assert clean(result), (option, value, result.output, result.exception)


def test_a_huge_length_streams_in_constant_memory():
    """`charnn sample --length 10**12 | head`: characters flow at once, and the pipe closing ends it."""
    p = subprocess.run(f"{sys.executable} -m charnn sample --length 1000000000000 --seed 1 | head -c 2000",
                       shell=True, capture_output=True, timeout=120)
    assert len(p.stdout) == 2000 and b"Traceback" not in p.stderr


def test_a_model_too_big_for_the_machine_is_refused_with_the_figures(corpus_file, tmp_path):
    with pytest.raises(CharnnError, match=r"needs about 1\.\d TB of memory, and this machine has .* available"):
        train(TrainConfig(corpus=str(corpus_file), hidden=100_000, out=str(tmp_path / "m.npz")))
    with pytest.raises(CharnnError, match="PB of memory"):
        train(TrainConfig(corpus=str(corpus_file), layers=10**9, out=str(tmp_path / "m.npz")))
    assert not os.path.exists(tmp_path / "m.npz")
    config = TrainConfig(hidden=256, layers=2, batch_size=32, seq_len=64)
    # 2x256 LSTM: 0.8M parameters x (param, grad, Adam's two) + 2048 chars x (2 x 7 x 256 + 2 x 65) floats
    assert config.training_bytes(65) == 4 * (4 * charnn.ModelConfig("lstm", 65, 256, 2, 64).param_count() + 2048 * (14 * 256 + 130))


def test_param_count_agrees_with_param_shapes():
    for model in ("rnn", "lstm", "gru", "mlp"):
        for layers in (1, 2, 5):
            config = charnn.ModelConfig(model, 40, 16, layers, 8 if model != "rnn" else 0)
            assert config.param_count() == sum(int(np.prod(s)) for s in config.param_shapes().values())


def test_a_corpus_that_cannot_be_cached_must_fit_in_memory(tmp_path, monkeypatch):
    import charnn.data.encoded as encoded
    import charnn.memory as memory

    path = tmp_path / "t.txt"
    path.write_text("some text to encode\n" * 100, encoding="utf-8")
    monkeypatch.setattr(encoded, "cache_paths", lambda corpus: ["/proc/no/such.npy"])
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    with pytest.raises(CorpusError, match="2,000 characters.*needs about .* of memory, and this machine has 1,000 bytes available"):
        encode_corpus(path)
    monkeypatch.setattr(memory, "available_bytes", lambda: None)  # unknown: nothing is refused
    assert encode_corpus(path).ids.size == 2000


def test_a_folder_trains_on_its_text_files_in_byte_order(tmp_path):
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / ".git").mkdir()
    texts = {"b.txt": "bravo " * 300, "a.md": "alpha " * 300, "sub/c.txt": "charlie " * 300, "B.txt": "BIG " * 300}
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "image.bin").write_bytes(b"GIF89a\x00\x01")
    (folder / "latin1.txt").write_bytes(b"caf\xe9")
    (folder / ".hidden.txt").write_text("never", encoding="utf-8")
    (folder / ".git" / "HEAD").write_text("never", encoding="utf-8")
    notes = []
    enc = encode_corpus(folder, note=notes.append)
    order = ["B.txt", "a.md", "b.txt", "sub/c.txt"]  # LC_ALL=C sort
    expected = "".join(texts[n] for n in order)
    assert "".join(enc.vocab.chars[i] for i in enc.ids) == expected
    assert "4 files" in notes[0] and "image.bin (binary" in notes[0] and "latin1.txt (not valid UTF-8" in notes[0]
    again = encode_corpus(folder, note=notes.append)  # unchanged: the built text is reused
    assert again.cache == enc.cache and len(notes) == 1
    (folder / "b.txt").write_text("bravo two " * 300, encoding="utf-8")
    changed = encode_corpus(folder)
    assert changed.sha256 != enc.sha256
    result = run("train", folder, "--out", tmp_path / "m.npz", *BASE)
    assert result.exit_code == 0, result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("train", empty, "--out", tmp_path / "e.npz", *BASE)
    assert result.exit_code == 1 and "holds no files to train on" in result.output


def test_a_corpus_changed_since_the_checkpoint_is_detected_at_resume(corpus_file, tmp_path):
    out = tmp_path / "m.npz"
    assert run("train", corpus_file, "--out", out, *BASE).exit_code == 0
    with open(corpus_file, "a", encoding="utf-8") as f:
        f.write("an added line\n")
    result = run("train", corpus_file, "--resume", out, "--steps", "3", "--quiet")
    assert result.exit_code == 1 and "is not the text" in result.output and "--new-corpus" in result.output
    result = run("train", corpus_file, "--resume", out, "--steps", "3", "--quiet", "--new-corpus")
    assert result.exit_code == 0, result.output
    assert run("train", corpus_file, "--steps", "3", "--new-corpus").exit_code == 1


def test_a_damaged_ids_cache_is_rebuilt_not_trusted(tmp_path):
    path = tmp_path / "t.txt"
    text = "the quick brown fox jumps over the lazy dog\n" * 50
    path.write_text(text, encoding="utf-8")
    enc = encode_corpus(path)
    good = np.array(enc.ids)
    del enc
    raw = bytearray(open(path.as_posix() + ".charnn-ids.npy", "rb").read())
    raw[-10] ^= 0x01  # one id changed in place: header, size and mtime of the corpus all still match
    open(path.as_posix() + ".charnn-ids.npy", "wb").write(bytes(raw))
    np.testing.assert_array_equal(encode_corpus(path).ids, good)
    raw = bytearray(open(path.as_posix() + ".charnn-ids.npy", "rb").read())
    raw[-1] = 250  # an id outside the vocabulary
    open(path.as_posix() + ".charnn-ids.npy", "wb").write(bytes(raw))
    np.testing.assert_array_equal(encode_corpus(path).ids, good)


MUTATIONS = {
    "step is text": lambda m, a: m["train"].update(step="12"),
    "step negative": lambda m, a: m["train"].update(step=-3),
    "step is true": lambda m, a: m["train"].update(step=True),
    "no optimizer": lambda m, a: m["train"].pop("optimizer"),
    "optimizer t is a list": lambda m, a: m["train"]["optimizer"].update(t=[1]),
    "rng garbage": lambda m, a: m["train"].update(rng={"bit_generator": "PCG64", "state": "x"}),
    "rng missing": lambda m, a: m["train"].pop("rng"),
    "train not a dict": lambda m, a: m.update(train=[1, 2]),
    "config not a dict": lambda m, a: m["train"].update(config="lstm"),
    "best_val text": lambda m, a: m["train"].update(best_val="low"),
    "adam m missing": lambda m, a: a.pop(next(k for k in a if k.startswith("optim/m/"))),
    "adam v wrong shape": lambda m, a: a.update({k: np.zeros(3, np.float32) for k in list(a) if k.startswith("optim/v/")}),
    "state missing": lambda m, a: a.pop("state/0/0"),
    "state wrong shape": lambda m, a: a.update({"state/0/0": np.zeros((1, 1), np.float32)}),
    "state NaN": lambda m, a: a.update({"state/0/0": np.full_like(a["state/0/0"], np.nan)}),
    "adam v inf": lambda m, a: a.update({k: np.full_like(v, np.inf) for k, v in list(a.items()) if k.startswith("optim/v/")}),
    "weights ema without live": lambda m, a: m["train"].update(weights="ema"),
    "live of the wrong shape": lambda m, a: (m["train"].update(weights="ema"),
                                             a.update({"live/" + k[len("param/"):]: np.zeros(1, np.float32) for k in list(a) if k.startswith("param/")})),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_damaged_training_state_is_one_line_at_resume(mutation, corpus_file, tmp_path):
    out = tmp_path / "m.npz"
    assert run("train", corpus_file, "--out", out, *BASE).exit_code == 0
    meta, arrays = read_checkpoint(str(out))
    MUTATIONS[mutation](meta, arrays)
    write_checkpoint(str(out), meta, arrays)
    result = run("train", corpus_file, "--resume", out, "--steps", "4", "--quiet")
    assert result.exit_code == 1 and clean(result), (mutation, result.output, result.exception)
    assert "checkpoint" in result.output.lower()
