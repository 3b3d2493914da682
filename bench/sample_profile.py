"""Where a batch-1 sampling character's time goes: one JSON line per configuration.

    python bench/sample_profile.py [--configs lstm-2x256,rnn-1x512] [--chars 20000]

For an untrained model of each configuration (the speed benchmark's), in microseconds a
character, medians of 5 runs of `--chars` characters in one compiled loop each:
- "whole": recurrent_sample_kernel, serial and on numba's threads (what sample_ids runs);
- "layers": recurrent_sample_kernel stepping through a prime (every layer's step, no head), serial
  and parallel;
- "head": head_block_kernel over every block on one thread (h @ head.W + head.b), "pick":
  pick_kernel (temperature, softmax, draw);
- with --streams S (S > 1): "batch": recurrent_batch_sample_kernel stepping S streams together
  (what `charnn sample --num-samples S` runs), on one thread and on numba's threads (sharing each
  layer's unit blocks, or in groups of streams where there are fewer blocks than threads:
  "batch_way"), microseconds a character of one stream (the call's time / (S x chars)).
"weight_mb" is what one character reads (every recurrent weight and the head), and
"layers_gb_per_s" what the serial layers read per second: compare it with bench/peak.py's
"memory" rows at that size to see whether sampling is bound by the read rate.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numba
import numpy as np
from numba import njit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

from charnn.backend.numba import kernels as K  # noqa: E402
from charnn.backend.numba import sampler  # noqa: E402
from charnn.backend.numba.target import describe  # noqa: E402
from charnn.backend.numba.threads import parallel_threads  # noqa: E402


@njit
def _head(net, h_top, n):
    logits = np.empty(net.head_W.shape[0] * K.head_block_width(net), dtype=np.float32)
    for _ in range(n):
        for blk in range(net.head_W.shape[0]):
            K.head_block_kernel(h_top, net, blk, logits)


@njit
def _pick(logits, u, n):
    V = logits.shape[0]
    z, top, cdf = np.empty(V), np.empty(V), np.empty(V)
    total = 0
    for t in range(n):
        total += K.pick_kernel(logits, u[t % u.shape[0]], 1.0, 0, 1.0, False, z, top, cdf)
    return total


def _median_us(run, n: int, repeats: int = 5) -> float:
    run(min(n, 200))  # compile and warm the caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(n)
        times.append(time.perf_counter() - t0)
    return round(sorted(times)[len(times) // 2] / n * 1e6, 3)


def profile(name: str, chars: int, streams: int = 1) -> dict:
    config = harness.config_by_name(name)
    model = harness.make_model(config)
    threads = min(parallel_threads(), max(1, model.config.hidden // 64))  # as sampler.thread_counts, busy CPUs or not
    net1 = sampler.recurrent_net(model, threads)  # the layout sample_ids uses
    nets = {1: net1, threads: net1._replace(threads=threads)}
    L, Hp = net1.Wh.shape[0], sampler.padded_width(model.config.hidden, threads)  # state (L, Hp)
    rng = np.random.default_rng(0)
    row = {"kind": "sample_profile", "config": name, "chars": chars, "threads": threads}
    for n_threads, net in nets.items():
        def whole(n, net=net):
            h, c = np.zeros((L, Hp), np.float32), np.zeros((L, Hp), np.float32)
            K.recurrent_sample_kernel(net, h, c, np.zeros(1, np.int64), rng.random(n), 1.0, 0, 1.0, False,
                                      np.empty(n, np.int64))

        def layers(n, net=net):  # steps that only read a prime: every layer, no head, no draw
            h, c = np.zeros((L, Hp), np.float32), np.zeros((L, Hp), np.float32)
            K.recurrent_sample_kernel(net, h, c, np.zeros(n + 1, np.int64), np.empty(0), 1.0, 0, 1.0, False,
                                      np.empty(0, np.int64))

        row[f"whole_us_{n_threads}_threads"] = _median_us(whole, chars)
        row[f"layers_us_{n_threads}_threads"] = _median_us(layers, chars)
    if streams > 1:  # the layouts of sample_batch_ids: one unit block, or net1's blocks shared by threads
        batch = sampler.Batch(K.recurrent_sample_kernel, K.recurrent_batch_sample_kernel, sampler.recurrent_net(model, 1, Hp),
                              (), 1, net1 if threads > 1 else None)
        row["streams"] = streams
        for n_threads in sorted({1, min(parallel_threads(), max(streams, batch.blocks))}):
            batch_net, parts = batch.layout(n_threads, streams)

            def run(n, batch_net=batch_net, parts=parts):
                h, c = np.zeros((L, streams, Hp), np.float32), np.zeros((L, streams, Hp), np.float32)
                K.recurrent_batch_sample_kernel(batch_net, h, c, np.zeros(streams, np.int64), rng.random((streams, n)),
                                                1.0, 0, 1.0, False, np.empty((streams, n), np.int64), parts)

            row[f"batch_us_{n_threads}_threads"] = round(_median_us(run, max(1, chars // streams)) / streams, 3)
            row[f"batch_way_{n_threads}_threads"] = ("one thread" if parts == 1 else "unit blocks shared"
                                                     if batch_net is net1 else "groups of streams")
    h_top = rng.standard_normal(Hp).astype(np.float32)
    logits = (h_top[: model.config.hidden] @ model.params["head.W"] + net1.head_b).astype(np.float32)
    u = rng.random(1024)
    row["head_us"] = _median_us(lambda n: _head(net1, h_top, n), chars)
    row["pick_us"] = _median_us(lambda n: _pick(logits, u, n), chars)
    weight_bytes = sum(a.nbytes for a in (net1.Wx, net1.Wh, net1.head_W))
    row["weight_mb"] = round(weight_bytes / 1e6, 3)
    row["layers_gb_per_s"] = round((net1.Wx.nbytes + net1.Wh.nbytes) / (row["layers_us_1_threads"] * 1e-6) / 1e9, 1)
    row["env"] = {"cpu_count": os.cpu_count(), "numba_threads": numba.get_num_threads(), **describe()}
    return row


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="lstm-2x128,lstm-2x256,lstm-2x512,gru-2x256,rnn-1x512")
    ap.add_argument("--chars", type=int, default=20000, help="characters per timed run")
    ap.add_argument("--streams", type=int, default=1, help="also time S streams sampled together (S > 1)")
    args = ap.parse_args(argv)
    if args.chars < 1 or args.streams < 1:
        ap.exit(2, "Error: --chars and --streams must be at least 1\n")
    for name in args.configs.split(","):
        print(json.dumps(profile(name, args.chars, args.streams)), flush=True)


if __name__ == "__main__":
    main()
