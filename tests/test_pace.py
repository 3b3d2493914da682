"""Training's thread count, step by step (threads.Pace, the numba backend's pace): all of numba's
threads while the machine is quiet, the faster of all and as many as are left free while other
tasks take CPUs, and the same numbers whichever count a step ran on."""
import numba
import numpy as np
import pytest

import charnn
import charnn.backend.numba as numba_backend
from charnn.backend import get_backend
from charnn.backend.numba import gemm, pace, threads
from charnn.backend.numba.threads import Pace


def steps(p, seconds, n_steps):
    """Run n_steps through Pace p, a step on n threads taking seconds(n, step): the counts used."""
    used = []
    for step in range(n_steps):
        n = p.next()
        used.append(n)
        p.record(n, seconds(n, step))
    return used


def test_a_quiet_machine_trains_on_every_thread_and_is_looked_at_rarely(monkeypatch):
    looks = []
    monkeypatch.setattr(threads, "free_cpus", lambda n, window: looks.append(n) or n)
    p = Pace(2)
    assert steps(p, lambda n, step: 0.05, 50) == [2] * 50
    assert looks == [2]  # once: the next look is half a second of wall time later
    assert p.choosers == {}  # quiet steps are not the busy spells' timings


def test_a_busy_machine_moves_to_one_thread_where_that_is_faster_and_says_so_once(monkeypatch):
    monkeypatch.setattr(threads, "free_cpus", lambda n, window: 1)
    said = []
    p = Pace(2, say=said.append)
    p.looks.every = 0.0
    used = steps(p, lambda n, step: {1: 0.11, 2: 0.18}[n], 40)  # as measured beside another training
    assert used[:3] == [2, 2, 1]  # the first step is not timed (compiling); one thread tried at the third
    assert set(used[3:]) == {1, 2} and used[3:].count(1) >= 30  # then one thread, two probed ever less often
    assert len(said) == 1 and "1 thread instead of 2" in said[0]


def test_a_busy_look_keeps_every_thread_where_one_is_slower(monkeypatch):
    monkeypatch.setattr(threads, "free_cpus", lambda n, window: 1)
    p = Pace(2, say=lambda text: pytest.fail("said it moved to one thread"))
    p.looks.every = 0.0
    used = steps(p, lambda n, step: {1: 0.10, 2: 0.06}[n], 40)  # a light load: two threads still win
    assert used.count(1) <= 4 and used[-3:] == [2] * 3  # one thread probed rarely: it costs 2/3 of a step more


def test_the_machine_going_quiet_gives_the_threads_back(monkeypatch):
    free = [1]
    monkeypatch.setattr(threads, "free_cpus", lambda n, window: free[0])
    p = Pace(2)
    p.looks.every = 0.0
    steps(p, lambda n, step: {1: 0.11, 2: 0.18}[n], 10)
    assert p.choosers[1].best == 1
    free[0] = 2
    assert steps(p, lambda n, step: 0.05, 5) == [2] * 5


def test_on_many_cores_the_other_count_is_what_other_tasks_leave_free(monkeypatch):
    monkeypatch.setattr(threads, "free_cpus", lambda n, window: 6)  # eight threads, two CPUs taken
    said = []
    p = Pace(8, say=said.append)
    p.looks.every = 0.0
    used = steps(p, lambda n, step: {6: 0.10, 8: 0.16}[n], 20)
    assert used[:3] == [8, 8, 6] and used[3:].count(6) >= 15  # six tried at the third step, then kept
    assert said == ["other tasks are using the CPUs: training runs on 6 threads instead of 8 while that is faster"]


def test_a_look_at_the_machine_stands_until_the_next_is_due(monkeypatch):
    looks = []
    monkeypatch.setattr(threads, "free_cpus", lambda n, window: looks.append((n, window)) or 1)
    looks_ = threads.Looks(window=0.02, every=3600.0)
    assert [looks_.free(2), looks_.free(2), looks_.free(4), looks_.free(2)] == [1, 1, 1, 1]
    assert looks == [(2, 0.02), (4, 0.02)]  # each count asked for looked at once, with the window
    looks_.every = 0.0
    looks_.free(2)
    assert looks == [(2, 0.02), (4, 0.02), (2, 0.02)]  # due again: a new look


