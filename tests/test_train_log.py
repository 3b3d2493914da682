"""The training log <out>.log.jsonl (charnn.train.log) and `charnn plot`: the lines a run writes,
a resumed run continuing the same series, lines a killed run left behind, and the figures."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import charnn
from charnn.cli import main
from charnn.errors import CharnnError
from charnn.train import Reporter
from charnn.train.log import log_path, read_log
from charnn.viz import plot_logs


def cfg(corpus, out, **kw):
    base = dict(corpus=str(corpus), model="lstm", hidden=16, layers=1, embed=8, batch_size=4, seq_len=16,
                steps=40, eval_every=20, out=str(out), seed=3, backend="numpy")
    base.update(kw)
    return charnn.TrainConfig(**base)


def series(records, event, key):
    return [(r["step"], r[key]) for r in records if r["event"] == event]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """40 steps, validation every 20, a train line every 2 steps (eval_every // 10)."""
    from conftest import make_text

    folder = tmp_path_factory.mktemp("log")
    corpus = folder / "tiny.txt"
    corpus.write_text(make_text(6000))
    result = charnn.train(cfg(corpus, folder / "full.npz"), command="charnn train tiny.txt")
    return corpus, folder, result


def test_a_run_logs_its_progress_and_validation(full_run):
    corpus, folder, result = full_run
    path = folder / "full.log.jsonl"
    assert log_path(str(folder / "full.npz")) == str(path)
    lines = [json.loads(l) for l in path.read_text().splitlines()]
    assert lines[0] == {"event": "start", "step": 0, "time": 0.0, "command": "charnn train tiny.txt"}
    train = [l for l in lines if l["event"] == "train"]
    val = [l for l in lines if l["event"] == "val"]
    assert [l["step"] for l in train] == list(range(2, 41, 2)) and [l["step"] for l in val] == [20, 40]
    for l in train:  # the mean of the two steps' losses since the previous line
        assert l["train_loss"] == pytest.approx(np.mean(result.losses[l["step"] - 2 : l["step"]]), rel=1e-12)
        assert l["train_bits"] == pytest.approx(l["train_loss"] / math.log(2), rel=1e-12)
    assert [(l["step"], l["val_loss"]) for l in val] == result.val_history
    assert val[0]["best"] is True and val[1]["val_bits"] == pytest.approx(val[1]["val_loss"] / math.log(2))
    meta = charnn.archive.read_checkpoint(result.checkpoint)[0]["train"]
    cpe = meta["chunks_per_epoch"]
    for l in train + val:
        assert l["chars"] == l["step"] * 4 * 16 and l["epoch"] == round(l["step"] / cpe, 4)
        assert l["lr"] == 2e-3 and l["chars_per_s"] > 0
    times = [l["time"] for l in lines]
    assert times == sorted(times) and times[-1] > 0


def test_a_resumed_run_continues_the_same_series(full_run, tmp_path):
    """Stopped at step 20, then lines of steps 22-24 that a killed run wrote after its last
    checkpoint, and half a line: the resumed run's log reads as the uninterrupted run's."""
    corpus, folder, _ = full_run
    out = tmp_path / "part.npz"
    charnn.train(cfg(corpus, out, steps=20))
    path = tmp_path / "part.log.jsonl"
    stopped_at = read_log(path)[-1]["time"]
    with open(path, "a") as f:
        for step in (22, 24):
            f.write(json.dumps({"event": "train", "step": step, "train_loss": 9.0, "time": stopped_at + step}) + "\n")
        f.write('{"event": "train", "st')  # cut short by kill -9
    charnn.resume(str(out), steps=40)
    full, part = read_log(folder / "full.log.jsonl"), read_log(path)
    for event, key in (("train", "train_loss"), ("val", "val_loss"), ("train", "chars"), ("val", "lr")):
        assert series(part, event, key) == series(full, event, key), (event, key)
    assert [r["step"] for r in part if r["event"] == "start"] == [0, 20]
    times = [r["time"] for r in part]
    assert times == sorted(times) and part[times.index(max(times))]["step"] == 40
    assert [r for r in part if r["event"] == "start"][1]["time"] == stopped_at  # time goes on from step 20
    raw = path.read_text().splitlines()
    assert raw[-len([r for r in part if r["step"] > 20]) - 2] == '{"event": "train", "st'  # kept, on its own line
    assert json.loads(raw[-1])["step"] == 40


def test_log_failures(full_run, tmp_path, monkeypatch):
    corpus, _, _ = full_run
    os.mkdir(tmp_path / "m.log.jsonl")  # the log's name is taken by a folder
    with pytest.raises(CharnnError, match="cannot write the training log"):
        charnn.train(cfg(corpus, tmp_path / "m.npz", steps=2))

    class FullDisk:  # the log file, whose third line finds the disk full
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, line):
            self.n += 1
            if self.n == 3:
                raise OSError(28, "No space left on device")
            return self.f.write(line)

        def flush(self):
            self.f.flush()

        def close(self):
            self.f.close()

    log = sys.modules["charnn.train.log"]  # the module (charnn.train is the function)
    real_start = log.TrainLog.start

    def start(self, **kw):
        real_start(self, **kw)  # writes the start line
        self.file = FullDisk(self.file)

    class Said(Reporter):
        def __init__(self):
            self.lines = []

        def message(self, text):
            self.lines.append(text)

    monkeypatch.setattr(log.TrainLog, "start", start)
    said = Said()
    result = charnn.train(cfg(corpus, tmp_path / "d.npz", steps=10, eval_every=10), reporter=said)
    assert result.step == 10  # training went on
    assert [l for l in said.lines if "training log" in l] == [
        f"cannot append to the training log {tmp_path / 'd.log.jsonl'} (No space left on device); training goes on without it"]
    assert [r["step"] for r in read_log(tmp_path / "d.log.jsonl")] == [0, 1, 2]  # start, steps 1 and 2
    (tmp_path / "empty.jsonl").write_text("not json\n")
    with pytest.raises(CharnnError, match="holds no training log lines"):
        read_log(tmp_path / "empty.jsonl")


