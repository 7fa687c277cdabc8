"""Canonical weights: one set of tensors that every target can load.

A canonical weight set is a ``dict[str, numpy.ndarray]`` keyed by
``<IR path>.<weight name>`` (``layer1.0.conv1.weight``), each tensor float32 in
the canonical layout of :mod:`archspec.ops` (PyTorch's): convolution kernels
(out, in / groups, kh, kw), depthwise kernels (in * multiplier, 1, kh, kw),
dense weights (out, in). Batch-norm running statistics (``running_mean``,
``running_var``) are part of it.

On disk it is an ``.npz`` file (numpy's zip of ``.npy`` arrays, no other
dependency) with one array per canonical key; :func:`save` writes it
atomically and :func:`load` reads it back, both checking keys, shapes and
dtypes (against a compiled spec when one is given).

:func:`random_weights` draws a set that is useful for comparing frameworks:
every tensor random (batch-norm statistics too, so that eps, the statistics
and their order all matter), at a scale that keeps activations of order one
through networks of any depth (see :func:`random_weights`).
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archspec.ir import INPUT, Node
from archspec.passes.count import weights as node_weights
from archspec.pipeline import Compiled

Weights = dict[str, np.ndarray]


class WeightError(ValueError):
    """A weight set does not fit a model or spec: the message lists every
    missing key, unexpected key and shape mismatch found."""


def expected(compiled: Compiled) -> dict[str, tuple[int, ...]]:
    """Canonical key -> canonical shape, for every tensor the spec's network owns
    (in network order)."""
    return {f"{n.path}.{w.name}": w.shape for n in compiled.graph.nodes for w in node_weights(n)}


def trainable_keys(compiled: Compiled) -> set[str]:
    return {f"{n.path}.{w.name}" for n in compiled.graph.nodes for w in node_weights(n) if w.trainable}


def listing(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def match(want: Mapping[str, tuple[int, ...]], weights: Mapping[str, np.ndarray], what: str = "the model") -> None:
    """Raise WeightError unless ``weights`` has exactly the keys of ``want``,
    each with that shape. The message lists every problem, not just the first."""
    problems = []
    missing = [k for k in want if k not in weights]
    unexpected = [k for k in weights if k not in want]
    if missing:
        problems.append(f"missing {len(missing)} key{'s' * (len(missing) != 1)}: {listing(missing)}")
    if unexpected:
        problems.append(
            f"unexpected {len(unexpected)} key{'s' * (len(unexpected) != 1)} ({what} has no such tensor): "
            f"{listing(unexpected)}"
        )
    for k, shape in want.items():
        if k in weights and tuple(np.shape(weights[k])) != tuple(shape):
            problems.append(
                f"{k}: shape {tuple(np.shape(weights[k]))} given, {what} needs {tuple(shape)} (canonical layout)"
            )
    if problems:
        raise WeightError(f"weights do not fit {what}:\n  " + "\n  ".join(problems))


def mismatch_hint(want: Mapping[str, tuple[int, ...]], weights: Mapping[str, np.ndarray], compiled: Compiled) -> str:
    """What a weight set that does not fit the spec most likely is, and what to give
    instead: the same network with another class count (``--set num_classes=K``),
    another input (``--input``), or another network (``--spec``); "" when unclear."""
    common = [k for k in want if k in weights]
    if len(common) != len(want) or len(want) != len(weights):
        return (
            f"hint: {len(common)} of the spec's {len(want)} tensors are in the weights, which hold {len(weights)}: "
            "they are the weights of another network, or of another configuration of this one; give the --spec "
            "(and --set) they were trained with"
        )
    differ = {k: (tuple(np.shape(weights[k])), tuple(want[k])) for k in common}
    differ = {k: (g, w) for k, (g, w) in differ.items() if g != w and len(g) == len(w)}
    dims = {k: [i for i, (a, b) in enumerate(zip(g, w)) if a != b] for k, (g, w) in differ.items()}
    if not differ or any(len(d) != 1 for d in dims.values()):
        return ""
    classes = compiled.graph.params.get("num_classes")
    if all(w[d[0]] == classes for (_, w), d in zip(differ.values(), dims.values())):
        held = {g[d[0]] for (g, _), d in zip(differ.values(), dims.values())}
        if len(held) == 1:
            k = held.pop()
            return (
                f"hint: the weights hold {k} classes, spec {compiled.graph.name} as compiled has {classes}: "
                f"give --set num_classes={k}"
            )
    if all(d == [1] for d in dims.values()):
        shape = "x".join(map(str, compiled.graph.input_shape))
        return (
            "hint: only the input sizes of layers differ (channels or features): the weights were trained "
            f"with another --input than {shape}; give the --input they were trained with"
        )
    return ""


def check(weights: Mapping[str, np.ndarray], compiled: Compiled) -> None:
    """Raise WeightError unless ``weights`` is a complete canonical set for the spec;
    its message ends with :func:`mismatch_hint`'s guess when there is one."""
    want = expected(compiled)
    try:
        match(want, weights, f"spec {compiled.graph.name}")
    except WeightError as exc:
        hint = mismatch_hint(want, weights, compiled)
        raise WeightError(f"{exc}\n{hint}" if hint else str(exc)) from None


