"""Every numba kernel against its numpy reference twin (charnn/fast.py vs layers/rnn/lstm/gru).

float32, odd shapes including B=1 and T=1. Tolerance: the kernels use a rational tanh accurate to
a few ulp and accumulate in a different order, so outputs agree to ~1e-6 relative and gradients,
which pass through T steps of products, to ~1e-5 relative (scaled by the array's largest entry).
"""
import numpy as np
import pytest

from charnn.backend.numba import gemm
from charnn.backend.numba import layers as fast
from charnn.nn import gru, layers, lstm, rnn
from charnn.nn.activations import ACTIVATIONS
from charnn.nn.gradcheck import rel_error
from charnn.backend.numba import kernels as K

SHAPES = [(1, 1, 3, 4), (2, 5, 3, 7), (3, 8, 6, 16), (1, 9, 5, 33)]  # (B, T, D, H)


@pytest.fixture(params=["tiles", "blas"])
def products(request, monkeypatch):
    """A test that runs matrix products, twice: on charnn's tiles (a recurrent time loop in one
    kernel) and on numpy's BLAS (the loop in Python), whatever this machine's calibration chose."""
    monkeypatch.setattr(gemm, "MODE", request.param)
    return request.param


def arrays(rng, *shapes, scale=0.5):
    return [(rng.standard_normal(s) * scale).astype(np.float32) for s in shapes]


@pytest.fixture(params=["x", "ids"])
def inputs(request):
    """A test of a recurrent layer, twice: its input as activations x (B, T, D), and as ids into
    a table (layers.Embedded, how the models feed their first layer; dx is then the table's)."""
    return request.param


def layer_input(kind, x, rng):
    """x itself, or ids (B, T, 1), one a step, into a (V, D) table: a few ids, so that rows repeat."""
    if kind == "x":
        return x
    B, T, D = x.shape
    V = 5
    return layers.Embedded(rng.integers(0, V, (B, T, 1)).astype(np.int32), arrays(rng, (V, D))[0])


# Forward tolerance: the kernels' tanh is a float32 rational approximation evaluated in float32
# (max relative error 4e-7 a call, tested below), and their products sum in another order than
# numpy's BLAS (charnn.gemm); both rounding differences are amplified from step to step through Wh.
# Neither side is exact: over 200 seeds at (B, T, D, H) = (1, 9, 5, 33) the float32 reference
# itself is up to 1.05e-5 from the float64 result (median 1.9e-6), the numba path up to 1.9e-5
# (median 2.9e-6). A wrong index or a missed term shows up as errors of order 1e-2 and more.
FWD_TOL = 2.5e-5


def close(a, b, tol):
    assert a.dtype == b.dtype == np.float32
    assert rel_error(a, b) < tol, rel_error(a, b)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_a_contiguous_input_runs_the_loop_compiled_for_a_layers_own_output(cell, monkeypatch):
    """A layer's input is the previous layer's h[:, 1:] (strided: past the h0 column), or after
    dropout a contiguous array: the time loop reads both in the first's layout, so numba compiles
    it once (layers._loop_input), and computes the same bits from either."""
    import numba

    monkeypatch.setattr(gemm, "MODE", "tiles")
    rng = np.random.default_rng(7)
    B, T, D, H = 3, 6, 5, 8
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell] * H
    buffer, h0, Wx, Wh, b = arrays(rng, (B, T + 1, D), (B, H), (D, G), (H, G), (G,))
    strided = buffer[:, 1:]
    x = np.ascontiguousarray(strided)
    forward = getattr(fast, f"{cell}_forward")
    state = (h0, h0) if cell == "lstm" else (h0,)
    assert np.array_equal(forward(strided, *state, Wx, Wh, b)[0], forward(x, *state, Wx, Wh, b)[0])
    src = fast._loop_input(x, Wx)[0]
    assert numba.typeof(src).layout == numba.typeof(strided).layout == "A" and np.array_equal(src, x)


