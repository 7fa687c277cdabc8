"""Code generation: the code model, one emitter per target, the writer."""

from __future__ import annotations

from collections.abc import Callable

from archspec.codegen import chainer, keras, pytorch, tensorflow
from archspec.codegen.model import CodeModel

EMITTERS: dict[str, Callable[[CodeModel], str]] = {
    "pytorch": pytorch.emit,
    "tensorflow": tensorflow.emit,
    "keras": keras.emit,
    "chainer": chainer.emit,
}

# Targets without generated code of their own -> the target whose code they run.
DERIVED = {"onnx": "pytorch"}
