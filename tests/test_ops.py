"""The op table (archspec/ops.py): shape, parameter and MAC rules of every op.

Most cases are driven the way the compiler drives them: a tiny spec is written
to a file and compiled (load -> validate -> expand -> count); the node under
test is always named ``t``. Expected figures are written out as the hand
arithmetic they come from. A few rules are also checked directly and against
independent reference formulas (TensorFlow's 'same', PyTorch's pooling).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archspec import ops
from archspec.diagnostics import SpecError
from archspec.ops import OPS, Weight, parameter_count, same_padding
from archspec.passes.count import weights as node_weights
from archspec.pipeline import Compiled, compile_spec

ACTIVATIONS = [
    "relu",
    "relu6",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "silu",
    "hard_swish",
    "hard_sigmoid",
    "gelu",
    "softmax",
]


def spec_text(input_shape: tuple[int, ...], layers: tuple[str, ...] | list[str]) -> str:
    body = "".join(f"  - {layer}\n" for layer in layers)
    return f"name: t\nsource: unit test\ninput: {list(input_shape)}\nlayers:\n{body}"


def compile_net(write_spec, input_shape, layers) -> Compiled:
    return compile_spec(write_spec(spec_text(input_shape, layers)))


def compile_errors(write_spec, input_shape, layers) -> list:
    with pytest.raises(SpecError) as info:
        compile_net(write_spec, input_shape, layers)
    return info.value.diagnostics


# ----------------------------------------------------------------------------
# The table: one row per rule, the node under test is named 't'


@dataclass(frozen=True)
class Case:
    id: str
    input: tuple[int, ...]
    layers: tuple[str, ...]
    shape: tuple[int, ...]
    trainable: int = 0
    non_trainable: int = 0
    macs: int = 0
    attrs: dict = field(default_factory=dict)  # resolved attributes to check
    weights: dict = field(default_factory=dict)  # weight name -> canonical shape

    @property
    def op(self) -> str:
        last = self.layers[-1]
        assert last.startswith("t: "), "the node under test must be the last, named 't'"
        name = re.search(r"op: (\w+)", last).group(1)
        return ops.lookup(name).name


def case(id, input, layers, shape, trainable=0, non_trainable=0, macs=0, attrs=None, weights=None):
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    return Case(id, input, layers, shape, trainable, non_trainable, macs, attrs or {}, weights or {})


CONV2D = [
    case(
        "conv2d-resnet-stem",
        (3, 224, 224),
        "t: {op: conv2d, out: 64, kernel: 7, stride: 2, padding: 3, bias: false}",
        (64, 112, 112),
        trainable=64 * 3 * 7 * 7,  # 9408
        macs=64 * 3 * 7 * 7 * 112 * 112,
        attrs={"kernel": (7, 7), "stride": (2, 2), "padding": (3, 3, 3, 3), "dilation": (1, 1), "groups": 1},
        weights={"weight": (64, 3, 7, 7)},
    ),
    case(
        "conv2d-bias",
        (3, 32, 32),
        "t: {op: conv2d, out: 6, kernel: 5}",
        (6, 28, 28),  # 32 - 5 + 1
        trainable=6 * 3 * 5 * 5 + 6,
        macs=6 * 28 * 28 * 3 * 5 * 5,
        weights={"weight": (6, 3, 5, 5), "bias": (6,)},
    ),
    case(
        "conv2d-groups",
        (32, 16, 16),
        "t: {op: conv2d, out: 64, kernel: 3, padding: 1, groups: 4, bias: false}",
        (64, 16, 16),
        trainable=64 * (32 // 4) * 3 * 3,
        macs=64 * 16 * 16 * (32 // 4) * 3 * 3,
        attrs={"groups": 4},
        weights={"weight": (64, 8, 3, 3)},
    ),
    case(
        "conv2d-groups-equal-to-channels",
        (16, 8, 8),
        "t: {op: conv2d, out: 32, kernel: 3, padding: 1, groups: 16}",
        (32, 8, 8),
        trainable=32 * 1 * 3 * 3 + 32,
        macs=32 * 8 * 8 * 1 * 3 * 3,
        weights={"weight": (32, 1, 3, 3), "bias": (32,)},
    ),
    case(
        "conv2d-dilation",
        (8, 32, 32),
        "t: {op: conv2d, out: 16, kernel: 3, dilation: 2, bias: false}",
        (16, 28, 28),  # span 2 * (3 - 1) + 1 = 5: 32 - 5 + 1
        trainable=16 * 8 * 3 * 3,
        macs=16 * 28 * 28 * 8 * 3 * 3,
        attrs={"dilation": (2, 2)},
    ),
    case(
        "conv2d-dilation-padded",
        (8, 32, 32),
        "t: {op: conv2d, out: 16, kernel: 3, dilation: 2, padding: 2}",
        (16, 32, 32),
        trainable=16 * 8 * 3 * 3 + 16,
        macs=16 * 32 * 32 * 8 * 3 * 3,
    ),
    case(
        "conv2d-per-side-padding",
        (3, 10, 10),
        "t: {op: conv2d, out: 4, kernel: 3, padding: [0, 1, 2, 3], bias: false}",
        (4, 9, 13),  # H: 10 + 0 + 1 - 3 + 1, W: 10 + 2 + 3 - 3 + 1
        trainable=4 * 3 * 3 * 3,
        macs=4 * 9 * 13 * 3 * 3 * 3,
        attrs={"padding": (0, 1, 2, 3)},
    ),
    case(
        "conv2d-padding-pair",
        (3, 10, 10),
        "t: {op: conv2d, out: 4, kernel: 3, padding: [1, 2], bias: false}",
        (4, 10, 12),  # [ph, pw]: top = bottom = 1, left = right = 2
        trainable=4 * 3 * 3 * 3,
        macs=4 * 10 * 12 * 3 * 3 * 3,
        attrs={"padding": (1, 1, 2, 2)},
    ),
    case(
        "conv2d-rectangular-kernel",
        (8, 17, 17),
        "t: {op: conv2d, out: 8, kernel: [1, 7], padding: [0, 3], bias: false}",
        (8, 17, 17),
        trainable=8 * 8 * 1 * 7,
        macs=8 * 17 * 17 * 8 * 1 * 7,
        attrs={"kernel": (1, 7), "padding": (0, 0, 3, 3)},
        weights={"weight": (8, 8, 1, 7)},
    ),
    case(
        "conv2d-stride-pair",
        (4, 10, 10),
        "t: {op: conv2d, out: 4, kernel: 3, stride: [2, 1], padding: 1, bias: false}",
        (4, 5, 10),  # H: (10 + 2 - 3) // 2 + 1
        trainable=4 * 4 * 3 * 3,
        macs=4 * 5 * 10 * 4 * 3 * 3,
        attrs={"stride": (2, 1)},
    ),
    case(
        "conv2d-expression-attrs",
        (3, 16, 16),
        "t: {op: conv2d, out: '8 * 2', kernel: '1 + 2', padding: '3 // 2'}",
        (16, 16, 16),
        trainable=16 * 3 * 3 * 3 + 16,
        macs=16 * 16 * 16 * 3 * 3 * 3,
    ),
    # 'same': TensorFlow's rule, output ceil(size / stride), the odd pixel bottom/right
    case(
        "conv2d-same-even-stride2",
        (3, 224, 224),
        "t: {op: conv2d, out: 32, kernel: 3, stride: 2, padding: same, bias: false}",
        (32, 112, 112),  # total = (112 - 1) * 2 + 3 - 224 = 1: all of it bottom/right
        trainable=32 * 3 * 3 * 3,
        macs=32 * 112 * 112 * 3 * 3 * 3,
        attrs={"padding": (0, 1, 0, 1)},
    ),
    case(
        "conv2d-same-odd-stride2",
        (3, 225, 225),
        "t: {op: conv2d, out: 32, kernel: 3, stride: 2, padding: same, bias: false}",
        (32, 113, 113),  # total = (113 - 1) * 2 + 3 - 225 = 2: symmetric
        trainable=32 * 3 * 3 * 3,
        macs=32 * 113 * 113 * 3 * 3 * 3,
        attrs={"padding": (1, 1, 1, 1)},
    ),
    case(
        "conv2d-same-mixed-parity",
        (3, 7, 8),
        "t: {op: conv2d, out: 2, kernel: 3, stride: 2, padding: same, bias: false}",
        (2, 4, 4),  # H total (4-1)*2+3-7 = 2 -> (1, 1); W total (4-1)*2+3-8 = 1 -> (0, 1)
        trainable=2 * 3 * 3 * 3,
        macs=2 * 4 * 4 * 3 * 3 * 3,
        attrs={"padding": (1, 1, 0, 1)},
    ),
    case(
        "conv2d-same-k5-stride2",
        (3, 8, 8),
        "t: {op: conv2d, out: 4, kernel: 5, stride: 2, padding: same, bias: false}",
        (4, 4, 4),  # total (4-1)*2+5-8 = 3 -> (1, 2): the odd pixel goes bottom/right
        trainable=4 * 3 * 5 * 5,
        macs=4 * 4 * 4 * 3 * 5 * 5,
        attrs={"padding": (1, 2, 1, 2)},
    ),
    case(
        "conv2d-same-even-kernel",
        (2, 10, 10),
        "t: {op: conv2d, out: 2, kernel: 4, padding: same, bias: false}",
        (2, 10, 10),  # total 3 -> (1, 2)
        trainable=2 * 2 * 4 * 4,
        macs=2 * 10 * 10 * 2 * 4 * 4,
        attrs={"padding": (1, 2, 1, 2)},
    ),
    case(
        "conv2d-same-dilated",
        (2, 10, 10),
        "t: {op: conv2d, out: 2, kernel: 3, dilation: 2, padding: same, bias: false}",
        (2, 10, 10),  # span 5, total 4 -> (2, 2)
        trainable=2 * 2 * 3 * 3,
        macs=2 * 10 * 10 * 2 * 3 * 3,
        attrs={"padding": (2, 2, 2, 2)},
    ),
    case(
        "conv2d-same-pointwise-stride2",
        (8, 224, 224),
        "t: {op: conv2d, out: 16, kernel: 1, stride: 2, padding: same, bias: false}",
        (16, 112, 112),  # total max((112-1)*2+1-224, 0) = 0
        trainable=16 * 8,
        macs=16 * 112 * 112 * 8,
        attrs={"padding": (0, 0, 0, 0)},
    ),
    case(
        "conv2d-valid",
        (3, 10, 10),
        "t: {op: conv2d, out: 2, kernel: 3, padding: valid, bias: false}",
        (2, 8, 8),
        trainable=2 * 3 * 3 * 3,
        macs=2 * 8 * 8 * 3 * 3 * 3,
        attrs={"padding": (0, 0, 0, 0)},
    ),
]

DEPTHWISE_SEPARABLE = [
    case(
        "depthwise-mobilenet",
        (32, 112, 112),
        "t: {op: depthwise_conv2d, kernel: 3, padding: 1, bias: false}",
        (32, 112, 112),
        trainable=32 * 1 * 3 * 3,  # 288
        macs=32 * 112 * 112 * 3 * 3,
        weights={"weight": (32, 1, 3, 3)},
    ),
    case(
        "depthwise-multiplier",
        (8, 10, 10),
        "t: {op: depthwise_conv2d, kernel: 3, multiplier: 2}",
        (16, 8, 8),  # 8 channels x multiplier 2
        trainable=16 * 1 * 3 * 3 + 16,
        macs=16 * 8 * 8 * 3 * 3,
        weights={"weight": (16, 1, 3, 3), "bias": (16,)},
    ),
    case(
        "depthwise-same-stride2",
        (32, 112, 112),
        "t: {op: depthwise_conv2d, kernel: 3, stride: 2, padding: same, bias: false}",
        (32, 56, 56),
        trainable=32 * 3 * 3,
        macs=32 * 56 * 56 * 3 * 3,
        attrs={"padding": (0, 1, 0, 1)},
    ),
    case(
        "separable",
        (16, 10, 10),
        "t: {op: separable_conv2d, out: 32, kernel: 3, padding: 1, bias: false}",
        (32, 10, 10),
        trainable=16 * 3 * 3 + 32 * 16,  # depthwise + pointwise
        macs=16 * 10 * 10 * 3 * 3 + 32 * 16 * 10 * 10,
        weights={"depthwise.weight": (16, 1, 3, 3), "pointwise.weight": (32, 16, 1, 1)},
    ),
    case(
        "separable-multiplier-bias",
        (16, 10, 10),
        "t: {op: separable_conv2d, out: 24, kernel: 3, multiplier: 2}",
        (24, 8, 8),  # mid = 16 * 2 = 32
        trainable=32 * 3 * 3 + 24 * 32 + 24,
        macs=32 * 8 * 8 * 3 * 3 + 24 * 32 * 8 * 8,
        weights={"depthwise.weight": (32, 1, 3, 3), "pointwise.weight": (24, 32, 1, 1), "pointwise.bias": (24,)},
    ),
    case(
        "separable-xception-stride2",
        (64, 38, 38),
        "t: {op: separable_conv2d, out: 128, kernel: 3, stride: 2, padding: same, bias: false}",
        (128, 19, 19),  # total (19-1)*2+3-38 = 1 -> (0, 1)
        trainable=64 * 3 * 3 + 128 * 64,
        macs=64 * 19 * 19 * 3 * 3 + 128 * 64 * 19 * 19,
        attrs={"padding": (0, 1, 0, 1)},
    ),
]

CONV1D = [
    case(
        "conv1d",
        (4, 100),
        "t: {op: conv1d, out: 8, kernel: 3}",
        (8, 98),
        trainable=8 * 4 * 3 + 8,
        macs=8 * 98 * 4 * 3,
        attrs={"padding": (0, 0)},
        weights={"weight": (8, 4, 3), "bias": (8,)},
    ),
    case(
        "conv1d-causal-dilated",
        (16, 100),
        "t: {op: conv1d, out: 16, kernel: 2, dilation: 4, padding: causal}",
        (16, 100),  # (2 - 1) * 4 = 4 on the left: length kept
        trainable=16 * 16 * 2 + 16,
        macs=16 * 100 * 16 * 2,
        attrs={"padding": (4, 0), "dilation": 4},
    ),
    case(
        "conv1d-causal-k3-d2",
        (8, 50),
        "t: {op: conv1d, out: 8, kernel: 3, dilation: 2, padding: causal, bias: false}",
        (8, 50),
        trainable=8 * 8 * 3,
        macs=8 * 50 * 8 * 3,
        attrs={"padding": (4, 0)},  # (3 - 1) * 2
    ),
    case(
        "conv1d-dilated-valid",
        (4, 20),
        "t: {op: conv1d, out: 4, kernel: 3, dilation: 3, bias: false}",
        (4, 14),  # span 3 * 2 + 1 = 7: 20 - 7 + 1
        trainable=4 * 4 * 3,
        macs=4 * 14 * 4 * 3,
    ),
    case(
        "conv1d-same-stride2",
        (4, 100),
        "t: {op: conv1d, out: 4, kernel: 3, stride: 2, padding: same, bias: false}",
        (4, 50),  # total (50-1)*2+3-100 = 1 -> (0, 1)
        trainable=4 * 4 * 3,
        macs=4 * 50 * 4 * 3,
        attrs={"padding": (0, 1)},
    ),
    case(
        "conv1d-groups",
        (8, 50),
        "t: {op: conv1d, out: 8, kernel: 3, padding: 1, groups: 8}",
        (8, 50),
        trainable=8 * 1 * 3 + 8,
        macs=8 * 50 * 1 * 3,
        weights={"weight": (8, 1, 3), "bias": (8,)},
    ),
    case(
        "conv1d-left-right-padding",
        (4, 10),
        "t: {op: conv1d, out: 2, kernel: 3, padding: [2, 0], bias: false}",
        (2, 10),
        trainable=2 * 4 * 3,
        macs=2 * 10 * 4 * 3,
        attrs={"padding": (2, 0)},
    ),
]

DENSE = [
    case(
        "dense",
        (400,),
        "t: {op: dense, out: 120}",
        (120,),
        trainable=400 * 120 + 120,
        macs=400 * 120,
        weights={"weight": (120, 400), "bias": (120,)},
    ),
    case(
        "dense-no-bias",
        (2048,),
        "t: {op: dense, out: 1000, bias: false}",
        (1000,),
        trainable=2048 * 1000,
        macs=2048 * 1000,
        weights={"weight": (1000, 2048)},
    ),
]

POOLING = [
    case(
        "max-pool-stride-defaults-to-kernel",
        (6, 28, 28),
        "t: {op: max_pool2d, kernel: 2}",
        (6, 14, 14),
        attrs={"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0, 0, 0), "ceil_mode": False},
    ),
    case(
        "max-pool-resnet",
        (64, 112, 112),
        "t: {op: max_pool2d, kernel: 3, stride: 2, padding: 1}",
        (64, 56, 56),  # (112 + 2 - 3) // 2 + 1
    ),
    case(
        "max-pool-floor",
        (64, 112, 112),
        "t: {op: max_pool2d, kernel: 3, stride: 2}",
        (64, 55, 55),  # (112 - 3) // 2 + 1
    ),
    case(
        "max-pool-ceil",
        (64, 112, 112),
        "t: {op: max_pool2d, kernel: 3, stride: 2, ceil_mode: true}",
        (64, 56, 56),  # ceil((112 - 3) / 2) + 1
        attrs={"ceil_mode": True},
    ),
    case(
        "max-pool-ceil-exact",
        (96, 55, 55),
        "t: {op: max_pool2d, kernel: 3, stride: 2, ceil_mode: true}",
        (96, 27, 27),  # (55 - 3) / 2 is exact: ceil changes nothing
    ),
    case(
        # ceil((5 + 2 - 2) / 2) + 1 = 4, but window 4 would start at 6, in the
        # right padding (input + left pad = 6): PyTorch drops it
        "max-pool-ceil-last-window-in-right-padding",
        (1, 5, 5),
        "t: {op: max_pool2d, kernel: 2, stride: 2, padding: 1, ceil_mode: true}",
        (1, 3, 3),
    ),
    case(
        # per-side padding (0, 1): window 3 would start at 4 = input + top pad,
        # in the bottom padding, and see nothing but padding
        "max-pool-ceil-asymmetric-padding",
        (1, 4, 4),
        "t: {op: max_pool2d, kernel: 2, stride: 2, padding: [0, 1, 0, 1], ceil_mode: true}",
        (1, 2, 2),
        attrs={"padding": (0, 1, 0, 1)},
    ),
    case(
        "max-pool-same",
        (8, 7, 7),
        "t: {op: max_pool2d, kernel: 3, stride: 2, padding: same}",
        (8, 4, 4),  # total (4-1)*2+3-7 = 2 -> (1, 1)
        attrs={"padding": (1, 1, 1, 1)},
    ),
    case(
        "max-pool-same-even",
        (8, 8, 8),
        "t: {op: max_pool2d, kernel: 3, stride: 2, padding: same}",
        (8, 4, 4),  # total (4-1)*2+3-8 = 1 -> (0, 1)
        attrs={"padding": (0, 1, 0, 1)},
    ),
    case(
        "avg-pool",
        (16, 8, 8),
        "t: {op: avg_pool2d, kernel: 2}",
        (16, 4, 4),
        attrs={"count_include_pad": True},
    ),
    case(
        "avg-pool-padded-exclude-pad",
        (16, 8, 8),
        "t: {op: avg_pool2d, kernel: 3, stride: 1, padding: 1, count_include_pad: false}",
        (16, 8, 8),
        attrs={"count_include_pad": False, "padding": (1, 1, 1, 1), "stride": (1, 1)},
    ),
    case(
        "avg-pool-ceil",
        (16, 7, 7),
        "t: {op: avg_pool2d, kernel: 2, stride: 2, ceil_mode: true}",
        (16, 4, 4),  # ceil((7 - 2) / 2) + 1; floor would give 3
    ),
    case(
        "avg-pool-rectangular",
        (4, 9, 12),
        "t: {op: avg_pool2d, kernel: [3, 2]}",
        (4, 3, 6),
        attrs={"stride": (3, 2)},
    ),
    case("global-avg-pool", (512, 7, 7), "t: {op: global_avg_pool}", (512,)),
    case("global-avg-pool-keepdims", (512, 7, 7), "t: {op: global_avg_pool, keepdims: true}", (512, 1, 1)),
    case("global-avg-pool-1d", (16, 50), "t: {op: global_avg_pool}", (16,)),
    case("global-avg-pool-1d-keepdims", (16, 50), "t: {op: global_avg_pool, keepdims: true}", (16, 1)),
    case("global-max-pool", (256, 6, 6), "t: {op: global_max_pool}", (256,)),
    case("global-max-pool-keepdims", (256, 6, 6), "t: {op: global_max_pool, keepdims: true}", (256, 1, 1)),
    case("global-max-pool-1d", (16, 50), "t: {op: global_max_pool}", (16,)),
]

NORMALIZATION = [
    case(
        "batch-norm",
        (64, 56, 56),
        "t: {op: batch_norm}",
        (64, 56, 56),
        trainable=2 * 64,  # weight, bias
        non_trainable=2 * 64,  # running mean, running variance
        attrs={"eps": 1e-5, "momentum": 0.1},
        weights={"weight": (64,), "bias": (64,), "running_mean": (64,), "running_var": (64,)},
    ),
    case(
        "batch-norm-1d-keras-settings",
        (120,),
        "t: {op: batch_norm, eps: 0.001, momentum: 0.01}",
        (120,),
        trainable=2 * 120,
        non_trainable=2 * 120,
        attrs={"eps": 0.001, "momentum": 0.01},
    ),
    case("batch-norm-sequence", (16, 50), "t: {op: batch_norm}", (16, 50), trainable=2 * 16, non_trainable=2 * 16),
    case(
        "layer-norm",
        (64, 8, 8),
        "t: {op: layer_norm, eps: 0.000001}",
        (64, 8, 8),
        trainable=2 * 64,
        attrs={"eps": 1e-6},
        weights={"weight": (64,), "bias": (64,)},
    ),
    case("layer-norm-flat", (120,), "t: {op: layer_norm}", (120,), trainable=2 * 120),
    case("instance-norm", (16, 8, 8), "t: {op: instance_norm}", (16, 8, 8), attrs={"affine": False}),
    case(
        "instance-norm-affine",
        (16, 8, 8),
        "t: {op: instance_norm, affine: true}",
        (16, 8, 8),
        trainable=2 * 16,
        weights={"weight": (16,), "bias": (16,)},
    ),
    case("instance-norm-1d-affine", (16, 50), "t: {op: instance_norm, affine: true}", (16, 50), trainable=2 * 16),
    case(
        "lrn-alexnet",
        (96, 55, 55),
        "t: {op: lrn}",
        (96, 55, 55),
        attrs={"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0},
    ),
    case(
        "lrn-custom",
        (96, 55, 55),
        "t: {op: lrn, size: 3, alpha: 0.001, beta: 0.5, k: 1}",
        (96, 55, 55),
        attrs={"size": 3, "alpha": 0.001, "beta": 0.5, "k": 1.0},
    ),
]

ELEMENTWISE = [
    case("dropout", (4096,), "t: {op: dropout}", (4096,), attrs={"rate": 0.5}),
    case("dropout-rate", (64, 4, 4), "t: {op: dropout, rate: 0.2}", (64, 4, 4), attrs={"rate": 0.2}),
    *[case(f"activation-{name}", (8, 4, 4), f"t: {{op: {name}}}", (8, 4, 4)) for name in ACTIVATIONS],
    case("activation-softmax-flat", (10,), "t: {op: softmax}", (10,)),
    case(
        "activation-leaky-relu-slope",
        (8, 4, 4),
        "t: {op: leaky_relu, negative_slope: 0.2}",
        (8, 4, 4),
        attrs={"negative_slope": 0.2},
    ),
    case("activation-swish-alias", (8, 4, 4), "t: {op: swish}", (8, 4, 4)),
    case("flatten", (16, 5, 5), "t: {op: flatten}", (16 * 5 * 5,)),
    case("flatten-sequence", (8, 10), "t: {op: flatten}", (80,)),
    case("flatten-flat", (7,), "t: {op: flatten}", (7,)),
]

MERGE_AND_RESHAPE = [
    case(
        "add",
        (4, 6, 6),
        [
            "a: {op: conv2d, out: 8, kernel: 3, padding: 1}",
            "b: {op: conv2d, out: 8, kernel: 1, in: input}",
            "t: {op: add, in: [a, b]}",
        ],
        (8, 6, 6),
    ),
    case(
        "add-residual-three-inputs",
        (4, 6, 6),
        ["a: {op: relu}", "b: {op: sigmoid, in: input}", "t: {op: add, in: [a, b, input]}"],
        (4, 6, 6),
    ),
    case(
        "concat",
        (4, 6, 6),
        [
            "a: {op: conv2d, out: 8, kernel: 1}",
            "b: {op: conv2d, out: 16, kernel: 3, padding: 1, in: input}",
            "t: {op: concat, in: [a, b, input]}",
        ],
        (8 + 16 + 4, 6, 6),
    ),
    case(
        "concat-flat",
        (4, 3, 3),
        ["a: {op: flatten}", "b: {op: global_avg_pool, in: input}", "t: {op: concat, in: [a, b]}"],
        (4 * 3 * 3 + 4,),
    ),
    case(
        "multiply-equal-shapes",
        (4, 6, 6),
        ["a: {op: sigmoid}", "t: {op: multiply, in: [input, a]}"],
        (4, 6, 6),
    ),
    case(
        "multiply-se-c11",
        (4, 6, 6),
        ["s: {op: global_avg_pool, keepdims: true}", "t: {op: multiply, in: [input, s]}"],
        (4, 6, 6),
    ),
    case(
        "multiply-se-c",
        (4, 6, 6),
        ["s: {op: global_avg_pool}", "g: {op: sigmoid}", "t: {op: multiply, in: [input, g]}"],
        (4, 6, 6),
    ),
    case(
        "multiply-se-vector-first",
        (4, 6, 6),
        ["s: {op: global_avg_pool, keepdims: true}", "t: {op: multiply, in: [s, input]}"],
        (4, 6, 6),
    ),
    case(
        "multiply-sequence-c1",
        (16, 50),
        ["s: {op: global_avg_pool, keepdims: true}", "t: {op: multiply, in: [input, s]}"],
        (16, 50),
    ),
    case("channel-shuffle", (12, 8, 8), "t: {op: channel_shuffle, groups: 3}", (12, 8, 8), attrs={"groups": 3}),
    case("channel-shuffle-sequence", (12, 10), "t: {op: channel_shuffle, groups: 4}", (12, 10)),
    case(
        "zero-pad-per-side",
        (3, 224, 224),
        "t: {op: zero_pad2d, padding: [0, 1, 0, 1]}",
        (3, 225, 225),
        attrs={"padding": (0, 1, 0, 1)},
    ),
    case(
        "zero-pad-int", (3, 224, 224), "t: {op: zero_pad2d, padding: 3}", (3, 230, 230), attrs={"padding": (3, 3, 3, 3)}
    ),
    case(
        "zero-pad-pair",
        (3, 10, 10),
        "t: {op: zero_pad2d, padding: [1, 2]}",
        (3, 12, 14),
        attrs={"padding": (1, 1, 2, 2)},
    ),
]

NEW_OPS = [
    # (n - 1) x stride - 2 x padding + kernel + output_padding: (5 - 1) * 2 - 2 + 3 + 1 = 10
    case(
        "conv-transpose",
        (6, 5, 7),
        "t: {op: conv_transpose2d, out: 8, kernel: 3, stride: 2, padding: 1, output_padding: 1}",
        (8, 10, 14),
        trainable=6 * 8 * 9 + 8,
        macs=6 * 5 * 7 * 8 * 9,
        attrs={"padding": (1, 1), "output_padding": (1, 1)},
        weights={"weight": (6, 8, 3, 3), "bias": (8,)},
    ),
    case(
        "conv-transpose-rect-nobias",
        (4, 3, 3),
        "t: {op: conv_transpose2d, out: 2, kernel: [2, 3], stride: [2, 1], bias: false}",
        (2, 6, 5),
        trainable=4 * 2 * 6,
        macs=4 * 3 * 3 * 2 * 6,
        weights={"weight": (4, 2, 2, 3)},
    ),
    case("gelu-tanh", (4, 6, 6), "t: {op: gelu, approximate: tanh}", (4, 6, 6), attrs={"approximate": "tanh"}),
    case("gelu-exact-default", (4, 6, 6), "t: {op: gelu}", (4, 6, 6), attrs={"approximate": "none"}),
    case("drop-path", (4, 6, 6), "t: {op: drop_path, rate: 0.2}", (4, 6, 6), attrs={"rate": 0.2}),
    case("scale", (4, 6, 6), "t: {op: scale, init: 1.0e-6}", (4, 6, 6), trainable=4, weights={"weight": (4,)}),
    case("scale-vector", (10,), "t: {op: scale}", (10,), trainable=10),
    case("slice", (10, 6, 6), "t: {op: slice, start: 3, stop: 8}", (5, 6, 6)),
    case("slice-from-zero", (10, 6), "t: {op: slice, stop: 5}", (5, 6), attrs={"start": 0}),
    case("upsample-nearest", (4, 5, 7), "t: {op: upsample}", (4, 10, 14), attrs={"mode": "nearest", "scale": 2}),
    case("upsample-bilinear", (4, 5, 7), "t: {op: upsample, scale: 3, mode: bilinear}", (4, 15, 21)),
]

CASES = (
    NEW_OPS + CONV2D + DEPTHWISE_SEPARABLE + CONV1D + DENSE + POOLING + NORMALIZATION + ELEMENTWISE + MERGE_AND_RESHAPE
)


def test_every_op_is_covered_by_the_table():
    covered = {c.op for c in CASES}
    assert set(OPS) - covered == set(), "add rows for these ops to the table in tests/test_ops.py"
    assert covered <= set(OPS)


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_op_rules(write_spec, c: Case):
    compiled = compile_net(write_spec, c.input, c.layers)
    node = compiled.graph.node("t")
    assert node.op == c.op
    assert node.shape == c.shape
    count = compiled.counts.nodes["t"]
    assert (count.trainable, count.non_trainable, count.macs) == (c.trainable, c.non_trainable, c.macs)
    for name, value in c.attrs.items():
        assert node.attrs[name] == value, name
    tensors = {w.name: w for w in node_weights(node)}
    for name, shape in c.weights.items():
        assert tensors[name].shape == shape, name
    if c.weights:
        assert set(tensors) == set(c.weights)
    # the parameter count is the weights' sizes, nothing else
    assert sum(w.size for w in tensors.values()) == count.total


def test_swish_is_an_alias_of_silu():
    assert ops.lookup("swish") is OPS["silu"]
    assert ops.lookup("relu") is OPS["relu"]
    assert ops.lookup("no_such_op") is None


# ----------------------------------------------------------------------------
# Errors: every rule refuses what it cannot compute, with a stable code


ERRORS = [
    (
        "conv-groups-in",
        (6, 8, 8),
        ["t: {op: conv2d, out: 8, kernel: 1, groups: 4}"],
        "E403",
        "input channels (6) are not divisible by groups (4)",
    ),
    (
        "conv-groups-out",
        (8, 8, 8),
        ["t: {op: conv2d, out: 6, kernel: 1, groups: 4}"],
        "E403",
        "output channels (6) are not divisible by groups (4)",
    ),
    (
        "conv-kernel-too-large",
        (3, 4, 4),
        ["t: {op: conv2d, out: 8, kernel: 5}"],
        "E402",
        "the kernel window (5) is larger than the padded input (4)",
    ),
    ("conv-dilated-too-large", (3, 8, 8), ["t: {op: conv2d, out: 8, kernel: 3, dilation: 4}"], "E402", "window (9)"),
    ("conv-on-sequence", (3, 8), ["t: {op: conv2d, out: 8, kernel: 3}"], "E404", "conv2d takes (C, H, W) input"),
    (
        "conv-padding-three-items",
        (3, 8, 8),
        ["t: {op: conv2d, out: 8, kernel: 3, padding: [1, 1, 1]}"],
        "E101",
        "must be p, [h, w] or [top, bottom, left, right]",
    ),
    (
        "conv-padding-negative",
        (3, 8, 8),
        ["t: {op: conv2d, out: 8, kernel: 3, padding: -1}"],
        "E303",
        "must be at least 0",
    ),
    (
        "conv-padding-causal-2d",
        (3, 8, 8),
        ["t: {op: conv2d, out: 8, kernel: 3, padding: causal}"],
        "E203",
        "neither a parameter nor one of: same, valid",
    ),
    ("conv-stride-zero", (3, 8, 8), ["t: {op: conv2d, out: 8, kernel: 3, stride: 0}"], "E303", "must be at least 1"),
    ("conv-fractional-out", (3, 8, 8), ["t: {op: conv2d, out: 2.5, kernel: 3}"], "E101", "must be an integer"),
    (
        "depthwise-kernel-too-large",
        (3, 2, 2),
        ["t: {op: depthwise_conv2d, kernel: 3}"],
        "E402",
        "larger than the padded input",
    ),
    ("conv1d-groups", (6, 20), ["t: {op: conv1d, out: 8, kernel: 3, groups: 4}"], "E403", "not divisible by groups"),
    ("conv1d-on-image", (3, 8, 8), ["t: {op: conv1d, out: 8, kernel: 3}"], "E404", "conv1d takes (C, L) input"),
    ("dense-on-image", (3, 8, 8), ["t: {op: dense, out: 10}"], "E404", "add a flatten or global pool before it"),
    (
        "pool-padding-over-half-kernel",
        (3, 8, 8),
        ["t: {op: max_pool2d, kernel: 2, padding: 2}"],
        "E303",
        "more than half the kernel",
    ),
    (
        "pool-window-too-large",
        (3, 2, 2),
        ["t: {op: avg_pool2d, kernel: 3}"],
        "E402",
        "the pooling window (3) is larger",
    ),
    (
        "global-pool-on-flat",
        (10,),
        ["t: {op: global_avg_pool}"],
        "E404",
        "global_avg_pool takes (C, L) or (C, H, W) input",
    ),
    ("instance-norm-on-flat", (10,), ["t: {op: instance_norm}"], "E404", "instance_norm takes"),
    ("lrn-even-size", (96, 8, 8), ["t: {op: lrn, size: 4}"], "E303", "LRN size must be odd (got 4)"),
    ("dropout-rate-one", (10,), ["t: {op: dropout, rate: 1.0}"], "E303", "must be between 0 and 0.999"),
    ("batch-norm-momentum", (10,), ["t: {op: batch_norm, momentum: 1.5}"], "E303", "must be between 0 and 1"),
    (
        "add-mismatch",
        (4, 6, 6),
        ["a: {op: conv2d, out: 8, kernel: 1}", "t: {op: add, in: [input, a]}"],
        "E401",
        "input 1 has shape (4, 6, 6) but input 2 has shape (8, 6, 6); add needs equal shapes",
    ),
    ("add-one-input", (4, 6, 6), ["t: {op: add}"], "E209", "add takes 2 to 64 inputs, got 1"),
    (
        "concat-spatial-mismatch",
        (4, 6, 6),
        ["a: {op: max_pool2d, kernel: 2}", "t: {op: concat, in: [input, a]}"],
        "E401",
        "concat joins along channels and needs every other dimension equal",
    ),
    (
        "concat-rank-mismatch",
        (4, 6, 6),
        ["a: {op: flatten}", "t: {op: concat, in: [input, a]}"],
        "E401",
        "input 2 has shape (144)",
    ),
    ("slice-past-the-end", (4, 6, 6), ["t: {op: slice, start: 2, stop: 6}"], "E303", "slice [2:6] is not"),
    ("slice-empty", (4, 6, 6), ["t: {op: slice, start: 3, stop: 3}"], "E303", "0 <= start < stop <= 4"),
    (
        "conv-transpose-output-padding",
        (4, 6, 6),
        ["t: {op: conv_transpose2d, out: 4, kernel: 3, stride: 2, output_padding: 2}"],
        "E303",
        "output_padding (2, 2) must be smaller than the stride (2, 2)",
    ),
    ("upsample-mode", (4, 6, 6), ["t: {op: upsample, mode: bicubic}"], "E203", "one of: nearest, bilinear"),
    ("gelu-approximate", (4, 6, 6), ["t: {op: gelu, approximate: 1}"], "E101", "must be one of: none, tanh"),
    (
        "multiply-channel-mismatch",
        (4, 6, 6),
        [
            "a: {op: conv2d, out: 3, kernel: 1}",
            "s: {op: global_avg_pool, keepdims: true}",
            "t: {op: multiply, in: [input, s]}",
        ],
        "E401",
        "cannot multiply shapes (4, 6, 6) and (3, 1, 1)",
    ),
    (
        "multiply-vector-mismatch",
        (4, 6, 6),
        ["a: {op: conv2d, out: 3, kernel: 1}", "s: {op: global_avg_pool}", "t: {op: multiply, in: [input, s]}"],
        "E401",
        "cannot multiply shapes (4, 6, 6) and (3)",
    ),
    (
        "multiply-spatial-mismatch",
        (4, 6, 6),
        ["a: {op: max_pool2d, kernel: 2}", "t: {op: multiply, in: [input, a]}"],
        "E401",
        "multiply needs equal shapes, or one input of shape (C,) or (C, 1, 1)",
    ),
    (
        "multiply-three-inputs",
        (4, 6, 6),
        ["a: {op: relu}", "t: {op: multiply, in: [input, a, a]}"],
        "E209",
        "multiply takes 2 inputs, got 3",
    ),
    (
        "channel-shuffle-indivisible",
        (10, 4, 4),
        ["t: {op: channel_shuffle, groups: 3}"],
        "E403",
        "channels (10) are not divisible by groups (3)",
    ),
    ("zero-pad-same", (3, 8, 8), ["t: {op: zero_pad2d, padding: same}"], "E303", "zero_pad2d needs explicit padding"),
]


@pytest.mark.parametrize(("id", "input", "layers", "code", "fragment"), ERRORS, ids=[e[0] for e in ERRORS])
def test_op_errors(write_spec, id, input, layers, code, fragment):
    diagnostics = compile_errors(write_spec, input, layers)
    assert any(d.code == code and fragment in d.message for d in diagnostics), [str(d) for d in diagnostics]


def test_shape_errors_name_the_node_and_its_inputs(write_spec):
    (diag,) = compile_errors(write_spec, (6, 8, 8), ["t: {op: conv2d, out: 8, kernel: 1, groups: 4}"])
    assert diag.message.startswith("t: ")
    assert "[input: input (6, 8, 8)]" in diag.message
    assert diag.pos.line == 5  # the node's line in the spec written by spec_text


def test_errors_after_a_failed_node_are_not_cascaded(write_spec):
    diagnostics = compile_errors(
        write_spec,
        (6, 8, 8),
        ["a: {op: conv2d, out: 8, kernel: 1, groups: 4}", "b: {op: relu}", "t: {op: conv2d, out: 8, kernel: 99}"],
    )
    assert [d.code for d in diagnostics] == ["E403"]


# ----------------------------------------------------------------------------
# Rules checked directly and against reference formulas


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "dilation", "expected"),
    [
        (224, 3, 2, 1, (0, 1)),
        (225, 3, 2, 1, (1, 1)),
        (224, 7, 2, 1, (2, 3)),  # total (112-1)*2+7-224 = 5
        (224, 1, 2, 1, (0, 0)),
        (10, 3, 1, 1, (1, 1)),
        (10, 4, 1, 1, (1, 2)),
        (10, 3, 1, 2, (2, 2)),
        (8, 5, 2, 1, (1, 2)),
        (7, 2, 2, 1, (0, 1)),
        (1, 3, 1, 1, (1, 1)),
        (5, 1, 1, 1, (0, 0)),
        (4, 3, 3, 1, (1, 1)),  # out 2: total (2-1)*3+3-4 = 2
    ],
)
def test_same_padding(size, kernel, stride, dilation, expected):
    assert same_padding(size, kernel, stride, dilation) == expected


def apply(op: str, attrs: dict, ins: list[tuple[int, ...]]):
    """Run an op's rules as the expander does: defaults, resolve, shape."""
    opdef = OPS[op]
    full = {name: attr.default for name, attr in opdef.attrs.items()} | attrs
    resolved = opdef.resolve(full, ins)
    shape = opdef.shape(resolved, ins)
    return resolved, shape


