"""Where corpora come from: the default training text, the registry of known corpora, and building
a corpus text from a download, an archive or a directory tree.

A corpus text is a plain concatenation of source files, without separators. Two rules fix it
byte for byte, wherever the files come from (a folder, a .tar.gz/.tar.xz, a registry recipe):

- order: explicit (a recipe's file list), or sorted by relative path in the byte order of its
  UTF-8 encoding, like `LC_ALL=C sort` ("B.c" < "a.c" < "a.h" < "a/b.c" < "a_b.c");
- size: files are taken while the total stays at or under max_bytes; the first file that would
  push it past stops the build (later, smaller files are not tried). A file that is not valid
  UTF-8 is skipped, with its reason in the report: a corpus must be UTF-8.

The registry (corpora/registry.json in the checkout, or $CHARNN_CORPUS_REGISTRY) is data: each
entry names a corpus, its source URL, the SHA-256 of the finished text and a build recipe.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import secrets
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, ContextManager, NamedTuple, Sequence

from ..errors import CorpusError
from ..files import atomic_write, cache_folder

DEFAULT_CORPUS = "shakespeare.txt"
CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the source checkout
REGISTRY_ENV = "CHARNN_CORPUS_REGISTRY"
RECIPES = ("file", "archive-files", "archive-tree")
DOWNLOAD_TIMEOUT = 60.0  # seconds without a byte before a download gives up
CHUNK = 1 << 20


class DownloadError(CorpusError):
    """A corpus source could not be downloaded (offline, HTTP error, timeout, truncated)."""


class ChecksumError(CorpusError):
    """A built corpus does not have the SHA-256 its registry entry promises."""


def corpus_dirs() -> list[str]:
    """Folders searched for named corpora, in order: $CHARNN_CORPORA, ./corpora, ../shared/corpora."""
    dirs = []
    if os.environ.get("CHARNN_CORPORA"):
        dirs.append(os.environ["CHARNN_CORPORA"])
    dirs.append("corpora")
    dirs.append(os.path.join(CHECKOUT, "..", "shared", "corpora"))
    return dirs


def find_corpus(name: str) -> str | None:
    for d in corpus_dirs():
        path = os.path.join(d, name)
        if os.path.isfile(path):
            return os.path.normpath(path)
    return None


def default_corpus() -> str:
    """tiny Shakespeare from the corpus folders, or a clear error saying what to pass instead."""
    path = find_corpus(DEFAULT_CORPUS)
    if path is None:
        raise CorpusError(
            f"no corpus given and no default {DEFAULT_CORPUS} found in {', '.join(corpus_dirs())}: "
            f"pass a text file, e.g. `charnn train mytext.txt`, set CHARNN_CORPORA, "
            f"or run `charnn corpus get shakespeare`"
        )
    return path


# ---------------------------------------------------------------------------------------------
# The registry

@dataclass(frozen=True)
class CorpusSpec:
    """One registry entry: what the corpus is, where it comes from, and how its text is built."""
    name: str
    description: str
    license: str
    source: str  # where the text comes from, for people (the URL is for the downloader)
    url: str
    bytes: int  # size of the finished text
    sha256: str  # of the finished text
    build: dict  # the recipe: {"type": one of RECIPES, ...}
    note: str = ""  # said with a checksum mismatch, e.g. why a rebuild may legitimately differ

    @property
    def filename(self) -> str:
        return self.name + ".txt"


def registry_path() -> str:
    """$CHARNN_CORPUS_REGISTRY, else corpora/registry.json in the source checkout."""
    return os.environ.get(REGISTRY_ENV) or os.path.join(CHECKOUT, "corpora", "registry.json")


def load_registry(path: str | None = None) -> dict[str, CorpusSpec]:
    """The registry's corpora by name, in file order."""
    path = path or registry_path()
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise CorpusError(f"corpus registry not found: {path} (set {REGISTRY_ENV} to a registry.json)") from None
    except (OSError, ValueError) as e:
        raise CorpusError(f"cannot read corpus registry {path}: {e}") from None
    specs = {}
    for i, entry in enumerate(raw.get("corpora", []) if isinstance(raw, dict) else []):
        try:
            spec = CorpusSpec(**{k: v for k, v in entry.items() if not k.startswith("_")})
        except TypeError as e:
            raise CorpusError(f"corpus registry {path}: entry {i + 1}: {e}") from None
        kind = spec.build.get("type") if isinstance(spec.build, dict) else None
        if kind not in RECIPES:
            raise CorpusError(f"corpus registry {path}: {spec.name}: build type {kind!r} is not one of {', '.join(RECIPES)}")
        specs[spec.name] = spec
    if not specs:
        raise CorpusError(f"corpus registry {path} lists no corpora")
    return specs


