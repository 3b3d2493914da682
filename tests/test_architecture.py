"""The package's shape: layers import downward only, no import cycle, numba only in its backend,
and the CLI's defaults are TrainConfig's.

Every import is read from the source with `ast`, those inside functions included, so an import
hidden in a function body cannot carry a cycle or an upward dependency past this test."""
import ast
import os
from dataclasses import fields

import click
import pytest

PACKAGE = os.path.join(os.path.dirname(__file__), "..", "charnn")

# The layers, bottom first: a module may import its own layer and the layers below it. A module
# belongs to the layer of the longest prefix listed here.
LAYERS = [
    ["charnn.errors", "charnn.version"],  # what everything may use
    ["charnn.files", "charnn.archive", "charnn.memory"],  # atomic writes; the checkpoint file format; memory checks, CPU counts
    ["charnn.nn"],  # the numpy reference math
    ["charnn.config"],  # model configuration and parameter shapes
    ["charnn.data"],  # vocabulary, batches, encoded corpora, the corpus registry
    ["charnn.backend"],  # backend selection; the numba backend
    ["charnn.sampling"],  # pick and the reference sampling loop
    ["charnn.model"],  # the models
    ["charnn.checkpoint", "charnn.gradcheck"],  # loading models; whole-model gradient checks
    ["charnn.train"],  # optimizers, schedules, the configuration and the loop
    ["charnn.baseline"],  # n-gram baselines on the trainer's split (its val_frac default)
    ["charnn.compile"],  # compiling ahead of time (runs training steps)
    ["charnn.viz", "charnn.lessons"],  # inside a model (features, cells, gates, the page, plots); the lecture as lessons
    ["charnn.cli"],  # one module per command
    ["charnn", "charnn.__main__"],  # the public API
]


def module_name(path: str) -> str:
    rel = os.path.relpath(path, os.path.dirname(PACKAGE))[: -len(".py")].split(os.sep)
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def modules() -> dict[str, str]:
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                found[module_name(os.path.join(folder, f))] = os.path.join(folder, f)
    return found


MODULES = modules()


def imports(name: str, path: str) -> set[str]:
    """The charnn modules `name` imports (resolving relative imports; `from a import b` names the
    module a.b when that is a module, else a)."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    out = set()
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            for a in node.names:
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base)
    return {m for m in out if m == "charnn" or m.startswith("charnn.")}


GRAPH = {name: imports(name, path) - {name} for name, path in MODULES.items()}


def layer(name: str) -> int:
    best = max((p for l in LAYERS for p in l if name == p or name.startswith(p + ".")), key=len)
    return next(i for i, l in enumerate(LAYERS) if best in l)


def test_every_module_has_a_layer():
    for name in MODULES:
        layer(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_layers(name):
    upward = [m for m in GRAPH[name] if layer(m) > layer(name)]
    assert not upward, f"{name} (layer {layer(name)}) imports {upward} from higher layers"


def test_no_import_cycle():
    done, path = set(), []

    def visit(m):
        if m in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
        if m in done:
            return
        path.append(m)
        for n in sorted(GRAPH.get(m, ())):
            visit(n)
        path.pop()
        done.add(m)

    for m in sorted(GRAPH):
        visit(m)


def test_numba_is_imported_only_in_its_backend():
    for name, path in MODULES.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            if any(n == "numba" or n.startswith("numba.") for n in names):
                assert name.startswith("charnn.backend.numba"), f"{name} imports numba"


def test_importing_charnn_loads_neither_numba_nor_changes_the_environment():
    import subprocess
    import sys

    code = ("import os, sys; before = dict(os.environ); import charnn; "
            "print('numba' in sys.modules, dict(os.environ) == before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


def test_the_cli_defaults_are_train_configs():
    from charnn.cli.train import train
    from charnn.train import TrainConfig

    defaults = {f.name: f.default for f in fields(TrainConfig)}
    options = [p for p in train.params if isinstance(p, click.Option) and p.name in defaults]
    assert len(options) == len(defaults) - 1  # every field but corpus, which is the argument
    for p in options:
        assert p.default == defaults[p.name], p.name
