"""charnn.encoded: the streamed, cached encoding of a corpus into ids, against the in-memory
reference (read_corpus + Vocab.from_text + encode)."""
import os
import tracemalloc

import numpy as np
import pytest

from charnn.data.text import Vocab, read_corpus
from charnn.data.encoded import cache_paths, encode_corpus, ids_dtype
from charnn.errors import CorpusError, VocabError
from charnn.train.loop import ids_in_vocab

TEXT = "Ünïcödé — ελληνικά, 漢字 and ASCII.\nSecond line: €100 ≈ 💶!\n" * 7


def reference(path):
    text = read_corpus(path)
    vocab = Vocab.from_text(text)
    return vocab, vocab.encode(text)


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 5, 7, 64, 1 << 20])
def test_ids_equal_the_in_memory_encoding_for_any_block_size(tmp_path, chunk_bytes):
    """Small blocks split multi-byte characters (2, 3 and 4 bytes) between blocks."""
    path = tmp_path / "t.txt"
    path.write_bytes(b"\xef\xbb\xbf" + TEXT.encode("utf-8"))  # a byte-order mark: dropped
    vocab, ids = reference(path)
    enc = encode_corpus(path, chunk_bytes=chunk_bytes)
    assert enc.vocab == vocab
    assert enc.ids.dtype == np.uint8
    np.testing.assert_array_equal(enc.ids, ids)
    assert enc.cache == cache_paths(str(path))[0]
    assert isinstance(np.load(enc.cache, mmap_mode="r"), np.memmap)


def test_cache_is_reused_and_invalidated_when_the_corpus_changes(tmp_path, monkeypatch):
    path = tmp_path / "t.txt"
    path.write_text("abcabc\n", encoding="utf-8")
    first = encode_corpus(path)
    assert isinstance(first.ids, np.memmap)

    import charnn.data.encoded as encoded

    def no_scan(*args):
        raise AssertionError("re-encoded a current cache")

    with monkeypatch.context() as m:
        m.setattr(encoded, "_scan", no_scan)
        again = encode_corpus(path)
    np.testing.assert_array_equal(again.ids, first.ids)

    path.write_text("xyz xyz zz\n", encoding="utf-8")  # new size and mtime
    changed = encode_corpus(path)
    assert changed.vocab.chars == sorted(set("xyz xyz zz\n"))
    np.testing.assert_array_equal(changed.ids, reference(path)[1])


def test_a_damaged_cache_is_rebuilt(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("hello world\n", encoding="utf-8")
    enc = encode_corpus(path)
    with open(enc.cache[: -len(".npy")] + ".json", "w") as f:
        f.write("{not json")
    np.testing.assert_array_equal(encode_corpus(path).ids, reference(path)[1])
    with open(enc.cache, "wb") as f:
        f.write(b"garbage")
    np.testing.assert_array_equal(encode_corpus(path).ids, reference(path)[1])


def test_an_unwritable_folder_falls_back_to_the_next_cache_folder_then_to_memory(tmp_path, monkeypatch):
    import charnn.data.encoded as encoded

    path = tmp_path / "t.txt"
    path.write_text("fallback text\n", encoding="utf-8")
    other = tmp_path / "cache" / "t.charnn-ids.npy"
    monkeypatch.setattr(encoded, "cache_paths", lambda corpus: ["/proc/no/such.npy", str(other)])
    enc = encode_corpus(path)
    assert enc.cache == str(other) and other.exists()
    monkeypatch.setattr(encoded, "cache_paths", lambda corpus: ["/proc/no/such.npy"])
    enc = encode_corpus(path)
    assert enc.cache is None
    np.testing.assert_array_equal(enc.ids, reference(path)[1])


def test_bad_corpora_give_the_read_corpus_messages(tmp_path):
    cases = {
        "empty.txt": b"",
        "bom-only.txt": b"\xef\xbb\xbf",
        "bad.txt": b"x" * 100 + b"\xff" + b"y" * 50,
        "truncated.txt": "abc€".encode("utf-8")[:-1],
        "bad-continuation.txt": b"ab\xe2\x82z",
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(CorpusError) as expected:
            read_corpus(path)
        for chunk_bytes in (1, 3, 64):
            with pytest.raises(CorpusError) as got:
                encode_corpus(path, chunk_bytes=chunk_bytes)
            assert str(got.value) == str(expected.value), (name, chunk_bytes)
    for missing in (tmp_path / "missing.txt",):  # (a folder is a corpus of its files: tests/test_inputs.py)
        with pytest.raises(CorpusError) as expected:
            read_corpus(missing)
        with pytest.raises(CorpusError) as got:
            encode_corpus(missing)
        assert str(got.value) == str(expected.value)


def test_ids_use_the_smallest_unsigned_type():
    assert [ids_dtype(v) for v in (2, 256, 257, 65536, 65537)] == [np.uint8, np.uint8, np.uint16, np.uint16, np.uint32]


def test_more_than_256_characters_encode_as_uint16(tmp_path):
    path = tmp_path / "wide.txt"
    path.write_text("".join(chr(0x400 + i) for i in range(300)) * 3, encoding="utf-8")
    enc = encode_corpus(path, chunk_bytes=100)
    assert enc.ids.dtype == np.uint16
    np.testing.assert_array_equal(enc.ids, reference(path)[1])


def test_encoding_is_streamed_not_held_in_memory(tmp_path):
    """A 12 MB corpus, 256 KB blocks: numpy's allocations (which tracemalloc sees) stay far below the
    corpus's size, and the ids come back as a memory map."""
    rng = np.random.default_rng(0)
    path = tmp_path / "big.txt"
    letters = np.frombuffer(b"abcdefghij klmnopqrst\n", dtype=np.uint8)
    path.write_bytes(letters[rng.integers(0, letters.size, 12_000_000)].tobytes())
    tracemalloc.start()
    try:
        enc = encode_corpus(path, chunk_bytes=1 << 18)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(enc.ids, np.memmap) and enc.ids.size == 12_000_000
    assert peak < 12_000_000 / 3, peak  # ~3.7 MB: one block's arrays and a flag per code point


def test_resuming_maps_the_corpus_ids_into_the_model_vocabulary(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("cab bad\n", encoding="utf-8")
    enc = encode_corpus(path)
    assert ids_in_vocab(enc, enc.vocab) is enc.ids
    wider = Vocab(sorted(set("cab bad\nxyz!")))
    np.testing.assert_array_equal(ids_in_vocab(enc, wider), wider.encode("cab bad\n"))
    with pytest.raises(VocabError, match="1 character"):
        ids_in_vocab(enc, Vocab(list(" \nabc")))
