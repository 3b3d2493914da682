"""The numba sampling kernels against their numpy reference, charnn.sampling (model.step + pick):
the same characters for the same seed, the same logits within float32 rounding, and the block-wise
uniform draws the same stream as one draw per character.

The models are tiny (H of 10 or 12, so the vector panels end in partial vectors and the two-thread
layout pads H) and every parameter is perturbed, so no bias is zero and every path is exercised.
"""
import os
from functools import partial
from types import SimpleNamespace

import numba
import numpy as np
import pytest
from numba import njit, prange

from charnn import sampling
from charnn.nn.activations import ACTIVATIONS
from charnn.data.text import Vocab
from charnn import CharModel, ModelConfig
from charnn.backend.numba import compile as numba_compile
from charnn.backend.numba.kernels import ACTIVATION_CODES, activate_row
from charnn.backend.numba.kernels import atomic_add, claim, pick_kernel
from charnn.backend.numba import sampler as sampler_module
from charnn.backend.numba import kernels as K
from charnn.backend.numba.sampler import (BLOCK, FIRST_BLOCK, chooser_for, padded_width, prepare, prepare_batch,
                                          recurrent_net, sample_batch_ids, sample_ids, warm_up)
from charnn.sampling import pick
from charnn.backend.numba.threads import Chooser, free_cpus


def sample_numba(model, prime_ids, length, temperature=1.0, top_k=None, argmax=False, rng=None, threads=None,
                 top_p=None):
    """The compiled sampler's characters, one at a time (as charnn.sampling yields them)."""
    for ids in sample_ids(model, prime_ids, length, temperature, top_k, argmax, rng, threads, top_p=top_p):
        yield from (model.vocab.chars[i] for i in ids.tolist())


def step_logits(model, ids, threads: int = 1) -> np.ndarray:
    """The kernel's logits (V,) after stepping ids (M,) from the initial state."""
    kernel, nets, state = prepare(model, threads)
    feed = np.asarray(ids, dtype=np.int64).reshape(-1)
    return kernel(nets[max(nets)], *state, feed, np.zeros(1), 1.0, 0, 1.0, True, np.empty(1, dtype=np.int64))

VOCAB = Vocab(sorted(set("abcdefgh ijk.\n")))  # has a newline: generation starts from it
VOCAB_NO_NEWLINE = Vocab(list("abcdefg"))  # no newline: the first character is drawn from the rng

MODELS = (
    [("rnn", act, 8, 1 + i % 2, 12) for i, act in enumerate(ACTIVATIONS)]
    + [("rnn", "tanh", 0, 2, 10), ("lstm", "tanh", 8, 2, 12), ("lstm", "tanh", 0, 1, 10),
       ("gru", "tanh", 8, 1, 12), ("gru", "tanh", 0, 2, 10)]
    + [("mlp", act, 5, 2 - i % 2, 12) for i, act in enumerate(ACTIVATIONS)]
)


def spec_id(spec) -> str:
    kind, activation, embed, layers, hidden = spec
    return f"{kind}-{activation}-E{embed}-L{layers}-H{hidden}"


# (temperature, top_k, argmax, prime, top_p)
OPTIONS = [(1.0, None, False, "", None), (0.6, 3, False, "ab", None), (1.4, None, False, "k.a", None),
           (1.0, 20, False, "c", None), (0.8, 1, False, "", None), (1.0, None, True, "ba", None),
           (1.0, None, False, "ab", 0.9), (1.5, 6, False, "", 0.5), (0.7, None, False, "k", 0.2)]


def make_model(kind, activation, embed, layers, hidden, vocab=VOCAB, seed=0):
    config = ModelConfig(model=kind, vocab_size=len(vocab), hidden=hidden, layers=layers, embed=embed,
                         activation=activation, context=3)
    model = CharModel.create(config, vocab, seed=seed, backend="numpy")  # the reference, throughout
    rng = np.random.default_rng(seed + 100)
    for p in model.params.values():  # no zero biases, livelier dynamics than the initialisation
        p += rng.normal(0.0, 0.4, p.shape).astype(p.dtype)
    return model


def generate_with(sampler, model, *args, **kwargs) -> str:
    """model.generate with the reference loop (sampling.reference_blocks) swapped for sampler (which
    yields characters, called as sample_numba): the same validation, seeding, choice of the first
    character and stop strings as the numpy path."""
    original = sampling.reference_blocks
    stoi = model.vocab.stoi

    def blocks(model, warm_ids, first_ids, length, draw, rngs, alive, progress=None):
        feed = np.append(warm_ids, first_ids[0])
        for ch in sampler(model, feed, length, draw.temperature, draw.top_k, draw.argmax, rngs[0], top_p=draw.top_p):
            yield np.array([[stoi[ch]]])

    sampling.reference_blocks = blocks
    try:
        return "".join(model.generate(*args, **kwargs))
    finally:
        sampling.reference_blocks = original


@pytest.mark.parametrize("spec", MODELS, ids=spec_id)
def test_kernel_samples_the_numpy_sequence(spec):
    model = make_model(*spec)
    for temperature, top_k, argmax, prime, top_p in OPTIONS:
        for seed in (0, 1):
            kwargs = dict(temperature=temperature, prime=prime, top_k=top_k, argmax=argmax, seed=seed, top_p=top_p)
            expected = "".join(model.generate(150, **kwargs))
            assert generate_with(sample_numba, model, 150, **kwargs) == expected, kwargs


@pytest.mark.parametrize("spec", [s for s in MODELS if s[0] != "mlp" and s[1] in ("tanh", "sigmoid")],
                         ids=spec_id)
def test_hidden_units_split_over_two_threads_sample_the_same_sequence(spec):
    """Two unit blocks (H padded to whole cache lines; padded units feed only zero weights). Short:
    on a loaded machine each parallel region can wait for a time slice."""
    model = make_model(*spec)
    kwargs = dict(temperature=0.9, prime="ab", top_k=5, seed=2, top_p=0.9)
    expected = "".join(model.generate(60, **kwargs))
    assert generate_with(partial(sample_numba, threads=2), model, 60, **kwargs) == expected


@pytest.mark.parametrize("kind", ["lstm", "mlp"])
def test_first_character_drawn_from_the_rng_without_newline(kind):
    model = make_model(kind, "tanh", 4, 1, 12, vocab=VOCAB_NO_NEWLINE)
    for seed in range(4):
        expected = "".join(model.generate(100, seed=seed))
        assert generate_with(sample_numba, model, 100, seed=seed) == expected


