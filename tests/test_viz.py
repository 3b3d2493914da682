"""Seeing inside a model (charnn.viz, model.activations, `charnn viz`): the text features on
hand-checked strings, the correlation and ranking on constructed activations with known answers,
gate statistics, activations equal to stepping the reference cells, a tiny LSTM that learns a
quote cell, and the page's structure read with the standard library's HTML parser."""
import base64
import json
import math
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from click.testing import CliRunner

import charnn
from charnn import CharModel, ModelConfig, Vocab
from charnn.cli import main
from charnn.errors import CharnnError
from charnn.viz import FEATURES, find_cells, gate_stats, page_data, pearson, render_page, text_features
from charnn.viz import features as F


# ---------------------------------------------------------------- features
def bits(f) -> str:
    return "".join(str(int(v)) if v < 10 else "+" for v in f)


C_CODE = 'int f(a[1]) {\n\tif (x) { // c "/*"\n\t\ty = "/* no */"; /* yes\n */ z;\n  }\n}'


def test_features_of_a_c_snippet():
    f = text_features(C_CODE)
    assert set(f) == set(FEATURES) and all(v.shape == (len(C_CODE),) for v in f.values())
    assert bits(f["depth"]) == "00000112210011111122112222222222222222222222222222222222222222222222110"
    assert bits(f["paren"]) == "00000111110000000011000000000000000000000000000000000000000000000000000"
    assert bits(f["brace"]) == "00000000000011111111112222222222222222222222222222222222222222222222110"
    # // to the end of the line; "/* no */" is a string; /* ... */ across a line
    assert bits(f["comment"]) == "00000000000000000000000011111111100000000000000000001111111111000000000"
    assert bits(f["quote"]) == "00000000000000000000000000000111000000001111111110000000000000000000000"
    assert bits(f["newline"]) == "00000000000001000000000000000000010000000000000000000000001000000100010"
    assert bits(f["column"]) == "123456789++++0123456789++++++++++0123456789+++++++++++++++0123456012301"
    # a tab counts 8 columns: line 2 is indented 8, line 3 16, the "  }" line 2
    assert f["indent"][C_CODE.index("if")] == 8 and f["indent"][C_CODE.index("y =")] == 16
    assert list(f["indent"][C_CODE.index("  }") : C_CODE.index("  }") + 4]) == [1, 2, 2, 0]
    assert not f["math"].any()


def test_quotes_escapes_and_latex_math():
    assert bits(F.quote('a "bc" d \\"x"')) == "0011100000001"  # \" does not open or close
    s = "Let $x$ be $$y$$ and \\$ not $a\n\nb $p$$q$"
    # $...$ and $$...$$ with their delimiters; \$ is a dollar; a blank line closes an unclosed $;
    # "$p$$q$" is two inline maths side by side
    assert bits(F.latex_math(s)) == "0000111000011111000000000000110000111111"


def test_char_literals_and_unclosed_strings_end_at_the_line():
    s = "c = '\"'; /* a */\nx = \"open\ny /* b */"
    f = F.c_comment(s)
    assert bits(f) == "000000000111111100000000000001111111"
    assert F.quote('"\n"').tolist() == [1, 1, 0]  # a quote may span lines in prose


# ---------------------------------------------------------------- correlation and ranking
def test_pearson_known_answers():
    x = np.array([1.0, 2, 3, 4, 5])
    y = np.array([2.0, 4, 5, 4, 5])
    # r = cov / (sd sd) = 6 / sqrt(10 * 6.0) by hand: 0.7745966692414834
    assert pearson(x[:, None], y[:, None])[0, 0] == pytest.approx(6 / math.sqrt(60), abs=1e-15)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 7)), rng.normal(size=(300, 3))
    b[:, 0] = a[:, 2] * 3 - 1  # exactly linear: r = 1
    r = pearson(a, b)
    assert r.shape == (7, 3)
    assert np.allclose(r, np.corrcoef(a.T, b.T)[:7, 7:], atol=1e-12)
    assert r[2, 0] == pytest.approx(1.0, abs=1e-12)
    a[:, 4] = 0.25  # a constant column correlates with nothing
    assert (pearson(a, b)[4] == 0).all()
    with pytest.raises(CharnnError):
        pearson(a[:1], b[:1])


