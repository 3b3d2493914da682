"""Where a training step's time goes: one JSON line per configuration with the milliseconds per step
of every backend function the step calls (the recurrent layers split into their time loop and the
rest), clipping and the optimizer, on the numba backend as training runs it.

    python bench/step_profile.py
    python bench/step_profile.py --configs lstm-2x256,lstm-2x512 --steps 30

Each backend function of the model is wrapped in a timer (a model built on a copy of the backend
table with the functions replaced, so charnn itself is untouched); the recurrent loop kernels are
wrapped too, which splits a layer's time into its time loop (products of the step and the step
kernel) and the rest (packing, weight gradients, scratch). The loop's own parts are then timed
alone on the same arrays: the per-step products and the step kernels, each T times.
Medians over the steps; the sum of the parts is compared with the whole step.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from charnn.backend.numba import kernels as K  # noqa: E402
from charnn.backend.numba import layers as numba_layers  # noqa: E402
from charnn.model import make_cell  # noqa: E402
from charnn.train.loop import train_step  # noqa: E402
from charnn.train.optim import make_optimizer  # noqa: E402

LOOPS = tuple(f"{cell}_{direction}_{split}" for cell in ("rnn", "lstm", "gru") for direction in ("forward", "backward")
              for split in ("loop", "rows"))  # the compiled time loops, split by panels or by rows


class Timers:
    def __init__(self):
        self.per_step = collections.defaultdict(float)
        self.steps = collections.defaultdict(list)

    def wrap(self, name, f):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                self.per_step[name] += time.perf_counter() - t0
        return timed

    def end_step(self, total):
        for name, s in self.per_step.items():
            self.steps[name].append(s)
        self.steps["step"].append(total)
        self.per_step.clear()

    def medians_ms(self):
        return {name: round(float(np.median(v)) * 1e3, 3) for name, v in self.steps.items()}


def _loop_parts(model, B, T, repeats=5):
    """The last recurrent layer's forward and backward time loop, taken apart: ms per sequence of
    T per-step input products, T recurrent products, T step kernels (LSTM with 2 layers or more:
    the first layer looks its input projections up, nn.layers.Embedded, and has no input products)."""
    if model.config.model != "lstm" or model.config.layers < 2:
        return {}
    p, l = model.params, model.config.layers - 1
    Wx, Wh, b = p[f"layer{l}.Wx"], p[f"layer{l}.Wh"], p[f"layer{l}.b"]
    D, G = Wx.shape
    H = Wh.shape[0]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    from charnn.backend.numba.gemm import pack
    Wxp, Whp, WhTp = pack(Wx).panels, pack(Wh).panels, pack(Wh.T).panels
    if Whp is None:
        return {"note": "BLAS computes the products: no tiles loop to take apart"}
    h = np.zeros((B, T + 1, H), np.float32)
    c = np.zeros((B, T + 1, H), np.float32)
    gates = np.zeros((B, T, G), np.float32)
    tanh_c = np.zeros((B, T, H), np.float32)
    xa_t, ha = np.zeros((B, G), np.float32), np.zeros((B, G), np.float32)
    da = np.zeros((B, T, G), np.float32)
    dhs = rng.standard_normal((B, T, H)).astype(np.float32) * 0.1
    dh_rec, dc = np.zeros((B, H), np.float32), np.zeros((B, H), np.float32)
    bias = np.ascontiguousarray(b)

    def best(f):
        f()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        return round(float(np.median(ts)) * 1e3, 3)

    def products_x():
        for t in range(T):
            K.gemm_kernel(x[:, t], Wxp, xa_t)

    def products_h():
        for t in range(T):
            K.gemm_kernel(h[:, t], Whp, ha)

    def steps_forward():
        for t in range(T):
            K.lstm_step_forward_kernel(t, xa_t, bias, ha, h, c, gates, tanh_c)

    def steps_backward():
        for t in range(T - 1, -1, -1):
            K.lstm_step_backward_kernel(t, dhs, dh_rec, dc, c, gates, tanh_c, da)

    def products_back():
        for t in range(T - 1, -1, -1):
            K.gemm_kernel(da[:, t], WhTp, dh_rec)

    def whole_forward():
        K.lstm_forward_loop(x, Wxp, bias, Whp, h, c, gates, tanh_c, xa_t, ha)

    # Python calls each kernel here, so every part includes a dispatch (~1-3 us) per call
    parts = {"forward_loop": whole_forward, "x_products": products_x, "h_products": products_h, "step_kernels": steps_forward,
             "backward_step_kernels": steps_backward, "backward_products": products_back}
    return {**{f"layer{l}_{name}_ms": best(f) for name, f in parts.items()}, "python_dispatches_per_part": T}


def profile(config: dict, steps: int, warmup: int) -> dict:
    B, T = config["batch_size"], config["seq_len"]
    timers = Timers()
    model = harness.make_model(config, "numba")
    ops = model.ops._replace(**{op: timers.wrap(op, getattr(model.ops, op))
                                for op in model.ops._fields if callable(getattr(model.ops, op)) and op.endswith(("forward", "backward", "update"))})
    model.ops = ops
    if hasattr(model, "cell"):  # the cell adapters hold the table they were made with
        model.cell = make_cell(model.config.model, model.config.activation, ops)
    saved = {name: getattr(K, name) for name in LOOPS}
    for name in LOOPS:  # layers.py calls them as K.<name>
        setattr(K, name, timers.wrap(name, saved[name]))
    threads = harness.count_step_threads(model)  # after the table's copy: it wraps the copy's pace
    optimizer = make_optimizer("adam", model.params, config["lr"], model.ops)
    streams = harness._streams(config)
    state = model.initial_state(B)
    try:
        with model.ops.prepare(model.config, B, T) as products:
            for step in range(warmup + steps):
                x, y = streams.batch(step % streams.chunks_per_epoch)
                t0 = time.perf_counter()
                _, _, state = train_step(model, optimizer, x, y, state, lr=config["lr"], clip=config["clip"])
                total = time.perf_counter() - t0
                if step >= warmup:
                    timers.end_step(total)
                else:
                    timers.per_step.clear()
                    threads.clear()
            parts = _loop_parts(model, B, T)
    finally:
        for name in LOOPS:
            setattr(K, name, saved[name])
    ms = timers.medians_ms()
    step_ms = ms.pop("step")
    accounted = sum(v for k, v in ms.items() if k not in LOOPS)  # the loops are inside the layer functions
    flops = harness.train_flops_per_char(config) * B * T
    return {"kind": "profile", "config": config["name"], "products": products, "step_ms": step_ms,
            "step_threads": {str(n): k for n, k in sorted(threads.items())},
            "gflop_per_s": round(flops / step_ms / 1e6, 1), "ms_by_function": dict(sorted(ms.items(), key=lambda kv: -kv[1])),
            "ms_outside_backend_functions": round(step_ms - accounted, 3), "loop_parts": parts,
            "env": harness.environment()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="lstm-2x256")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args(argv)
    for name in args.configs.split(","):
        print(json.dumps(profile(harness.config_by_name(name), args.steps, args.warmup)), flush=True)


if __name__ == "__main__":
    main()
