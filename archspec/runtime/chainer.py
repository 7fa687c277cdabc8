"""Chainer runtime: link paths are IR paths, tensors in the canonical layouts.

A parameter's path in a generated ``chainer.Chain`` is its canonical key once
Chainer's names are translated (:data:`archspec.codegen.chainer.PARAM_NAMES`):
``/layer1/0/conv1/W`` -> ``layer1.0.conv1.weight``, ``gamma``/``beta`` ->
``weight``/``bias``, and a batch-norm link's persistent ``avg_mean``/``avg_var``
-> ``running_mean``/``running_var``. The generated links keep the canonical
layouts (depthwise convolutions are grouped ``L.Convolution2D``), so every
layout is the identity; :data:`LAYOUTS` says so per name.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

from archspec.codegen.chainer import PARAM_NAMES
from archspec.runtime import IDENTITY, Layout, Slot, export_slots, load_slots
from archspec.weights import WeightError, Weights

TARGET = "chainer"
LAYOUTS: dict[str, Layout] = dict.fromkeys(PARAM_NAMES, IDENTITY)
STATISTICS = ("avg_mean", "avg_var")  # persistent values of a batch-norm link


def _chainer() -> ModuleType:
    """chainer, imported as the generated files do (numpy 2 removed np.sctypes,
    which chainer 7.8.1 reads)."""
    if not hasattr(np, "sctypes"):
        np.sctypes = {"int": [np.int8, np.int16, np.int32, np.int64], "float": [np.float16, np.float32, np.float64]}
    return importlib.import_module("chainer")


def canonical_key(path: str) -> str:
    """Chainer's "/layer1/0/conv1/W" -> the canonical "layer1.0.conv1.weight"."""
    *links, name = path.strip("/").split("/")
    if name not in PARAM_NAMES:
        raise WeightError(f"Chainer parameter {path} has no canonical name (archspec.codegen.chainer.PARAM_NAMES)")
    return ".".join([*links, PARAM_NAMES[name]])


def _set(array):
    def write(value: np.ndarray) -> None:
        array[...] = _chainer().backend.get_device_from_array(array).send(value)  # a GPU array takes a GPU copy

    return write


def _host(array) -> np.ndarray:
    """An array (numpy's, or CuPy's on a GPU) in numpy."""
    return _chainer().backend.CpuDevice().send(array)


def _is_array(value) -> bool:
    return isinstance(value, _chainer().get_array_types())


def slots(model) -> dict[str, Slot]:
    found: dict[str, tuple[str, np.ndarray]] = {}
    for path, param in model.namedparams():
        if param.array is None:
            raise WeightError(f"Chainer parameter {path} is not initialized (its input size is unknown)")
        found[path] = param.array
    for path, link in model.namedlinks():
        if all(_is_array(getattr(link, s, None)) for s in STATISTICS):
            for stat in STATISTICS:
                found[f"{path.rstrip('/')}/{stat}"] = getattr(link, stat)
    out: dict[str, Slot] = {}
    for path, array in found.items():
        key = canonical_key(path)
        if key in out:
            raise WeightError(f"two Chainer values map to {key}")
        out[key] = Slot(array.shape, LAYOUTS[path.rsplit("/", 1)[-1]], lambda a=array: _host(a), _set(array))
    return out


def load_weights(model, weights: Weights) -> None:
    load_slots(slots(model), weights, f"the Chainer model {type(model).__name__}")


def export_weights(model) -> Weights:
    return export_slots(slots(model))


def build(module: ModuleType, class_name: str, **kwargs: Any):
    return getattr(module, class_name)(**kwargs)


def param_counts(model) -> tuple[int, int]:
    trainable = sum(p.size for p in model.params())
    frozen = sum(
        getattr(link, s).size
        for _, link in model.namedlinks()
        if all(_is_array(getattr(link, s, None)) for s in STATISTICS)
        for s in STATISTICS
    )
    return trainable, frozen


@contextlib.contextmanager
def _inference() -> Iterator[None]:
    chainer = _chainer()
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        yield


def run(model, x: np.ndarray) -> list[np.ndarray]:
    """Inference on the model's device; outputs in numpy."""
    with _inference():
        out = model(model.device.send(np.ascontiguousarray(x, dtype=np.float32)))
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [_host(o.array) for o in outs if o is not None]  # (None: a head switched off)


@contextlib.contextmanager
def softmax_bypassed() -> Iterator[None]:
    """``F.softmax`` (what the generated code calls) as the identity."""
    _chainer()
    functions = importlib.import_module("chainer.functions")
    softmax = functions.softmax
    functions.softmax = lambda x, axis=1: x
    try:
        yield
    finally:
        functions.softmax = softmax


def intermediates(model, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run once and return the output of every link (layers and blocks) by its
    IR path, recorded by a link hook. A link called more than once is left out."""
    chainer = _chainer()
    paths = {id(link): path.strip("/").replace("/", ".") for path, link in model.namedlinks(skipself=True)}
    seen: dict[str, np.ndarray] = {}
    calls: dict[str, int] = {}

    class Record(chainer.LinkHook):
        name = "archspec_intermediates"

        def forward_postprocess(self, args) -> None:
            path = paths.get(id(args.link))
            if path is not None:
                calls[path] = calls.get(path, 0) + 1
                if isinstance(args.out, chainer.Variable):
                    seen[path] = np.array(_host(args.out.array))  # a copy in numpy, from CuPy on a GPU

    with Record():
        run(model, x)
    return {path: v for path, v in seen.items() if calls[path] == 1}
