"""`charnn corpus list/get/build`, offline: the network is replaced by local files, archives are
made in tmp_path, and every failure is a one-line error that leaves nothing at the final path."""
import hashlib
import io
import json
import os
import shutil
import tarfile
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from charnn.data import corpora
from charnn.cli.corpus import corpus

from conftest import shared_corpora_dir

SHAKESPEARE_URL = ("https://raw.githubusercontent.com/karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/"
                   "data/tinyshakespeare/input.txt")


@pytest.fixture
def runner(tmp_path, monkeypatch):
    """A fresh cwd whose corpus folders are only $CHARNN_CORPORA (if set) and ./corpora: the
    shared corpora beside the checkout must not make anything look present."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("CHARNN_CORPORA", raising=False)
    monkeypatch.delenv(corpora.REGISTRY_ENV, raising=False)
    monkeypatch.setattr(corpora, "corpus_dirs", lambda: [d for d in (os.environ.get("CHARNN_CORPORA"), "corpora") if d])
    return CliRunner()


def invoke(runner, *args):
    return runner.invoke(corpus, [str(a) for a in args], catch_exceptions=False)


def assert_clean_error(result, *fragments, progress_ok=False):
    """A non-zero exit with one `Error:` line; before it, at most the progress lines on stderr."""
    assert result.exit_code != 0, result.output
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert lines and lines[-1].startswith("Error:"), result.output
    assert len(lines) == 1 or progress_ok and not result.stdout and "Error" not in " ".join(lines[:-1]), result.output
    for frag in fragments:
        assert frag in lines[-1], lines[-1]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_registry(path, *entries):
    path.write_text(json.dumps({"corpora": list(entries)}), encoding="utf-8")
    return path


def entry(name, url, text: bytes, build, **extra):
    return {"name": name, "description": f"test corpus {name}", "license": "CC0", "source": "made by the test",
            "url": url, "bytes": len(text), "sha256": sha(text), "build": build, **extra}


def make_tar(path, root, files: dict[str, bytes], mode="w:gz"):
    """An archive like GitHub's or kernel.org's: everything inside one root folder."""
    with tarfile.open(path, mode) as tar:
        info = tarfile.TarInfo(root)
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        for rel, data in files.items():
            info = tarfile.TarInfo(f"{root}/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def fake_download(sources: dict[str, str], calls: list):
    """Replaces corpora.download: copies the local file registered for the URL."""
    def download(url, dest, progress=None, timeout=None):
        calls.append(url)
        shutil.copyfile(sources[url], dest)
        return os.path.getsize(dest)
    return download


def leftovers(folder):
    return sorted(p for p in os.listdir(folder) if p.endswith(".tmp")) if os.path.isdir(folder) else []


# ---------------------------------------------------------------------------------------------
# corpus build

TREE = {  # byte order of the relative paths: B.c < a.c < a.h < a/b.c < a_b.c ('.' 2e < '/' 2f < '_' 5f)
    "a_b.c": b"<a_b.c>",
    "a/b.c": b"<a/b.c>",
    "a.h": b"<a.h>",
    "B.c": b"<B.c>",
    "a.c": b"<a.c>",
    "notes.txt": b"<notes.txt>",
    "a/deeper/z.h": b"<a/deeper/z.h>",
}
ORDER = ["B.c", "a.c", "a.h", "a/b.c", "a/deeper/z.h", "a_b.c"]


def make_tree(root, files):
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def test_build_orders_by_path_bytes(runner, tmp_path):
    src = make_tree(tmp_path / "src", TREE)
    r = invoke(runner, "build", src, "-o", "out.txt", "--ext", ".c", "--ext", ".h")
    assert r.exit_code == 0, r.output
    want = b"".join(TREE[p] for p in ORDER)  # no separators; notes.txt filtered out
    assert open("out.txt", "rb").read() == want
    assert sha(want) in r.output and f"6 files, {len(want):,} bytes" in r.output
    assert leftovers(".") == []


def test_build_ext_filter(runner, tmp_path):
    src = make_tree(tmp_path / "src", TREE)
    r = invoke(runner, "build", src, "-o", "h.txt", "--ext", ".h")
    assert r.exit_code == 0, r.output
    assert open("h.txt", "rb").read() == b"<a.h><a/deeper/z.h>"


def test_build_max_bytes_stops_before_the_overflowing_file(runner, tmp_path):
    src = make_tree(tmp_path / "src", {"1.c": b"x" * 40, "2.c": b"y" * 50, "3.c": b"z" * 30, "4.c": b"w" * 5})
    r = invoke(runner, "build", src, "-o", "out.txt", "--ext", ".c", "--max-bytes", 100)
    assert r.exit_code == 0, r.output
    # 1.c + 2.c = 90; 3.c would make 120 > 100: stop there, even though 4.c alone would still fit
    assert open("out.txt", "rb").read() == b"x" * 40 + b"y" * 50
    assert "stopped before 3.c" in r.output and "2 file(s) left out" in r.output
    r = invoke(runner, "build", src, "-o", "exact.txt", "--ext", ".c", "--max-bytes", 120)  # at the limit is in
    assert os.path.getsize("exact.txt") == 120 and "stopped before 4.c" in r.output


def test_build_skips_non_utf8_with_a_warning(runner, tmp_path):
    src = make_tree(tmp_path / "src", {"a.c": b"ok\n", "b.c": b"caf\xe9\n", "c.c": "été\n".encode()})
    r = invoke(runner, "build", src, "-o", "out.txt", "--ext", ".c")
    assert r.exit_code == 0, r.output
    assert open("out.txt", "rb").read() == "ok\nété\n".encode()
    assert "warning: skipped b.c: not valid UTF-8 (byte 0xe9 at offset 3)" in r.stderr
    assert "2 files" in r.stdout and "skipped 1 file(s)" in r.stdout


def test_build_from_tarfile_equals_build_from_folder(tmp_path):
    """The linux recipe reads a tarball; `corpus build` reads a folder: same files, same text."""
    files = {"kernel/" + k: v for k, v in TREE.items()} | {"mm/m.c": b"<mm>", "fs/f.c": b"<fs>"}
    make_tree(tmp_path / "linux-9.9" , files)
    archive = make_tar(tmp_path / "linux-9.9.tar.xz", "linux-9.9", dict(reversed(files.items())), mode="w:xz")
    spec = corpora.CorpusSpec("k", "", "", "", "https://example.invalid/linux-9.9.tar.xz", 0, "",
                              {"type": "archive-tree", "dirs": ["kernel", "mm"], "ext": [".c", ".h"]})
    texts = []
    for source in (archive, tmp_path / "linux-9.9"):
        out = io.BytesIO()
        report = corpora.concatenate(corpora.recipe_entries(spec, str(source)), out)
        texts.append(out.getvalue())
        assert report.files == ["kernel/" + p for p in ORDER] + ["mm/m.c"]
    assert texts[0] == texts[1] == b"".join(TREE[p] for p in ORDER) + b"<mm>"
    folder = io.BytesIO()  # and `corpus build` on kernel/ gives the kernel/ part of it
    corpora.concatenate(corpora.tree_entries(str(tmp_path / "linux-9.9" / "kernel"), [".c", ".h"]), folder)
    assert texts[0].startswith(folder.getvalue())


@pytest.mark.parametrize("case", ["missing dir", "no matches", "unwritable", "too small"])
def test_build_errors_are_one_line(runner, tmp_path, case):
    src = make_tree(tmp_path / "src", {"a.c": b"abc"})
    (tmp_path / "afile").write_text("x")
    args = {
        "missing dir": (tmp_path / "nope", "-o", "out.txt", "--ext", ".c"),
        "no matches": (src, "-o", "out.txt", "--ext", ".rs"),
        "unwritable": (src, "-o", tmp_path / "afile" / "out.txt", "--ext", ".c"),  # parent is a file
        "too small": (src, "-o", "out.txt", "--ext", ".c", "--max-bytes", 2),
    }[case]
    expect = {"missing dir": "directory not found", "no matches": "no files ending in .rs",
              "unwritable": "cannot write", "too small": "larger than the byte limit"}[case]
    assert_clean_error(invoke(runner, "build", *args), expect)
    assert not os.path.exists("out.txt") and leftovers(".") == []


# ---------------------------------------------------------------------------------------------
# corpus get, with the network replaced

@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A registry with one single-file corpus whose download is a local copy."""
    text = "To be, or not to be: that is the question.\n".encode()
    (tmp_path / "input.txt").write_bytes(text)
    url = "https://example.invalid/input.txt"
    registry = write_registry(tmp_path / "registry.json", entry("tiny", url, text, {"type": "file"}))
    monkeypatch.setenv(corpora.REGISTRY_ENV, str(registry))
    calls = []
    monkeypatch.setattr(corpora, "download", fake_download({url: tmp_path / "input.txt"}, calls))
    return text, calls


