"""Loading models from checkpoints, and finding checkpoints by name.

A checkpoint is named by a path, by the name of a shipped one (`shakespeare`, `latex`, `linux`,
in the repository's top-level checkpoints/ folder, installed as the package data charnn.shipped),
or by nothing: the one `charnn train` wrote last (recorded in
checkpoints/.latest), else the shipped `shakespeare`.
"""
from __future__ import annotations

import importlib.resources
import os
import pathlib

import numpy as np

from .archive import read_checkpoint
from .backend import DEFAULT_BACKEND
from .config import ModelConfig
from .data.text import Vocab
from .errors import CharnnError, CheckpointError
from .model import CharModel

LATEST = os.path.join("checkpoints", ".latest")  # path of the checkpoint `charnn train` wrote last
DEFAULT_SHIPPED = "shakespeare"


def shipped_folder() -> str:
    """Where the shipped checkpoints are: the top-level checkpoints/ folder of the checkout charnn
    runs from (or is installed editable from), else the package data `charnn.shipped` that a
    wheel or `pip install .` carries (found through importlib.resources)."""
    checkout = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "checkpoints")
    if os.path.isfile(os.path.join(checkout, DEFAULT_SHIPPED + ".npz")):
        return checkout
    try:
        default = importlib.resources.files("charnn.shipped").joinpath(DEFAULT_SHIPPED + ".npz")
    except (ModuleNotFoundError, TypeError):
        return checkout
    return str(default.parent) if isinstance(default, pathlib.Path) and default.is_file() else checkout


SHIPPED = shipped_folder()


def model_from_checkpoint(meta: dict, arrays: dict[str, np.ndarray], path="checkpoint", backend: str = DEFAULT_BACKEND) -> CharModel:
    """Rebuild the model, checking the description's types and that every parameter is present
    with the configured shape and a float dtype, finite, and that there are no others."""
    try:
        chars, described = meta["vocab"], meta["model"]
        if not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise TypeError("the vocabulary is not a list of characters")
        if not isinstance(described, dict) or not all(isinstance(k, str) for k in described):
            raise TypeError("the model is not a JSON object")
        if any(isinstance(v, bool) for v in described.values()):
            raise TypeError("a model size is true/false")
        vocab = Vocab(chars)
        config = ModelConfig(**described).validate()
    except (KeyError, TypeError, ValueError, CharnnError) as e:
        raise CheckpointError(f"incompatible checkpoint {path}: bad model description ({e})") from None
    if config.vocab_size != len(vocab):
        raise CheckpointError(f"corrupt checkpoint {path}: vocab_size {config.vocab_size} but {len(vocab)} characters")
    if config.layers > len(arrays):  # before listing the shapes: a layer count from a stranger may be 10**12
        raise CheckpointError(f"corrupt checkpoint {path}: {config.layers:,} layers described, {len(arrays)} arrays held")
    shapes = config.param_shapes()
    extra = sorted(k for k in arrays if k.startswith("param/") and k[len("param/"):] not in shapes)
    if extra:
        raise CheckpointError(f"corrupt checkpoint {path}: {extra[0]} is not a parameter of this {config.model}")
    params = {}
    for key, shape in shapes.items():
        a = arrays.get(f"param/{key}")
        if a is None:
            raise CheckpointError(f"corrupt checkpoint {path}: parameter {key} is missing")
        if a.shape != shape or a.dtype not in (np.float32, np.float64):
            raise CheckpointError(f"corrupt checkpoint {path}: parameter {key} is {a.dtype}{a.shape}, expected float32{shape}")
        if not np.isfinite(a).all():
            raise CheckpointError(f"corrupt checkpoint {path}: parameter {key} holds NaN or inf")
        params[key] = np.ascontiguousarray(a)
    return CharModel(config, vocab, params, meta, backend)


def load(path=None, backend: str = DEFAULT_BACKEND, note=None) -> CharModel:
    """Load a model from a checkpoint written by `charnn train` or `CharModel.save`: a path, a
    shipped name ("shakespeare"), or None for the one `charnn train` wrote last (resolve_checkpoint).
    backend: "numba" (fused kernels, the default) or "numpy" (the reference implementation).
    note: receives a line when None had to fall back (the last checkpoint is gone)."""
    path = resolve_checkpoint(path, note)
    meta, arrays = read_checkpoint(path)
    return model_from_checkpoint(meta, arrays, path, backend)


def resolve_checkpoint(name=None, note=None) -> str:
    """A path as given; a bare name (`shakespeare`) that is no file here is a shipped checkpoint;
    nothing: the checkpoint `charnn train` wrote last, else (none, or it was deleted since; `note`
    is told) the shipped `shakespeare`."""
    if name:
        name = os.fspath(name)
        shipped = os.path.join(SHIPPED, name + ".npz")
        if not os.path.exists(name) and os.sep not in name and os.path.exists(shipped):
            return shipped
        return name
    try:
        with open(LATEST, encoding="utf-8") as f:
            latest = f.read().strip()
    except OSError:
        latest = ""
    if latest and os.path.exists(latest):
        return latest
    default = os.path.join(SHIPPED, DEFAULT_SHIPPED + ".npz")
    if latest:
        if not os.path.exists(default):
            raise CharnnError(f"the last checkpoint trained here, {latest}, is gone (named in {LATEST}): "
                              "pass --checkpoint PATH, or train again")
        if note is not None:
            note(f"the last checkpoint trained here, {latest}, is gone: using the shipped {DEFAULT_SHIPPED}")
    if os.path.exists(default):
        return default
    raise CharnnError("no checkpoint given and none trained here yet: run `charnn train CORPUS` first, or pass --checkpoint PATH")


def remember_latest(path) -> None:
    """Record `path` as the checkpoint written last, so load() and a plain `charnn sample` find it."""
    try:
        os.makedirs(os.path.dirname(LATEST), exist_ok=True)
        with open(LATEST, "w", encoding="utf-8") as f:
            f.write(os.path.abspath(path) + "\n")
    except OSError:
        pass  # only a convenience; naming the checkpoint still works
