"""Keras emitter: Keras 3 functional API, one function per block.

Only ``keras.layers`` and ``keras.ops`` are used, so the file runs on any
Keras backend. Tensors are channels-last (NHWC); layer names are the IR
paths (``layer1.0.conv1``), so weights map 1:1 to the canonical keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from archspec.codegen import common
from archspec.codegen.model import LOGITS, CodegenError, CodeModel, Padding, Step, Unit, step_exprs
from archspec.codegen.render import render_template
from archspec.ops import same_padding
from archspec.schema import expr as E

TARGET = "keras"


@dataclass
class Ctx:
    printer: common.Printer
    helpers: set[str] = field(default_factory=set)
    in_model: bool = False

    def name(self, step: Step, suffix: str = "") -> str:
        """The ``name=`` of a layer: its IR path (an f-string inside blocks)."""
        if self.in_model:
            return f'name="{step.name}{suffix}"'
        return f'name=f"{{name}}.{step.name}{suffix}"'


# ----------------------------------------------------------------------------
# Per-op rules: lines computing ``out`` from ``ins`` (variable names).

Rule = Callable[[Step, Ctx, list[str], str], list[str]]


def _a(step: Step, ctx: Ctx, key: str) -> str:
    return ctx.printer.pair(step.attrs[key])


def _v(step: Step, ctx: Ctx, key: str) -> object:
    return ctx.printer.value(step.attrs[key])


def _kw(name: str, value: str, default: str) -> list[str]:
    return [] if value == default else [f"{name}={value}"]


def _const_pair(step: Step, ctx: Ctx, key: str) -> tuple[int, ...] | None:
    v = _v(step, ctx, key)
    if v is None:
        return None
    return v if isinstance(v, tuple) else (v, v)


def _padding(
    step: Step, ctx: Ctx, inp: str, out: str, fill_inf: bool = False, keras_same: bool = True
) -> tuple[list[str], str, str]:
    """Decide how a windowed layer pads. Returns (lines before the layer,
    the layer's padding keyword, the input variable for the layer); a pad
    layer writes to the step's own output variable, which is free until then.
    ``keras_same`` False: never say padding="same" (average pooling that counts
    the padded zeros, which Keras' "same" leaves out of the average)."""
    p: Padding | None = step.padding
    if p is None or p.mode in ("none", "valid"):
        return [], '"valid"', inp
    if p.mode in ("same", "causal"):
        return [], f'"{p.mode}"', inp
    if p.mode == "keyword":
        return [], ctx.printer.expr(p.expr), inp
    pad_layer = "NegInfPadding2D" if fill_inf else "layers.ZeroPadding2D"
    if fill_inf:
        ctx.helpers.add("NegInfPadding2D")
    if p.expr is not None:  # symmetric, varying between instances: pad when it is not zero
        amount = ctx.printer.pair(p.expr)
        if step.in_ranks[0] == 2:
            pad_layer = "layers.ZeroPadding1D"
        lines = [f"{out} = {inp}"] if out != inp else []
        lines += [f"if {amount}:", f"    {out} = {pad_layer}({amount}, {ctx.name(step, '.pad')})({out})"]
        return lines, '"valid"', out
    sides = p.sides
    if keras_same and _is_same_at_stride1(step, ctx, sides):
        return [], '"same"', inp
    if len(sides) == 2:
        return [f"{out} = layers.ZeroPadding1D({sides}, {ctx.name(step, '.pad')})({inp})"], '"valid"', out
    t, b, left, r = sides
    spec = f"(({t}, {b}), ({left}, {r}))" if (t, b) != (left, r) or t != b else str(t)
    return [f"{out} = {pad_layer}({spec}, {ctx.name(step, '.pad')})({inp})"], '"valid"', out


def _is_same_at_stride1(step: Step, ctx: Ctx, sides: tuple[int, ...]) -> bool:
    """Explicit padding that is exactly Keras' 'same' (stride 1: (k - 1) * d
    split with the odd pixel after), so the layer can say padding="same"."""
    if "stride" not in step.attrs or "kernel" not in step.attrs:
        return False
    stride = _v(step, ctx, "stride")
    kernel = _v(step, ctx, "kernel")
    dilation = _v(step, ctx, "dilation") if "dilation" in step.attrs else 1
    if stride is None or kernel is None or dilation is None:
        return False
    axes = len(sides) // 2
    as_tuple = lambda v: v if isinstance(v, tuple) else (v,) * axes  # noqa: E731
    stride, kernel, dilation = as_tuple(stride), as_tuple(kernel), as_tuple(dilation)
    if any(s != 1 for s in stride):
        return False
    want = []
    for k, d in zip(kernel, dilation):
        want += list(same_padding(10, k, 1, d))
    return tuple(want) == tuple(sides)


def _ceil_extra(step: Step, ctx: Ctx) -> tuple[int, int]:
    """Extra bottom/right padding that makes floor-mode pooling give the
    ceil-mode output size of the IR."""
    if step.in_shape is None or step.out_shape is None:
        raise CodegenError(f"{step.name}: ceil-mode pooling in a block whose input size varies")
    k = _const_pair(step, ctx, "kernel")
    s = _const_pair(step, ctx, "stride") if "stride" in step.attrs else k
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


def pool(layer: str, fill_inf: bool) -> Rule:
    def rule(step: Step, ctx: Ctx, ins: list[str], out: str) -> list[str]:
        inp = ins[0]
        lines: list[str] = []
        ceil = _v(step, ctx, "ceil_mode")
        if ceil is None:
            raise CodegenError(f"{step.name}: ceil_mode from a parameter; Keras pools pad for it per instance")
        if ceil:
            if not fill_inf:
                raise CodegenError(f"{step.name}: ceil-mode average pooling has no Keras equivalent")
            p = step.padding.sides if step.padding and step.padding.sides else (0, 0, 0, 0)
            eb, er = _ceil_extra(step, ctx)
            step = _with_padding(step, (p[0], p[1] + eb, p[2], p[3] + er))
        keras_same = True
        if not fill_inf and step.padding and step.padding.mode not in ("none", "valid"):
            # Keras' padding="same" leaves the padded zeros out of the average.
            include = _v(step, ctx, "count_include_pad")
            if include is None or step.padding.mode == "keyword" or step.padding.sides is None:
                raise CodegenError(f"{step.name}: average-pool padding or count_include_pad that varies")
            if include:  # count them: pad explicitly, pool without padding
                step, keras_same = _with_padding(step, step.padding.sides), False
            elif not _is_keras_same(step, ctx, step.padding.sides):
                raise CodegenError(f"{step.name}: explicit average-pool padding that excludes the padded zeros")
            else:
                step = replace(step, padding=Padding("same", step.padding.sides))
        pad_lines, padding, inp = _padding(step, ctx, inp, out, fill_inf, keras_same)
        lines += pad_lines
        args = [_a(step, ctx, "kernel")]
        if "stride" in step.attrs:
            args.append(f"strides={_a(step, ctx, 'stride')}")
        args += _kw("padding", padding, '"valid"')
        return [*lines, f"{out} = layers.{layer}({', '.join([*args, ctx.name(step)])})({inp})"]

    return rule


def _is_keras_same(step: Step, ctx: Ctx, sides: tuple[int, ...]) -> bool:
    """Whether per-side padding is what Keras' padding="same" does on this input
    (TensorFlow's rule, at any stride)."""
    k, s = _const_pair(step, ctx, "kernel"), _const_pair(step, ctx, "stride") if "stride" in step.attrs else None
    s = s or k
    if step.in_shape is None or k is None or s is None:
        return False
    want = [*same_padding(step.in_shape[1], k[0], s[0]), *same_padding(step.in_shape[2], k[1], s[1])]
    return tuple(want) == tuple(sides)


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
    t, b, left, r = step.padding.sides
    return [f"{out} = layers.ZeroPadding2D((({t}, {b}), ({left}, {r})), {ctx.name(step)})({ins[0]})"]


OPS: dict[str, Rule] = {
    "conv2d": conv("Conv2D"),
    "depthwise_conv2d": conv("DepthwiseConv2D"),
    "separable_conv2d": conv("SeparableConv2D"),
    "conv1d": conv("Conv1D"),
    "dense": dense,
    "max_pool2d": pool("MaxPooling2D", fill_inf=True),
    "avg_pool2d": pool("AveragePooling2D", fill_inf=False),
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
    path = f'"{step.name}"' if ctx.in_model else f'f"{{name}}.{step.name}"'
    if index is not None:
        path = f'f"{step.name}.{{{index}}}"' if ctx.in_model else f'f"{{name}}.{step.name}.{{{index}}}"'
    return f"{functions[step.unit]}({', '.join([inp, *kwargs, f'name={path}'])})"


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


def function_code(unit: Unit, model: CodeModel, ctx: Ctx, functions: dict[str, str]) -> FunctionCode:
    p = ctx.printer
    ctx.in_model = unit.is_model
    body: list[str] = []
    names_used = {n.id for s in unit.steps for e in step_exprs(s, channels=False) for n in E.free_names(e)}
    if not unit.is_model and "in_channels" in names_used:
        body.append("in_channels = x.shape[-1]")
    comments = common.shape_comments(unit, TARGET)
    pending = comments[0]  # a step's shape comment follows its lines
    for step, after in zip(unit.steps, comments[1:]):
        body += pending
        pending = after
        cond = p.expr(step.cond) if step.cond is not None else None
        ins, out = step.inputs, step.output
        if step.unit is not None:
            if step.units is not None:
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
            if unit.is_model and out in unit.output_vars:
                body += [f"{out} = None", f"if {cond}:", *(f"    {line}" for line in lines)]
            elif out == ins[0]:
                body += [f"if {cond}:", *(f"    {line}" for line in lines)]
            else:
                body += [f"{out} = {ins[0]}", f"if {cond}:", *(f"    {line}" for line in lines)]
        else:
            body += lines
    body += pending
    outs = unit.output_vars
    if unit.is_model:
        g = model.compiled.graph
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


def _channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (*shape[1:], shape[0])


# Names a block function must not take: the file's modules, and the locals
# of generated functions (their input, a stage loop's index, the model's lists).
_TAKEN = {"keras", "layers", "ops", "x", "i", "inputs", "outputs", "name"}


def _snake(unit: Unit) -> str:
    return f"{unit.name}_block" if unit.name in _TAKEN else unit.name


def emit(model: CodeModel) -> str:
    missing = model.ops_used - set(OPS)
    if missing:  # pragma: no cover - the coverage test keeps OPS complete
        raise CodegenError(f"keras: no rule for ops {sorted(missing)}")
    ctx = Ctx(common.Printer())
    ctx.units = {u.class_name: u for u in model.units}  # type: ignore[attr-defined]
    functions = {u.class_name: _snake(u) for u in model.units if not u.is_model}
    code = [function_code(u, model, ctx, functions) for u in model.units]
    source = render_template(
        "keras.py.j2",
        header=common.header(model, TARGET),
        module_doc=common.module_doc(model, "Keras", "keras"),
        functions=code,
        helpers=ctx.helpers,
        needs=ctx.printer.needs,
    )
    written = [u.class_name if u.is_model else functions[u.class_name] for u in model.units]
    return common.unique_names(source, model, TARGET, written)
