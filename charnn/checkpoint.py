"""Checkpoints: one .npz of plain arrays plus a JSON metadata string. Data, never pickled code.

Layout of the archive:
    meta           0-d unicode array: JSON {format, version, model config, vocab, ...}
    param/<key>    model parameters (see model.py for the keys)
    optim/<key>    optimizer state (training checkpoints only)
    state/<l>/<i>  recurrent state carried into the next chunk (training checkpoints only)

Files are written to a temporary file in the target directory and renamed over the target,
so a crash or Ctrl-C mid-write never leaves a truncated checkpoint behind.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

from .data import Vocab
from .errors import CharnnError, CheckpointError
from .model import DEFAULT_BACKEND, CharModel, ModelConfig

FORMAT = "charnn-checkpoint"
VERSION = 1


def write_checkpoint(path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write `arrays` and JSON `meta` to `path` (temp file + rename)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".charnn-", suffix=".npz.tmp")
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror}") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}") from None
        raise


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


def model_meta(model: CharModel) -> dict:
    return {"format": FORMAT, "version": VERSION, "model": model.config.to_dict(), "vocab": model.vocab.chars}


def model_arrays(model: CharModel) -> dict[str, np.ndarray]:
    return {f"param/{k}": v for k, v in model.params.items()}


# what a model-only checkpoint keeps of how it was trained (not the optimizer, RNG or carried state)
TRAINING_SUMMARY = ("config", "corpus", "step", "epoch", "val_loss", "best_val", "command")


def save_model(path, model: CharModel, extra_meta: dict | None = None) -> None:
    """Write the model alone: parameters, config, vocabulary, and a summary of its training."""
    meta = model_meta(model)
    if "train" in model.meta or "trained" in model.meta:
        summary = model.meta.get("trained") or model.meta["train"]
        meta["trained"] = {k: summary[k] for k in TRAINING_SUMMARY if k in summary}
    meta.update(extra_meta or {})
    write_checkpoint(path, meta, model_arrays(model))


def model_from_checkpoint(meta: dict, arrays: dict[str, np.ndarray], path="checkpoint", backend: str = DEFAULT_BACKEND) -> CharModel:
    """Rebuild the model, checking every parameter is present with the configured shape."""
    try:
        vocab = Vocab(meta["vocab"])
        config = ModelConfig(**meta["model"]).validate()
    except (KeyError, TypeError, CharnnError) as e:
        raise CheckpointError(f"incompatible checkpoint {path}: bad model description ({e})") from None
    if config.vocab_size != len(vocab):
        raise CheckpointError(f"corrupt checkpoint {path}: vocab_size {config.vocab_size} but {len(vocab)} characters")
    params = {}
    for key, shape in config.param_shapes().items():
        a = arrays.get(f"param/{key}")
        if a is None:
            raise CheckpointError(f"corrupt checkpoint {path}: parameter {key} is missing")
        if a.shape != shape or a.dtype.kind != "f":
            raise CheckpointError(f"corrupt checkpoint {path}: parameter {key} is {a.dtype}{a.shape}, expected float{shape}")
        if not np.isfinite(a).all():
            raise CheckpointError(f"corrupt checkpoint {path}: parameter {key} holds NaN or inf")
        params[key] = np.ascontiguousarray(a)
    return CharModel(config, vocab, params, meta, backend)


def load(path, backend: str = DEFAULT_BACKEND) -> CharModel:
    """Load a model from a checkpoint written by `charnn train` or `CharModel.save`.
    backend: "numba" (fused kernels, the default) or "numpy" (the reference implementation)."""
    meta, arrays = read_checkpoint(path)
    return model_from_checkpoint(meta, arrays, path, backend)
