"""Simple features of a text, one number per character, to correlate cells with (find_cells).

Each feature is the state after reading character t (what a model has seen when it is at t),
as a float array (T,) for a text of T characters:

    quote       1 inside double quotes: from an opening " up to, not including, its closing ";
                a quote after a backslash (\\") does not count
    depth       bracket depth: open ( [ { minus closed ) ] } so far (never below 0)
    paren       the same for ( ) alone            brace   for { } alone
    column      position within the line: characters since the last newline (0 at the newline)
    indent      indentation of the current line so far: its leading spaces and tabs, a tab
                counting as 8 columns (the Linux kernel's); it holds for the rest of the line
    comment     1 inside a C comment, /* ... */ or // to the end of the line, from the character
                that opens it to the one that closes it; comment markers inside C strings and
                character literals do not count
    math        1 inside $...$ or $$...$$ in LaTeX, delimiters included; \\$ is a dollar sign, and
                a blank line closes an unclosed $ (math cannot span paragraphs)
    newline     1 at a newline: the model has just read "\\n" and is guessing the next line's start

A feature that is constant over a text (no comments in Shakespeare) says nothing there;
find_cells skips it.
"""
from __future__ import annotations

import numpy as np

FEATURES = {  # name -> what it measures, as the page and the README show it
    "quote": 'inside "double quotes"',
    "depth": "bracket depth: ( [ { open",
    "paren": "parenthesis depth: ( open",
    "brace": "brace depth: { open",
    "column": "position within the line",
    "indent": "indentation of the line (tab = 8)",
    "comment": "inside a C comment /* */ or //",
    "math": "inside $...$ (LaTeX math)",
    "newline": "just read a newline",
}
TAB = 8  # columns a tab counts for in the indentation (the kernel's tab width)

OPEN, CLOSE = "([{", ")]}"


def text_features(text: str) -> dict[str, np.ndarray]:
    """text (T characters) -> {name: (T,) float64} for every name in FEATURES."""
    return {"quote": quote(text), "depth": depth(text, OPEN, CLOSE), "paren": depth(text, "(", ")"),
            "brace": depth(text, "{", "}"), "column": column(text), "indent": indent(text),
            "comment": c_comment(text), "math": latex_math(text), "newline": newline(text)}


def _escaped(text: str, t: int) -> bool:
    """Whether text[t] follows an odd number of backslashes."""
    n = 0
    while t - n - 1 >= 0 and text[t - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def quote(text: str) -> np.ndarray:
    out, inside = np.zeros(len(text)), False
    for t, ch in enumerate(text):
        if ch == '"' and not _escaped(text, t):
            inside = not inside
        out[t] = inside
    return out


def depth(text: str, opening: str, closing: str) -> np.ndarray:
    out, d = np.zeros(len(text)), 0
    for t, ch in enumerate(text):
        if ch in opening:
            d += 1
        elif ch in closing:
            d = max(d - 1, 0)
        out[t] = d
    return out


def column(text: str) -> np.ndarray:
    out, col = np.zeros(len(text)), 0
    for t, ch in enumerate(text):
        col = 0 if ch == "\n" else col + 1
        out[t] = col
    return out


def indent(text: str) -> np.ndarray:
    out, width, leading = np.zeros(len(text)), 0, True
    for t, ch in enumerate(text):
        if ch == "\n":
            width, leading = 0, True
        elif leading and ch in " \t":
            width = (width // TAB + 1) * TAB if ch == "\t" else width + 1
        else:
            leading = False
        out[t] = width
    return out


def c_comment(text: str) -> np.ndarray:
    """A small C lexer: code, "string", 'char', // line comment, /* block comment */."""
    out = np.zeros(len(text))
    state, t, n = "code", 0, len(text)
    while t < n:
        ch, nxt = text[t], text[t + 1] if t + 1 < n else ""
        if state == "code":
            if ch == "/" and nxt in ("*", "/"):
                state = "block" if nxt == "*" else "line"
                out[t : t + 2] = 1
                t += 2
                continue
            if ch in "\"'":
                state = ch
        elif state == "block":
            out[t] = 1
            if ch == "*" and nxt == "/":
                out[t + 1] = 1
                state, t = "code", t + 2
                continue
        elif state == "line":
            if ch == "\n":
                state = "code"
            else:
                out[t] = 1
        else:  # inside a string or character literal, which ends at its quote or the line's end
            if ch == "\\" and nxt != "\n":
                t += 2
                continue
            if ch == state or ch == "\n":
                state = "code"
        t += 1
    return out


def latex_math(text: str) -> np.ndarray:
    out = np.zeros(len(text))
    inside, t, n = None, 0, len(text)  # inside: the delimiter that opened the math ("$" or "$$")
    while t < n:
        if text[t] == "$" and not _escaped(text, t):
            delim = "$$" if inside != "$" and text.startswith("$$", t) else "$"  # inside $: a $ closes
            out[t : t + len(delim)] = 1
            inside = None if inside == delim else inside or delim
            t += len(delim)
            continue
        if inside and text.startswith("\n\n", t):
            inside = None
        out[t] = inside is not None
        t += 1
    return out


def newline(text: str) -> np.ndarray:
    return (np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32) == ord("\n")).astype(np.float64)
