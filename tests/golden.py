"""The golden set: numbers that a change of code layout must not change.

For each model type (rnn, lstm, gru, mlp) and both backends: the 30 training losses and the
validation losses of a fixed-seed run on generated text, and a seeded 300-character sample from the
trained model; and the validation loss of each shipped checkpoint on its corpus's last 10%.

The numbers are bit-exact only for one machine and library set: the numba backend compiles for the
host CPU and computes each matrix product with its tiles or with BLAS, as the machine's calibration
chose, and numpy's OpenBLAS picks its kernels from the CPU. So the file records the conditions it
was made under (`fingerprint()`, and per run the products' choices), and tests/test_golden.py
demands equality where they match and float32-rounding agreement of the losses elsewhere.

A change that alters the numerics on purpose (another summation order, another tanh) rewrites the
file in the same commit and says why:

    python tests/golden.py --write           # then review `git diff tests/golden.json`
    python tests/readme_samples.py --write   # README's sample outputs: exact on the same machine
"""
from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden.json")
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)  # conftest's make_text, when run as a script

from conftest import make_text, shared_corpora_dir  # noqa: E402

import charnn  # noqa: E402

TEXT_CHARS, TEXT_SEED = 20_000, 3
# small models with every feature a run touches: two layers, embeddings, dropout (lstm), one-hot (rnn)
RUNS = {
    "rnn": dict(model="rnn", hidden=48, layers=2, embed=0, batch_size=8, seq_len=32),
    "lstm": dict(model="lstm", hidden=48, layers=2, embed=16, dropout=0.1, batch_size=8, seq_len=32),
    "gru": dict(model="gru", hidden=48, layers=2, embed=16, batch_size=8, seq_len=32),
    "mlp": dict(model="mlp", hidden=48, layers=2, embed=16, context=4, batch_size=8, seq_len=32),
}
BACKENDS = ("numpy", "numba")
STEPS, EVAL_EVERY, SAMPLE_LENGTH = 30, 10, 300
SHIPPED = ("shakespeare", "latex", "linux")


def fingerprint() -> dict:
    """What the bit-exact numbers depend on besides charnn's code."""
    import numba

    cpu, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name") and cpu == "unknown":
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    from charnn.backend.numba.target import describe

    return {"cpu": cpu, "avx512f": "avx512f" in flags, "numpy": np.__version__, "numba": numba.__version__,
            "CHARNN_GEMM": os.environ.get("CHARNN_GEMM"), **describe()}


def products_during(f, *args):
    """(f(*args), how the numba backend computes products outside training: "tiles" or "blas")."""
    from charnn.backend.numba import gemm

    result = f(*args)
    return result, gemm.decisions()["in effect"]


def training_run(kind: str, backend: str, folder: str) -> dict:
    corpus = os.path.join(folder, "golden.txt")
    if not os.path.exists(corpus):
        with open(corpus, "w", encoding="utf-8") as f:
            f.write(make_text(TEXT_CHARS, TEXT_SEED))
    config = charnn.TrainConfig(corpus=corpus, steps=STEPS, eval_every=EVAL_EVERY, seed=7, backend=backend,
                                out=os.path.join(folder, f"{kind}-{backend}.npz"), **RUNS[kind])
    result = charnn.train(config)
    sample = result.model.sample(SAMPLE_LENGTH, temperature=0.9, seed=11)
    return {"losses": [float(x) for x in result.losses], "val": [[s, float(v)] for s, v in result.val_history],
            "sample": sample, "products": result.products}


def shipped_losses_of(name: str) -> float | None:
    """Mean nats/char of the shipped checkpoint on the last 10% of its corpus (None: corpus absent)."""
    corpora = shared_corpora_dir()
    path = corpora and os.path.join(corpora, name + ".txt")
    if not path or not os.path.isfile(path):
        return None
    model = charnn.load(os.path.join(REPO, "checkpoints", name + ".npz"))
    ids = model.vocab.encode(charnn.read_corpus(path), name)
    val = ids[int(round(len(ids) * 0.9)):]
    return float(model.mean_loss(val))


def compute(shipped: bool = True) -> dict:
    with tempfile.TemporaryDirectory(prefix="charnn-golden-") as folder:
        runs = {f"{kind}/{backend}": training_run(kind, backend, folder) for kind in RUNS for backend in BACKENDS}
    losses, products = {}, {}
    for name in SHIPPED if shipped else ():
        losses[name], products[name] = products_during(shipped_losses_of, name)
    return {"fingerprint": fingerprint(), "runs": runs, "shipped": losses, "shipped_products": products}


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    golden = compute()
    with open(GOLDEN, "w", encoding="utf-8") as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {GOLDEN}: {len(golden['runs'])} runs, shipped {golden['shipped']}")