# ----------------------------------------------------------------------------
# Files


def save(path: str | Path, weights: Mapping[str, np.ndarray], compiled: Compiled | None = None) -> None:
    """Write ``weights`` to an ``.npz`` file atomically (a temporary file in the
    same directory, then ``os.replace``): readers see the old file or the new
    one. Tensors are stored as float32; with ``compiled``, keys and shapes are
    checked against the spec first."""
    if compiled is not None:
        check(weights, compiled)
    arrays = {}
    for key, value in weights.items():
        if not isinstance(key, str) or not key or "/" in key:
            raise WeightError(f"invalid weight key {key!r}: keys are '<IR path>.<weight name>'")
        array = np.asarray(value)
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise WeightError(f"{key}: dtype {array.dtype} is not numeric")
        arrays[key] = np.ascontiguousarray(array, dtype=np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | Path, compiled: Compiled | None = None) -> Weights:
    """Read an ``.npz`` weight file written by :func:`save` (or ``numpy.savez``
    with canonical keys). Every array must be float32; with ``compiled``, keys
    and shapes are checked against the spec. Raises WeightError with what is
    wrong, FileNotFoundError if there is no file."""
    path = Path(path)
    data = path.read_bytes()
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("one .npy array, not an .npz archive of named arrays")
        with loaded as npz:
            weights = {key: npz[key] for key in npz.files}
    except Exception as exc:  # numpy and zipfile raise many kinds for damaged files (zlib.error, struct.error, ...)
        reason = str(exc)
        if "pickled" in reason or "allow_pickle" in reason:  # numpy's hint to load it unsafely: never
            reason = "it holds Python objects, not arrays of numbers" if "Object arrays" in reason else "not a zip"
        raise WeightError(
            f"{path} is not a weight file of archspec, an .npz of float32 arrays ({reason}); it may be truncated "
            "or damaged: give the weights.npz of a run (archspec train) or of archspec weights import"
        ) from None
    bad = [f"{k} ({v.dtype})" for k, v in weights.items() if v.dtype != np.float32]
    if bad:
        raise WeightError(f"{path}: canonical weights are float32; found {listing(bad)}")
    nonfinite = [k for k, v in weights.items() if not np.isfinite(v).all()]
    if nonfinite:
        raise WeightError(
            f"{path}: {listing(nonfinite)} hold NaN or infinite values: these weights come from a run that "
            "diverged or from a damaged file; give weights of a run that trained (a lower --lr)"
        )
    if compiled is not None:
        try:
            check(weights, compiled)
        except WeightError as exc:
            raise WeightError(f"{path}: {exc}") from None
    return weights


# ----------------------------------------------------------------------------
# Random weights


@dataclass(frozen=True)
class Moments:
    """What archspec assumes about a node's values for a standard-normal input,
    over samples, channels and positions: the common mean ``m``, the variance of
    the per-channel means ``c`` (channel offsets, constant over positions) and
    the variance within a channel ``v``. E[x^2] = m^2 + c + v."""

    m: float = 0.0
    c: float = 0.0
    v: float = 1.0

    @property
    def square(self) -> float:
        return self.m**2 + self.c + self.v

    @property
    def var(self) -> float:
        return self.c + self.v

    def scaled(self, mean: float, var: float) -> Moments:
        """Mean ``mean`` and total variance ``var``, split between offsets and
        within-channel variance as here."""
        share = self.c / self.var if self.var > 0 else 0.0
        return Moments(mean, var * share, var * (1 - share))


