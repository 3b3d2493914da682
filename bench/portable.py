"""The portable-speed report in one command: bench/peak.py (the machine's multiply-add and read
rates); bench/speed.py natively and on an AVX2-only target, --runs times each, alternating;
bench/step_profile.py of LSTM 2x256 both ways and natively with LLVM's vectoriser allowed 512-bit
vectors, --runs times each, alternating; bench/sample_profile.py (the weights a sampled character
reads); the products the calibration chose on each target. Then one JSON line per configuration on
stdout with every run's ratios, one with the step profiles' times, and one ("portable_bounds")
with what the machine allows next to what ran (and, with --markdown, the ratios as a table on
stderr, for a note, then the calibration's decisions each configuration ran with on each target,
then issue 11's targets against this run and the read rates behind sampling's). --no-bounds skips peak.py and sample_profile.py (about 3 minutes).

    python bench/portable.py                                  # five configurations, two runs each way
    python bench/portable.py --runs 1 --configs lstm-2x256 --markdown
    python bench/portable.py --isas native,avx2,sse4 --no-profile --markdown

The AVX2 target is what a laptop without AVX-512 runs: numba's target forced to haswell, OpenBLAS
to its Haswell kernels, PyTorch held to AVX2 (AVX2_ENV). On request (--isas), sse4 is a CPU
without AVX at all (SSE4_ENV: nehalem, OpenBLAS's Nehalem kernels, PyTorch's default ones). Raw rows go to --out-dir as
<date>-<cpu>-<isa>-run<r>.jsonl, <date>-<cpu>-step-profile-<isa>[-run<r>].jsonl, <date>-<cpu>-peak.jsonl,
<date>-<cpu>-sample-profile.jsonl and <date>-<cpu>-decisions.json, where <cpu> is the CPU's model name and LLVM's name for its core
("amd-epyc-znver3"). Nothing else may run while it times: each row records the CPU time
other processes took.

LLVM tunes Intel cores with AVX-512 to prefer 256-bit vectors. charnn's products, cell kernels and
sampling products use explicit 512-bit vectors whatever the tuning, but the loops left to the
vectoriser (Adam, the loss, packing, the embedding's scatter-add) get 256-bit ones there. The
"native-wide" profile measures what 512-bit vectors would still bring: the host's own features
with "-prefer-256-bit" added (numba's NUMBA_CPU_FEATURES, for this child only). Where the tuning
has no such preference (AMD) it compiles the same code, and the two profiles differ only by noise.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
AVX2_ENV = {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "", "OPENBLAS_CORETYPE": "Haswell",
            "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
# a CPU without AVX (Nehalem; today's Celeron and Pentium Silver laptops): SSE4.2, no FMA
SSE4_ENV = {"NUMBA_CPU_NAME": "nehalem", "NUMBA_CPU_FEATURES": "", "OPENBLAS_CORETYPE": "Nehalem",
            "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}
ISAS = {"native": {}, "avx2": AVX2_ENV, "sse4": SSE4_ENV}
DEFAULT_ISAS = ("native", "avx2")  # sse4 on request (--isas)
LABELS = {"native": "native", "avx2": "AVX2", "sse4": "SSE4.2"}
# what the calibration chose, printed by a child in the target's environment
DECISIONS = ("import json; from charnn.backend.numba import policy; "
             "print(json.dumps({'key': policy.key(), 'shapes': policy.TABLE.known(), 'sampling': policy.TABLE.sampling()}))")


PROFILES = ("native", "avx2", "native-wide")  # the step profile's targets: ISAS and the 512-bit vectoriser


def wide_env() -> dict:
    """The native target with LLVM's vectoriser allowed 512-bit vectors (see the module's docstring)."""
    import llvmlite.binding as llvm

    return {"NUMBA_CPU_FEATURES": llvm.get_host_cpu_features().flatten() + ",-prefer-256-bit"}


def isa_env(isa: str, base=None) -> dict:
    """The environment of a child process timing on `isa` ("native", "avx2" or "native-wide")."""
    return {**(os.environ if base is None else base), **(wide_env() if isa == "native-wide" else ISAS[isa])}


def _rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def summarise(runs: dict) -> list[dict]:
    """{(isa, run): speed.py rows} -> one dict per configuration: each run's training and sampling
    ratios (charnn / PyTorch), both sides' GFLOP/s and sampling rates, by isa, in run order; the most CPU any other
    process took in any of its rows; the LLVM target of each isa; the calibration's decision for
    the shape and batch-1 sampling's stored thread count on each isa, as its last run had them."""
    out: dict[str, dict] = {}
    for (isa, _run), rows in sorted(runs.items(), key=lambda kv: (kv[0][1], list(ISAS).index(kv[0][0]))):
        for row in rows:
            if row.get("kind") != "speed":
                continue
            s = out.setdefault(row["config"], {"config": row["config"], "cpu": row.get("env", {}).get("cpu"), "llvm_cpu": {},
                                                "train_ratio": {}, "sample_ratio": {}, "charnn_gflop_per_s": {},
                                                "torch_gflop_per_s": {}, "charnn_sample_chars_per_s": {},
                                                "torch_sample_chars_per_s": {}, "max_other_cpu_fraction": 0.0,
                                                "decision": {}, "sample_threads": {}})
            s["llvm_cpu"][isa] = row.get("env", {}).get("llvm_cpu")
            s["decision"][isa] = row.get("charnn_decision")
            s["sample_threads"][isa] = row.get("charnn_sample_threads_stored")
            for field, key in (("train_ratio", "train_ratio_charnn_over_torch"), ("sample_ratio", "sample_ratio_charnn_over_torch"),
                               ("charnn_gflop_per_s", "charnn_train_gflop_per_s_median"), ("torch_gflop_per_s", "torch_train_gflop_per_s_median"),
                               ("charnn_sample_chars_per_s", "charnn_sample_chars_per_s_median"),
                               ("torch_sample_chars_per_s", "torch_sample_chars_per_s_median")):
                value = row.get(key)
                s[field].setdefault(isa, []).append(None if value is None else round(float(value), 3))
            s["max_other_cpu_fraction"] = max(s["max_other_cpu_fraction"], *(row.get(k) or 0.0 for k in (
                "charnn_other_processes_cpu_fraction", "torch_other_processes_cpu_fraction")))
    return list(out.values())