def test_fast_tanh_and_sigmoid_accuracy():
    from numba import njit

    @njit
    def apply(x, out, which):
        for i in range(x.size):
            out[i] = K.tanh(x[i]) if which == 0 else K.sigmoid(x[i])

    x = np.concatenate([np.linspace(-30, 30, 400_001), [-1e30, -100, -1e-30, 0, 1e-30, 100, 1e30]]).astype(np.float32)
    out = np.empty_like(x)
    apply(x, out, 0)
    exact = np.tanh(x.astype(np.float64))
    assert np.max(np.abs(out - exact) / np.maximum(np.abs(exact), 1e-30)) < 4e-7
    assert np.all(np.abs(out) <= 1)
    apply(x, out, 1)
    exact = 0.5 * (1 + np.tanh(0.5 * x.astype(np.float64)))
    assert np.max(np.abs(out - exact)) < 3e-7 and np.all((out >= 0) & (out <= 1))


@pytest.mark.usefixtures("products")
@pytest.mark.parametrize("B,T,D,H", SHAPES)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_rnn_kernels_match_reference(B, T, D, H, activation, inputs):
    rng = np.random.default_rng(B * 100 + T)
    x, h0, Wx, Wh, b, dhs, dh_last = arrays(rng, (B, T, D), (B, H), (D, H), (H, H), (H,), (B, T, H), (B, H))
    x = layer_input(inputs, x, rng)
    hs_ref, cache_ref = rnn.rnn_forward(x, h0, Wx, Wh, b, activation)
    hs, cache = fast.rnn_forward(x, h0, Wx, Wh, b, activation)
    close(hs, hs_ref, FWD_TOL)
    for g, g_ref in zip(fast.rnn_backward(dhs, cache, dh_last), rnn.rnn_backward(dhs, cache_ref, dh_last)):
        close(g, g_ref, 2e-5)


@pytest.mark.usefixtures("products")
@pytest.mark.parametrize("B,T,D,H", SHAPES)
def test_lstm_kernels_match_reference(B, T, D, H, inputs):
    rng = np.random.default_rng(B * 100 + T)
    x, h0, c0, Wx, Wh, b, dhs, dh_last, dc_last = arrays(
        rng, (B, T, D), (B, H), (B, H), (D, 4 * H), (H, 4 * H), (4 * H,), (B, T, H), (B, H), (B, H))
    x = layer_input(inputs, x, rng)
    hs_ref, c_ref, cache_ref = lstm.lstm_forward(x, h0, c0, Wx, Wh, b)
    hs, c_last, cache = fast.lstm_forward(x, h0, c0, Wx, Wh, b)
    close(hs, hs_ref, FWD_TOL)
    close(c_last, c_ref, FWD_TOL)
    for name in ("h", "c", "gates", "tanh_c"):
        close(getattr(cache, name), getattr(cache_ref, name), FWD_TOL)
    for last in [(None, None), (dh_last, dc_last)]:
        for g, g_ref in zip(fast.lstm_backward(dhs, cache, *last), lstm.lstm_backward(dhs, cache_ref, *last)):
            close(g, g_ref, 2e-5)


@pytest.mark.usefixtures("products")
@pytest.mark.parametrize("B,T,D,H", SHAPES)
def test_gru_kernels_match_reference(B, T, D, H, inputs):
    rng = np.random.default_rng(B * 100 + T)
    x, h0, Wx, Wh, b, dhs, dh_last = arrays(rng, (B, T, D), (B, H), (D, 3 * H), (H, 3 * H), (3 * H,), (B, T, H), (B, H))
    x = layer_input(inputs, x, rng)
    hs_ref, cache_ref = gru.gru_forward(x, h0, Wx, Wh, b)
    hs, cache = fast.gru_forward(x, h0, Wx, Wh, b)
    close(hs, hs_ref, FWD_TOL)
    for last in [None, dh_last]:
        for g, g_ref in zip(fast.gru_backward(dhs, cache, last), gru.gru_backward(dhs, cache_ref, last)):
            close(g, g_ref, 2e-5)


