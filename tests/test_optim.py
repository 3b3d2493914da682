import json

import numpy as np
import pytest

from charnn.train.optim import OPTIMIZERS, SGD, Adagrad, Adam, Momentum, RMSprop, clip_grad_norm, make_optimizer
from charnn.errors import CharnnError


def test_adam_matches_the_textbook_update():
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((3, 4))
    params = {"w": p0.copy()}
    opt = Adam(params, lr=0.01)
    m = v = np.zeros_like(p0)
    p = p0.copy()
    for t in range(1, 6):
        g = rng.standard_normal((3, 4))
        opt.step(params, {"w": g.copy()})
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        p = p - 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        assert np.allclose(params["w"], p, rtol=1e-12, atol=1e-15)


# Each textbook test changes lr between steps, as a schedule would, to show step() reads self.lr.
LRS = [0.01, 0.03, 0.02, 0.005, 0.04, 0.01]


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_matches_the_textbook_update(nesterov):
    rng = np.random.default_rng(2)
    p0 = rng.standard_normal((3, 4))
    params = {"w": p0.copy()}
    opt = Momentum(params, mu=0.8, nesterov=nesterov)
    v = np.zeros_like(p0)
    p = p0.copy()
    for lr in LRS:
        g = rng.standard_normal((3, 4))
        opt.lr = lr
        opt.step(params, {"w": g.copy()})
        v = 0.8 * v + g
        p = p - lr * (g + 0.8 * v) if nesterov else p - lr * v
        assert np.allclose(params["w"], p, rtol=1e-12, atol=1e-15)


def test_adagrad_matches_min_char_rnn():
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal((3, 4))
    params = {"w": p0.copy()}
    opt = Adagrad(params)
    mem = np.zeros_like(p0)
    p = p0.copy()
    for lr in LRS:
        g = rng.standard_normal((3, 4))
        opt.lr = lr
        opt.step(params, {"w": g.copy()})
        mem = mem + g * g
        p = p - lr * g / np.sqrt(mem + 1e-8)
        assert np.allclose(params["w"], p, rtol=1e-12, atol=1e-15)


def test_rmsprop_matches_torch_optim_with_char_rnn_settings():
    rng = np.random.default_rng(4)
    p0 = rng.standard_normal((3, 4))
    params = {"w": p0.copy()}
    opt = RMSprop(params)
    assert (opt.alpha, opt.eps) == (0.95, 1e-8)  # char-rnn's -decay_rate, rmsprop.lua's epsilon
    m = np.zeros_like(p0)
    p = p0.copy()
    for lr in LRS:
        g = rng.standard_normal((3, 4))
        opt.lr = lr
        opt.step(params, {"w": g.copy()})
        m = 0.95 * m + 0.05 * g * g
        p = p - lr * g / (np.sqrt(m) + 1e-8)
        assert np.allclose(params["w"], p, rtol=1e-12, atol=1e-15)


def test_sgd_update():
    params = {"w": np.ones(3)}
    SGD(params, lr=0.5).step(params, {"w": np.array([1.0, 2.0, -2.0])})
    assert np.allclose(params["w"], [0.5, 0.0, 2.0])


