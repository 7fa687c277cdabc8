"""ONNX: `archspec export --format onnx` and the onnx target of `archspec verify`.

Every spec of the zoo is exported (dynamo exporter, checked with
onnx.checker) and run in onnxruntime with the canonical weights, and must give
PyTorch's outputs and pre-softmax values (`verify --targets pytorch,onnx`), at
the smallest square input (or length) its layers take. The export is the cost
and hardly depends on the input: on one core the 30 specs take about 5 CPU
minutes, the four DenseNets half of it (the exporter traces their many
concatenations symbolically). The command line reports the opset written, writes one file whose batch
axis is dynamic, refuses bad input with a message and leaves nothing behind
when the export fails.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from archspec.cli import main
from archspec.diagnostics import SpecError
from archspec.pipeline import compile_spec
from tests.conftest import SPEC_NAMES, SPECS

LENET = str(SPECS / "lenet.yaml")
SIZES = (16, 24, 32, 48, 64, 96, 128, 160, 192, 224)
needs_onnx = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "onnx", "onnxscript", "onnxruntime")),
    reason="the onnx extra is not installed",
)


def run_cli(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


def small_input(name: str) -> str:
    """The smallest square input (or length) from SIZES that the spec's layers take,
    else the spec's own, as --input text."""
    shape = compile_spec(SPECS / f"{name}.yaml").graph.input_shape
    for size in SIZES:
        candidate = (shape[0], *[size] * (len(shape) - 1))
        try:
            compile_spec(SPECS / f"{name}.yaml", input_shape=candidate)
        except SpecError:
            continue
        return "x".join(map(str, candidate))
    return "x".join(map(str, shape))


# ----------------------------------------------------------------------------
# verify --targets pytorch,onnx


@pytest.mark.slow
@needs_onnx
@pytest.mark.parametrize("name", SPEC_NAMES)
def test_zoo_onnx_gives_pytorchs_outputs(name: str) -> None:
    result = run_cli(
        "verify", str(SPECS / f"{name}.yaml"), "--targets", "pytorch,onnx", "--input", small_input(name), "--json"
    )
    assert result.exit_code == 0, result.output
    (spec,) = json.loads(result.output)["specs"]
    pytorch, onnx = spec["targets"]
    assert (pytorch["target"], onnx["target"]) == ("pytorch", "onnx")
    assert onnx["ok"] and onnx["output_shapes"] == spec["expected_output_shapes"]
    assert onnx["trainable"] is None and onnx["non_trainable"] is None  # its tensors are not the parameters
    kinds = {c["kind"] for c in onnx["comparisons"]}
    assert kinds == ({"output", "pre-softmax"} if spec["softmax"] else {"output"})
    assert all(c["max_abs_diff"] <= c["tolerance"] for c in onnx["comparisons"])


@pytest.mark.slow
@needs_onnx
def test_verify_table_has_an_onnx_row() -> None:
    result = run_cli("verify", LENET, "--targets", "onnx", "--input", "3x16x16")
    assert result.exit_code == 0, result.output
    (row,) = [line.split() for line in result.output.splitlines() if line.split()[:1] == ["onnx"]]
    assert row[1:4] == ["2x2", "-", "-"] and row[-1] == "pass"