@pytest.mark.parametrize("spec", MODELS, ids=spec_id)
def test_kernel_logits_match_model_step(spec):
    model = make_model(*spec)
    ids = np.random.default_rng(3).integers(0, len(VOCAB), size=7)
    state = model.initial_state(1)
    for i in ids:
        logits, state = model.step(np.array([i]), state)
    expected = logits[0]
    for threads in (1, 2):
        got = step_logits(model, ids, threads=threads)
        assert got.shape == expected.shape and got.dtype == np.float32
        err = np.max(np.abs(got - expected)) / np.max(np.abs(expected))
        assert err < 1e-5, f"threads={threads}: relative error {err:.1e}"


class FixedDraw:
    """A generator whose every uniform is u."""

    def __init__(self, u):
        self.u = u

    def random(self):
        return self.u


def test_kernel_pick_equals_pick_with_top_k_top_p_and_ties():
    """pick_kernel against sampling.pick at 25 uniforms across [0, 1) each (so over the whole
    cumulative distribution), on logits with many ties (small integers) and without, for
    combinations of temperature, top-k and top-p."""
    rng = np.random.default_rng(8)
    V = 14
    z, top, cdf = np.empty(V), np.empty(V), np.empty(V)
    for case in range(300):
        logits = (rng.integers(-3, 3, V) if case % 2 else rng.normal(0, 2, V)).astype(np.float32)
        temperature = (1.0, 0.5, 2.0)[case % 3]
        top_k = (None, 1, 3, 14, 20)[case % 5]
        top_p = (None, 0.3, 0.7, 0.95, 1.0, 0.05)[(case // 5) % 6]
        k, p = (top_k if top_k is not None and top_k < V else 0), (1.0 if top_p is None else top_p)
        for u in np.linspace(0, 1, 25, endpoint=False) + rng.random() / 25:
            expected = pick(logits, FixedDraw(u), temperature, top_k, False, top_p)
            got = pick_kernel(logits, u, temperature, k, p, False, z, top, cdf)
            assert got == expected, (logits, temperature, top_k, top_p, u)


BATCH_SPECS = [s for s in MODELS if s[1] in ("tanh", "relu")]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("spec", BATCH_SPECS, ids=spec_id)
def test_batch_streams_are_the_single_runs(spec, threads):
    """sample_batch_ids: stream s gives sample_ids' ids with its own generator, whether the streams
    run on one thread or in groups on several; a stream set not alive stops there and the others
    go on unchanged."""
    model = make_model(*spec)
    warm, first = np.array([1, 2, 3]), np.array([4, 0, 4, 7])
    draw = dict(temperature=0.9, top_k=8, top_p=0.9)
    alive, got = np.ones(4, dtype=bool), [[] for _ in range(4)]
    rngs = [np.random.default_rng(20 + s) for s in range(4)]
    for n, block in enumerate(sample_batch_ids(model, warm, first, 150, rngs=rngs, alive=alive, threads=threads, **draw)):
        assert block.shape[0] == 4 and (block[2] < 0).all() == (n > 1)
        for s in range(4):
            got[s].extend(block[s][block[s] >= 0].tolist())
        if n == 1:
            alive[2] = False  # stream 2 ends after its second block
    for s in range(4):
        length = FIRST_BLOCK + BLOCK if s == 2 else 150
        ids = sample_ids(model, np.append(warm, first[s]), length, rng=np.random.default_rng(20 + s), **draw)
        assert got[s] == np.concatenate(list(ids)).tolist(), s


@pytest.mark.parametrize("parts", [1, 2, 3, 4])
@pytest.mark.parametrize("spec", [s for s in BATCH_SPECS if s[0] != "mlp"], ids=spec_id)
def test_batch_kernel_steps_every_stream_as_the_batch_1_kernel_bit_for_bit(spec, parts):
    """Alone or in groups of streams on parallel threads (4 groups of 3 streams: one is empty)."""
    model = make_model(*spec)
    batch = prepare_batch(model)
    first = np.array([3, 1, 5], dtype=np.int64)
    warm_up(batch.kernel, batch.net, batch.state, np.array([1, 2, 0, 6]))
    h, c = (np.ascontiguousarray(np.repeat(a[:, None], 3, axis=1)) for a in batch.state)  # (L, S, Hp)
    out = np.empty((3, 20), dtype=np.int64)
    batch.batch_kernel(batch.net, h, c, first, np.zeros((3, 20)), 1.0, 0, 1.0, True, out, parts)
    kernel, nets, _ = prepare(model, 1)
    for s in range(3):
        h1, c1 = batch.state[0].copy(), batch.state[1].copy()
        out1 = np.empty(20, dtype=np.int64)
        kernel(nets[1], h1, c1, first[s : s + 1], np.zeros(20), 1.0, 0, 1.0, True, out1)
        assert np.array_equal(out[s], out1)
        assert np.array_equal(h[:, s], h1) and np.array_equal(c[:, s], c1)  # the same state, bit for bit


@pytest.mark.parametrize("blocks,parts", [(2, 1), (2, 2), (3, 2), (3, 3), (4, 3)])
@pytest.mark.parametrize("spec", [s for s in BATCH_SPECS if s[0] != "mlp"], ids=spec_id)
def test_threads_sharing_unit_blocks_step_every_stream_as_the_batch_1_kernel_bit_for_bit(spec, blocks, parts):
    """The batch kernel on a layout of NB unit blocks, its layers' blocks shared by parts <= NB
    threads (3 threads on 4 blocks: one thread takes two), the head and the draws by groups of
    streams (5 streams in 3 or 4 groups: some of one stream, some of two)."""
    model = make_model(*spec)
    Hp = padded_width(model.config.hidden, blocks)
    net = recurrent_net(model, blocks, Hp)
    first, S, n = np.array([3, 1, 5, 0, 7], dtype=np.int64), 5, 24
    u = np.random.default_rng(3).random((S, n))
    state = (np.zeros((model.config.layers, Hp), np.float32), np.zeros((model.config.layers, Hp), np.float32))
    warm_up(K.recurrent_sample_kernel, net, state, np.array([1, 2, 0, 6]))
    h, c = (np.ascontiguousarray(np.repeat(a[:, None], S, axis=1)) for a in state)  # (L, S, Hp)
    out = np.empty((S, n), dtype=np.int64)
    K.recurrent_batch_sample_kernel(net, h, c, first, u, 0.9, 6, 0.95, False, out, parts)
    one = recurrent_net(model, 1, Hp)
    for s in range(S):
        h1, c1 = state[0].copy(), state[1].copy()
        out1 = np.empty(n, dtype=np.int64)
        K.recurrent_sample_kernel(one, h1, c1, first[s : s + 1], u[s], 0.9, 6, 0.95, False, out1)
        assert np.array_equal(out[s], out1), s
        assert np.array_equal(h[:, s], h1) and np.array_equal(c[:, s], c1)  # the same state, bit for bit


def test_batch_sampling_shares_unit_blocks_up_to_their_count_and_groups_streams_past_it(monkeypatch):
    """Batch.layout: 2..NB threads share the blocks of the NB-block layout, whatever the number of
    live streams; one thread, or more threads than blocks, take the one-block layout, in at most
    one group of streams a thread. Through sample_batch_ids, each way gives each stream's ids."""
    monkeypatch.setattr(sampler_module, "thread_counts", lambda model, threads=None: (1, 2))  # NB = 2
    model = make_model("lstm", "tanh", 8, 2, 12)
    batch = prepare_batch(model)
    assert batch.blocks == 2 and batch.blocks_net.Wh.shape[1] == 2 and batch.net.Wh.shape[1] == 1
    assert batch.blocks_net.Wh.shape[3] == batch.net.Wh.shape[3]  # one padded width Hp
    assert batch.layout(2, 1) == (batch.blocks_net, 2)
    assert batch.layout(1, 4)[1] == 1 and batch.layout(1, 4)[0] is batch.net
    assert batch.layout(3, 4) == (batch.net, 3) and batch.layout(3, 2) == (batch.net, 2)
    assert prepare_batch(make_model("mlp", "tanh", 5, 2, 12)).blocks == 1

    def run(threads):
        rngs = [np.random.default_rng(s) for s in range(3)]
        blocks = sample_batch_ids(model, np.array([1, 2]), np.array([0, 3, 5]), 300, rngs=rngs, threads=threads,
                                  temperature=0.8, top_p=0.9)
        return np.concatenate(list(blocks), axis=1)

    assert np.array_equal(run(2), run(1)) and np.array_equal(run(3), run(1))


def test_block_draws_are_the_stream_of_single_draws():
    singles = np.random.default_rng(7)
    expected = np.array([singles.random() for _ in range(FIRST_BLOCK + 3 * BLOCK + 5)])
    blocks = np.random.default_rng(7)
    got = np.concatenate([blocks.random(n) for n in (FIRST_BLOCK, BLOCK, BLOCK, BLOCK, 5)])
    assert np.array_equal(got, expected)
    assert blocks.bit_generator.state == singles.bit_generator.state


def test_sample_ids_streams_blocks_and_leaves_the_rng_where_the_numpy_path_does():
    model = make_model("gru", "tanh", 8, 2, 12)
    prime = np.array([1, 2], dtype=np.int32)
    length = FIRST_BLOCK + 2 * BLOCK + 3
    rng_numpy, rng_kernel = np.random.default_rng(5), np.random.default_rng(5)
    steps = sampling.reference_steps(model, prime[:-1], prime[-1:], length, sampling.Draw(), [rng_numpy], np.ones(1, bool))
    expected = "".join(VOCAB.chars[int(ids[0])] for _, ids, _ in steps)
    blocks = list(sample_ids(model, prime, length, rng=rng_kernel))
    assert [len(b) for b in blocks] == [FIRST_BLOCK, BLOCK, BLOCK, 3]
    assert "".join(VOCAB.chars[i] for i in np.concatenate(blocks)) == expected
    assert rng_kernel.bit_generator.state == rng_numpy.bit_generator.state
    assert list(sample_ids(model, prime, 0, rng=rng_kernel)) == []
    endless = sample_ids(model, prime, None, rng=np.random.default_rng(5))  # None: without end
    assert np.array_equal(np.concatenate([next(endless) for _ in range(4)])[:length], np.concatenate(blocks))


def test_argmax_consumes_no_draws():
    model = make_model("lstm", "tanh", 8, 1, 12)
    rng = np.random.default_rng(9)
    before = rng.bit_generator.state
    "".join(sample_numba(model, np.array([0]), 50, argmax=True, rng=rng))
    assert rng.bit_generator.state == before


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activations_match_charnn_activations(name):
    """The kernels' one activation dispatcher (training and sampling) against charnn.nn.activations."""
    a = np.concatenate([np.linspace(-12, 12, 20001), [0.0, -0.0, 1e-30, -1e-30, 0.625, -0.625, 88.0, -88.0]])
    a = a.astype(np.float32)
    h = np.empty_like(a)
    activate_row(a, h, ACTIVATION_CODES[name])
    expected = ACTIVATIONS[name].forward(a)
    assert h.dtype == np.float32
    # the kernels' tanh is within 3.6e-7 relative (tests/test_kernels.py), so 0.5 + 0.5 tanh(a / 2)
    # is within ~2e-7 absolute where the sigmoid is near 0
    assert np.allclose(h, expected, rtol=4e-7, atol=2.5e-7), np.max(np.abs(h - expected))


def test_unknown_models_are_not_implemented():
    config = SimpleNamespace(model="transformer", activation="tanh", hidden=8, layers=1, embed=4, context=3,
                             vocab_size=5)
    with pytest.raises(NotImplementedError):
        prepare(SimpleNamespace(config=config, params={}))
    with pytest.raises(NotImplementedError):
        prepare(SimpleNamespace(config=SimpleNamespace(**(vars(config) | {"model": "rnn", "activation": "gelu"})),
                                params={}))


def test_chooser_runs_the_faster_thread_count_and_probes_the_other_ever_less_often():
    def run(cost, calls=60):
        """The thread counts picked when a call on n threads takes cost(n, call) per step."""
        chooser, picks = Chooser([1, 2], first_gap=4), []
        for call in range(calls):
            n = chooser.next()
            picks.append(n)
            chooser.record(n, cost(n, call), 1)
        return picks

    def at(picks, n):
        return [i for i, m in enumerate(picks) if m == n]

    picks = run(lambda n, call: {1: 1.0, 2: 1.05}[n])  # two threads a little slower: probed at doubling gaps
    assert at(picks, 2) == [2, 6, 14, 30]
    picks = run(lambda n, call: {1: 1.0, 2: 3.0}[n], calls=160)  # three times as slow: each probe costs
    assert at(picks, 2) == [2, 102]  # 2 blocks' time more, so a probe every 100 calls is 2% of the time
    picks = run(lambda n, call: {1: 2.0, 2: 1.0}[n], calls=120)  # two threads faster: taken from the first probe
    assert at(picks, 1) == [0, 1, 6, 56, 106]  # one thread tried again soon, then every 50 calls
    picks = run(lambda n, call: {1: 2.0, 2: 1.0 if call < 20 else 100.0}[n])  # then a core gets busy
    assert picks[20:22] == [2, 2] and set(picks[22:25]) == {1}  # after two slow blocks back to one thread
    picks = run(lambda n, call: {1: 2.0, 2: 100.0 if call == 20 else 1.0}[n])  # one block held up
    assert set(picks[20:30]) == {2}  # is forgiven


def test_a_chooser_of_several_counts_settles_on_the_fastest_and_probes_the_rest_ever_less_often():
    """Many cores: 1, 2, 4 and 8 threads (sampler._thread_choice), 4 the fastest."""
    chooser, picks = Chooser([1, 2, 4, 8], first_gap=4), []
    for call in range(400):
        n = chooser.next()
        picks.append(n)
        chooser.record(n, {1: 4.0, 2: 2.0, 4: 1.0, 8: 1.5}[n], 1)
    assert set(picks[:12]) == {1, 2, 4, 8} and chooser.best == 4
    slower = {1: 3.0, 2: 1.0, 8: 0.5}  # than 4 threads, per call
    for n, extra in slower.items():  # each still probed, its probes' extra time 2% of the calls' (give or take one)
        assert 0 < picks[100:].count(n) * extra <= Chooser.PROBE_SHARE * 300 + extra


def test_a_chooser_starting_from_a_measured_count_probes_the_other_only_after_a_while():
    def run(cost, best, calls=60, known=None):
        chooser, picks = Chooser([1, 2], first_gap=4, best=best, known=known), []
        for call in range(calls):
            n = chooser.next()
            picks.append(n)
            chooser.record(n, cost(n, call), 1)
        return picks

    picks = run(lambda n, call: {1: 1.05, 2: 1.0}[n], best=2)  # the measured count is right
    assert [i for i, n in enumerate(picks) if n == 1] == [7, 11, 19, 35]  # first probe after 2 x first_gap calls
    picks = run(lambda n, call: {1: 1.0, 2: 2.0}[n], best=2)  # the machine changed since
    assert picks[:7] == [2] * 7 and picks[7:11] == [1] * 4  # the probe finds it, and the chooser moves
    assert Chooser([1, 2], best=3).best == 1 and Chooser([1, 2], best=3).wait[2] == 3  # not a count here: ignored
    # with the times it was measured at, a count twice as slow is first probed after 50 calls
    picks = run(lambda n, call: {1: 2.0, 2: 1.0}[n], best=2, known={1: 200.0, 2: 100.0}, calls=120)
    assert [i for i, n in enumerate(picks) if n == 1] == [49, 99]
    picks = run(lambda n, call: {1: 1.0, 2: 2.0}[n], best=2, known={1: 110.0, 2: 100.0})  # measured close
    assert picks[:7] == [2] * 7 and picks[7:11] == [1] * 4  # and the machine changed: as soon as without them


def test_the_thread_choice_carries_over_between_samples_of_one_shape(monkeypatch):
    """What one sample timed decides the next sample's first blocks (a 500-character sample is 8
    blocks: too few to learn it again each time); another shape has its own timings."""
    monkeypatch.setattr(sampler_module, "thread_counts", lambda model, threads=None: (1, 2))
    monkeypatch.setattr(sampler_module, "_CHOOSERS", {})
    a, b = make_model("rnn", "tanh", 8, 1, 128, seed=1), make_model("rnn", "tanh", 8, 1, 128, seed=2)
    assert chooser_for(a, [1, 2]) is chooser_for(b, [1, 2])  # the weights do not matter, the shape does
    assert chooser_for(a, [1, 2]) is not chooser_for(make_model("rnn", "tanh", 8, 1, 192), [1, 2])
    assert chooser_for(a, [1, 2]) is not chooser_for(a, [1])
    chooser = chooser_for(a, [1, 2])
    chooser.best, chooser.cost, chooser.wait = 2, {1: 2.0, 2: 1.0}, {1: 100, 2: 100}  # two threads won before
    used = []
    record = chooser.record
    monkeypatch.setattr(chooser, "record", lambda n, seconds, steps: (used.append(n), record(n, seconds, steps)))
    ids = np.concatenate(list(sample_ids(b, np.array([0]), 20, rng=np.random.default_rng(0), first_block=4, block=4)))
    assert used == [2, 2, 2, 2]  # every timed block (all but the first) on two threads, none relearning
    serial = np.concatenate(list(sample_ids(b, np.array([0]), 20, rng=np.random.default_rng(0), threads=1)))
    assert np.array_equal(ids, serial)


def test_free_cpus_counts_the_threads_asked_for():
    if not os.path.exists("/proc/loadavg"):
        pytest.skip("no /proc/loadavg: free_cpus answers what is asked")
    assert 1 <= free_cpus(10_000) <= len(os.sched_getaffinity(0))  # never more CPUs than there are


def test_free_cpus_waits_out_a_task_that_runs_for_an_instant(monkeypatch):
    """Another task runnable for a few looks (as one often is right after this process's own
    parallel region) does not take a CPU; one that stays for the whole window does."""
    from charnn.backend.numba import threads

    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(threads, "own_running_threads", lambda: 1)
    looks = []

    def runnable(extra_looks):
        def read():
            looks.append(1)
            return 2 if len(looks) <= extra_looks else 1  # this thread, and another task for a while
        return read

    monkeypatch.setattr(threads, "_runnable_tasks", runnable(5))
    assert threads.free_cpus(2, window=10.0) == 2 and len(looks) == 6  # idle at the 6th look
    looks.clear()
    monkeypatch.setattr(threads, "_runnable_tasks", runnable(10**9))
    assert threads.free_cpus(2, window=0.01) == 1
    assert threads.free_cpus(1, window=0.01) == 1  # one thread needs no other CPU


def test_free_cpus_does_not_count_an_own_thread_falling_asleep(monkeypatch):
    """A worker of this process that goes to sleep while free_cpus looks is not another task:
    its own threads are counted before the machine's runnable tasks are read again. (Counted
    the other way round, the worker could be in the machine's count and gone from its own.)"""
    from charnn.backend.numba import threads

    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    awake = [True]  # the worker: running until free_cpus counts this process's threads

    def own():
        awake[0] = False  # it falls asleep just then (its spin after a parallel region ends)
        return 1 + awake[0]

    monkeypatch.setattr(threads, "own_running_threads", own)
    monkeypatch.setattr(threads, "_runnable_tasks", lambda: 1 + awake[0])  # this process alone
    assert threads.free_cpus(2, window=10.0) == 2


def test_a_task_runnable_for_a_few_milliseconds_does_not_make_a_sample_serial(monkeypatch):
    """A sample's thread counts hold for its calls, and a count left out is never timed: a stray task
    (one often shows for a few ms right after this process's own parallel region) must not drop the
    parallel count; a task that stays runnable does."""
    import time
    from charnn.backend.numba import threads
    monkeypatch.setattr(sampler_module, "parallel_threads", lambda: 2)
    monkeypatch.setattr(sampler_module, "LOOKS", threads.Looks(window=sampler_module.LOOKS.window, every=0.0))
    monkeypatch.setattr(threads, "cpus", lambda: 2)
    monkeypatch.setattr(threads, "own_running_threads", lambda: 1)
    model = make_model("rnn", "tanh", 8, 1, 512)
    end = time.perf_counter() + 0.005
    monkeypatch.setattr(threads, "_runnable_tasks", lambda: 1 + (time.perf_counter() < end))  # another task for 5 ms
    assert sampler_module.thread_counts(model) == (1, 2)
    monkeypatch.setattr(threads, "_runnable_tasks", lambda: 2)  # another task all along
    assert sampler_module.thread_counts(model) == (1,)


def test_sampling_threads_are_the_cpus_other_tasks_leave(monkeypatch):
    from charnn.backend.numba import threads
    monkeypatch.setattr(sampler_module, "parallel_threads", lambda: 8)
    model = make_model("rnn", "tanh", 8, 1, 512)
    monkeypatch.setattr(sampler_module, "LOOKS", threads.Looks(window=0.02, every=0.0))  # a new look each call
    for free, counts in ((8, (1, 2, 4, 8)), (6, (1, 3, 6)), (2, (1, 2)), (1, (1,))):  # and the halvings between
        monkeypatch.setattr(threads, "free_cpus", lambda n, window, free=free: min(n, free))
        assert sampler_module.thread_counts(model) == counts
    assert sampler_module.thread_counts(make_model("rnn", "tanh", 8, 1, 128)) == (1,)  # two blocks of 64 at least
    monkeypatch.setattr(threads, "free_cpus", lambda n, window: n)
    assert sampler_module.batch_thread_counts(16) == (1, 2, 4, 8)  # groups of streams: as many as the CPUs
    assert sampler_module.batch_thread_counts(3) == (1, 3) and sampler_module.batch_thread_counts(1) == (1,)  # never more than streams
    assert sampler_module.batch_thread_counts(1, blocks=8) == (1, 2, 4, 8)  # threads sharing a layer's unit blocks
    assert sampler_module.batch_thread_counts(3, blocks=2) == (1, 3)  # 2 would share blocks, 3 takes groups


def test_is_compiled_follows_charnns_own_stamp(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert not numba_compile.is_compiled("sample")
    numba_compile.mark_compiled("sample")
    assert numba_compile.is_compiled("sample") and not numba_compile.is_compiled("train")
    os.remove(numba_compile._stamp("sample"))
    assert numba_compile.is_compiled("sample")  # a yes holds for the process: its kernels are in memory
    monkeypatch.setattr(numba_compile, "_key", lambda: {"kernels_sha256": "another kernels.py"})
    assert not numba_compile.is_compiled("sample")  # a changed kernels.py (or CPU, numba, ...) compiles again


COLD_SCRIPT = """
import sys, charnn
from charnn.backend.numba.compile import is_compiled
model = charnn.load(sys.argv[1])
print(is_compiled("sample"))
print("".join(model.generate(200, prime="ab", seed=3)))
"""


def test_a_cold_sample_runs_the_reference_and_charnn_compile_makes_later_runs_compiled(tmp_path):
    """A fresh numba cache (NUMBA_CACHE_DIR): the first process samples with the numpy reference
    and starts nothing; after `charnn compile` a new process finds the kernels compiled and samples
    the same characters with them."""
    import subprocess
    import sys

    model = make_model("lstm", "tanh", 8, 2, 12)
    path = tmp_path / "m.npz"
    model.save(str(path))
    expected = "".join(model.generate(200, prime="ab", seed=3))  # the numpy reference
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))

    def run(*args):
        done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout, done.stderr

    assert run("-c", COLD_SCRIPT, str(path))[0] == f"False\n{expected}\n"
    assert not list((tmp_path / "numba-cache").rglob("*.nbi"))  # nothing compiled
    _, said = run("-m", "charnn", "compile")  # in child processes where there are CPUs for them, checked
    assert said.startswith("compiling the kernels (once per install), ")  # for clashes in numba's cache
    for unit in ("sample, sample-batch", "train-lstm, train-mlp", "train-gru", "train-rnn"):
        assert f"  {unit}: " in said
    assert run("-c", COLD_SCRIPT, str(path))[0] == f"True\n{expected}\n"


def test_sampling_and_training_start_no_process(monkeypatch, corpus_file, tmp_path):
    import subprocess

    import charnn

    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("started a process"))
    model = make_model("lstm", "tanh", 8, 1, 12).with_backend("numba")
    assert len("".join(model.generate(30, seed=1))) == 30
    charnn.train(charnn.TrainConfig(corpus=str(corpus_file), hidden=8, layers=1, embed=4, batch_size=2, seq_len=8,
                                    steps=2, out=str(tmp_path / "m.npz")))