@pytest.mark.usefixtures("products")
def test_recurrent_layer_reading_several_ids_a_step_matches_reference():
    """Embedded with K = 2 ids a step (the models give one): the time loops take x formed."""
    rng = np.random.default_rng(5)
    B, T, E, H = 3, 4, 5, 6
    x = layers.Embedded(rng.integers(0, 4, (B, T, 2)).astype(np.int32), arrays(rng, (4, E))[0])
    h0, c0, Wx, Wh, b, dhs = arrays(rng, (B, H), (B, H), (2 * E, 4 * H), (H, 4 * H), (4 * H,), (B, T, H))
    hs_ref, _, cache_ref = lstm.lstm_forward(x, h0, c0, Wx, Wh, b)
    hs, _, cache = fast.lstm_forward(x, h0, c0, Wx, Wh, b)
    close(hs, hs_ref, FWD_TOL)
    for g, g_ref in zip(fast.lstm_backward(dhs, cache), lstm.lstm_backward(dhs, cache_ref)):
        close(g, g_ref, 2e-5)


@pytest.mark.parametrize("N,V", [(1, 1), (1, 5), (7, 65), (300, 97)])
def test_softmax_cross_entropy_kernels_match_reference(N, V):
    rng = np.random.default_rng(N)
    logits = (rng.standard_normal((N, V)) * 4).astype(np.float32)
    logits[0, 0] = 80.0  # large logits must not overflow
    targets = rng.integers(0, V, N).astype(np.int32)
    loss_ref, cache_ref = layers.softmax_cross_entropy_forward(logits, targets)
    loss, cache = fast.softmax_cross_entropy_forward(logits, targets)
    assert loss.dtype == np.float32 and loss == pytest.approx(float(loss_ref), rel=1e-6, abs=1e-6)
    close(cache.probs, cache_ref.probs, 1e-6)
    close(fast.softmax_cross_entropy_backward(1.0, cache), layers.softmax_cross_entropy_backward(1.0, cache_ref), 1e-6)


def test_softmax_cross_entropy_is_the_same_bits_on_any_number_of_threads():
    """The rows run on the threads; the loss adds them in row order after, so a step's loss does
    not depend on how many threads training's pace chose for it."""
    import numba

    from charnn.backend.numba.threads import numba_threads

    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((2048, 65)) * 4).astype(np.float32)
    targets = rng.integers(0, 65, 2048).astype(np.int64)
    runs = []
    for threads in (1, numba.get_num_threads()):
        with numba_threads(threads):
            loss, cache = fast.softmax_cross_entropy_forward(logits, targets)
            runs.append((loss, cache.probs, fast.softmax_cross_entropy_backward(0.5, cache)))
    (loss1, probs1, d1), (loss2, probs2, d2) = runs
    assert loss1 == loss2 and np.array_equal(probs1, probs2) and np.array_equal(d1, d2)


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (2, 5, 3)])
@pytest.mark.parametrize("E", [6, 2 * K.SCATTER_COLUMNS + 40])  # one column task; three, the last partial
def test_embedding_backward_kernel_matches_reference(shape, E):
    rng = np.random.default_rng(len(shape))
    ids = rng.integers(0, 4, shape)  # few ids: many repeated rows to accumulate
    W = arrays(rng, (4, E))[0]
    dx = arrays(rng, shape + (E,))[0]
    _, cache = layers.embedding_forward(ids, W)
    close(fast.embedding_backward(dx, cache), layers.embedding_backward(dx, cache), 1e-6)


@pytest.mark.usefixtures("products")
@pytest.mark.parametrize("N,K_,E,M", [(1, 1, 3, 4), (7, 3, 5, 9), (130, 16, 8, 300)])
def test_linear_reading_ids_matches_reference(N, K_, E, M):
    """The MLP's first layer: K ids a row into a (V, E) table, through a linear map; the table's
    gradient in dx's place. Few ids, so rows repeat within and across slots."""
    rng = np.random.default_rng(N)
    x = layers.Embedded(rng.integers(0, 4, (N, K_)), arrays(rng, (4, E))[0])
    W, b, dy = arrays(rng, (K_ * E, M), (M,), (N, M))
    y_ref, cache_ref = layers.linear_forward(x, W, b)
    y, cache = fast.linear_forward(x, W, b)
    close(y, y_ref, 1e-6)
    for g, g_ref in zip(fast.linear_backward(dy, cache), layers.linear_backward(dy, cache_ref)):
        close(g, g_ref, 2e-6)