def test_rules_called_directly():
    attrs, shape = apply("conv2d", {"out": 64, "kernel": 7, "stride": 2, "padding": 3, "bias": False}, [(3, 224, 224)])
    assert shape == (64, 112, 112)
    weights = OPS["conv2d"].weights(attrs, [(3, 224, 224)])
    assert weights == [Weight("weight", (64, 3, 7, 7))]
    assert OPS["conv2d"].macs(attrs, [(3, 224, 224)], shape) == 9408 * 112 * 112
    assert parameter_count(weights) == (9408, 0)


def test_parameter_count_splits_trainable():
    weights = [Weight("w", (3, 4)), Weight("m", (5,), trainable=False), Weight("b", (2,))]
    assert parameter_count(weights) == (3 * 4 + 2, 5)
    assert parameter_count([]) == (0, 0)


@pytest.mark.parametrize(
    "name", sorted(set(OPS) - {"conv2d", "depthwise_conv2d", "separable_conv2d", "conv1d", "dense", "conv_transpose2d"})
)
def test_only_convolutions_and_dense_count_macs(name):
    opdef = OPS[name]
    assert opdef.macs({}, [(4, 4, 4)], (4, 4, 4)) == 0


def test_op_table_is_well_formed():
    families = {"conv", "dense", "pool", "norm", "activation", "merge", "reshape", "regularization"}
    for name, opdef in OPS.items():
        assert opdef.name == name
        assert opdef.family in families, name
        assert opdef.doc, name
        assert 1 <= opdef.min_inputs <= opdef.max_inputs, name
        assert set(opdef.ranks) <= {1, 2, 3}, name
        for aname, attr in opdef.attrs.items():
            assert attr.doc, f"{name}.{aname}"
            assert attr.kind in {"int", "float", "bool", "pair", "pad2d", "pad1d", "choice"}, f"{name}.{aname}"
            assert (attr.kind == "choice") == bool(attr.choices), f"{name}.{aname}"


