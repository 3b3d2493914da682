"""Faults during training: signals, a full disk, an output folder that cannot be written. Nothing
the user had is lost, and each fault ends in one line and a non-zero exit.

The signal tests run `charnn train` in a subprocess (numpy backend: no compiling to wait for) and
send the signal once its first checkpoint is on disk.
"""
import errno
import os
import signal
import subprocess
import sys
import time

import pytest

import charnn
from charnn.archive import read_checkpoint
from charnn.errors import CheckpointError

SMALL = ["--hidden", "16", "--layers", "1", "--embed", "8", "--batch-size", "4", "--seq-len", "16", "--backend", "numpy"]


def start_training(corpus, out, *extra):
    cmd = [sys.executable, "-m", "charnn", "train", str(corpus), *SMALL, "--steps", "100000", "--eval-every", "5",
           "--out", str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=os.path.dirname(out))


def wait_for(path, proc, timeout=120):
    t0 = time.monotonic()
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, "no checkpoint appeared"
        time.sleep(0.05)
    time.sleep(0.3)  # a few more steps


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_save_and_exit_non_zero(tmp_path, corpus_file, signum):
    out = tmp_path / "m.npz"
    proc = start_training(corpus_file, out)
    wait_for(out, proc)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, (stdout, stderr)
    last = [l for l in stderr.splitlines() if l.strip()][-1]
    assert last.startswith("Error: interrupted; saved") and "--resume" in last and "Traceback" not in stderr
    meta, _ = read_checkpoint(out)
    step = meta["train"]["step"]
    result = charnn.resume(str(out), steps=step + 3)  # what is on disk resumes
    assert result.step == step + 3


def test_kill_9_keeps_the_last_checkpoint_whole(tmp_path, corpus_file):
    out = tmp_path / "m.npz"
    proc = start_training(corpus_file, out)
    wait_for(out, proc)
    time.sleep(0.5)
    proc.kill()
    proc.communicate(timeout=60)
    model = charnn.load(str(out), backend="numpy")  # whole, not half-written
    assert model.config.hidden == 16
    # (a kill during a write may leave a hidden .m.npz.*.tmp beside it; m.npz itself is never touched)
    step = read_checkpoint(out)[0]["train"]["step"]
    assert charnn.resume(str(out), steps=step + 2).step == step + 2


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, corpus_file, monkeypatch):
    """The second checkpoint write fails with ENOSPC: one-line CheckpointError, the first intact."""
    import charnn.archive as archive

    real, calls = archive.np.savez, []

    def savez(f, **arrays):
        calls.append(os.path.basename(f.name))
        if sum(name.startswith(".m.npz.") for name in calls) == 2:  # the second write of m.npz
            f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(f, **arrays)

    monkeypatch.setattr(archive.np, "savez", savez)
    out = tmp_path / "m.npz"
    config = charnn.TrainConfig(corpus=str(corpus_file), hidden=16, layers=1, embed=8, batch_size=4, seq_len=16,
                                steps=10, eval_every=2, backend="numpy", out=str(out))
    with pytest.raises(CheckpointError, match="No space left on device") as e:
        charnn.train(config)
    assert "\n" not in str(e.value)
    monkeypatch.setattr(archive.np, "savez", real)
    assert read_checkpoint(out)[0]["train"]["step"] == 2  # the first checkpoint, whole
    assert sorted(os.listdir(tmp_path)) == sorted(p for p in os.listdir(tmp_path) if not p.startswith(".m.npz."))


def test_an_unwritable_out_is_reported_before_the_first_step(tmp_path, corpus_file):
    (tmp_path / "a-file").write_text("x")
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "charnn", "train", str(corpus_file), *SMALL, "--steps", "100000",
                           "--out", str(tmp_path / "a-file" / "m.npz")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = [l for l in done.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: cannot write checkpoints to"), done.stderr
    assert time.monotonic() - t0 < 60
    # a folder as --out: click's own option check, before anything runs
    done = subprocess.run([sys.executable, "-m", "charnn", "train", str(corpus_file), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "is a directory" in done.stderr and "Traceback" not in done.stderr


def test_an_out_folder_is_refused_in_the_api(tmp_path, corpus_file):
    config = charnn.TrainConfig(corpus=str(corpus_file), steps=2, backend="numpy", out=str(tmp_path))
    with pytest.raises(CheckpointError, match="is a folder"):
        charnn.train(config)


def test_read_only_folder(tmp_path, corpus_file):
    if os.geteuid() == 0:
        pytest.skip("root can write into read-only folders")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    config = charnn.TrainConfig(corpus=str(corpus_file), steps=2, backend="numpy", out=str(folder / "m.npz"))
    with pytest.raises(CheckpointError, match="cannot write checkpoints"):
        charnn.train(config)


def test_two_runs_with_the_same_out_do_not_overwrite_each_other(tmp_path, corpus_file):
    out = tmp_path / "m.npz"
    first = start_training(corpus_file, out)
    wait_for(out, first)
    done = subprocess.run([sys.executable, "-m", "charnn", "train", str(corpus_file), *SMALL, "--steps", "3",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    lines = [l for l in done.stderr.splitlines() if l.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert f"another process (pid {first.pid}) is writing checkpoint" in lines[0]
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=60)
    assert not os.path.exists(str(out) + ".lock")  # released at the end


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, corpus_file):
    out = tmp_path / "m.npz"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "m.npz.lock").write_text(str(dead.pid))
    config = charnn.TrainConfig(corpus=str(corpus_file), hidden=16, layers=1, embed=8, batch_size=4, seq_len=16,
                                steps=2, backend="numpy", out=str(out))
    assert charnn.train(config).step == 2 and not os.path.exists(str(out) + ".lock")
