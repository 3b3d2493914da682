"""Model-level checks: whole-model gradients, initial loss ~ ln V, the step path equals the
sequence path, a tiny text is overfitted, sampling is reproducible."""
import math

import numpy as np
import pytest

from charnn import CharModel, ModelConfig, Vocab
from charnn.errors import CharnnError, VocabError
from charnn.gradcheck import model_gradient_errors
from charnn.optim import Adam, clip_grad_norm

CONFIGS = [("rnn", 6), ("lstm", 6), ("rnn", 0), ("lstm", 0)]  # (cell, embed width; 0 = one-hot)


def tiny_model(kind, embed, V=7, H=5, layers=2, dtype=np.float64, seed=0):
    vocab = Vocab([chr(ord("a") + i) for i in range(V)])
    return CharModel.create(ModelConfig(kind, V, H, layers, embed), vocab, seed=seed, dtype=dtype)


@pytest.mark.parametrize("kind,embed", CONFIGS)
def test_whole_model_gradient(kind, embed):
    """Every parameter of a 2-layer model, every entry, in float64: relative error < 1e-7."""
    model = tiny_model(kind, embed)
    rng = np.random.default_rng(1)
    ids, targets = rng.integers(0, 7, (2, 5)), rng.integers(0, 7, (2, 5))
    errors = model_gradient_errors(model, ids, targets)
    assert set(errors) == set(model.params)
    assert max(errors.values()) < 1e-7, errors


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
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


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_overfits_a_tiny_text(kind):
    text = "hello world, this is charnn.\n" * 2
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    model = CharModel.create(ModelConfig(kind, len(vocab), 48, 1, 16), vocab, seed=0)
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