_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "silu": lambda x: x / (1 + np.exp(-x)),
    "hard_swish": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "hard_sigmoid": lambda x: np.clip(x + 3, 0, 6) / 6,
    "gelu": lambda x: 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x**3))),  # either form, roughly
}
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(64)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def _activation(f, x: Moments) -> Moments:
    """Mean and variance of f(X), X ~ N(m, c + v) (Gauss-Hermite quadrature)."""
    values = f(x.m + math.sqrt(x.var) * _NODES)
    mean = float(_WEIGHTS @ values)
    return x.scaled(mean, max(float(_WEIGHTS @ values**2) - mean**2, 0.0))


def _spatial(node: Node) -> int:
    return math.prod(node.in_shapes[0][1:])


def _propagate(node: Node, ins: list[Moments]) -> Moments:
    """A node's moments from its inputs' (see Moments); rough where the truth
    depends on the weights or the data, good to a small factor, which is all
    the scale of random weights needs."""
    op, x = node.op, ins[0]
    if op in ("conv2d", "conv1d", "dense", "depthwise_conv2d", "separable_conv2d", "conv_transpose2d"):
        # Kernels normalize their output (random_weights); offsets come from the
        # input's mean and offsets, and from the bias.
        bias = 0.01 if node.attrs.get("bias") else 0.0
        offsets = (x.m**2 + x.c) / x.square if x.square > 0 else 0.0
        return Moments(0.0, offsets + bias, 1.0 - offsets)
    if op in _ACTIVATIONS:
        return _activation(_ACTIVATIONS[op], x)
    if op == "leaky_relu":
        s = node.attrs["negative_slope"]
        return _activation(lambda t: np.where(t > 0, t, s * t), x)
    if op == "batch_norm":  # running statistics drawn around the input's (random_weights)
        return Moments(0.0, 1.08 * (x.c + 0.04 * x.var) / x.var + 0.04, 1.08 * x.v / x.var)
    if op == "layer_norm":
        return Moments(0.0, 1.08 * x.c / x.var + 0.04, 1.08 * x.v / x.var)
    if op == "instance_norm":
        return Moments(0.0, 0.04, 1.08) if node.attrs["affine"] else Moments(0.0, 0.0, 1.0)
    if op == "lrn":
        a = node.attrs
        f = (a["k"] + a["alpha"] * a["size"] * x.square) ** -a["beta"]
        return Moments(x.m * f, x.c * f * f, x.v * f * f)
    if op == "max_pool2d":
        k = math.prod(node.attrs["kernel"])
        return Moments(x.m + math.sqrt(x.v) * math.sqrt(2 * math.log(k)) * 0.7, x.c, 0.5 * x.v)
    if op == "avg_pool2d":
        return Moments(x.m, x.c, x.v / math.sqrt(math.prod(node.attrs["kernel"])))
    if op == "global_avg_pool":
        return Moments(x.m, x.c, x.v / math.sqrt(_spatial(node)))
    if op == "global_max_pool":
        return Moments(x.m + math.sqrt(x.v * 2 * math.log(max(_spatial(node), 2))), x.c, 0.2 * x.v)
    if op == "softmax":
        n = node.shape[0]
        return Moments(1.0 / n, 0.0, 1.0 / n**2)
    if op == "add":
        return Moments(sum(i.m for i in ins), sum(i.c for i in ins), sum(i.v for i in ins))
    if op == "concat":
        w = [s[0] / node.shape[0] for s in node.in_shapes]
        m = sum(wi * i.m for wi, i in zip(w, ins))
        return Moments(
            m, sum(wi * (i.c + (i.m - m) ** 2) for wi, i in zip(w, ins)), sum(wi * i.v for wi, i in zip(w, ins))
        )
    if op == "multiply":
        y = ins[1]
        mean = x.m * y.m
        return (x if x.var >= y.var else y).scaled(mean, max(x.square * y.square - mean**2, 0.0))
    if op == "scale":  # weights drawn around 1 (random_weights)
        return Moments(x.m, x.c * 1.08, x.v * 1.08)
    return x  # flatten, dropout, drop_path, channel_shuffle, zero_pad2d, slice, upsample


