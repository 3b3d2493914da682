"""Model-level checks: whole-model gradients, initial loss ~ ln V, the step path equals the
sequence path, a tiny text is overfitted, sampling is reproducible."""
import math

import numpy as np
import pytest

from charnn import CharModel, ModelConfig, Vocab
from charnn.errors import CharnnError, VocabError
from charnn.gradcheck import model_gradient_errors
from charnn.train.optim import Adam, clip_grad_norm

from charnn.nn.activations import ACTIVATIONS

CONFIGS = [("rnn", 6), ("lstm", 6), ("gru", 6), ("mlp", 6), ("rnn", 0), ("lstm", 0), ("gru", 0)]  # (model, embed; 0 = one-hot)


def tiny_model(kind, embed, V=7, H=5, layers=2, dtype=np.float64, seed=0, backend="numpy", **kw):
    """A small model; the numpy backend (the reference) unless asked, since gradient checks need
    float64 math that is exact to rounding."""
    vocab = Vocab([chr(ord("a") + i) for i in range(V)])
    return CharModel.create(ModelConfig(kind, V, H, layers, embed, **kw), vocab, seed=seed, dtype=dtype, backend=backend)


def assert_gradients(model, tol=1e-7):
    rng = np.random.default_rng(1)
    ids, targets = rng.integers(0, 7, (2, 5)), rng.integers(0, 7, (2, 5))
    errors = model_gradient_errors(model, ids, targets)
    assert set(errors) == set(model.params)
    assert max(errors.values()) < tol, errors


@pytest.mark.parametrize("kind,embed", CONFIGS)
def test_whole_model_gradient(kind, embed):
    """Every parameter of a 2-layer model, every entry, in float64: relative error < 1e-7."""
    assert_gradients(tiny_model(kind, embed))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("kind", ["rnn", "mlp"])
def test_whole_model_gradient_every_activation(kind, activation):
    """Kinked activations (relu family) are checked away from their kink: with these seeds no
    pre-activation lies within the finite-difference step of 0. Tolerance 1e-7."""
    assert_gradients(tiny_model(kind, 6, activation=activation))


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "mlp"])
def test_whole_model_gradient_with_dropout(kind):
    """Dropout masks held fixed; tolerance 1e-7."""
    assert_gradients(tiny_model(kind, 6, dropout=0.3))


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "mlp"])
def test_dropout_is_identity_at_evaluation(kind):
    model = tiny_model(kind, 6, dropout=0.5)
    plain = tiny_model(kind, 6, dropout=0.0)
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 7, (3, 6))
    a = model.forward(ids, ids, model.initial_state(3))[0]
    assert a == plain.forward(ids, ids, plain.initial_state(3))[0]  # rng=None: no dropout at all
    assert model.forward(ids, ids, model.initial_state(3), np.random.default_rng(0))[0] != a  # training: masks
    assert model.sample(20, seed=1) == plain.sample(20, seed=1)  # sampling never drops


def test_dropout_mask_scales_survivors():
    from charnn.nn.layers import dropout_forward

    x = np.ones((200, 500), np.float32)
    y, cache = dropout_forward(x, 0.25, np.random.default_rng(0))
    assert y.dtype == np.float32 and set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.01 and abs(y.mean() - 1.0) < 0.01


def test_mlp_sees_exactly_k_previous_characters():
    """Changing a character K or more positions back must not change a prediction; changing one
    inside the window must. Padding stands before the start of the text."""
    model = tiny_model("mlp", 4, context=3)
    base = np.array([[1, 2, 3, 4, 5, 6]])
    probs = lambda ids: model.forward(ids, ids, model.initial_state(1))[1].ce.probs
    far, near = base.copy(), base.copy()
    far[0, 2] = 0  # position 5 predicts from ids[3:6]: position 2 is outside its window
    near[0, 4] = 0
    assert np.array_equal(probs(far)[5], probs(base)[5])
    assert not np.allclose(probs(near)[5], probs(base)[5])
    # the first position sees [pad, pad, id]: same as a single-character chunk from a fresh state
    assert np.allclose(probs(base)[0], probs(base[:, :1])[0])


def test_mlp_state_carries_context_across_chunks():
    model = tiny_model("mlp", 4, context=4)
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 7, (2, 9))
    full = model.forward(ids, ids, model.initial_state(2))[1].ce.probs.reshape(2, 9, 7)
    _, c1, s1 = model.forward(ids[:, :4], ids[:, :4], model.initial_state(2))
    _, c2, _ = model.forward(ids[:, 4:], ids[:, 4:], s1)
    assert np.allclose(c2.ce.probs.reshape(2, 5, 7), full[:, 4:])


def test_model_config_rejects_nonsense():
    for bad in (dict(model="mlp", embed=0), dict(model="lstm", activation="relu"), dict(activation="swish"),
                dict(dropout=1.0), dict(context=0), dict(model="transformer")):
        with pytest.raises(CharnnError):
            ModelConfig(**{"vocab_size": 5, **bad}).validate()


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "mlp"])
def test_initial_loss_is_about_ln_V(kind):
    model = CharModel.create(ModelConfig(kind, 65, 64, 2, 16), Vocab([chr(32 + i) for i in range(65)]), seed=3)
    rng = np.random.default_rng(0)
    loss, _, _ = model.forward(rng.integers(0, 65, (8, 32)), rng.integers(0, 65, (8, 32)), model.initial_state(8))
    assert loss == pytest.approx(math.log(65), rel=0.02)


