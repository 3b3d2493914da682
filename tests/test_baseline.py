"""charnn.baseline: Kneser-Ney n-gram baselines. The smoothing on a hand-computed example, against a
naive dictionary implementation of the formulas, probabilities that sum to 1, the streaming count
against one block, the memory limit, and `charnn baseline`."""
import json
import math
from collections import Counter, defaultdict
from fractions import Fraction as F

import numpy as np
import pytest
from click.testing import CliRunner

from charnn.baseline import (FALLBACK, NGramModel, count_ngrams, discounts, model_bytes, ngram_baseline)
from charnn.cli import main
from charnn.data.batches import split_train_val
from charnn.data.text import Vocab, read_corpus
from charnn.errors import CharnnError
from charnn.train import TrainConfig

from conftest import make_text


# ---------------------------------------------------------------------------------------------
# A naive reference: the module docstring's formulas on dictionaries of strings

def naive_discounts(counts, smoothing):
    n = Counter(counts)
    n1, n2, n3, n4 = n[1], n[2], n[3], n[4]
    try:
        Y = n1 / (n1 + 2 * n2)
        D = [Y] * 3 if smoothing == "single" else [1 - 2 * Y * n2 / n1, 2 - 3 * Y * n3 / n2, 3 - 4 * Y * n4 / n3]
    except ZeroDivisionError:
        return list(FALLBACK)
    return D if all(0 < d <= r for d, r in zip(D, (1, 2, 3))) else list(FALLBACK)


class NaiveKN:
    def __init__(self, train: str, chars, K: int, smoothing: str):
        self.chars, self.K = list(chars), K
        self.raw = [Counter(train[i : i + k] for i in range(len(train) - k + 1)) for k in range(K + 1)]
        left = [defaultdict(set) for _ in range(K + 1)]
        for k in range(1, K + 1):
            for i in range(len(train) - k + 1):
                left[k][train[i : i + k]].add(train[i - 1] if i else "<start>")
        self.cont = [{g: len(s) for g, s in left[k].items()} for k in range(K + 1)]
        self.D_top = [None] + [naive_discounts(self.raw[k].values(), smoothing) for k in range(1, K + 1)]
        self.D_low = [None] + [naive_discounts(self.cont[k].values(), smoothing) for k in range(1, K + 1)]

    def level(self, k, history, w, low):
        if k == 0:
            return 1 / len(self.chars)
        lower = self.level(k - 1, history, w, True)
        if len(history) < k - 1:
            return lower
        h = history[len(history) - (k - 1) :]
        counts, D = (self.cont[k], self.D_low[k]) if low else (self.raw[k], self.D_top[k])
        children = {x: counts[h + x] for x in self.chars if counts.get(h + x, 0) > 0}
        total = sum(children.values())
        if total == 0:
            return lower
        d = lambda c: D[min(c, 3) - 1]
        gamma = sum(d(c) for c in children.values()) / total
        c = children.get(w, 0)
        return (max(c - d(c), 0) if c else 0) / total + gamma * lower

    def prob(self, order, history, w):
        return self.level(order, history, w, False)


# ---------------------------------------------------------------------------------------------
# The smoothing, by hand

