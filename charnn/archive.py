"""The checkpoint file format: one .npz of plain arrays plus a JSON metadata string. Data, never
pickled code (read with allow_pickle=False).

Layout of the archive:
    meta           0-d unicode array: JSON {format, version, model config, vocab, ...}
    param/<key>    model parameters (see charnn.config for the keys)
    optim/<key>    optimizer state (training checkpoints only)
    state/<l>/<i>  recurrent state carried into the next chunk (training checkpoints only)

Files are written atomically (charnn.files): a crash, Ctrl-C or full disk mid-write never leaves a
truncated checkpoint behind, and the previous file survives.
"""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from .errors import CheckpointError
from .files import atomic_write

FORMAT = "charnn-checkpoint"
VERSION = 1


def write_checkpoint(path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write `arrays` and JSON `meta` to `path` (temp file + rename)."""
    path = os.fspath(path)
    try:
        with atomic_write(path) as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}") from None


def read_checkpoint(path) -> tuple[dict, dict[str, np.ndarray]]:
    """-> (meta, arrays). Raises CheckpointError for a missing, corrupt or foreign file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"not a readable checkpoint: {path} ({type(e).__name__}: {e})") from None
    if not isinstance(arrays, dict) or "meta" not in arrays:
        raise CheckpointError(f"not a charnn checkpoint (no metadata): {path}")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError as e:
        raise CheckpointError(f"corrupt checkpoint metadata in {path}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"not a charnn checkpoint: {path}")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {meta.get('version')}; this charnn reads version {VERSION}"
        )
    return meta, arrays