def lookup(name: str, registry: str | None = None) -> CorpusSpec:
    specs = load_registry(registry)
    if name not in specs:
        raise CorpusError(f"unknown corpus {name!r}: the registry knows {', '.join(specs)}")
    return specs[name]


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def locate(spec: CorpusSpec) -> str | None:
    """Where `charnn train` would find this corpus's text (see corpus_dirs), or None."""
    return find_corpus(spec.filename)


# ---------------------------------------------------------------------------------------------
# Building a text: one ordering rule, one size rule, for folders and archives alike

class Entry(NamedTuple):
    path: str  # relative, '/'-separated
    read: Callable[[], bytes]


@dataclass
class BuildReport:
    files: list[str] = field(default_factory=list)  # used, in order
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): not UTF-8, unreadable
    stopped_before: str | None = None  # the first file that would have passed max_bytes
    left_out: int = 0  # files not used because of max_bytes (stopped_before and all after it)
    bytes: int = 0
    sha256: str = ""
    path: str = ""  # where the text was written


def path_key(relpath: str) -> bytes:
    """Sort key: the UTF-8 bytes of the relative path, i.e. `LC_ALL=C sort` order."""
    return os.fsencode(relpath)


def matches(relpath: str, exts: Sequence[str]) -> bool:
    return os.path.basename(relpath).endswith(tuple(exts))


def concatenate(entries: Sequence[Entry], out, max_bytes: int | None = None, binary_ok: bool = True) -> BuildReport:
    """Write the entries, in the given order, to the binary file `out`; see the module docstring.
    binary_ok=False also skips files holding a NUL byte (git's test for a binary file)."""
    report = BuildReport()
    h = hashlib.sha256()
    for k, entry in enumerate(entries):
        try:
            data = entry.read()
        except OSError as e:
            report.skipped.append((entry.path, f"cannot read: {e.strerror or e}"))
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            report.skipped.append((entry.path, f"not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})"))
            continue
        if not binary_ok and b"\0" in data:
            report.skipped.append((entry.path, "binary (holds NUL bytes)"))
            continue
        if max_bytes is not None and report.bytes + len(data) > max_bytes:
            report.stopped_before, report.left_out = entry.path, len(entries) - k
            break
        out.write(data)
        h.update(data)
        report.files.append(entry.path)
        report.bytes += len(data)
    report.sha256 = h.hexdigest()
    return report


def tree_entries(root: str, exts: Sequence[str], under: Sequence[str] = ("",), exclude: str | None = None) -> list[Entry]:
    """Files below root/<under> whose names end with one of exts, in byte order of their path
    relative to root. `exclude` (an output file inside the tree) is never read."""
    found = []
    skip = os.path.realpath(exclude) if exclude else None
    for sub in under:
        top = os.path.join(root, sub) if sub else root
        for folder, dirs, names in os.walk(top):
            for name in names:
                full = os.path.join(folder, name)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                if matches(rel, exts) and os.path.realpath(full) != skip:
                    found.append(Entry(rel, _file_reader(full)))
    return sorted(found, key=lambda e: path_key(e.path))


