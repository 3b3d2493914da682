"""GRU layer: backward against centred finite differences (float64), structural equalities, and the
equations themselves pinned on a tiny hand-computed case.

Tolerance: the max abs error relative to the largest gradient entry (charnn.gradcheck.rel_error)
must be below 1e-7 for every gradient; correct code measures ~1e-10 to 1e-11.
"""
import math

import numpy as np
import pytest

from charnn.nn.gradcheck import assert_gradients_match, numerical_gradient, rel_error
from charnn.nn.gru import gru_backward, gru_forward, gru_step_backward, gru_step_forward

TOL = 1e-7


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def check(f, analytic, *arrays):
    assert_gradients_match(f, analytic, *arrays, tol=TOL)


def gru_params(rng, D=4, H=5):
    return rng.standard_normal((D, 3 * H)) * 0.5, rng.standard_normal((H, 3 * H)) * 0.5, rng.standard_normal(3 * H) * 0.1


# ------------------------------------------------------------ the equations
def test_gru_step_matches_hand_computed_equations():
    # D = 1, H = 2: two hidden units, so the reset gate applied after the matmul (r_j * (h @ Wh)_j)
    # differs from the form that resets before it ((r * h) @ Wh); with H = 1 the two coincide.
    x = [0.5]
    h = [0.3, -0.6]
    Wx = [[0.2, -0.4, 0.7, 0.1, 0.9, -0.3]]  # columns r1 r2 | z1 z2 | n1 n2
    Wh = [[0.5, -0.2, 0.3, 0.8, -0.7, 0.4],
          [0.1, 0.6, -0.5, 0.2, 0.3, -0.9]]
    b = [0.1, -0.1, 0.05, 0.2, -0.2, 0.3]
    H = 2

    def xa(col):
        return x[0] * Wx[0][col] + b[col]

    def ha(col, hh):
        return sum(hh[k] * Wh[k][col] for k in range(H))

    def sig(a):
        return 1.0 / (1.0 + math.exp(-a))

    r = [sig(xa(j) + ha(j, h)) for j in range(H)]
    z = [sig(xa(H + j) + ha(H + j, h)) for j in range(H)]
    n = [math.tanh(xa(2 * H + j) + r[j] * ha(2 * H + j, h)) for j in range(H)]
    expected = [(1 - z[j]) * n[j] + z[j] * h[j] for j in range(H)]

    h_next, cache = gru_step_forward(np.array([x]), np.array([h]), np.array(Wx), np.array(Wh), np.array(b))
    assert np.allclose(h_next[0], expected, rtol=1e-12, atol=1e-14)
    assert np.allclose(cache.gates[0], r + z + n, rtol=1e-12, atol=1e-14)

    # the numbers tell the two reset placements apart, so this test does pin the formulation
    rh = [r[k] * h[k] for k in range(H)]
    n_before = [math.tanh(xa(2 * H + j) + ha(2 * H + j, rh)) for j in range(H)]
    reset_before = [(1 - z[j]) * n_before[j] + z[j] * h[j] for j in range(H)]
    assert not np.allclose(h_next[0], reset_before, rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------ gradients
def test_gru_step_gradient(rng):
    Wx, Wh, b = gru_params(rng)
    x, h_prev = rng.standard_normal((3, 4)), rng.standard_normal((3, 5))
    dh = rng.standard_normal((3, 5))
    _, cache = gru_step_forward(x, h_prev, Wx, Wh, b)
    grads = gru_step_backward(dh, cache)
    check(lambda: np.sum(gru_step_forward(x, h_prev, Wx, Wh, b)[0] * dh), grads, x, h_prev, Wx, Wh, b)


@pytest.mark.parametrize("with_last", [False, True])
def test_gru_sequence_gradient(rng, with_last):
    Wx, Wh, b = gru_params(rng)
    x, h0 = rng.standard_normal((2, 6, 4)), rng.standard_normal((2, 5))
    dhs = rng.standard_normal((2, 6, 5))
    dh_last = rng.standard_normal((2, 5)) if with_last else None

    def f():
        hs, _ = gru_forward(x, h0, Wx, Wh, b)
        return np.sum(hs * dhs) + (np.sum(hs[:, -1] * dh_last) if with_last else 0.0)

    _, cache = gru_forward(x, h0, Wx, Wh, b)
    grads = gru_backward(dhs, cache, dh_last)
    check(f, grads, x, h0, Wx, Wh, b)


# ------------------------------------------------------------ structural equalities
def test_gru_loop_of_steps_equals_sequence(rng):
    Wx, Wh, b = gru_params(rng)
    x, h = rng.standard_normal((3, 7, 4)), rng.standard_normal((3, 5))
    hs, _ = gru_forward(x, h, Wx, Wh, b)
    for t in range(7):
        h, _ = gru_step_forward(x[:, t], h, Wx, Wh, b)
        assert np.allclose(h, hs[:, t], rtol=1e-12, atol=1e-14)


def test_gru_two_chunks_equal_one_long_chunk(rng):
    Wx, Wh, b = gru_params(rng)
    x, h0 = rng.standard_normal((2, 8, 4)), rng.standard_normal((2, 5))
    dhs = rng.standard_normal((2, 8, 5))
    hs, cache = gru_forward(x, h0, Wx, Wh, b)
    hs1, cache1 = gru_forward(x[:, :3], h0, Wx, Wh, b)
    hs2, cache2 = gru_forward(x[:, 3:], hs1[:, -1], Wx, Wh, b)
    assert np.allclose(np.concatenate([hs1, hs2], axis=1), hs, rtol=1e-12, atol=1e-14)
    # backward: the gradient reaching chunk 2's initial state flows into chunk 1's final state
    dx, dh0, dWx, dWh, db = gru_backward(dhs, cache)
    dx2, dh_mid, dWx2, dWh2, db2 = gru_backward(dhs[:, 3:], cache2)
    dx1, dh0_1, dWx1, dWh1, db1 = gru_backward(dhs[:, :3], cache1, dh_last=dh_mid)
    assert np.allclose(np.concatenate([dx1, dx2], axis=1), dx)
    assert np.allclose(dh0_1, dh0) and np.allclose(dWx1 + dWx2, dWx) and np.allclose(dWh1 + dWh2, dWh) and np.allclose(db1 + db2, db)


def test_gru_batch_equals_rows_alone(rng):
    Wx, Wh, b = gru_params(rng)
    x, h0 = rng.standard_normal((4, 6, 4)), rng.standard_normal((4, 5))
    hs, _ = gru_forward(x, h0, Wx, Wh, b)
    for r in range(4):
        hr, _ = gru_forward(x[r : r + 1], h0[r : r + 1], Wx, Wh, b)
        assert np.allclose(hr[0], hs[r], rtol=1e-12, atol=1e-14)


def test_gru_float32_stays_float32(rng):
    Wx, Wh, b = (p.astype(np.float32) for p in gru_params(rng))
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    h0 = rng.standard_normal((2, 5)).astype(np.float32)
    hs, cache = gru_forward(x, h0, Wx, Wh, b)
    assert hs.dtype == np.float32
    assert all(g.dtype == np.float32 for g in gru_backward(np.ones_like(hs), cache))
    assert all(g.dtype == np.float32 for g in gru_backward(np.ones_like(hs), cache, np.ones_like(h0)))
    h1, step_cache = gru_step_forward(x[:, 0], h0, Wx, Wh, b)
    assert h1.dtype == np.float32
    assert all(g.dtype == np.float32 for g in gru_step_backward(np.ones_like(h1), step_cache))
