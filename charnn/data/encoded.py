"""A corpus as character ids, encoded by streaming and cached in a memory-mapped file.

Shapes: N characters of the corpus, V vocabulary.

Training needs the whole corpus as ids (N,). Reading a 500 MB text into a Python string and
encoding it at once would take many times its size in memory (the bytes, the string, a 4-byte
code per character, the ids). Instead the file is read in blocks of CHUNK_BYTES, twice:
  1. decode strictly as UTF-8 (the error names the byte offset), hash the bytes (SHA-256), count
     the characters and mark which code points occur -> the vocabulary, sorted by code point;
  2. decode again and write each block's ids into a .npy file opened as a memory map.
The ids are uint8 when V <= 256 (any ASCII text), uint16 up to 65,536, else uint32, so the cache
is at most the text's size for ASCII. It sits next to the corpus as `<corpus>.charnn-ids.npy`
with a JSON sidecar `<corpus>.charnn-ids.json` (format version, the corpus's size, mtime and
SHA-256, the vocabulary, N, dtype); where that folder is not writable, in the user's cache folder.
A cache is used only if its sidecar matches the corpus's current size and mtime (editing the
corpus re-encodes it) and the ids still have the CRC-32 the sidecar recorded and lie inside the
vocabulary (a damaged cache is rebuilt, never trusted). Both files are written under temporary
names and renamed into place.

A folder given as the corpus is the concatenation of its text files (corpora.directory_text), built
once into the cache folder and encoded like any file.

Training then reads the ids through the memory map: the operating system pages them in and out,
so memory stays around the size of the ids however long the text.
"""
from __future__ import annotations

import codecs
import hashlib
import json
import os
import zlib
from typing import NamedTuple

import numpy as np

from ..errors import CharnnError, CorpusError
from ..files import atomic_path, atomic_write, cache_folder
from ..memory import require
from .corpora import directory_text
from .text import Vocab

CACHE_FORMAT = "charnn-ids"
CACHE_VERSION = 2  # 2: the sidecar holds the ids' CRC-32
CHUNK_BYTES = 1 << 23  # 8 MiB of text per block: ~100 MB of transient arrays at most
BOM = "\ufeff"


class EncodedCorpus(NamedTuple):
    ids: np.ndarray  # (N,) uint8/uint16/uint32, usually a read-only memory map
    vocab: Vocab
    sha256: str  # of the file's bytes
    cache: str | None  # the .npy file, or None when nothing could be cached


