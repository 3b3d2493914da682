"""Checkpoints are data from strangers: loading one never runs code, never allocates more than the
file could back, and ends in a model or in one CheckpointError line, never another exception.

Targeted cases first (each refusal names what is wrong), then a property-based fuzzer (hypothesis)
that mutates a valid checkpoint: bytes flipped, the file truncated, array headers rewritten, JSON
fields removed or retyped, members added or dropped; under a memory bound (tracemalloc, which
sees numpy's allocations).
"""
import io
import json
import os
import tracemalloc
import zipfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="the fuzzer needs hypothesis: pip install -e '.[test]'")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import charnn  # noqa: E402
from charnn.archive import read_checkpoint  # noqa: E402
from charnn.errors import CharnnError, CheckpointError  # noqa: E402

MEMORY_BOUND = 64 << 20  # bytes: a tiny model's file is ~20 KB; an absurd header must not get near this


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """{member name: .npy bytes} of a valid, tiny training-free checkpoint."""
    vocab = charnn.Vocab(list("abcdef"))
    model = charnn.CharModel.create(charnn.ModelConfig(model="lstm", vocab_size=6, hidden=8, layers=1, embed=4),
                                    vocab, backend="numpy")
    path = tmp_path_factory.mktemp("ck") / "tiny.npz"
    model.save(str(path))
    with zipfile.ZipFile(path) as z:
        return {info.filename: z.read(info) for info in z.infolist()}


def npy(array, header=None) -> bytes:
    """An .npy member for `array`, or with `header` (shape/descr/fortran_order) written instead of
    the true one (the data stay the array's)."""
    f = io.BytesIO()
    if header is None:
        np.lib.format.write_array(f, array, allow_pickle=True)
        return f.getvalue()
    np.lib.format.write_array_header_1_0(f, header)
    f.write(np.ascontiguousarray(array).tobytes())
    return f.getvalue()


def write(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return str(path)


def meta_of(members) -> dict:
    return json.loads(str(np.lib.format.read_array(io.BytesIO(members["meta.npy"]))))


def with_meta(members, meta) -> dict:
    return {**members, "meta.npy": npy(np.array(json.dumps(meta)))}


def refused(path, match):
    with pytest.raises(CheckpointError, match=match) as e:
        charnn.load(path, backend="numpy")
    assert "\n" not in str(e.value)
    return str(e.value)


def test_the_valid_one_loads(tmp_path, members):
    model = charnn.load(write(tmp_path / "ok.npz", members), backend="numpy")
    assert model.config.hidden == 8 and len(model.vocab) == 6


def test_absurd_declared_shape_is_refused_before_anything_is_allocated(tmp_path, members):
    key = "param/layer0.Wh.npy"
    data = np.lib.format.read_array(io.BytesIO(members[key]))
    bad = {**members, key: npy(data, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})}
    tracemalloc.start()
    try:
        refused(write(tmp_path / "big.npz", bad), r"declares float32\(1000000000000,\) \(4,000,000,000,000 bytes\) but holds")
        assert tracemalloc.get_traced_memory()[1] < MEMORY_BOUND
    finally:
        tracemalloc.stop()


def test_object_arrays_are_never_opened(tmp_path, members):
    evil = np.array([{"a": 1}, None], dtype=object)
    refused(write(tmp_path / "obj.npz", {**members, "param/extra.npy": npy(evil)}), "object array")


@pytest.mark.parametrize("change, match", [
    (lambda a: a.astype(np.int32), "parameter layer0.Wh is int32"),
    (lambda a: a.astype(np.float16), "parameter layer0.Wh is float16"),
    (lambda a: a[:-1], r"expected float32\(8, 32\)"),
    (lambda a: np.where(a > 0, np.nan, a).astype(np.float32), "NaN or inf"),
    (lambda a: np.full_like(a, np.inf), "NaN or inf"),
])
def test_bad_parameters(tmp_path, members, change, match):
    key = "param/layer0.Wh.npy"
    bad = {**members, key: npy(change(np.lib.format.read_array(io.BytesIO(members[key]))))}
    refused(write(tmp_path / "bad.npz", bad), match)


def test_missing_and_extra_members(tmp_path, members):
    missing = {k: v for k, v in members.items() if k != "param/head.W.npy"}
    refused(write(tmp_path / "m.npz", missing), "parameter head.W is missing")
    extra = {**members, "param/layer9.W.npy": npy(np.zeros(3, np.float32))}
    refused(write(tmp_path / "e.npz", extra), "param/layer9.W is not a parameter")
    stray = {**members, "readme.txt": b"hello"}
    refused(write(tmp_path / "s.npz", stray), "which is no array")
    odd = {**members, "notes.npy": npy(np.zeros(2))}
    refused(write(tmp_path / "o.npz", odd), "unexpected member 'notes'")
    no_meta = {k: v for k, v in members.items() if k != "meta.npy"}
    refused(write(tmp_path / "n.npz", no_meta), "no metadata")


