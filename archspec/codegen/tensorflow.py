"""TensorFlow emitter: TensorFlow without Keras.

The generated file holds ``tf.Module`` classes: small layer modules that own
``tf.Variable``s (``Conv2D``, ``BatchNorm``, ``Dense``..., written into the file,
only those it uses and with only the arguments it passes, normalization's eps
and decay defaulting to the file's most used values), a ``Sequential`` for
stages, one module per spec block, and the network, whose ``__call__`` runs
under ``tf.function``. Only the classes with batch norm or dropout inside take
``training``. Tensors are channels-last (NHWC, or
NLC for sequences); everything that has no variables is a ``tf.nn`` call in
``__call__``.

Variables are created in ``__init__`` with explicit shapes and named after
the canonical weight keys (``layer1.0.conv1.weight``): module attributes follow
the IR paths and every module takes ``name=``, its IR path (a name the spec
language reserves, so no block parameter can take it). Variables hold
TensorFlow's layouts (HWIO kernels, (in, out) dense); each layer class says how
they map to the canonical (PyTorch) layout.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from archspec.codegen import common
from archspec.codegen.model import LOGITS, CodegenError, CodeModel, Padding, Step, Unit, fold, is_const, num
from archspec.codegen.render import render_template
from archspec.schema import expr as E

TARGET = "tensorflow"


@dataclass
class Ctx:
    printer: common.Printer
    helpers: set[str] = field(default_factory=set)  # helper definitions the file needs
    limits: list[CodegenError] = field(default_factory=list)  # what the spec asks that cannot be written
    in_model: bool = False
    training: set[str] = field(default_factory=set)  # classes whose call takes ``training``
    # Per layer class, the optional constructor arguments some call passes
    # ("stride", "padding", "explicit" padding, "pair" sizes, "nobias"...):
    # the file's layer classes take only those.
    features: dict[str, set[str]] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)  # "BatchNorm.eps" -> "1e-05"

    def name(self, step: Step, suffix: str = "") -> str:
        """The ``name=`` of a module: its IR path (an f-string inside blocks)."""
        if self.in_model:
            return f'name="{step.name}{suffix}"'
        return f'name=f"{{name}}.{step.name}{suffix}"'


# ----------------------------------------------------------------------------
# Small helpers


def _attr(step: Step, ctx: Ctx, key: str) -> str:
    return ctx.printer.pair(step.attrs[key])


def _const(step: Step, ctx: Ctx, key: str) -> object:
    return ctx.printer.value(step.attrs[key])


def _kw(key: str, value: str, default: str) -> list[str]:
    return [] if value == default else [f"{key}={value}"]


def _expr(e: E.Expr, ctx: Ctx) -> str:
    return ctx.printer.expr(fold(e))


def _pair_const(step: Step, ctx: Ctx, key: str) -> tuple[int, int] | None:
    v = _const(step, ctx, key)
    if v is None:
        return None
    return v if isinstance(v, tuple) else (v, v)


def _pad_list(sides: tuple[str, ...]) -> str:
    """TensorFlow's explicit padding of an NHWC (or NLC) tensor."""
    if len(sides) == 2:
        return f"[[0, 0], [{sides[0]}, {sides[1]}], [0, 0]]"
    t, b, left, right = sides
    return f"[[0, 0], [{t}, {b}], [{left}, {right}], [0, 0]]"


def _sides(step: Step, ctx: Ctx) -> tuple[str, ...] | None:
    """The padding per side as source text, when the code model knows it
    (None: 'same' resolved differently per instance, or a keyword parameter)."""
    p = step.padding
    if p is None:
        return None
    if p.mode in ("none", "valid"):
        return ("0",) * (len(p.sides) if p.sides else 4)
    if p.mode == "keyword":
        return None
    if p.expr is not None:  # symmetric, as an expression or (h, w)
        if isinstance(p.expr, tuple):
            h, w = (ctx.printer.expr(e) for e in p.expr)
            return (h, h, w, w)
        e = ctx.printer.expr(p.expr)
        return (e,) * (2 if step.in_ranks[0] == 2 else 4)
    if p.sides is None:
        return None
    return tuple(str(s) for s in p.sides)


