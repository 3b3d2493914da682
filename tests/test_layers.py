"""Every layer's backward against centred finite differences (float64), plus structural equalities.

Tolerance: the max abs error relative to the largest gradient entry (charnn.gradcheck.rel_error)
must be below 1e-7 for every gradient; correct code measures ~1e-9 to 1e-11.
"""
import numpy as np
import pytest

from charnn.nn.gradcheck import assert_gradients_match, numerical_gradient, rel_error
from charnn.nn import gru
from charnn.nn.layers import (
    Embedded, embedding_backward, embedding_forward, linear_backward, linear_forward, log_softmax, one_hot,
    softmax_cross_entropy_backward, softmax_cross_entropy_forward,
)
from charnn.nn.activations import sigmoid
from charnn.nn.lstm import lstm_backward, lstm_cell, lstm_forward, lstm_step_backward, lstm_step_forward
from charnn.nn.rnn import rnn_backward, rnn_forward, rnn_step_backward, rnn_step_forward

TOL = 1e-7


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def check(f, analytic, *arrays):
    assert_gradients_match(f, analytic, *arrays, tol=TOL)


# ------------------------------------------------------------ embedding, linear, softmax-CE
def test_embedding_gradient(rng):
    ids = rng.integers(0, 5, size=(3, 4))
    ids[0, :2] = 2  # a repeated id must accumulate its gradients
    W = rng.standard_normal((5, 6))
    dx = rng.standard_normal((3, 4, 6))
    _, cache = embedding_forward(ids, W)
    dW = embedding_backward(dx, cache)
    check(lambda: np.sum(embedding_forward(ids, W)[0] * dx), [dW], W)


def test_one_hot_is_embedding_with_identity(rng):
    ids = rng.integers(0, 7, size=(2, 5))
    assert np.array_equal(one_hot(ids, 7, np.float64), embedding_forward(ids, np.eye(7))[0])


