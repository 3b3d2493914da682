import numpy as np
import pytest

from charnn.data.batches import BatchStreams, eval_chunks, split_train_val
from charnn.data.text import Vocab, read_corpus
from charnn.errors import CorpusError, VocabError


def test_read_corpus_errors(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        read_corpus(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(CorpusError, match="empty"):
        read_corpus(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("héllo".encode("utf-8") + b" caf\xe9 ok")
    with pytest.raises(CorpusError, match=r"not valid UTF-8.*0xe9 at offset 10"):
        read_corpus(tmp_path / "latin1.txt")
    with pytest.raises(CorpusError, match="directory"):
        read_corpus(tmp_path)


def test_read_corpus_strips_bom_and_keeps_unicode(tmp_path):
    (tmp_path / "bom.txt").write_bytes("\ufeffÅngström — naïve".encode("utf-8"))
    assert read_corpus(tmp_path / "bom.txt") == "Ångström — naïve"


def test_vocab_sorted_round_trip_and_unknown_characters():
    v = Vocab.from_text("hello, wörld")
    assert v.chars == sorted(set("hello, wörld"))
    ids = v.encode("wörld, hello")
    assert ids.dtype == np.int32 and v.decode(ids) == "wörld, hello"
    with pytest.raises(VocabError, match=r"2 character\(s\).*'Z'"):
        v.encode("hello Zé Z", "prime text")


def test_split_is_contiguous():
    ids = np.arange(1000)
    train, val = split_train_val(ids, 0.1)
    assert np.array_equal(train, np.arange(900)) and np.array_equal(val, np.arange(900, 1000))


def test_batch_streams_continue_each_stream_between_chunks():
    ids = np.arange(1000)
    s = BatchStreams(ids, batch_size=4, seq_len=10)
    assert s.L == 249 and s.chunks_per_epoch == 24
    b0, b1 = s.batch(0), s.batch(1)
    assert np.array_equal(b0.x[:, 0], [0, 249, 498, 747])  # four contiguous streams
    assert np.array_equal(b0.y, b0.x + 1)  # targets are the next character
    assert np.array_equal(b1.x[:, 0], b0.x[:, -1] + 1)  # chunk k+1 continues chunk k
    assert b0.x.flags.c_contiguous


def test_batch_streams_too_short():
    with pytest.raises(CorpusError, match="one batch needs 321"):
        BatchStreams(np.arange(300), batch_size=4, seq_len=80)


@pytest.mark.parametrize("n,streams,T", [(1000, 7, 10), (50, 4, 64), (2, 3, 5), (97, 1, 8), (500, 32, 13)])
def test_eval_chunks_score_every_target_once(n, streams, T):
    ids = np.arange(n)
    seen = []
    for batch, reset in eval_chunks(ids, streams, T):
        assert np.array_equal(batch.y, batch.x + 1)
        seen.extend(batch.y.ravel().tolist())
    assert sorted(seen) == list(range(1, n))