def test_adam_kernel_matches_reference():
    from charnn.train.optim import Adam

    rng = np.random.default_rng(0)
    params = {"a": arrays(rng, (5, 7))[0], "b": arrays(rng, (3,))[0]}
    ref_params = {k: p.copy() for k, p in params.items()}
    from charnn.backend import get_backend

    fast_opt, ref_opt = Adam(params, lr=0.01, update=get_backend("numba").adam_update), Adam(ref_params, lr=0.01)
    for _ in range(5):
        grads = {k: arrays(rng, p.shape)[0] for k, p in params.items()}
        fast_opt.step(params, {k: g.copy() for k, g in grads.items()})
        ref_opt.step(ref_params, grads)
    for k in params:
        assert params[k].dtype == np.float32
        np.testing.assert_allclose(params[k], ref_params[k], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(fast_opt.v[k], ref_opt.v[k], rtol=1e-6, atol=1e-12)


@pytest.mark.usefixtures("products")
@pytest.mark.parametrize("N,D,M", [(1, 1, 1), (7, 5, 65), (130, 64, 128)])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_linear_and_dense_match_reference(N, D, M, activation):
    """The head (linear) and the MLP's hidden layers (dense) with the backend's matrix products."""
    rng = np.random.default_rng(N + D + M)
    x, W, b, dy = arrays(rng, (N, D), (D, M), (M,), (N, M))
    y, cache = fast.linear_forward(x, W, b)
    y_ref, cache_ref = layers.linear_forward(x, W, b)
    close(y, y_ref, FWD_TOL)
    for g, g_ref in zip(fast.linear_backward(dy, cache), layers.linear_backward(dy, cache_ref)):
        close(g, g_ref, 2e-5)
    h, cache = fast.dense_forward(x, W, b, activation)
    h_ref, cache_ref = layers.dense_forward(x, W, b, activation)
    close(h, h_ref, FWD_TOL)
    for g, g_ref in zip(fast.dense_backward(dy, cache), layers.dense_backward(dy, cache_ref)):
        close(g, g_ref, 2e-5)


def _panels(W):
    Wp = np.empty((-(-W.shape[1] // K.NR), W.shape[0], K.NR), np.float32)
    K.pack_panels_kernel(W, Wp)
    return Wp


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("B,parts", [(1, 2), (5, 2), (7, 3), (32, 2)])
def test_row_split_loops_compute_the_same_bits_as_the_panel_loops(cell, B, parts, inputs):
    """kernels.*_rows (each thread the whole sequence for its own batch rows) against *_loop (the
    threads share each step's products), forward and backward: equal to the last bit, whatever
    the number of parts, also where a part has no rows. Input x with packed Wx, or ids with the
    table's product P = table @ Wx (kernels.project_step)."""
    rng = np.random.default_rng(B * 10 + parts)
    T, D, H = 6, 5, 19
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell] * H
    x, Wx, Wh, b = arrays(rng, (B, T, D), (D, G), (H, G), (G,))
    Wxp, Whp, WhTp = (_panels(W) for W in (Wx, Wh, Wh.T))
    if inputs == "ids":
        x, Wxp = rng.integers(0, 4, (B, T)).astype(np.int32), arrays(rng, (4, G))[0]
    dhs = arrays(rng, (B, T, H), scale=0.1)[0]

    def run(split):
        h = np.zeros((B, T + 1, H), np.float32)
        h[:, 0] = 0.3
        xa_t, ha = np.zeros((B, G), np.float32), np.zeros((B, G), np.float32)
        tail = (parts,) if split == "rows" else ()
        kernel = lambda name: getattr(K, f"{cell}_{name}_{'rows' if split == 'rows' else 'loop'}")  # noqa: E731
        if cell == "rnn":
            kernel("forward")(x, Wxp, b, Whp, h, xa_t, ha, K.TANH, *tail)
            dh, da = np.zeros((B, H), np.float32), np.zeros((B, T, G), np.float32)
            kernel("backward")(dhs, dh, h, da, WhTp, K.TANH, *tail)
            return h, dh, da
        if cell == "lstm":
            c, gates, tanh_c = np.zeros((B, T + 1, H), np.float32), np.zeros((B, T, G), np.float32), np.zeros((B, T, H), np.float32)
            kernel("forward")(x, Wxp, b, Whp, h, c, gates, tanh_c, xa_t, ha, *tail)
            dh, dc, da = np.zeros((B, H), np.float32), np.ones((B, H), np.float32), np.zeros((B, T, G), np.float32)
            kernel("backward")(dhs, dh, dc, c, gates, tanh_c, da, WhTp, *tail)
            return h, c, gates, tanh_c, dh, dc, da
        gates, ha_n = np.zeros((B, T, G), np.float32), np.zeros((B, T, H), np.float32)
        kernel("forward")(x, Wxp, b, Whp, h, gates, ha_n, xa_t, ha, *tail)
        dh, dh_direct = np.zeros((B, H), np.float32), np.full((B, H), 0.2, np.float32)
        dxa, dha = np.zeros((B, T, G), np.float32), np.zeros((B, T, G), np.float32)
        kernel("backward")(dhs, dh, dh_direct, h, gates, ha_n, dxa, dha, WhTp, *tail)
        return h, gates, ha_n, dh, dh_direct, dxa, dha

    for panels, rows in zip(run("panels"), run("rows")):
        assert np.array_equal(panels, rows)
    assert np.abs(run("rows")[-1]).max() > 0  # the backward pass computed something


@pytest.mark.parametrize("H", [5, 16, 37])  # only a partial vector, only full ones, both (LANES 16, 8 or 4)
def test_cell_vectors_keep_each_units_nan_and_saturate_infinities(H):
    """The cells' explicit vectors (kernels.lanes, put, clamp) compute unit by unit as the numpy
    reference does, in full vectors and in the partial one at the end: a NaN pre-activation stays
    in its own unit (divergence detection relies on it) and +-inf saturates the gates."""
    rng = np.random.default_rng(H)
    for cell, G in (("lstm", 4 * H), ("gru", 3 * H)):
        xa = arrays(rng, (1, G))[0]
        xa[0, 0] = np.nan  # unit 0's first gate
        xa[0, G - 1] = np.inf  # the last unit's last gate (g, n): in the partial vector where there is one
        xa[0, H + H // 2] = -np.inf  # a forget (update) gate: sigmoid 0
        h_prev, c_prev = arrays(rng, (1, H), (1, H))
        zero_G, zero_Wh = np.zeros(G, np.float32), np.zeros((H, G), np.float32)
        h_next, gates = np.empty(H, np.float32), np.empty(G, np.float32)
        with np.errstate(invalid="ignore"):
            if cell == "lstm":
                want_h, want_c, want_gates, _ = lstm.lstm_cell(xa, h_prev, c_prev, zero_Wh)
                c_next, tanh_c = np.empty(H, np.float32), np.empty(H, np.float32)
                K.lstm_row_forward(xa[0], zero_G, zero_G, c_prev[0], c_next, h_next, gates, tanh_c)
                c_block, h_block = c_prev[0].copy(), np.empty(H, np.float32)
                K.lstm_block_forward(xa[0], zero_G, c_block, h_block)  # sampling's twin
                np.testing.assert_allclose(c_next, want_c[0], rtol=1e-6, atol=1e-7)
                np.testing.assert_allclose(c_block, want_c[0], rtol=1e-6, atol=1e-7)
                np.testing.assert_allclose(h_block, want_h[0], rtol=1e-6, atol=1e-7)
            else:
                want_h, want_gates, _ = gru.gru_cell(xa, h_prev, zero_Wh)
                K.gru_row_forward(xa[0], zero_G, zero_G, h_prev[0], h_next, gates, np.empty(H, np.float32))
        assert np.isnan(h_next[0]) and np.isfinite(h_next[1:]).all(), cell
        np.testing.assert_allclose(h_next, want_h[0], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(gates, want_gates[0], rtol=1e-6, atol=2.5e-7)  # sigmoid(-inf): 1.2e-7 (tanh's fit)
        assert 1.0 - 1e-6 < gates[G - 1] <= 1.0 and 0.0 <= gates[H + H // 2] < 1e-6
