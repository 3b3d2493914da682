"""Text for the terminal: aligned tables, decision regions drawn with characters, blocks side by side.
ASCII only, so a lesson prints the same in any terminal and any encoding."""
from __future__ import annotations

import numpy as np


def table(rows: list[list[str]], right: set[int] = frozenset(), indent: int = 2) -> list[str]:
    """Rows of cells -> lines with every column padded to its widest cell (columns in `right`
    aligned to the right, the others to the left)."""
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(len(r) for r in rows))]
    lines = []
    for r in rows:
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
        lines.append((" " * indent + "  ".join(cells)).rstrip())
    return lines


def regions(p: np.ndarray, marks: dict[tuple[int, int], str], on: str = "#", off: str = ".") -> list[str]:
    """A map of a classifier: p (rows, cols) its P(y = 1) on a grid whose first row is the top
    -> one line per row, `on` where p >= 0.5, `off` elsewhere, `marks` {(row, col): char} on top."""
    grid = np.where(p >= 0.5, on, off)  # (rows, cols)
    for (r, c), ch in marks.items():
        grid[r, c] = ch
    return ["".join(row) for row in grid]


def side_by_side(blocks: list[list[str]], titles: list[str], gap: int = 4, indent: int = 2) -> list[str]:
    """Blocks of lines printed next to each other, each under its title."""
    blocks = [[t] + b for t, b in zip(titles, blocks)]
    widths = [max(len(l) for l in b) for b in blocks]
    height = max(len(b) for b in blocks)
    lines = []
    for i in range(height):
        cells = [(b[i] if i < len(b) else "").ljust(w) for b, w in zip(blocks, widths)]
        lines.append((" " * indent + (" " * gap).join(cells)).rstrip())
    return lines


def number(x, fmt: str = "{:7.3f}") -> str:
    """x in the format, a value that rounds to zero printed without a minus sign."""
    text = fmt.format(float(x))
    return fmt.format(0.0) if float(text) == 0 else text


def vector(v, fmt: str = "{:7.3f}") -> str:
    """[ 1.000 -2.000 ...]: an array's entries in one fixed format (see number)."""
    return "[" + " ".join(number(x, fmt) for x in np.ravel(v)) + "]"
