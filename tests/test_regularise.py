"""Weight decay, the moving average of the weights (--ema), DropConnect on the recurrent weights
(--weight-drop) and the time budget (--budget): each update against its formula, and each wired
into training with exact resume."""
import math

import numpy as np
import pytest
from click.testing import CliRunner

import charnn
from charnn import CharModel, ModelConfig, TrainConfig, Vocab, train
from charnn.archive import read_checkpoint
from charnn.cli import main
from charnn.errors import CharnnError
from charnn.gradcheck import model_gradient_errors
from charnn.nn.optim import adam_update
from charnn.train.config import best_path
from charnn.train.optim import Adam, WeightAverage, decay_weights
from charnn.train.schedule import learning_rate


def cfg(corpus, tmp_path, **kw):
    base = dict(corpus=str(corpus), model="lstm", hidden=24, layers=2, embed=8, batch_size=4, seq_len=16,
                steps=30, eval_every=10, out=str(tmp_path / "ck.npz"), seed=5)
    base.update(kw)
    return TrainConfig(**base)


def test_the_average_is_the_hand_computed_weighted_mean():
    """ema_t = sum_s (1 - d) d^(t-s) p_s / (1 - d^t), computed in float64 from the iterates."""
    rng = np.random.default_rng(0)
    d, iterates = 0.9, [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(7)]
    params = {"W": np.zeros((3, 4), np.float32)}
    average = WeightAverage(params, d)
    with pytest.raises(CharnnError):
        average.averaged()  # nothing averaged yet
    for t, p in enumerate(iterates, start=1):
        params["W"][...] = p
        average.update(params)
        weights = [(1 - d) * d ** (t - s) / (1 - d**t) for s in range(1, t + 1)]
        assert math.isclose(sum(weights), 1.0)
        expected = sum(w * q.astype(np.float64) for w, q in zip(weights, iterates[:t]))
        got = average.averaged()["W"]
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert np.allclose(WeightAverage(params, 0.5).m["W"], 0)  # a new average starts empty
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(CharnnError):
            WeightAverage(params, bad)


def test_weight_decay_then_adam_is_adamw():
    """p' = p (1 - lr wd) - lr m_hat / (sqrt(v_hat) + eps) for the matrices; biases only take the
    Adam step (PyTorch's AdamW, first step from zero moments)."""
    rng = np.random.default_rng(1)
    params = {"layer0.Wx": rng.standard_normal((5, 8)).astype(np.float32), "layer0.b": rng.standard_normal(8).astype(np.float32)}
    grads = {k: rng.standard_normal(p.shape).astype(np.float32) for k, p in params.items()}
    before = {k: p.astype(np.float64) for k, p in params.items()}
    lr, wd, b1, b2, eps = 0.01, 0.1, 0.9, 0.999, 1e-8
    opt = Adam(params, lr=lr, beta1=b1, beta2=b2, eps=eps, update=adam_update)
    decay_weights(params, lr, wd)
    opt.step(params, grads)
    for k, p0 in before.items():
        g = grads[k].astype(np.float64)
        m_hat, v_hat = (1 - b1) * g / (1 - b1), (1 - b2) * g**2 / (1 - b2)
        shrink = (1 - lr * wd) if p0.ndim >= 2 else 1.0
        np.testing.assert_allclose(params[k], p0 * shrink - lr * m_hat / (np.sqrt(v_hat) + eps), rtol=1e-5, atol=1e-6)
        assert params[k].dtype == np.float32
    unchanged = {k: p.copy() for k, p in params.items()}
    decay_weights(params, lr, 0.0)
    assert all(np.array_equal(unchanged[k], params[k]) for k in params)


def test_weight_decay_shrinks_the_trained_weights(corpus_file, tmp_path):
    plain = train(cfg(corpus_file, tmp_path, out=str(tmp_path / "a.npz")))
    decayed = train(cfg(corpus_file, tmp_path, weight_decay=5.0, out=str(tmp_path / "b.npz")))
    norm = lambda m: sum(float(np.sum(p.astype(np.float64) ** 2)) for k, p in m.params.items() if p.ndim >= 2)
    assert norm(decayed.model) < 0.9 * norm(plain.model)
    assert decayed.losses[0] == plain.losses[0] and decayed.losses[1] != plain.losses[1]  # it acts from the first update on


def test_ema_is_validated_and_wins_the_best_checkpoint_when_better(corpus_file, tmp_path):
    result = train(cfg(corpus_file, tmp_path, steps=40, ema=0.9, lr=5e-3))
    assert [s for s, _ in result.ema_history] == [s for s, _ in result.val_history] == [10, 20, 30, 40]
    best = min([v for _, v in result.val_history] + [v for _, v in result.ema_history])
    assert result.best_val == best
    meta, arrays = read_checkpoint(best_path(str(tmp_path / "ck.npz")))
    won_by_average = best in [v for _, v in result.ema_history] and best not in [v for _, v in result.val_history]
    assert meta["train"]["best_val"] == best
    if won_by_average:
        assert meta["train"]["weights"] == "ema"
        assert all(f"live/{k}" in arrays for k in result.model.params)
    # the best file, loaded as a model, scores what was reported for it
    model = charnn.load(best_path(str(tmp_path / "ck.npz")))
    step = meta["train"]["step"]
    ids = model.vocab.encode(open(corpus_file, encoding="utf-8").read(), "corpus")
    from charnn.data.batches import split_train_val
    val = split_train_val(ids, 0.1)[1]
    assert model.mean_loss(val, n_streams=4, seq_len=16) == pytest.approx(best, rel=1e-6), step


