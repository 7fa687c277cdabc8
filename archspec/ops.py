"""The op table: every op archspec knows, defined once.

An entry states the op's attributes (types and defaults), how many inputs it
takes and of which rank, and three rules:

* ``shape``: the per-sample, channels-first output shape from the input shapes,
* ``weights``: the tensors it owns, in the canonical layout (the parameter
  count is derived from them, so the count and the weight files cannot drift),
* ``macs``: multiply-accumulates per sample.

Adding an op is adding one entry to :data:`OPS`; the emitters are checked
against this table by the tests. Attribute values arrive here already
evaluated and *resolved* (``kernel`` a tuple, ``padding`` explicit per side).

Counting conventions: a MAC is one multiply-add. Convolutions (all kinds) and
dense layers count ``outputs x inputs-per-output``, a transposed convolution
``inputs x outputs-per-input`` (as fvcore); every other op (norms,
activations, pooling, element-wise ops) counts 0, as torchvision and fvcore
do. Bias additions are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Shape = tuple[int, ...]
Attrs = dict[str, Any]

REQUIRED = object()


class ShapeError(Exception):
    """A shape rule failed; ``code`` is a diagnostic code (E4xx)."""

    def __init__(self, message: str, code: str = "E401") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Attr:
    """An attribute: its kind, default and one line of documentation.

    Kinds: ``int``, ``float``, ``bool``, ``pair`` (an int or a list of two),
    ``pad2d`` (int, [h, w], [top, bottom, left, right], ``same`` or ``valid``),
    ``pad1d`` (int, [left, right], ``same``, ``valid`` or ``causal``),
    ``choice`` (one of the words in ``choices``, written bare: ``mode: bilinear``).
    """

    kind: str
    default: Any = REQUIRED
    doc: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Weight:
    """One tensor an op owns, in canonical layout (PyTorch's)."""

    name: str
    shape: Shape
    trainable: bool = True

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class OpDef:
    name: str
    family: str  # conv, dense, pool, norm, activation, merge, reshape, regularization
    doc: str
    attrs: dict[str, Attr] = field(default_factory=dict)
    ranks: tuple[int, ...] = (1, 2, 3)  # accepted ranks of the input shape(s)
    min_inputs: int = 1
    max_inputs: int = 1
    shape: Callable[[Attrs, list[Shape]], Shape] = lambda a, ins: ins[0]
    weights: Callable[[Attrs, list[Shape]], list[Weight]] = lambda a, ins: []
    macs: Callable[[Attrs, list[Shape], Shape], int] = lambda a, ins, out: 0
    resolve: Callable[[Attrs, list[Shape]], Attrs] = lambda a, ins: a


# ----------------------------------------------------------------------------
# Shared rules


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's ``same``: output ceil(size / stride); the odd pixel goes
    after (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _resolve_pad2d(value: Any, size: tuple[int, int], kernel, stride, dilation) -> tuple[int, int, int, int]:
    if value == "valid":
        return (0, 0, 0, 0)
    if value == "same":
        top, bottom = same_padding(size[0], kernel[0], stride[0], dilation[0])
        left, right = same_padding(size[1], kernel[1], stride[1], dilation[1])
        return (top, bottom, left, right)
    if isinstance(value, int):
        return (value,) * 4
    if len(value) == 2:
        return (value[0], value[0], value[1], value[1])
    return tuple(value)


def _resolve_pad1d(value: Any, size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    if value == "valid":
        return (0, 0)
    if value == "same":
        return same_padding(size, kernel, stride, dilation)
    if value == "causal":
        return ((kernel - 1) * dilation, 0)
    if isinstance(value, int):
        return (value, value)
    return tuple(value)


def _window(
    size: int, pad: int, kernel: int, stride: int, dilation: int, ceil: bool, what: str, before: int | None = None
) -> int:
    """Output length of a sliding window (convolution or pooling); ``pad`` is
    the total padding, ``before`` its top/left part (default: half of it)."""
    span = dilation * (kernel - 1) + 1
    if span > size + pad:
        raise ShapeError(
            f"the {what} window ({span}) is larger than the padded input ({size + pad}); "
            "use a smaller kernel, more padding, or a larger input",
            "E402",
        )
    if ceil:
        out = -(-(size + pad - span) // stride) + 1
        # PyTorch: the last window must start inside the input or left padding.
        if (out - 1) * stride >= size + (pad // 2 if before is None else before):
            out -= 1
        return out
    return (size + pad - span) // stride + 1


def _spatial2d(a: Attrs, shape: Shape, ceil: bool = False, what: str = "kernel") -> tuple[int, int]:
    t, b, l, r = a["padding"]
    oh = _window(shape[1], t + b, a["kernel"][0], a["stride"][0], a["dilation"][0], ceil, what, t)
    ow = _window(shape[2], l + r, a["kernel"][1], a["stride"][1], a["dilation"][1], ceil, what, l)
    return oh, ow


def _resolve_window2d(a: Attrs, ins: list[Shape], stride_default_kernel: bool = False) -> Attrs:
    a = dict(a)
    a["kernel"] = _pair(a["kernel"])
    if a.get("stride") is None:
        a["stride"] = a["kernel"] if stride_default_kernel else (1, 1)
    a["stride"] = _pair(a["stride"])
    a["dilation"] = _pair(a.get("dilation", 1))
    a["padding"] = _resolve_pad2d(a["padding"], ins[0][1:3], a["kernel"], a["stride"], a["dilation"])
    return a


def _groups_check(channels: int, groups: int, what: str = "input channels") -> None:
    if channels % groups:
        raise ShapeError(
            f"{what} ({channels}) are not divisible by groups ({groups}); choose groups that divide the channel count",
            "E403",
        )


def _conv2d_shape(a: Attrs, ins: list[Shape]) -> Shape:
    c = ins[0][0]
    _groups_check(c, a["groups"])
    _groups_check(a["out"], a["groups"], "output channels")
    return (a["out"], *_spatial2d(a, ins[0]))


def _bias(a: Attrs, n: int) -> list[Weight]:
    return [Weight("bias", (n,))] if a.get("bias") else []


def _conv2d_weights(a: Attrs, ins: list[Shape]) -> list[Weight]:
    kh, kw = a["kernel"]
    return [Weight("weight", (a["out"], ins[0][0] // a["groups"], kh, kw)), *_bias(a, a["out"])]


def _conv2d_macs(a: Attrs, ins: list[Shape], out: Shape) -> int:
    kh, kw = a["kernel"]
    return math.prod(out) * (ins[0][0] // a["groups"]) * kh * kw


def _dw_shape(a: Attrs, ins: list[Shape]) -> Shape:
    return (ins[0][0] * a["multiplier"], *_spatial2d(a, ins[0]))


def _dw_weights(a: Attrs, ins: list[Shape]) -> list[Weight]:
    n = ins[0][0] * a["multiplier"]
    return [Weight("weight", (n, 1, *a["kernel"])), *_bias(a, n)]


def _dw_macs(a: Attrs, ins: list[Shape], out: Shape) -> int:
    return math.prod(out) * a["kernel"][0] * a["kernel"][1]


def _sep_shape(a: Attrs, ins: list[Shape]) -> Shape:
    return (a["out"], *_spatial2d(a, ins[0]))


def _sep_weights(a: Attrs, ins: list[Shape]) -> list[Weight]:
    mid = ins[0][0] * a["multiplier"]
    pointwise_bias = [Weight("pointwise.bias", (a["out"],))] if a.get("bias") else []
    return [
        Weight("depthwise.weight", (mid, 1, *a["kernel"])),
        Weight("pointwise.weight", (a["out"], mid, 1, 1)),
        *pointwise_bias,
    ]


def _sep_macs(a: Attrs, ins: list[Shape], out: Shape) -> int:
    mid = ins[0][0] * a["multiplier"]
    hw = out[1] * out[2]
    return mid * hw * a["kernel"][0] * a["kernel"][1] + a["out"] * mid * hw


def _resolve_conv1d(a: Attrs, ins: list[Shape]) -> Attrs:
    a = dict(a)
    a["padding"] = _resolve_pad1d(a["padding"], ins[0][1], a["kernel"], a["stride"], a["dilation"])
    return a


def _conv1d_shape(a: Attrs, ins: list[Shape]) -> Shape:
    _groups_check(ins[0][0], a["groups"])
    _groups_check(a["out"], a["groups"], "output channels")
    length = _window(ins[0][1], sum(a["padding"]), a["kernel"], a["stride"], a["dilation"], False, "kernel")
    return (a["out"], length)


def _conv1d_weights(a: Attrs, ins: list[Shape]) -> list[Weight]:
    return [Weight("weight", (a["out"], ins[0][0] // a["groups"], a["kernel"])), *_bias(a, a["out"])]


def _conv1d_macs(a: Attrs, ins: list[Shape], out: Shape) -> int:
    return math.prod(out) * (ins[0][0] // a["groups"]) * a["kernel"]


def _dense_weights(a: Attrs, ins: list[Shape]) -> list[Weight]:
    return [Weight("weight", (a["out"], ins[0][0])), *_bias(a, a["out"])]


def _pool_shape(a: Attrs, ins: list[Shape]) -> Shape:
    t, b, l, r = a["padding"]
    kh, kw = a["kernel"]
    if max(t, b) > kh // 2 or max(l, r) > kw // 2:
        raise ShapeError(
            f"pooling padding {a['padding']} is more than half the kernel {a['kernel']}; "
            "a window would see only padding",
            "E303",
        )
    return (ins[0][0], *_spatial2d(a, ins[0], a["ceil_mode"], "pooling"))


def _norm_weights(a: Attrs, ins: list[Shape]) -> list[Weight]:
    c = ins[0][0]
    return [Weight("weight", (c,)), Weight("bias", (c,))]


def _bn_weights(a: Attrs, ins: list[Shape]) -> list[Weight]:
    c = ins[0][0]
    return [
        *_norm_weights(a, ins),
        Weight("running_mean", (c,), trainable=False),
        Weight("running_var", (c,), trainable=False),
    ]


def _global_pool_shape(a: Attrs, ins: list[Shape]) -> Shape:
    c = ins[0][0]
    return (c,) + (1,) * (len(ins[0]) - 1) if a["keepdims"] else (c,)


def _same_shapes(a: Attrs, ins: list[Shape]) -> Shape:
    for i, s in enumerate(ins[1:], start=2):
        if s != ins[0]:
            raise ShapeError(
                f"input 1 has shape {_fmt(ins[0])} but input {i} has shape {_fmt(s)}; add needs equal shapes"
            )
    return ins[0]


def _concat_shape(a: Attrs, ins: list[Shape]) -> Shape:
    for i, s in enumerate(ins[1:], start=2):
        if len(s) != len(ins[0]) or s[1:] != ins[0][1:]:
            raise ShapeError(
                f"input 1 has shape {_fmt(ins[0])} but input {i} has shape {_fmt(s)}; "
                "concat joins along channels and needs every other dimension equal"
            )
    return (sum(s[0] for s in ins), *ins[0][1:])


def _multiply_shape(a: Attrs, ins: list[Shape]) -> Shape:
    x, y = ins
    if x == y:
        return x

    def is_channel_vector(s: Shape, full: Shape) -> bool:
        return s[0] == full[0] and all(d == 1 for d in s[1:]) and len(s) <= len(full)

    if is_channel_vector(y, x):
        return x
    if is_channel_vector(x, y):
        return y
    raise ShapeError(
        f"cannot multiply shapes {_fmt(x)} and {_fmt(y)}; multiply needs equal shapes, "
        "or one input of shape (C,) or (C, 1, 1) with the other's channel count"
    )


def _shuffle_shape(a: Attrs, ins: list[Shape]) -> Shape:
    _groups_check(ins[0][0], a["groups"], "channels")
    return ins[0]


def _resolve_zero_pad(a: Attrs, ins: list[Shape]) -> Attrs:
    p = a["padding"]
    if p in ("same", "valid"):
        raise ShapeError("zero_pad2d needs explicit padding: an int, [h, w] or [top, bottom, left, right]", "E303")
    return {**a, "padding": _resolve_pad2d(p, ins[0][1:3], (1, 1), (1, 1), (1, 1))}


def _zero_pad_shape(a: Attrs, ins: list[Shape]) -> Shape:
    t, b, l, r = a["padding"]
    c, h, w = ins[0]
    return (c, h + t + b, w + l + r)


def _lrn_resolve(a: Attrs, ins: list[Shape]) -> Attrs:
    if a["size"] % 2 == 0:
        raise ShapeError(f"LRN size must be odd (got {a['size']}): TensorFlow's depth_radius is (size - 1) / 2", "E303")
    return a


def _slice_shape(a: Attrs, ins: list[Shape]) -> Shape:
    c = ins[0][0]
    if not a["start"] < a["stop"] <= c:
        raise ShapeError(
            f"slice [{a['start']}:{a['stop']}] is not a non-empty range of the input's {c} channels; "
            f"choose 0 <= start < stop <= {c}",
            "E303",
        )
    return (a["stop"] - a["start"], *ins[0][1:])


def _upsample_shape(a: Attrs, ins: list[Shape]) -> Shape:
    c, h, w = ins[0]
    return (c, h * a["scale"], w * a["scale"])


def _resolve_conv_transpose(a: Attrs, ins: list[Shape]) -> Attrs:
    a = {**a, "kernel": _pair(a["kernel"]), "stride": _pair(a["stride"])}
    a["padding"], a["output_padding"] = _pair(a["padding"]), _pair(a["output_padding"])
    for op, s in zip(a["output_padding"], a["stride"], strict=True):
        if op >= s:
            raise ShapeError(
                f"output_padding {a['output_padding']} must be smaller than the stride {a['stride']} "
                "(it only picks one of the sizes a stride can reach)",
                "E303",
            )
    return a


def _conv_transpose_shape(a: Attrs, ins: list[Shape]) -> Shape:
    c, *size = ins[0]
    _groups_check(c, a["groups"])
    _groups_check(a["out"], a["groups"], "output channels")
    out = [
        (n - 1) * s - 2 * p + k + op
        for n, s, p, k, op in zip(size, a["stride"], a["padding"], a["kernel"], a["output_padding"], strict=True)
    ]
    if min(out) < 1:
        raise ShapeError(f"the padding {a['padding']} crops the whole output; use less padding", "E405")
    return (a["out"], *out)


def _conv_transpose_weights(a: Attrs, ins: list[Shape]) -> list[Weight]:
    return [Weight("weight", (ins[0][0], a["out"] // a["groups"], *a["kernel"])), *_bias(a, a["out"])]


def _conv_transpose_macs(a: Attrs, ins: list[Shape], out: Shape) -> int:
    """Every input value times its filter: C_in x H x W x (C_out / groups) x kh x kw."""
    return math.prod(ins[0]) * (a["out"] // a["groups"]) * a["kernel"][0] * a["kernel"][1]


def _fmt(shape: Shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


# ----------------------------------------------------------------------------
# The table

_WINDOW2D = {
    "kernel": Attr("pair", doc="kernel size: k or [kh, kw]", min=1),
    "stride": Attr("pair", 1, "stride: s or [sh, sw]", min=1),
    "padding": Attr("pad2d", 0, "p, [ph, pw], [top, bottom, left, right], same or valid", min=0),
    "dilation": Attr("pair", 1, "dilation: d or [dh, dw]", min=1),
}
_POOL2D = {
    "kernel": _WINDOW2D["kernel"],
    "stride": Attr("pair", None, "stride (default: the kernel size)", min=1),
    "padding": _WINDOW2D["padding"],
    "ceil_mode": Attr("bool", False, "round the output size up instead of down"),
}
_BIAS = Attr("bool", True, "add a learned bias")
_OUT = Attr("int", doc="output channels", min=1)
_EPS = Attr("float", 1e-5, "epsilon added to the variance", min=0)

_op_list = [
    OpDef(
        "conv2d",
        "conv",
        "2-D convolution (groups, dilation, per-side padding)",
        {"out": _OUT, **_WINDOW2D, "groups": Attr("int", 1, "channel groups", min=1), "bias": _BIAS},
        ranks=(3,),
        shape=_conv2d_shape,
        weights=_conv2d_weights,
        macs=_conv2d_macs,
        resolve=_resolve_window2d,
    ),
    OpDef(
        "depthwise_conv2d",
        "conv",
        "depthwise 2-D convolution: one filter per input channel (times multiplier)",
        {**_WINDOW2D, "multiplier": Attr("int", 1, "output channels per input channel", min=1), "bias": _BIAS},
        ranks=(3,),
        shape=_dw_shape,
        weights=_dw_weights,
        macs=_dw_macs,
        resolve=_resolve_window2d,
    ),
    OpDef(
        "separable_conv2d",
        "conv",
        "depthwise 2-D convolution followed by a 1x1 pointwise convolution (bias on the pointwise part)",
        {"out": _OUT, **_WINDOW2D, "multiplier": Attr("int", 1, "depthwise channel multiplier", min=1), "bias": _BIAS},
        ranks=(3,),
        shape=_sep_shape,
        weights=_sep_weights,
        macs=_sep_macs,
        resolve=_resolve_window2d,
    ),
    OpDef(
        "conv_transpose2d",
        "conv",
        "2-D transposed convolution (PyTorch's ConvTranspose2d): output (n - 1) x stride - 2 x padding + "
        "kernel + output_padding; weight (in, out / groups, kh, kw)",
        {
            "out": _OUT,
            "kernel": _WINDOW2D["kernel"],
            "stride": _WINDOW2D["stride"],
            "padding": Attr("pair", 0, "rows and columns cropped from each side: p or [ph, pw]", min=0),
            "output_padding": Attr("pair", 0, "rows and columns added at the bottom and right: p or [ph, pw]", min=0),
            "groups": Attr("int", 1, "channel groups", min=1),
            "bias": _BIAS,
        },
        ranks=(3,),
        shape=_conv_transpose_shape,
        weights=_conv_transpose_weights,
        macs=_conv_transpose_macs,
        resolve=_resolve_conv_transpose,
    ),
    OpDef(
        "conv1d",
        "conv",
        "1-D convolution over (C, L); padding 'causal' pads (kernel - 1) x dilation on the left",
        {
            "out": _OUT,
            "kernel": Attr("int", doc="kernel size", min=1),
            "stride": Attr("int", 1, "stride", min=1),
            "padding": Attr("pad1d", 0, "p, [left, right], same, valid or causal", min=0),
            "dilation": Attr("int", 1, "dilation", min=1),
            "groups": Attr("int", 1, "channel groups", min=1),
            "bias": _BIAS,
        },
        ranks=(2,),
        shape=_conv1d_shape,
        weights=_conv1d_weights,
        macs=_conv1d_macs,
        resolve=_resolve_conv1d,
    ),
    OpDef(
        "dense",
        "dense",
        "fully connected layer on a flat (features,) input",
        {"out": Attr("int", doc="output features", min=1), "bias": _BIAS},
        ranks=(1,),
        shape=lambda a, ins: (a["out"],),
        weights=_dense_weights,
        macs=lambda a, ins, out: ins[0][0] * a["out"],
    ),
    OpDef(
        "max_pool2d",
        "pool",
        "2-D max pooling (padding counts as -inf)",
        _POOL2D,
        ranks=(3,),
        shape=_pool_shape,
        resolve=lambda a, ins: _resolve_window2d(a, ins, stride_default_kernel=True),
    ),
    OpDef(
        "avg_pool2d",
        "pool",
        "2-D average pooling",
        {**_POOL2D, "count_include_pad": Attr("bool", True, "count padded zeros in the average")},
        ranks=(3,),
        shape=_pool_shape,
        resolve=lambda a, ins: _resolve_window2d(a, ins, stride_default_kernel=True),
    ),
    OpDef(
        "global_avg_pool",
        "pool",
        "mean over all spatial positions",
        {"keepdims": Attr("bool", False, "keep the spatial axes as size 1: (C, 1, 1)")},
        ranks=(2, 3),
        shape=_global_pool_shape,
    ),
    OpDef(
        "global_max_pool",
        "pool",
        "maximum over all spatial positions",
        {"keepdims": Attr("bool", False, "keep the spatial axes as size 1: (C, 1, 1)")},
        ranks=(2, 3),
        shape=_global_pool_shape,
    ),
    OpDef(
        "batch_norm",
        "norm",
        "batch normalization over the channel axis; momentum in PyTorch's convention "
        "(0.1 = Keras 0.9 = Chainer decay 0.9)",
        {
            "eps": _EPS,
            "momentum": Attr("float", 0.1, "running-statistics update rate (PyTorch convention)", min=0, max=1),
        },
        ranks=(1, 2, 3),
        weights=_bn_weights,
    ),
    OpDef(
        "layer_norm",
        "norm",
        "layer normalization over the channel axis at every position, per-channel affine",
        {"eps": _EPS},
        ranks=(1, 2, 3),
        weights=_norm_weights,
    ),
    OpDef(
        "instance_norm",
        "norm",
        "instance normalization: per sample and channel over the spatial axes",
        {"eps": _EPS, "affine": Attr("bool", False, "learn a per-channel scale and shift")},
        ranks=(2, 3),
        weights=lambda a, ins: _norm_weights(a, ins) if a["affine"] else [],
    ),
    OpDef(
        "lrn",
        "norm",
        "local response normalization across channels: x / (k + alpha * sum(x^2 over size channels))^beta "
        "(alpha undivided, as in the AlexNet paper)",
        {
            "size": Attr("int", 5, "window of channels (odd)", min=1),
            "alpha": Attr("float", 1e-4, "scale (not divided by size)", min=0),
            "beta": Attr("float", 0.75, "exponent", min=0),
            "k": Attr("float", 2.0, "additive constant", min=0),
        },
        ranks=(3,),
        resolve=_lrn_resolve,
    ),
    OpDef(
        "drop_path",
        "regularization",
        "stochastic depth: while training, each sample's input is zeroed with probability rate and the "
        "others scaled by 1 / (1 - rate); the identity at inference",
        {"rate": Attr("float", 0.0, "probability of dropping a sample's path while training", min=0, max=0.999)},
    ),
    OpDef(
        "scale",
        "norm",
        "learnable per-channel scale (layer scale): x * weight, weight of shape (C,) starting at init",
        {"init": Attr("float", 1.0, "initial value of every channel's scale")},
        ranks=(1, 2, 3),
        weights=lambda a, ins: [Weight("weight", (ins[0][0],))],
    ),
    OpDef(
        "dropout",
        "regularization",
        "dropout (identity at inference)",
        {"rate": Attr("float", 0.5, "fraction of units dropped while training", min=0, max=0.999)},
    ),
    OpDef("relu", "activation", "max(x, 0)"),
    OpDef("relu6", "activation", "min(max(x, 0), 6)"),
    OpDef(
        "leaky_relu",
        "activation",
        "x if x > 0 else negative_slope * x",
        {"negative_slope": Attr("float", 0.01, "slope for x < 0", min=0)},
    ),
    OpDef("sigmoid", "activation", "1 / (1 + exp(-x))"),
    OpDef("tanh", "activation", "hyperbolic tangent"),
    OpDef("silu", "activation", "x * sigmoid(x), also called swish"),
    OpDef("hard_swish", "activation", "x * relu6(x + 3) / 6"),
    OpDef(
        "hard_sigmoid",
        "activation",
        "relu6(x + 3) / 6, PyTorch's nn.Hardsigmoid (and Keras 3's hard_sigmoid); Keras 2 / tf.keras "
        "computed clip(0.2 x + 0.5, 0, 1), which differs: every target here computes relu6(x + 3) / 6",
    ),
    OpDef(
        "gelu",
        "activation",
        "x * Phi(x), Phi the standard normal CDF (exact, with erf), or its tanh approximation",
        {"approximate": Attr("choice", "none", "none (exact, with erf) or tanh", choices=("none", "tanh"))},
    ),
    OpDef("softmax", "activation", "softmax over the channel axis"),
    OpDef(
        "flatten",
        "reshape",
        "flatten (C, H, W) to (C*H*W,) in channels-first order",
        shape=lambda a, ins: (math.prod(ins[0]),),
    ),
    OpDef("add", "merge", "element-wise sum of equal shapes", min_inputs=2, max_inputs=64, shape=_same_shapes),
    OpDef("concat", "merge", "concatenation along the channel axis", min_inputs=2, max_inputs=256, shape=_concat_shape),
    OpDef(
        "multiply",
        "merge",
        "element-wise product; one input may be a channel vector (C,) or (C, 1, 1) broadcast over the other (SE)",
        min_inputs=2,
        max_inputs=2,
        shape=_multiply_shape,
    ),
    OpDef(
        "channel_shuffle",
        "reshape",
        "ShuffleNet's channel shuffle: (g, C/g) -> (C/g, g)",
        {"groups": Attr("int", doc="number of groups", min=1)},
        ranks=(2, 3),
        shape=_shuffle_shape,
    ),
    OpDef(
        "slice",
        "reshape",
        "channels start to stop - 1 of the input (Python's x[start:stop] on the channel axis); two slices "
        "split a tensor in two, as ShuffleNet v2's channel split",
        {
            "start": Attr("int", 0, "first channel taken", min=0),
            "stop": Attr("int", doc="channel after the last one taken", min=1),
        },
        ranks=(1, 2, 3),
        shape=_slice_shape,
    ),
    OpDef(
        "upsample",
        "reshape",
        "spatial upsampling by an integer factor: nearest copies each pixel; bilinear interpolates "
        "with half-pixel centres (PyTorch's align_corners=False, TensorFlow's half_pixel_centers)",
        {
            "scale": Attr("int", 2, "factor on height and width", min=1),
            "mode": Attr("choice", "nearest", "nearest or bilinear", choices=("nearest", "bilinear")),
        },
        ranks=(3,),
        shape=_upsample_shape,
    ),
    OpDef(
        "zero_pad2d",
        "reshape",
        "pad the spatial axes with zeros",
        {"padding": Attr("pad2d", doc="p, [ph, pw] or [top, bottom, left, right]", min=0)},
        ranks=(3,),
        shape=_zero_pad_shape,
        resolve=_resolve_zero_pad,
    ),
]

OPS: dict[str, OpDef] = {op.name: op for op in _op_list}
if len(OPS) != len(_op_list):  # pragma: no cover - guards the table itself
    raise RuntimeError("duplicate op name in the op table")

ALIASES: dict[str, str] = {"swish": "silu"}


def lookup(name: str) -> OpDef | None:
    return OPS.get(ALIASES.get(name, name))


def parameter_count(weights: list[Weight]) -> tuple[int, int]:
    """(trainable, non_trainable) from a list of weights."""
    trainable = sum(w.size for w in weights if w.trainable)
    return trainable, sum(w.size for w in weights) - trainable
