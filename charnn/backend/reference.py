"""The numpy backend: charnn.nn's functions themselves."""
from __future__ import annotations

import contextlib

from ..nn import gru, layers, lstm, rnn
from ..nn.optim import adam_update
from .ops import LAYER_OPS, Backend

_MODULES = (layers, rnn, lstm, gru)

NUMPY = Backend(
    name="numpy",
    **{op: next(getattr(m, op) for m in _MODULES if hasattr(m, op)) for op in LAYER_OPS},
    adam_update=adam_update,
    sampler=lambda model, work, streams=1: None,
    notice=lambda task, model, length=0: None,
    done=lambda task, model=None: None,
    prepare=lambda config, batch_size, seq_len, say=None, default=False: contextlib.nullcontext(),
    pace=contextlib.nullcontext,
    decisions=dict,
    calibrate_sampling=lambda model: None,
    ways=lambda: [contextlib.nullcontext()],
    recording=lambda: contextlib.nullcontext({}),
)
