"""Code generation: the code model, one emitter per target, the writer."""

from __future__ import annotations

from collections.abc import Callable

from archspec.codegen import chainer, keras, pytorch, tensorflow
from archspec.codegen.model import CodeModel, build
from archspec.pipeline import Compiled

EMITTERS: dict[str, Callable[[CodeModel], str]] = {
    "pytorch": pytorch.emit,
    "tensorflow": tensorflow.emit,
    "keras": keras.emit,
    "chainer": chainer.emit,
}

# Targets without generated code of their own -> the target whose code they run.
DERIVED = {"onnx": "pytorch"}


def code_model(compiled: Compiled) -> CodeModel:
    """The code model of ``compiled``, built once however often it is asked
    for (the target checks and the writers share it). Raises CodegenError."""
    if "model" not in compiled.generated:
        compiled.generated["model"] = build(compiled)
    return compiled.generated["model"]


def generate(compiled: Compiled, target: str) -> str:
    """``target``'s source of ``compiled``, unformatted, emitted once however
    often it is asked for. Raises CodegenError."""
    if target not in compiled.generated:
        compiled.generated[target] = EMITTERS[target](code_model(compiled))
    return compiled.generated[target]
