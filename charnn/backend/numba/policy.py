"""How this machine computes the numba backend's matrix products, as measured (calibrate.py) and
remembered: a JSON file in the user's cache folder (`path()`), keyed by everything the answer
depends on (`key()`), so that every run here makes the same choice. The choice changes the float32
rounding, and the same seed must give the same losses.

One choice per training shape (cell, batch, steps, widths), applied to every product of the run,
never a mix: numba's worker threads and OpenBLAS's spin while they wait for work, so on a machine
with few cores a step that alternates between them waits for the scheduler at every switch
(bench/README.md, "Tiles or BLAS"). `charnn compile` measures the default model's shape, which is
also the choice outside training (evaluation); CHARNN_GEMM=tiles or =blas overrides it (gemm.py).
With the tiles, the same measurement keeps the thread count the shape's step runs fastest on:
numba's, or fewer (a small shape on many cores, or more numba threads than the CPUs really
give); CHARNN_TRAIN_THREADS overrides it. The count changes no result.

The same file keeps the thread count batch-1 sampling runs on best, per model shape ("sampling":
serial, or a layer's units split over threads), as `charnn compile` measured it for the default
model and later samples found it (sampler.py): a sample starts from it, so a short one runs at the
better count from its first block. CHARNN_SAMPLE_THREADS overrides it.
"""
from __future__ import annotations

import functools
import json
import os
import sys

import llvmlite
import numba
import numpy as np

from ...files import atomic_write, cache_folder
from ...version import __version__
from . import kernels as K
from .target import cpu_model, target
from .threads import cpus

FILE = "charnn-calibration.json"
DEFAULT = "default"  # the entry of `charnn compile`'s shape: the choice outside training
CHOICES = ("tiles", "blas")
SPLITS = ("panels", "rows")  # how a time loop's threads share a step's work (kernels.py, "whole sequences")


def loop_name(loop: str, D: int, H: int) -> str:
    """A time loop (kernels.<loop>_loop: "lstm_forward", "gru_backward", ...) at input width D and
    hidden width H, as the table names it: "lstm_forward D256 H256"; D = 0 for a first layer,
    which reads ids into a table (nn.layers.Embedded): "lstm_forward ids H256"."""
    return f"{loop} {f'D{D}' if D else 'ids'} H{H}"


def product_name(M: int, K: int, N: int, transposed: bool = True) -> str:
    """A product A (M, K) @ B (K, N) as the table names it: "512x2048x2048 T" where A is transposed
    (column-major, a weight gradient's X.T), "2048x2048x512" where it is read row by row."""
    return f"{M}x{K}x{N}" + " T" * transposed


def path() -> str:
    return os.path.join(cache_folder(), FILE)


@functools.cache  # none of it changes while a process runs
def key() -> dict:
    """What the products' speed depends on besides the shape."""
    return {"charnn": __version__, "cpu_model": cpu_model(), "llvm_cpu": target()["cpu"],
            "llvm_features": target()["features"], "cpus": cpus(), "numba_threads": numba.get_num_threads(),
            "numpy": np.__version__, "numba": numba.__version__, "llvmlite": llvmlite.__version__,
            "python": sys.version.split()[0], "tile": [K.MR, K.NR, K.LANES, K.KB], "splits": list(SPLITS),
            "first_layer": "ids",  # since its loops read ids (loop_name): earlier tables named them by width
            "packing": "every A"}  # since any product's A may be packed (product_name): earlier tables timed X.T's


