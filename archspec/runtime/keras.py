"""Keras runtime: layer names are IR paths, weights in Keras' layouts.

A generated Keras model is a functional ``keras.Model`` whose layers are named
after the IR nodes they implement (``layer1.0.conv1``); a layer's weight is the
canonical key ``<layer name>.<canonical weight name>``. :data:`LAYOUTS` maps
(layer class, Keras weight name) to the canonical weight name and the layout:

=====================  ==================  ===================  ======================
layer                  Keras weight        canonical            Keras layout
=====================  ==================  ===================  ======================
Conv2D                 kernel, bias        weight, bias         (kh, kw, in/g, out)
DepthwiseConv2D        kernel, bias        weight, bias         (kh, kw, in, m)
SeparableConv2D        depthwise_kernel    depthwise.weight     (kh, kw, in, m)
                       pointwise_kernel    pointwise.weight     (1, 1, in*m, out)
                       bias                pointwise.bias
Conv1D                 kernel, bias        weight, bias         (k, in/g, out)
Dense                  kernel, bias        weight, bias         (in, out)
BatchNormalization     gamma, beta,        weight, bias,
                       moving_mean,        running_mean,
                       moving_variance     running_var
LayerNormalization     gamma, beta         weight, bias
GroupNormalization     gamma, beta         weight, bias         (instance norm)
Conv2DTranspose        kernel, bias        weight, bias         (kh, kw, out, in)
LayerScale             weight              weight               (channels,)
=====================  ==================  ===================  ======================

A weight that no entry covers is an error, never a guess. Flatten needs no
permutation of dense weights: the generated code permutes the tensor to
channels-first before flattening.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import keras
import numpy as np

from archspec.passes.expand import MAX_NODES
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

TARGET = "keras"

_NORM = {"gamma": ("weight", IDENTITY), "beta": ("bias", IDENTITY)}
_BIAS = ("bias", IDENTITY)

LAYOUTS: dict[str, dict[str, tuple[str, Layout]]] = {
    "Conv2D": {"kernel": ("weight", HWIO), "bias": _BIAS},
    "DepthwiseConv2D": {"kernel": ("weight", DEPTHWISE), "bias": _BIAS},
    "SeparableConv2D": {
        "depthwise_kernel": ("depthwise.weight", DEPTHWISE),
        "pointwise_kernel": ("pointwise.weight", HWIO),
        "bias": ("pointwise.bias", IDENTITY),
    },
    "Conv1D": {"kernel": ("weight", WIO), "bias": _BIAS},
    "Conv2DTranspose": {"kernel": ("weight", HWIO), "bias": _BIAS},
    "LayerScale": {"weight": ("weight", IDENTITY)},
    "Dense": {"kernel": ("weight", IO), "bias": _BIAS},
    "BatchNormalization": {
        **_NORM,
        "moving_mean": ("running_mean", IDENTITY),
        "moving_variance": ("running_var", IDENTITY),
    },
    "LayerNormalization": _NORM,
    "GroupNormalization": _NORM,
}


def slots(model: keras.Model) -> dict[str, Slot]:
    out: dict[str, Slot] = {}
    for layer in model.layers:
        kind = type(layer).__name__
        for w in layer.weights:
            name = w.name.rsplit("/", 1)[-1]
            rule = LAYOUTS.get(kind, {}).get(name)
            if rule is None:
                raise WeightError(
                    f"Keras layer {layer.name} ({kind}) has a weight {name!r} with no rule in "
                    "archspec.runtime.keras.LAYOUTS"
                )
            canonical, layout = rule
            key = f"{layer.name}.{canonical}"
            if key in out:
                raise WeightError(f"two Keras weights map to {key}")
            out[key] = Slot(tuple(w.shape), layout, lambda w=w: np.asarray(w.numpy()), w.assign)
    return out


def load_weights(model: keras.Model, weights: Weights) -> None:
    load_slots(slots(model), weights, f"the Keras model {model.name}")


def export_weights(model: keras.Model) -> Weights:
    return export_slots(slots(model))


@contextlib.contextmanager
def _deep_graphs() -> Iterator[None]:
    """Room for Keras' functional graph, which it walks recursively, a frame
    or so per layer: Python's default limit of 1,000 frames stops a chain of
    about 1,000 layers. The limit is raised to cover archspec's node limit."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 5 * MAX_NODES))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def build(module: ModuleType, class_name: str, **kwargs: Any) -> keras.Model:
    with _deep_graphs():
        return getattr(module, class_name)(**kwargs)


def param_counts(model: keras.Model) -> tuple[int, int]:
    count = lambda ws: sum(int(np.prod(w.shape)) for w in ws)  # noqa: E731
    return count(model.trainable_weights), count(model.non_trainable_weights)


def _numpy(out) -> list[np.ndarray]:
    outs = out if isinstance(out, (list, tuple)) else [out]
    return [channels_first(np.asarray(keras.ops.convert_to_numpy(o))) for o in outs]


def run(model: keras.Model, x: np.ndarray) -> list[np.ndarray]:
    with _deep_graphs():
        return _numpy(model(channels_last(np.asarray(x, dtype=np.float32)), training=False))


@contextlib.contextmanager
def softmax_bypassed() -> Iterator[None]:
    """``keras.layers.Softmax`` (what the generated code uses) as the identity."""
    call = keras.layers.Softmax.call
    keras.layers.Softmax.call = lambda self, inputs, mask=None: inputs
    try:
        yield
    finally:
        keras.layers.Softmax.call = call


def intermediates(model: keras.Model, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run once and return every layer's output by layer name (an IR path),
    channels-first: the same functional graph with every layer's output as an
    output of its own. The crop after a transposed convolution (``up.crop``)
    holds the output of its node (``up``)."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    with _deep_graphs():
        probe = keras.Model(model.input, [layer.output for layer in layers])
        values = _numpy(probe(channels_last(np.asarray(x, dtype=np.float32)), training=False))
    found = {layer.name: v for layer, v in zip(layers, values, strict=True)}
    for name in [n for n in found if n.endswith(".crop")]:
        found[name.removesuffix(".crop")] = found.pop(name)
    return found
