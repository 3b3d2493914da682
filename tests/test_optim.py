import numpy as np
import pytest

from charnn.optim import SGD, Adam, clip_grad_norm, make_optimizer
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


@pytest.mark.parametrize("name", ["adam", "sgd"])
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
    clone_params = {"w": params["w"].copy()}
    clone = make_optimizer(name, clone_params, lr=0.1)
    clone.load_state_dict(meta, {k: a.copy() for k, a in arrays.items()})
    g = {"w": 2 * (params["w"] - target)}
    opt.step(params, {"w": g["w"].copy()})
    clone.step(clone_params, {"w": g["w"].copy()})
    assert np.array_equal(params["w"], clone_params["w"])


def test_unknown_optimizer():
    with pytest.raises(CharnnError, match="unknown optimizer"):
        make_optimizer("lbfgs", {}, 0.1)
