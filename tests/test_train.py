"""Training runs: determinism, exact resume, checkpoints (round trip, atomic, corrupt), divergence
and Ctrl-C. Small models on generated text, so each run takes a second or two."""
import json
import os
import signal
import sys

import numpy as np
import pytest

import charnn
from charnn import TrainConfig, train
from charnn.archive import read_checkpoint, write_checkpoint
from charnn.errors import CharnnError, CheckpointError, CorpusError, DivergedError, VocabError
from charnn.train import Reporter
from charnn.train.config import best_path


def cfg(corpus, tmp_path, **kw):
    base = dict(corpus=str(corpus), model="lstm", hidden=24, layers=2, embed=8, batch_size=4, seq_len=16,
                steps=30, eval_every=10, out=str(tmp_path / "ck.npz"), seed=5)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_same_seed_same_run(corpus_file, tmp_path, kind):
    a = train(cfg(corpus_file, tmp_path, model=kind, out=str(tmp_path / "a.npz")))
    b = train(cfg(corpus_file, tmp_path, model=kind, out=str(tmp_path / "b.npz")))
    assert a.losses == b.losses and len(a.losses) == 30
    assert np.mean(a.losses[-5:]) < np.mean(a.losses[:5]) - 0.08  # and it learns (lstm: 0.13, rnn: 0.33 here)
    c = train(cfg(corpus_file, tmp_path, model=kind, seed=6, out=str(tmp_path / "c.npz")))
    assert c.losses != a.losses


@pytest.mark.parametrize("optimizer,stop", [("adam", 25), ("sgd", 20)])
def test_resume_reproduces_an_uninterrupted_run(corpus_file, tmp_path, optimizer, stop):
    """Stop part-way, resume to the same end: losses and parameters are bit-identical."""
    full = train(cfg(corpus_file, tmp_path, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 2e-3,
                     steps=40, out=str(tmp_path / "full.npz")))
    part = train(cfg(corpus_file, tmp_path, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 2e-3,
                     steps=stop, out=str(tmp_path / "part.npz")))
    rest = train(cfg(corpus_file, tmp_path, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 2e-3,
                     steps=40, out=str(tmp_path / "part.npz")), resume=str(tmp_path / "part.npz"))
    assert part.losses + rest.losses == full.losses
    for k, p in full.model.params.items():
        assert np.array_equal(p, rest.model.params[k]), k
    assert rest.val_history[-1] == full.val_history[-1]


def test_resume_across_an_epoch_boundary(tmp_path):
    text = "".join(chr(97 + (i * 7) % 13) for i in range(700)) + "\n"
    corpus = tmp_path / "short.txt"
    corpus.write_text(text)
    c = dict(batch_size=2, seq_len=20, val_frac=0.1)  # 630 train chars -> 15 chunks per epoch
    full = train(cfg(corpus, tmp_path, steps=40, out=str(tmp_path / "f.npz"), **c))
    train(cfg(corpus, tmp_path, steps=17, out=str(tmp_path / "p.npz"), **c))
    rest = train(cfg(corpus, tmp_path, steps=40, out=str(tmp_path / "p.npz"), **c), resume=str(tmp_path / "p.npz"))
    assert rest.losses == full.losses[17:]
    meta, _ = read_checkpoint(tmp_path / "p.npz")
    assert meta["train"]["epoch"] == 2 and meta["train"]["chunk"] == 40 - 2 * meta["train"]["chunks_per_epoch"]


def test_resume_rejects_a_different_shape(corpus_file, tmp_path):
    train(cfg(corpus_file, tmp_path, steps=10))
    with pytest.raises(CharnnError, match=r"hidden \(24 -> 32\)"):
        train(cfg(corpus_file, tmp_path, hidden=32, steps=20), resume=str(tmp_path / "ck.npz"))
    other = tmp_path / "other.txt"
    other.write_text("ZZZ" * 2000)
    with pytest.raises(VocabError, match="cannot resume"):
        train(cfg(other, tmp_path, steps=20), resume=str(tmp_path / "ck.npz"))