def test_own_threads_are_not_counted_as_other_load():
    """A busy thread of this process (as BLAS workers are after a product) is counted by
    own_running_threads, so free_cpus does not mistake it for another process's load."""
    if not os.path.exists("/proc/self/task"):
        pytest.skip("no /proc/self/task: free_cpus answers what is asked")
    import threading
    import time

    from charnn.backend.numba.threads import own_running_threads

    stop = threading.Event()

    def worker():
        x = 0.0
        while not stop.is_set():
            x = float(np.sum(np.ones(200_000)))  # numpy releases the GIL in the sum: mostly running

    t = threading.Thread(target=worker)
    t.start()
    try:
        counts = []
        for _ in range(50):
            counts.append(own_running_threads())
            time.sleep(0.002)
    finally:
        stop.set()
        t.join()
    assert max(counts) >= 2


@pytest.mark.parametrize("spec", [s for s in MODELS if s[0] != "mlp"][:6], ids=spec_id)
def test_one_layout_run_serially_or_in_parallel_gives_the_same_logits(spec):
    """The two-block layout, its blocks run one after another (threads=1) or on two threads: the
    same float32 operations in the same order, so the same logits bit for bit."""
    from charnn.backend.numba.sampler import recurrent_net
    from charnn.backend.numba.kernels import recurrent_sample_kernel

    model = make_model(*spec)
    ids = np.random.default_rng(4).integers(0, len(VOCAB), size=9)
    net = recurrent_net(model, 2)
    logits = []
    for threads in (1, 2):
        Hp = net.Wh.shape[3]
        h, c = np.zeros((model.config.layers, Hp), np.float32), np.zeros((model.config.layers, Hp), np.float32)
        logits.append(recurrent_sample_kernel(net._replace(threads=threads), h, c, ids, np.zeros(1), 1.0, 0, 1.0, True,
                                              np.empty(1, dtype=np.int64)))
    assert np.array_equal(logits[0], logits[1])


