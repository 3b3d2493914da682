"""Every way of installing charnn carries what it needs: the package list in setup.cfg is whole,
and a wheel holds the three shipped checkpoints, which an install outside the checkout finds
(charnn.checkpoint.shipped_folder, through importlib.resources) and samples from."""
import configparser
import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = ("latex.npz", "linux.npz", "shakespeare.npz")


def test_setup_cfg_lists_every_package():
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    listed = set(config["options"]["packages"].split())
    found = {os.path.relpath(d, REPO).replace(os.sep, ".") for d, _, files in os.walk(os.path.join(REPO, "charnn"))
             if "__init__.py" in files}
    assert listed == found | {"charnn.shipped"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    had_build = os.path.exists(os.path.join(REPO, "build"))
    build = tmp_path_factory.mktemp("build")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "-w", str(out), REPO], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TMPDIR=str(build)))
    if not had_build:  # setuptools builds in the checkout's build/: leave it as it was
        shutil.rmtree(os.path.join(REPO, "build"), ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = glob.glob(str(out / "charnn-*.whl"))
    return path


def test_the_wheel_carries_the_shipped_checkpoints(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n for n in names if n.endswith(".npz")) == [f"charnn/shipped/{n}" for n in SHIPPED]
    assert "charnn/viz/page.html" in names  # the template of `charnn viz`'s page


def test_an_installed_wheel_finds_and_loads_them(wheel, tmp_path):
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), wheel],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    script = ("import charnn, charnn.checkpoint as c; m = charnn.load('latex', backend='numpy'); "
              "print(c.SHIPPED); print(m.config.model, m.config.hidden)")
    run = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(target)))
    assert run.returncode == 0, run.stderr[-2000:]
    folder, model = run.stdout.split("\n")[:2]
    assert folder == str(target / "charnn" / "shipped") and model.startswith("lstm ")


def test_an_installed_wheel_runs_the_lessons(wheel, tmp_path):
    """The lessons need nothing a plain install lacks: no corpus, no compiling, no matplotlib for
    the text; fancy samples the checkpoints the wheel carries."""
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), wheel],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    env = dict(os.environ, PYTHONPATH=str(target))
    run = subprocess.run([sys.executable, "-m", "charnn", "lesson", "chain-rule"], cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0 and "f = q * z = 3 * (-4) = -12" in run.stdout, run.stderr[-2000:]
    script = "import charnn.lessons as l; r = l.fancy.run(length=3); print([len(s.text) for s in r.models[0].samples])"
    run = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), capture_output=True, text=True,
                         timeout=120, env=env)
    assert run.returncode == 0 and run.stdout.strip() == "[9, 9, 9]", run.stderr[-2000:]  # "ROMEO:" + 3
