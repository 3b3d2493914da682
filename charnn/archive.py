"""The checkpoint file format: one .npz of plain arrays plus a JSON metadata string. Data, never
pickled code (read with allow_pickle=False).

Layout of the archive:
    meta           0-d unicode array: JSON {format, version, model config, vocab, ...}
    param/<key>    model parameters (see charnn.config for the keys)
    optim/<key>    optimizer state (training checkpoints only)
    state/<l>/<i>  recurrent state carried into the next chunk (training checkpoints only)
    ema/<key>      the running average of the weights (training with --ema only)
    live/<key>     the trained weights, when param/ holds their average (a best checkpoint the
                   average won) so that a resumed run continues from the weights it trained

Files are written atomically (charnn.files): a crash, Ctrl-C or full disk mid-write never leaves a
truncated checkpoint behind, and the previous file survives.
"""
from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib

import numpy as np

from .errors import CheckpointError
from .files import atomic_write
from .version import __version__

FORMAT = "charnn-checkpoint"
VERSION = 1


def write_checkpoint(path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write `arrays` and JSON `meta` to `path` (temp file + rename)."""
    path = os.fspath(path)
    meta = {**meta, "charnn": __version__}  # which charnn wrote it: named if a later one cannot read it
    try:
        with atomic_write(path) as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}") from None


MEMBER_PREFIXES = ("param/", "optim/", "state/", "ema/", "live/")
META_MAX_BYTES = 16 << 20  # the metadata JSON: far above any real vocabulary and history
DTYPE_KINDS = "fiub"  # float, signed and unsigned integers, bool: every array charnn writes


def _member_headers(path: str, z: zipfile.ZipFile) -> dict[str, tuple]:
    """{array name: (shape, dtype)} from each .npy member's header, read without its data, after
    checking that the data the header declares is what the member holds: nothing is allocated
    for a shape the file could not back, and no object (pickled) array is ever opened."""
    headers = {}
    for info in z.infolist():
        name = info.filename
        if not name.endswith(".npy"):
            raise CheckpointError(f"not a charnn checkpoint: {path} holds {name!r}, which is no array")
        key = name[: -len(".npy")]
        if key != "meta" and not key.startswith(MEMBER_PREFIXES):
            raise CheckpointError(f"not a charnn checkpoint: {path} holds an unexpected member {key!r}")
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(f"not a charnn checkpoint: {path}: member {key!r} is compressed (charnn writes them stored)")
        with z.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            header_bytes = f.tell()
        if dtype.hasobject:
            raise CheckpointError(f"refused checkpoint {path}: member {key!r} is an object array (pickled code), never loaded")
        if dtype.kind not in DTYPE_KINDS and not (key == "meta" and dtype.kind == "U"):
            raise CheckpointError(f"corrupt checkpoint {path}: member {key!r} has dtype {dtype}")
        declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if declared != info.file_size - header_bytes:
            raise CheckpointError(f"corrupt checkpoint {path}: member {key!r} declares {dtype}{shape} "
                                  f"({declared:,} bytes) but holds {info.file_size - header_bytes:,}")
        if key == "meta" and (shape != () or dtype.kind != "U" or declared > META_MAX_BYTES):
            raise CheckpointError(f"corrupt checkpoint {path}: the metadata is {dtype}{shape}, not one JSON string")
        headers[key] = (shape, dtype)
    return headers


def read_checkpoint(path) -> tuple[dict, dict[str, np.ndarray]]:
    """-> (meta, arrays). Raises CheckpointError, with one line, for a missing, corrupt, foreign or
    newer file; reads an array only after its header has been checked (_member_headers)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if os.path.isdir(path):
        raise CheckpointError(f"not a checkpoint: {path} is a folder")
    try:
        with zipfile.ZipFile(path) as z:
            headers = _member_headers(path, z)
            if "meta" not in headers:
                raise CheckpointError(f"not a charnn checkpoint (no metadata): {path}")
            arrays = {}
            for key in headers:
                with z.open(key + ".npy") as f:
                    arrays[key] = np.lib.format.read_array(f, allow_pickle=False)
    except CheckpointError:
        raise
    except zipfile.BadZipFile as e:
        raise CheckpointError(f"not a readable checkpoint: {path} is damaged or not a zip archive (.npz): {e}") from None
    except (OSError, ValueError, EOFError, KeyError, UnicodeDecodeError, SyntaxError, TypeError,
            OverflowError, NotImplementedError, RuntimeError, zlib.error, struct.error) as e:
        raise CheckpointError(f"not a readable checkpoint: {path} ({type(e).__name__}: {e})") from None
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError as e:
        raise CheckpointError(f"corrupt checkpoint metadata in {path}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"not a charnn checkpoint: {path}")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"corrupt checkpoint {path}: format version {version!r}")
    if version > VERSION:
        wrote = f" (written by charnn {meta['charnn']})" if isinstance(meta.get("charnn"), str) else ""
        raise CheckpointError(f"checkpoint {path} has format version {version}{wrote}; this charnn "
                              f"{__version__} reads version {VERSION}: upgrade charnn to load it")
    if version != VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {version}; this charnn reads version {VERSION}")
    return meta, arrays
