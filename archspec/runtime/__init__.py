"""Running generated models: weights in and out, inference, intermediate values.

One module per target (:mod:`archspec.runtime.pytorch`, ``.tensorflow``,
``.keras``, ``.chainer``; ``.onnx`` runs the PyTorch code exported to ONNX),
each driven only by the naming conventions of the generated code (attribute,
variable, layer and link names are IR paths) and one table of layouts. The
generated files stay standalone: nothing here is imported by them. Every
module offers the same functions:

``load_weights(model, weights)``
    Copy a canonical weight set (:mod:`archspec.weights`) into a model. Every
    tensor the model holds must be given, with its canonical shape, and nothing
    else: a missing key, an unexpected key or a wrong shape raises
    :class:`~archspec.weights.WeightError` listing them all, before anything
    is changed.
``export_weights(model) -> dict``
    The model's tensors as a canonical weight set.
``build(module, class_name, **kwargs)``
    The model of a generated module, ready for inference; ``kwargs`` go to its
    constructor (``logits=True``, see :func:`archspec.codegen.model.has_logits_switch`).
``param_counts(model) -> (trainable, non_trainable)``
``run(model, x) -> list[numpy.ndarray]``
    Inference on a channels-first float32 batch; outputs channels-first.
``softmax_bypassed()``
    A context in which every softmax of the framework is the identity.
``intermediates(model, x) -> dict``
    One more run that records the output of every module, layer or link named
    by an IR path (node or block), as channels-first arrays.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from archspec.codegen import DERIVED, EMITTERS
from archspec.weights import Weights, match

TARGETS = tuple(EMITTERS)


def get(target: str) -> ModuleType:
    """The runtime module of a target (importing its framework: TensorFlow's C++
    start-up messages off unless TF_CPP_MIN_LOG_LEVEL says otherwise, and
    chainer's own import warnings silenced)."""
    if target not in TARGETS and target not in DERIVED:
        raise ValueError(f"unknown target {target!r}; choose from {', '.join([*TARGETS, *DERIVED])}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(f"archspec.runtime.{target}")


# ----------------------------------------------------------------------------
# Layouts: how a framework stores a canonical tensor


@dataclass(frozen=True)
class Layout:
    """Native layout of a tensor: ``to_native(canonical, native_shape)`` maps the
    canonical array to it, ``to_canonical(native)`` back."""

    name: str
    to_native: Callable[[np.ndarray, tuple[int, ...]], np.ndarray]
    to_canonical: Callable[[np.ndarray], np.ndarray]

    def canonical_shape(self, native: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(self.to_canonical(np.empty(native, dtype=np.float32)).shape)


def transpose(*axes: int) -> Layout:
    """native = canonical.transpose(axes)."""
    back = tuple(int(a) for a in np.argsort(axes))
    return Layout(f"transpose{axes}", lambda a, shape: a.transpose(axes), lambda a: a.transpose(back))


def _dw_to_native(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    kh, kw, c, m = shape
    return a.reshape(c, m, kh, kw).transpose(2, 3, 0, 1)


def _dw_to_canonical(a: np.ndarray) -> np.ndarray:
    kh, kw, c, m = a.shape
    return a.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw)


IDENTITY = Layout("identity", lambda a, shape: a, lambda a: a)
# Convolution kernels (out, in / groups, kh, kw) <-> (kh, kw, in / groups, out) (HWIO).
HWIO = transpose(2, 3, 1, 0)
# 1-D convolution kernels (out, in / groups, k) <-> (k, in / groups, out).
WIO = transpose(2, 1, 0)
# Dense weights (out, in) <-> kernels (in, out).
IO = transpose(1, 0)
# Depthwise kernels (in * m, 1, kh, kw) <-> (kh, kw, in, m): canonical output
# channel c * m + j is input channel c's j-th filter.
DEPTHWISE = Layout("depthwise", _dw_to_native, _dw_to_canonical)


# ----------------------------------------------------------------------------
# Slots: one tensor of a model, wherever it lives


@dataclass
class Slot:
    """A tensor of a model: its native shape and layout, how to read and write it."""

    native_shape: tuple[int, ...]
    layout: Layout
    read: Callable[[], np.ndarray]
    write: Callable[[np.ndarray], None]

    @property
    def canonical_shape(self) -> tuple[int, ...]:
        return self.layout.canonical_shape(self.native_shape)


def load_slots(slots: Mapping[str, Slot], weights: Mapping[str, np.ndarray], what: str) -> None:
    """Check, then write: nothing is written unless every key and shape fits."""
    match({k: s.canonical_shape for k, s in slots.items()}, weights, what)
    for key, slot in slots.items():
        value = slot.layout.to_native(np.asarray(weights[key], dtype=np.float32), slot.native_shape)
        slot.write(np.ascontiguousarray(value))


def export_slots(slots: Mapping[str, Slot]) -> Weights:
    """Copies, never views of the model's own memory (which training goes on changing)."""
    return {
        key: np.array(slot.layout.to_canonical(np.asarray(slot.read())), dtype=np.float32, order="C", copy=True)
        for key, slot in slots.items()
    }


def channels_first(a: np.ndarray) -> np.ndarray:
    """An NHWC (N, H, W, C) or NLC (N, L, C) array as NCHW / NCL; vectors as they are."""
    return np.moveaxis(a, -1, 1) if a.ndim >= 3 else a


def channels_last(a: np.ndarray) -> np.ndarray:
    return np.moveaxis(a, 1, -1) if a.ndim >= 3 else a
