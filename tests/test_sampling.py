"""The sampling controls of issue 15 through the Python API, on the numpy reference and the
compiled sampler: top-p keeps exactly the nucleus, stop strings end at the right place (one
spanning the prime), N streams of a batch equal N single runs with the derived seeds, beam search
finds the best sequences of a model small enough to enumerate them all, the per-character
probabilities are the model's distribution, and a long prime's warm-up reaches the step loop's
state. The models are tiny and their parameters perturbed (livelier than the initialisation)."""
import itertools

import numpy as np
import pytest

from charnn import CharModel, CharnnError, ModelConfig, sampling
from charnn.data.text import Vocab
from charnn.nn.layers import log_softmax
from charnn.sampling import PRIME_STEP_MAX, nucleus, pick, weights

VOCAB = Vocab(sorted(set("abcdefgh ijk.\n")))


def make_model(kind="lstm", vocab=VOCAB, hidden=12, layers=2, embed=8, seed=0, backend="numpy", scale=0.4):
    config = ModelConfig(model=kind, vocab_size=len(vocab), hidden=hidden, layers=layers, embed=embed, context=3)
    model = CharModel.create(config, vocab, seed=seed, backend="numpy")
    rng = np.random.default_rng(seed + 100)
    for p in model.params.values():
        p += rng.normal(0.0, scale, p.shape).astype(p.dtype)
    return model.with_backend(backend)


@pytest.fixture
def compiled(monkeypatch):
    """The numba backend's compiled sampler for every sample, however short (as once compiled)."""
    from charnn.backend.numba import compile as numba_compile

    monkeypatch.setattr(numba_compile, "is_compiled", lambda family: True)
    return "numba"


# ---------------------------------------------------------------- top-p
def test_nucleus_keeps_the_smallest_set_that_reaches_p():
    p = np.array([8.0, 4.0, 2.0, 1.0, 1.0])  # sums exactly: 16, 12 = 0.75 of 16, 14 = 0.875
    assert nucleus(p, 0.75).tolist() == [8, 4, 0, 0, 0]  # "at least": reaching P exactly is enough
    assert nucleus(p, 0.76).tolist() == [8, 4, 2, 0, 0]
    assert nucleus(p, 0.5).tolist() == [8, 0, 0, 0, 0]
    assert nucleus(p, 1.0).tolist() == [8, 4, 2, 1, 1]
    ties = np.array([1.0, 4.0, 1.0, 4.0, 2.0])  # equal weights: the lower id first
    assert nucleus(ties, 0.3).tolist() == [0, 4, 0, 0, 0]
    assert nucleus(ties, 0.5).tolist() == [0, 4, 0, 4, 0]
    assert nucleus(ties, 0.7).tolist() == [0, 4, 0, 4, 2]
    assert nucleus(ties, 0.9).tolist() == [1, 4, 0, 4, 2]


def test_top_p_after_temperature_and_top_k_on_a_constructed_distribution():
    probs = np.array([0.05, 0.5, 0.1, 0.2, 0.15])
    logits = np.log(probs).astype(np.float32)

    def support(**kw):
        return set(np.flatnonzero(weights(logits, **kw)).tolist())

    assert support(top_p=0.45) == {1}
    assert support(top_p=0.8) == {1, 3, 4}  # 0.5 + 0.2 + 0.15 = 0.85
    assert support(top_p=0.96) == {0, 1, 2, 3, 4}
    # temperature first: at 2 the probabilities are those of sqrt(p): 0.34, 0.21, 0.19, 0.15, 0.11
    assert support(temperature=2.0, top_p=0.5) == {1, 3}
    # top-k next: of 0.5 and 0.2 (k = 2), 0.5 is 71% of the kept mass
    assert support(top_k=2, top_p=0.6) == {1}
    assert support(top_k=2, top_p=0.8) == {1, 3}
    rng = np.random.default_rng(0)
    draws = np.array([pick(logits, rng, top_p=0.8) for _ in range(6000)])
    assert set(draws.tolist()) == {1, 3, 4}
    freq = np.bincount(draws, minlength=5)[[1, 3, 4]] / len(draws)
    assert np.allclose(freq, np.array([0.5, 0.2, 0.15]) / 0.85, atol=0.02), freq


def test_top_p_validated():
    model = make_model()
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(CharnnError, match="top-p"):
            model.sample(5, top_p=bad)
    assert model.sample(40, top_p=1.0, seed=3) == model.sample(40, seed=3)  # 1: the whole distribution


# ---------------------------------------------------------------- stop strings
def test_stop_watcher_finds_the_first_occurrence_across_prime_and_blocks():
    stop = sampling._Stop(("ab",), "xxa")
    assert stop.cut("bcd") == ("b", True)  # spans the prime and the generated text
    stop = sampling._Stop(("ab",), "ab")
    assert stop.cut("xyz") == ("xyz", False)  # an occurrence entirely inside the prime does not count
    assert stop.cut("xa") == ("xa", False) and stop.cut("bz") == ("b", True)  # across two blocks
    stop = sampling._Stop(("cd", "bcde", "f"), "")
    assert stop.cut("abcdef") == ("abcd", True)  # the first to end wins
    assert sampling._Stop((), "p").cut("abc") == ("abc", False)