def constructed_activations(T=600, seed=0):
    """Two 'layers' with planted cells, and the features they were planted for."""
    rng = np.random.default_rng(seed)
    inside = (rng.random(T) < 0.4).astype(float)
    depth = rng.integers(0, 4, size=T).astype(float)
    layer0 = {"h": rng.uniform(-1, 1, size=(T, 6))}
    layer0["h"][:, 2] = 0.5 * inside - 0.2  # exactly the feature, scaled: r = +1
    layer0["h"][:, 4] = -inside + rng.normal(0, 0.2, size=T)  # nearly its opposite
    layer1 = {"tanh_c": rng.uniform(-1, 1, size=(T, 5)), "h": rng.uniform(-1, 1, size=(T, 5))}
    layer1["tanh_c"][:, 1] = depth / 3  # r = +1 with depth
    layer1["h"][:, 1] = depth / 3 + rng.normal(0, 0.3, size=T)  # the same cell's h, weaker
    layer1["h"][:, 3] = -depth  # r = -1
    return [layer0, layer1], {"inside": inside, "depth": depth, "flat": np.ones(T)}


def test_find_cells_ranks_the_planted_cells_first():
    acts, feats = constructed_activations()
    found = find_cells(acts, feats, top=3)
    first, second = found["inside"][:2]
    assert (first.layer, first.cell, first.value) == (0, 2, "h") and first.r == pytest.approx(1.0, abs=1e-12)
    assert (second.layer, second.cell, second.value) == (0, 4, "h")
    expect = np.corrcoef(acts[0]["h"][:, 4], feats["inside"])[0, 1]
    assert second.r == pytest.approx(expect, abs=1e-12) and second.r < -0.85
    # depth: tanh_c cell 1 (r = +1) and h cell 3 (r = -1) share the top; cell 1 is listed once,
    # under tanh_c, its better value
    depth = found["depth"]
    assert {(c.layer, c.cell, c.value, round(c.r, 9)) for c in depth[:2]} == {(1, 1, "tanh_c", 1.0), (1, 3, "h", -1.0)}
    assert [(c.layer, c.cell) for c in depth].count((1, 1)) == 1
    assert abs(depth[2].r) < 0.2  # the rest is noise
    assert found["flat"] == []  # constant: nothing to correlate with
    assert all(abs(a.r) >= abs(b.r) for cs in found.values() for a, b in zip(cs, cs[1:]))


def test_gate_stats_counts_saturation():
    T = 10
    i = np.full((T, 3), 0.5)
    i[:, 0] = 0.05  # always left-saturated
    i[:5, 1] = 0.95  # right-saturated half the time
    i[:, 2] = np.r_[[0.1] * 5, [0.9] * 5]  # the thresholds themselves are not saturated
    f = np.full((T, 3), 0.99)
    stats = gate_stats([{"h": np.zeros((T, 3)), "i": i, "f": f, "g": np.zeros((T, 3))}, {"h": np.zeros((T, 3))}])
    assert list(stats[0]) == ["i", "f"] and stats[1] == {}
    assert stats[0]["i"].left.tolist() == [1.0, 0.0, 0.0] and stats[0]["i"].right.tolist() == [0.0, 0.5, 0.0]
    assert stats[0]["f"].right.tolist() == [1.0, 1.0, 1.0]


# ---------------------------------------------------------------- model.activations
TEXT = ("the \"quick\" brown (fox) {jumps}\n\tover the lazy dog; /* and */ $x$ " * 6)  # 396 characters: two chunks of 256


def tiny(kind, layers=2, hidden=6, seed=3, **kw):
    vocab = Vocab.from_text(TEXT + "<>/!()1")
    config = ModelConfig(kind, len(vocab), hidden, layers, kw.pop("embed", 5), **kw)
    return CharModel.create(config, vocab, seed=seed, dtype=np.float64)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_activations_equal_stepping_the_reference_cells(kind):
    """One stream over 396 characters (two chunks of 256, state carried) equals one step at a time."""
    model = tiny(kind)
    acts = model.activations(TEXT)
    probs = model.next_char_probs(TEXT)
    ids = model.vocab.encode(TEXT)
    state = model.initial_state(1)
    for t, i in enumerate(ids):
        logits, state = model.step(np.array([i]), state)
        for l in range(2):
            assert np.allclose(acts[l]["h"][t], state[l][0][0], atol=1e-12), (t, l)
            if kind == "lstm":
                assert np.allclose(acts[l]["c"][t], state[l][1][0], atol=1e-12)
        p = np.exp(logits[0] - logits[0].max())
        assert np.allclose(probs[t], p / p.sum(), atol=1e-12)
    names = {"rnn": {"h"}, "lstm": {"h", "c", "tanh_c", "i", "f", "o", "g"}, "gru": {"h", "r", "z", "n"}}[kind]
    assert all(set(a) == names and all(v.shape == (len(TEXT), 6) for v in a.values()) for a in acts)


