"""Learning per step, not per second: charnn's LSTM and its PyTorch twin trained on the same streams
at a constant rate, no evaluation, printing the mean training loss of every 50 steps. The tool
behind "The forget gate's bias" in bench/README.md.

    python bench/learning.py --steps 400 --variant charnn --variant torch
    python bench/learning.py --variant charnn:forget1 --variant torch:forget1

Variants: charnn (its initialisation, every bias 0), charnn:forget1 (the LSTM forget gate's bias
at 1, charnn's initialisation until 2026-12-02), charnn:uniform (biases U(-k, k) + U(-k, k),
k = 1/sqrt(H), as PyTorch's two bias vectors sum to), torch (PyTorch's own initialisation),
torch:forget1 (PyTorch with charnn's former biases). One JSON line per variant.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from charnn.config import ModelConfig, init_params
from charnn.data.batches import BatchStreams, split_train_val
from charnn.data.corpora import find_corpus
from charnn.data.encoded import encode_corpus
from charnn.model import CharModel
from charnn.train.loop import train_step
from charnn.train.optim import make_optimizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import _torch_model  # noqa: E402  the PyTorch twin bench/speed.py and bench/budget.py use

WINDOW = 50


def charnn_losses(variant, streams, V, vocab, a, seed):
    cfg = ModelConfig(model="lstm", hidden=a.hidden, layers=a.layers, embed=a.embed, dropout=a.dropout, vocab_size=V)
    rng = np.random.default_rng(seed)
    params = init_params(cfg, rng)
    k = 1 / np.sqrt(a.hidden)
    for l in range(a.layers):
        b = params[f"layer{l}.b"]
        if variant == "charnn:forget1":
            b[a.hidden:2 * a.hidden] = 1.0  # gate blocks i, f, o, g
        elif variant == "charnn:uniform":
            b[:] = rng.uniform(-k, k, b.shape) + rng.uniform(-k, k, b.shape)
    model = CharModel(cfg, vocab, params, backend="numba")
    optimizer = make_optimizer("adam", model.params, a.lr, model.ops)
    state, dropout_rng, losses = model.initial_state(a.batch_size), np.random.default_rng(seed + 1), []
    with model.ops.prepare(model.config, a.batch_size, a.seq_len):
        for step in range(a.steps):
            chunk = step % streams.chunks_per_epoch
            if chunk == 0:
                state = model.initial_state(a.batch_size)
            x, y = streams.batch(chunk)
            loss, _, state = train_step(model, optimizer, x, y, state, lr=a.lr, clip=5.0, dropout_rng=dropout_rng)
            losses.append(loss)
    return losses


def torch_losses(variant, streams, V, a, seed):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(2)
    H = a.hidden
    model = _torch_model(dict(model="lstm", vocab_size=V, embed=a.embed, hidden=H, layers=a.layers, dropout=a.dropout), seed=seed)
    if variant == "torch:forget1":
        with torch.no_grad():
            for name, p in model.rnn.named_parameters():
                if "bias" in name:
                    p.zero_()
                if "bias_ih" in name:
                    p[H:2 * H] = 1.0
    optimizer = torch.optim.Adam(model.parameters(), lr=a.lr)
    state, losses = None, []
    for step in range(a.steps):
        chunk = step % streams.chunks_per_epoch
        if chunk == 0:
            state = None
        x, y = (torch.from_numpy(v.astype(np.int64)) for v in streams.batch(chunk))
        logits, new_state = model(x, state)
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        state = tuple(s.detach() for s in new_state)
        losses.append(loss.item())
    return losses


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="shakespeare")
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    a = ap.parse_args(argv)
    corpus = find_corpus(a.corpus + ".txt") or a.corpus
    encoded = encode_corpus(corpus)
    V = len(encoded.vocab)
    train_ids, _ = split_train_val(encoded.ids, 0.1)
    for variant in a.variant or ["charnn", "torch"]:
        streams = BatchStreams(train_ids, a.batch_size, a.seq_len)
        if variant.startswith("charnn"):
            losses = charnn_losses(variant, streams, V, encoded.vocab, a, a.seed)
        else:
            losses = torch_losses(variant, streams, V, a, a.seed)
        means = [round(float(np.mean(losses[i:i + WINDOW])), 4) for i in range(0, a.steps, WINDOW)]
        print(json.dumps({"variant": variant, "corpus": a.corpus, "steps": a.steps, "seed": a.seed,
                          f"mean_loss_per_{WINDOW}_steps": means}), flush=True)


if __name__ == "__main__":
    main()
