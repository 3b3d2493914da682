"""The golden set (tests/golden.py) still holds: training losses, samples and the shipped
checkpoints' validation losses are what they were when tests/golden.json was written; bit for bit
under the same conditions (machine, libraries, and the same tiles-or-BLAS choice for every product)."""
import json

import numpy as np
import pytest

import golden

with open(golden.GOLDEN, encoding="utf-8") as f:
    GOLDEN = json.load(f)
SAME_MACHINE = golden.fingerprint() == GOLDEN["fingerprint"]
ELSEWHERE = ("recorded under other conditions ({}): losses are compared to float32 rounding, samples not"
             .format(GOLDEN["fingerprint"]))


@pytest.mark.parametrize("run", sorted(GOLDEN["runs"]))
def test_training_run_matches_the_golden_set(run, tmp_path):
    kind, backend = run.split("/")
    want = GOLDEN["runs"][run]
    got = golden.training_run(kind, backend, str(tmp_path))
    if SAME_MACHINE and got["products"] == want["products"]:
        assert got["losses"] == want["losses"]
        assert got["val"] == want["val"]
        assert got["sample"] == want["sample"]
    else:
        np.testing.assert_allclose(got["losses"], want["losses"], rtol=1e-4)
        np.testing.assert_allclose([v for _, v in got["val"]], [v for _, v in want["val"]], rtol=1e-4)
        assert len(got["sample"]) == len(want["sample"])


@pytest.mark.parametrize("name", golden.SHIPPED)
def test_shipped_checkpoint_loss_matches_the_golden_set(name):
    want = GOLDEN["shipped"].get(name)
    if want is None:
        pytest.skip(f"the golden set has no loss for {name} (its corpus was absent when it was written)")
    got, products = golden.products_during(golden.shipped_losses_of, name)
    if got is None:
        pytest.skip(f"{name}.txt not found: set CHARNN_CORPORA to a folder holding it")
    if SAME_MACHINE and products == GOLDEN["shipped_products"].get(name):
        assert got == want
    else:
        assert got == pytest.approx(want, rel=1e-5)
