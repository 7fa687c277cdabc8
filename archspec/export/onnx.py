"""``archspec export --format onnx``: a spec's network as one ONNX file.

The network exported is the spec's generated PyTorch code as compiled
(``--set`` and ``--input`` applied), imported as ``archspec verify`` and the
trainers import it (:func:`archspec.verify.generate`) and built with its
defaults: its outputs are the spec's (a final softmax included), its weights
PyTorch's initial ones. torch.onnx's dynamo exporter writes it (torch 2.13's
default; it needs onnxscript) with one input, ``input`` (N, C, H, W), whose
batch axis N is dynamic, and one output per spec output, named by its IR path.
The exporter folds batch norm into the convolutions before it and drops
dropout, so the file holds fewer tensors than the PyTorch model.

The file is self-contained (weights inside) unless its weights pass 2 GB, the
limit of one protobuf; then they go to ``FILE.data`` beside it. It is checked
with ``onnx.checker.check_model``, written into a temporary folder beside the
destination and moved into place only when complete.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archspec.codegen.model import class_name
from archspec.pipeline import Compiled

if TYPE_CHECKING:
    import torch

# Opsets torch 2.13's exporter writes itself (onnxscript 0.7's converter range).
# Below 18 it would silently write 18; above 25 it falls back to onnx's C converter.
MIN_OPSET, MAX_OPSET = 18, 25
PACKAGES = ("torch", "onnx", "onnxscript")
INSTALL = "pip install 'archspec[onnx]'"
INPUT_NAME = "input"
TRACE_BATCH = 2  # the batch the exporter traces: a batch of 1 would be specialized
WEIGHT_COPIES = 3  # the PyTorch model's, the exported program's and the file's (for the memory estimate)


class OnnxExportError(Exception):
    """The model cannot be exported or written; the message says why and what to do."""


@dataclass(frozen=True)
class OnnxReport:
    """What :func:`export_onnx` wrote."""

    path: Path
    opset: int  # the ONNX opset the file imports
    files: list[Path]  # the .onnx file, and FILE.data if the weights pass 2 GB
    outputs: list[str]


def require(packages: tuple[str, ...] = PACKAGES) -> None:
    """Raise OnnxExportError naming the packages of the onnx extra that are missing."""
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise OnnxExportError(f"ONNX needs {', '.join(missing)}, which is not installed: {INSTALL}")


def check_opset(opset: int | None) -> None:
    if opset is not None and not MIN_OPSET <= opset <= MAX_OPSET:
        raise OnnxExportError(
            f"opset {opset} is not supported: torch's exporter writes opsets {MIN_OPSET} to {MAX_OPSET}; give one"
        )


def to_onnx(model: torch.nn.Module, input_shape: tuple[int, ...], outputs: list[str] | None, opset: int | None = None):
    """Export a PyTorch module in inference mode with the dynamo exporter; return
    its ``torch.onnx.ONNXProgram``; ``outputs`` names the outputs (None: the
    exporter's names). The batch axis is dynamic (traced at :data:`TRACE_BATCH`)."""
    import torch

    model.eval()
    x = torch.zeros((TRACE_BATCH, *input_shape))
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
        warnings.simplefilter("ignore")
        return torch.onnx.export(
            model,
            (x,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=outputs,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            opset_version=opset,
        )


def opset_of(program: Any) -> int:
    """The default-domain opset an exported ``torch.onnx.ONNXProgram`` imports."""
    imports = program.model.opset_imports
    return imports.get("", imports.get("ai.onnx"))


def pytorch_model(compiled: Compiled, directory: Path) -> torch.nn.Module:
    """The spec's generated PyTorch model, its code written to ``directory``."""
    from archspec import runtime
    from archspec.verify import generate

    module = generate(compiled, ["pytorch"], directory)["pytorch"]
    if isinstance(module, str):
        raise OnnxExportError(module)
    return runtime.get("pytorch").build(module, class_name(compiled.graph.name))


def export_onnx(compiled: Compiled, path: Path, opset: int | None = None) -> OnnxReport:
    """Export the spec's generated PyTorch model to ``path``; see the module's
    documentation. Raises OnnxExportError."""
    require()
    check_opset(opset)
    path = Path(path)
    if path.is_dir():
        raise OnnxExportError(f"-o {path} is a folder; give a file name, e.g. {path / compiled.graph.name}.onnx")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise OnnxExportError(f"-o {path}: cannot write there ({exc.strerror}); choose another -o") from None
    with staging as tmp:
        model = pytorch_model(compiled, Path(tmp))
        outputs = list(compiled.graph.outputs)
        staged = Path(tmp) / "out" / path.name
        staged.parent.mkdir()
        try:
            program = to_onnx(model, compiled.graph.input_shape, outputs, opset)
            program.save(staged)  # weights inside, or in FILE.data beside it above 2 GB
            import onnx

            onnx.checker.check_model(str(staged))
        except OSError as exc:
            raise OnnxExportError(f"-o {path}: cannot write there ({exc}); choose another -o") from None
        except Exception as exc:  # the generated code always exports: a bug of archspec's
            raise OnnxExportError(
                f"torch.onnx could not export {compiled.graph.name}: {type(exc).__name__}: {exc}. "
                "This is a bug in archspec, not in your spec; please report it with the spec."
            ) from None
        written = opset_of(program)
        if opset is not None and written != opset:
            raise OnnxExportError(f"--opset {opset}: torch's exporter wrote opset {written}; give --opset {written}")
        moves = [(f, path.parent / f.name) for f in sorted(staged.parent.iterdir())]
        for _, dest in moves:
            if dest.is_dir():
                raise OnnxExportError(f"{dest} is a folder; choose another -o")
        for f, dest in moves:
            os.replace(f, dest)
    return OnnxReport(path, written, [dest for _, dest in moves], outputs)