def test_get_single_file(runner, tiny):
    text, calls = tiny
    r = invoke(runner, "get", "tiny")
    assert r.exit_code == 0, r.output
    assert open("corpora/tiny.txt", "rb").read() == text and calls == ["https://example.invalid/input.txt"]
    assert f"built corpora/tiny.txt: {len(text)} bytes, sha256 {sha(text)}" in r.output
    assert leftovers("corpora") == []
    r = invoke(runner, "get", "tiny")  # already there with the right sha256: no download
    assert r.exit_code == 0 and "already present" in r.output and len(calls) == 1
    invoke(runner, "get", "tiny", "--force")
    assert len(calls) == 2


def test_get_checksum_mismatch_leaves_nothing(runner, tiny, tmp_path):
    (tmp_path / "input.txt").write_bytes(b"a different text\n")
    r = invoke(runner, "get", "tiny")
    assert_clean_error(r, "checksum mismatch for tiny", f"expected sha256 {sha(tiny[0])}",
                       f"got {sha(b'a different text' + chr(10).encode())}", "nothing written to corpora/tiny.txt")
    assert not os.path.exists("corpora/tiny.txt") and leftovers("corpora") == []


def test_get_existing_different_file_needs_force(runner, tiny):
    os.makedirs("corpora")
    with open("corpora/tiny.txt", "w") as f:
        f.write("my own text\n")
    assert_clean_error(invoke(runner, "get", "tiny"), "corpora/tiny.txt exists", "--force")
    assert open("corpora/tiny.txt", "rb").read() == b"my own text\n"
    assert invoke(runner, "get", "tiny", "--force").exit_code == 0
    assert open("corpora/tiny.txt", "rb").read() == tiny[0]