def _tf_same(step: Step, ctx: Ctx, extra: tuple[int, int] = (0, 0)) -> bool:
    """Whether the step's padding, with ``extra`` rows and columns at the bottom and
    right (ceil_mode), is what TensorFlow's "SAME" gives its input: the IR's 'same'
    is TensorFlow's rule; explicit pads are compared with the rule, at stride 1 for
    any input size, at a larger stride for the input size every instance has."""
    p = step.padding
    if p is None or p.mode in ("causal", "keyword"):
        return False
    if p.mode == "same" and not any(extra):
        return True
    if p.sides is None:
        return False
    sides = list(p.sides)
    for axis, more in enumerate(extra[: len(sides) // 2]):
        sides[2 * axis + 1] += more
    if not any(sides):
        return False  # "VALID"
    kernel = _pair_const(step, ctx, "kernel")
    stride = _pair_const(step, ctx, "stride") if "stride" in step.attrs else kernel
    dilation = _pair_const(step, ctx, "dilation") if "dilation" in step.attrs else (1, 1)
    if kernel is None or stride is None or dilation is None:
        return False
    for axis in range(len(sides) // 2):
        span = (kernel[axis] - 1) * dilation[axis] + 1
        if stride[axis] == 1:
            total = span - 1
        elif step.in_shape is None:
            return False
        else:
            size = step.in_shape[1 + axis]
            total = max((-(-size // stride[axis]) - 1) * stride[axis] + span - size, 0)
        if (sides[2 * axis], sides[2 * axis + 1]) != (total // 2, total - total // 2):
            return False
    return True


def _layer_padding(step: Step, ctx: Ctx) -> list[str]:
    """The ``padding=`` of a convolution module (see ``tf_padding`` in the template)."""
    p = step.padding
    if p is None or p.mode in ("none", "valid"):
        return []
    if _tf_same(step, ctx):
        return ['padding="SAME"']
    if p.mode == "causal":
        return ['padding="causal"']
    if p.mode == "keyword":
        return [f"padding={_keyword(p, ctx)}.upper()"]
    if p.expr is not None:
        return [f"padding={ctx.printer.pair(p.expr)}"]
    return [f"padding={_compact(p)}"]


def _keyword(p: Padding, ctx: Ctx) -> str:
    """The parameter that names 'same' or 'valid', as an operand."""
    assert isinstance(p.expr, E.Expr)
    text = ctx.printer.expr(p.expr)
    return text if isinstance(p.expr, (E.Name, E.Str)) else f"({text})"


def _compact(p: Padding) -> str:
    """Per-side padding as the shortest form the layer classes take."""
    s = p.sides
    assert s is not None
    if len(s) == 2:
        return str(s[0]) if s[0] == s[1] else f"({s[0]}, {s[1]})"
    t, b, left, right = s
    if t == b and left == right:
        return str(t) if t == left else f"({t}, {left})"
    return f"({t}, {b}, {left}, {right})"


# ----------------------------------------------------------------------------
# Per-op rules. ``module`` gives the constructor of the step's module (class
# name and arguments, without ``name=``) or None when the op is a plain call;
# ``forward`` the expression ``__call__`` computes from the input variables
# (``module`` is ``self.<attribute>``).

Module = Callable[[Step, Ctx], tuple[str, list[str]] | None]
Forward = Callable[[Step, Ctx, list[str], str], str]


def _layer(ctx: Ctx, cls: str, args: list[str]) -> tuple[str, list[str]]:
    """The constructor of a layer class; records the optional arguments it takes."""
    ctx.helpers.add(cls)
    f = ctx.features.setdefault(cls, set())
    for i, arg in enumerate(args):
        keyword = re.match(r"(\w+)=(?!=)", arg)
        if keyword is None:  # a positional size: a tuple one needs pair()
            if i > 0 and arg.startswith("("):
                f.add("pair")
            continue
        key, value = keyword.group(1), arg[keyword.end() :]
        if key == "padding":
            word = value.startswith('"') or value.endswith(".upper()")
            f.add("causal" if value == '"causal"' else "padding" if word else "explicit")
        elif key in ("eps", "decay", "affine"):
            continue
        else:
            f.add("nobias" if key == "bias" else key)
            if value.startswith("("):
                f.add("pair")
    return cls, args


def _conv_common(step: Step, ctx: Ctx) -> list[str]:
    kw = [*_kw("stride", _attr(step, ctx, "stride"), "1"), *_layer_padding(step, ctx)]
    return kw + _kw("dilation", _attr(step, ctx, "dilation"), "1")


def conv2d(step: Step, ctx: Ctx) -> tuple[str, list[str]]:
    args = [ctx.printer.expr(step.in_channels), _attr(step, ctx, "out"), _attr(step, ctx, "kernel")]
    kw = _conv_common(step, ctx) + _kw("groups", _attr(step, ctx, "groups"), "1")
    return _layer(ctx, "Conv2D", args + kw + _kw("bias", _attr(step, ctx, "bias"), "True"))


def depthwise_conv2d(step: Step, ctx: Ctx) -> tuple[str, list[str]]:
    args = [ctx.printer.expr(step.in_channels), _attr(step, ctx, "kernel")]
    kw = _conv_common(step, ctx) + _kw("multiplier", _attr(step, ctx, "multiplier"), "1")
    return _layer(ctx, "DepthwiseConv2D", args + kw + _kw("bias", _attr(step, ctx, "bias"), "True"))


def separable_conv2d(step: Step, ctx: Ctx) -> tuple[str, list[str]]:
    args = [ctx.printer.expr(step.in_channels), _attr(step, ctx, "out"), _attr(step, ctx, "kernel")]
    kw = _conv_common(step, ctx) + _kw("multiplier", _attr(step, ctx, "multiplier"), "1")
    return _layer(ctx, "SeparableConv2D", args + kw + _kw("bias", _attr(step, ctx, "bias"), "True"))


def conv1d(step: Step, ctx: Ctx) -> tuple[str, list[str]]:
    args = [ctx.printer.expr(step.in_channels), _attr(step, ctx, "out"), _attr(step, ctx, "kernel")]
    kw = _conv_common(step, ctx) + _kw("groups", _attr(step, ctx, "groups"), "1")
    return _layer(ctx, "Conv1D", args + kw + _kw("bias", _attr(step, ctx, "bias"), "True"))


def dense(step: Step, ctx: Ctx) -> tuple[str, list[str]]:
    args = [ctx.printer.expr(step.in_channels), _attr(step, ctx, "out")]
    return _layer(ctx, "Dense", args + _kw("bias", _attr(step, ctx, "bias"), "True"))


def _norm_args(step: Step, printer: common.Printer) -> dict[str, str]:
    """A normalization's eps (and batch norm's decay) as source text."""
    args = {"eps": printer.pair(step.attrs["eps"])}
    if step.op == "batch_norm":
        args["decay"] = common.decay(step.attrs["momentum"], lambda e: printer.expr(fold(e)))
    return args


def _norm(step: Step, ctx: Ctx, cls: str, args: list[str]) -> tuple[str, list[str]]:
    for key, value in _norm_args(step, ctx.printer).items():
        args += _kw(key, value, ctx.defaults.get(f"{cls}.{key}", ""))
    return _layer(ctx, cls, args)


def batch_norm(step: Step, ctx: Ctx) -> tuple[str, list[str]]:
    return _norm(step, ctx, "BatchNorm", [ctx.printer.expr(step.in_channels)])


def layer_norm(step: Step, ctx: Ctx) -> tuple[str, list[str]]:
    return _norm(step, ctx, "LayerNorm", [ctx.printer.expr(step.in_channels)])


def instance_norm(step: Step, ctx: Ctx) -> tuple[str, list[str]]:
    args = [ctx.printer.expr(step.in_channels), *_kw("affine", _attr(step, ctx, "affine"), "False")]
    return _norm(step, ctx, "InstanceNorm", args)


_NORMS = {"batch_norm": "BatchNorm", "layer_norm": "LayerNorm", "instance_norm": "InstanceNorm"}


def _norm_defaults(model: CodeModel) -> dict[str, str]:
    """The defaults of the normalization classes' eps and decay: the number the file
    passes most often (so most calls leave them out)."""
    counts: dict[str, Counter[str]] = {}
    printer = common.Printer()
    for unit in model.units:
        for step in unit.steps:
            if step.op in _NORMS:
                for key, value in _norm_args(step, printer).items():
                    if _is_number(value):
                        counts.setdefault(f"{_NORMS[step.op]}.{key}", Counter())[value] += 1
    return {key: c.most_common(1)[0][0] for key, c in counts.items()}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _call(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    return f"{module}({ins[0]})"


def _call_training(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    return f"{module}({ins[0]}, training=training)"


def _lrn(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    # depth_radius counts the channels on each side; alpha is undivided in both.
    radius = _expr(E.Binary("//", E.Binary("-", step.attrs["size"], num(1), 0), num(2), 0), ctx)
    kw = [f"depth_radius={radius}", f"bias={_attr(step, ctx, 'k')}"]
    kw += [f"alpha={_attr(step, ctx, 'alpha')}", f"beta={_attr(step, ctx, 'beta')}"]
    return f"tf.nn.local_response_normalization({ins[0]}, {', '.join(kw)})"


def _window(step: Step, ctx: Ctx) -> tuple[str, str]:
    kernel = _attr(step, ctx, "kernel")
    stride = _attr(step, ctx, "stride") if "stride" in step.attrs else kernel
    return kernel, stride


def _ceil_extra(step: Step, ctx: Ctx) -> tuple[int, int]:
    """Rows and columns ceil_mode adds at the bottom/right, from the IR's shapes."""
    ceil = _const(step, ctx, "ceil_mode")
    if ceil is False:
        return (0, 0)
    p = step.padding
    kernel = _pair_const(step, ctx, "kernel")
    stride = _pair_const(step, ctx, "stride") if "stride" in step.attrs else kernel
    if (
        ceil is None
        or step.in_shape is None
        or step.out_shape is None
        or p is None
        or p.sides is None
        or kernel is None
        or stride is None
    ):
        raise CodegenError(
            f"{step.name}: ceil_mode pooling whose setting, padding, window or input size differs between the "
            "block's instances: TensorFlow pads for ceil_mode by sizes that must be the same in each; make them "
            "so, or give the pooling explicit padding instead of ceil_mode",
            step.pos,
        )
    t, b, left, right = p.sides
    extra = []
    for axis, (before, after) in enumerate(((t, b), (left, right))):
        size, out = step.in_shape[1 + axis], step.out_shape[1 + axis]
        need = (out - 1) * stride[axis] + kernel[axis] - (size + before + after)
        extra.append(max(need, 0))
    return extra[0], extra[1]


def _max_pool(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    kernel, stride = _window(step, ctx)
    p = step.padding
    eh, ew = _ceil_extra(step, ctx)
    x = ins[0]
    if _tf_same(step, ctx, (eh, ew)):
        padding = '"SAME"'  # TensorFlow's 'same' ignores the padded positions, as -inf does
    elif p is not None and p.mode == "keyword":
        padding = f"{_keyword(p, ctx)}.upper()"
    else:
        sides = _sides(step, ctx)
        assert sides is not None  # ceil_mode needs known sides; 'same' is handled above
        t, b, left, right = sides
        sides = (t, _plus(b, eh), left, _plus(right, ew))
        # max_pool2d's explicit padding never wins a window: it counts as -inf.
        padding = '"VALID"' if sides == ("0",) * 4 else _pad_list(sides)
    return f"tf.nn.max_pool2d({x}, {kernel}, {stride}, {padding})"


def _plus(text: str, extra: int) -> str:
    if not extra:
        return text
    return str(int(text) + extra) if text.isdigit() else f"{text} + {extra}"


def _avg_pool(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    kernel, stride = _window(step, ctx)
    p = step.padding
    eh, ew = _ceil_extra(step, ctx)
    include = _const(step, ctx, "count_include_pad")
    x = ins[0]
    ceil = bool(eh or ew)
    counted = include is True and (p is None or p.sides is None or any(p.sides))  # padding that counts
    if not counted and _tf_same(step, ctx, (eh, ew)):
        # TensorFlow's 'same' average leaves the padded positions out of the count.
        return f'tf.nn.avg_pool2d({x}, {kernel}, {stride}, "SAME")'
    if p is not None and p.mode == "keyword" and include is False:
        return f"tf.nn.avg_pool2d({x}, {kernel}, {stride}, {_keyword(p, ctx)}.upper())"
    sides = _sides(step, ctx)
    if sides is None:
        raise CodegenError(
            f"{step.name}: average pooling that counts padded zeros, with padding that differs between the "
            "block's instances: TensorFlow pads it explicitly, by sides that must be the same in each; make them "
            "so, or leave the padded zeros out (count_include_pad: false)",
            step.pos,
        )
    if sides == ("0",) * 4 and not ceil:
        return f'tf.nn.avg_pool2d({x}, {kernel}, {stride}, "VALID")'
    if include is True and not ceil:
        return f'tf.nn.avg_pool2d(tf.pad({x}, {_pad_list(sides)}), {kernel}, {stride}, "VALID")'
    # Padding the average must not count (or ceil_mode's extra rows): see the helper.
    ctx.helpers.add("avg_pool_padded")
    args = [x, kernel, stride, f"({', '.join(sides)})"]
    if ceil:
        args.append(f"extra=({eh}, {ew})")
    args.append(f"count_include_pad={_attr(step, ctx, 'count_include_pad')}")
    return f"avg_pool_padded({', '.join(args)})"


def _global_pool(fn: str) -> Forward:
    def call(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
        axes = "(1, 2)" if step.in_ranks[0] == 3 else "1"
        keep = ", keepdims=True" if _attr(step, ctx, "keepdims") == "True" else ""
        return f"tf.{fn}({ins[0]}, axis={axes}{keep})"

    return call


def _dropout(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    return f"tf.nn.dropout({ins[0]}, rate={_attr(step, ctx, 'rate')}) if training else {ins[0]}"


def _fn(template: str) -> Forward:
    return lambda step, ctx, ins, module: template.format(x=ins[0])


def _leaky_relu(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    return f"tf.nn.leaky_relu({ins[0]}, alpha={_attr(step, ctx, 'negative_slope')})"


def _flatten(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    rank = step.in_ranks[0]
    if rank == 1:
        return ins[0]
    if step.in_shape is None:  # pragma: no cover - the code model refuses it
        raise CodegenError(f"{step.name}: flatten of an input whose size varies")
    if all(d == 1 for d in step.in_shape[1:]):
        return f"tf.reshape({ins[0]}, (-1, {step.in_shape[0]}))"
    size = " * ".join(map(str, step.in_shape))  # as its shape: 256 * 6 * 6
    # The spec flattens channels first: (C, H, W), not TensorFlow's (H, W, C).
    perm = "(0, 3, 1, 2)" if rank == 3 else "(0, 2, 1)"
    return f"tf.reshape(tf.transpose({ins[0]}, {perm}), (-1, {size}))"


def _multiply(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    a, b = ins
    ra, rb = step.in_ranks
    # A channel vector (N, C) is broadcast over the positions of (N, ..., C).
    if ra > rb and rb == 1:
        b = f"{b}[:, {'None, ' * (ra - 1)}:]"
    elif rb > ra and ra == 1:
        a = f"{a}[:, {'None, ' * (rb - 1)}:]"
    return f"{a} * {b}"


def _channel_shuffle(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    ctx.helpers.add("channel_shuffle")
    return f"channel_shuffle({ins[0]}, {_attr(step, ctx, 'groups')})"


def _zero_pad(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    sides = _sides(step, ctx)
    if sides is None:  # pragma: no cover - zero_pad2d has explicit padding
        raise CodegenError(f"{step.name}: zero padding that varies between instances")
    return f"tf.pad({ins[0]}, {_pad_list(sides)})"


def conv_transpose2d(step: Step, ctx: Ctx) -> tuple[str, list[str]]:
    args = [ctx.printer.expr(step.in_channels), _attr(step, ctx, "out"), _attr(step, ctx, "kernel")]
    kw = [*_kw("stride", _attr(step, ctx, "stride"), "1"), *_kw("padding", _attr(step, ctx, "padding"), "0")]
    kw += _kw("output_padding", _attr(step, ctx, "output_padding"), "0")
    ctx.helpers.update({"Conv2DTranspose", "pair"})
    return "Conv2DTranspose", args + kw + _kw("bias", _attr(step, ctx, "bias"), "True")


def layer_scale(step: Step, ctx: Ctx) -> tuple[str, list[str]]:
    ctx.helpers.add("LayerScale")
    return "LayerScale", [ctx.printer.expr(step.in_channels), *_kw("init", _attr(step, ctx, "init"), "1.0")]


def _gelu(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    tanh = _const(step, ctx, "approximate") == "tanh"
    return f"tf.nn.gelu({ins[0]}, approximate=True)" if tanh else f"tf.nn.gelu({ins[0]})"


def _drop_path(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    ctx.helpers.add("drop_path")
    return f"drop_path({ins[0]}, {_attr(step, ctx, 'rate')}) if training else {ins[0]}"


def _slice(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    start = _attr(step, ctx, "start")
    return f"{ins[0]}[..., {'' if start == '0' else start}:{_attr(step, ctx, 'stop')}]"


def _upsample(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    """tf.image.resize: half-pixel centres (TF 2's only rule), PyTorch's align_corners=False."""
    method = "bilinear" if _const(step, ctx, "mode") == "bilinear" else "nearest"
    return f'tf.image.resize({ins[0]}, tf.shape({ins[0]})[1:3] * {_attr(step, ctx, "scale")}, method="{method}")'


def _add(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    """``a + b``; a list of every unit's output (``stage.*.skip``) is summed with tf.add_n."""
    return f"tf.add_n({common.items(step, ins)})" if any(step.starred) else " + ".join(ins)


@dataclass(frozen=True)
class Rule:
    module: Module | None
    forward: Forward = _call


OPS: dict[str, Rule] = {
    "conv2d": Rule(conv2d),
    "depthwise_conv2d": Rule(depthwise_conv2d),
    "separable_conv2d": Rule(separable_conv2d),
    "conv1d": Rule(conv1d),
    "dense": Rule(dense),
    "max_pool2d": Rule(None, _max_pool),
    "avg_pool2d": Rule(None, _avg_pool),
    "global_avg_pool": Rule(None, _global_pool("reduce_mean")),
    "global_max_pool": Rule(None, _global_pool("reduce_max")),
    "batch_norm": Rule(batch_norm, _call_training),
    "layer_norm": Rule(layer_norm),
    "instance_norm": Rule(instance_norm),
    "lrn": Rule(None, _lrn),
    "dropout": Rule(None, _dropout),
    "relu": Rule(None, _fn("tf.nn.relu({x})")),
    "relu6": Rule(None, _fn("tf.nn.relu6({x})")),
    "leaky_relu": Rule(None, _leaky_relu),
    "sigmoid": Rule(None, _fn("tf.sigmoid({x})")),
    "tanh": Rule(None, _fn("tf.tanh({x})")),
    "silu": Rule(None, _fn("tf.nn.silu({x})")),
    "hard_swish": Rule(None, _fn("{x} * tf.nn.relu6({x} + 3.0) / 6.0")),
    "hard_sigmoid": Rule(None, _fn("tf.nn.relu6({x} + 3.0) / 6.0")),
    "gelu": Rule(None, _gelu),
    "softmax": Rule(None, _fn("tf.nn.softmax({x}, axis=-1)")),
    "drop_path": Rule(None, _drop_path),
    "scale": Rule(layer_scale),
    "slice": Rule(None, _slice),
    "upsample": Rule(None, _upsample),
    "conv_transpose2d": Rule(conv_transpose2d),
    "flatten": Rule(None, _flatten),
    "add": Rule(None, _add),
    "concat": Rule(None, lambda step, ctx, ins, m: f"tf.concat({common.items(step, ins)}, axis=-1)"),
    "multiply": Rule(None, _multiply),
    "channel_shuffle": Rule(None, _channel_shuffle),
    "zero_pad2d": Rule(None, _zero_pad),
}

# Ops whose result depends on ``training``.
_TRAINING_OPS = {"batch_norm", "dropout", "drop_path"}


# ----------------------------------------------------------------------------
# Classes


@dataclass
class ClassCode:
    name: str
    doc: str
    signature: str
    call_signature: str
    init: list[str]
    forward: list[str]
    returns: str
    is_model: bool


def _comment(step: Step, ctx: Ctx) -> str | None:
    """A line that says what a call does that its arguments do not show."""
    extra = _ceil_extra(step, ctx) if step.op in ("max_pool2d", "avg_pool2d") else (0, 0)
    if any(extra) and _tf_same(step, ctx, extra):
        return "ceil_mode: the windows of TensorFlow's 'SAME' here"
    if any(extra):
        return "ceil_mode: padded at the bottom and right so that the last window fits"
    if step.op == "flatten" and step.in_shape and any(d != 1 for d in step.in_shape[1:]):
        return "Flatten in the spec's channels-first order, (C, H, W), as the canonical dense weights expect"
    return None


def unit_code(unit: Unit, model: CodeModel, ctx: Ctx, stage_blocks: set[str]) -> ClassCode:
    p = ctx.printer
    ctx.in_model = unit.is_model
    init = [f"{lname} = {p.expr(e)}" for lname, e in unit.lets]
    forward: list[str] = []
    tables = _stage_tables(unit, model, ctx)
    comments = common.shape_comments(unit, TARGET)
    pending = comments[0]  # a step's shape comment follows its lines
    layers: list[str] = []  # a sequential block's layers, unnamed (their variables are named name.0, name.1, ...)
    for step, after in zip(unit.steps, comments[1:]):
        with common.gathered(ctx.limits):
            forward += pending
            pending = after
            attr = f"self.layers[{step.name}]" if unit.sequential else f"self.{step.name}"
            cond = p.expr(step.cond, outer=1) if step.cond is not None else None
            if step.name in tables:  # built by its table's loop
                init += tables[step.name]
                if step.units is not None:
                    forward += _stage(step, unit, ctx, attr, cond, [])
                else:
                    train = ", training=training" if step.unit in ctx.training else ""
                    call = f"{attr}({step.inputs[0]}{train})"
                    forward += common.assign(step.output, call, None, step.stand_in, step.is_output)
                continue
            if step.unit is not None and step.units is not None:
                forward += _stage(step, unit, ctx, attr, cond, init)
                continue
            if step.unit is not None:
                ctor = _block_ctor(step, ctx)
                train = step.unit in ctx.training
                call = f"{attr}({step.inputs[0]}, training=training)" if train else f"{attr}({step.inputs[0]})"
                if step.unpacks:
                    if cond:  # pragma: no cover - the spec's checks refuse 'when' on such a block
                        raise CodegenError(f"{step.name}: a block with several outputs under a condition")
                    init.append(f"{attr} = {ctor}")
                    forward.append(common.unit_outputs(step, call))
                    continue
            else:
                rule = OPS[step.op]
                made = rule.module(step, ctx) if rule.module else None
                ctor = f"{made[0]}({', '.join([*made[1], ctx.name(step)])})" if made else None
                if made is None:
                    step = _kept(step, ctx, init)
                call = rule.forward(step, ctx, step.inputs, attr)
                note = _comment(step, ctx)
                if note:
                    forward.append(f"# {note}")
            if unit.sequential:
                if ctor is None:
                    raise CodegenError(
                        f"{unit.name}.{step.name}: a {step.op} that TensorFlow cannot write as one layer"
                    )
                layers.append(ctor)
            elif ctor is not None:
                init.append(f"{attr} = {ctor} if {cond} else None" if cond else f"{attr} = {ctor}")
                present = f"{attr} is not None"
            else:
                if cond:
                    init.append(f"self.{step.flag} = {cond}")
                present = f"self.{step.flag}"
            if " if training else " in call and cond:
                call = f"({call})"
            is_output = unit.is_model and step.is_output
            skip = f"self.{unit.logits_attr}" if step.logits_switch else None
            forward += common.assign(step.output, call, present if cond else None, step.stand_in, is_output, skip)
    if layers:
        init.append(f"self.layers = [{', '.join(layers)}]")
    if unit.logits_attr:
        init.insert(0, f"self.{unit.logits_attr} = {LOGITS}")
    if unit.name in stage_blocks:
        init.append(f"self.out_channels = {p.expr(unit.out_channels)}")
    forward += pending
    outs = unit.output_vars
    forward.append(f"return {', '.join(outs)}")
    returns = "tf.Tensor" if len(outs) == 1 else f"tuple[{', '.join(['tf.Tensor'] * len(outs))}]"
    if unit.is_model:
        doc = common.model_doc(model)
        signature = common.signature(unit)
    else:
        doc = common.docstring(unit.doc or f"The spec's {unit.name} block.", indent="    ")
        signature = f"{common.signature(unit)}, *, name: str"
    train = unit.class_name in ctx.training
    call_signature = "self, x: tf.Tensor, training: bool = False" if train else "self, x: tf.Tensor"
    return ClassCode(unit.class_name, doc, signature, call_signature, init, forward, returns, unit.is_model)


def _kept(step: Step, ctx: Ctx, init: list[str]) -> Step:
    """An op without a module whose attributes use the constructor's arguments
    keeps them as attributes (``self.drop_rate = dropout``) for ``__call__``."""
    attrs = dict(step.attrs)
    for key, value in step.attrs.items():
        if isinstance(value, E.Expr) and not is_const(value):
            init.append(f"self.{step.name}_{key} = {ctx.printer.expr(value)}")
            attrs[key] = E.Name(f"self.{step.name}_{key}", 0)
        elif isinstance(value, tuple) and not all(is_const(v) for v in value):
            init.append(f"self.{step.name}_{key} = {ctx.printer.pair(value)}")
            attrs[key] = E.Name(f"self.{step.name}_{key}", 0)
    padding = step.padding
    if padding is not None and padding.expr is not None:
        init.append(f"self.{step.name}_padding = {ctx.printer.pair(padding.expr)}")
        padding = replace(padding, expr=E.Name(f"self.{step.name}_padding", 0))
        if isinstance(step.padding.expr, tuple):
            h, w = (E.Name(f"self.{step.name}_padding[{k}]", 0) for k in (0, 1))
            padding = replace(padding, expr=(h, w))
    return replace(step, attrs=attrs, padding=padding)


def _block_ctor(step: Step, ctx: Ctx) -> str:
    p = ctx.printer
    kwargs = [f"{k}={p.expr(v)}" for k, v in step.attrs.items()]
    return f"{step.unit}({', '.join([p.expr(step.in_channels), *kwargs, ctx.name(step)])})"


def _stage(step: Step, unit: Unit, ctx: Ctx, attr: str, cond: str | None, init: list[str]) -> list[str]:
    """A stage is a ``Sequential`` of its units, called as one layer; one whose
    units' side outputs are read is run unit by unit."""
    p = ctx.printer
    cin = p.expr(step.in_channels)
    kwargs = [f"{k}={p.expr(v)}" for k, v in step.attrs.items()]
    units = p.expr(step.units)  # type: ignore[arg-type]
    by_unit = bool(step.unpacks or step.collect)
    if step.varies_with_i:
        cin = p.expr(step.unit_in_channels or step.in_channels)
        unit_name = ctx.name(step, ".{i}").replace('name="', 'name=f"')
        ctor = f"[{step.unit}({', '.join([cin, *kwargs, unit_name])}) for i in range({units})]"
        if not by_unit:
            ctor = f"Sequential({ctor})"
    else:
        first = [f"{k}={p.expr(v)}" for k, v in step.first.items()]
        extra = [f"first=dict({', '.join(first)})"] if first else []
        ctor = f"make_stage({', '.join([step.unit, cin, units, *kwargs, *extra, ctx.name(step)])})"  # type: ignore[list-item]
        ctx.helpers |= {"make_stage", "Sequential"}
    listed = by_unit and step.varies_with_i  # a list, not a Sequential
    if not listed:
        ctx.helpers.add("Sequential")
    empty = "[]" if listed else "Sequential([])"
    init.append(f"{attr} = {ctor} if {cond} else {empty}" if cond else f"{attr} = {ctor}")
    out, inp = step.output, step.inputs[0]
    train = ", training=training" if step.unit in ctx.training else ""
    if by_unit:
        if cond:  # pragma: no cover - the spec's checks refuse 'when' there
            raise CodegenError(f"{step.name}: a stage whose outputs are read, under a condition")
        units_of = attr if listed else f"{attr}.layers"
        return common.run_units(step, f"block in {units_of}", lambda x: f"block({x}{train})")
    call = f"{out} = {attr}({inp}{train})"
    if cond is not None and unit.is_model and step.is_output:
        return [f"{out} = None", f"if {attr}.layers:", f"    {call}"]
    return [call]  # an absent stage is an empty Sequential: it passes its input through


def _stage_tables(unit: Unit, model: CodeModel, ctx: Ctx) -> dict[str, list[str]]:
    """Stages as a settings table and one loop (:func:`common.stage_tables`);
    each loop iteration builds a named Sequential and sets it as the attribute."""

    def too_long(step: Step) -> bool:
        line: list[str] = []
        if step.units is not None:
            _stage(step, unit, ctx, f"self.{step.name}", None, line)
        else:
            line.append(f"self.{step.name} = {_block_ctor(step, ctx)}")
        return len(line[0]) + 8 > 120

    def build(var: str, fn: str, args: list[str], name: str) -> list[str]:
        named = [] if name == "name" else [f"name = {name}"]
        return [*named, f"{var} = {fn}({', '.join([*args, 'name=name'])})", f"setattr(self, name, {var})"]

    return common.stage_tables(unit, model, ctx.printer, too_long, build)


# ----------------------------------------------------------------------------
# The file


def _needs_training(model: CodeModel) -> set[str]:
    out: set[str] = set()
    for unit in model.units:  # callees come first
        if any(s.op in _TRAINING_OPS or (s.unit is not None and s.unit in out) for s in unit.steps):
            out.add(unit.class_name)
    return out


def _io_doc(model: CodeModel) -> str:
    return common.docstring(
        "TensorFlow without Keras: tf.Module classes holding tf.Variables, tf.nn ops. "
        "Variables are named after the canonical weight keys (IR path and weight name); they hold "
        "TensorFlow's layouts, and each layer class says how they map to the canonical one."
    )


# The layer classes the template can define.
_LAYER_CLASSES = {
    "Sequential",
    "Conv2D",
    "DepthwiseConv2D",
    "SeparableConv2D",
    "Conv1D",
    "Dense",
    "BatchNorm",
    "LayerNorm",
    "InstanceNorm",
    "Conv2DTranspose",
    "LayerScale",
}


def _renamed(model: CodeModel) -> CodeModel:
    """Blocks whose class name is one of the layer classes' (a block called
    ``dense``) are called ``DenseBlock``."""
    taken = _LAYER_CLASSES | {u.class_name for u in model.units}
    if model.model.class_name in _LAYER_CLASSES:
        raise CodegenError(f"tensorflow: the network's class name {model.model.class_name} is a layer class's")
    names: dict[str, str] = {}
    for u in model.units:
        if u.class_name in _LAYER_CLASSES:
            new = f"{u.class_name}Block"
            while new in taken:
                new += "_"
            names[u.class_name] = new
            taken.add(new)
    if not names:
        return model
    units = []
    for u in model.units:
        steps = [replace(s, unit=names.get(s.unit, s.unit)) if s.unit else s for s in u.steps]
        units.append(replace(u, class_name=names.get(u.class_name, u.class_name), steps=steps))
    return replace(model, units=units)


def emit(model: CodeModel) -> str:
    missing = model.ops_used - set(OPS)
    if missing:  # pragma: no cover - the coverage test keeps OPS complete
        raise CodegenError(f"tensorflow: no rule for ops {sorted(missing)}")
    model = _renamed(model)
    ctx = Ctx(common.Printer(), training=_needs_training(model), defaults=_norm_defaults(model))
    classes = [unit_code(u, model, ctx, model.stage_blocks) for u in model.units]
    common.refuse(ctx.limits)
    helpers, features = ctx.helpers, ctx.features
    if helpers & (_LAYER_CLASSES - {"Sequential", "BatchNorm", "LayerNorm", "InstanceNorm", "LayerScale"}):
        helpers.add("glorot_uniform")
    if any("explicit" in features.get(c, ()) for c in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")):
        helpers.add("tf_padding")
    if any("pair" in f for f in features.values()) or "explicit" in features.get("Conv1D", ()):
        helpers.add("pair")
    source = render_template(
        "tensorflow.py.j2",
        header=common.header(model, TARGET),
        module_doc=common.module_doc(model, "TensorFlow", "tensorflow") + "\n" + _io_doc(model) + "\n",
        classes=classes,
        helpers=helpers,
        features=features,
        # Convolutions with groups run through XLA: TensorFlow's CPU kernels have no grouped gradients.
        grouped=[c for c in ("Conv2D", "Conv1D") if c in helpers and "groups" in features.get(c, ())],
        defaults=ctx.defaults,
        needs=ctx.printer.needs,
    )
    return common.unique_names(source, model, TARGET)