class Table:
    """The measured choices {shape name: {"choice", "tiles_ms", "blas_ms", "threads", "threads_ms",
    "splits"}}, loaded from and saved to `path()`; and the one in effect in this process (`active`).
    "threads" is the thread count a step of the tiles ran fastest on ("threads_ms": the median
    pass on each count timed); "splits" maps each of the shape's time loops (loop_name) to the
    split that ran it faster, with its timings; "packed" each of its products
    (product_name) to whether packing A first ran it faster ("pack"), with its timings.
    Beside them, the sampling choices {sample shape name: {"threads", "us_per_char"}} (sampling())."""

    def __init__(self):
        self.shapes: dict[str, dict] | None = None
        self.samples: dict[str, dict] | None = None
        self.active: str | None = None  # the shape whose choice applies now; None: DEFAULT
        self.forced_split: str | None = None  # set while calibrate.py times one split against the other
        self.forced_pack: bool | None = None  # set while `charnn compile` runs each way a step can compute

    def _sections(self) -> list:
        """The file's sections, one per machine configuration ({"key", "shapes"}): a machine can
        run several (another NUMBA_CPU_NAME, another thread count)."""
        try:
            with open(path(), encoding="utf-8") as f:
                saved = json.load(f)
        except (OSError, ValueError):
            return []  # none yet, or unreadable: measured again
        sections = saved.get("sections") if isinstance(saved, dict) else None
        return [s for s in sections if isinstance(s, dict) and isinstance(s.get("shapes"), dict)] if isinstance(sections, list) else []

    def _load(self) -> None:
        if self.shapes is None:
            self.shapes, self.samples = {}, {}
            for section in self._sections():
                if section.get("key") == key():
                    self.shapes = {name: row for name, row in section["shapes"].items()
                                   if isinstance(row, dict) and row.get("choice") in CHOICES}
                    samples = section.get("sampling")
                    self.samples = {name: row for name, row in samples.items() if isinstance(row, dict)
                                    and isinstance(row.get("threads"), int) and row["threads"] >= 1} if isinstance(samples, dict) else {}

    def known(self) -> dict:
        self._load()
        return self.shapes

    def sampling(self) -> dict:
        """{sample shape name: {"threads", "us_per_char"}}: batch-1 sampling's measured thread counts."""
        self._load()
        return self.samples

    def record(self, name: str, row: dict) -> None:
        """Keep a measurement, in memory and (quietly nothing where the cache folder is not
        writable: the choice then holds for this process only) on disk."""
        self.known()[name] = row
        self._save()

    def record_sampling(self, name: str, row: dict) -> None:
        """Keep a sampling choice ({"threads": n, "us_per_char": {count: microseconds}}), as record."""
        self.sampling()[name] = row
        self._save()

    def _save(self) -> None:
        others = [s for s in self._sections() if s.get("key") != key()]
        mine = {"key": key(), "shapes": self.known(), "sampling": self.sampling()}
        try:
            with atomic_write(path(), "w", encoding="utf-8") as f:
                json.dump({"sections": others + [mine]}, f, indent=1, sort_keys=True)
        except OSError:
            pass

    def _row(self) -> dict:
        """The measurements of the active shape, else of the default one, else {}."""
        shapes = self.known()
        return shapes.get(self.active) or shapes.get(DEFAULT) or {}

    def current(self) -> str:
        """"tiles" or "blas": the choice for the active shape, else the default shape's, else the
        tiles (a machine that has not been calibrated yet: `charnn compile` or a training run does it)."""
        return self._row().get("choice", "tiles")

    def split(self, loop: str, D: int, H: int) -> str:
        """"panels" or "rows": how the active shape's time loop (see loop_name) splits its work
        over the threads, as measured; "panels" for a loop never measured."""
        if self.forced_split is not None:
            return self.forced_split
        row = self._row()
        found = row.get("splits", {}).get(loop_name(loop, D, H)) if isinstance(row.get("splits"), dict) else None
        return found["split"] if isinstance(found, dict) and found.get("split") in SPLITS else "panels"

    def packs(self, product: str) -> bool:
        """Whether the tiles pack A before the active shape's product (see product_name), as
        measured; False for a product never measured."""
        if self.forced_pack is not None:
            return self.forced_pack
        packed = self._row().get("packed")
        found = packed.get(product) if isinstance(packed, dict) else None
        return isinstance(found, dict) and found.get("pack") is True

    def threads(self) -> int:
        """The thread count the active shape (else the default one) trains fastest on with the
        tiles, as measured (at most numba's); numba's own count where never measured."""
        found, n = self._row().get("threads"), numba.get_num_threads()
        return min(found, n) if isinstance(found, int) and not isinstance(found, bool) and found >= 1 else n

    def forget(self) -> None:
        """Drop what is in memory (the file stays)."""
        self.shapes, self.samples, self.active = None, None, None


TABLE = Table()
