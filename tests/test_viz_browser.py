"""The `charnn viz` page in a real browser: headless Chromium (Debian's `chromium` package; the
test skips without it) loads the page, runs its script without an error or a console message,
and draws the text in colours that change when another cell is selected (through the URL
fragment #layer=L&cell=C that the page honours), and stay the same when the same cell is drawn
again. Chromium is driven through its command line only (--dump-dom, --screenshot)."""
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib

import numpy as np
import pytest

from charnn import CharModel, ModelConfig, Vocab
from charnn.viz import page_data, write_page

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium to load the page in: apt-get install chromium")

# a browser that talks to nobody: the page must need nothing from the network
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
WIDTH, HEIGHT = 800, 520
TEXT = ('int main(void) {\n\t/* say "hello" */\n\tprintf("hello, world\\n");\n\treturn (0);\n}\n' * 5)


def chromium(url: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="charnn-chromium-") as profile:  # a fresh profile each time
        done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, url],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def console_lines(stderr: str) -> list[str]:
    """What the page said on its console, and script errors (Chromium logs them as CONSOLE lines)."""
    return [l for l in stderr.splitlines() if ":CONSOLE" in l or "Uncaught" in l]


def read_png(path) -> np.ndarray:
    """An 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes) -> (height, width, 3) uint8."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        cur = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):  # undo the row's filter (PNG spec, section 9)
            a = cur[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                pred = a
            elif f == 2:
                pred = b
            elif f == 3:
                pred = (a + b) >> 1
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            else:
                break
            cur[x] = (cur[x] + pred) & 255
        rows.append(bytes(cur))
        prev = cur
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(h, w, bpp)[:, :, :3]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    vocab = Vocab.from_text(TEXT)
    model = CharModel.create(ModelConfig("lstm", len(vocab), 8, 2, 6), vocab, seed=2)
    for k in ("layer0.Wx", "layer0.Wh", "layer1.Wx", "layer1.Wh"):  # larger weights: cells far from 0, strong colours
        model.params[k] *= 8
    path = tmp_path_factory.mktemp("viz") / "cells.html"
    write_page(path, page_data(model, TEXT, title="tiny"))
    return path


def test_the_page_runs_without_an_error(page):
    done = chromium(f"file://{page}#layer=1&cell=5", "--dump-dom")
    status = re.search(r'<body[^>]*data-status="([^"]*)"', done.stdout)
    assert status and status.group(1) == "ok", (status and status.group(1), done.stderr[-2000:])
    assert console_lines(done.stderr) == []
    assert done.stdout.count('<span data-t="') == len(TEXT)  # one span per character
    assert "layer 1 cell 5 tanh(c)" in done.stdout  # the fragment was honoured
    assert done.stdout.count("<circle") == 3 * 2 * 8  # gates i, f, o: a dot per cell of each layer


def test_another_cell_paints_the_text_in_other_colours(page, tmp_path):
    shots = {}
    for name, fragment in (("a", "layer=0&cell=1"), ("b", "layer=0&cell=6"), ("a_again", "layer=0&cell=1")):
        png = tmp_path / f"{name}.png"
        done = chromium(f"file://{page}#{fragment}", f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={png}")
        assert console_lines(done.stderr) == []
        shots[name] = read_png(png)
    a, b = shots["a"], shots["b"]
    assert a.shape == (HEIGHT, WIDTH, 3)
    text = (slice(120, HEIGHT - 20), slice(10, WIDTH - 470))  # the text panel, left of the sidebar
    coloured = (np.abs(a[text].astype(int) - 255).sum(axis=2) > 60).mean()
    assert coloured > 0.1, coloured  # the text is drawn in colour, not on white
    changed = (np.abs(a[text].astype(int) - b[text].astype(int)).sum(axis=2) > 30).mean()
    assert changed > 0.05, changed  # another cell, other colours
    assert np.array_equal(shots["a_again"], a)  # the same cell, the same picture


def test_a_broken_page_would_be_seen(page, tmp_path):
    """The checks above can fail: a page whose script throws reports it in its status and on the console."""
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text().replace('"gates":', '"no_gates":', 1))
    done = chromium(f"file://{broken}", "--dump-dom")
    assert re.search(r'data-status="error: Uncaught TypeError', done.stdout)
    assert any("Uncaught TypeError" in l for l in console_lines(done.stderr))