def test_free_cpus_counts_the_cpus_other_processes_leave(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(threads, "own_running_threads", lambda: 2)
    monkeypatch.setattr(threads, "_runnable_tasks", lambda: 2 + 3)  # this process's two, three others'
    assert threads.free_cpus(8, window=0.0) == 5
    assert threads.free_cpus(4, window=0.0) == 4
    monkeypatch.setattr(threads, "_runnable_tasks", lambda: 2 + 20)
    assert threads.free_cpus(8, window=0.0) == 1  # this thread always has one


@pytest.fixture
def two_threads():
    if numba.get_num_threads() < 2:
        pytest.skip("numba runs on one thread here: no thread count to choose")


class Fixed:
    """A Pace that runs the steps on given thread counts, in turn, and keeps what it was told."""

    def __init__(self, counts):
        self.counts, self.step, self.told, self.inside = counts, 0, [], []

    def next(self):
        n = self.counts[self.step % len(self.counts)]
        self.step += 1
        return n

    def record(self, n, seconds):
        self.told.append(n)


def test_pace_runs_the_step_on_the_chosen_count_and_restores_it(two_threads, monkeypatch):
    before = numba.get_num_threads()
    fixed = Fixed([1, before])
    monkeypatch.setattr(numba_backend, "_PACE", [fixed])
    for expected in (1, before):
        with pace():
            assert numba.get_num_threads() == expected
        assert numba.get_num_threads() == before
    with pytest.raises(RuntimeError), pace():  # a step that fails is not timed
        raise RuntimeError("diverged")
    assert fixed.told == [1, before] and numba.get_num_threads() == before
    monkeypatch.setattr(numba_backend, "_PACE", [None])
    with pace():  # outside a training: as is
        assert numba.get_num_threads() == before


def test_training_gets_a_pace_with_the_tiles_only(two_threads, monkeypatch):
    from charnn.config import ModelConfig

    config = ModelConfig(model="lstm", vocab_size=10, hidden=16, layers=1, embed=4)
    for mode, expect in (("tiles", True), ("blas", False)):
        monkeypatch.setattr(gemm, "MODE", mode)
        with get_backend("numba").prepare(config, 4, 8):
            assert isinstance(numba_backend._PACE[0], Pace) == expect
        assert numba_backend._PACE[0] is None


@pytest.mark.parametrize("model", ["lstm", "gru", "rnn", "mlp"])
def test_steps_on_other_thread_counts_give_the_same_numbers(two_threads, model, corpus_file, tmp_path, monkeypatch):
    """Steps alternating between one thread and all give the bits of a run on all threads."""
    monkeypatch.setattr(gemm, "MODE", "tiles")
    runs, paces = {}, []
    for counts in ([numba.get_num_threads()], [1, numba.get_num_threads()]):
        monkeypatch.setattr(numba_backend, "Pace", lambda n, say=None, counts=counts: paces.append(Fixed(counts)) or paces[-1])
        result = charnn.train(charnn.TrainConfig(corpus=str(corpus_file), model=model, hidden=40, layers=2, embed=8,
                                                 context=4, batch_size=6, seq_len=12, steps=6, dropout=0.1,
                                                 out=str(tmp_path / f"{len(counts)}.npz"), eval_every=100,
                                                 backend="numba"))
        runs[len(counts)] = (result.losses, {k: v.copy() for k, v in result.model.params.items()})
    assert paces[1].told == [1, numba.get_num_threads()] * 3  # the six steps did alternate
    (losses_a, params_a), (losses_b, params_b) = runs[1], runs[2]
    assert losses_a == losses_b
    assert all(np.array_equal(params_a[k], params_b[k]) for k in params_a)