@pytest.mark.parametrize("backend", ["numpy", "compiled"])
def test_stop_strings_end_at_their_first_occurrence(backend, request):
    backend = request.getfixturevalue("compiled") if backend == "compiled" else backend
    model = make_model("gru", backend=backend)
    prime = "ab c"
    free = model.sample(300, prime=prime, seed=4, top_p=0.95)[len(prime):]
    full = prime + free
    assert full == model.with_backend("numpy").sample(300, prime=prime, seed=4, top_p=0.95)

    def expected(stops):
        ends = [i + len(s) for s in stops if (i := full.find(s, len(prime) - len(s) + 1)) >= 0]
        return full[:min(ends)]

    inside = free[120:123]
    across = prime[-2:] + free[:2]  # begins in the prime: ends at the second generated character
    for stops in ([inside], [free[200:202], inside], ["\x00 never"]):
        got = model.sample(300, prime=prime, seed=4, top_p=0.95, stop=stops)
        assert got == (expected(stops) if "\x00 never" not in stops else full), stops
    assert model.sample(300, prime=prime, seed=4, top_p=0.95, stop=across) == full[: len(prime) + 2]
    # length 0: until the stop string, however far
    assert model.sample(0, prime=prime, seed=4, top_p=0.95, stop=inside) == expected([inside])


def test_length_zero_is_unbounded_in_generate_and_refused_without_stop_in_sample():
    model = make_model("mlp", embed=5)
    stream = model.generate(0, seed=1)
    assert len("".join(itertools.islice(stream, 3000))) == 3000
    assert "".join(itertools.islice(model.generate(0, seed=1), 500)) == model.sample(500, seed=1)
    with pytest.raises(CharnnError, match="stop string"):
        model.sample(0, seed=1)
    with pytest.raises(CharnnError, match="stop string"):
        model.samples(2, 0, seed=1)
    with pytest.raises(CharnnError, match="stop string"):
        model.sample(10, stop=["ab", ""])
    with pytest.raises(CharnnError, match="seed"):
        model.sample(10, seed=-1)


# ---------------------------------------------------------------- several samples
@pytest.mark.parametrize("backend", ["numpy", "compiled"])
@pytest.mark.parametrize("kind", ["lstm", "rnn", "mlp"])
def test_n_streams_equal_n_single_runs_with_the_derived_seeds(kind, backend, request):
    backend = request.getfixturevalue("compiled") if backend == "compiled" else backend
    model = make_model(kind, embed=5, backend=backend)
    options = dict(prime="ab", temperature=0.9, top_k=6, top_p=0.9)
    batch = model.samples(4, 150, seed=11, **options)
    assert batch == [model.sample(150, seed=11 + i, **options) for i in range(4)]
    assert len(set(batch)) == 4
    # with stop strings each stream ends at its own, the others go on
    stops = ["a.", "k "]
    batch = model.samples(4, 150, seed=11, stop=stops, **options)
    singles = [model.with_backend("numpy").sample(150, seed=11 + i, stop=stops, **options) for i in range(4)]
    assert batch == singles  # and the reference's single runs
    assert len({len(t) for t in batch}) > 1


def test_streams_start_from_their_own_draw_without_a_newline(compiled):
    vocab = Vocab(list("abcdefg"))  # no newline: each stream's first character is drawn by its generator
    model = make_model("lstm", vocab=vocab, backend=compiled)
    batch = model.samples(3, 80, seed=2)
    assert batch == [model.sample(80, seed=2 + i) for i in range(3)]
    assert model.samples(3, 80, seed=2) == [model.with_backend("numpy").sample(80, seed=2 + i) for i in range(3)]


# ---------------------------------------------------------------- beam search
def sequence_logprobs(model, prime: str, length: int):
    """Every continuation of `length` characters and its ln p under the model, scored as one batch."""
    V = len(model.vocab)
    seqs = np.array(list(itertools.product(range(V), repeat=length)))  # (V**length, length)
    ids = model.vocab.encode(prime)
    state = model.initial_state(1)
    for i in ids[:-1]:
        _, state = model.step(np.array([i]), state)
    state = [tuple(np.repeat(a, len(seqs), axis=0) for a in layer) for layer in state]
    current, total = np.full(len(seqs), ids[-1]), np.zeros(len(seqs))
    for t in range(length):
        logits, state = model.step(current, state)
        total += log_softmax(logits.astype(np.float64))[np.arange(len(seqs)), seqs[:, t]]
        current = seqs[:, t]
    texts = ["".join(model.vocab.chars[i] for i in s) for s in seqs]
    order = np.argsort(-total, kind="stable")
    return [texts[i] for i in order], total[order]


