"""Cells found automatically, and gate saturation statistics.

Shapes: T characters, H cells per layer, N columns (cells), K features.

find_cells ranks every cell of every layer by |Pearson correlation| between its value over the
text and each feature of the text (charnn.viz.features), the way Karpathy, Johnson & Fei-Fei
(2015) found their quote, line-length and bracket cells by eye. gate_stats gives, per layer, the
fraction of characters at which each gate is left-saturated (< 0.1, nearly closed) or
right-saturated (> 0.9, nearly open): the scatter of their Figure 3.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import CharnnError

STATES = ("tanh_c", "h")  # the values a cell is ranked by: LSTM tanh(c) and h; other models only h
GATES = ("i", "f", "o", "r", "z")  # the sigmoid gates (LSTM i, f, o; GRU r, z)
LEFT, RIGHT = 0.1, 0.9  # a gate below LEFT is left-saturated, above RIGHT right-saturated (the paper's)


class FoundCell(NamedTuple):
    feature: str
    layer: int
    cell: int
    value: str  # which array: "tanh_c" or "h"
    r: float  # Pearson correlation of the cell with the feature over the text, in [-1, 1]


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Correlation of every column of a (T, N) with every column of b (T, K) -> (N, K).

    A constant column correlates with nothing: its entries are 0 (not NaN)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0] or a.shape[0] < 2:
        raise CharnnError(f"pearson needs (T, N) and (T, K) arrays with T >= 2, got {a.shape} and {b.shape}")
    da = a - a.mean(axis=0)  # (T, N)
    db = b - b.mean(axis=0)  # (T, K)
    na = np.sqrt((da * da).sum(axis=0))  # (N,)
    nb = np.sqrt((db * db).sum(axis=0))  # (K,)
    # constant: tested on the values, since a - mean of a constant column may be rounding noise
    na[np.ptp(a, axis=0) == 0] = np.inf
    nb[np.ptp(b, axis=0) == 0] = np.inf
    return np.clip((da.T @ db) / np.outer(na, nb), -1.0, 1.0)  # (N, K)


def find_cells(activations: list[dict[str, np.ndarray]], features: dict[str, np.ndarray], top: int = 5,
               values: tuple[str, ...] = STATES) -> dict[str, list[FoundCell]]:
    """For each feature, the `top` cells with the largest |correlation|, best first.

    activations: model.activations(text), one dict per layer of (T, H) arrays; features: {name: (T,)},
    e.g. charnn.viz.text_features(text). A cell is (layer, index); it is scored by each of `values`
    its layer has (LSTM tanh_c and h, the others h) and listed once, under the better one. A feature
    constant over the text (nothing to correlate with) gets an empty list."""
    names = list(features)
    found: dict[str, list[FoundCell]] = {k: [] for k in names}
    if not names:
        return found
    F = np.stack([np.asarray(features[k], dtype=np.float64) for k in names], axis=1)  # (T, K)
    for layer, acts in enumerate(activations):
        scored = [(value, pearson(acts[value], F)) for value in values if value in acts]  # [(value, (H, K))]
        for k, name in enumerate(names):
            if np.ptp(F[:, k]) == 0:
                continue
            r = np.stack([s[:, k] for _, s in scored])  # (values, H)
            pick = np.abs(r).argmax(axis=0)  # (H,) the better value of each cell
            best = np.abs(r).max(axis=0)  # (H,)
            for c in np.argsort(-best, kind="stable")[:top]:
                found[name].append(FoundCell(name, layer, int(c), scored[pick[c]][0], float(r[pick[c], c])))
    return {name: sorted(cells, key=lambda f: -abs(f.r))[:top] for name, cells in found.items()}


class GateStats(NamedTuple):
    left: np.ndarray  # (H,) fraction of characters at which the gate is < LEFT
    right: np.ndarray  # (H,) fraction at which it is > RIGHT


def gate_stats(activations: list[dict[str, np.ndarray]], left: float = LEFT, right: float = RIGHT) -> list[dict[str, GateStats]]:
    """Per layer, {gate: GateStats} for each sigmoid gate it has (LSTM i, f, o; GRU r, z; none for
    the RNN and MLP)."""
    return [{g: GateStats((acts[g] < left).mean(axis=0), (acts[g] > right).mean(axis=0)) for g in GATES if g in acts}
            for acts in activations]