def pytorch_pool_out(size: int, kernel: int, pad_l: int, pad_r: int, stride: int, ceil_mode: bool) -> int:
    """ATen's pooling_output_shape_pad_lr (aten/src/ATen/native/Pool.h), dilation 1."""
    numerator = size + pad_l + pad_r - (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad_l:
        out -= 1
    return out


@settings(max_examples=400, deadline=None)
@given(
    size=st.integers(1, 40),
    kernel=st.integers(1, 7),
    stride=st.integers(1, 4),
    data=st.data(),
    ceil_mode=st.booleans(),
    op=st.sampled_from(["max_pool2d", "avg_pool2d"]),
)
def test_pooling_agrees_with_pytorch(size, kernel, stride, data, ceil_mode, op):
    top = data.draw(st.integers(0, kernel // 2))
    bottom = data.draw(st.integers(0, kernel // 2))
    if size + top + bottom < kernel:
        return
    attrs = {"kernel": [kernel, 1], "stride": [stride, 1], "padding": [top, bottom, 0, 0], "ceil_mode": ceil_mode}
    _, shape = apply(op, attrs, [(2, size, 3)])
    assert shape == (2, pytorch_pool_out(size, kernel, top, bottom, stride, ceil_mode), 3)


@settings(max_examples=400, deadline=None)
@given(
    size=st.integers(1, 300),
    kernel=st.integers(1, 7),
    stride=st.integers(1, 4),
    dilation=st.integers(1, 3),
)
def test_same_padding_keeps_ceil_size_over_stride(size, kernel, stride, dilation):
    attrs, shape = apply(
        "conv2d",
        {"out": 2, "kernel": kernel, "stride": stride, "dilation": dilation, "padding": "same"},
        [(1, size, size)],
    )
    top, bottom, left, right = attrs["padding"]
    assert shape == (2, math.ceil(size / stride), math.ceil(size / stride))
    assert bottom - top in (0, 1)  # the odd pixel goes bottom/right
    assert (top, bottom) == (left, right)


@settings(max_examples=200, deadline=None)
@given(
    cin_per_group=st.integers(1, 8),
    cout_per_group=st.integers(1, 8),
    groups=st.integers(1, 4),
    kh=st.integers(1, 5),
    kw=st.integers(1, 5),
    size=st.integers(5, 20),
)
def test_conv_macs_are_one_filter_per_output_element(cin_per_group, cout_per_group, groups, kh, kw, size):
    cin, cout = cin_per_group * groups, cout_per_group * groups
    ins = [(cin, size, size)]
    attrs, shape = apply("conv2d", {"out": cout, "kernel": [kh, kw], "groups": groups, "bias": False}, ins)
    (weight,) = OPS["conv2d"].weights(attrs, ins)
    assert weight.shape == (cout, cin_per_group, kh, kw)
    # every output element is one filter of (cin / groups) x kh x kw multiply-adds
    assert OPS["conv2d"].macs(attrs, ins, shape) == math.prod(shape) * weight.size // cout