def test_abracadabra_by_hand():
    """Single-discount interpolated KN on "abracadabra" (all of it trains; V = 5: a b c d r).

    Unigrams: a 5, b 2, r 2, c 1, d 1 (N = 11): n1 = 2, n2 = 2, D = 2/(2+4) = 1/3.
    Continuation counts (distinct characters before, the start counting as one): a 4 (start, r, c,
    d), b 1, r 1, c 1, d 1 (sum 8): n1 = 4, n2 = 0, D = 1.
    Bigrams: ab 2, br 2, ra 2, ac 1, ca 1, ad 1, da 1: n1 = 4, n2 = 3, D = 4/10.
    Bigram continuation counts: ab 2 (start, d), the six others 1: D = 6/(6+2) = 3/4.
    Trigrams: abr 2, bra 2, rac 1, aca 1, cad 1, ada 1, dab 1: n1 = 5, n2 = 2, D = 5/9.
    """
    m = NGramModel.from_text("abracadabra", max_order=3, smoothing="single")
    assert [d[0] for d in m.top_D[1:]] == pytest.approx([1 / 3, 0.4, 5 / 9], abs=1e-15)
    assert [d[0] for d in m.low_D[1:]] == pytest.approx([1, 0.75], abs=1e-15)
    p = lambda order, context, w: F(m.prob(context, w, order)).limit_denominator(10**6)

    # order 1: (c(w) - 1/3)/11 + (1/3 * 5 types / 11) * 1/5 = c(w)/11: every character was seen
    for w, c in zip("abcdr", (5, 2, 1, 1, 2)):
        assert p(1, "", w) == F(c, 11)
    # order 1 of the continuation counts (what unseen contexts fall back to):
    # (N(.w) - 1)+/8 + (1 * 5/8) * 1/5: a 3/8 + 1/8 = 1/2, the others 1/8
    p_low1 = {"a": F(1, 2), "b": F(1, 8), "c": F(1, 8), "d": F(1, 8), "r": F(1, 8)}
    for w in "abcdr":
        assert p(2, "", w) == p_low1[w]  # no context: the order-2 model backs off to it
    # order 2 after "a": a is followed by b 2, c 1, d 1 (its last occurrence ends the text): c(a.) = 4,
    # gamma(a) = 3 * 0.4 / 4 = 0.3; p(w|a) = (c(aw) - 0.4)+/4 + 0.3 p_low1(w)
    assert p(2, "a", "b") == F(16, 40) + F(3, 10) * F(1, 8) == F(7, 16)
    assert p(2, "a", "c") == p(2, "a", "d") == F(6, 40) + F(3, 80) == F(3, 16)
    assert p(2, "a", "a") == F(3, 10) * F(1, 2) == F(3, 20)
    assert p(2, "a", "r") == F(3, 80)
    # order 3 after "ab": ab is followed by r twice: c(ab.) = 2, gamma(ab) = (5/9)/2 = 5/18; below it
    # the continuation level after "b": N(.br) = 1, gamma = 3/4: p_low2(r|b) = 1/4 + 3/4 * 1/8 = 11/32
    assert p(3, "ab", "r") == (2 - F(5, 9)) / 2 + F(5, 18) * F(11, 32) == F(157, 192)
    assert p(3, "ab", "a") == F(5, 18) * F(3, 4) * F(1, 2) == F(5, 48)
    # an unseen context "rb": all its mass goes to the continuation level after "b"
    assert p(3, "rb", "r") == F(11, 32) and p(3, "rb", "a") == F(3, 8)
    # "r" ends the text once, so c(r.) counts only its follower a (twice): p(a|r) = (2 - 0.4)/2 + 0.4/2 p_low1(a)
    assert p(2, "r", "a") == F(8, 10) + F(2, 10) * F(1, 2) == F(9, 10)


def test_discounts_by_hand():
    counts = np.array([1] * 6 + [2] * 3 + [3] * 2 + [4] + [9] * 5)  # n1..n4 = 6, 3, 2, 1
    D, fell_back = discounts(counts, "modified")
    # Y = 6/(6+6) = 1/2; D1 = 1 - 2Y 3/6 = 1/2; D2 = 2 - 3Y 2/3 = 1; D3+ = 3 - 4Y 1/2 = 2
    assert D.tolist() == [0.5, 1.0, 2.0] and not fell_back
    D, fell_back = discounts(counts, "single")
    assert D.tolist() == [0.5] * 3 and not fell_back
    # no count of 3: D3+ is undefined, so the level takes the fallback
    D, fell_back = discounts(np.array([1, 1, 2, 5, 7]), "modified")
    assert D.tolist() == list(FALLBACK) and fell_back
    # only large counts (the unigrams of a long text): no singletons, Y = 0
    assert discounts(np.array([50, 70, 900]), "single")[1]


