"""TensorFlow runtime: ``tf.Variable`` names are the canonical keys, in TF's layouts.

The generated layer classes (``tf.Module`` subclasses) keep their tensors in
attributes and name each variable after its canonical key; each class's
docstring states its layout, and :data:`LAYOUTS` is the same table in code:
(layer class, attribute) -> layout. A variable that no entry covers is an
error, never a guess. Blocks are modules and stages ``Sequential``s (or lists) of modules at their
IR paths (a ``Sequential``'s layer i at its path ``.i``), so the modules of a
model are found by walking its attributes.

Models run eagerly here (``tf.config.run_functions_eagerly``): tracing a deep
network into a graph costs more than running it once, and eager execution is
what lets :func:`softmax_bypassed` and :func:`intermediates` see every call.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import tensorflow as tf

from archspec.runtime import (
    DEPTHWISE,
    HWIO,
    IDENTITY,
    IO,
    WIO,
    Layout,
    Slot,
    channels_first,
    channels_last,
    export_slots,
    load_slots,
)
from archspec.weights import WeightError, Weights

TARGET = "tensorflow"

LAYOUTS: dict[tuple[str, str], Layout] = {
    ("Conv2D", "kernel"): HWIO,
    ("Conv2D", "bias"): IDENTITY,
    ("DepthwiseConv2D", "kernel"): DEPTHWISE,
    ("DepthwiseConv2D", "bias"): IDENTITY,
    ("SeparableConv2D", "depthwise_kernel"): DEPTHWISE,
    ("SeparableConv2D", "pointwise_kernel"): HWIO,
    ("SeparableConv2D", "bias"): IDENTITY,
    ("Conv1D", "kernel"): WIO,
    ("Conv1D", "bias"): IDENTITY,
    ("Dense", "kernel"): IO,
    ("Dense", "bias"): IDENTITY,
    ("BatchNorm", "gamma"): IDENTITY,
    ("BatchNorm", "beta"): IDENTITY,
    ("BatchNorm", "moving_mean"): IDENTITY,
    ("BatchNorm", "moving_variance"): IDENTITY,
    ("LayerNorm", "gamma"): IDENTITY,
    ("LayerNorm", "beta"): IDENTITY,
    ("InstanceNorm", "gamma"): IDENTITY,
    ("InstanceNorm", "beta"): IDENTITY,
    ("Conv2DTranspose", "kernel"): HWIO,
    ("Conv2DTranspose", "bias"): IDENTITY,
    ("LayerScale", "weight"): IDENTITY,
}


def modules(model: tf.Module) -> dict[str, tf.Module]:
    """Every module of the model by attribute path (``layer1.0.conv1``): the IR
    path of the block or layer it implements."""
    found: dict[str, tf.Module] = {}
    seen: set[int] = set()

    def walk(obj: object, path: str) -> None:
        if isinstance(obj, tf.Module):
            if id(obj) in seen:
                return
            seen.add(id(obj))
            if path:
                found[path] = obj
            for name, value in vars(obj).items():
                # Sequential's and a sequential block's layer lists: layer i is path.i
                if name == "layers" and isinstance(value, list):
                    walk(value, path)
                elif not name.startswith("_"):
                    walk(value, f"{path}.{name}" if path else name)
        elif isinstance(obj, (list, tuple)):
            for i, value in enumerate(obj):
                walk(value, f"{path}.{i}")

    walk(model, "")
    return found


def _key(v: tf.Variable) -> str:
    return v.name.removesuffix(":0")


def slots(model: tf.Module) -> dict[str, Slot]:
    owner: dict[int, tuple[str, str]] = {}
    for module in modules(model).values():
        for attr, value in vars(module).items():
            if isinstance(value, tf.Variable):
                owner[id(value)] = (type(module).__name__, attr)
    out: dict[str, Slot] = {}
    for v in model.variables:
        key = _key(v)
        where = owner.get(id(v))
        layout = LAYOUTS.get(where) if where else None
        if layout is None:
            raise WeightError(
                f"TensorFlow variable {key} ({where[0] + '.' + where[1] if where else 'outside any layer'}) "
                "has no layout rule in archspec.runtime.tensorflow.LAYOUTS"
            )
        if key in out:
            raise WeightError(f"two TensorFlow variables are named {key}")
        out[key] = Slot(tuple(v.shape), layout, v.numpy, v.assign)
    return out


def load_weights(model: tf.Module, weights: Weights) -> None:
    load_slots(slots(model), weights, f"the TensorFlow model {type(model).__name__}")


def export_weights(model: tf.Module) -> Weights:
    return export_slots(slots(model))


def build(module: ModuleType, class_name: str, **kwargs: Any) -> tf.Module:
    return getattr(module, class_name)(**kwargs)


def call_training(model: tf.Module, x: tf.Tensor) -> Any:
    """The model's output in training mode: ``training=True`` goes to a model whose
    ``__call__`` takes it; one without batch norm or dropout computes the same either way."""
    if "training" in inspect.signature(model.__call__).parameters:
        return model(x, training=True)
    return model(x)


def param_counts(model: tf.Module) -> tuple[int, int]:
    count = lambda vs: sum(int(np.prod(v.shape)) for v in vs)  # noqa: E731
    return count(model.trainable_variables), count(model.non_trainable_variables)


@contextlib.contextmanager
def eager() -> Iterator[None]:
    before = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(before)


def run(model: tf.Module, x: np.ndarray) -> list[np.ndarray]:
    with eager():
        out = model(tf.constant(channels_last(np.asarray(x, dtype=np.float32))))
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [channels_first(o.numpy()) for o in outs if o is not None]  # (None: a head switched off)


@contextlib.contextmanager
def softmax_bypassed() -> Iterator[None]:
    """``tf.nn.softmax`` (what the generated code calls) as the identity; works
    because :func:`run` executes eagerly."""
    softmax = tf.nn.softmax
    tf.nn.softmax = lambda logits, axis=None, name=None: logits
    try:
        yield
    finally:
        tf.nn.softmax = softmax


def intermediates(model: tf.Module, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run once and return the output of every layer and block module by its
    path, channels-first: the ``__call__`` of their classes is wrapped for the
    run. A module called more than once is left out."""
    found = modules(model)
    by_id = {id(m): path for path, m in found.items()}
    owners = {next(c for c in type(m).__mro__ if "__call__" in c.__dict__) for m in found.values()}
    saved = {cls: cls.__dict__["__call__"] for cls in owners if cls not in (object, tf.Module)}
    seen: dict[str, np.ndarray] = {}
    calls: dict[str, int] = {}

    def wrap(original):
        def __call__(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            path = by_id.get(id(self))
            if path is not None:
                calls[path] = calls.get(path, 0) + 1
                if isinstance(out, tf.Tensor):
                    seen[path] = channels_first(out.numpy())
            return out

        return __call__

    for cls, original in saved.items():
        cls.__call__ = wrap(original)
    try:
        run(model, x)
    finally:
        for cls, original in saved.items():
            cls.__call__ = original
    return {path: v for path, v in seen.items() if calls[path] == 1}
