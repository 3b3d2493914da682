"""README's sample outputs are what its commands print with the shipped checkpoints: exactly on
the golden set's machine (tests/golden.py, where both are rewritten together), elsewhere each
command runs and continues its prime (float32 sampling is bit-exact only per machine)."""
import shlex

import pytest

import readme_samples
from test_golden import SAME_MACHINE

with open(readme_samples.README, encoding="utf-8") as f:
    LINES = f.read().split("\n")
SHOWN = readme_samples.shown_samples(LINES)


def test_readme_shows_every_kind_of_sample():
    commands = " ".join(s.command for s in SHOWN)
    assert len(SHOWN) >= 9
    for kind in ("--checkpoint latex", "--checkpoint linux", "--checkpoint shakespeare", "--beam", "--stop",
                 "--num-samples", "--format jsonl", "--show-logprob"):
        assert kind in commands


@pytest.mark.parametrize("shown", SHOWN, ids=[f"line{s.start}" for s in SHOWN])
def test_readme_sample_is_what_the_command_prints(shown):
    old = LINES[shown.start : shown.end]
    got = readme_samples.as_shown(shown, readme_samples.run_sample(shown.command), old)
    if SAME_MACHINE:
        assert got == old, "README is stale: python tests/readme_samples.py --write"
    else:
        args = shlex.split(shown.command, comments=True)
        prime = args[args.index("--prime") + 1] if "--prime" in args else ""
        assert got and (got[0].startswith(prime[:10]) or got[0].startswith('{"sample"'))