# ---------------------------------------------------------------------------------------------
# Against the naive reference, and the sums

TEXT = make_text(2000, seed=3) + "QZ\n"  # Q, Z: in the vocabulary, but only in the validation split


@pytest.mark.parametrize("smoothing", ["modified", "single"])
def test_matches_the_naive_formulas(smoothing):
    K = 5
    r = ngram_baseline(text=TEXT, max_order=K, smoothing=smoothing, val_frac=0.15)
    vocab = Vocab.from_text(TEXT)
    train, val = TEXT[: r.train_chars], TEXT[r.train_chars :]
    naive = NaiveKN(train, vocab.chars, K, smoothing)
    m = r.model
    assert np.concatenate(m.top_D[1:]) == pytest.approx(np.concatenate(naive.D_top[1:]), abs=1e-12)
    assert np.concatenate(m.low_D[1:]) == pytest.approx(np.concatenate(naive.D_low[1:K]), abs=1e-12)
    assert not any(m.fallback["top"][1:])  # orders 2-5 use estimated discounts here
    s = m.surprisal(vocab.encode(val))  # (K, len(val) - 1)
    for t in range(1, len(val)):
        for n in range(1, K + 1):
            assert s[n - 1, t - 1] == pytest.approx(-math.log(naive.prob(n, val[:t], val[t])), rel=1e-12, abs=1e-12)
    assert [o.nats for o in r.orders] == pytest.approx(s.mean(axis=1).tolist(), rel=1e-12)
    for context in ["the q", "to be", "xx", "Q", "", "e"]:
        for n in range(1, K + 1):
            want = [naive.prob(n, context, w) for w in vocab.chars]
            assert m.distribution(context, n) == pytest.approx(want, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("smoothing", ["modified", "single"])
def test_probabilities_sum_to_one_in_every_context(smoothing):
    text = TEXT[:100]
    vocab = Vocab.from_text(TEXT)  # Q and Z never occur in the counted text
    m = NGramModel.from_text(text, max_order=6, smoothing=smoothing, vocab=vocab)
    seen = {text[i : i + k] for k in range(6) for i in range(len(text) - k)}
    unseen = ["QQQQQ", "zq", "Z", "eZ", "the Q", " ", "\n\n\n"]
    for context in sorted(seen) + unseen:
        for n in range(1, 7):
            p = m.distribution(context, n)
            assert p.sum() == pytest.approx(1.0, abs=1e-12) and (p > 0).all(), (context, n)
    assert m.prob("the", "Q") > 0


@pytest.mark.parametrize("smoothing", ["modified", "single"])
def test_order_one_is_the_unigram_interpolated_with_uniform(smoothing):
    """p_1(w) = (c(w) - D(c(w)))+ / N + (sum of the discounts / N) / V over the whole vocabulary."""
    text = "hello world, hello charnn: a unigram"
    counts = Counter(text)
    vocab = Vocab.from_text(text + "#$")  # two characters never counted
    m = NGramModel.from_text(text, max_order=1, smoothing=smoothing, vocab=vocab)
    N, V = len(text), len(vocab)
    d = lambda c: m.top_D[1][min(c, 3) - 1]
    uniform = sum(d(c) for c in counts.values()) / N / V  # the mass passed down, spread over V
    want = [(counts[c] - d(counts[c])) / N + uniform if c in counts else uniform for c in vocab.chars]
    assert m.distribution("") == pytest.approx(want, abs=1e-15)
    assert m.distribution("anything") == pytest.approx(want, abs=1e-15)
    assert m.prob("", "#") == pytest.approx(uniform) and uniform > 0
    # one discount and every character seen: exactly the unigram c(w) / N
    m = NGramModel.from_text(text, max_order=1, smoothing="single")
    assert m.distribution("") == pytest.approx([counts[c] / N for c in m.vocab.chars], abs=1e-15)


# ---------------------------------------------------------------------------------------------
# The streaming count and the memory limit

def test_the_streaming_count_equals_one_block():
    vocab = Vocab.from_text(TEXT)
    ids = vocab.encode(TEXT)
    whole = count_ngrams(ids, len(vocab), 7, chunk=10**6)
    for n, chunk in ((200, 1), (None, 5), (None, 64)):  # one character a block: on a prefix, to keep it quick
        blocks = count_ngrams(ids[:n], len(vocab), 7, chunk=chunk)
        want = whole if n is None else count_ngrams(ids[:n], len(vocab), 7, chunk=10**6)
        for k in range(8):
            assert np.array_equal(blocks.keys[k], want.keys[k]) and np.array_equal(blocks.counts[k], want.counts[k])
    naive = Counter(TEXT[i : i + 4] for i in range(len(TEXT) - 3))
    assert sorted(whole.counts[4].tolist()) == sorted(naive.values())
    assert len(whole.keys[4]) == len(naive) and np.all(np.diff(whole.keys[4]) > 0)


def test_scoring_in_blocks_equals_one_block():
    m = NGramModel.from_text(TEXT[:500], max_order=4, vocab=Vocab.from_text(TEXT))
    ids = m.vocab.encode(TEXT[400:])
    whole = m.surprisal(ids, chunk=10**6)
    assert whole.shape == (4, len(ids) - 1) and np.isfinite(whole).all()
    for chunk in (1, 3, 50):
        assert np.array_equal(m.surprisal(ids[:100], chunk=chunk), whole[:, :99])
    assert np.array_equal(m.surprisal(ids, chunk=7), whole)
    assert np.array_equal(m.surprisal(TEXT[400:]), whole) and np.array_equal(m.loss(TEXT[400:]), whole.mean(axis=1))


def test_memory_is_measured_and_bounded():
    vocab = Vocab.from_text(TEXT)
    ids = vocab.encode(TEXT)
    m = NGramModel(count_ngrams(ids, len(vocab), 6), vocab)
    sizes = [len(k) for k in m.keys]
    assert model_bytes(sizes, 4) == sum(m.level_bytes(k) for k in range(7))  # the projection is the arrays
    # a limit between what orders 1-4 and 1-5 take: orders 6 and 5 are dropped, with notes
    limit = (model_bytes(sizes[:5], 4) + model_bytes(sizes[:6], 4)) // 2
    counts = count_ngrams(ids, len(vocab), 6, memory=limit, chunk=100)
    assert len(counts.keys) == 5 and [n.split(":")[0] for n in counts.notes] == ["order 6 dropped", "order 5 dropped"]
    four = count_ngrams(ids, len(vocab), 4)
    assert all(np.array_equal(a, b) for a, b in zip(counts.counts, four.counts))
    with pytest.raises(CharnnError, match="too small even for the unigram"):
        count_ngrams(ids, len(vocab), 6, memory=100)


# ---------------------------------------------------------------------------------------------
# The trainer's split; the command

def test_the_split_is_the_trainers(corpus_file, text):
    r = ngram_baseline(corpus_file, max_order=3)
    vocab = Vocab.from_text(text)
    train, val = split_train_val(vocab.encode(text), TrainConfig.val_frac)
    assert (r.val_frac, r.train_chars, r.val_chars, r.vocab_size) == (TrainConfig.val_frac, len(train), len(val) - 1, len(vocab))
    same = ngram_baseline(text=text, max_order=3)
    assert [o.nats for o in same.orders] == [o.nats for o in r.orders]
    assert r.orders[0].nats > r.orders[1].nats > r.orders[2].nats
    assert [o.bits for o in r.orders] == pytest.approx([o.nats / math.log(2) for o in r.orders])
    assert [o.ngrams for o in r.orders] == [len(set(vocab.decode(train[i : i + k]) for i in range(len(train) - k + 1))) for k in (1, 2, 3)]


def test_shakespeare_unigram_and_trigram(shakespeare):
    """Every character of tiny Shakespeare occurs in its first 90%, so order 1 with one discount is
    the plain unigram; the modified discounts (at most 1.5 on counts in the hundreds) barely move it."""
    text = read_corpus(shakespeare)
    vocab = Vocab.from_text(text)
    train, val = split_train_val(vocab.encode(text), 0.1)
    p = np.bincount(train, minlength=len(vocab)) / len(train)
    unigram = -np.log(p[val[1:]]).mean()
    assert (p > 0).all() and unigram == pytest.approx(3.3473, abs=1e-4)
    single = ngram_baseline(shakespeare, max_order=3, smoothing="single")
    assert single.orders[0].nats == pytest.approx(unigram, rel=1e-12)
    r = ngram_baseline(shakespeare, max_order=3)
    assert r.orders[0].nats == pytest.approx(unigram, rel=1e-5)
    assert r.orders[2].nats == pytest.approx(2.0381, abs=1e-4) and r.orders[2].nats < single.orders[2].nats


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_cli_prints_one_line_per_order_and_json(runner, corpus_file):
    r = runner.invoke(main, ["baseline", str(corpus_file), "--max-order", "4", "--quiet"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    rows = [l.split() for l in lines if l.split() and l.split()[0].isdigit()]
    assert [row[0] for row in rows] == ["1", "2", "3", "4"] and len(lines) == 7
    api = ngram_baseline(corpus_file, max_order=4)
    assert [float(row[-2]) for row in rows] == [round(o.nats, 4) for o in api.orders]
    assert lines[-1].startswith("best: order ")
    j = runner.invoke(main, ["baseline", str(corpus_file), "--max-order", "4", "--format", "json", "--smoothing", "single"])
    data = json.loads(j.output)
    assert j.exit_code == 0 and data["max_order"] == 4 and data["smoothing"] == "single"
    assert [o["nats"] for o in data["orders"]] == [o.nats for o in ngram_baseline(corpus_file, max_order=4, smoothing="single").orders]


def test_cli_memory_limit_drops_orders_with_a_message(runner, corpus_file):
    r = runner.invoke(main, ["baseline", str(corpus_file), "--max-order", "8", "--memory", "0.2M", "--quiet"])
    assert r.exit_code == 0
    dropped = [l for l in r.output.splitlines() if "dropped" in l]
    assert dropped and all("over the memory limit of 204.8 KiB" in l for l in dropped)
    assert len([l for l in r.output.splitlines() if l.split() and l.split()[0].isdigit()]) == 8 - len(dropped)


@pytest.mark.parametrize("args, fragment", [
    (["missing.txt"], "corpus not found"),
    (["short.txt"], "corpus too short"),
    (["latin1.txt"], "not valid UTF-8"),
    (["tiny.txt", "--memory", "100"], "too small even for the unigram"),
])
def test_cli_bad_input_is_one_line(runner, corpus_file, args, fragment, tmp_path):
    (tmp_path / "short.txt").write_text("ab", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    r = runner.invoke(main, ["baseline", *[str(tmp_path / a) if a.endswith(".txt") else a for a in args]])
    lines = [l for l in r.output.splitlines() if l.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error:") and fragment in lines[0], r.output


@pytest.mark.parametrize("option, value", [("--max-order", "0"), ("--memory", "lots"), ("--val-frac", "1"), ("--smoothing", "good")])
def test_cli_rejects_bad_options(runner, corpus_file, option, value):
    r = runner.invoke(main, ["baseline", str(corpus_file), option, value])
    assert r.exit_code == 2 and option in r.output and "Traceback" not in r.output