# ---------------------------------------------------------------- threads sharing one parallel region
@njit(parallel=True)
def _count_together(counter, claims, units, adds):
    """On every numba thread: atomic_add counter[0] `adds` times, and claim each of `units` units
    (claims[u * 8] from 0 to 1), marking in taken[u] how many threads got it."""
    taken = np.zeros(units, dtype=np.int64)
    for tid in prange(numba.get_num_threads()):
        for _ in range(adds):
            atomic_add(counter, 0, 1)
        for u in range(units):
            if claim(claims, u * 8, 0):
                taken[u] += 1  # one writer per unit, if claim is what it says
    return taken


def test_counters_are_atomic_and_a_unit_is_claimed_once():
    """Two threads hammering one counter lose no addition, and each unit goes to exactly one of
    them: what the sampler's threads rely on to share a step's work (sample_steps)."""
    counter, claims = np.zeros(8, dtype=np.int64), np.zeros(8 * 20000, dtype=np.int64)
    taken = _count_together(counter, claims, 20000, 200000)
    assert counter[0] == 200000 * numba.get_num_threads()
    assert (taken == 1).all() and (claims[::8] == 1).all()


@pytest.mark.parametrize("spec", [("lstm", "tanh", 8, 2, 12), ("gru", "tanh", 0, 2, 10), ("rnn", "relu", 8, 1, 12)],
                         ids=spec_id)