def test_checkpoint_round_trip_is_bit_exact(corpus_file, tmp_path):
    result = train(cfg(corpus_file, tmp_path, steps=10))
    model = charnn.load(result.checkpoint)
    assert model.vocab == result.model.vocab and model.config == result.model.config
    for k, p in result.model.params.items():
        assert model.params[k].dtype == np.float32 and np.array_equal(model.params[k], p)
    model.save(tmp_path / "plain.npz")
    again = charnn.load(tmp_path / "plain.npz")
    assert all(np.array_equal(again.params[k], p) for k, p in model.params.items())
    assert again.sample(40, seed=3) == result.model.sample(40, seed=3)
    # what is inside: data only, readable without pickle
    with np.load(result.checkpoint, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        assert f["optim/m/head.W"].shape == model.params["head.W"].shape
    assert meta["format"] == "charnn-checkpoint" and meta["version"] == 1
    assert meta["vocab"] == model.vocab.chars and meta["train"]["step"] == 10
    assert {"config", "optimizer", "rng", "corpus", "epoch", "chunk", "best_val"} <= set(meta["train"])


def test_best_checkpoint_holds_the_lowest_validation_loss(corpus_file, tmp_path):
    result = train(cfg(corpus_file, tmp_path, steps=40, lr=0.05))
    best = min(v for _, v in result.val_history)
    assert result.best_val == best and result.best_checkpoint == best_path(result.checkpoint)
    meta, _ = read_checkpoint(result.best_checkpoint)
    assert meta["train"]["val_loss"] == best


def test_corrupt_checkpoints_are_rejected(tmp_path, corpus_file):
    result = train(cfg(corpus_file, tmp_path, steps=10))
    raw = open(result.checkpoint, "rb").read()
    cases = {
        "garbage.npz": b"this is not a zip file",
        "truncated.npz": raw[: len(raw) // 2],
        "empty.npz": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError):
            charnn.load(tmp_path / name)
    meta, arrays = read_checkpoint(result.checkpoint)
    write_checkpoint(tmp_path / "shape.npz", meta, {**arrays, "param/head.W": np.zeros((3, 3), np.float32)})
    with pytest.raises(CheckpointError, match="head.W"):
        charnn.load(tmp_path / "shape.npz")
    write_checkpoint(tmp_path / "version.npz", {**meta, "version": 99}, arrays)
    with pytest.raises(CheckpointError, match="version 99"):
        charnn.load(tmp_path / "version.npz")
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a charnn checkpoint"):
        charnn.load(tmp_path / "foreign.npz")
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object))
    os.replace(tmp_path / "pickled.npy", tmp_path / "pickled.npz")
    with pytest.raises(CheckpointError):
        charnn.load(tmp_path / "pickled.npz")
    with pytest.raises(CheckpointError, match="not found"):
        charnn.load(tmp_path / "nope.npz")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "ck.npz"
    write_checkpoint(target, {"format": "charnn-checkpoint", "version": 1}, {"a": np.ones(3)})
    before = target.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(CheckpointError, match="No space left"):
        write_checkpoint(target, {"format": "charnn-checkpoint", "version": 1}, {"a": np.zeros(3)})
    assert target.read_bytes() == before  # the old checkpoint is untouched
    assert os.listdir(tmp_path) == ["ck.npz"]  # and no temporary file is left behind


def test_divergence_stops_and_keeps_the_last_good_checkpoint(corpus_file, tmp_path, monkeypatch):
    t = sys.modules["charnn.train.loop"]  # the module; charnn.train is the function

    real = t.clip_grad_norm
    calls = {"n": 0}

    def poisoned(grads, max_norm):
        calls["n"] += 1
        return float("nan") if calls["n"] == 15 else real(grads, max_norm)

    monkeypatch.setattr(t, "clip_grad_norm", poisoned)
    with pytest.raises(DivergedError, match=r"diverged at step 15.*last good checkpoint .*ck.npz \(step 10\)"):
        train(cfg(corpus_file, tmp_path, steps=30))
    meta, _ = read_checkpoint(tmp_path / "ck.npz")
    assert meta["train"]["step"] == 10
    assert np.isfinite(charnn.load(tmp_path / "ck.npz").loss("the quick brown fox"))


def test_divergence_with_a_huge_learning_rate(corpus_file, tmp_path):
    with pytest.raises(DivergedError, match="diverged"):
        train(cfg(corpus_file, tmp_path, model="rnn", optimizer="sgd", lr=1e30, clip=0, steps=50))


def test_ctrl_c_saves_then_resume_continues_exactly(corpus_file, tmp_path):
    class CtrlCAt(Reporter):
        def step(self, *, step, loss, chars_per_s):
            if step == 13:
                os.kill(os.getpid(), signal.SIGINT)

    full = train(cfg(corpus_file, tmp_path, out=str(tmp_path / "full.npz")))
    with pytest.raises(KeyboardInterrupt):
        train(cfg(corpus_file, tmp_path), reporter=CtrlCAt())
    meta, _ = read_checkpoint(tmp_path / "ck.npz")
    assert meta["train"]["step"] == 13
    rest = train(cfg(corpus_file, tmp_path), resume=str(tmp_path / "ck.npz"))
    assert rest.losses == full.losses[13:]


def test_bad_training_input(tmp_path):
    (tmp_path / "short.txt").write_text("to be or not to be\n" * 3)
    with pytest.raises(CorpusError, match="too short"):
        train(cfg(tmp_path / "short.txt", tmp_path))
    with pytest.raises(CorpusError, match="not found"):
        train(cfg(tmp_path / "missing.txt", tmp_path))
    for bad in (dict(hidden=0), dict(batch_size=-1), dict(lr=0.0), dict(val_frac=1.0), dict(model="gpt"), dict(clip=-1.0)):
        with pytest.raises(CharnnError):
            train(cfg(tmp_path / "short.txt", tmp_path, **bad))