def _file_reader(path: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with open(path, "rb") as f:
            return f.read()
    return read


def archive_members(archive: str, want: Callable[[str], bool]) -> dict[str, bytes]:
    """The wanted regular files of a .tar/.tar.gz/.tar.xz/.tar.bz2, read in one streaming pass.

    Keys are paths below the archive's root folder ("linux-6.1.192/kernel/acct.c" -> "kernel/acct.c").
    Stream mode decompresses once, front to back, and never seeks: an xz tarball read with random
    access would be decompressed again for every backward seek.
    """
    members = {}
    try:
        with tarfile.open(archive, "r|*") as tar:
            for info in tar:
                rel = _below_root(info.name)
                if info.isfile() and rel and want(rel):
                    members[rel] = tar.extractfile(info).read()
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:  # corrupt or truncated compressed data
        raise CorpusError(f"cannot read archive {archive}: {e}") from None
    return members


def _below_root(name: str) -> str:
    """The path below the archive's root folder: stacks-project-4ac4815/algebra.tex -> algebra.tex."""
    while name.startswith("./"):
        name = name[2:]
    _root, _, rel = name.partition("/")
    return rel


def build_corpus(directory: str, output: str, exts: Sequence[str], max_bytes: int | None = None) -> BuildReport:
    """`charnn corpus build`: concatenate every file under `directory` ending in one of `exts`.

    Byte-sorted relative paths, no separators, stopping before the file that would pass max_bytes.
    Non-UTF-8 files are skipped and listed in report.skipped. The output is written atomically.
    """
    if not os.path.exists(directory):
        raise CorpusError(f"directory not found: {directory}")
    if not os.path.isdir(directory):
        raise CorpusError(f"not a directory: {directory}")
    if not exts:
        raise CorpusError("give at least one --ext, e.g. --ext .c --ext .h")
    entries = tree_entries(directory, exts, exclude=output)
    if not entries:
        raise CorpusError(f"no files ending in {', '.join(exts)} under {directory}")
    with atomic_output(output) as out:
        report = concatenate(entries, out, max_bytes)
        _require_text(report, directory)
    report.path = output
    return report


CHARNN_FILES = (".charnn-ids.npy", ".charnn-ids.json")  # charnn's own caches beside a corpus


def folder_entries(directory: str) -> list[Entry]:
    """The files a folder given as a corpus reads: every regular file below it, in byte order of
    the relative path, except hidden ones (a name starting with '.', folders included: .git) and
    charnn's own ids caches."""
    found = []
    for folder, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            full = os.path.join(folder, name)
            if name.startswith(".") or name.endswith(CHARNN_FILES) or not os.path.isfile(full):
                continue
            found.append(Entry(os.path.relpath(full, directory).replace(os.sep, "/"), _file_reader(full)))
    return sorted(found, key=lambda e: path_key(e.path))


def directory_text(directory: str, note: Callable[[str], None] | None = None) -> str:
    """A folder given as a corpus: its text files (folder_entries; files that are not UTF-8 or
    hold NUL bytes are skipped), concatenated in that order into one text in charnn's cache
    folder, which is returned. The text is rebuilt only when the list of files, their sizes or
    modification times change. `note` hears how many files were used and which were skipped."""
    directory = os.path.abspath(directory)
    entries = folder_entries(directory)
    if not entries:
        raise CorpusError(f"the folder {directory} holds no files to train on (hidden files are not read)")
    listing = hashlib.sha256()
    for e in entries:
        st = os.stat(os.path.join(directory, e.path))
        listing.update(f"{e.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    key = hashlib.sha256(directory.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    text = os.path.join(cache_folder(), "folders", f"{key}-{os.path.basename(directory) or 'root'}.txt")
    sidecar = text[: -len(".txt")] + ".json"
    try:
        with open(sidecar, encoding="utf-8") as f:
            known = json.load(f)
        if known.get("listing") == listing.hexdigest() and os.path.isfile(text):
            return text
    except (OSError, ValueError, AttributeError):
        pass
    try:
        os.makedirs(os.path.dirname(text), exist_ok=True)
    except OSError as e:
        raise CorpusError(f"cannot build the text of the folder {directory} in {os.path.dirname(text)}: {e.strerror or e}; "
                          f"build it yourself with: charnn corpus build {directory} -o corpus.txt --ext .txt") from None
    with atomic_output(text) as out:
        report = concatenate(entries, out, binary_ok=False)
        _require_text(report, directory)
        if not report.bytes:
            raise CorpusError(f"the folder {directory} holds no text: its {len(report.files)} readable file(s) are empty")
    try:
        with atomic_write(sidecar, "w", encoding="utf-8") as f:
            json.dump({"folder": directory, "listing": listing.hexdigest(), "files": report.files, "skipped": report.skipped}, f)
    except OSError:
        pass  # without the sidecar the text is rebuilt next time: slower, still right
    if note:
        skipped = f"; skipped {len(report.skipped)}: " + ", ".join(f"{p} ({why})" for p, why in report.skipped[:3]) if report.skipped else ""
        more = " ..." if len(report.skipped) > 3 else ""
        note(f"corpus {directory}: {len(report.files)} files in byte order of their paths, {report.bytes:,} bytes{skipped}{more}")
    return text


def _require_text(report: BuildReport, where: str) -> None:
    if not report.files:
        why = (f"the first file, {report.stopped_before}, is larger than the byte limit" if report.stopped_before
               else "every matching file was skipped (not UTF-8 or unreadable)")
        raise CorpusError(f"nothing to write from {where}: {why}")


@contextlib.contextmanager
def atomic_output(path: str):
    """Yield a binary file that becomes `path` only if the block finishes (charnn.files.atomic_write);
    on any error `path` is left as it was. Raises CorpusError naming a failed write."""
    if os.path.isdir(path):
        raise CorpusError(f"cannot write {path}: it is a directory")
    try:
        with atomic_write(path) as f:
            yield f
    except OSError as e:  # disk full, folder removed, ...: the write failed
        raise CorpusError(f"cannot write {path}: {e.strerror or e}") from None


def _temp_name(path: str, tag: str = "") -> str:
    folder, base = os.path.split(path)
    return os.path.join(folder, f".{base}{tag}.{secrets.token_hex(4)}.tmp")


# ---------------------------------------------------------------------------------------------
# Getting a registered corpus

Progress = Callable[[int], ContextManager]  # length in bytes -> context manager with .update(n)


def download(url: str, dest: str, progress: Progress | None = None, timeout: float = DOWNLOAD_TIMEOUT) -> int:
    """Stream `url` to the file `dest` (never all in memory); return the bytes received.

    progress(length), if given and the length is known, returns a context manager whose
    .update(n) is called per chunk (click.progressbar fits). Raises DownloadError.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "charnn"})
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(dest, "wb") as f:
            length = response.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            bar = progress(length) if progress and length else contextlib.nullcontext()
            with bar:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    received += len(chunk)
                    if progress and length:
                        bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise DownloadError(f"cannot download {url}: {e.reason}") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
        raise DownloadError(f"cannot download {url}: {e or type(e).__name__}") from None
    except OSError as e:
        raise CorpusError(f"cannot write {dest}: {e.strerror or e}") from None
    if length is not None and received != length:
        raise DownloadError(f"cannot download {url}: connection closed after {received:,} of {length:,} bytes")
    return received


@dataclass
class GetResult:
    spec: CorpusSpec
    path: str  # the corpus text: the one just built, or the copy already present
    built: bool  # False: a copy with the right SHA-256 was already present, nothing was done
    report: BuildReport | None = None


def get_corpus(name: str, *, dest_dir: str = "corpora", force: bool = False, source: str | None = None,
               registry: str | None = None, progress: Progress | None = None,
               log: Callable[[str], None] | None = None) -> GetResult:
    """Download a registered corpus, build <dest_dir>/<name>.txt by its recipe, check its SHA-256.

    Does nothing if a copy with the registry's SHA-256 is already in one of corpus_dirs() (unless
    force). `source` is a local copy of the download (the file, the archive, or the archive's
    extracted root folder) to build from instead of the network. The text is written atomically:
    on any error, including a checksum mismatch, nothing is left at the final path.
    """
    spec = lookup(name, registry)
    out = os.path.join(dest_dir, spec.filename)
    log = log or (lambda message: None)
    if not force:
        present = _present_copy(spec, out)
        if present:
            return GetResult(spec, present, built=False)
    if source is not None and not os.path.exists(source):
        raise CorpusError(f"--from {source}: no such file or directory")
    created = not os.path.isdir(dest_dir)
    try:
        os.makedirs(dest_dir, exist_ok=True)
    except OSError as e:
        raise CorpusError(f"cannot create {dest_dir}: {e.strerror}") from None
    try:
        report = _get(spec, out, dest_dir, source, progress, log)
    except BaseException:
        if created:  # leave no empty corpora/ behind a failed first get
            with contextlib.suppress(OSError):
                os.rmdir(dest_dir)
        raise
    return GetResult(spec, out, built=True, report=report)


def _get(spec: CorpusSpec, out: str, dest_dir: str, source: str | None, progress: Progress | None,
         log: Callable[[str], None]) -> BuildReport:
    with atomic_output(out) as f:  # opened first: an unwritable folder fails before a long download
        if source is not None:
            report = _build(spec, source, f, log)
        else:
            tmp = _temp_name(os.path.join(dest_dir, os.path.basename(spec.url) or spec.name), ".download")
            try:
                try:
                    download(spec.url, tmp, progress=progress)
                except (DownloadError, urllib.error.URLError) as e:
                    reason = str(e) if isinstance(e, DownloadError) else f"cannot download {spec.url}: {e.reason}"
                    raise DownloadError(f"{reason}; {_by_hand(spec)}") from None
                report = _build(spec, tmp, f, log)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        _require_text(report, source or spec.url)
        if report.sha256 != spec.sha256:
            note = f" ({spec.note})" if spec.note else ""
            raise ChecksumError(f"checksum mismatch for {spec.name}: expected sha256 {spec.sha256}, got "
                                f"{report.sha256} ({report.bytes:,} bytes); nothing written to {out}{note}")
    report.path = out
    return report


def _by_hand(spec: CorpusSpec) -> str:
    return (f"download it by hand and run `charnn corpus get {spec.name} --from FILE`, "
            f"or set CHARNN_CORPORA to a folder holding {spec.filename}")


def _present_copy(spec: CorpusSpec, out: str) -> str | None:
    """A copy with the registry's SHA-256 in out or corpus_dirs(); a differing file at out is an error."""
    if os.path.isfile(out):
        got = sha256_file(out)
        if got == spec.sha256:
            return out
        raise CorpusError(f"{out} exists but its sha256 is {got}, not the registry's {spec.sha256}: "
                          f"pass --force to replace it")
    seen = {os.path.realpath(out)}
    for d in corpus_dirs():
        path = os.path.normpath(os.path.join(d, spec.filename))
        if os.path.realpath(path) not in seen and os.path.isfile(path):
            seen.add(os.path.realpath(path))
            if sha256_file(path) == spec.sha256:
                return path
    return None


def recipe_entries(spec: CorpusSpec, source: str) -> list[Entry]:
    """The recipe's files from `source` (the downloaded file, an archive, or its extracted root
    folder), in the order they are concatenated."""
    build = spec.build
    kind = build["type"]
    if kind == "file":
        return [Entry(os.path.basename(spec.url), _file_reader(source))]
    if kind == "archive-files":
        files = list(build["files"])
        if os.path.isdir(source):
            have = {rel: _file_reader(os.path.join(source, rel)) for rel in files if os.path.isfile(os.path.join(source, rel))}
        else:
            wanted = set(files)
            have = {rel: (lambda data=data: data) for rel, data in archive_members(source, wanted.__contains__).items()}
        missing = [rel for rel in files if rel not in have]
        if missing:
            raise CorpusError(f"{source} lacks {len(missing)} file(s) of the {spec.name} recipe in its root folder, "
                              f"e.g. {missing[0]}: is it the archive of {spec.url}?")
        return [Entry(rel, have[rel]) for rel in files]
    # archive-tree: every file under the listed folders with a listed extension, byte-sorted
    dirs, exts = list(build["dirs"]), list(build["ext"])
    if os.path.isdir(source):
        return tree_entries(source, exts, under=[d for d in dirs if os.path.isdir(os.path.join(source, d))])
    under = tuple(d.rstrip("/") + "/" for d in dirs)
    members = archive_members(source, lambda rel: rel.startswith(under) and matches(rel, exts))
    entries = [Entry(rel, (lambda data=data: data)) for rel, data in members.items()]
    return sorted(entries, key=lambda e: path_key(e.path))


def _build(spec: CorpusSpec, source: str, out, log: Callable[[str], None]) -> BuildReport:
    if spec.build["type"] != "file":
        log(f"building {spec.filename} from the {'folder' if os.path.isdir(source) else 'archive'}")
    entries = recipe_entries(spec, source)
    if not entries:
        raise CorpusError(f"{source} has no files for the {spec.name} recipe: is it the archive of {spec.url}?")
    return concatenate(entries, out, spec.build.get("max_bytes"))