def test_a_thread_that_starts_late_or_never_changes_nothing(spec):
    """The threads of a call claim its units of work: one thread alone does all of it, and a thread
    that arrives after the work is done writes nothing. Three blocks (more than threads), a prime."""
    from charnn.backend.numba import kernels as K
    from charnn.backend.numba.sampler import recurrent_net

    model = make_model(*spec)
    net = recurrent_net(model, 3)
    L, Hp = model.config.layers, net.Wh.shape[3]
    feed, u = np.array([3, 1, 4, 1]), np.random.default_rng(5).random(30)

    def serial():
        h, c, out = np.zeros((L, Hp), np.float32), np.zeros((L, Hp), np.float32), np.empty(30, np.int64)
        K.recurrent_sample_kernel(net, h, c, feed, u, 1.0, 0, 1.0, False, out)
        return out, h, c

    expected = serial()
    hs, c, out = np.zeros((2, L, Hp), np.float32), np.zeros((L, Hp), np.float32), np.empty(30, np.int64)
    scratch = K.sample_scratch(net)
    for tid in (2, 0):  # thread 2 alone does everything; thread 0 comes when all is done
        K.sample_steps(tid, net._replace(threads=3), hs, c, feed, u, 1.0, 0, 1.0, False, out, *scratch)
        S = len(feed) - 1 + len(out)
        assert np.array_equal(out, expected[0]) and np.array_equal(hs[S % 2], expected[1])
        assert np.array_equal(c, expected[2])


