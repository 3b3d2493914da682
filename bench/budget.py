"""What loss a fixed wall-clock budget buys: charnn's models, and PyTorch's twin of one, each trained
for the same minutes on the same machine, split and batches, reporting the best validation loss.

    python bench/budget.py shakespeare --budget 10m --model lstm:2x256:0.2 --torch
    python bench/budget.py linux --budget 10m --model rnn:1x512 --model gru:2x256 --model mlp:3x512
    python bench/budget.py latex --budget 10m --model lstm:2x256:0.2 --torch-only
    python bench/budget.py shakespeare --budget 10m --model lstm:2x256:0.2 --weight-drop 0.2 --ema 0.999

One JSON line per run on stdout: corpus, model, budget, steps, best validation nats and bits per
character, chars/s, the CPU model and how much CPU other processes took meanwhile (other_load;
near 0 on a quiet machine). Runs go one after another, never side by side: the machine has two
cores. The charnn run is `charnn train CORPUS --budget ...` through the API; the PyTorch twin has
the same embedding, cell, dropout after every layer, Adam, clipping, cosine-by-the-clock schedule,
truncated BPTT over the same streams, and the same full validation pass (charnn.data.eval_chunks)
at the same step cadence, so only the engines differ.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import OtherLoad, _cpu_model, _torch_model, torch_available  # noqa: E402

from charnn import TrainConfig, train  # noqa: E402
from charnn.cli.common import DURATION  # noqa: E402
from charnn.data.batches import BatchStreams, eval_chunks, split_train_val  # noqa: E402
from charnn.data.corpora import find_corpus  # noqa: E402
from charnn.data.encoded import encode_corpus  # noqa: E402
from charnn.train.schedule import learning_rate  # noqa: E402


def parse_model(spec: str) -> dict:
    """'lstm:2x256:0.2' -> model lstm, 2 layers of 256, dropout 0.2; 'mlp:3x512:0.2:16' also sets
    the MLP's context to 16 characters (dropout and context optional)."""
    parts = spec.split(":")
    layers, hidden = (int(v) for v in parts[1].split("x"))
    model = {"model": parts[0], "layers": layers, "hidden": hidden, "dropout": float(parts[2]) if len(parts) > 2 else 0.0}
    if len(parts) > 3:
        model["context"] = int(parts[3])
    return model


def run_charnn(corpus: str, spec: dict, budget: float, common: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:  # compile and calibrate this shape first: a one-off per machine
        train(TrainConfig(corpus=corpus, steps=1, eval_chars=100, out=os.path.join(tmp, "w.npz"), **spec, **common))
    with tempfile.TemporaryDirectory() as tmp, OtherLoad() as load:
        result = train(TrainConfig(corpus=corpus, budget=budget, out=os.path.join(tmp, "m.npz"), **spec, **common))
    regularisers = {k: common[k] for k in ("ema", "weight_decay", "weight_drop") if common.get(k)}  # the row records them
    return {"engine": "charnn", **regularisers, "steps": result.step, "best_val": result.best_val, "chars_per_s": round(result.chars_per_s),
            "val_history": result.val_history, "ema_history": result.ema_history, "other_load": load.fraction}


def run_torch(corpus: str, spec: dict, budget: float, common: dict, threads: int = 2) -> dict:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    encoded = encode_corpus(corpus)
    V = len(encoded.vocab)
    train_ids, val_ids = split_train_val(encoded.ids, common.get("val_frac", 0.1))
    B, T = common["batch_size"], common["seq_len"]
    streams = BatchStreams(train_ids, B, T)
    model = _torch_model(dict(spec, vocab_size=V, embed=common["embed"]), seed=common["seed"])  # charnn's twin
    fresh = model.initial_state

    def detach(s):
        return tuple(x.detach() for x in s) if isinstance(s, tuple) else s.detach()

    def validate(model) -> float:
        model.eval()
        total, count, state = 0.0, 0, None
        with torch.no_grad():
            for batch, reset in eval_chunks(val_ids, B, T):
                x, y = (torch.from_numpy(a.astype(np.int64)) for a in batch)
                if reset:
                    state = fresh(x.shape[0])
                logits, state = model(x, state)
                total += F.cross_entropy(logits.reshape(-1, V), y.reshape(-1), reduction="sum").item()
                count += y.numel()
        model.train()
        return total / count

    optimizer = torch.optim.Adam(model.parameters(), lr=common["lr"])
    step, best, history, train_s = 0, math.inf, [], 0.0
    state = fresh(B)
    with OtherLoad() as load:
        started = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            chunk = step % streams.chunks_per_epoch
            if chunk == 0:
                state = fresh(B)
            x, y = (torch.from_numpy(a.astype(np.int64)) for a in streams.batch(chunk))
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, common["lr"], schedule="cosine", chunks_per_epoch=streams.chunks_per_epoch,
                                            total_steps=10**12, min_lr=common["min_lr"], progress=(time.perf_counter() - started) / budget)
            logits, new_state = model(x, state)
            loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), common["clip"])
            optimizer.step()
            state = detach(new_state)
            step += 1
            train_s += time.perf_counter() - t0
            out_of_time = time.perf_counter() - started >= budget
            if step % common["eval_every"] == 0 or out_of_time:
                v = validate(model)
                history.append((step, v))
                best = min(best, v)
            if out_of_time:
                break
    return {"engine": "torch", "torch": torch.__version__, "steps": step, "best_val": best,
            "chars_per_s": round(step * B * T / train_s), "val_history": history, "other_load": load.fraction}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", help="a corpus file, or a shipped corpus name (shakespeare, latex, linux)")
    ap.add_argument("--budget", default="10m", help="wall-clock time per run (90s, 10m, 1.5h)")
    ap.add_argument("--model", action="append", default=[], help="cell:LxH[:dropout[:context]], e.g. lstm:2x256:0.2, mlp:3x512:0.2:16 (repeatable)")
    ap.add_argument("--torch", action="store_true", help="also train PyTorch's twin of each recurrent model")
    ap.add_argument("--torch-only", action="store_true", help="train only PyTorch's twins (charnn's runs are on record)")
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.0)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--weight-drop", type=float, default=0.0, help="DropConnect on each recurrent layer's Wh (charnn's runs only)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    corpus = args.corpus if os.path.exists(args.corpus) else find_corpus(args.corpus + ".txt")
    if corpus is None:
        sys.exit(f"corpus {args.corpus!r} not found (set CHARNN_CORPORA)")
    budget = DURATION.convert(args.budget, None, None)
    common = dict(embed=args.embed, batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr, min_lr=args.min_lr,
                  eval_every=args.eval_every, seed=args.seed, clip=5.0)
    has_torch, torch_note = torch_available()
    for spec in map(parse_model, args.model or ["lstm:2x256:0.2"]):
        runs = [] if args.torch_only else [
            ("charnn", lambda: run_charnn(corpus, spec, budget, dict(common, ema=args.ema, weight_decay=args.weight_decay, weight_drop=args.weight_drop)))]
        if (args.torch or args.torch_only) and spec["model"] != "mlp":
            runs.append(("torch", lambda: run_torch(corpus, spec, budget, common) if has_torch else {"engine": "torch", "error": torch_note}))
        for _, run in runs:
            row = {"corpus": os.path.basename(corpus), "budget_s": budget, **spec, **common, "cpu": _cpu_model(), **run()}
            if row.get("best_val") is not None:
                row["best_val_bits"] = row["best_val"] / math.log(2)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