def cache_paths(corpus: str) -> list[str]:
    """Where the cache of `corpus` may live, in order of preference: next to it, then in the user's
    cache folder (keyed by the corpus's absolute path)."""
    corpus = os.path.abspath(corpus)
    key = hashlib.sha256(corpus.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return [corpus + ".charnn-ids.npy", os.path.join(cache_folder(), f"{key}-{os.path.basename(corpus)}.charnn-ids.npy")]


def _sidecar(npy: str) -> str:
    return npy[: -len(".npy")] + ".json"


def _stat(corpus: str) -> os.stat_result:
    try:
        st = os.stat(corpus)
    except FileNotFoundError:
        raise CorpusError(f"corpus not found: {corpus}") from None
    except OSError as e:
        raise CorpusError(f"cannot read corpus {corpus}: {e.strerror}") from None
    return st


def _blocks(corpus: str, chunk_bytes: int):
    """Yield (raw bytes, their decoded text) for blocks of about chunk_bytes of the corpus: strict
    UTF-8, a character split between blocks decoded with the later one, a leading byte-order mark
    dropped. Raises CorpusError naming the offset of the first invalid byte."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0  # bytes read before the current block
    first = True
    try:
        f = open(corpus, "rb")
    except OSError as e:
        raise CorpusError(f"cannot read corpus {corpus}: {e.strerror}") from None
    with f:
        while True:
            raw = f.read(chunk_bytes)
            final = not raw
            pending = len(decoder.getstate()[0])  # bytes of a character split across blocks
            try:
                text = decoder.decode(raw, final)
            except UnicodeDecodeError as e:
                # e.object is the decoder's buffer: the `pending` bytes of the last block, then raw
                at = offset - pending + e.start
                raise CorpusError(
                    f"corpus is not valid UTF-8: {corpus}: byte 0x{e.object[e.start]:02x} at offset {at} ({e.reason})"
                ) from None
            offset += len(raw)
            if first and text:
                first = False
                if text.startswith(BOM):  # a byte-order mark is encoding metadata, not text to learn
                    text = text[1:]
            yield raw, text
            if final:
                return


def _codes(text: str) -> np.ndarray:
    """Text -> code points (n,) uint32."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _scan(corpus: str, chunk_bytes: int) -> tuple[int, list[str], str]:
    """Pass 1: the number of characters, the sorted vocabulary and the SHA-256 of the bytes."""
    sha = hashlib.sha256()
    seen = np.zeros(0x110000, dtype=bool)  # one flag per Unicode code point
    n = 0
    for raw, text in _blocks(corpus, chunk_bytes):
        sha.update(raw)
        if text:
            codes = _codes(text)
            seen[codes] = True
            n += codes.size
    if n == 0:
        raise CorpusError(f"corpus is empty: {corpus}")
    return n, [chr(c) for c in np.flatnonzero(seen)], sha.hexdigest()


def ids_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds ids 0..vocab_size-1."""
    return np.dtype(np.uint8 if vocab_size <= 1 << 8 else np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def _encode_into(corpus: str, out: np.ndarray, vocab: Vocab, chunk_bytes: int) -> None:
    """Pass 2: write the corpus's ids into out (N,), block by block."""
    table = np.zeros(ord(vocab.chars[-1]) + 1, dtype=out.dtype)  # code point -> id
    table[[ord(c) for c in vocab.chars]] = np.arange(len(vocab), dtype=out.dtype)
    at = 0
    for _, text in _blocks(corpus, chunk_bytes):
        if text:
            codes = _codes(text)
            if at + codes.size > out.size or codes.max() >= table.size:
                raise CorpusError(f"corpus changed while it was being encoded: {corpus}")
            out[at : at + codes.size] = table[codes]  # a code point added meanwhile would read as id 0
            at += codes.size
    if at != out.size:
        raise CorpusError(f"corpus changed while it was being encoded: {corpus}")


def _write(corpus: str, npy: str, n: int, vocab: Vocab, chunk_bytes: int) -> None:
    """Encode the corpus into npy (atomically: complete or not at all)."""
    with atomic_path(npy, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=ids_dtype(len(vocab)), shape=(n,))
        _encode_into(corpus, out, vocab, chunk_bytes)
        out.flush()
        del out


def _write_json(path: str, meta: dict) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(meta, f)


def ids_crc32(ids: np.ndarray) -> int:
    """CRC-32 of the ids' bytes, read in blocks so a memory map is paged through, not loaded."""
    crc, step = 0, CHUNK_BYTES
    flat = ids.reshape(-1)
    for start in range(0, flat.size, step):
        crc = zlib.crc32(np.ascontiguousarray(flat[start : start + step]).view(np.uint8), crc)
    return crc


def _load_cache(npy: str, st: os.stat_result) -> EncodedCorpus | None:
    """The cache at npy if it is complete and made from the corpus as it is now, else None."""
    try:
        with open(_sidecar(npy), encoding="utf-8") as f:
            meta = json.load(f)
        if (meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION
                or meta["corpus_size"] != st.st_size or meta["corpus_mtime_ns"] != st.st_mtime_ns):
            return None
        ids = np.load(npy, mmap_mode="r", allow_pickle=False)
        vocab = Vocab(meta["vocab"])
        if ids.shape != (meta["chars"],) or ids.dtype != ids_dtype(len(vocab)):
            return None
        if ids_crc32(ids) != meta["ids_crc32"] or (ids.size and int(ids.max()) >= len(vocab)):
            return None  # damaged since it was written: encode again
        return EncodedCorpus(ids, vocab, meta["sha256"], npy)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def encode_corpus(corpus: str | os.PathLike, chunk_bytes: int = CHUNK_BYTES, note=None) -> EncodedCorpus:
    """The corpus as ids (from its cache when that is current, else encoded and cached). A folder
    is the concatenation of its text files (corpora.directory_text; `note` hears what it took).

    Raises CorpusError for a missing, unreadable, empty or non-UTF-8 corpus, with the same messages
    as data.read_corpus. If no cache folder is writable the ids are kept in memory instead, when
    they fit (else CorpusError with the figures)."""
    corpus = os.fspath(corpus)
    if os.path.isdir(corpus):
        corpus = directory_text(corpus, note)
    st = _stat(corpus)
    if st.st_size == 0:
        raise CorpusError(f"corpus is empty: {corpus}")
    candidates = cache_paths(corpus)
    for npy in candidates:
        hit = _load_cache(npy, st)
        if hit is not None:
            return hit
    n, chars, sha = _scan(corpus, chunk_bytes)
    vocab = Vocab(chars)
    meta = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "corpus": os.path.abspath(corpus),
            "corpus_size": st.st_size, "corpus_mtime_ns": st.st_mtime_ns, "sha256": sha,
            "chars": n, "vocab": chars}
    for npy in candidates:
        try:
            _write(corpus, npy, n, vocab, chunk_bytes)
            meta["ids_crc32"] = ids_crc32(np.load(npy, mmap_mode="r", allow_pickle=False))
            _write_json(_sidecar(npy), meta)
        except OSError:
            continue  # not writable here: try the next folder
        hit = _load_cache(npy, st)
        if hit is not None:
            return hit
    # nowhere to cache: encode into memory (the corpus has to fit)
    dtype = ids_dtype(len(vocab))
    try:
        require(n * dtype.itemsize + 2 * chunk_bytes * 4, f"{corpus} ({n:,} characters), with no folder to cache its ids in,",
                "free some disk space for the ids cache (next to the corpus or in ~/.cache/charnn)")
    except CharnnError as e:
        raise CorpusError(str(e)) from None
    ids = np.empty(n, dtype=dtype)
    _encode_into(corpus, ids, vocab, chunk_bytes)
    return EncodedCorpus(ids, vocab, sha, None)