def test_a_batch_thread_that_starts_late_or_never_changes_nothing():
    """As above for S streams stepped together (batch_sample_steps): thread 2 of three alone steps
    every block and head group; thread 0, after it, finds nothing left to claim."""
    model = make_model("gru", "tanh", 8, 2, 12)
    net = recurrent_net(model, 3)
    L, Hp = model.config.layers, net.Wh.shape[3]
    first, u = np.array([3, 1, 4, 1]), np.random.default_rng(6).random((4, 25))
    h, c, expected = np.zeros((L, 4, Hp), np.float32), np.zeros((L, 4, Hp), np.float32), np.empty((4, 25), np.int64)
    K.recurrent_batch_sample_kernel(net, h, c, first, u, 1.0, 0, 1.0, False, expected, 1)
    c2, out = np.zeros((L, 4, Hp), np.float32), np.empty((4, 25), np.int64)
    hs, ids, *scratch = K.batch_scratch(net, np.zeros((L, 4, Hp), np.float32), first)
    for tid in (2, 0):
        K.batch_sample_steps(tid, net, hs, c2, ids, u, 1.0, 0, 1.0, False, out, *scratch)
        assert np.array_equal(out, expected) and np.array_equal(hs[25 % 2], h) and np.array_equal(c2, c)


def test_parallel_sampling_on_fewer_threads_than_blocks_neither_waits_forever_nor_changes_the_ids():
    """numba's parallel region runs its iterations on one thread when it has only one: the sampler's
    threads then run one after another, and the first does all the work. In a child process, with a
    time limit, so that a wait that never ends fails the test instead of hanging it."""
    code = """
import numba, numpy as np
from charnn.backend.numba import kernels as K
from charnn.backend.numba.sampler import recurrent_net
from tests.test_fast_sampling import make_model
net = recurrent_net(make_model("lstm", "tanh", 8, 2, 12), 2)
L, Hp = net.Wh.shape[0], net.Wh.shape[3]
runs = []
for threads, numba_threads in ((1, 2), (2, 1), (2, 2)):
    numba.set_num_threads(numba_threads)
    h, c, out = np.zeros((L, Hp), np.float32), np.zeros((L, Hp), np.float32), np.empty(40, np.int64)
    K.recurrent_sample_kernel(net._replace(threads=threads), h, c, np.array([2, 5]), np.linspace(0, 0.99, 40),
                              1.0, 0, 1.0, False, out)
    runs.append(out.tolist() + h.ravel().tolist())
    hb, cb, outb = np.zeros((L, 3, Hp), np.float32), np.zeros((L, 3, Hp), np.float32), np.empty((3, 20), np.int64)
    K.recurrent_batch_sample_kernel(net, hb, cb, np.array([2, 5, 1]), np.linspace(0, 0.99, 60).reshape(3, 20),
                                    1.0, 0, 1.0, False, outb, threads)  # three streams, the blocks on `threads`
    runs[-1] += outb.ravel().tolist() + hb.ravel().tolist()
assert runs[0] == runs[1] == runs[2], runs
print("same")
"""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "same", done.stderr[-2000:]