def test_clip_grad_norm_scales_globally():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0, 4.0]])}
    norm = clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(5.0)
    assert np.allclose(grads["a"], [0.6, 0]) and np.allclose(grads["b"], [[0, 0.8]], atol=1e-6)
    small = {"a": np.array([0.3, 0.4])}
    assert clip_grad_norm(small, 1.0) == pytest.approx(0.5) and np.allclose(small["a"], [0.3, 0.4])
    assert clip_grad_norm({"a": np.array([30.0, 40.0])}, 0) == pytest.approx(50.0)  # 0 disables
    assert np.isnan(clip_grad_norm({"a": np.array([np.nan, 1.0])}, 1.0))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_decreases_loss_and_state_round_trips(name):
    rng = np.random.default_rng(1)
    target = rng.standard_normal(5)
    params = {"w": np.zeros(5)}
    opt = make_optimizer(name, params, lr=0.1)
    loss = lambda: float(np.sum((params["w"] - target) ** 2))
    start = loss()
    for _ in range(20):
        opt.step(params, {"w": 2 * (params["w"] - target)})
    assert loss() < 0.5 * start
    meta, arrays = opt.state_dict()
    assert meta["name"] == name
    meta = json.loads(json.dumps(meta))  # what a checkpoint does to it
    clone_params = {"w": params["w"].copy()}
    clone = make_optimizer(meta["name"], clone_params, lr=0.1)
    clone.load_state_dict(meta, {k: a.copy() for k, a in arrays.items()})
    assert type(clone) is type(opt) and clone.state_dict()[0] == meta
    for _ in range(3):  # the next steps are bit-identical
        g = {"w": 2 * (params["w"] - target)}
        opt.step(params, {"w": g["w"].copy()})
        clone.step(clone_params, {"w": g["w"].copy()})
        assert np.array_equal(params["w"], clone_params["w"])


def test_nesterov_is_momentum_with_nesterov_and_keeps_its_name():
    opt = make_optimizer("nesterov", {"w": np.zeros(2)}, lr=0.1)
    assert isinstance(opt, Momentum) and opt.nesterov and opt.name == "nesterov"
    assert Momentum({"w": np.zeros(2)}, nesterov=True).state_dict()[0]["name"] == "nesterov"
    assert make_optimizer("momentum", {"w": np.zeros(2)}, lr=0.1).state_dict()[0]["name"] == "momentum"
    # same gradients, different paths: the flag really changes the update
    a, b = {"w": np.zeros(2)}, {"w": np.zeros(2)}
    plain, nest = make_optimizer("momentum", a, lr=0.1), make_optimizer("nesterov", b, lr=0.1)
    for _ in range(2):
        plain.step(a, {"w": np.ones(2)})
        nest.step(b, {"w": np.ones(2)})
    # v = 1 then 1.9; heavy ball steps by lr v, Nesterov by lr (g + mu v) = lr 1.9 then lr 2.71
    assert np.allclose(a["w"], -0.1 * (1 + 1.9)) and np.allclose(b["w"], -0.1 * (1.9 + 2.71))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_float32_params_stay_float32_and_are_updated_in_place(name):
    rng = np.random.default_rng(5)
    params = {"W": rng.standard_normal((4, 3)).astype(np.float32), "b": np.zeros(3, np.float32)}
    arrays_before = {k: p for k, p in params.items()}
    opt = make_optimizer(name, params, lr=0.01)
    for _ in range(3):
        grads = {k: rng.standard_normal(p.shape).astype(np.float32) for k, p in params.items()}
        opt.step(params, grads)
    for k, p in params.items():
        assert p is arrays_before[k] and p.dtype == np.float32
    assert all(a.dtype == np.float32 for a in opt.state_dict()[1].values())


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_reads_lr_at_step_time(name):
    params = {"w": np.array([1.0, -2.0, 3.0])}
    opt = make_optimizer(name, params, lr=0.1)
    opt.lr = 0.0
    opt.step(params, {"w": np.array([0.5, 0.5, -1.0])})
    assert np.array_equal(params["w"], [1.0, -2.0, 3.0])
    opt.lr = 0.1
    opt.step(params, {"w": np.array([0.5, 0.5, -1.0])})
    assert not np.array_equal(params["w"], [1.0, -2.0, 3.0])


def test_unknown_optimizer():
    with pytest.raises(CharnnError, match="unknown optimizer"):
        make_optimizer("lbfgs", {}, 0.1)


def test_every_optimizer_is_buildable_by_name():
    for name in OPTIMIZERS:
        assert make_optimizer(name, {"w": np.zeros(1)}, lr=0.1).name == name