def test_get_present_elsewhere_does_nothing(runner, tiny, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "tiny.txt").write_bytes(tiny[0])
    monkeypatch.setenv("CHARNN_CORPORA", str(shared))
    r = invoke(runner, "get", "tiny")
    assert r.exit_code == 0 and "already present" in r.output and str(shared / "tiny.txt") in r.output
    assert tiny[1] == [] and not os.path.exists("corpora")


def test_get_archive_recipe(runner, tmp_path, monkeypatch):
    """latex-style: listed chapters from the archive's root folder, in list order, up to max_bytes."""
    chapters = {"intro.tex": b"\\section{Intro}\n" * 3, "sets.tex": b"\\section{Sets}\n" * 2,
                "algebra.tex": b"\\section{Algebra}\n" * 4, "divisors.tex": b"\\section{Divisors}\n" * 9}
    extra = {"Makefile": b"LIJST = intro sets algebra divisors\n", "tags/tags": b"0001,intro\n", "zz.tex": b"not listed"}
    archive = make_tar(tmp_path / "stacks.tar.gz", "stacks-project-0123abc", extra | chapters)
    order = ["sets.tex", "intro.tex", "algebra.tex", "divisors.tex"]  # list order, not path order
    text = b"".join(chapters[c] for c in order[:3])  # divisors.tex would pass max_bytes
    url = "https://example.invalid/stacks/archive/0123abc.tar.gz"
    registry = write_registry(tmp_path / "registry.json", entry(
        "tex", url, text, {"type": "archive-files", "files": order, "max_bytes": len(text) + 10}))
    monkeypatch.setenv(corpora.REGISTRY_ENV, str(registry))
    monkeypatch.setattr(corpora, "download", fake_download({url: archive}, []))
    r = invoke(runner, "get", "tex")
    assert r.exit_code == 0, r.output
    assert open("corpora/tex.txt", "rb").read() == text and "3 files" in r.output
    assert leftovers("corpora") == []  # the downloaded archive is gone too
    r = invoke(runner, "get", "tex", "--force", "--from", archive, "--quiet")  # a hand-downloaded copy
    assert r.exit_code == 0 and r.output == ""


def test_get_archive_tree_recipe_from_hand_downloaded_tarball(runner, tmp_path, monkeypatch):
    files = {"kernel/b.c": b"int b;\n", "kernel/a.h": b"#define A\n", "kernel/bad.c": b"\xff\xfe",
             "mm/m.c": b"int m;\n", "mm/big.c": b"x" * 100, "arch/x.c": b"int x;\n", "kernel/README": b"doc"}
    archive = make_tar(tmp_path / "linux-1.0.tar.xz", "linux-1.0", files, mode="w:xz")
    text = b"#define A\nint b;\n"  # kernel/a.h, kernel/b.c, [kernel/bad.c skipped], then mm/big.c stops it
    registry = write_registry(tmp_path / "registry.json", entry(
        "kern", "https://example.invalid/linux-1.0.tar.xz", text,
        {"type": "archive-tree", "dirs": ["kernel", "mm"], "ext": [".c", ".h"], "max_bytes": 50}))
    monkeypatch.setenv(corpora.REGISTRY_ENV, str(registry))
    result = corpora.get_corpus("kern", source=str(archive))
    assert open("corpora/kern.txt", "rb").read() == text
    assert result.report.files == ["kernel/a.h", "kernel/b.c"] and result.report.stopped_before == "mm/big.c"
    assert result.report.skipped == [("kernel/bad.c", "not valid UTF-8 (byte 0xff at offset 0)")]


