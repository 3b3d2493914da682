"""The page `charnn viz` writes: page_data gathers what the model computes over a text (the
Python API's own results: model.activations, next_char_probs, find_cells, gate_stats) into one
JSON-ready dict, and write_page puts it into the template page.html, a single self-contained file
(inline CSS and JavaScript, no network) that only draws it.

Shapes: T characters of text, L layers, H cells per layer, V vocabulary.

Size: the cell values are the bulk, T * H * L per value (tanh_c and h for an LSTM), so they are
stored as int8 (steps of scale/127, scale = max(1, max |value|) of the layer) in base64, 1.33 bytes
a value: 2,000 characters of an LSTM 2x256 make a 2.9 MB page. Every other number is rounded to
3 decimals.
"""
from __future__ import annotations

import base64
import importlib.resources
import json
import os

import numpy as np

from ..errors import CharnnError
from ..files import atomic_write
from .cells import LEFT, RIGHT, STATES, find_cells, gate_stats
from .features import FEATURES, text_features

GUESSES = 5  # next-character guesses shown under the pointer
TOP_CELLS = 5  # cells listed per feature
STRONG = 0.5  # |r| from which a found cell is shown in bold (and `charnn viz` lists it)
VALUE_NAMES = {"tanh_c": "tanh(c)", "h": "h"}
GATE_NAMES = {"i": "input gate i", "f": "forget gate f", "o": "output gate o", "r": "reset gate r", "z": "update gate z"}


def _int8_base64(values: np.ndarray) -> tuple[str, float]:
    """values (T, H) -> base64 of int8 (H, T) (cell-major: one cell's values are contiguous), scale."""
    scale = max(1.0, float(np.abs(values).max()))
    q = np.rint(values.T.astype(np.float64) * (127.0 / scale)).astype(np.int8)  # (H, T)
    return base64.b64encode(np.ascontiguousarray(q).tobytes()).decode("ascii"), scale


def _r3(x) -> list:
    """A float array as a list rounded to 3 decimals; whole numbers as ints (a smaller page)."""
    a = np.round(np.asarray(x, dtype=np.float64), 3)
    return [int(v) if v == int(v) else float(v) for v in a.tolist()]


def page_data(model, text: str, *, title: str = "", source: str = "", layer: int | None = None,
              cell: int | None = None, value: str | None = None) -> dict:
    """Everything the page shows for `model` over `text`, computed by the numpy reference:

        cells      per value (LSTM tanh_c and h; others h) and layer, the (T, H) values (int8, base64)
        top_ids, top_p   the model's GUESSES likeliest next characters after each position, (T, GUESSES)
        surprisal  -log2 p(text[t] | text[:t]) in bits; None for the first character
        features   text_features(text); found: find_cells(...) per feature, best first
        gates      gate_stats(...) per layer: for each sigmoid gate, the left/right-saturated fractions
        start      the cell shown first: `layer`/`cell`/`value`, by default the best cell found

    Raises CharnnError for a layer or cell the model does not have, or a text under 2 characters."""
    if len(text) < 2:
        raise CharnnError("need at least 2 characters of text to correlate cells with")
    L, H = model.config.layers, model.config.hidden
    for name, given, n in (("layer", layer, L), ("cell", cell, H)):
        if given is not None and not 0 <= given < n:
            raise CharnnError(f"{name} {given} does not exist: the model has {n} {name}s (0 to {n - 1})")
    ref = model.with_backend("numpy")
    acts = ref.activations(text)  # [{name: (T, H)}] per layer
    values = [v for v in STATES if v in acts[0]]
    if value is not None and value not in values:
        raise CharnnError(f"value {value!r} is not one of this model's: {', '.join(values)}")
    probs = ref.next_char_probs(text)  # (T, V)

    features = text_features(text)
    found = find_cells(acts, features, top=TOP_CELLS, values=tuple(values))
    ids = model.vocab.encode(text, "text")
    bits = -np.log2(np.maximum(probs[np.arange(len(ids) - 1), ids[1:]], 1e-45))  # (T-1,)
    top = np.argsort(-probs, axis=1, kind="stable")[:, :GUESSES]  # (T, GUESSES)

    ranked = sorted((c for cs in found.values() for c in cs if layer is None or c.layer == layer), key=lambda c: -abs(c.r))
    if cell is None and ranked:
        start = {"layer": ranked[0].layer, "cell": ranked[0].cell, "value": value or ranked[0].value}
    else:
        start = {"layer": layer or 0, "cell": cell or 0, "value": value or values[0]}

    packed = {v: [_int8_base64(a[v]) for a in acts] for v in values}
    c = model.config
    n_params = sum(p.size for p in model.params.values())
    return {
        "title": title or f"{c.model} {c.layers}x{c.hidden}",
        "subtitle": (f"{c.model} {c.layers}x{c.hidden}, embed {c.embed}, {n_params:,} parameters; "
                     f"{len(text):,} characters{' of ' + source if source else ''}; "
                     f"{float(bits.mean()):.3f} bits/char"),
        "text": text,
        "vocab": list(model.vocab.chars),
        "layers": L,
        "hidden": H,
        "values": values,
        "value_names": {v: VALUE_NAMES[v] for v in values},
        "cells": {v: [b for b, _ in packed[v]] for v in values},
        "scale": {v: [s for _, s in packed[v]] for v in values},
        "surprisal": [None] + _r3(bits),
        "top_ids": top.tolist(),
        "top_p": [_r3(row) for row in np.take_along_axis(probs, top, axis=1)],
        "feature_order": list(FEATURES),
        "feature_names": dict(FEATURES),
        "features": {k: _r3(f) for k, f in features.items()},
        "found": {k: [{"layer": f.layer, "cell": f.cell, "value": f.value, "r": round(f.r, 3)} for f in cs]
                  for k, cs in found.items()},
        "gates": [{g: {"left": _r3(s.left), "right": _r3(s.right)} for g, s in layer_stats.items()}
                  for layer_stats in gate_stats(acts)],
        "gate_names": GATE_NAMES,
        "left": LEFT,
        "right": RIGHT,
        "start": start,
    }


def render_page(data: dict) -> str:
    """The HTML of the page for page_data's `data`: the template with the data inlined as JSON."""
    template = importlib.resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
    # "</" would end the <script> element early: JSON allows "\/" for "/"
    blob = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return template.replace("__DATA__", blob)


def write_page(path: str | os.PathLike, data: dict) -> int:
    """Write the page for `data` to `path` (atomically); -> its size in bytes."""
    html = render_page(data).encode("utf-8")
    try:
        with atomic_write(path) as f:
            f.write(html)
    except OSError as e:
        raise CharnnError(f"cannot write {os.fspath(path)}: {e.strerror or e}") from None
    return len(html)
