"""The sample outputs printed in README.md, and the commands that print them.

README shows `charnn sample` output in two forms: fenced blocks of `$ charnn sample ...` lines,
each followed by its output (default checkpoint: the shipped `shakespeare`), and the demo blocks
introduced by a line "`charnn sample --checkpoint NAME ...`:" (" (first lines)": only as many lines
as shown). Sampling is bit-exact only on the machine and libraries of the golden set (see
tests/golden.py), so the README is rewritten together with it when a shipped model changes:

    python tests/readme_samples.py --write     # then review `git diff README.md`
"""
from __future__ import annotations

import os
import re
import shlex
import sys
from typing import NamedTuple

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(os.path.dirname(HERE), "README.md")
DEMO = re.compile(r"^`(charnn sample --checkpoint \S+ .*)`( \(first lines\))?:$")
FENCE = "```"


class Shown(NamedTuple):
    """One command's output as README shows it: lines[start:end] of the file."""

    command: str
    start: int
    end: int
    head_only: bool  # only the first (end - start) lines are shown


def _trailing_blanks(lines: list[str]) -> int:
    n = 0
    while n < len(lines) and lines[-1 - n] == "":
        n += 1
    return n


def shown_samples(lines: list[str]) -> list[Shown]:
    """Every sample output README shows, in order."""
    found, i = [], 0
    while i < len(lines):
        m = DEMO.match(lines[i])
        if m and i + 2 < len(lines) and lines[i + 1] == "" and lines[i + 2].startswith(FENCE):
            end = lines.index(FENCE, i + 3)
            found.append(Shown(m.group(1), i + 3, end, bool(m.group(2))))
            i = end + 1
        elif lines[i] == FENCE and i + 1 < len(lines) and lines[i + 1].startswith("$ charnn sample"):
            i += 1
            while lines[i] != FENCE:
                end = i + 1
                while not (lines[end] == FENCE or lines[end].startswith("$ ")):
                    end += 1
                found.append(Shown(lines[i][2:], i + 1, end, False))
                i = end
            i += 1
        else:
            i += 1
    return found


def run_sample(command: str) -> str:
    """What `command` (a `charnn sample` line, shell comments allowed) prints, on the shipped
    `shakespeare` unless it names a checkpoint."""
    from click.testing import CliRunner

    from charnn.cli import main

    args = shlex.split(command, comments=True)[1:]
    if "--checkpoint" not in args and "-c" not in args:
        args += ["--checkpoint", "shakespeare"]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    if r.exit_code != 0:
        raise RuntimeError(f"{command!r} exited {r.exit_code}: {r.output}")
    return r.stdout


def as_shown(shown: Shown, output: str, old: list[str]) -> list[str]:
    """output as README lines: cut to the shown lines (head_only), or with the old block's
    trailing blank lines (the fence or the next command follows)."""
    lines = output.rstrip("\n").split("\n")
    if shown.head_only:
        return lines[: len(old)]
    return lines + [""] * _trailing_blanks(old)


def write() -> int:
    with open(README, encoding="utf-8") as f:
        lines = f.read().split("\n")
    changed = 0
    for shown in reversed(shown_samples(lines)):  # from the end: earlier line numbers stay valid
        old = lines[shown.start : shown.end]
        new = as_shown(shown, run_sample(shown.command), old)
        changed += new != old
        lines[shown.start : shown.end] = new
    with open(README, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return changed


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/readme_samples.py --write")
    print(f"{write()} sample outputs changed in {README}")