def test_epochs_stop(corpus_file, tmp_path):
    r = train(cfg(corpus_file, tmp_path, steps=None, epochs=0.25))
    meta, _ = read_checkpoint(r.checkpoint)
    assert r.step == int(np.ceil(0.25 * meta["train"]["chunks_per_epoch"]))


def test_time_limit_stops_validates_and_saves(corpus_file, tmp_path):
    r = train(cfg(corpus_file, tmp_path, steps=100_000, time_limit=0.5, eval_every=100_000))
    assert 0 < r.step < 100_000 and r.val_history[-1][0] == r.step
    meta, _ = read_checkpoint(r.checkpoint)
    assert meta["train"]["step"] == r.step


def test_model_only_save_keeps_a_training_summary(corpus_file, tmp_path):
    result = train(cfg(corpus_file, tmp_path, steps=10), command="charnn train tiny.txt --steps 10")
    charnn.load(result.checkpoint).save(tmp_path / "ship.npz")
    meta, arrays = read_checkpoint(tmp_path / "ship.npz")
    assert "train" not in meta and not any(k.startswith(("optim/", "state/")) for k in arrays)
    assert meta["trained"]["command"] == "charnn train tiny.txt --steps 10" and meta["trained"]["step"] == 10
    assert 0 < meta["trained"]["budget_spent"] < 600  # the training's wall-clock seconds
    assert os.path.getsize(tmp_path / "ship.npz") < os.path.getsize(result.checkpoint) / 2  # no Adam moments


def test_sample_every_reports_samples_without_changing_the_run(corpus_file, tmp_path):
    class Collect(Reporter):
        def __init__(self):
            self.samples = []

        def sample(self, *, step, text):
            self.samples.append((step, text))

    plain = train(cfg(corpus_file, tmp_path, steps=20, out=str(tmp_path / "a.npz")))
    seen = Collect()
    watched = train(cfg(corpus_file, tmp_path, steps=20, sample_every=8, sample_length=30, out=str(tmp_path / "b.npz")), reporter=seen)
    assert watched.losses == plain.losses
    assert [s for s, _ in seen.samples] == [8, 16] and all(len(t) == 30 for _, t in seen.samples)


def test_eval_chars_scores_a_prefix_of_the_validation_split(corpus_file, tmp_path):
    from charnn.data.batches import split_train_val
    from charnn.data.encoded import encode_corpus

    result = train(cfg(corpus_file, tmp_path, steps=10, eval_chars=50))
    val_ids = split_train_val(encode_corpus(corpus_file).ids, 0.1)[1]
    assert result.val_history[-1][1] == pytest.approx(result.model.mean_loss(val_ids[:51], n_streams=4, seq_len=16), rel=1e-12)
    with pytest.raises(CharnnError, match="eval chars"):
        train(cfg(corpus_file, tmp_path, eval_chars=0))


def test_resume_on_a_corpus_with_fewer_characters_maps_its_ids(corpus_file, tmp_path):
    """The resumed model's vocabulary holds every character of the new corpus, not all of it used."""
    first = train(cfg(corpus_file, tmp_path, steps=10))
    text = corpus_file.read_text(encoding="utf-8")
    used = sorted(set(text))
    narrower = tmp_path / "narrower.txt"
    narrower.write_text(text.replace(used[-1], used[0]), encoding="utf-8")
    rest = train(cfg(narrower, tmp_path, steps=15), resume=first.checkpoint, new_corpus=True)  # a new text, on purpose
    assert rest.model.vocab == first.model.vocab and len(rest.losses) == 5


def test_the_library_applies_the_clis_rules(corpus_file, tmp_path):
    """What `charnn train` does, charnn.train and charnn.resume do: a decay selects the step
    schedule, and resuming keeps the saved options except the ones named again."""
    assert TrainConfig(lr_decay=0.9).schedule() == "step" and TrainConfig().schedule() == "constant"
    assert TrainConfig(lr_decay=0.9, lr_schedule="cosine").schedule() == "cosine"
    first = train(cfg(corpus_file, tmp_path, steps=10, lr_decay=0.5, lr_decay_after=1))
    meta, _ = read_checkpoint(first.checkpoint)
    assert meta["train"]["config"]["lr_schedule"] == "step"
    rest = charnn.resume(first.checkpoint, steps=15, eval_every=5)
    assert rest.step == 15 and rest.model.config.hidden == 24  # saved options kept
    whole = train(cfg(corpus_file, tmp_path, steps=15, eval_every=5, lr_decay=0.5, lr_decay_after=1,
                      out=str(tmp_path / "whole.npz")))
    assert first.losses + rest.losses == whole.losses  # resumed with the step schedule, exactly


def test_load_finds_shipped_checkpoints_by_name():
    model = charnn.load("shakespeare", backend="numpy")
    assert model.config.model == "lstm" and len(model.vocab) == 65
    with pytest.raises(CheckpointError):
        charnn.load("no-such-checkpoint-anywhere")