def test_get_mismatch_note_from_registry(runner, tmp_path, monkeypatch):
    archive = make_tar(tmp_path / "l.tar.xz", "linux-1.0", {"kernel/a.c": b"patched\n"}, mode="w:xz")
    registry = write_registry(tmp_path / "registry.json", entry(
        "kern", "https://example.invalid/l.tar.xz", b"original\n",
        {"type": "archive-tree", "dirs": ["kernel"], "ext": [".c"]}, note="Debian may have patched kernel/"))
    monkeypatch.setenv(corpora.REGISTRY_ENV, str(registry))
    r = invoke(runner, "get", "kern", "--from", archive)
    assert_clean_error(r, "checksum mismatch", "Debian may have patched kernel/", progress_ok=True)
    assert not os.path.exists("corpora")


def test_get_offline_is_one_line_with_advice(runner, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    r = invoke(runner, "get", "shakespeare")  # the real registry and the real download function
    assert_clean_error(r, f"cannot download {SHAKESPEARE_URL}", "Temporary failure in name resolution",
                       "charnn corpus get shakespeare --from FILE", "CHARNN_CORPORA", "shakespeare.txt")
    assert not os.path.exists("corpora")


def test_download_streams_a_file_url_with_progress(runner, tmp_path, monkeypatch):
    """The real download function, offline: urllib reads file:// URLs and sends Content-Length."""
    text = b"Now is the winter of our discontent\n" * 100
    (tmp_path / "input.txt").write_bytes(text)
    registry = write_registry(tmp_path / "registry.json",
                              entry("tiny", (tmp_path / "input.txt").as_uri(), text, {"type": "file"}))
    monkeypatch.setenv(corpora.REGISTRY_ENV, str(registry))
    r = invoke(runner, "get", "tiny")
    assert r.exit_code == 0, r.output
    assert "downloading tiny" in r.stderr and open("corpora/tiny.txt", "rb").read() == text
    assert leftovers("corpora") == []
    assert_clean_error(invoke(runner, "get", "tiny", "--force", "--from", tmp_path / "nope"), "--from")


def test_get_unknown_name_lists_the_known_ones(runner):
    assert_clean_error(invoke(runner, "get", "klingon"), "unknown corpus 'klingon'", "shakespeare, latex, linux")


# ---------------------------------------------------------------------------------------------
# corpus list, and the registry itself

def test_list_marks_present_corpora(runner, tmp_path, monkeypatch):
    here = tmp_path / "mine"
    here.mkdir()
    (here / "shakespeare.txt").write_text("fake\n")
    monkeypatch.setenv("CHARNN_CORPORA", str(here))
    r = invoke(runner, "list")
    assert r.exit_code == 0, r.output
    heads = {l.split()[0]: l for l in r.output.splitlines() if l and not l[0].isspace()}
    assert list(heads) == ["shakespeare", "latex", "linux"]
    assert f"present: {here / 'shakespeare.txt'}" in heads["shakespeare"]
    assert "not present" in heads["latex"] and "not present" in heads["linux"]
    assert "1,115,394 bytes" in heads["shakespeare"] and "public domain" in r.output and SHAKESPEARE_URL in r.output


def test_registry_matches_the_issue():
    specs = corpora.load_registry()
    assert specs["shakespeare"].url == SHAKESPEARE_URL and specs["shakespeare"].bytes == 1_115_394
    latex, linux = specs["latex"], specs["linux"]
    assert latex.build["files"][0] == "introduction.tex" and latex.build["files"][-1] == "divisors.tex"
    assert len(latex.build["files"]) == 31 and latex.build["max_bytes"] == 10_000_000
    assert latex.url.endswith("/4ac4815d5a00dc2eacab7824cf4e4baafe2773ac.tar.gz")
    assert linux.build == {**linux.build, "dirs": ["kernel", "mm"], "ext": [".c", ".h"], "max_bytes": 10_000_000}
    assert "Debian" in linux.note


@pytest.mark.parametrize("name", ["shakespeare", "latex", "linux"])
def test_shared_corpus_has_the_registry_checksum(name):
    d = shared_corpora_dir()
    path = d and os.path.join(d, f"{name}.txt")
    if not path or not os.path.isfile(path):
        pytest.skip(f"{name}.txt not available: set CHARNN_CORPORA to a folder holding it")
    spec = corpora.load_registry()[name]
    assert os.path.getsize(path) == spec.bytes
    assert corpora.sha256_file(path) == spec.sha256
