"""Seeing inside a trained model: which cells track which features of a text, how saturated the
gates are, and how the loss went down in training.

    features   text_features(text): quote, bracket depth, line position, indentation, C comment,
               LaTeX math, newline, each (T,) (FEATURES describes them)
    cells      find_cells(activations, features): cells ranked by |Pearson correlation| per
               feature; gate_stats(activations): left/right-saturated fractions per gate
    page       page_data(model, text) -> the data of `charnn viz`'s page; write_page(path, data)
    plot       plot_logs(logs, out): training curves from <out>.log.jsonl files (matplotlib)

    import charnn
    model = charnn.load("linux")
    acts = model.activations(text)                    # per layer {"h", "tanh_c", "i", ...: (T, H)}
    found = charnn.viz.find_cells(acts, charnn.viz.text_features(text))
    found["brace"][0]                                 # FoundCell(feature, layer, cell, value, r)

Importing charnn.viz needs numpy only; plot_logs imports matplotlib when called.
"""
from .cells import FoundCell, GateStats, find_cells, gate_stats, pearson
from .features import FEATURES, text_features
from .page import page_data, render_page, write_page
from .plot import plot_logs

__all__ = ["FEATURES", "text_features", "FoundCell", "GateStats", "find_cells", "gate_stats", "pearson",
           "page_data", "render_page", "write_page", "plot_logs"]
