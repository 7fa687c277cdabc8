"""Keras emitter: Keras 3 functional API, one function per block.

Only ``keras.layers`` and ``keras.ops`` are used, so the file runs on any
Keras backend. Tensors are channels-last (NHWC); layer names are the IR
paths (``layer1.0.conv1``), so weights map 1:1 to the canonical keys.
"""

from __future__ import annotations

import builtins
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from archspec.codegen import common
from archspec.codegen.model import LOGITS, CodegenError, CodeModel, Padding, Step, Unit, step_exprs, substitute
from archspec.codegen.render import render_template
from archspec.ir import Graph
from archspec.ops import same_padding
from archspec.schema import expr as E

TARGET = "keras"


@dataclass
class Ctx:
    printer: common.Printer
    helpers: set[str] = field(default_factory=set)
    limits: list[CodegenError] = field(default_factory=list)  # what the spec asks that cannot be written
    in_model: bool = False
    # IR paths: each node's first input, the nodes whose output cannot be negative
    # (see nonnegative_nodes), the instances of the unit being written ("" for the network).
    first_input: dict[str, str] = field(default_factory=dict)
    nonnegative: set[str] = field(default_factory=set)
    scopes: list[str] = field(default_factory=list)

    def name(self, step: Step, suffix: str = "") -> str:
        """The ``name=`` of a layer: its IR path (an f-string inside blocks)."""
        if self.in_model:
            return f'name="{step.name}{suffix}"'
        return f'name=f"{{name}}.{step.name}{suffix}"'

    def nonnegative_input(self, step: Step) -> bool:
        """Whether the first input of an op step cannot be negative in any instance."""
        paths = [f"{scope}.{step.name}" if scope else step.name for scope in self.scopes]
        inputs = [self.first_input[p] for p in paths if p in self.first_input]
        return bool(inputs) and all(p in self.nonnegative for p in inputs)


# Ops whose output is never negative, and ops whose output is not negative
# when no input is (LRN divides by a positive number when k > 0).
NONNEGATIVE_OPS = {"relu", "relu6", "sigmoid", "softmax"}
SIGN_KEEPING_OPS = {
    "max_pool2d",
    "avg_pool2d",
    "global_avg_pool",
    "global_max_pool",
    "dropout",
    "drop_path",
    "slice",
    "upsample",
    "flatten",
    "channel_shuffle",
    "zero_pad2d",
    "concat",
    "add",
    "multiply",
    "lrn",
}


def nonnegative_nodes(graph: Graph) -> set[str]:
    """The IR nodes whose output cannot be negative: a ReLU, ReLU6, sigmoid or
    softmax, or an op of SIGN_KEEPING_OPS all of whose inputs are such nodes
    (the network's input can be negative). A max pool over them can pad with
    zeros instead of -inf: no window is all padding, so a zero never beats a
    value of the window."""
    out: set[str] = set()
    for n in graph.nodes:
        keeps = n.op in SIGN_KEEPING_OPS and (n.op != "lrn" or n.attrs["k"] > 0)
        if n.op in NONNEGATIVE_OPS or (keeps and all(i in out for i in n.inputs)):
            out.add(n.path)
    return out


# ----------------------------------------------------------------------------
# Per-op rules: lines computing ``out`` from ``ins`` (variable names).

Rule = Callable[[Step, Ctx, list[str], str], list[str]]


def _a(step: Step, ctx: Ctx, key: str) -> str:
    return ctx.printer.pair(step.attrs[key])


def _v(step: Step, ctx: Ctx, key: str) -> object:
    return ctx.printer.value(step.attrs[key])


def _kw(name: str, value: str, default: str) -> list[str]:
    return [] if value == default else [f"{name}={value}"]


def _padding(
    step: Step, ctx: Ctx, inp: str, out: str, fill_inf: bool = False, keras_same: bool = True
) -> tuple[list[str], str, str]:
    """Decide how a windowed layer pads. Returns (lines before the layer,
    the layer's padding keyword, the input variable for the layer); a pad
    layer writes to the step's own output variable, which is free until then.
    Pads that Keras' "same" gives on this input are written as padding="same";
    others as a pad layer: zeros, or -inf where ``fill_inf`` (max pooling over
    values that can be negative). ``keras_same`` False: never say
    padding="same" (average pooling that counts the padded zeros, which
    Keras' "same" leaves out of the average)."""
    p: Padding | None = step.padding
    if p is None or p.mode in ("none", "valid"):
        return [], '"valid"', inp
    if p.mode in ("same", "causal"):
        return [], f'"{p.mode}"', inp
    if p.mode == "keyword":
        return [], ctx.printer.expr(p.expr), inp
    pad_layer = "NegInfPadding2D" if fill_inf else "layers.ZeroPadding2D"
    if p.expr is not None:  # symmetric, varying between instances: pad when it is not zero
        amount = ctx.printer.pair(p.expr)
        if step.in_ranks[0] == 2:
            pad_layer = "layers.ZeroPadding1D"
        if fill_inf:
            ctx.helpers.add("NegInfPadding2D")
        lines = [f"{out} = {inp}"] if out != inp else []
        lines += [f"if {amount}:", f"    {out} = {pad_layer}({amount}, {ctx.name(step, '.pad')})({out})"]
        return lines, '"valid"', out
    sides = p.sides
    if keras_same and _is_keras_same(step, ctx, sides):
        return [], '"same"', inp
    if len(sides) == 2:
        return [f"{out} = layers.ZeroPadding1D({sides}, {ctx.name(step, '.pad')})({inp})"], '"valid"', out
    if fill_inf:
        ctx.helpers.add("NegInfPadding2D")
    t, b, left, r = sides
    spec = f"(({t}, {b}), ({left}, {r}))" if (t, b) != (left, r) or t != b else str(t)
    return [f"{out} = {pad_layer}({spec}, {ctx.name(step, '.pad')})({inp})"], '"valid"', out


