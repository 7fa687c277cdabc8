"""archspec weights export: canonical weights in each framework's own format, loaded
by the committed generated file with the line its docstring shows, and nothing else."""

from __future__ import annotations

import ast
import importlib

import numpy as np
import pytest
from click.testing import CliRunner

from archspec import runtime
from archspec import weights as W
from archspec.cli import main
from archspec.codegen.common import NATIVE_WEIGHTS
from archspec.codegen.model import class_name
from archspec.pipeline import compile_spec
from archspec.runtime import TARGETS
from tests.conftest import ROOT, SPECS, load_generated

# target -> (the name the loading line uses, the module it names)
FRAMEWORKS = {"pytorch": ("torch", "torch"), "tensorflow": ("tf", "tensorflow"), "keras": ("keras", "keras")}
FRAMEWORKS["chainer"] = ("chainer", "chainer")


def export(npz, name: str, target: str, out, *extra: str):
    args = ["weights", "export", str(npz), "--spec", str(SPECS / f"{name}.yaml"), "-t", target, "-o", str(out)]
    return CliRunner().invoke(main, [*args, *extra])


def loading_line(name: str, target: str) -> str:
    """The line of the generated file's docstring that loads exported weights."""
    doc = ast.get_docstring(ast.parse((ROOT / "generated" / name / f"{name}_{target}.py").read_text()))
    lines = [line.strip() for line in doc.splitlines() if line.startswith("    ")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lenet", "resnet18"])
@pytest.mark.parametrize("target", TARGETS)
def test_the_generated_file_loads_the_export_with_its_framework_alone(name, target, tmp_path, monkeypatch):
    compiled = compile_spec(SPECS / f"{name}.yaml")
    weights = W.random_weights(compiled, 0)
    W.save(tmp_path / "w.npz", weights)
    suffix = NATIVE_WEIGHTS[target][0]
    result = export(tmp_path / "w.npz", name, target, tmp_path / f"{name}{suffix}")
    assert result.exit_code == 0, result.output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left

    module = load_generated(name, target)
    model = getattr(module, class_name(name))()
    framework = runtime.get(target)  # imports the framework
    line = loading_line(name, target)
    assert f'"{name}{suffix}"' in line
    monkeypatch.chdir(tmp_path)
    alias, framework_module = FRAMEWORKS[target]
    exec(line, {alias: importlib.import_module(framework_module), "model": model})

    reference = framework.build(module, class_name(name))
    framework.load_weights(reference, weights)
    x = np.random.default_rng(0).random((2, *compiled.graph.input_shape), dtype=np.float32)
    for got, want in zip(framework.run(model, x), framework.run(reference, x)):
        np.testing.assert_array_equal(got, want)


def test_export_refuses_bad_input(tmp_path):
    compiled = compile_spec(SPECS / "lenet.yaml")
    W.save(tmp_path / "w.npz", W.random_weights(compiled, 0))
    result = export(tmp_path / "w.npz", "lenet", "keras", tmp_path / "lenet.h5")
    assert result.exit_code == 1 and "*.weights.h5" in result.output
    result = export(tmp_path / "none.npz", "lenet", "pytorch", tmp_path / "lenet.pt")
    assert result.exit_code == 1 and "no such weights file" in result.output
    result = export(tmp_path / "w.npz", "lenet", "pytorch", tmp_path / "lenet.pt", "--set", "num_classes=10")
    assert result.exit_code == 1 and "weights do not fit" in result.output and "fc3.weight" in result.output
    assert "the weights hold 2 classes, spec lenet as compiled has 10: give --set num_classes=2" in result.output
    result = export(tmp_path / "w.npz", "lenet", "pytorch", tmp_path / "lenet.pt", "--input", "3x64x64")
    assert result.exit_code == 1 and "fc1.weight: shape (120, 400) given" in result.output
    assert "trained with another --input than 3x64x64; give the --input they were trained with" in result.output
    result = export(tmp_path / "w.npz", "zfnet", "pytorch", tmp_path / "zfnet.pt")
    assert result.exit_code == 1 and "weights do not fit" in result.output
    assert "they are the weights of another network" in result.output and "give the --spec" in result.output
    assert not (tmp_path / "lenet.pt").exists() and not (tmp_path / "zfnet.pt").exists()