def test_the_layout_is_kept_while_the_parameters_stay_the_same_and_rebuilt_when_they_change():
    """kept_recurrent_net reuses the model's layout between samples, and an edit of a parameter in
    place, however small, is seen at the next sample: its characters are a fresh model's."""
    from charnn.backend.numba.sampler import _same_bits, kept_recurrent_net

    model = make_model("lstm", "tanh", 8, 2, 12)
    first = kept_recurrent_net(model, 2)
    assert kept_recurrent_net(model, 2) is first
    before = "".join(sample_numba(model, np.array([0]), 40, rng=np.random.default_rng(3), threads=2))
    model.params["layer1.Wh"][3, 5] = np.nextafter(model.params["layer1.Wh"][3, 5], np.float32(np.inf))
    model.params["embed.W"][2] *= -1.0  # layer 0's tabulated input changes too
    rebuilt = kept_recurrent_net(model, 2)
    assert rebuilt is not first and rebuilt.Wh[1, 0, 0, 3, 5] == model.params["layer1.Wh"][3, 5]
    fresh = make_model("lstm", "tanh", 8, 2, 12)
    for k, v in model.params.items():
        fresh.params[k][...] = v
    after = "".join(sample_numba(model, np.array([0]), 40, rng=np.random.default_rng(3), threads=2))
    assert after == "".join(sample_numba(fresh, np.array([0]), 40, rng=np.random.default_rng(3), threads=2))
    assert after != before
    nan, zero = np.array([np.nan, 0.0], np.float32), np.array([np.nan, -0.0], np.float32)
    assert _same_bits({"a": nan}, {"a": nan.copy()}) and not _same_bits({"a": nan}, {"a": zero})


@pytest.fixture
def sampling_table(tmp_path, monkeypatch):
    """A fresh calibration table (policy.py) in a folder of its own, as the sampler consults it,
    and no Chooser of this process yet."""
    from charnn.backend.numba import policy

    monkeypatch.setenv("CHARNN_CACHE_DIR", str(tmp_path))
    fresh = policy.Table()
    monkeypatch.setattr(policy, "TABLE", fresh)
    monkeypatch.setattr(sampler_module, "TABLE", fresh)
    monkeypatch.setattr(sampler_module, "_CHOOSERS", {})
    monkeypatch.setattr(sampler_module, "thread_counts", lambda model, threads=None: (1, 2) if threads is None else (threads,))
    return fresh


def test_a_sample_starts_from_the_thread_count_this_machine_measured_and_keeps_what_it_learns(sampling_table):
    """The count measured best (kept in the cache folder) is where a new process's samples start;
    a chooser that has timed both counts and found otherwise replaces it, once, for the next process."""
    from charnn.backend.numba import policy
    from charnn.backend.numba.sampler import remember, sample_name, stored_threads

    model = make_model("lstm", "tanh", 8, 2, 128)
    name = sample_name(model, (1, 2))
    assert name == "lstm tanh 2x128, threads 1/2" and stored_threads(model) is None
    assert chooser_for(model, [1, 2]).best == 1  # nothing measured: serial first
    sampling_table.record_sampling(name, {"threads": 2, "us_per_char": {"1": 9.0, "2": 5.0}})
    sampler_module._CHOOSERS.clear()  # a new process
    chooser = chooser_for(model, [1, 2])
    assert chooser.best == 2 and stored_threads(model) == 2
    assert chooser.wait[1] == 40  # serial measured 1.8x as slow: first probed after 0.8 / 2% blocks
    assert chooser_for(make_model("lstm", "tanh", 8, 2, 128, vocab=VOCAB_NO_NEWLINE), [1, 2]).best == 2  # any vocabulary
    assert chooser_for(make_model("gru", "tanh", 8, 2, 128), [1, 2]).best == 1  # another shape: its own

    writes = []
    record = sampling_table.record_sampling
    sampling_table.record_sampling = lambda n, row: (writes.append(row), record(n, row))
    chooser.record(2, 1.0, 1)
    remember(model, chooser)
    assert writes == []  # one count timed: nothing learnt yet
    chooser.record(1, 0.5, 1)  # serial won after all
    remember(model, chooser)
    remember(model, chooser)
    assert writes == [{"threads": 1, "us_per_char": {"1": 500000.0, "2": 1000000.0}}]  # written once
    assert policy.Table().sampling()[name]["threads"] == 1  # on disk, for the next process
    sampler_module._CHOOSERS.clear()
    assert chooser_for(model, [1, 2]).best == 1
    assert chooser_for(model, [1]).best == 1 and chooser_for(model, [2]).best == 2  # a forced count is kept