@pytest.mark.slow
@needs_onnx
def test_verify_fails_when_the_onnx_model_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exported graph with lenet's last bias off by 1e-2: the probabilities
    hide it, the pre-softmax values do not. And a softmax bypass that bypasses
    nothing is caught."""
    import torch

    from archspec.runtime import onnx as onnx_rt
    from archspec.verify import verify

    export = onnx_rt.to_onnx

    def nudged(model, *args, **kwargs):
        with torch.no_grad():
            model.fc3.bias += 1e-2
        return export(model, *args, **kwargs)

    compiled = compile_spec(LENET, input_shape=(3, 16, 16))
    monkeypatch.setattr(onnx_rt, "to_onnx", nudged)
    onnx = verify(compiled, ["onnx"]).targets[1]
    assert not onnx.ok and onnx.worst("output").ok and not onnx.worst("pre-softmax").ok

    monkeypatch.setattr(onnx_rt, "to_onnx", export)
    monkeypatch.setattr(onnx_rt, "without_softmax", lambda proto: proto)
    onnx = verify(compiled, ["onnx"]).targets[1]
    assert not onnx.ok and "output prob: bypassing the softmax changed nothing" in onnx.problems


def test_verify_targets() -> None:
    from archspec.cli import _targets

    assert _targets("all", train=False) == ["pytorch", "tensorflow", "keras", "chainer", "onnx"]
    assert _targets("all", train=True) == ["pytorch", "tensorflow", "keras", "chainer"]
    result = run_cli("verify", LENET, "--train", "--targets", "pytorch,onnx")
    assert result.exit_code == 2 and "--train: onnx runs inference only; drop it from --targets" in result.output
    result = run_cli("verify", LENET, "--targets", "onnx,tflite")
    assert result.exit_code == 2
    assert "unknown target 'tflite'; choose from pytorch, tensorflow, keras, chainer, onnx" in result.output


# ----------------------------------------------------------------------------
# archspec export --format onnx


@pytest.mark.slow
@needs_onnx
def test_export_reports_the_opset_and_the_batch_is_dynamic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx
    import onnxruntime

    monkeypatch.chdir(tmp_path)
    result = run_cli(
        "export", LENET, "--format", "onnx", "--opset", "21", "--input", "3x16x16", "--set", "num_classes=5"
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["exported lenet to ONNX opset 21", "wrote lenet.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.onnx"]  # one file, nothing left over
    model = onnx.load("lenet.onnx")
    onnx.checker.check_model(model)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [21]
    (given,) = model.graph.input
    assert given.name == "input" and given.type.tensor_type.shape.dim[0].dim_param
    assert [o.name for o in model.graph.output] == ["prob"]

    session = onnxruntime.InferenceSession("lenet.onnx", providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    (three,) = session.run(None, {"input": x})
    (one,) = session.run(None, {"input": x[:1]})
    assert three.shape == (3, 5) and one.shape == (1, 5)
    np.testing.assert_allclose(one[0], three[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(three.sum(axis=1), 1, rtol=1e-5)  # the spec's softmax output


@pytest.mark.slow
@needs_onnx
def test_a_failed_export_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """onnx.checker refuses the file after it was written: the previous file at
    -o stays as it was, and no temporary file or folder is left."""
    import onnx

    def refuse(path) -> None:
        raise onnx.checker.ValidationError("Nodes in a graph must be topologically sorted")

    monkeypatch.setattr(onnx.checker, "check_model", refuse)
    out = tmp_path / "lenet.onnx"
    out.write_text("old")
    result = run_cli("export", LENET, "--format", "onnx", "--input", "3x16x16", "-o", str(out))
    assert result.exit_code == 1
    assert "error: torch.onnx could not export lenet: ValidationError: Nodes in a graph" in result.output
    assert "This is a bug in archspec" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["lenet.onnx"] and out.read_text() == "old"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--format", "tflite"], 2, "Invalid value for '--format': 'tflite' is not 'onnx'"),
        ([], 2, "Missing option '--format'"),
        (
            ["--format", "onnx", "--opset", "17"],
            2,
            "opset 17 is not supported: torch's exporter writes opsets 18 to 25",
        ),
        (["--format", "onnx", "--opset", "26"], 2, "opset 26 is not supported"),
        (["--format", "onnx", "--input", "3x8x8"], 1, "error[E402]: conv2:"),
    ],
)
def test_export_usage_errors(args: list[str], code: int, message: str) -> None:
    result = run_cli("export", LENET, *args)
    assert result.exit_code == code, result.output
    assert message in result.output


@needs_onnx
def test_export_refuses_an_unwritable_output(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = run_cli("export", LENET, "--format", "onnx", "-o", str(tmp_path / "file" / "lenet.onnx"))
    assert result.exit_code == 2
    assert f"-o {tmp_path / 'file' / 'lenet.onnx'}: {tmp_path / 'file'} is a file, not a folder" in result.output
    result = run_cli("export", LENET, "--format", "onnx", "-o", str(tmp_path))
    assert result.exit_code == 1
    assert f"error: -o {tmp_path} is a folder; give a file name, e.g. {tmp_path / 'lenet.onnx'}" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_export_names_the_missing_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    result = run_cli("export", LENET, "--format", "onnx", "-o", str(tmp_path / "lenet.onnx"))
    assert result.exit_code == 2  # a missing extra is a usage error, as for every command
    assert "archspec export needs ONNX: pip install 'archspec[onnx]' (not installed: onnxscript)" in result.output
    assert list(tmp_path.iterdir()) == []


def test_the_onnx_target_names_the_missing_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    """What verify's onnx row says when onnxruntime is not installed."""
    import sys

    from archspec import runtime
    from archspec.export.onnx import OnnxExportError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    monkeypatch.delitem(sys.modules, "archspec.runtime.onnx", raising=False)
    with pytest.raises(OnnxExportError, match=r"ONNX needs onnxruntime, .*: pip install 'archspec\[onnx\]'"):
        runtime.get("onnx")