def _is_keras_same(step: Step, ctx: Ctx, sides: tuple[int, ...]) -> bool:
    """Whether per-side padding is what Keras' padding="same" does on this
    layer's input (TensorFlow's rule, the odd pixel after). At stride 1 that
    is (k - 1) * d whatever the input size, so it holds in a block whose
    instances see different sizes too."""
    axes = len(sides) // 2
    kernel = _const_tuple(step, ctx, "kernel", axes)
    stride = _const_tuple(step, ctx, "stride", axes) if "stride" in step.attrs else kernel
    dilation = _const_tuple(step, ctx, "dilation", axes) if "dilation" in step.attrs else (1,) * axes
    if kernel is None or stride is None or dilation is None:
        return False
    if step.in_shape is not None:
        sizes = step.in_shape[1:]
    elif all(s == 1 for s in stride):
        sizes = (1,) * axes
    else:
        return False
    want = [pad for n, k, s, d in zip(sizes, kernel, stride, dilation) for pad in same_padding(n, k, s, d)]
    return tuple(want) == tuple(sides)


def _const_tuple(step: Step, ctx: Ctx, key: str, axes: int) -> tuple[int, ...] | None:
    """A constant size attribute per axis (``3`` -> ``(3, 3)``), or None when it is symbolic."""
    v = _v(step, ctx, key)
    if v is None:
        return None
    return v if isinstance(v, tuple) else (v,) * axes


def _ceil_extra(step: Step, ctx: Ctx) -> tuple[int, int]:
    """Extra bottom/right padding that makes floor-mode pooling give the
    ceil-mode output size of the IR."""
    k = _const_tuple(step, ctx, "kernel", 2)
    s = _const_tuple(step, ctx, "stride", 2) if "stride" in step.attrs else k
    if step.in_shape is None or step.out_shape is None or k is None or s is None:
        raise CodegenError(
            f"{step.name}: ceil_mode pooling whose window or input size differs between the block's instances: "
            "Keras pads for ceil_mode by sizes that must be the same in each; make them so, or give the pooling "
            "explicit padding instead of ceil_mode",
            step.pos,
        )
    sides = step.padding.sides if step.padding and step.padding.sides else (0, 0, 0, 0)
    extra = []
    for axis in range(2):
        size = step.in_shape[1 + axis] + sides[2 * axis] + sides[2 * axis + 1]
        need = (step.out_shape[1 + axis] - 1) * s[axis] + k[axis]
        extra.append(max(need - size, 0))
    return extra[0], extra[1]