def moments(compiled: Compiled) -> dict[str, Moments]:
    """Every node's assumed moments (and the input's) under random_weights."""
    out = {INPUT: Moments()}
    for node in compiled.graph.nodes:
        out[node.path] = _propagate(node, [out[i] for i in node.inputs])
    return out


def random_weights(compiled: Compiled, seed: int = 0) -> Weights:
    """A random canonical weight set for the spec, reproducible from ``seed``.

    The scale follows the signal. For a standard-normal input, archspec
    propagates rough moments of every node through the graph (:func:`moments`:
    mean, spread of the channel means, spread within channels), and draws each
    convolution and dense kernel from a normal of variance 1 / (fan_in x
    E[x^2] of its input): fan-in scaling, corrected for what the layers before
    did to the scale, so that every one of them outputs values of order one.
    Biases are N(0, 0.1^2).

    Batch-norm statistics are random, not trivial, and near the truth:
    running_mean is the input's assumed mean plus N(0, (0.2 sigma)^2) (not
    zero), running_var its assumed variance times U(0.5, 2) (positive, not
    one); gamma is U(0.5, 1.5) and beta N(0, 0.2^2), for layer and instance
    norm too. So activations neither vanish nor explode through deep
    networks: each residual branch is of order one, the residual stream grows
    with the square root of the depth at most, and the classifier sees values
    of order one.
    """
    rng = np.random.default_rng(seed)
    assumed = moments(compiled)
    out: Weights = {}

    def normal(shape: tuple[int, ...], std: float) -> np.ndarray:
        values = rng.standard_normal(shape, dtype=np.float32)
        values *= np.float32(std)
        return values

    for node in compiled.graph.nodes:
        x = assumed[node.inputs[0]]
        tensors = {w.name: w.shape for w in node_weights(node)}
        if not tensors:
            continue
        key = f"{node.path}."
        square = max(x.square, 1e-12)
        if node.op == "separable_conv2d":
            dw, pw = tensors["depthwise.weight"], tensors["pointwise.weight"]
            out[key + "depthwise.weight"] = normal(dw, 1 / math.sqrt(math.prod(dw[1:]) * square))
            out[key + "pointwise.weight"] = normal(pw, 1 / math.sqrt(math.prod(pw[1:])))
            if "pointwise.bias" in tensors:
                out[key + "pointwise.bias"] = normal(tensors["pointwise.bias"], 0.1)
        elif node.op in ("conv2d", "conv1d", "dense", "depthwise_conv2d"):
            w = tensors["weight"]
            out[key + "weight"] = normal(w, 1 / math.sqrt(math.prod(w[1:]) * square))
            if "bias" in tensors:
                out[key + "bias"] = normal(tensors["bias"], 0.1)
        elif node.op == "conv_transpose2d":
            # Each output sums in x (kh / sh) x (kw / sw) products on average.
            w, (sh, sw) = tensors["weight"], node.attrs["stride"]
            fan_in = w[0] * max(w[2] / sh, 1) * max(w[3] / sw, 1)
            out[key + "weight"] = normal(w, 1 / math.sqrt(fan_in * square))
            if "bias" in tensors:
                out[key + "bias"] = normal(tensors["bias"], 0.1)
        elif node.op == "scale":  # around 1 whatever its init, so that verify sees the branch it scales
            out[key + "weight"] = rng.uniform(0.5, 1.5, tensors["weight"]).astype(np.float32)
        elif node.op in ("batch_norm", "layer_norm", "instance_norm"):
            c = tensors["weight"]
            out[key + "weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
            out[key + "bias"] = normal(c, 0.2)
            if node.op == "batch_norm":
                sigma = math.sqrt(max(x.var, 1e-12))
                out[key + "running_mean"] = (x.m + normal(c, 0.2 * sigma)).astype(np.float32)
                out[key + "running_var"] = (x.var * rng.uniform(0.5, 2.0, c)).astype(np.float32)
        else:  # pragma: no cover - the op table and this function grow together
            raise NotImplementedError(f"random_weights: no rule for the weights of {node.op}")
    return out