def test_linear_gradient(rng):
    x, W, b = rng.standard_normal((7, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    dy = rng.standard_normal((7, 3))
    _, cache = linear_forward(x, W, b)
    grads = linear_backward(dy, cache)
    check(lambda: np.sum(linear_forward(x, W, b)[0] * dy), grads, x, W, b)


def test_softmax_cross_entropy_gradient(rng):
    logits = rng.standard_normal((6, 5)) * 3
    targets = rng.integers(0, 5, size=6)
    _, cache = softmax_cross_entropy_forward(logits, targets)
    dlogits = softmax_cross_entropy_backward(1.0, cache)
    check(lambda: softmax_cross_entropy_forward(logits, targets)[0], [dlogits], logits)


def test_fused_softmax_ce_equals_softmax_then_log_loss(rng):
    logits = rng.standard_normal((9, 11)) * 4
    targets = rng.integers(0, 11, size=9)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(probs[np.arange(9), targets]))
    loss, cache = softmax_cross_entropy_forward(logits, targets)
    assert loss == pytest.approx(expected, rel=1e-12)
    assert np.allclose(cache.probs, probs, rtol=1e-12)
    assert np.allclose(log_softmax(logits), np.log(probs), rtol=1e-12)


def test_softmax_ce_is_stable_for_huge_logits():
    logits = np.array([[1000.0, -1000.0, 0.0], [-5e4, 5e4, 5e4]], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        loss, cache = softmax_cross_entropy_forward(logits, np.array([0, 1]))
    assert np.isfinite(loss) and loss == pytest.approx(np.log(2) / 2, rel=1e-5)
    assert np.isfinite(softmax_cross_entropy_backward(1.0, cache)).all()


def test_sigmoid_does_not_overflow():
    a = np.array([-1000.0, -101.0, 0.0, 101.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = sigmoid(a)
    assert np.allclose(s, [0, 0, 0.5, 1, 1]) and (s >= 0).all() and (s <= 1).all()


# ------------------------------------------------------------ vanilla RNN
def rnn_params(rng, D=4, H=5):
    return rng.standard_normal((D, H)) * 0.5, rng.standard_normal((H, H)) * 0.5, rng.standard_normal(H) * 0.1


def test_rnn_step_gradient(rng):
    Wx, Wh, b = rnn_params(rng)
    x, h_prev = rng.standard_normal((3, 4)), rng.standard_normal((3, 5))
    dh = rng.standard_normal((3, 5))
    _, cache = rnn_step_forward(x, h_prev, Wx, Wh, b)
    grads = rnn_step_backward(dh, cache)
    check(lambda: np.sum(rnn_step_forward(x, h_prev, Wx, Wh, b)[0] * dh), grads, x, h_prev, Wx, Wh, b)


@pytest.mark.parametrize("with_last", [False, True])
def test_rnn_sequence_gradient(rng, with_last):
    Wx, Wh, b = rnn_params(rng)
    x, h0 = rng.standard_normal((2, 6, 4)), rng.standard_normal((2, 5))
    dhs = rng.standard_normal((2, 6, 5))
    dh_last = rng.standard_normal((2, 5)) if with_last else None

    def f():
        hs, _ = rnn_forward(x, h0, Wx, Wh, b)
        return np.sum(hs * dhs) + (np.sum(hs[:, -1] * dh_last) if with_last else 0.0)

    _, cache = rnn_forward(x, h0, Wx, Wh, b)
    grads = rnn_backward(dhs, cache, dh_last)
    check(f, grads, x, h0, Wx, Wh, b)


# ------------------------------------------------------------ LSTM
def lstm_params(rng, D=4, H=5):
    return rng.standard_normal((D, 4 * H)) * 0.5, rng.standard_normal((H, 4 * H)) * 0.5, rng.standard_normal(4 * H) * 0.1


def test_lstm_step_gradient(rng):
    Wx, Wh, b = lstm_params(rng)
    x, h_prev, c_prev = rng.standard_normal((3, 4)), rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    dh, dc = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))

    def f():
        h, c, _ = lstm_step_forward(x, h_prev, c_prev, Wx, Wh, b)
        return np.sum(h * dh) + np.sum(c * dc)

    _, _, cache = lstm_step_forward(x, h_prev, c_prev, Wx, Wh, b)
    grads = lstm_step_backward(dh, dc, cache)
    check(f, grads, x, h_prev, c_prev, Wx, Wh, b)


@pytest.mark.parametrize("with_last", [False, True])
def test_lstm_sequence_gradient(rng, with_last):
    Wx, Wh, b = lstm_params(rng)
    x = rng.standard_normal((2, 6, 4))
    h0, c0 = rng.standard_normal((2, 5)), rng.standard_normal((2, 5))
    dhs = rng.standard_normal((2, 6, 5))
    dh_last, dc_last = (rng.standard_normal((2, 5)), rng.standard_normal((2, 5))) if with_last else (None, None)

    def f():
        hs, c_last, _ = lstm_forward(x, h0, c0, Wx, Wh, b)
        extra = np.sum(hs[:, -1] * dh_last) + np.sum(c_last * dc_last) if with_last else 0.0
        return np.sum(hs * dhs) + extra

    _, _, cache = lstm_forward(x, h0, c0, Wx, Wh, b)
    grads = lstm_backward(dhs, cache, dh_last, dc_last)
    check(f, grads, x, h0, c0, Wx, Wh, b)


# ------------------------------------------------------------ a first layer reading ids
CELLS = {"rnn": (1, rnn_forward, rnn_backward), "lstm": (4, lstm_forward, lstm_backward), "gru": (3, gru.gru_forward, gru.gru_backward)}


def _run_cell(cell, x, state, Wx, Wh, b):
    """hs (B, T, H), cache of `cell`'s sequence forward from state (h0,) or (h0, c0)."""
    out = CELLS[cell][1](x, *state, Wx, Wh, b)
    return out[0], out[-1]


@pytest.mark.parametrize("cell", list(CELLS))
def test_embedded_input_gradient(rng, cell):
    """Input as ids into a table (the recurrent models' first layer): the gradient returned in
    dx's place is the table's, and the table, state and weights all check out."""
    G = CELLS[cell][0] * 5
    ids = rng.integers(0, 6, size=(2, 5))
    ids[0, :3] = 4  # a repeated id must accumulate its gradients
    table, Wx, Wh, b = rng.standard_normal((6, 4)), rng.standard_normal((4, G)) * 0.5, rng.standard_normal((5, G)) * 0.5, rng.standard_normal(G) * 0.1
    state = tuple(rng.standard_normal((2, 5)) for _ in range(2 if cell == "lstm" else 1))
    dhs = rng.standard_normal((2, 5, 5))
    _, cache = _run_cell(cell, Embedded(ids[..., None], table), state, Wx, Wh, b)
    grads = CELLS[cell][2](dhs, cache)
    assert grads[0].shape == table.shape
    check(lambda: np.sum(_run_cell(cell, Embedded(ids[..., None], table), state, Wx, Wh, b)[0] * dhs), grads, table, *state, Wx, Wh, b)


def test_embedded_context_in_a_linear_map(rng):
    """The MLP's first layer: K ids a row, their table rows side by side, through a linear map.
    Equal to forming x = table[ids] (N, K*E); the table's gradient comes back in dx's place."""
    ids = rng.integers(0, 5, size=(7, 3))
    ids[:, 0] = 4  # one id in every row of a slot, and again in other slots: sums across both
    table, W, b = rng.standard_normal((5, 4)), rng.standard_normal((12, 6)), rng.standard_normal(6)
    x = Embedded(ids, table)
    assert x.shape == (7, 12)
    y, cache = linear_forward(x, W, b)
    np.testing.assert_allclose(y, linear_forward(table[ids].reshape(7, 12), W, b)[0], rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal((7, 6))
    grads = linear_backward(dy, cache)
    assert grads[0].shape == table.shape
    check(lambda: np.sum(linear_forward(Embedded(ids, table), W, b)[0] * dy), grads, table, W, b)


@pytest.mark.parametrize("cell", list(CELLS))
def test_embedded_input_is_the_table_rows(rng, cell):
    """Embedded(ids[..., None], table) computes what the gathered rows table[ids] compute, and the one-hot
    input is the identity table."""
    G = CELLS[cell][0] * 5
    ids = rng.integers(0, 7, size=(3, 6))
    table, Wx, Wh, b = rng.standard_normal((7, 4)), rng.standard_normal((4, G)), rng.standard_normal((5, G)), rng.standard_normal(G)
    state = tuple(rng.standard_normal((3, 5)) for _ in range(2 if cell == "lstm" else 1))
    hs, _ = _run_cell(cell, Embedded(ids[..., None], table), state, Wx, Wh, b)
    np.testing.assert_allclose(hs, _run_cell(cell, table[ids], state, Wx, Wh, b)[0], rtol=1e-12, atol=1e-12)
    Wx1 = rng.standard_normal((7, G))
    hs, _ = _run_cell(cell, Embedded(ids[..., None], np.eye(7)), state, Wx1, Wh, b)
    np.testing.assert_allclose(hs, _run_cell(cell, one_hot(ids, 7, np.float64), state, Wx1, Wh, b)[0], rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------ structural equalities
def test_rnn_loop_of_steps_equals_sequence(rng):
    Wx, Wh, b = rnn_params(rng)
    x, h = rng.standard_normal((3, 7, 4)), rng.standard_normal((3, 5))
    hs, _ = rnn_forward(x, h, Wx, Wh, b)
    for t in range(7):
        h, _ = rnn_step_forward(x[:, t], h, Wx, Wh, b)
        assert np.allclose(h, hs[:, t], rtol=1e-12, atol=1e-14)


def test_lstm_loop_of_steps_equals_sequence(rng):
    Wx, Wh, b = lstm_params(rng)
    x, h, c = rng.standard_normal((3, 7, 4)), rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    hs, c_last, _ = lstm_forward(x, h, c, Wx, Wh, b)
    for t in range(7):
        h, c, _ = lstm_step_forward(x[:, t], h, c, Wx, Wh, b)
        assert np.allclose(h, hs[:, t], rtol=1e-12, atol=1e-14)
    assert np.allclose(c, c_last, rtol=1e-12, atol=1e-14)


def test_rnn_two_chunks_equal_one_long_chunk(rng):
    Wx, Wh, b = rnn_params(rng)
    x, h0 = rng.standard_normal((2, 8, 4)), rng.standard_normal((2, 5))
    dhs = rng.standard_normal((2, 8, 5))
    hs, cache = rnn_forward(x, h0, Wx, Wh, b)
    hs1, cache1 = rnn_forward(x[:, :3], h0, Wx, Wh, b)
    hs2, cache2 = rnn_forward(x[:, 3:], hs1[:, -1], Wx, Wh, b)
    assert np.allclose(np.concatenate([hs1, hs2], axis=1), hs, rtol=1e-12, atol=1e-14)
    # backward: the gradient reaching chunk 2's initial state flows into chunk 1's final state
    dx, dh0, dWx, dWh, db = rnn_backward(dhs, cache)
    dx2, dh_mid, dWx2, dWh2, db2 = rnn_backward(dhs[:, 3:], cache2)
    dx1, dh0_1, dWx1, dWh1, db1 = rnn_backward(dhs[:, :3], cache1, dh_last=dh_mid)
    assert np.allclose(np.concatenate([dx1, dx2], axis=1), dx)
    assert np.allclose(dh0_1, dh0) and np.allclose(dWx1 + dWx2, dWx) and np.allclose(dWh1 + dWh2, dWh) and np.allclose(db1 + db2, db)


def test_lstm_two_chunks_equal_one_long_chunk(rng):
    Wx, Wh, b = lstm_params(rng)
    x, h0, c0 = rng.standard_normal((2, 8, 4)), rng.standard_normal((2, 5)), rng.standard_normal((2, 5))
    dhs = rng.standard_normal((2, 8, 5))
    hs, c_last, cache = lstm_forward(x, h0, c0, Wx, Wh, b)
    hs1, c1, cache1 = lstm_forward(x[:, :5], h0, c0, Wx, Wh, b)
    hs2, c2, cache2 = lstm_forward(x[:, 5:], hs1[:, -1], c1, Wx, Wh, b)
    assert np.allclose(np.concatenate([hs1, hs2], axis=1), hs, rtol=1e-12, atol=1e-14)
    assert np.allclose(c2, c_last, rtol=1e-12, atol=1e-14)
    dx, dh0, dc0, dWx, dWh, db = lstm_backward(dhs, cache)
    dx2, dh_mid, dc_mid, dWx2, dWh2, db2 = lstm_backward(dhs[:, 5:], cache2)
    dx1, dh0_1, dc0_1, dWx1, dWh1, db1 = lstm_backward(dhs[:, :5], cache1, dh_mid, dc_mid)
    assert np.allclose(np.concatenate([dx1, dx2], axis=1), dx)
    assert np.allclose(dh0_1, dh0) and np.allclose(dc0_1, dc0)
    assert np.allclose(dWx1 + dWx2, dWx) and np.allclose(dWh1 + dWh2, dWh) and np.allclose(db1 + db2, db)


def test_lstm_batch_equals_rows_alone(rng):
    Wx, Wh, b = lstm_params(rng)
    x, h0, c0 = rng.standard_normal((4, 6, 4)), rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    hs, _, _ = lstm_forward(x, h0, c0, Wx, Wh, b)
    for r in range(4):
        hr, _, _ = lstm_forward(x[r : r + 1], h0[r : r + 1], c0[r : r + 1], Wx, Wh, b)
        assert np.allclose(hr[0], hs[r], rtol=1e-12, atol=1e-14)


def test_lstm_cell_float32_stays_float32(rng):
    Wx, Wh, b = (p.astype(np.float32) for p in lstm_params(rng))
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    h0 = np.zeros((2, 5), np.float32)
    hs, c, cache = lstm_forward(x, h0, h0, Wx, Wh, b)
    assert hs.dtype == c.dtype == np.float32
    assert all(g.dtype == np.float32 for g in lstm_backward(np.ones_like(hs), cache))