@pytest.mark.parametrize("meta_bytes, match", [
    (npy(np.array("not json {")), "corrupt checkpoint metadata"),
    (npy(np.array(json.dumps([1, 2]))), "not a charnn checkpoint"),
    (npy(np.zeros(3, np.float32)), "the metadata is float32"),
])
def test_metadata_that_is_not_the_expected_json(tmp_path, members, meta_bytes, match):
    refused(write(tmp_path / "meta.npz", {**members, "meta.npy": meta_bytes}), match)


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.pop("vocab"), "bad model description"),
    (lambda m: m.update(vocab="abcdef"), "not a list of characters"),
    (lambda m: m.update(vocab=[1, 2, 3, 4, 5, 6]), "not a list of characters"),
    (lambda m: m["model"].update(hidden="8"), "hidden must be a positive integer"),
    (lambda m: m["model"].update(hidden=True), "true/false"),
    (lambda m: m["model"].update(colour="red"), "bad model description"),
    (lambda m: m.update(model=[1]), "not a JSON object"),
    (lambda m: m.update(version="1"), "format version '1'"),
    (lambda m: m["model"].update(vocab_size=7), "vocab_size 7 but 6 characters"),
    (lambda m: m["model"].update(layers=10**12), "1,000,000,000,000 layers described"),
])
def test_metadata_fields_removed_or_retyped(tmp_path, members, edit, match):
    meta = meta_of(members)
    edit(meta)
    refused(write(tmp_path / "f.npz", with_meta(members, meta)), match)


def test_a_newer_format_says_which_charnn_wrote_it(tmp_path, members):
    meta = {**meta_of(members), "version": 2, "charnn": "9.0.0"}
    message = refused(write(tmp_path / "new.npz", with_meta(members, meta)), "format version 2")
    assert "written by charnn 9.0.0" in message and "upgrade charnn" in message


def test_files_that_are_not_checkpoints(tmp_path, members):
    text = tmp_path / "t.npz"
    text.write_text("hello")
    refused(str(text), "damaged or not a zip archive")
    refused(str(tmp_path), "is a folder")
    refused(write(tmp_path / "c.npz", members, zipfile.ZIP_DEFLATED), "is compressed")
    pickled = tmp_path / "p.npy"
    np.save(pickled, np.array([None], dtype=object), allow_pickle=True)
    refused(str(pickled), "damaged or not a zip archive")


def test_every_checkpoint_write_names_the_charnn_that_wrote_it(tmp_path, members):
    assert meta_of(members)["charnn"] == charnn.__version__


# ---------------------------------------------------------------- the fuzzer
def _mutations(members):
    names = sorted(members)
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w") as z:
        for name in names:
            z.writestr(name, members[name])
    whole = blob.getvalue()
    json_edits = st.sampled_from(["drop", "null", "number", "string", "list", "huge"])
    return st.one_of(
        st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, len(whole) - 1), st.integers(1, 255)), min_size=1, max_size=8)),
        st.tuples(st.just("truncate"), st.integers(0, len(whole) - 1)),
        st.tuples(st.just("header"), st.sampled_from(names),
                  st.lists(st.one_of(st.integers(-3, 10**13), st.integers(0, 64)), max_size=4),
                  st.sampled_from(["<f4", "<f8", "<i8", "|u1", "|b1", "<U3", "|O", "<c8", "|V4", ">f4"])),
        st.tuples(st.just("json"), st.sampled_from(["format", "version", "model", "vocab", "hidden", "layers", "embed", "model_type"]), json_edits),
        st.tuples(st.just("member"), st.sampled_from(names), st.booleans()),
    ), whole


def _apply(mutation, members, whole) -> bytes:
    kind = mutation[0]
    if kind == "flip":
        data = bytearray(whole)
        for pos, xor in mutation[1]:
            data[pos] ^= xor
        return bytes(data)
    if kind == "truncate":
        return whole[: mutation[1]]
    out = dict(members)
    if kind == "header":
        _, name, shape, descr = mutation
        data = np.lib.format.read_array(io.BytesIO(members[name]))
        f = io.BytesIO()
        np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
        out[name] = f.getvalue() + np.ascontiguousarray(data).tobytes()
    elif kind == "json":
        _, field, edit = mutation
        meta = meta_of(members)
        target = meta["model"] if field in ("hidden", "layers", "embed", "model_type") else meta
        field = "model" if field == "model_type" else field
        if edit == "drop":
            target.pop(field, None)
        else:
            target[field] = {"null": None, "number": 3.5, "string": "x", "list": [1, "a"], "huge": 10**12}[edit]
        out["meta.npy"] = npy(np.array(json.dumps(meta)))
    elif kind == "member":
        _, name, drop = mutation
        if drop:
            out.pop(name)
        else:
            out[name.replace(".npy", "2.npy")] = members[name]
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w") as z:
        for name, data in out.items():
            z.writestr(name, data)
    return blob.getvalue()


@pytest.fixture(scope="module")
def fuzz_inputs(members):
    return _mutations(members)


def test_fuzzed_checkpoints_load_or_fail_cleanly(tmp_path_factory, members, fuzz_inputs):
    strategy, whole = fuzz_inputs
    folder = tmp_path_factory.mktemp("fuzz")

    @settings(max_examples=int(os.environ.get("CHARNN_FUZZ_EXAMPLES", 1000)), deadline=None, derandomize=os.environ.get("CHARNN_FUZZ_RANDOM") is None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(strategy)
    def check(mutation):
        path = folder / "fuzzed.npz"
        path.write_bytes(_apply(mutation, members, whole))
        tracemalloc.start()
        try:
            try:
                model = charnn.load(str(path), backend="numpy")
            except CharnnError as e:
                assert "\n" not in str(e)
            else:
                assert isinstance(model, charnn.CharModel)
            assert tracemalloc.get_traced_memory()[1] < MEMORY_BOUND
        finally:
            tracemalloc.stop()

    check()
