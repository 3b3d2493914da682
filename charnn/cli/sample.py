"""`charnn sample`: text from a model, streamed to stdout."""
from __future__ import annotations

import json
import os
import re
import sys
import time

import click

from ..backend import BACKENDS, DEFAULT_BACKEND
from ..checkpoint import load
from ..data.text import read_corpus
from ..errors import CharnnError
from ..train.loop import InterruptFlag
from .common import POSITIVE, POSITIVE_FLOAT, fail, say

INTERRUPTED = 130  # 128 + SIGINT, as every charnn command exits on Ctrl-C
FLUSH_EVERY = 256  # characters between flushes of a stream without newlines


PROGRESS_AFTER_S = 1.0  # a warm-up on a prime that takes longer than this shows its progress
PROGRESS_LOG_S = 10.0  # seconds between progress lines when stderr is not a terminal


class PrimeProgress:
    """Tells stderr how the warm-up on a long prime goes once it has taken PROGRESS_AFTER_S: a
    status line redrawn on a terminal, otherwise a line every PROGRESS_LOG_S; and the last."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.t0 = self.shown = None

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        self.t0 = now if self.t0 is None else self.t0
        gap = 0.1 if self.live else PROGRESS_LOG_S
        due = now - self.t0 >= PROGRESS_AFTER_S and (self.shown is None or now - self.shown >= gap)
        if (done < total and due) or (done == total and self.shown is not None):
            line = f"reading the prime: {done:,} of {total:,} characters ({done / total:.0%})"
            end = "\n" if done == total or not self.live else ""
            self.stream.write(("\r" if self.live else "") + line + end)
            self.stream.flush()
            self.shown = now


@click.command()
@click.option("--checkpoint", "-c", type=click.Path(dir_okay=False), default=None, help="Checkpoint path, or a shipped name (shakespeare) [default: the one `charnn train` wrote last, else shakespeare].")
@click.option("--length", "-n", type=click.IntRange(min=0), default=1000, show_default=True, help="Characters to generate; 0: until a --stop string or Ctrl-C, streamed.")
@click.option("--temperature", "-t", type=POSITIVE_FLOAT, default=1.0, show_default=True, help="Below 1: safer, more repetitive; above 1: more surprising. Applied first.")
@click.option("--top-k", type=POSITIVE, default=None, help="Then sample only among the K most likely characters.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=None, help="Then only among the nucleus: the fewest most likely characters whose probabilities add up to at least P (equal ones: the earlier in the vocabulary first).")
@click.option("--argmax", is_flag=True, help="Always take the most likely character (greedy).")
@click.option("--prime", "-p", default="", help="Text to start from (printed first); every character must be in the model's vocabulary.")
@click.option("--prime-file", type=click.Path(), default=None, help="Start from the text of this UTF-8 file (not printed): a long context.")
@click.option("--stop", multiple=True, help="End after the first occurrence of TEXT (printed; it may begin in the prime); \\n is a newline, \\t a tab. Repeatable: the first of any ends it.")
@click.option("--num-samples", "-N", type=POSITIVE, default=1, show_default=True, help="Generate N samples as one batch; sample i is the one --seed S+i gives alone.")
@click.option("--separator", default="---", show_default=True, help="Line printed between samples (--num-samples, --beam).")
@click.option("--beam", type=POSITIVE, default=None, help="Beam search: print the K most likely continuations of --length characters found, best first (deterministic; the model's own probabilities).")
@click.option("--show-logprob", is_flag=True, help="After each sample, its log-probability under the model (natural log, given the prime).")
@click.option("--format", "format_", type=click.Choice(["text", "jsonl"]), default="text", show_default=True, help="jsonl: one JSON object per generated character: sample, char, p (the model's probability of it), logprob (of the sample so far), top (the 5 most likely [char, p]).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed; the same seed gives the same text [default: fresh each run].")
@click.option("--backend", type=click.Choice(BACKENDS), default=DEFAULT_BACKEND, show_default=True, help="numba: compiled sampling loop; numpy: the reference code.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or notices on stderr.")
def sample(checkpoint, length, temperature, top_k, top_p, argmax, prime, prime_file, stop, num_samples, separator,
           beam, show_logprob, format_, seed, backend, quiet):
    """Generate text from a trained model, streamed to stdout as it is produced.

    Each character is drawn from the model's distribution after --temperature, then --top-k, then
    --top-p. --num-samples prints its samples when all are done; --show-logprob, --format jsonl
    and --beam read the model's probabilities at every step, so they run the numpy reference loop
    (the same characters, slower). Ctrl-C ends the output cleanly, with what was generated so far,
    and exit code 130.

    \b
    Examples:
      charnn sample --prime "ROMEO:" --length 500 --temperature 0.8 --seed 1
      charnn sample -c checkpoints/input-lstm.best.npz --top-k 5
      charnn sample --top-p 0.9 --length 0 --stop "\\n\\n"      (until a blank line)
      charnn sample --num-samples 3 --length 200 --seed 7       (seeds 7, 8, 9)
      charnn sample --beam 5 --length 40 --prime "ROMEO:" --show-logprob
      charnn sample --prime-file act1.txt --length 300 --format jsonl
    """
    stop = tuple(unescape(s) for s in stop)
    out = sys.stdout
    written = [0]  # characters of samples written (reported on Ctrl-C)
    try:
        if beam is not None:
            refuse = [name for name, given in (("--temperature", temperature != 1.0), ("--top-k", top_k), ("--top-p", top_p),
                                               ("--argmax", argmax), ("--stop", stop), ("--num-samples", num_samples > 1),
                                               ("--length 0", length == 0)) if given]
            if refuse:
                raise CharnnError(f"--beam ranks fixed-length continuations by the model's own probabilities: "
                                  f"it does not take {', '.join(refuse)}")
        if prime_file is not None:
            if prime:
                raise CharnnError("give --prime or --prime-file, not both")
            prime = read_corpus(prime_file, "prime file")
        shown = "" if prime_file else prime  # a prime file is context, not repeated
        note, progress = (None, None) if quiet else (say, PrimeProgress())
        model = load(checkpoint, backend=backend, note=note)
        options = dict(temperature=temperature, prime=prime, top_k=top_k, argmax=argmax, seed=seed, top_p=top_p, stop=stop)
        if beam is not None:
            _beams(out, model.beam_search(beam, length, prime, progress), shown, separator, show_logprob, format_, written)
        elif format_ == "jsonl":
            _jsonl(out, model.generate_probs(length, num_samples=num_samples, progress=progress, **options), written)
        elif show_logprob:
            records = model.generate_probs(length, num_samples=num_samples, progress=progress, **options)
            _with_logprobs(out, records, num_samples, shown, separator, written)
        elif num_samples > 1:
            pieces = model.generate_many(num_samples, length, progress=progress, note=note, **options)
            _many(out, pieces, num_samples, shown, separator, written)
        else:
            chars = model.generate(length, progress=progress, note=note, **options)
            _stream(out, chars, shown, written)
    except CharnnError as e:
        fail(str(e))
    except KeyboardInterrupt:  # Ctrl-C: what was generated is out; the line is ended
        if not quiet:
            say(f"interrupted after {written[0]:,} characters")
        sys.exit(INTERRUPTED)
    except BrokenPipeError:  # `charnn sample | head` closed the pipe: that is fine
        sys.stderr.close()
        os._exit(0)


def _stream(out, chars, shown, written) -> None:
    """One sample, each character written as it comes. Ctrl-C (or SIGTERM) is a flag checked between
    characters, so it never lands inside a write: what was counted is exactly what was printed."""
    out.write(shown)
    with InterruptFlag() as interrupted:
        try:
            for ch in chars:
                out.write(ch)
                written[0] += 1
                if ch == "\n" or written[0] % FLUSH_EVERY == 0:
                    out.flush()
                if interrupted.set:
                    break
        finally:
            out.write("\n")
            out.flush()
    if interrupted.set:
        raise KeyboardInterrupt


def _print_samples(out, texts, shown, separator, logprobs=None) -> None:
    for i, text in enumerate(texts):
        if i:
            out.write(separator + "\n")
        out.write(shown + text + "\n")
        if logprobs is not None:
            out.write(f"logprob: {logprobs[i]:.4f}\n")
    out.flush()


def _many(out, pieces, num_samples, shown, separator, written) -> None:
    """Several samples generated as a batch, printed when all are done (or at Ctrl-C, as far as they got)."""
    texts = [[] for _ in range(num_samples)]
    try:
        for block in pieces:
            for text, piece in zip(texts, block):
                text.append(piece)
                written[0] += len(piece)
    finally:
        _print_samples(out, ["".join(t) for t in texts], shown, separator)


def _json(record) -> str:
    return json.dumps({**record._asdict(), "top": [list(t) for t in record.top]}, ensure_ascii=False)


def _jsonl(out, records, written) -> None:
    """One JSON object per generated character, as they come."""
    try:
        for record in records:
            out.write(_json(record) + "\n")
            written[0] += 1
    finally:
        out.flush()


def _with_logprobs(out, records, num_samples, shown, separator, written) -> None:
    """Samples as text, each followed by its log-probability: one sample streams, several are
    printed when all are done (or at Ctrl-C, as far as they got)."""
    texts, logprobs = [[] for _ in range(num_samples)], [0.0] * num_samples
    if num_samples == 1:
        out.write(shown)
    try:
        for record in records:
            texts[record.sample].append(record.char)
            logprobs[record.sample] = record.logprob
            written[0] += 1
            if num_samples == 1:
                out.write(record.char)
                if record.char == "\n":
                    out.flush()
    finally:
        if num_samples == 1:
            out.write(f"\nlogprob: {logprobs[0]:.4f}\n")
            out.flush()
        else:
            _print_samples(out, ["".join(t) for t in texts], shown, separator, logprobs)


def _beams(out, beams, shown, separator, show_logprob, format_, written) -> None:
    if format_ == "jsonl":
        _jsonl(out, (record for b in beams for record in b.chars), written)
    else:
        _print_samples(out, [b.text for b in beams], shown, separator, [b.logprob for b in beams] if show_logprob else None)
        written[0] += sum(len(b.text) for b in beams)


def unescape(text: str) -> str:
    """\\n and \\t in a command-line argument stand for a newline and a tab, \\\\ for a backslash."""
    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)