@pytest.mark.parametrize("kind,embed", CONFIGS)
def test_step_path_equals_sequence_path(kind, embed):
    model = tiny_model(kind, embed)
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 7, (3, 6))
    _, cache, seq_state = model.forward(ids, ids, model.initial_state(3))
    probs = cache.ce.probs.reshape(3, 6, 7)
    state = model.initial_state(3)
    for t in range(6):
        logits, state = model.step(ids[:, t], state)
        p = np.exp(logits - logits.max(1, keepdims=True))
        assert np.allclose(p / p.sum(1, keepdims=True), probs[:, t], rtol=1e-10)
    for a, b in zip(state, seq_state):
        assert all(np.allclose(x, y, rtol=1e-12) for x, y in zip(a, b))


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "mlp"])
def test_overfits_a_tiny_text(kind):
    text = "hello world, this is charnn.\n" * 2
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    # the MLP needs a context long enough to tell the text's repeated characters apart
    model = CharModel.create(ModelConfig(kind, len(vocab), 48, 1, 16, context=8), vocab, seed=0)
    opt = Adam(model.params, lr=1e-2)
    x, y = ids[None, :-1], ids[None, 1:]
    first = None
    for _ in range(300):
        loss, cache, _ = model.forward(x, y, model.initial_state(1))
        first = first if first is not None else loss
        grads = model.backward(cache)
        clip_grad_norm(grads, 5.0)
        opt.step(model.params, grads)
    assert first > 2.5 and loss < 0.05, (first, loss)
    # having memorised it, greedy sampling reproduces the text
    assert model.sample(27, prime="h", argmax=True) == "hello world, this is charnn."


def test_mean_loss_and_loss_api():
    model = tiny_model("lstm", 6, dtype=np.float32)
    text = "abcdefgabc" * 30
    direct = model.mean_loss(model.vocab.encode(text), n_streams=1, seq_len=1000)
    loss, _, _ = model.forward(model.vocab.encode(text)[None, :-1], model.vocab.encode(text)[None, 1:], model.initial_state(1))
    assert direct == pytest.approx(float(loss), rel=1e-5)
    assert model.loss(text) > 0
    with pytest.raises(VocabError):
        model.loss("xyz")
    with pytest.raises(CharnnError, match="two characters"):
        model.loss("a")


def test_sampling_is_reproducible_and_validated():
    model = tiny_model("lstm", 6, dtype=np.float32)
    a = model.sample(50, temperature=0.9, prime="abc", seed=7)
    assert a == model.sample(50, temperature=0.9, prime="abc", seed=7)
    assert a.startswith("abc") and len(a) == 53 and set(a) <= set(model.vocab.chars)
    assert model.sample(50, seed=8) != model.sample(50, seed=9)
    assert model.sample(20, top_k=1, seed=1) == model.sample(20, argmax=True, seed=1)
    assert "".join(model.generate(10, seed=3)) == model.sample(10, seed=3)
    with pytest.raises(VocabError, match="prime text"):
        model.sample(5, prime="abz")
    with pytest.raises(CharnnError, match="temperature"):
        model.sample(5, temperature=0)
    with pytest.raises(CharnnError, match="top-k"):
        model.sample(5, top_k=0)


def test_top_k_only_samples_the_k_most_likely():
    from charnn.sampling import pick

    logits = np.array([0.0, 5.0, 1.0, 4.0, -2.0])
    rng = np.random.default_rng(0)
    picks = {pick(logits, rng, temperature=5.0, top_k=2) for _ in range(300)}
    assert picks == {1, 3}


@pytest.mark.parametrize("kind,embed", CONFIGS)
def test_numba_backend_equals_numpy_backend(kind, embed):
    """Whole model, float32: loss to 1e-6, every gradient to 2e-5 relative (kernels use a rational
    tanh good to a few ulp and sum in another order)."""
    from charnn.nn.gradcheck import rel_error

    ref = tiny_model(kind, embed, H=12, dtype=np.float32, seed=4, activation="tanh")
    fast = CharModel(ref.config, ref.vocab, ref.params, backend="numba")
    rng = np.random.default_rng(6)
    ids, targets = rng.integers(0, 7, (3, 9)), rng.integers(0, 7, (3, 9))
    l_ref, c_ref, s_ref = ref.forward(ids, targets, ref.initial_state(3))
    l_fast, c_fast, s_fast = fast.forward(ids, targets, fast.initial_state(3))
    assert float(l_fast) == pytest.approx(float(l_ref), rel=1e-6)
    g_ref, g_fast = ref.backward(c_ref), fast.backward(c_fast)
    for k in ref.params:
        assert g_fast[k].dtype == np.float32 and rel_error(g_fast[k], g_ref[k]) < 2e-5, k
    for a, b in zip(s_ref, s_fast):
        assert all(np.allclose(x, y, rtol=1e-5, atol=1e-6) for x, y in zip(a, b))