def conv(layer: str) -> Rule:
    def rule(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
        lines, padding, inp = _padding(step, ctx, ins[0], out)
        args = []
        if layer != "DepthwiseConv2D":
            args.append(_a(step, ctx, "out"))
        args.append(_a(step, ctx, "kernel"))
        kw = _kw("strides", _a(step, ctx, "stride"), "1") + _kw("padding", padding, '"valid"')
        if "multiplier" in step.attrs:
            kw += _kw("depth_multiplier", _a(step, ctx, "multiplier"), "1")
        kw += _kw("dilation_rate", _a(step, ctx, "dilation"), "1")
        if "groups" in step.attrs:
            kw += _kw("groups", _a(step, ctx, "groups"), "1")
        kw += _kw("use_bias", _a(step, ctx, "bias"), "True")
        return [*lines, f"{out} = layers.{layer}({', '.join([*args, *kw, ctx.name(step)])})({inp})"]

    return rule


def dense(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
    kw = _kw("use_bias", _a(step, ctx, "bias"), "True")
    return [f"{out} = layers.Dense({', '.join([_a(step, ctx, 'out'), *kw, ctx.name(step)])})({ins[0]})"]


def pool(layer: str, is_max: bool) -> Rule:
    def rule(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
        inp = ins[0]
        lines: list[str] = []
        ceil = _v(step, ctx, "ceil_mode")
        if ceil is None:
            raise CodegenError(
                f"{step.name}: ceil_mode chosen by a parameter: Keras pads for ceil_mode by each instance's sizes; "
                "give ceil_mode as true or false, or explicit padding instead",
                step.pos,
            )
        if ceil:
            p = step.padding.sides if step.padding and step.padding.sides else (0, 0, 0, 0)
            eb, er = _ceil_extra(step, ctx)
            if is_max:
                step = _with_padding(step, (p[0], p[1] + eb, p[2], p[3] + er))
            elif eb or er:  # where ceil_mode changes nothing, the pool is written as floor-mode
                raise CodegenError(common.ceil_average("Keras"), step.pos)
        keras_same = True
        if not is_max and step.padding and step.padding.mode not in ("none", "valid"):
            # Keras' padding="same" leaves the padded zeros out of the average.
            include = _v(step, ctx, "count_include_pad")
            if include is None or step.padding.mode == "keyword" or step.padding.sides is None:
                raise CodegenError(
                    f"{step.name}: average pooling whose padding or count_include_pad is chosen by a parameter: "
                    "Keras writes each choice as another layer; give them as values (the same in every instance)",
                    step.pos,
                )
            if include:  # count them: pad explicitly, pool without padding
                step, keras_same = _with_padding(step, step.padding.sides), False
            elif not _is_keras_same(step, ctx, step.padding.sides):
                raise CodegenError(
                    f"{step.name}: average pooling with explicit padding that leaves the padded zeros out of the "
                    "average: Keras leaves them out only of its own padding 'same'; write padding: same (if it pads "
                    "as this does), or count the padded zeros (count_include_pad: true)",
                    step.pos,
                )
            else:
                step = replace(step, padding=Padding("same", step.padding.sides))
        fill_inf = is_max and not ctx.nonnegative_input(step)
        pad_lines, padding, inp = _padding(step, ctx, inp, out, fill_inf, keras_same)
        lines += pad_lines
        args = [_a(step, ctx, "kernel")]
        if "stride" in step.attrs:
            args.append(f"strides={_a(step, ctx, 'stride')}")
        args += _kw("padding", padding, '"valid"')
        return [*lines, f"{out} = layers.{layer}({', '.join([*args, ctx.name(step)])})({inp})"]

    return rule


def _with_padding(step: Step, sides: tuple[int, ...]) -> Step:
    mode = "explicit" if any(sides) else "none"
    return replace(step, padding=Padding(mode, sides))


def global_pool(layer: str) -> Rule:
    def rule(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
        dims = "2D" if step.in_ranks[0] == 3 else "1D"
        kw = _kw("keepdims", _a(step, ctx, "keepdims"), "False")
        return [f"{out} = layers.{layer}{dims}({', '.join([*kw, ctx.name(step)])})({ins[0]})"]

    return rule


def batch_norm(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
    decay = common.decay(step.attrs["momentum"], ctx.printer.expr)
    kw = [f"epsilon={_a(step, ctx, 'eps')}", *_kw("momentum", decay, "0.99")]
    return [f"{out} = layers.BatchNormalization({', '.join([*kw, ctx.name(step)])})({ins[0]})"]


def layer_norm(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
    kw = [f"epsilon={_a(step, ctx, 'eps')}"]
    return [f"{out} = layers.LayerNormalization({', '.join([*kw, ctx.name(step)])})({ins[0]})"]


def instance_norm(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
    affine = _a(step, ctx, "affine")
    kw = ["groups=-1", f"epsilon={_a(step, ctx, 'eps')}", f"center={affine}", f"scale={affine}"]
    return [f"{out} = layers.GroupNormalization({', '.join([*kw, ctx.name(step)])})({ins[0]})"]


def lrn(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
    ctx.helpers.add("LocalResponseNormalization")
    kw = [
        f"size={_a(step, ctx, 'size')}",
        f"alpha={_a(step, ctx, 'alpha')}",
        f"beta={_a(step, ctx, 'beta')}",
        f"k={_a(step, ctx, 'k')}",
    ]
    return [f"{out} = LocalResponseNormalization({', '.join([*kw, ctx.name(step)])})({ins[0]})"]


def activation(fn: str) -> Rule:
    return lambda step, ctx, ins, out: [f'{out} = layers.Activation("{fn}", {ctx.name(step)})({ins[0]})']


def dropout(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
    return [f"{out} = layers.Dropout({_a(step, ctx, 'rate')}, {ctx.name(step)})({ins[0]})"]


def leaky_relu(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
    return [f"{out} = layers.LeakyReLU(negative_slope={_a(step, ctx, 'negative_slope')}, {ctx.name(step)})({ins[0]})"]


def flatten(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
    """The IR flattens channels first; a channels-last tensor is permuted to
    (C, H, W) first, unless its spatial size is 1 (then the orders agree)."""
    rank = step.in_ranks[0]
    spatial_one = step.in_shape is not None and all(d == 1 for d in step.in_shape[1:])
    if rank == 1 or spatial_one:
        return [f"{out} = layers.Flatten({ctx.name(step)})({ins[0]})"]
    order = "(3, 1, 2)" if rank == 3 else "(2, 1)"
    return [
        f"{out} = layers.Permute({order}, {ctx.name(step, '.channels_first')})({ins[0]})",
        f"{out} = layers.Flatten({ctx.name(step)})({out})",
    ]


def merge(layer: str) -> Rule:
    return lambda step, ctx, ins, out: [f"{out} = layers.{layer}({ctx.name(step)})({common.items(step, ins)})"]


def multiply(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
    a, b = ins
    ra, rb = step.in_ranks
    lines = []
    if ra != rb and 1 in (ra, rb):
        vec, full = (b, ra) if rb == 1 else (a, rb)
        shape = "(1, 1, -1)" if full == 3 else "(1, -1)"
        reshaped = f"{vec}_broadcast"
        lines.append(f"{reshaped} = layers.Reshape({shape}, {ctx.name(step, '.broadcast')})({vec})")
        a, b = (a, reshaped) if rb == 1 else (reshaped, b)
    return [*lines, f"{out} = layers.Multiply({ctx.name(step)})([{a}, {b}])"]


def channel_shuffle(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
    ctx.helpers.add("ChannelShuffle")
    return [f"{out} = ChannelShuffle({_a(step, ctx, 'groups')}, {ctx.name(step)})({ins[0]})"]


def zero_pad2d(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
    if step.padding is None or step.padding.sides is None:
        raise CodegenError(f"{step.name}: {common.VARYING_ZERO_PAD}", step.pos)
    t, b, left, r = step.padding.sides
    return [f"{out} = layers.ZeroPadding2D((({t}, {b}), ({left}, {r})), {ctx.name(step)})({ins[0]})"]


def conv_transpose2d(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
    """Conv2DTranspose without padding, with the output_padding that makes it long enough,
    then cropped to PyTorch's (n - 1) * stride - 2 * padding + kernel + output_padding:
    Keras' padding takes only "valid" and "same"."""
    kernel, stride = _v(step, ctx, "kernel"), _v(step, ctx, "stride")
    padding, extra = _v(step, ctx, "padding"), _v(step, ctx, "output_padding")
    if None in (kernel, stride, padding, extra):
        raise CodegenError(
            f"{step.name}: a transposed convolution whose kernel, stride, padding or output_padding differs "
            "between the block's instances: Keras writes them as numbers; make them the same in every instance",
            step.pos,
        )
    kernel, stride, padding, extra = (v if isinstance(v, tuple) else (v, v) for v in (kernel, stride, padding, extra))
    grow = tuple(max(o - p, 0) for o, p in zip(extra, padding, strict=True))
    kw = [f"strides={_a(step, ctx, 'stride')}"] if stride != (1, 1) else []
    if any(grow) or any(k < s for k, s in zip(kernel, stride, strict=True)):
        kw.append(f"output_padding={grow if grow[0] != grow[1] else grow[0]}")
    kw += _kw("use_bias", _a(step, ctx, "bias"), "True")
    args = [_a(step, ctx, "out"), _a(step, ctx, "kernel"), *kw, ctx.name(step)]
    lines = [f"{out} = layers.Conv2DTranspose({', '.join(args)})({ins[0]})"]
    crop = tuple((p, p + g - o) for p, g, o in zip(padding, grow, extra, strict=True))
    if any(any(c) for c in crop):
        lines.append(f"{out} = layers.Cropping2D({crop}, {ctx.name(step, '.crop')})({out})")
    return lines


def gelu(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
    if _v(step, ctx, "approximate") != "tanh":
        return activation("gelu")(step, ctx, ins, out)
    ctx.helpers.add("GELUTanh")
    return [f"{out} = GELUTanh({ctx.name(step)})({ins[0]})"]


def drop_path(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
    """Dropout of one value per sample: noise_shape (None, 1, ...)."""
    shape = "(None" + ", 1" * step.in_ranks[0] + ")"
    return [f"{out} = layers.Dropout({_a(step, ctx, 'rate')}, noise_shape={shape}, {ctx.name(step)})({ins[0]})"]


def layer_scale(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
    ctx.helpers.add("LayerScale")
    kw = _kw("init", _a(step, ctx, "init"), "1.0")
    return [f"{out} = LayerScale({', '.join([*kw, ctx.name(step)])})({ins[0]})"]


def channel_slice(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
    ctx.helpers.add("ChannelSlice")
    return [f"{out} = ChannelSlice({_a(step, ctx, 'start')}, {_a(step, ctx, 'stop')}, {ctx.name(step)})({ins[0]})"]


def upsample(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
    """UpSampling2D; its bilinear interpolation uses half-pixel centres (PyTorch's align_corners=False)."""
    kw = ['interpolation="bilinear"'] if _v(step, ctx, "mode") == "bilinear" else []
    return [f"{out} = layers.UpSampling2D({', '.join([_a(step, ctx, 'scale'), *kw, ctx.name(step)])})({ins[0]})"]


OPS: dict[str, Rule] = {
    "conv2d": conv("Conv2D"),
    "depthwise_conv2d": conv("DepthwiseConv2D"),
    "separable_conv2d": conv("SeparableConv2D"),
    "conv1d": conv("Conv1D"),
    "dense": dense,
    "max_pool2d": pool("MaxPooling2D", is_max=True),
    "avg_pool2d": pool("AveragePooling2D", is_max=False),
    "global_avg_pool": global_pool("GlobalAveragePooling"),
    "global_max_pool": global_pool("GlobalMaxPooling"),
    "batch_norm": batch_norm,
    "layer_norm": layer_norm,
    "instance_norm": instance_norm,
    "lrn": lrn,
    "dropout": dropout,
    "relu": lambda step, ctx, ins, out: [f"{out} = layers.ReLU({ctx.name(step)})({ins[0]})"],
    "relu6": lambda step, ctx, ins, out: [f"{out} = layers.ReLU(6.0, {ctx.name(step)})({ins[0]})"],
    "leaky_relu": leaky_relu,
    "sigmoid": activation("sigmoid"),
    "tanh": activation("tanh"),
    "silu": activation("silu"),
    "hard_swish": activation("hard_silu"),
    "softmax": lambda step, ctx, ins, out: [f"{out} = layers.Softmax({ctx.name(step)})({ins[0]})"],
    "hard_sigmoid": activation("hard_sigmoid"),
    "gelu": gelu,
    "drop_path": drop_path,
    "scale": layer_scale,
    "slice": channel_slice,
    "upsample": upsample,
    "conv_transpose2d": conv_transpose2d,
    "flatten": flatten,
    "add": merge("Add"),
    "concat": merge("Concatenate"),
    "multiply": multiply,
    "channel_shuffle": channel_shuffle,
    "zero_pad2d": zero_pad2d,
}


# ----------------------------------------------------------------------------
# Functions


@dataclass
class FunctionCode:
    name: str
    doc: str
    signature: str
    body: list[str]
    is_model: bool


def _block_call(step: Step, ctx: Ctx, functions: dict[str, str], inp: str, index: str | None = None) -> str:
    p = ctx.printer
    kwargs = []
    for k, v in step.attrs.items():
        if index is not None and k in step.first:
            kwargs.append(f"{k}={_first_or(p, step.first[k], p.expr(v), index)}")
        else:
            kwargs.append(f"{k}={p.expr(v)}")
    if index is not None:
        defaults = {a.name: a.default for a in ctx.units[step.unit].args}
        for k, v in step.first.items():
            if k not in step.attrs:
                rest = repr(defaults[k])
                kwargs.append(f"{k}={_first_or(p, v, rest, index)}")
    tail = step.name if index is None else f"{step.name}.{{{index}}}"
    return f"{functions[step.unit]}({', '.join([inp, *kwargs, f'name={_layer_path(ctx, tail)}'])})"


def _one_unit_call(step: Step, ctx: Ctx, functions: dict[str, str], inp: str) -> str:
    """The only unit of a one-unit stage: called once, with the first unit's
    arguments, under its unit's name (``stage1.0``)."""
    kwargs = [f"{k}={ctx.printer.expr(v)}" for k, v in {**step.attrs, **step.first}.items()]
    path = _layer_path(ctx, f"{step.name}.0")
    return f"{functions[step.unit]}({', '.join([inp, *kwargs, f'name={path}'])})"


def _layer_path(ctx: Ctx, tail: str) -> str:
    """The ``name=`` of a block call: ``tail`` (f-string text such as
    ``{stage}.{i}``) below the enclosing block's name."""
    if not ctx.in_model:
        return f'f"{{name}}.{tail}"'
    if re.fullmatch(r"\{\w+\}", tail):
        return tail[1:-1]  # a variable holding the whole name
    return f'f"{tail}"' if "{" in tail else f'"{tail}"'


def _first_or(p: common.Printer, first: E.Expr, rest: str, index: str) -> str:
    """The value of an argument that the first unit of a stage overrides."""
    text = p.expr(first)
    if text == "True" and rest == "False":
        return f"{index} == 0"
    if text == "False" and rest == "True":
        return f"{index} != 0"
    if text == rest:
        return text
    return f"{p.expr(first, outer=1)} if {index} == 0 else {rest}"


# ----------------------------------------------------------------------------
# Stage tables: consecutive stages of one block, written as one loop over a
# list of their settings (torchvision's ``# t, c, n, s`` for MobileNetV2,
# keras.applications' DEFAULT_BLOCKS_ARGS).


# The width of a table's comment lines (inside a function: indented 4).
COMMENT_WIDTH = 112


def _tabled(step: Step) -> bool:
    """A stage (or a plain block call) a table can hold: run unit after unit on
    the chain variable."""
    return (
        step.unit is not None
        and not step.varies_with_i
        and step.cond is None
        and not step.unpacks
        and not step.collect
        and not any(step.starred)
        and step.inputs[0] == step.output
    )


def stage_runs(steps: list[Step]) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of two or more consecutive stages of one
    block that a table can hold, and of five or more numbered calls of one
    block (MobileNetV3's ``bneck1`` to ``bneck15``; named calls such as
    ``inception3a`` read better one per line)."""
    runs: list[tuple[int, int]] = []
    k = 0
    while k < len(steps):
        stop = k + 1
        if _tabled(steps[k]):
            while (
                stop < len(steps)
                and _tabled(steps[stop])
                and steps[stop].unit == steps[k].unit
                and (steps[stop].units is None) == (steps[k].units is None)
                and steps[stop].output == steps[k].output
            ):
                stop += 1
        if steps[k].units is not None and stop - k >= 2 or _numbered_calls(steps[k:stop]):
            runs.append((k, stop))
        k = stop
    return runs


def _numbered_calls(steps: list[Step]) -> bool:
    """Five or more plain calls named ``prefix1``, ``prefix2``, ... in order."""
    match = [re.fullmatch(r"(\D\w*?)(\d+)", step.name) for step in steps]
    if len(steps) < 5 or steps[0].units is not None or not all(match):
        return False
    numbers = [int(m.group(2)) for m in match]  # type: ignore[union-attr]
    prefixes = {m.group(1) for m in match}  # type: ignore[union-attr]
    return len(prefixes) == 1 and numbers == list(range(numbers[0], numbers[0] + len(steps)))


def _numbered(e: E.Expr, found: list[E.Num]) -> E.Expr:
    """``e`` with its k-th number replaced by the name ``#k`` (appended to ``found``)."""
    if isinstance(e, E.Num):
        found.append(e)
        return E.Name(f"#{len(found) - 1}", 0)
    if isinstance(e, E.Unary):
        return E.Unary(e.op, _numbered(e.operand, found), 0)
    if isinstance(e, E.Binary):
        left = _numbered(e.left, found)
        return E.Binary(e.op, left, _numbered(e.right, found), 0)
    if isinstance(e, E.Compare):
        first = _numbered(e.first, found)
        return E.Compare(first, tuple((op, _numbered(r, found)) for op, r in e.rest), 0)
    if isinstance(e, E.IfElse):
        cond, then = _numbered(e.cond, found), _numbered(e.then, found)
        return E.IfElse(cond, then, _numbered(e.other, found), 0)
    if isinstance(e, E.Call):
        return E.Call(e.func, tuple(_numbered(a, found) for a in e.args), 0)
    return e


def _column(exprs: list[E.Expr], var: str, p: common.Printer) -> tuple[E.Expr, list[str] | None]:
    """How one value of a stage table's rows is written: (the expression the
    loop writes, the table's cells, None when every row has the same value).
    Values that differ in one number only (``ceil(2 * depth_mult)``) put that
    number in the table and the rest in the loop (``ceil(n * depth_mult)``)."""
    texts = [p.expr(e) for e in exprs]
    if len(set(texts)) == 1:
        return exprs[0], None
    numbers: list[list[E.Num]] = [[] for _ in exprs]
    if len({E.to_source(_numbered(e, found)) for e, found in zip(exprs, numbers)}) == 1:
        differ = [j for j in range(len(numbers[0])) if len({repr(ns[j].value) for ns in numbers}) > 1]
        if len(differ) == 1:
            holes = {f"#{m}": (E.Name(var, 0) if m == differ[0] else n) for m, n in enumerate(numbers[0])}
            return substitute(_numbered(exprs[0], []), holes), [repr(ns[differ[0]].value) for ns in numbers]
    return E.Name(var, 0), texts


def stage_table(steps: list[Step], ctx: Ctx, functions: dict[str, str], taken: set[str]) -> list[str] | None:
    """Consecutive stages of one block as a table of their settings, a comment
    naming its columns, and one loop over it. None when a first-unit override
    rules it out (its value for the other units differs between stages).
    ``taken``: the names the function already uses; the table's are added."""
    p = ctx.printer
    callee = ctx.units[steps[0].unit]
    counts = [s.units for s in steps]
    plain = counts[0] is None  # numbered block calls, not stages
    single = plain or {p.expr(c) for c in counts} == {"1"}  # one unit each: no inner loop
    columns: list[tuple[str, list[str]]] = [
        (_reserve("block" if plain else "stage", taken), [f'"{s.name}"' for s in steps])
    ]
    kwargs: list[str] = []
    firsts: list[tuple[str, list[str], str]] = []  # first-unit columns: (variable, cells, the others' value)
    for k in [a.name for a in callee.args if any(a.name in s.attrs or a.name in s.first for s in steps)]:
        rest = [s.attrs.get(k, callee.defaults.get(k)) for s in steps]
        first = [s.first.get(k, r) for s, r in zip(steps, rest)]
        if single or all(p.expr(f) == p.expr(r) for f, r in zip(first, rest)):
            value, cells = _column(first, _free(k, taken), p)
            if cells is not None:
                columns.append((_reserve(k, taken), cells))
            kwargs.append(f"{k}={p.expr(value)}")
            continue
        others = {p.expr(r) for r in rest}
        if len(others) != 1:
            return None
        other = others.pop()
        if len({p.expr(f) for f in first}) == 1:
            kwargs.append(f"{k}={_first_or(p, first[0], other, 'i')}")
            continue
        var = _reserve(k, taken)
        value, cells = _column(first, var, p)
        firsts.append((var, cells or [], other))
        value_text = p.expr(value, outer=1)
        kwargs.append(
            f"{k}={value_text} and i == 0" if other == "False" else f"{k}={value_text} if i == 0 else {other}"
        )
    notes = []
    if not single:
        count, cells = _column(counts, _free("n", taken), p)
        if cells is not None:
            columns.append((_reserve("n", taken), cells))
            notes.append(f"{p.expr(count)} units")
    columns += [(var, cells) for var, cells, _ in firsts]
    if firsts:
        which = ", ".join(var for var, _, _ in firsts)
        notes.append(f"{which}: the first unit's, then {', '.join(other for _, _, other in firsts)}")
    names = [var for var, _ in columns]
    table = _reserve("settings" if plain else "stages", taken)
    out = steps[0].output
    tail = f"{{{names[0]}}}" if plain else f"{{{names[0]}}}.0" if single else f"{{{names[0]}}}.{{i}}"
    call = f"{out} = {functions[steps[0].unit]}({', '.join([out, *kwargs, f'name={_layer_path(ctx, tail)}'])})"
    comment = f"{', '.join(names)}" + (f" ({'; '.join(notes)})" if notes else "")
    lines = [
        *(f"# {line}" for line in textwrap.wrap(comment, width=COMMENT_WIDTH)),
        f"{table} = [",
        *(f"    ({', '.join(row)})," for row in zip(*(cells for _, cells in columns))),
        "]",
        f"for {', '.join(names)} in {table}:",
    ]
    if single:
        return [*lines, f"    {call}"]
    return [*lines, f"    for i in range({p.expr(count)}):", f"        {call}"]


def _fits_line(step: Step, ctx: Ctx, functions: dict[str, str]) -> bool:
    """Whether a plain block call fits one line of a function's body."""
    line = common.unit_outputs(step, _block_call(step, ctx, functions, step.inputs[0]))
    return len(line) + 4 <= 120  # ruff's line length


def _free(base: str, taken: set[str]) -> str:
    """``base``, or ``base_`` (``base__``...) where the name is taken."""
    while base in taken:
        base += "_"
    return base


def _reserve(base: str, taken: set[str]) -> str:
    """A free name (see :func:`_free`), marked taken."""
    name = _free(base, taken)
    taken.add(name)
    return name


def function_code(unit: Unit, model: CodeModel, ctx: Ctx, functions: dict[str, str]) -> FunctionCode:
    p = ctx.printer
    ctx.in_model = unit.is_model
    g = model.compiled.graph
    ctx.scopes = [""] if unit.is_model else [i.path for i in g.instances if i.block == unit.name and not i.units]
    body: list[str] = []
    names_used = {n.id for s in unit.steps for e in step_exprs(s, channels=False) for n in E.free_names(e)}
    names_used |= {n.id for _, e in unit.lets for n in E.free_names(e)}
    if not unit.is_model and "in_channels" in names_used:
        body.append("in_channels = x.shape[-1]")
    body += [f"{lname} = {p.expr(e)}" for lname, e in unit.lets]
    taken = _names_in(unit, functions)
    tables = {}
    for start, stop in stage_runs(unit.steps):
        if unit.steps[start].units is None and all(_fits_line(s, ctx, functions) for s in unit.steps[start:stop]):
            continue  # numbered calls that fit one line each read better as they are
        table = stage_table(unit.steps[start:stop], ctx, functions, taken)
        if table is not None:
            tables[start] = (table, stop)
    comments = common.shape_comments(unit, TARGET)
    pending = comments[0]  # a step's shape comment follows its lines
    skip_to = 0
    for k, (step, after) in enumerate(zip(unit.steps, comments[1:])):
        with common.gathered(ctx.limits):
            if k < skip_to:  # a stage in a table: the comment after the table is the last one's
                pending = after
                continue
            body += pending
            pending = after
            if k in tables:
                lines, skip_to = tables[k]
                body += lines
                continue
            cond = p.expr(step.cond) if step.cond is not None else None
            ins, out = step.inputs, step.output
            if step.unit is not None:
                if step.units is not None and p.expr(step.units) == "1" and not step.varies_with_i and not step.collect:
                    lines = [common.unit_outputs(step, _one_unit_call(step, ctx, functions, ins[0]))]
                elif step.units is not None:
                    loop = f"i in range({p.expr(step.units)})"
                    lines = common.run_units(step, loop, lambda x, step=step: _block_call(step, ctx, functions, x, "i"))
                else:
                    lines = [common.unit_outputs(step, _block_call(step, ctx, functions, ins[0]))]
            else:
                lines = OPS[step.op](step, ctx, ins, out)
            if step.logits_switch:  # a final softmax: left out with logits=True
                lines = [
                    *([f"{out} = {ins[0]}"] if out != ins[0] else []),
                    f"if not {LOGITS}:",
                    *(f"    {x}" for x in lines),
                ]
            if cond:
                if unit.is_model and step.is_output:
                    body += [f"{out} = None", f"if {cond}:", *(f"    {line}" for line in lines)]
                elif out == step.stand_in:
                    body += [f"if {cond}:", *(f"    {line}" for line in lines)]
                elif len(lines) == 1 and lines[0].startswith(f"{out} = "):
                    body.append(f"{lines[0]} if {cond} else {step.stand_in}")
                else:  # (the step may read its own variable: out = x + out)
                    body += [f"if {cond}:", *(f"    {line}" for line in lines), "else:", f"    {out} = {step.stand_in}"]
            else:
                body += lines
    body += pending
    outs = unit.output_vars
    if unit.is_model:
        shape = _channels_last(g.input_shape)
        body.insert(0, f'inputs = keras.Input(shape={shape}, name="input")')
        body.insert(1, "x = inputs")
        if len(outs) == 1:
            body.append(f'return keras.Model(inputs, {outs[0]}, name="{g.name}")')
        else:
            body.append(f"outputs = [y for y in ({', '.join(outs)}) if y is not None]")
            body.append(f'return keras.Model(inputs, outputs, name="{g.name}")')
        doc = common.model_doc(model)
        sig = ", ".join(common.arg(a) for a in unit.args)
        name = unit.class_name
    else:
        body.append(f"return {', '.join(outs)}")
        doc = common.docstring(unit.doc, indent="    ")
        args = [a for a in unit.args if a.name != "in_channels"]
        sig = ", ".join(["x", *(common.arg(a) for a in args), "*", "name: str"])
        name = functions[unit.class_name]
    return FunctionCode(name, doc, sig, body, unit.is_model)


def _names_in(unit: Unit, functions: dict[str, str]) -> set[str]:
    """Every name a generated function may read or bind besides a stage
    table's: its arguments and variables, the names its expressions read, the
    file's functions and imports."""
    names = {*_TAKEN, "math", "make_divisible", *functions.values(), *(a.name for a in unit.args)}
    for s in unit.steps:
        names |= {s.output, *s.inputs, *s.side_outputs, *(v for pair in s.collect for v in pair)}
        names |= {n.id for e in step_exprs(s) for n in E.free_names(e)}
    return names | {lname for lname, _ in unit.lets}


def _channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (*shape[1:], shape[0])


# Names a block function must not take: the file's modules, the locals of
# generated functions (their input, a stage loop's index, the model's lists),
# and Python's builtins (a block named range would hide the stage loop's).
_TAKEN = {"keras", "layers", "ops", "x", "i", "inputs", "outputs", "name", *dir(builtins)}


def _snake(unit: Unit) -> str:
    return f"{unit.name}_block" if unit.name in _TAKEN else unit.name


# The helper layers of keras.py.j2 written with keras.ops (the others, and the
# model functions, use only keras.layers): the file imports ops for these alone.
_HELPERS_USING_OPS = {"NegInfPadding2D", "LocalResponseNormalization", "ChannelShuffle", "GELUTanh"}


def emit(model: CodeModel) -> str:
    missing = model.ops_used - set(OPS)
    if missing:  # pragma: no cover - the coverage test keeps OPS complete
        raise CodegenError(f"keras: no rule for ops {sorted(missing)}")
    graph = model.compiled.graph
    ctx = Ctx(common.Printer(), nonnegative=nonnegative_nodes(graph))
    ctx.first_input = {n.path: n.inputs[0] for n in graph.nodes if n.inputs}
    ctx.units = {u.class_name: u for u in model.units}  # type: ignore[attr-defined]
    functions = {u.class_name: _snake(u) for u in model.units if not u.is_model}
    code = [function_code(u, model, ctx, functions) for u in model.units]
    common.refuse(ctx.limits)
    source = render_template(
        "keras.py.j2",
        header=common.header(model, TARGET),
        module_doc=common.module_doc(model, "Keras", "keras"),
        functions=code,
        helpers=ctx.helpers,
        uses_ops=bool(ctx.helpers & _HELPERS_USING_OPS),
        needs=ctx.printer.needs,
    )
    written = [u.class_name if u.is_model else functions[u.class_name] for u in model.units]
    return common.unique_names(source, model, TARGET, written)