def _cell(values) -> str:
    return " / ".join("-" if v is None else f"{v:.2f}" for v in values or [])


def markdown(summary: list[dict], isas=DEFAULT_ISAS) -> str:
    """The summary as a table: ratios run by run on each isa (training, then sampling), GFLOP/s
    of the first native run after native training."""
    heads = [f"train, {LABELS[i]}" for i in isas] + [f"sample, {LABELS[i]}" for i in isas]
    if "native" in isas:
        heads.insert(isas.index("native") + 1, "GFLOP/s charnn / PyTorch")
    lines = ["| config | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for s in summary:
        cells = [_cell(s["train_ratio"].get(i)) for i in isas] + [_cell(s["sample_ratio"].get(i)) for i in isas]
        if "native" in isas:
            g, t = ((s[k].get("native") or [None])[0] for k in ("charnn_gflop_per_s", "torch_gflop_per_s"))
            cells.insert(isas.index("native") + 1, "-" if g is None or t is None else f"{g:.0f} / {t:.0f}")
        lines.append(f"| {s['config']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def decisions_markdown(summary: list[dict], isas=DEFAULT_ISAS) -> str:
    """The calibration's decisions behind the table, per configuration and isa: the products
    (tiles or BLAS, thread count, time loops split by rows, products with A packed) and batch-1
    sampling's thread count."""
    lines = ["| config | " + " | ".join(f"decisions, {LABELS[i]}" for i in isas) + " |", "|---|" + "---|" * len(isas)]
    for s in summary:
        cells = []
        for isa in isas:
            decided, threads = s.get("decision", {}).get(isa), s.get("sample_threads", {}).get(isa)
            cells.append("; ".join(x for x in (decided, None if threads is None else f"sampling on {threads} thread{'s' * (threads != 1)}") if x) or "-")
        lines.append(f"| {s['config']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


TARGETS = {"train_native": 1.1, "train_avx2": 1.2, "sample": 10.0, "peak_fraction": 0.6}  # issue 11's


def _median(values: list):
    values = [v for v in values or [] if v is not None]
    return statistics.median(values) if values else None


def bounds(summary: list[dict], peak_rows: list[dict], sample_rows: list[dict]) -> dict:
    """What the machine allows, next to what ran (issue 11's targets): the tile's multiply-add rate
    on all threads (bench/peak.py) and each configuration's best native training GFLOP/s as a
    fraction of it; for sampling, the weights one character reads (bench/sample_profile.py), the
    read rate charnn's native sampling rate implies (median of the runs), the rate 10x PyTorch's
    would need, and what one thread and all of numba's threads read at that size (peak.py: its
    array size nearest the weights'). Sampling cannot reach 10x where the rate
    needed exceeds what all the threads read; below that, what else a character costs is in
    sample_profile.py's rows (the head, the draw, the threads' meetings)."""
    fma = next((r for r in peak_rows if r.get("kind") == "fma"), {})
    peak = max((v for k, v in fma.items() if k.startswith("gflop_per_s_")), default=None)
    memory = sorted((r for r in peak_rows if r.get("kind") == "memory"), key=lambda r: r["mb"])

    def read_at(mb, field):  # peak.py's rate at the array size nearest mb (by ratio)
        rates = [(abs(math.log(r["mb"] / mb)), r[field]) for r in memory if field in r]
        return min(rates)[1] if rates else None

    together = next((k for r in memory for k in r if k.startswith("read_gb_per_s_")), None)
    weight_mb = {r["config"]: r.get("weight_mb") for r in sample_rows if r.get("kind") == "sample_profile"}
    configs = {}
    for s in summary:
        name, mb = s["config"], weight_mb.get(s["config"])
        best = max((g for g in s["charnn_gflop_per_s"].get("native") or [] if g is not None), default=None)
        charnn, torch = (_median(s[k].get("native")) for k in ("charnn_sample_chars_per_s", "torch_sample_chars_per_s"))
        configs[name] = {
            "train_gflop_per_s": best, "peak_fraction": None if best is None or not peak else round(best / peak, 3),
            "weight_mb": mb, "sample_gb_per_s": None if mb is None or charnn is None else round(mb * charnn / 1e3, 1),
            "gb_per_s_for_10x": None if mb is None or torch is None else round(mb * TARGETS["sample"] * torch / 1e3, 1),
            "one_thread_read_gb_per_s": read_at(mb, "read_gb_per_s") if mb else None,
            "all_threads_read_gb_per_s": read_at(mb, together) if mb and together else None}
    return {"fma_gflop_per_s": peak, "fma_threads": next((k.split("_")[3] for k in fma if k.startswith("gflop_per_s_") and fma[k] == peak), None),
            "memory": memory, "configs": configs}


def targets_markdown(summary: list[dict], found: dict, isas=DEFAULT_ISAS) -> str:
    """issue 11's targets against this run: the lowest ratio of any run, and where sampling misses
    10x, the read rates behind it (bounds)."""
    lines = []

    def lowest(field, isa):
        runs = [(min(v for v in s[field].get(isa) or [] if v is not None), s["config"]) for s in summary
                if any(v is not None for v in s[field].get(isa) or [])]
        return min(runs) if runs else None

    for field, isa, target in (("train_ratio", "native", TARGETS["train_native"]), ("train_ratio", "avx2", TARGETS["train_avx2"]),
                               ("sample_ratio", "native", TARGETS["sample"])):
        low = lowest(field, isa) if isa in isas else None
        if low is not None:
            what = "training" if field == "train_ratio" else "sampling"
            lines.append(f"- {what}, {LABELS[isa]}: >= {target:g}x PyTorch in every run: {'yes' if low[0] >= target else 'no'}"
                         f" (lowest {low[0]:.2f}, {low[1]})")
    peak = found.get("fma_gflop_per_s")
    trained = {name: c["train_gflop_per_s"] for name, c in found["configs"].items() if c["train_gflop_per_s"]}
    if peak and trained:  # the target's own configuration where it ran, else the fastest
        name = "lstm-2x512" if "lstm-2x512" in trained else max(trained, key=trained.get)
        lines.append(f"- the tile's multiply-adds (bench/peak.py): {peak:.0f} GFLOP/s on {found['fma_threads']} threads; "
                     f"{name} trained at up to {trained[name]:.0f} GFLOP/s, {trained[name] / peak:.0%} of it "
                     f"(issue 11 asks {TARGETS['peak_fraction']:.0%} of the nominal peak for lstm-2x512)")
    rows = [(name, c) for name, c in found["configs"].items() if c["weight_mb"] is not None]
    if rows:
        lines += ["", "| config | weights read a character, MB | charnn's sampling reads, GB/s | 10x PyTorch needs, GB/s "
                  "| one thread reads, GB/s | all threads read, GB/s |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {name} | {c['weight_mb']:.2f} | {c['sample_gb_per_s']} | {c['gb_per_s_for_10x']} "
                  f"| {c['one_thread_read_gb_per_s']} | {c['all_threads_read_gb_per_s']} |" for name, c in rows]
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", (text or "cpu").lower()).strip("-")


def _run(args: list, isa: str, say) -> str:
    say(f"[{isa}] " + ("the calibration's table" if args[0] == "-c" else " ".join(Path(args[0]).name if i == 0 else x for i, x in enumerate(args))))
    done = subprocess.run([sys.executable, *args], env=isa_env(isa), capture_output=True, text=True, cwd=HERE.parent)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise SystemExit(f"Error: {Path(args[0]).name} failed on {isa}: {last}")
    return done.stdout


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=2, help="speed.py runs on each target, alternating")
    p.add_argument("--configs", default=None, help="passed to speed.py (default: its five)")
    p.add_argument("--out-dir", default=str(HERE / "results"), help="where the raw rows go")
    p.add_argument("--no-profile", action="store_true", help="skip the LSTM 2x256 step profiles")
    p.add_argument("--no-bounds", action="store_true", help="skip bench/peak.py and bench/sample_profile.py (natively, once)")
    p.add_argument("--isas", default=",".join(DEFAULT_ISAS),
                   help=f"targets to time, alternating (of {', '.join(ISAS)}; sse4: a CPU without AVX)")
    p.add_argument("--markdown", action="store_true", help="also print the summary as a table on stderr")
    a = p.parse_args(argv)
    isas = tuple(dict.fromkeys(i.strip() for i in a.isas.split(",") if i.strip()))
    if not isas or any(i not in ISAS for i in isas):
        p.error(f"--isas takes a comma-separated list of {', '.join(ISAS)}, not {a.isas!r}")
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    key = json.loads(_run(["-c", DECISIONS], "native", say))["key"]
    # the model name alone can be vague ("AMD EPYC" on Zen 3, 4 and 5 VMs alike): LLVM's name says which core
    prefix = Path(a.out_dir) / f"{datetime.date.today().isoformat()}-{_slug(key['cpu_model'])}-{_slug(key.get('llvm_cpu'))}"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    speed = [str(HERE / "speed.py"), "--no-startup"] + (["--configs", a.configs] if a.configs else [])
    peak_rows = []
    if not a.no_bounds:  # first: the machine's ceilings, as quiet as the rest
        out = _run([str(HERE / "peak.py")], "native", say)
        Path(f"{prefix}-peak.jsonl").write_text(out)
        peak_rows = _rows(out)
    runs = {}
    for run in range(1, a.runs + 1):
        for isa in isas:
            out = _run(speed, isa, say)
            Path(f"{prefix}-{isa}-run{run}.jsonl").write_text(out)
            runs[(isa, run)] = _rows(out)
    profiles = {}  # isa -> the step profile's rows, run by run (alternating: the VM drifts by ~10%)
    if not a.no_profile:
        for run in range(1, a.runs + 1):
            for isa in PROFILES:
                out = _run([str(HERE / "step_profile.py"), "--configs", "lstm-2x256", "--steps", "40"], isa, say)
                Path(f"{prefix}-step-profile-{isa}" + (f"-run{run}" if a.runs > 1 else "") + ".jsonl").write_text(out)
                profiles.setdefault(isa, []).extend(r for r in _rows(out) if r.get("kind") == "profile")
    sample_rows = []
    if not a.no_bounds:
        out = _run([str(HERE / "sample_profile.py")] + (["--configs", a.configs] if a.configs else []), "native", say)
        Path(f"{prefix}-sample-profile.jsonl").write_text(out)
        sample_rows = _rows(out)
    decisions = {isa: json.loads(_run(["-c", DECISIONS], isa, say)) for isa in isas}
    Path(f"{prefix}-decisions.json").write_text(json.dumps(decisions, indent=1, sort_keys=True))
    summary = summarise(runs)
    for s in summary:
        print(json.dumps({"kind": "portable", **s}))
    if profiles:
        print(json.dumps({"kind": "portable_profile", "config": "lstm-2x256",
                          "step_ms": {isa: [r.get("step_ms") for r in rows] for isa, rows in profiles.items()}}))
    found = bounds(summary, peak_rows, sample_rows) if not a.no_bounds else None
    if found:
        print(json.dumps({"kind": "portable_bounds", **found}))
    if a.markdown:
        say(markdown(summary, isas))
        say("\n" + decisions_markdown(summary, isas))
        if found:
            say("\n" + targets_markdown(summary, found, isas))
    say(f"raw rows: {prefix}-*")


if __name__ == "__main__":
    main()