def test_a_best_checkpoint_won_by_the_average_holds_it_and_resumes_from_the_trained_weights(corpus_file, tmp_path):
    """Force the average to win (decay 0.5 of a run at a huge rate is far smoother) and check the
    file: param/ is the average, live/ the trained weights, and --resume trains on from live/."""
    result = train(cfg(corpus_file, tmp_path, steps=40, eval_every=40, ema=0.5, lr=0.1))
    meta, arrays = read_checkpoint(best_path(str(tmp_path / "ck.npz")))
    assert meta["train"].get("weights") == "ema"  # this seeded run's average validates better
    last_meta, last = read_checkpoint(str(tmp_path / "ck.npz"))
    for k in result.model.params:
        assert np.array_equal(arrays[f"live/{k}"], last[f"param/{k}"])
        assert not np.array_equal(arrays[f"param/{k}"], last[f"param/{k}"])
    a = train(cfg(corpus_file, tmp_path, steps=45, eval_every=40, ema=0.5, lr=0.1, out=str(tmp_path / "r1.npz")),
              resume=best_path(str(tmp_path / "ck.npz")))
    b = train(cfg(corpus_file, tmp_path, steps=45, eval_every=40, ema=0.5, lr=0.1, out=str(tmp_path / "r2.npz")),
              resume=str(tmp_path / "ck.npz"))
    assert a.losses == b.losses


def test_resume_with_ema_and_weight_decay_is_exact(corpus_file, tmp_path):
    kw = dict(ema=0.95, weight_decay=0.1)
    full = train(cfg(corpus_file, tmp_path, steps=40, out=str(tmp_path / "full.npz"), **kw))
    train(cfg(corpus_file, tmp_path, steps=25, out=str(tmp_path / "part.npz"), **kw))
    rest = train(cfg(corpus_file, tmp_path, steps=40, out=str(tmp_path / "part.npz"), **kw), resume=str(tmp_path / "part.npz"))
    assert rest.losses == full.losses[25:]
    assert rest.ema_history[-1] == full.ema_history[-1]
    _, a = read_checkpoint(str(tmp_path / "full.npz"))
    _, b = read_checkpoint(str(tmp_path / "part.npz"))
    assert all(np.array_equal(a[k], b[k]) for k in a if k.startswith("ema/"))


def drop_model(kind, weight_drop, dropout=0.0, backend="numpy", dtype=np.float64):
    vocab = Vocab([chr(ord("a") + i) for i in range(7)])
    config = ModelConfig(kind, 7, 5, 2, 6, dropout=dropout, weight_drop=weight_drop)
    return CharModel.create(config, vocab, seed=0, dtype=dtype, backend=backend)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_weight_drop_gradients(kind, dropout):
    """Every parameter, float64, masks held fixed: the gradient reaching Wh through its mask
    (and, with dropout too, both masks drawn from one generator) matches finite differences."""
    model = drop_model(kind, 0.4, dropout)
    rng = np.random.default_rng(1)
    ids, targets = rng.integers(0, 7, (2, 5)), rng.integers(0, 7, (2, 5))
    errors = model_gradient_errors(model, ids, targets)
    assert set(errors) == set(model.params) and max(errors.values()) < 1e-7, errors


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_weight_drop_is_the_model_run_with_masked_recurrent_weights(kind):
    """Training with weight drop p = the plain model whose Wh are multiplied by masks of
    (u >= p) / (1 - p), one per layer, drawn in layer order; evaluation (no rng) drops nothing."""
    p = 0.4
    model, plain = drop_model(kind, p), drop_model(kind, 0.0)
    ids = np.random.default_rng(3).integers(0, 7, (3, 6))
    loss, cache, _ = model.forward(ids, ids, model.initial_state(3), np.random.default_rng(9))
    draws = np.random.default_rng(9)
    for l in range(2):
        Wh = plain.params[f"layer{l}.Wh"]
        mask = (draws.random(Wh.shape, dtype=np.float32) >= p) / (1.0 - p)
        np.testing.assert_array_equal(cache.weight_drop[l].mask, mask)
        assert 0 < (mask == 0).mean() < 1
        plain.params[f"layer{l}.Wh"] = Wh * mask
    assert loss == plain.forward(ids, ids, plain.initial_state(3))[0]
    evaluated = model.forward(ids, ids, model.initial_state(3))[0]
    assert evaluated == drop_model(kind, 0.0).forward(ids, ids, model.initial_state(3))[0]
    with pytest.raises(CharnnError, match="the mlp has none"):
        ModelConfig("mlp", 7, 5, 2, 6, weight_drop=0.2).validate()


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_weight_drop_numba_matches_the_reference(kind):
    """The compiled backend takes the masked Wh like any other: its loss and gradients with
    weight drop agree with the numpy reference's (float32, same masks)."""
    ref, fast = drop_model(kind, 0.3, 0.2, dtype=np.float32), drop_model(kind, 0.3, 0.2, "numba", np.float32)
    ids = np.random.default_rng(4).integers(0, 7, (3, 8))
    runs = [m.forward(ids, ids, m.initial_state(3), np.random.default_rng(2)) for m in (ref, fast)]
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-5)
    g_ref, g_fast = ref.backward(runs[0][1]), fast.backward(runs[1][1])
    for k in g_ref:
        np.testing.assert_allclose(g_fast[k], g_ref[k], rtol=1e-4, atol=1e-6)


