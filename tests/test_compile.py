"""`charnn compile`'s plan: every kernel family compiled once, in groups that may run in child
processes at once without two of them saving different signatures of one kernel to numba's cache.

The whole compile into an empty cache, in processes, runs in tests/test_fast_sampling.py
(test_a_cold_sample_runs_the_reference_and_charnn_compile_makes_later_runs_compiled)."""
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

import charnn.compile as comp
from charnn.backend import get_backend
from charnn.cli import main
from charnn.errors import CharnnError


def test_the_phases_run_every_unit_once_and_the_families_are_made_of_units():
    grouped = [unit for phase in comp.PHASES for group in phase for unit in group]
    assert sorted(grouped) == sorted(comp.UNITS)
    assert sorted(u for units in comp.FAMILIES.values() for u in units) == sorted(comp.UNITS)


def test_the_training_units_together_run_the_whole_training_warm_up(monkeypatch):
    """Split by cell, the units take every training step warm_up_training takes, no more."""
    steps = []
    monkeypatch.setattr(comp, "train_step", lambda model, *a, **k: steps.append(model.config))
    comp.warm_up_training("numpy")
    whole, steps[:] = list(steps), []
    for unit in comp.FAMILIES["train"]:
        comp.UNITS[unit]("numpy")
    assert sorted(map(repr, steps)) == sorted(map(repr, whole)) and {c.model for c in whole} == set(comp.MODELS)


@pytest.mark.parametrize("groups, expected", [
    ([{"k": {"(a,)"}}, {"k": {"(a,)"}}], []),  # one signature: one cache entry, whoever writes it
    ([{"k": {"(a,)"}}, {"k": {"(b,)"}}], ["k"]),
    ([{"k": {"(a,)"}}, {"k": {"(a,)", "(b,)"}}], ["k"]),
    ([{"k": {"(a,)", "(b,)"}, "j": {"(a,)"}}, {"j": {"(a,)"}}], []),  # k's two in one process, in turn
    ([{"k": {"(a,)"}}, {}, {"j": {"(b,)"}, "k": {"(c,)"}}], ["k"]),
])
def test_kernels_compiled_at_once_clash_only_with_two_signatures(groups, expected):
    assert comp.clashes(groups) == expected


def test_families_are_marked_compiled_after_all_their_units(monkeypatch):
    said = []
    backend = get_backend("numpy")._replace(done=lambda task, model=None: said.append(f"done {task}"))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("started a process"))
    comp.compile_kernels(said.append, backend=backend, processes=1)
    done = [line for line in said if line.startswith("done")]
    assert sorted(done) == ["done sample", "done sample-batch", "done train"]
    rnn = next(i for i, line in enumerate(said) if line.startswith("  train-rnn: "))
    assert said.index("done train") > rnn > said.index("done sample-batch")
    assert said[0] == "compiling the kernels (once per install), in this process ..."


def test_groups_compile_in_child_processes_it_waits_for(monkeypatch):
    said, started, real = [], [], subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(subprocess, "Popen", popen)
    comp.compile_kernels(said.append, backend="numpy", processes=2)
    assert len(started) == sum(map(len, comp.PHASES)) and all(p.returncode == 0 for p in started)
    assert said[0] == "compiling the kernels (once per install), 2 processes at a time ..."
    groups = {line.split(":")[0].strip() for line in said[1:5]}
    assert groups == {", ".join(group) for phase in comp.PHASES for group in phase}


def test_a_failing_child_is_one_line(monkeypatch):
    monkeypatch.setattr(comp, "PHASES", ((("no-such-unit",),),))
    with pytest.raises(CharnnError, match=r"compiling no-such-unit in a child process failed: KeyError: 'no-such-unit'"):
        comp.compile_kernels(backend="numpy", processes=2)
    result = CliRunner().invoke(main, ["compile", "--processes", "2"])
    assert result.exit_code == 1 and result.output.splitlines()[-1].startswith("Error: compiling no-such-unit")
    assert "Traceback" not in result.output


def test_a_compiling_child_ends_when_its_parent_goes():
    child = subprocess.Popen([sys.executable, "-c", "import sys, threading, time; from charnn.compile import "
                              "exit_with_parent; threading.Thread(target=exit_with_parent, args=(sys.stdin,), "
                              "daemon=True).start(); time.sleep(60)"], stdin=subprocess.PIPE)
    child.stdin.close()  # as when the parent ends, however it ends
    assert child.wait(timeout=30) == 1


RECORD = """
import json, numpy as np
from charnn.backend.numba import kernels
from charnn.backend.numba.compile import recording
with recording() as compiled:
    kernels._lookup_rows(np.zeros((1, 1), np.int64), np.zeros((1, 2), np.float32), 0, np.zeros((1, 2), np.float32), 0, 1)
print(json.dumps(sorted(compiled)))
"""


def test_the_numba_backend_records_what_it_compiles_and_not_what_it_loads(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))

    def run():
        done = subprocess.run([sys.executable, "-c", RECORD], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run() == '["charnn.backend.numba.kernels._lookup_rows"]'
    assert run() == "[]"  # loaded from the cache: nothing compiled, nothing saved