def test_lstm_and_gru_values_fit_their_equations():
    lstm = tiny("lstm").activations(TEXT)[1]
    assert np.array_equal(lstm["h"], lstm["o"] * lstm["tanh_c"]) and np.array_equal(lstm["tanh_c"], np.tanh(lstm["c"]))
    assert all(((lstm[g] > 0) & (lstm[g] < 1)).all() for g in "ifo")
    c_prev = np.vstack([np.zeros((1, 6)), lstm["c"][:-1]])
    assert np.allclose(lstm["c"], lstm["f"] * c_prev + lstm["i"] * lstm["g"], atol=1e-12)
    gru = tiny("gru").activations(TEXT)[0]
    h_prev = np.vstack([np.zeros((1, 6)), gru["h"][:-1]])
    assert np.allclose(gru["h"], (1 - gru["z"]) * gru["n"] + gru["z"] * h_prev, atol=1e-12)


def test_the_mlp_gives_its_hidden_layers_and_any_backend_the_reference():
    mlp = tiny("mlp", context=3)
    acts = mlp.activations(TEXT)
    assert len(acts) == 2 and set(acts[0]) == {"h"} and acts[0]["h"].shape == (len(TEXT), 6)
    assert gate_stats(acts) == [{}, {}]
    lstm = tiny("lstm")
    fast = CharModel(lstm.config, lstm.vocab, lstm.params, backend="numba")
    for a, b in zip(fast.activations(TEXT), lstm.activations(TEXT)):
        assert all(np.array_equal(a[k], b[k]) for k in b)
    with pytest.raises(CharnnError, match="no text"):
        lstm.activations("")
    with pytest.raises(charnn.VocabError):
        lstm.activations("\u00e9")


# ---------------------------------------------------------------- a cell that learns quotes
def quotes_text(n: int, seed: int) -> str:
    """Quoted spans of 1-4 words in capitals between unquoted spans in lower case: after a space,
    only the quote state says which case comes next, so a model does well to remember it."""
    rng = np.random.default_rng(seed)
    words = "the a cat sat on mat and said so we ran far to it".split()
    out, size = [], 0
    while size < n:
        outside = " ".join(words[i] for i in rng.integers(len(words), size=rng.integers(1, 5)))
        inside = " ".join(words[i].upper() for i in rng.integers(len(words), size=rng.integers(1, 5)))
        s = f'{outside} "{inside}" ' + ("\n" if rng.random() < 0.2 else "")
        out.append(s)
        size += len(s)
    return "".join(out)[:n]


def test_a_tiny_lstm_grows_a_quote_cell(tmp_path):
    """Trained for ~2 s (600 steps, numpy backend, fixed seed), some cell tracks "inside quotes"
    (|r| 0.80-0.99 over seeds 1-5 when this test was written); before training none does."""
    corpus = tmp_path / "quotes.txt"
    corpus.write_text(quotes_text(20000, 0))
    config = charnn.TrainConfig(corpus=str(corpus), model="lstm", hidden=16, layers=1, embed=8, batch_size=16,
                                seq_len=32, steps=600, eval_every=600, backend="numpy", seed=5, out=str(tmp_path / "q.npz"))
    model = charnn.train(config).model
    text = quotes_text(2000, 99)  # unseen text of the same kind
    quote = {"quote": text_features(text)["quote"]}
    best = find_cells(model.activations(text), quote)["quote"][0]
    assert abs(best.r) > 0.8, best
    untrained = CharModel.create(model.config, model.vocab, seed=5)
    before = find_cells(untrained.activations(text), quote)["quote"][0]
    assert abs(before.r) < abs(best.r) - 0.2, before