def test_a_kept_row_of_odd_times_starts_the_chooser_without_them(sampling_table):
    """The table is a file in the user's cache folder: times that are not positive numbers are left out."""
    from charnn.backend.numba.sampler import sample_name

    model = make_model("lstm", "tanh", 8, 2, 128)
    for us in ({"1": "slow", "2": 5.0}, {"1": -1, "2": 5.0}, {"1": float("nan"), "2": 5.0}, {"x": 9.0, "2": 5.0}, []):
        sampling_table.record_sampling(sample_name(model, (1, 2)), {"threads": 2, "us_per_char": us})
        sampler_module._CHOOSERS.clear()
        chooser = chooser_for(model, [1, 2])
        assert chooser.best == 2 and chooser.wait[1] == 2 * chooser.first_gap  # as with no times


def test_measure_threads_times_each_count_and_keeps_the_faster(sampling_table, monkeypatch):
    from charnn.backend.numba.sampler import measure_threads, sample_name

    model = make_model("lstm", "tanh", 8, 2, 128)
    calls = []
    kernel = sampler_module.recurrent_sample_kernel
    monkeypatch.setattr(sampler_module, "recurrent_sample_kernel", lambda net, *a: (calls.append(net.threads), kernel(net, *a))[1])
    row = measure_threads(model)
    rounds = sampler_module.CALIBRATION_ROUNDS + 1
    assert calls == [1, 2] * rounds  # alternating, the first round untimed
    assert row["threads"] in (1, 2) and sorted(row["us_per_char"]) == ["1", "2"]
    assert row["threads"] == min((1, 2), key=lambda n: row["us_per_char"][str(n)])
    assert sampling_table.sampling()[sample_name(model, (1, 2))] == row
    assert measure_threads(make_model("mlp", "tanh", 5, 2, 12)) is None  # the MLP samples serially: no choice


def test_charnn_compile_measures_the_sampling_threads_of_the_default_checkpoint(sampling_table, tmp_path):
    from charnn.compile import calibrate_sampling

    model = make_model("gru", "tanh", 8, 2, 128)
    path = tmp_path / "m.npz"
    model.save(str(path))
    name, row = calibrate_sampling(str(path))
    assert name == "gru 2x128" and row["threads"] in (1, 2)
    assert calibrate_sampling(str(tmp_path / "missing.npz")) is None


def test_batch_sampling_times_one_thread_against_groups_of_streams_and_obeys_the_variable(monkeypatch):
    """With a choice, sample_batch_ids runs both counts (the Chooser's probe) and gives the ids of a
    serial run; CHARNN_SAMPLE_THREADS fixes the count; never more groups than streams."""
    from charnn.backend.numba.sampler import batch_thread_counts

    monkeypatch.setattr(sampler_module, "_BATCH_CHOOSERS", {})
    monkeypatch.setattr(sampler_module, "batch_thread_counts", lambda streams, threads=None, blocks=1: (1, 2) if threads is None else (threads,))
    model = make_model("lstm", "tanh", 8, 2, 12)

    def run(threads):
        rngs = [np.random.default_rng(s) for s in range(3)]
        blocks = sample_batch_ids(model, np.array([1, 2]), np.array([0, 3, 5]), 600, rngs=rngs, threads=threads)
        return np.concatenate(list(blocks), axis=1)

    assert np.array_equal(run(None), run(1))
    (chooser,) = [c for key, c in sampler_module._BATCH_CHOOSERS.items() if key[-1] == (1, 2)]
    assert chooser.ran[1] > 0 and chooser.ran[2] > 0 and sum(chooser.ran.values()) == 3 * 600
    monkeypatch.setenv("CHARNN_SAMPLE_THREADS", "2")  # the function itself, imported before it was replaced
    assert batch_thread_counts(4) == (2,) and batch_thread_counts(1) == (1,)
    monkeypatch.setenv("CHARNN_SAMPLE_THREADS", "1")
    assert batch_thread_counts(4) == (1,)


def _panel_shapes():
    """(D, M) around the vector panels' edges: one vector, a partial one, every count of vectors in
    the last panel, several panels, and D past one block of batch_matvec's rows (KC)."""
    from charnn.backend.numba.kernels import KC, LANES, PANEL

    return [(7, 5), (12, 33), (1, 3), (0, 4), (5, LANES), (9, PANEL), (3, PANEL + 1), (KC + 3, 2 * PANEL + 3 * LANES - 1),
            (2 * KC, 40)] + [(4, v * LANES + 1) for v in range(1, 8)]


@pytest.mark.parametrize("D, M", _panel_shapes())
def test_batch_matvec_rows_are_matvec_bit_for_bit_for_every_count_of_streams(D, M):
    """batch_matvec carries each stream's sums through blocks of KC rows: every row must still be
    the lone matvec's sums, bit for bit, for every count of streams (a whole group of SAMPLE_GROUP,
    every count left over, and two groups and more), and both are numpy's product to float32 rounding."""
    from charnn.backend.numba.kernels import SAMPLE_GROUP, batch_matvec, matvec
    from charnn.backend.numba.sampler import vector_panels

    rng = np.random.default_rng(D * 100 + M)
    W = rng.standard_normal((D, M)).astype(np.float32)
    Wp = vector_panels(W)
    for S in range(1, 2 * SAMPLE_GROUP + 2):
        X = rng.standard_normal((S, D)).astype(np.float32)
        out = np.full((S, M), np.nan, np.float32)
        batch_matvec(X, Wp, out)
        for s in range(S):
            lone = np.full(M, np.nan, np.float32)
            matvec(X[s].copy(), Wp, lone)
            assert np.array_equal(out[s], lone), (S, s)
        assert np.allclose(out, X.astype(np.float64) @ W, rtol=1e-5, atol=1e-5 * max(1, D) ** 0.5)


def test_matvec_sums_each_column_in_row_order_with_one_multiply_add_a_row():
    """The chain the docstring promises, checked where the order shows: a huge first term that
    later ones cancel. (x0 w0 + x1 w1) + x2 w2 with x0 w0 = 2^24, x1 w1 = 1, x2 w2 = -2^24 is 0 in
    row order (2^24 + 1 rounds to 2^24) and 1 in any order that adds the last two rows first."""
    from charnn.backend.numba.kernels import matvec
    from charnn.backend.numba.sampler import vector_panels

    W = np.array([[2.0**24], [1.0], [-(2.0**24)]], np.float32)
    out = np.full(1, np.nan, np.float32)
    matvec(np.ones(3, np.float32), vector_panels(W), out)
    assert out[0] == 0.0