# ---------------------------------------------------------------- charnn plot
def test_plot_draws_a_png_that_is_not_blank(full_run, tmp_path):
    image = pytest.importorskip("matplotlib.image")
    _, folder, _ = full_run
    out = tmp_path / "loss.png"
    plot_logs([folder / "full.log.jsonl"], out)
    px = image.imread(str(out))  # (height, width, RGBA) floats in [0, 1]
    assert px.shape[:2] == (420, 700)  # 7 x 4.2 inches at 100 dpi
    ink = (px[:, :, :3] < 0.9).any(axis=2)
    assert 0.02 < ink.mean() < 0.5  # axes, labels and two curves on a white page
    assert len(np.unique((px[:, :, :3] * 255).astype(int).reshape(-1, 3), axis=0)) > 20
    blue = (px[:, :, 2] > 0.6) & (px[:, :, 0] < 0.3)  # C0, the run's colour, drawn inside the axes
    assert blue[40:360, 80:640].sum() > 300


def test_plot_svg_time_axis_and_several_runs(full_run, tmp_path):
    pytest.importorskip("matplotlib")
    _, folder, _ = full_run
    other = tmp_path / "other.log.jsonl"
    other.write_text("".join(json.dumps({**r, "train_loss": r["train_loss"] + 0.5} if "train_loss" in r else r) + "\n"
                             for r in read_log(folder / "full.log.jsonl")))
    out = tmp_path / "loss.svg"
    plot_logs([folder / "full.log.jsonl", other], out, x="time")
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for label in ("full train", "full validation", "other train", "wall-clock time (s)", "bits/char"):
        assert label in svg
    with pytest.raises(CharnnError, match="name it .png or .svg"):
        plot_logs([other], tmp_path / "loss.jpg")


def test_charnn_plot_command(full_run, tmp_path):
    pytest.importorskip("matplotlib")
    _, folder, _ = full_run
    log = str(folder / "full.log.jsonl")
    r = CliRunner().invoke(main, ["plot", log, "-o", str(tmp_path / "a.png")])
    assert r.exit_code == 0 and os.path.getsize(tmp_path / "a.png") > 5000, r.output
    for args, fragment in (([log, "-o", str(tmp_path / "a.gif")], "name it .png or .svg"),
                           ([str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "b.png")], "cannot read training log")):
        r = CliRunner().invoke(main, ["plot", *args])
        lines = [l for l in r.output.splitlines() if l.strip()]
        assert r.exit_code == 1 and len(lines) == 1 and fragment in lines[0], r.output


def test_charnn_plot_without_matplotlib_says_how_to_get_it(full_run, tmp_path):
    _, folder, _ = full_run
    code = ("import sys; sys.modules['matplotlib'] = None; from charnn.cli import main; "
            f"main(['plot', {str(folder / 'full.log.jsonl')!r}, '-o', {str(tmp_path / 'x.png')!r}])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip() == "Error: drawing plots needs matplotlib: pip install 'charnn[plot]'"
    assert not (tmp_path / "x.png").exists()
