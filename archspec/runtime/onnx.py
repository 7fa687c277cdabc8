"""ONNX runtime: the generated PyTorch model, exported to ONNX and run in onnxruntime.

The onnx target has no code of its own. Its model is the generated PyTorch
model (:data:`CODE`), into which canonical weights load as they do in
:mod:`archspec.runtime.pytorch`; :func:`run` exports it as ``archspec export
--format onnx`` does (:func:`archspec.export.onnx.to_onnx`: dynamo exporter,
dynamic batch axis, checked with ``onnx.checker``) and runs the ONNX model in
onnxruntime on the CPU (``CPUExecutionProvider``). So what ``archspec verify``
compares is the exported file against the PyTorch code it came from.

Parameter counts are not the ONNX model's to give: the exporter folds batch
norm into the convolutions, so its tensors are not the network's parameters;
:func:`param_counts` returns ``(None, None)`` and verify shows ``-``.
:func:`softmax_bypassed` replaces every ``Softmax`` node of the ONNX graph by
``Identity``. :func:`intermediates` records nothing: after the folding, a
convolution's value in the graph is its batch norm's, so values named by the
exporter's module scopes would not be the nodes' values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from archspec.export.onnx import require, to_onnx
from archspec.weights import Weights

require(("torch", "onnx", "onnxscript", "onnxruntime"))

import onnx  # noqa: E402
import onnxruntime  # noqa: E402
import torch  # noqa: E402

from archspec.runtime import pytorch  # noqa: E402

TARGET = "onnx"
CODE = "pytorch"  # the generated code this target runs
_bypass = False


@dataclass
class OnnxModel:
    """A generated PyTorch model and, once run, its ONNX export and sessions."""

    torch_model: torch.nn.Module
    proto: onnx.ModelProto | None = None
    sessions: dict[bool, onnxruntime.InferenceSession] = field(default_factory=dict)  # by softmax bypassed

    def session(self, input_shape: tuple[int, ...]) -> onnxruntime.InferenceSession:
        if self.proto is None:
            self.proto = to_onnx(self.torch_model, input_shape, outputs=None).model_proto
            onnx.checker.check_model(self.proto)
        if _bypass not in self.sessions:
            proto = without_softmax(self.proto) if _bypass else self.proto
            self.sessions[_bypass] = onnxruntime.InferenceSession(
                proto.SerializeToString(), providers=["CPUExecutionProvider"]
            )
        return self.sessions[_bypass]


def without_softmax(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of an ONNX model whose Softmax nodes are Identity."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for node in copy.graph.node:
        if node.op_type == "Softmax":
            node.op_type = "Identity"
            del node.attribute[:]
    return copy


def build(module: ModuleType, class_name: str, **kwargs: Any) -> OnnxModel:
    return OnnxModel(pytorch.build(module, class_name, **kwargs))


def load_weights(model: OnnxModel, weights: Weights) -> None:
    pytorch.load_weights(model.torch_model, weights)
    model.proto, model.sessions = None, {}  # export again, with these weights


def export_weights(model: OnnxModel) -> Weights:
    return pytorch.export_weights(model.torch_model)


def param_counts(model: OnnxModel) -> tuple[None, None]:
    return None, None


def run(model: OnnxModel, x: np.ndarray) -> list[np.ndarray]:
    x = np.ascontiguousarray(x, dtype=np.float32)
    session = model.session(x.shape[1:])
    return session.run(None, {session.get_inputs()[0].name: x})


@contextlib.contextmanager
def softmax_bypassed() -> Iterator[None]:
    """Run the ONNX graph with every Softmax node replaced by Identity."""
    global _bypass
    _bypass = True
    try:
        yield
    finally:
        _bypass = False


def intermediates(model: OnnxModel, x: np.ndarray) -> dict[str, np.ndarray]:
    return {}