def test_weight_drop_trains_resumes_exactly_and_is_saved(corpus_file, tmp_path):
    """--weight-drop alone (no dropout) draws masks in training; a resumed run continues exactly;
    the checkpoint records it, and the saved model evaluates without it."""
    plain = train(cfg(corpus_file, tmp_path, steps=12, out=str(tmp_path / "plain.npz")))
    full = train(cfg(corpus_file, tmp_path, steps=12, weight_drop=0.3, out=str(tmp_path / "full.npz")))
    assert full.losses[0] != plain.losses[0]  # the first step already runs masked weights
    train(cfg(corpus_file, tmp_path, steps=7, weight_drop=0.3, out=str(tmp_path / "part.npz")))
    rest = train(cfg(corpus_file, tmp_path, steps=12, weight_drop=0.3, out=str(tmp_path / "part.npz")), resume=str(tmp_path / "part.npz"))
    assert rest.losses == full.losses[7:]
    model = charnn.load(str(tmp_path / "full.npz"))
    assert model.config.weight_drop == 0.3
    unmasked = CharModel(ModelConfig(**{**model.config.to_dict(), "weight_drop": 0.0}), model.vocab, model.params)
    assert model.loss("to be or not to be") == unmasked.loss("to be or not to be")  # evaluation uses Wh itself


def test_budget_runs_cosine_to_the_clock(corpus_file, tmp_path):
    assert learning_rate(5, 1e-3, schedule="cosine", chunks_per_epoch=10, total_steps=10**12, min_lr=1e-5, progress=0.0) == 1e-3
    assert learning_rate(5, 1e-3, schedule="cosine", chunks_per_epoch=10, total_steps=10**12, min_lr=1e-5, progress=1.0) == pytest.approx(1e-5)
    assert learning_rate(5, 1e-3, schedule="cosine", chunks_per_epoch=10, total_steps=10**12, min_lr=0, progress=0.5) == pytest.approx(5e-4)
    assert learning_rate(5, 1e-3, schedule="cosine", chunks_per_epoch=10, total_steps=10**12, progress=3.0) == 0.0  # past the end: min_lr
    config = cfg(corpus_file, tmp_path, steps=None, budget=1.0, eval_every=10**6, min_lr=1e-4)
    assert config.schedule() == "cosine"
    result = train(config)
    assert result.step >= 1 and result.val_loss is not None
    meta, _ = read_checkpoint(str(tmp_path / "ck.npz"))
    assert meta["train"]["budget_spent"] >= 1.0
    for bad in (dict(budget=0.0), dict(budget=60.0, steps=5), dict(budget=60.0, lr_schedule="step"), dict(budget=float("nan"))):
        with pytest.raises(CharnnError):
            cfg(corpus_file, tmp_path, **{"steps": None, **bad}).validate()


@pytest.mark.parametrize("args,message", [
    (["--budget", "10x"], "not a duration"),
    (["--budget", "-5m"], "positive"),
    (["--budget", "5m", "--steps", "3"], "budget sets when the run ends"),
    (["--ema", "1"], "--ema"),
    (["--ema", "nan"], "ema must be"),
    (["--weight-decay", "-1"], "--weight-decay"),
    (["--weight-drop", "1"], "--weight-drop"),
    (["--weight-drop", "0.3", "--model", "mlp"], "the mlp has none"),
])
def test_cli_refuses_bad_regularisation_options(corpus_file, tmp_path, args, message):
    r = CliRunner().invoke(main, ["train", str(corpus_file), "--out", str(tmp_path / "x.npz"), "--quiet", *args])
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output


def test_cli_budget_accepts_units(corpus_file, tmp_path):
    from charnn.cli.common import DURATION
    assert [DURATION.convert(v, None, None) for v in ("90", "90s", "10m", "1.5h")] == [90.0, 90.0, 600.0, 5400.0]
    r = CliRunner().invoke(main, ["train", str(corpus_file), "--out", str(tmp_path / "x.npz"), "--quiet", "--budget", "1s",
                                  "--hidden", "16", "--layers", "1", "--ema", "0.9", "--weight-decay", "0.01"])
    assert r.exit_code == 0, r.output
