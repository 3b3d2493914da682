"""The lecture "Neural Networks basics", runnable: each idea as a short, seeded lesson computed with
charnn's own layers, activations, losses and optimizers, so a lesson teaches the real code
(`charnn lesson` lists them; `charnn lesson NAME` runs one).

Every lesson is a module with

    NAME, SUMMARY           its name on the command line and its line in the list
    run() -> result         the computation; returns its numbers as a NamedTuple and prints nothing
    report(result) -> str   the narration of those numbers
    plot(result, path)      its figure, for the lessons that have one (matplotlib: charnn[plot])

    from charnn import lessons
    result = lessons.xor.run()
    print(lessons.xor.report(result))
    result.fits["XOR"].correct          # 2 of 4: no line separates XOR

The pieces the lecture needs that charnn's models do not (the multiply, add, exp and reciprocal
gates; logistic regression) are in gates.py and logistic.py, written in the same forward/backward
style and built from charnn.nn where they can be.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from ..errors import CharnnError
from . import activations, bptt, chain_rule, fancy, jacobian, neuron, sgd, softmax, xor


class Lesson(NamedTuple):
    name: str
    summary: str
    run: Callable[[], NamedTuple]
    report: Callable[[NamedTuple], str]
    plot: Callable[[NamedTuple, str], None] | None  # None: the lesson has no figure


LESSONS = {m.NAME: Lesson(m.NAME, m.SUMMARY, m.run, m.report, getattr(m, "plot", None))
           for m in (xor, chain_rule, neuron, jacobian, activations, softmax, sgd, bptt, fancy)}  # the lecture's order


def get(name: str) -> Lesson:
    """The lesson called `name`; CharnnError naming the choices if there is none."""
    if name not in LESSONS:
        raise CharnnError(f"no lesson {name!r}; choose from {', '.join(LESSONS)}")
    return LESSONS[name]


def with_figures() -> list[str]:
    """The names of the lessons that draw a figure with --plot."""
    return [name for name, lesson in LESSONS.items() if lesson.plot is not None]


__all__ = ["LESSONS", "Lesson", "get", "with_figures", "activations", "bptt", "chain_rule", "fancy", "jacobian",
           "neuron", "sgd", "softmax", "xor"]