def test_beam_search_finds_the_known_best_sequences():
    vocab = Vocab(list("abc"))
    length, found_greedy_miss = 5, False
    for seed in range(12):
        model = make_model("lstm", vocab=vocab, hidden=8, layers=1, embed=3, seed=seed, scale=1.0)
        texts, logprobs = sequence_logprobs(model, "a", length)
        exact = model.beam_search(3 ** (length - 1), length, prime="a")  # keeps every prefix: exact
        assert [b.text for b in exact] == texts[: len(exact)]
        assert np.allclose([b.logprob for b in exact], logprobs[: len(exact)], rtol=1e-6)
        greedy = model.sample(length, prime="a", argmax=True)[1:]
        assert model.beam_search(1, length, prime="a")[0].text == greedy  # a beam of one is greedy
        if greedy != texts[0]:
            found_greedy_miss = True
            beams = model.beam_search(3, length, prime="a")
            assert beams[0].logprob >= logprobs[texts.index(greedy)]  # never worse than greedy
    assert found_greedy_miss  # the search is tested where greedy decoding misses the best


def test_beam_search_is_deterministic_and_reports_its_probabilities():
    model = make_model("gru")
    beams = model.beam_search(4, 30, prime="ab")
    assert beams == model.beam_search(4, 30, prime="ab")
    assert len(beams) == 4 and len({b.text for b in beams}) == 4
    assert all(a.logprob >= b.logprob for a, b in zip(beams, beams[1:]))
    for k, b in enumerate(beams):
        assert len(b.text) == 30 and all(c.sample == k for c in b.chars)
        assert b.chars[-1].logprob == b.logprob
        assert np.isclose(sum(np.log(c.p) for c in b.chars), b.logprob, rtol=1e-9)
    with pytest.raises(CharnnError, match="beam"):
        model.beam_search(0, 10)
    with pytest.raises(CharnnError, match="length"):
        model.beam_search(3, 0)


# ---------------------------------------------------------------- per-character probabilities
def test_reported_probabilities_are_the_models_distribution():
    vocab = Vocab(list("abcd\n"))  # five characters: the top 5 is the whole distribution
    model = make_model("lstm", vocab=vocab)
    options = dict(prime="ab", temperature=0.7, top_k=3, top_p=0.9, seed=3)
    records = list(model.generate_probs(60, **options))
    text = "".join(r.char for r in records)
    assert text == "".join(model.generate(60, **options))  # the characters sampled without probabilities
    ids, state = model.vocab.encode("ab" + text), model.initial_state(1)
    _, state = model.step(ids[:1], state)  # the prime but its last character
    for i, r in enumerate(records):
        logits, state = model.step(ids[i + 1 : i + 2], state)  # predicts character i of the text
        z = logits[0].astype(np.float64)
        softmax = np.exp(z - z.max()) / np.exp(z - z.max()).sum()  # the model's own, at temperature 1
        top = dict(r.top)
        assert len(top) == 5 and sum(top.values()) == pytest.approx(1.0, abs=1e-12)
        assert [top[c] for c in vocab.chars] == pytest.approx(softmax.tolist(), rel=1e-12)
        assert r.p == top[r.char] and list(top) == sorted(top, key=lambda c: -top[c])
    # the reported probabilities multiply to the model's probability of the text
    assert records[-1].logprob == pytest.approx(float(np.sum(np.log([r.p for r in records]))), rel=1e-12)
    assert records[-1].logprob == pytest.approx(-model.surprisal("ab" + text)[1:].sum(), rel=1e-5)


def test_probabilities_of_several_streams_and_stops():
    model = make_model("rnn")
    records = list(model.generate_probs(50, prime="ab", seed=5, num_samples=3, stop="a"))
    for s in range(3):
        text = "".join(r.char for r in records if r.sample == s)
        assert "ab" + text == model.sample(50, prime="ab", seed=5 + s, stop="a")


# ---------------------------------------------------------------- a long prime
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "mlp"])
def test_warm_up_reaches_the_state_of_the_step_loop(kind):
    model = make_model(kind, embed=5)
    ids = np.random.default_rng(1).integers(0, len(VOCAB), size=2500)  # three chunks of the forward
    told = []
    state = model.warm_up(ids, progress=lambda done, total: told.append((done, total)))
    stepped = model.initial_state(1)
    for i in ids:
        _, stepped = model.step(np.array([i]), stepped)
    for layer, want in zip(state, stepped):
        for a, b in zip(layer, want):
            if kind == "mlp":
                assert np.array_equal(a, b)  # the last K-1 ids
            else:
                assert np.allclose(a, b, rtol=1e-5, atol=1e-6), np.max(np.abs(a - b))
    assert told[-1] == (2500, 2500) and [d for d, _ in told] == sorted(d for d, _ in told)


def test_a_long_prime_samples_the_compiled_samplers_characters(compiled):
    model = make_model("lstm", backend=compiled)
    prime = "".join(np.random.default_rng(2).choice(VOCAB.chars, size=PRIME_STEP_MAX + 700))
    reference = model.with_backend("numpy").sample(120, prime=prime, seed=6, top_k=5)  # warmed up by the forward
    assert model.sample(120, prime=prime, seed=6, top_k=5) == reference  # warmed up step by step, compiled
    told = []
    "".join(model.generate(10, prime=prime, progress=lambda d, t: told.append((d, t))))
    assert told[0] == (0, len(prime) - 1) and told[-1] == (len(prime) - 1, len(prime) - 1)
