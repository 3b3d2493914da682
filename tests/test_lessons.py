"""The lessons (charnn.lessons, `charnn lesson`): each lesson's key numbers, the new elementary
gates against finite differences, and the command's list, determinism, figures and errors.

Each lesson runs once per module (the fixtures); together they take a few seconds."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from charnn.cli import main
from charnn.lessons import (LESSONS, activations, bptt, chain_rule, fancy, gates, get, jacobian, logistic, neuron,
                            sgd, softmax, with_figures, xor)
from charnn.config import ModelConfig
from charnn.errors import CharnnError
from charnn.nn.activations import sigmoid
from charnn.nn.gradcheck import assert_gradients_match
from charnn.train import TrainConfig

TOL = 1e-7  # the suite's tolerance for a backward against centred differences


def once(module):
    return pytest.fixture(scope="module")(lambda: module.run())


xor_result = once(xor)
chain = once(chain_rule)
neuron_result = once(neuron)
jacobian_result = once(jacobian)
acts = once(activations)
soft = once(softmax)
descent = once(sgd)
through_time = once(bptt)
shipped = once(fancy)


# ---------------------------------------------------------------- the elementary pieces
@pytest.mark.parametrize("gate", ["add", "multiply", "exp", "reciprocal"])
def test_each_gate_backward_matches_finite_differences(gate):
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0.5, 2.0, (3, 4)), rng.standard_normal((3, 4))  # a > 0: the reciprocal stays smooth
    dout = rng.standard_normal((3, 4))
    if gate in ("add", "multiply"):
        forward, backward = getattr(gates, f"{gate}_forward"), getattr(gates, f"{gate}_backward")
        out, cache = forward(a, b)
        assert_gradients_match(lambda: np.sum(forward(a, b)[0] * dout), backward(dout, cache), a, b, tol=TOL)
    else:
        forward, backward = getattr(gates, f"{gate}_forward"), getattr(gates, f"{gate}_backward")
        out, cache = forward(a)
        assert_gradients_match(lambda: np.sum(forward(a)[0] * dout), [backward(dout, cache)], a, tol=TOL)
    assert out.shape == (3, 4)


def test_logistic_regression_is_sigmoid_and_its_backward_is_right():
    rng = np.random.default_rng(4)
    x, W, b = rng.standard_normal((6, 3)), rng.standard_normal((3, 1)), rng.standard_normal(1)
    y = np.array([0, 1, 1, 0, 1, 0])
    loss, p, cache = logistic.logistic_forward(x, W, b, y)
    assert np.allclose(p, sigmoid(x @ W + b)[:, 0], atol=1e-15, rtol=0)
    assert loss == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)), abs=1e-14)
    f = lambda: logistic.logistic_forward(x, W, b, y)[0]
    assert_gradients_match(f, logistic.logistic_backward(cache), x, W, b, tol=TOL)


# ---------------------------------------------------------------- 1. xor
def test_xor_one_layer_learns_and_and_or_but_not_xor(xor_result):
    f = xor_result.fits
    assert f["AND"].correct == 4 and f["OR"].correct == 4
    assert f["XOR"].correct <= 3
    assert f["XOR"].losses[-1] == pytest.approx(math.log(2), abs=1e-4)  # the best a line can do: p = 1/2
    assert np.allclose(f["XOR"].p, 0.5, atol=1e-3)


def test_xor_is_learnt_with_the_product_feature_or_a_hidden_layer(xor_result):
    f = xor_result.fits
    product, net = f["XOR + x1*x2"], f["XOR, 2 layers"]
    assert product.correct == 4 and net.correct == 4
    w1, w2, w12 = product.params["head.W"][:, 0]
    assert w1 > 5 and w2 > 5 and w12 < -2 * 5  # the shape of XOR = x1 + x2 - 2 x1 x2
    assert net.params["layer0.W"].shape == (2, xor.HIDDEN)
    assert net.losses[-1] < 0.01 and np.all(np.abs(net.p - xor.TARGETS["XOR"]) < 0.05)


def test_xor_terminal_map_shows_each_fit_at_the_four_points(xor_result):
    for fit in xor_result.fits.values():
        for (r, c), label in xor._marks(fit).items():  # each point's grid cell is the point itself
            x1, x2 = xor.view_points()[r * xor.MAP[1] + c]
            i = int(round(x1)) * 2 + int(round(x2))
            assert (x1, x2) == tuple(xor.POINTS[i]) and label == str(xor.TARGETS[fit.task][i])
            assert (fit.map[r, c] >= 0.5) == (fit.p[i] >= 0.5)
    text = xor.report(xor_result)
    assert text.count("4 of 4 correct") == 4 and "2 of 4 correct" in text and "loss at step" in text


# ---------------------------------------------------------------- 2. chain-rule
def test_chain_rule_numbers(chain):
    assert (chain.q, chain.f) == (3, -12)
    assert (chain.df_dz, chain.df_dq, chain.df_dx, chain.df_dy) == (3, -4, -4, -4)
    assert np.allclose(chain.numerical, [-4, -4, 3], atol=1e-8, rtol=0)
    assert chain.rel_error <= chain.tolerance == 1e-8


# ---------------------------------------------------------------- 3. neuron
def test_neuron_gates_closed_form_and_numerical_agree(neuron_result):
    r = neuron_result
    s = sigmoid(1.0)  # x0 w0 + x1 w1 + w2 = 2 - (-3)(-2)... = 1 at the lecture's numbers
    assert r.values["s"] == 1.0 and r.values["L"] == pytest.approx(s, abs=1e-15)
    assert r.local == pytest.approx(s * (1 - s), abs=1e-15)
    expected = s * (1 - s) * np.array([-1.0, 2.0, -2.0, -3.0, 1.0])  # dL/d(w0, x0, w1, x1, w2) = sigma' * (x0, w0, x1, w1, 1)
    assert np.allclose(r.gates, expected, atol=1e-14, rtol=0)
    assert np.allclose(r.dense, r.gates, atol=1e-14, rtol=0)
    assert np.allclose(r.gates, [-0.19661, 0.39322, -0.39322, -0.58984, 0.19661], atol=1e-5)
    assert r.gate_error <= r.tolerance and r.dense_error <= r.tolerance
    assert r.grads["1+exp"] == pytest.approx(-1 / r.values["1+exp"] ** 2)  # the reciprocal gate's local derivative


# ---------------------------------------------------------------- 4. jacobian
def test_jacobians_have_their_forms(jacobian_result):
    r = jacobian_result
    assert np.allclose(r.identity, np.eye(4), atol=1e-9)
    assert np.allclose(r.linear, r.W.T, atol=1e-9)
    assert np.allclose(np.diag(r.tanh), 1 - r.tanh_h ** 2, atol=1e-9)
    assert np.count_nonzero(r.tanh - np.diag(np.diag(r.tanh))) == 0
    assert len(r.errors) == 7 and all(v <= r.tolerance for v in r.errors.values())


def test_jacobian_sizes_are_the_default_lstm_layers():
    m, t = ModelConfig(), TrainConfig()
    s = jacobian.layer_sizes()
    params = m.embed * 4 * m.hidden + m.hidden * 4 * m.hidden + 4 * m.hidden
    assert s["params"] == params and s["inputs"] == t.batch_size * t.seq_len * m.embed
    assert s["outputs"] == t.batch_size * t.seq_len * m.hidden
    assert s["jacobian"] == s["outputs"] * s["vjp"] and s["vjp"] == s["inputs"] + params
    small = jacobian.layer_sizes(ModelConfig(hidden=2, embed=3), TrainConfig(batch_size=1, seq_len=1))
    assert (small["outputs"], small["inputs"], small["params"]) == (2, 3, 3 * 8 + 2 * 8 + 8)


# ---------------------------------------------------------------- 5. activations
def test_activation_saturation_and_values(acts):
    st = acts.stats
    expected = {"sigmoid": [(-6, -4.59), (4.59, 6)], "tanh": [(-6, -3.0), (3.0, 6)], "relu": [(-6, 0.0)],
                "leaky_relu": [], "elu": [(-6, -4.61)], "softplus": [(-6, -4.60)]}
    for name, intervals in expected.items():
        assert np.allclose(st[name].saturated, intervals, atol=1e-9) if intervals else st[name].saturated == [], name
    at0 = activations.SHOWN.index(0.0)
    assert st["sigmoid"].values[at0] == 0.5 and st["sigmoid"].derivatives[at0] == 0.25
    assert st["tanh"].derivatives[at0] == 1.0 and st["relu"].derivatives[at0] == 0.0  # the left derivative at the kink
    assert st["softplus"].values[at0] == pytest.approx(math.log(2))
    assert st["leaky_relu"].derivatives[0] == pytest.approx(0.01)


def test_activation_means_over_a_standard_normal(acts):
    z = np.linspace(-12, 12, 480001)
    density = np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    for name, s in acts.stats.items():  # the sampled mean against quadrature
        exact = np.trapezoid(activations.ACTIVATIONS[name].forward(z) * density, z)
        assert s.mean_normal == pytest.approx(exact, abs=0.005), name
    assert acts.stats["relu"].mean_normal == pytest.approx(1 / math.sqrt(2 * math.pi), abs=0.005)
    assert [n for n, s in acts.stats.items() if abs(s.mean_normal) < 0.05] == ["tanh"]


def test_activation_timing_is_reported(acts):
    t = acts.timing  # a measurement: only that it is there and positive, never its value
    assert t.relu > 0 and t.sigmoid > 0 and t.ratio > 0 and math.isfinite(t.ratio)
    assert f"ReLU is {t.ratio:.1f} times faster" in activations.report(acts)


def test_activation_rnns_learn_and_sigmoid_is_worst(acts):
    ln_v = math.log(acts.vocab_size)
    for name, run in acts.rnn.items():
        assert np.all(np.isfinite(run.losses)) and run.val < ln_v - 0.5, name
    assert max(acts.rnn, key=lambda n: acts.rnn[n].val) == "sigmoid"
    assert acts.rnn["tanh"].val < acts.rnn["sigmoid"].val - 0.5
    assert acts.rnn["sigmoid"].steps_to_target is None and acts.rnn["tanh"].steps_to_target is not None


def test_activation_rnn_runs_are_deterministic():
    text = activations.practice_text(3000)
    assert text == activations.practice_text(3000) and len(text) == 3000
    a, b = (activations.train_rnn("relu", text, steps=8) for _ in range(2))
    assert np.array_equal(a.losses, b.losses) and a.val == b.val


# ---------------------------------------------------------------- 6. softmax
def test_softmax_identities(soft):
    assert soft.pair_error < 1e-15 and soft.shift_error < 1e-15
    for z1, z2, s, g in soft.pairs:
        assert s == pytest.approx(1 / (1 + math.exp(-(z1 - z2))), abs=1e-15)
    assert np.all(np.isnan(soft.naive))  # without the max subtracted: inf / inf
    assert np.allclose(soft.stable, np.exp([-2, -1, 0]) / np.exp([-2, -1, 0]).sum(), atol=1e-15)
    assert soft.exp_limits["float32"] == pytest.approx(88.72, abs=0.01)
    assert soft.exp_limits["float64"] == pytest.approx(709.78, abs=0.01)


def test_cross_entropy_its_gradient_and_ln_v(soft):
    assert soft.loss == pytest.approx(soft.cross_entropy, abs=1e-14)
    assert soft.loss == pytest.approx(-math.log(soft.q[softmax.TARGET]), abs=1e-14)
    assert np.allclose(soft.dlogits, soft.q_minus_p, atol=1e-15)
    assert soft.grad_error <= soft.tolerance
    assert soft.uniform_loss == pytest.approx(math.log(65), abs=1e-12) and soft.ln_V == math.log(65)
    assert abs(soft.init_loss - math.log(65)) < 0.05


# ---------------------------------------------------------------- 7. sgd
def test_sgd_good_rate_converges_and_too_large_diverges(descent):
    r = descent.rates
    good, big = r["good"], r["too large"]
    assert good.converged_at is not None and good.grad_norm < 1e-6 and good.diverged_at is None
    assert np.all(np.diff(good.losses) <= 1e-15)  # descends at every step
    assert big.diverged_at is not None and big.lr > 2 / sgd.LAMBDA
    assert np.all(np.diff(big.losses[: big.diverged_at + 1]) > 0)  # rises at every step until it is stopped
    assert r["too small"].converged_at is None and r["too small"].losses[-1] < r["too small"].losses[0]
    over = r["above 2/curvature"]
    assert over.diverged_at is None and over.converged_at is None
    assert good.lr < 2 / descent.curvature < over.lr  # the measured stability limit sits between them


def test_momentum_and_adam_beat_plain_sgd_at_the_same_rate(descent):
    o = descent.optimizers
    assert o["sgd"].converged_at is None
    assert o["momentum"].converged_at is not None and o["adam"].converged_at is not None
    assert o["momentum"].losses[-1] == pytest.approx(descent.minimum, abs=sgd.CONVERGED)
    x, y = sgd.clouds()
    _, g = sgd.loss_and_grads(sgd.params_of(descent.w.copy()), x, y)
    assert max(np.abs(v).max() for v in g.values()) < 1e-9  # the minimum is one


# ---------------------------------------------------------------- 8. backprop-through-time
def test_bptt_gradients_match_finite_differences(through_time):
    r = through_time
    assert set(r.grads) == {"layer0.Wx", "layer0.Wh", "layer0.b", "head.W", "head.b"}
    assert all(e <= 1e-8 for e in r.errors.values())
    assert r.model_grads_error < 1e-12  # the unrolled steps are the model's own backward
    assert set(r.gradcheck) == set(r.grads) and max(r.gradcheck.values()) <= r.tolerance
    assert r.float32 > 1e-4  # why the check runs in float64
    assert r.loss == pytest.approx(-np.log(r.p_target).mean(), abs=1e-14)
    assert np.all(r.dh_later[-1] == 0) and np.any(r.dh_later[0] != 0)
    assert np.all(r.grads["layer0.Wx"][r.chars.index("!")] == 0)  # '!' is never an input


# ---------------------------------------------------------------- 9. fancy
def test_fancy_samples_and_the_temperature(shipped):
    assert [m.name for m in shipped.models] == ["shakespeare", "latex", "linux"]
    for m in shipped.models:
        assert [s.temperature for s in m.samples] == [0.2, 0.8, 1.2]
        for s in m.samples:
            assert s.text.startswith(m.prime) and len(s.text) == len(m.prime) + fancy.LENGTH
        entropies = [s.entropy for s in m.samples]
        assert entropies == sorted(entropies) and entropies[-1] > entropies[0]
        assert m.samples[0].top[1] >= m.samples[-1].top[1]
        assert m.samples[0].surprisal < m.samples[-1].surprisal
        assert m.val_loss is not None and 0.5 < m.val_loss < 2


# ---------------------------------------------------------------- the registry and the command
def test_every_lesson_is_registered_with_run_and_report():
    assert list(LESSONS) == ["xor", "chain-rule", "neuron", "jacobian", "activations", "softmax", "sgd",
                             "backprop-through-time", "fancy"]
    assert with_figures() == ["xor", "activations", "sgd"]
    with pytest.raises(CharnnError, match="no lesson 'nope'"):
        get("nope")


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def one_line_error(result, fragment):
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error:") and fragment in lines[0], result.output


def test_lesson_lists_and_runs(runner):
    r = runner.invoke(main, ["lesson"])
    assert r.exit_code == 0
    for i, name in enumerate(LESSONS, 1):
        assert f"{i}. {name} " in r.output
    a = runner.invoke(main, ["lesson", "chain-rule"])
    assert a.exit_code == 0 and "q = x + y = (-2) + 5 = 3" in a.output and "f = q * z = 3 * (-4) = -12" in a.output
    assert "df/dx = dq/dx * df/dq = 1 * (-4) = -4" in a.output and ": ok" in a.output
    first, second = (runner.invoke(main, ["lesson", "xor"]).output for _ in range(2))
    assert first == second and "XOR, 2 layers" in first  # seeded: the same output every run


def test_lesson_errors_are_one_line(runner, monkeypatch):
    one_line_error(runner.invoke(main, ["lesson", "nope"]), "no lesson 'nope'")
    one_line_error(runner.invoke(main, ["lesson", "chain-rule", "--plot", "x.png"]), "has no figure")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    r = runner.invoke(main, ["lesson", "xor", "--plot", "xor.png"])
    one_line_error(r, "pip install 'charnn[plot]'")
    assert not os.path.exists("xor.png")


def test_lesson_plot_writes_the_figure(runner):
    pytest.importorskip("matplotlib")
    r = runner.invoke(main, ["lesson", "sgd", "--plot", "sgd.png"])
    assert r.exit_code == 0 and "figure written to sgd.png" in r.output
    with open("sgd.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    one_line_error(runner.invoke(main, ["lesson", "sgd", "--plot", "sgd.docx"]), "name a file ending in .png, .svg or .pdf")


def test_lessons_need_neither_matplotlib_nor_numba():
    code = ("import sys, charnn, charnn.lessons as l; l.chain_rule.run(); l.sgd.run(steps=5); "
            "print('matplotlib' in sys.modules, 'numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
