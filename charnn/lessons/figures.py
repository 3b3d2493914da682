"""Figures for `charnn lesson NAME --plot FILE`, drawn with matplotlib, the optional extra
charnn[plot]. matplotlib is imported here only, and only when a figure is asked for: `import
charnn` and every lesson's run() work without it. No pyplot: a Figure object is drawn and saved
directly, so no global backend or interactive state is touched.
"""
from __future__ import annotations

import io
import os

from ..errors import CharnnError
from ..files import atomic_write

MISSING = "--plot needs matplotlib, which is not installed: pip install 'charnn[plot]' (or pip install matplotlib)"
# metadata that would make the same figure differ from run to run
NO_DATES = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CharnnError(MISSING) from None
    return Figure


def check(path) -> None:
    """Raise CharnnError (one line) if a figure cannot be written to `path`: matplotlib is missing,
    or the file's ending names no format it writes. Called before a lesson runs, so it fails fast."""
    _figure_class()
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
    supported = FigureCanvasBase.get_supported_filetypes()
    if fmt not in supported:
        raise CharnnError(f"cannot write a figure to {os.fspath(path)}: name a file ending in .png, .svg or .pdf "
                          f"(matplotlib writes {', '.join(sorted(supported))})")


def figure(width: float, height: float):
    """A new matplotlib Figure of width x height inches."""
    return _figure_class()(figsize=(width, height), layout="constrained")


def save(fig, path) -> None:
    """Write `fig` to `path` in the format its ending names, atomically (files.atomic_write)."""
    check(path)
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "charnn"}):  # fixed element ids: the same SVG every run
        fig.savefig(buf, format=fmt, dpi=120, metadata=NO_DATES.get(fmt))
    try:
        with atomic_write(path) as f:
            f.write(buf.getvalue())
    except OSError as e:
        raise CharnnError(f"cannot write the figure to {os.fspath(path)}: {e.strerror}") from None