# ---------------------------------------------------------------- the page, without a browser
class Structure(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.scripts, self.styles, self.urls = [], [], 0, []
        self._in = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.urls += [v for k, v in attrs.items() if k in ("src", "href", "action", "srcset")]
        if tag == "script":
            self.scripts.append([attrs, ""])
            self._in = "script"
        elif tag == "style":
            self.styles += 1

    def handle_data(self, data):
        if self._in == "script":
            self.scripts[-1][1] += data

    def handle_endtag(self, tag):
        self._in = None if tag == "script" else self._in


def parse(html: str) -> Structure:
    s = Structure()
    s.feed(html)
    s.close()
    return s


def test_the_page_is_one_file_with_its_data_inlined():
    text = TEXT[:300] + "</script><script>alert(1)</script>"  # must stay text, not become markup
    model = tiny("lstm")
    data = page_data(model, text, title="tiny", source="TEXT")
    page = parse(render_page(data))
    assert page.urls == [] and "link" not in page.tags and "iframe" not in page.tags  # nothing fetched
    assert page.styles == 1 and [s[0] for s in page.scripts] == [{"type": "application/json", "id": "charnn-data"}, {}]
    for tag in ("select", "input", "pre", "table"):
        assert tag in page.tags
    d = json.loads(page.scripts[0][1])
    assert d["text"] == text and d["layers"] == 2 and d["hidden"] == 6 and d["values"] == ["tanh_c", "h"]
    acts = model.activations(text)
    T = len(text)
    for v in d["values"]:
        for l in range(2):
            q = np.frombuffer(base64.b64decode(d["cells"][v][l]), dtype=np.int8).reshape(6, T)  # (H, T)
            scale = d["scale"][v][l]
            assert np.abs(q.T * scale / 127 - acts[l][v]).max() <= scale / 254 + 1e-9
    found = find_cells(acts, text_features(text), values=("tanh_c", "h"))
    assert d["found"]["brace"][0] == {"layer": found["brace"][0].layer, "cell": found["brace"][0].cell,
                                      "value": found["brace"][0].value, "r": round(found["brace"][0].r, 3)}
    best = max((c for cs in found.values() for c in cs), key=lambda c: abs(c.r))
    assert d["start"] == {"layer": best.layer, "cell": best.cell, "value": best.value}
    nats = model.surprisal(text)
    assert d["surprisal"][0] is None and np.allclose(d["surprisal"][1:], nats / math.log(2), atol=6e-4)
    probs = model.next_char_probs(text)
    assert d["top_ids"][7] == list(np.argsort(-probs[7])[:5]) and d["top_p"][7] == sorted(d["top_p"][7], reverse=True)
    assert set(d["gates"][0]) == {"i", "f", "o"} and len(d["gates"][1]["f"]["left"]) == 6
    assert d["features"]["quote"] == text_features(text)["quote"].tolist()


def test_page_options_are_checked():
    model = tiny("gru", layers=1)
    d = page_data(model, TEXT[:100], layer=0, cell=3)
    assert d["start"] == {"layer": 0, "cell": 3, "value": "h"} and d["values"] == ["h"] and set(d["gates"][0]) == {"r", "z"}
    with pytest.raises(CharnnError, match="layer 1 does not exist: the model has 1 layers"):
        page_data(model, TEXT[:100], layer=1)
    with pytest.raises(CharnnError, match="cell 6 does not exist"):
        page_data(model, TEXT[:100], cell=6)
    with pytest.raises(CharnnError, match="tanh_c"):
        page_data(model, TEXT[:100], value="tanh_c")


# ---------------------------------------------------------------- charnn viz
@pytest.fixture
def files(tmp_path):
    tiny("lstm").save(tmp_path / "m.npz")
    (tmp_path / "t.txt").write_text(TEXT)
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def one_error_line(result, fragment):
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("Error:") and fragment in lines[0], result.output


def test_charnn_viz_writes_the_page_and_lists_the_cells(files):
    out = files / "cells.html"
    r = run("viz", files / "m.npz", files / "t.txt", "-o", out, "--chars", "200", "--start", "10", "--quiet")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert [l.split()[0] for l in lines] == list(FEATURES)
    data = json.loads(parse(out.read_text()).scripts[0][1])
    assert data["text"] == TEXT[10:210]
    for line, name in zip(lines, FEATURES):  # each line: the found cells with |r| >= 0.5, or -
        strong = [c for c in data["found"][name] if abs(c["r"]) >= 0.5][:3]
        assert line.count(" r=") == len(strong) and (strong or line.endswith("-"))
    r = run("viz", files / "m.npz", files / "t.txt", "-o", out, "--layer", "1", "--cell", "4", "--quiet")
    assert r.exit_code == 0 and json.loads(parse(out.read_text()).scripts[0][1])["start"]["cell"] == 4


def test_charnn_viz_bad_input_is_one_line(files):
    m, t = files / "m.npz", files / "t.txt"
    one_error_line(run("viz", m, t, "-o", files / "x.html", "--layer", "2"), "layer 2 does not exist")
    one_error_line(run("viz", m, t, "-o", files / "x.html", "--cell", "6"), "cell 6 does not exist")
    one_error_line(run("viz", m, t, "-o", files / "x.html", "--start", len(TEXT) - 1), "leaves fewer than 2")
    (files / "other.txt").write_text("\u00e9\u00e9\u00e9")
    one_error_line(run("viz", m, files / "other.txt", "-o", files / "x.html"), "not in the model's vocabulary")
    one_error_line(run("viz", files / "nope.npz", t), "not found")
    one_error_line(run("viz", m, files / "nope.txt"), "not found")
    assert not (files / "x.html").exists()


def test_importing_charnn_loads_no_matplotlib():
    code = "import sys, charnn, charnn.viz; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["False"]
