"""What a backend is: the table of functions the models and the optimizer call.

Every field from `embedding_forward` to `adam_update` is a function of charnn.nn with the same
name, signature, return values and cache types; a backend is only another way to compute them.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

# the layer functions every backend implements, named as in charnn.nn
LAYER_OPS = ("embedding_forward", "embedding_backward", "linear_forward", "linear_backward", "dense_forward",
             "dense_backward", "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
             "rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward", "gru_backward")


class Backend(NamedTuple):
    name: str  # "numpy" or "numba"
    embedding_forward: Callable
    embedding_backward: Callable
    linear_forward: Callable
    linear_backward: Callable
    dense_forward: Callable
    dense_backward: Callable
    softmax_cross_entropy_forward: Callable
    softmax_cross_entropy_backward: Callable
    rnn_forward: Callable
    rnn_backward: Callable
    lstm_forward: Callable
    lstm_backward: Callable
    gru_forward: Callable
    gru_backward: Callable
    adam_update: Callable  # charnn.nn.optim.adam_update
    # (model, work, streams=1) -> a function (warm_ids, first_ids, length, draw, rngs, alive,
    # progress) yielding the sampled ids of `streams` streams in blocks (S, n) (see
    # charnn.sampling.stream_blocks), or None: sample with the reference loop, model.step then pick
    # per character. work: characters to step through (None: without end)
    sampler: Callable
    # (task, model, length=0) -> what to tell the user before a task ("train", or "sample" /
    # "sample-batch" stepping through `length` characters, None: without end) that will take longer
    # than usual (compiling, a slow threading layer), or None
    notice: Callable
    # (task, model=None) -> None: the task ran (for that model: a training run covers its cell;
    # without one, `charnn compile` covers them all), so what it compiled is cached (see notice)
    done: Callable
    # (model_config, batch_size, seq_len, say=None, default=False) -> a context manager: within it,
    # compute as best for training that shape (the numba backend: its products with tiles or BLAS,
    # measured once per machine, saying so through `say`; default=True also makes it the choice
    # outside training); it yields the choice (None for a backend with none)
    prepare: Callable
    # () -> a context manager around one training step (train_step): the numba backend runs the
    # step on the thread count chosen for it within prepare (threads.Pace); a no-op elsewhere
    pace: Callable
    # () -> {shape: choice}: what `prepare` measured on this machine, and "in effect"; {} for none
    decisions: Callable
    # (model) -> the thread count batch-1 sampling of the model's shape runs best on, measured now
    # (~0.1-1 s) and kept for this machine as the count its samples start from: {"threads",
    # "us_per_char"}; None for a backend or machine with no choice
    calibrate_sampling: Callable
    # () -> context managers, one per way this backend can compute a training step (the numba
    # backend: products on its tiles, time loops split by panels or by rows, or on BLAS), so that
    # a warm-up run inside each compiles whatever a later run may choose; one no-op elsewhere
    ways: Callable
    # () -> a context manager yielding {kernel: {argument types}}, filled with what compiles (and
    # so is written to the compiled code's cache) within it; stays {} for a backend that compiles nothing
    recording: Callable
