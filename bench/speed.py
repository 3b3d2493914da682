"""Time charnn against PyTorch on this CPU: one JSON line per configuration on stdout.

    python bench/speed.py                                # all five configurations, numba backend, with start-up rows
    python bench/speed.py --configs lstm-2x256,gru-2x256 --steps 10 --no-torch
    python bench/speed.py --backend both --no-startup

Human-readable progress goes to stderr, so `python bench/speed.py > results.jsonl` keeps only the
rows. The fields are described in bench/README.md; the work is done by harness.py.
"""
from __future__ import annotations

import argparse
import json
import sys

from harness import BACKENDS, CONFIGS, config_by_name, iter_benchmarks


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and a non-zero exit, as every charnn command
        self.exit(2, f"Error: {message}\n")


def parse_args(argv=None):
    p = _Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--configs", default=",".join(c["name"] for c in CONFIGS),
                   help="comma-separated configurations, CELL-LAYERSxHIDDEN (cells rnn, lstm, gru), e.g. lstm-2x256")
    p.add_argument("--steps", type=int, default=21, help="timed training steps per configuration (each timed alone; the median is reported)")
    p.add_argument("--rounds", type=int, default=3, help="alternate charnn and PyTorch training in this many rounds, the steps split between them")
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps before the timed ones")
    p.add_argument("--sample-length", type=int, default=500, help="characters per timed sampling call")
    p.add_argument("--sample-repeats", type=int, default=5, help="timed sampling calls (the median is reported)")
    p.add_argument("--backend", choices=[*BACKENDS, "both"], default="numba", help="charnn backend to time")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if it is installed")
    p.add_argument("--torch-threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--no-startup", action="store_true",
                   help="skip the start-up rows (first step / first sample in fresh processes, `charnn sample` cold and warm); "
                        "they compile into temporary numba caches")
    args = p.parse_args(argv)
    try:
        args.configs = [config_by_name(name) for name in args.configs.split(",") if name.strip()]
    except ValueError as e:
        p.error(str(e))
    for name in ("steps", "rounds", "sample_length", "sample_repeats", "torch_threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        p.error("--warmup must be at least 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    def note(text):
        print(text, file=sys.stderr, flush=True)

    rows = iter_benchmarks(args.configs, steps=args.steps, warmup_steps=args.warmup, backend=args.backend,
                           torch=not args.no_torch, sample_length=args.sample_length,
                           sample_repeats=args.sample_repeats, startup=not args.no_startup,
                           torch_threads=args.torch_threads, note=note, rounds=args.rounds)
    for row in rows:
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
