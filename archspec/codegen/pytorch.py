"""PyTorch emitter: ``nn.Module`` classes, ``nn.Sequential`` stages.

Attribute names follow the IR paths, so ``state_dict()`` keys are the
canonical weight keys (``layer1.0.conv1.weight``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from archspec.codegen import common
from archspec.codegen.model import LOGITS, CodegenError, CodeModel, Padding, Step, Unit, is_const, mul
from archspec.codegen.render import render_template
from archspec.ir import Node
from archspec.schema import expr as E

TARGET = "pytorch"


@dataclass
class Ctx:
    printer: common.Printer
    model: CodeModel
    nodes: dict[str, Node]  # IR nodes by path
    unit: Unit | None = None  # the unit being written
    helpers: set[str] = field(default_factory=set)  # names of helper definitions used
    limits: list[CodegenError] = field(default_factory=list)  # what the spec asks that cannot be written
    same_modules: set[str] = field(default_factory=set)  # base classes of the 'same' padding modules used
    inplace: set[str] = field(default_factory=set)  # steps of the unit that overwrite their input
    functional: bool = False  # torch.nn.functional is needed


# ----------------------------------------------------------------------------
# Per-op rules: the module a step constructs (None: no module) and the
# expression its forward computes from the input variables.

Module = Callable[[Step, Ctx], str | None]
Forward = Callable[[Step, Ctx, list[str], str], str]


def _kw(name: str, value: object, default: object) -> list[str]:
    return [] if value == default else [f"{name}={value}"]


def _attr(step: Step, ctx: Ctx, name: str) -> str:
    return ctx.printer.pair(step.attrs[name])


def _const(step: Step, ctx: Ctx, name: str) -> object:
    return ctx.printer.value(step.attrs[name])


def _conv_padding(step: Step, ctx: Ctx) -> list[str]:
    """The padding keyword of a convolution or pooling module: symmetric padding,
    as a number or an expression verified in every instance; nothing where a
    padding module (:func:`_pad_module`) or forward pads."""
    p = step.padding
    if p is None or p.mode == "none":
        return []
    if p.expr is not None:  # symmetric, or a 'same'/'valid' parameter (PyTorch takes both words)
        return [f"padding={ctx.printer.pair(p.expr)}"]
    if p.sides is None:  # 'same' resolved differently per instance
        expr = _same_expr(step, ctx)
        return [] if expr is None else [f"padding={ctx.printer.pair(expr)}"]
    if not _symmetric(p):
        return []
    sides = p.sides
    if len(sides) == 2:
        return [f"padding={sides[0]}"] if sides[0] else []
    t, _, left, _ = sides
    if not t and not left:
        return []
    return [f"padding={t if t == left else (t, left)}"]


def _same_expr(step: Step, ctx: Ctx) -> E.Expr | tuple | None:
    """Per-instance 'same' padding that one symmetric expression writes (``kernel // 2``)."""
    p = step.padding
    if p is None or p.mode != "same" or p.sides is not None:
        return None
    assert ctx.unit is not None
    return common.symmetric_same(step, common.instances(ctx.model, ctx.unit, step, ctx.nodes))


def _symmetric(p: Padding) -> bool:
    s = p.sides
    if s is None:
        return False
    return s[0] == s[1] if len(s) == 2 else (s[0] == s[1] and s[2] == s[3])


# The module that pads for a layer whose padding its own ``padding=`` cannot
# say: TensorFlow's 'same' where it is asymmetric or depends on the input size
# (the module pads in its forward, so the network's stays ``x = self.conv(x)``),
# and causal padding. Base class -> its 'same' padding module.
SAME_MODULES = {"nn.Conv2d": "Conv2dSame", "nn.Conv1d": "Conv1dSame", "nn.MaxPool2d": "MaxPool2dSame"}
PAD_FILL = {"MaxPool2dSame": 'float("-inf")'}  # max pooling pads with -inf


def _pad_module(step: Step, ctx: Ctx, base: str) -> str | None:
    """The padding module that replaces ``base`` for this step, or None."""
    p = step.padding
    if p is None or p.expr is not None or (p.sides is not None and _symmetric(p)):
        return None
    if p.mode == "causal" and base == "nn.Conv1d":
        ctx.helpers.add("CausalConv1d")
        return "CausalConv1d"
    if p.mode == "same" and base in SAME_MODULES and _same_expr(step, ctx) is None:
        ctx.helpers.add("pad_same")
        ctx.same_modules.add(base)
        return SAME_MODULES[base]
    return None


def _pad_input(step: Step, ctx: Ctx, inp: str, module: str, value: str = "") -> str:
    """Wrap the input of a padded module where neither its ``padding=`` nor a
    padding module can say it: asymmetric explicit padding, and 'same' that
    varies per instance on a separable convolution or an average pooling."""
    p = step.padding
    if p is None or p.mode == "none" or p.expr is not None or (p.sides is not None and _symmetric(p)):
        return inp
    if step.op in PADDED_BY_MODULE and _pad_module(step, ctx, PADDED_BY_MODULE[step.op]) is not None:
        return inp
    fill = f", value={value}" if value else ""
    if p.sides is None:  # 'same' resolved differently per instance: pad at run time
        if _same_expr(step, ctx) is not None:
            return inp
        ctx.helpers.add("pad_same")
        if step.op == "separable_conv2d":  # SeparableConv2d then shows pad_same its kernel, stride, dilation
            ctx.helpers.add("pad_same_separable")
        return f"pad_same({inp}, {module}{fill})"
    ctx.functional = True
    s = p.sides
    pads = (s[0], s[1]) if len(s) == 2 else (s[2], s[3], s[0], s[1])  # F.pad: last axis first
    return f"F.pad({inp}, {pads}{fill})"


# Ops whose module a padding module may replace, and the module's base class.
PADDED_BY_MODULE = {
    "conv2d": "nn.Conv2d",
    "depthwise_conv2d": "nn.Conv2d",
    "conv1d": "nn.Conv1d",
    "max_pool2d": "nn.MaxPool2d",
}


def _conv_kwargs(step: Step, ctx: Ctx, *extra: str) -> list[str]:
    """The keywords every convolution module shares, defaults left out;
    ``extra`` names further attributes whose framework default is 1."""
    kw = [*_kw("stride", _attr(step, ctx, "stride"), "1"), *_conv_padding(step, ctx)]
    kw += _kw("dilation", _attr(step, ctx, "dilation"), "1")
    for name in extra:
        kw += _kw(name, _attr(step, ctx, name), "1")
    return kw


def _bias_kwarg(step: Step, ctx: Ctx) -> list[str]:
    return _kw("bias", _attr(step, ctx, "bias"), "True")


def _conv(cls: str, *extra: str) -> Module:
    """nn.Conv2d / nn.Conv1d / SeparableConv2d(in, out, kernel, ...)."""

    def make(step: Step, ctx: Ctx) -> str:
        if cls == "SeparableConv2d":
            ctx.helpers.add(cls)
        args = [ctx.printer.expr(step.in_channels), _attr(step, ctx, "out"), _attr(step, ctx, "kernel")]
        kw = [*_conv_kwargs(step, ctx, *extra), *_bias_kwarg(step, ctx)]
        return f"{_pad_module(step, ctx, cls) or cls}({', '.join([*args, *kw])})"

    return make


def depthwise_conv2d(step: Step, ctx: Ctx) -> str:
    cin = ctx.printer.expr(step.in_channels)
    cout = ctx.printer.expr(mul(step.in_channels, step.attrs["multiplier"]))
    kw = [*_conv_kwargs(step, ctx), f"groups={cin}", *_bias_kwarg(step, ctx)]
    cls = _pad_module(step, ctx, "nn.Conv2d") or "nn.Conv2d"
    return f"{cls}({', '.join([cin, cout, _attr(step, ctx, 'kernel'), *kw])})"


def dense(step: Step, ctx: Ctx) -> str:
    args = [ctx.printer.expr(step.in_channels), _attr(step, ctx, "out")]
    return f"nn.Linear({', '.join(args + _bias_kwarg(step, ctx))})"


def _pool(cls: str) -> Module:
    def make(step: Step, ctx: Ctx) -> str:
        p = step.padding
        uncounted = "count_include_pad" in step.attrs and _attr(step, ctx, "count_include_pad") == "False"
        if uncounted and p is not None and p.mode != "none" and not _symmetric(p):
            raise CodegenError(
                f"{step.name}: average pooling with asymmetric padding that leaves the padded zeros out of the "
                "average has no PyTorch module (a pad before it would count them); pad symmetrically, or count "
                "them (count_include_pad: true)",
                step.pos,
            )
        args = [_attr(step, ctx, "kernel")]
        if "stride" in step.attrs:
            args.append(f"stride={_attr(step, ctx, 'stride')}")
        args += _pool_padding(step, ctx) if p is not None and p.mode == "keyword" else _conv_padding(step, ctx)
        args += _kw("ceil_mode", _attr(step, ctx, "ceil_mode"), "False")
        if "count_include_pad" in step.attrs:
            args += _kw("count_include_pad", _attr(step, ctx, "count_include_pad"), "True")
        return f"{_pad_module(step, ctx, f'nn.{cls}') or f'nn.{cls}'}({', '.join(args)})"

    return make


def _pool_padding(step: Step, ctx: Ctx) -> list[str]:
    """Padding named by a parameter: pooling modules take no 'same', so it is
    written as numbers. The code model allows 'same' there at stride 1 only,
    which for an odd kernel pads (k - 1) / 2 on each side."""
    kernel = ctx.printer.value(step.attrs["kernel"])
    sizes = kernel if isinstance(kernel, tuple) else (kernel,)
    if kernel is None or any(k % 2 == 0 for k in sizes):
        raise CodegenError(
            f"{step.name}: pooling with padding 'same' or 'valid' chosen by a parameter needs an odd kernel "
            "that is the same in every instance; give the padding as numbers, or use such a kernel",
            step.pos,
        )
    half = tuple((k - 1) // 2 for k in sizes)
    same = half[0] if len(set(half)) == 1 else half
    word = ctx.printer.expr(step.padding.expr, outer=1)  # type: ignore[union-attr, arg-type]
    return [f'padding={same} if {word} == "same" else 0']


def _norm_dim(step: Step) -> str:
    return "2d" if step.in_ranks[0] == 3 else "1d"


def batch_norm(step: Step, ctx: Ctx) -> str:
    kw = _kw("eps", _attr(step, ctx, "eps"), "1e-05") + _kw("momentum", _attr(step, ctx, "momentum"), "0.1")
    return f"nn.BatchNorm{_norm_dim(step)}({', '.join([ctx.printer.expr(step.in_channels), *kw])})"


def layer_norm(step: Step, ctx: Ctx) -> str:
    kw = _kw("eps", _attr(step, ctx, "eps"), "1e-05")
    if step.in_ranks[0] == 1:
        return f"nn.LayerNorm({', '.join([ctx.printer.expr(step.in_channels), *kw])})"
    ctx.helpers.add("ChannelLayerNorm")
    return f"ChannelLayerNorm({', '.join([ctx.printer.expr(step.in_channels), *kw])})"


def instance_norm(step: Step, ctx: Ctx) -> str:
    kw = _kw("eps", _attr(step, ctx, "eps"), "1e-05") + _kw("affine", _attr(step, ctx, "affine"), "False")
    return f"nn.InstanceNorm{_norm_dim(step)}({', '.join([ctx.printer.expr(step.in_channels), *kw])})"


def lrn(step: Step, ctx: Ctx) -> str:
    """``nn.LocalResponseNorm(5, alpha=5 * 0.0001, ...)``: PyTorch divides
    alpha by size, the IR's alpha is undivided, so the size multiplies it."""
    size, alpha = step.attrs["size"], step.attrs["alpha"]
    kw = [
        f"alpha={ctx.printer.expr(E.Binary('*', size, alpha, 0))}",
        *_kw("beta", _attr(step, ctx, "beta"), "0.75"),
        *_kw("k", _attr(step, ctx, "k"), "1.0"),
    ]
    return f"nn.LocalResponseNorm({', '.join([ctx.printer.expr(size), *kw])})"


def _simple(ctor: str) -> Module:
    return lambda step, ctx: ctor


def _activation(cls: str) -> Module:
    """``nn.ReLU()``, or ``nn.ReLU(inplace=True)`` where the step may overwrite its input."""
    return lambda step, ctx: f"{cls}(inplace=True)" if step.name in ctx.inplace else f"{cls}()"


def leaky_relu(step: Step, ctx: Ctx) -> str:
    inplace = ", inplace=True" if step.name in ctx.inplace else ""
    return f"nn.LeakyReLU({_attr(step, ctx, 'negative_slope')}{inplace})"


# Activations that PyTorch can apply in place, and the ops whose output they
# may overwrite: a new tensor that the op's backward does not read.
INPLACE_OPS = {"relu", "relu6", "leaky_relu", "silu", "hard_swish"}
FRESH_OUTPUT = {
    "conv2d",
    "depthwise_conv2d",
    "separable_conv2d",
    "conv1d",
    "conv_transpose2d",
    "dense",
    "batch_norm",
    "layer_norm",
    "instance_norm",
    "add",
    "concat",
    "multiply",
}


def inplace_steps(unit: Unit) -> set[str]:
    """The activations that overwrite their input, as torchvision writes them
    (``nn.ReLU(inplace=True)``): the input is the output of the step just
    before, an op that is always there and makes a new tensor, and the
    activation's result takes its variable, so nothing else sees the old value."""
    return {
        step.name
        for prev, step in zip(unit.steps, unit.steps[1:])
        if step.op in INPLACE_OPS
        and prev.op in FRESH_OUTPUT
        and prev.cond is None
        and step.inputs == [prev.output] == [step.output]
    }


def dropout(step: Step, ctx: Ctx) -> str:
    return f"nn.Dropout({_attr(step, ctx, 'rate')})"


def _call(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    return f"{module}({ins[0]})"


def _padded_call(fill: str = "") -> Forward:
    def call(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
        return f"{module}({_pad_input(step, ctx, ins[0], module, fill)})"

    return call


def _global_pool(fn: str) -> Forward:
    def call(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
        dims = "(2, 3)" if step.in_ranks[0] == 3 else "2"
        keep = ", keepdim=True" if _attr(step, ctx, "keepdims") == "True" else ""
        return f"{ins[0]}.{fn}({dims}{keep})"

    return call


def _multiply(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    a, b = ins
    ra, rb = step.in_ranks
    if ra > rb and rb == 1:
        b = f"{b}[:, :{', None' * (ra - 1)}]"
    elif rb > ra and ra == 1:
        a = f"{a}[:, :{', None' * (rb - 1)}]"
    return f"{a} * {b}"


def zero_pad2d(step: Step, ctx: Ctx) -> str:
    p = step.padding
    if p is None or p.sides is None:
        raise CodegenError(f"{step.name}: {common.VARYING_ZERO_PAD}", step.pos)
    t, b, left, right = p.sides
    return f"nn.ZeroPad2d({(left, right, t, b)})"


def channel_shuffle(step: Step, ctx: Ctx) -> str:
    return f"nn.ChannelShuffle({_attr(step, ctx, 'groups')})"


def conv_transpose2d(step: Step, ctx: Ctx) -> str:
    args = [ctx.printer.expr(step.in_channels), _attr(step, ctx, "out"), _attr(step, ctx, "kernel")]
    kw = [*_kw("stride", _attr(step, ctx, "stride"), "1"), *_kw("padding", _attr(step, ctx, "padding"), "0")]
    kw += _kw("output_padding", _attr(step, ctx, "output_padding"), "0")
    return f"nn.ConvTranspose2d({', '.join([*args, *kw, *_bias_kwarg(step, ctx)])})"


def gelu(step: Step, ctx: Ctx) -> str:
    return 'nn.GELU(approximate="tanh")' if _const(step, ctx, "approximate") == "tanh" else "nn.GELU()"


def upsample(step: Step, ctx: Ctx) -> str:
    """nn.Upsample; bilinear with align_corners=False (half-pixel centres), said explicitly."""
    if _const(step, ctx, "mode") == "bilinear":
        return f'nn.Upsample(scale_factor={_attr(step, ctx, "scale")}, mode="bilinear", align_corners=False)'
    return f"nn.Upsample(scale_factor={_attr(step, ctx, 'scale')})"


def _helper(cls: str, *attrs: str) -> Module:
    """A module written into the file (``LayerScale(64, 1e-06)``)."""

    def make(step: Step, ctx: Ctx) -> str:
        ctx.helpers.add(cls)
        args = [ctx.printer.expr(step.in_channels)] if cls == "LayerScale" else []
        return f"{cls}({', '.join([*args, *(_attr(step, ctx, a) for a in attrs)])})"

    return make


def _slice(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    start = _attr(step, ctx, "start")
    return f"{ins[0]}[:, {'' if start == '0' else start}:{_attr(step, ctx, 'stop')}]"


def _add(step: Step, ctx: Ctx, ins: list[str], module: str) -> str:
    """``a + b``; a list of every unit's output (``stage.*.skip``) is summed with sum."""
    return f"sum({common.items(step, ins)})" if any(step.starred) else " + ".join(ins)


@dataclass(frozen=True)
class Rule:
    module: Module | None
    forward: Forward = _call
    note: str = ""  # a comment on the module's line: why its numbers differ from the spec's


OPS: dict[str, Rule] = {
    "conv2d": Rule(_conv("nn.Conv2d", "groups"), _padded_call()),
    "depthwise_conv2d": Rule(depthwise_conv2d, _padded_call()),
    "separable_conv2d": Rule(_conv("SeparableConv2d", "multiplier"), _padded_call()),
    "conv1d": Rule(_conv("nn.Conv1d", "groups"), _padded_call()),
    "dense": Rule(dense),
    "max_pool2d": Rule(_pool("MaxPool2d"), _padded_call('float("-inf")')),
    "avg_pool2d": Rule(_pool("AvgPool2d"), _padded_call()),
    "global_avg_pool": Rule(None, _global_pool("mean")),
    "global_max_pool": Rule(None, _global_pool("amax")),
    "batch_norm": Rule(batch_norm),
    "layer_norm": Rule(layer_norm),
    "instance_norm": Rule(instance_norm),
    "lrn": Rule(lrn, note="PyTorch divides alpha by size"),
    "dropout": Rule(dropout),
    "relu": Rule(_activation("nn.ReLU")),
    "relu6": Rule(_activation("nn.ReLU6")),
    "leaky_relu": Rule(leaky_relu),
    "sigmoid": Rule(_simple("nn.Sigmoid()")),
    "tanh": Rule(_simple("nn.Tanh()")),
    "silu": Rule(_activation("nn.SiLU")),
    "hard_swish": Rule(_activation("nn.Hardswish")),
    "hard_sigmoid": Rule(_simple("nn.Hardsigmoid()")),
    "gelu": Rule(gelu),
    "softmax": Rule(_simple("nn.Softmax(dim=1)")),
    "drop_path": Rule(_helper("DropPath", "rate")),
    "scale": Rule(_helper("LayerScale", "init")),
    "slice": Rule(None, _slice),
    "upsample": Rule(upsample),
    "conv_transpose2d": Rule(conv_transpose2d),
    "flatten": Rule(None, lambda step, ctx, ins, m: f"torch.flatten({ins[0]}, 1)"),
    "add": Rule(None, _add),
    "concat": Rule(None, lambda step, ctx, ins, m: f"torch.cat({common.items(step, ins)}, dim=1)"),
    "multiply": Rule(None, _multiply),
    "channel_shuffle": Rule(channel_shuffle),
    "zero_pad2d": Rule(zero_pad2d),
}


# ----------------------------------------------------------------------------
# Classes


@dataclass
class ClassCode:
    name: str
    doc: str
    signature: str
    init: list[str]
    forward: list[str]
    returns: str
    # A sequential block (an ``nn.Sequential`` subclass): its layers, then
    # ``init`` holds what comes before them and ``after`` what follows.
    layers: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)


def sequential_code(unit: Unit, model: CodeModel, ctx: Ctx, stage_blocks: set[str]) -> ClassCode:
    """A sequential block as an ``nn.Sequential`` of unnamed layers, as torchvision's
    ``Conv2dNormActivation``: its ``state_dict`` keys are positions (``downsample.0.weight``)."""
    p = ctx.printer
    ctx.unit = unit
    ctx.inplace = set()
    layers = []
    for step in unit.steps:
        with common.gathered(ctx.limits):
            ctor = OPS[step.op].module(step, ctx) if OPS[step.op].module else None
            if ctor is None or OPS[step.op].forward(step, ctx, ["x"], "layer") != "layer(x)":
                raise CodegenError(f"{unit.name}.{step.name}: a {step.op} that PyTorch cannot write as one module")
            layers.append(ctor)
    after = [f"self.out_channels = {p.expr(unit.out_channels)}"] if unit.name in stage_blocks else []
    lets = [f"{lname} = {p.expr(e)}" for lname, e in unit.lets]
    doc = common.docstring(unit.doc, indent="    ")
    return ClassCode(unit.class_name, doc, common.signature(unit), lets, [], "", layers, after)


def unit_code(unit: Unit, model: CodeModel, ctx: Ctx, stage_blocks: set[str]) -> ClassCode:
    if unit.sequential:
        return sequential_code(unit, model, ctx, stage_blocks)
    p = ctx.printer
    ctx.unit = unit
    ctx.inplace = inplace_steps(unit)
    init = [f"{lname} = {p.expr(e)}" for lname, e in unit.lets]
    forward: list[str] = []
    comments = common.shape_comments(unit, TARGET)
    pending = comments[0]  # a step's shape comment follows its lines
    tables = common.stage_tables(
        unit,
        model,
        p,
        lambda st: len(f"self.{st.name} = {_block_ctor(st, ctx)}") + 8 > 120,
        lambda var, fn, args, name: [f"{var} = {fn}({', '.join(args)})", f"self.add_module({name}, {var})"],
        min_run=5,  # as torchvision: a table for MobileNet's many stages, one line per ResNet layer
    )
    for step, after in zip(unit.steps, comments[1:]):
        with common.gathered(ctx.limits):
            forward += pending
            pending = after
            module = f"self.{step.name}"
            cond = p.expr(step.cond, outer=1) if step.cond is not None else None
            if step.name in tables:  # built by its table's loop, under its own name (a weight key)
                init += tables[step.name]
                forward += common.assign(
                    step.output, f"{module}({step.inputs[0]})", None, step.stand_in, step.is_output
                )
                continue
            if step.unit is not None:
                ctor = _block_ctor(step, ctx)
                has_module = True
            else:
                rule = OPS[step.op]
                ctor = rule.module(step, ctx) if rule.module else None
                has_module = ctor is not None
                if not has_module:
                    step = _kept(step, ctx, init)
            if step.unit is not None and (step.unpacks or step.collect):
                if cond:  # pragma: no cover - the spec's checks refuse 'when' on such a block
                    raise CodegenError(f"{step.name}: a block with several outputs under a condition")
                init.append(f"{module} = {ctor}")
                if step.units is None:
                    forward.append(common.unit_outputs(step, f"{module}({step.inputs[0]})"))
                else:
                    forward += common.run_units(step, f"block in {module}", lambda x: f"block({x})")
                continue
            if has_module:
                init.append(f"{module} = {ctor} if {cond} else None" if cond else f"{module} = {ctor}")
                if step.unit is None and OPS[step.op].note:
                    init[-1] += f"  # {OPS[step.op].note}"
                call = (
                    f"{module}({step.inputs[0]})"
                    if step.unit is not None
                    else OPS[step.op].forward(step, ctx, step.inputs, module)
                )
                present = f"{module} is not None"
            else:
                if cond:
                    init.append(f"self.{step.flag} = {cond}")
                call = OPS[step.op].forward(step, ctx, step.inputs, module)
                present = f"self.{step.flag}"
            is_output = unit.is_model and step.is_output
            skip = f"self.{unit.logits_attr}" if step.logits_switch else None
            forward += common.assign(step.output, call, present if cond else None, step.stand_in, is_output, skip)
    if unit.logits_attr:
        init.insert(0, f"self.{unit.logits_attr} = {LOGITS}")
    if unit.name in stage_blocks:
        init.append(f"self.out_channels = {p.expr(unit.out_channels)}")
    forward += pending
    outs = unit.output_vars
    forward.append(f"return {', '.join(outs)}")
    returns = "torch.Tensor" if len(outs) == 1 else f"tuple[{', '.join(['torch.Tensor'] * len(outs))}]"
    doc = common.model_doc(model) if unit.is_model else common.docstring(unit.doc, indent="    ")
    return ClassCode(unit.class_name, doc, common.signature(unit), init, forward, returns)


def _kept(step: Step, ctx: Ctx, init: list[str]) -> Step:
    """An op without a module whose attributes use the constructor's arguments
    keeps them as attributes (``self.x1_stop = branch_features``) for ``forward``."""
    attrs = dict(step.attrs)
    for key, value in step.attrs.items():
        if isinstance(value, E.Expr) and not is_const(value):
            init.append(f"self.{step.name}_{key} = {ctx.printer.expr(value)}")
            attrs[key] = E.Name(f"self.{step.name}_{key}", 0)
    return replace(step, attrs=attrs)


def _block_ctor(step: Step, ctx: Ctx) -> str:
    p = ctx.printer
    cin = p.expr(step.in_channels)
    kwargs = [f"{k}={p.expr(v)}" for k, v in step.attrs.items()]
    if step.units is None:
        return f"{step.unit}({', '.join([cin, *kwargs])})"
    units = p.expr(step.units)
    if step.varies_with_i:
        cin = p.expr(step.unit_in_channels or step.in_channels)
        if step.unpacks or step.collect:  # run unit by unit in forward: a list, not a pipeline
            return f"nn.ModuleList({step.unit}({', '.join([cin, *kwargs])}) for i in range({units}))"
        return f"nn.Sequential(*[{step.unit}({', '.join([cin, *kwargs])}) for i in range({units})])"
    ctx.helpers.add("make_stage")
    first = [f"{k}={p.expr(v)}" for k, v in step.first.items()]
    extra = [f"first=dict({', '.join(first)})"] if first else []
    return f"make_stage({', '.join([step.unit, cin, units, *kwargs, *extra])})"


def emit(model: CodeModel) -> str:
    missing = model.ops_used - set(OPS)
    if missing:  # pragma: no cover - the coverage test keeps OPS complete
        raise CodegenError(f"pytorch: no rule for ops {sorted(missing)}")
    ctx = Ctx(common.Printer(), model, {n.path: n for n in model.compiled.graph.nodes})
    classes = [unit_code(u, model, ctx, model.stage_blocks) for u in model.units]
    common.refuse(ctx.limits)
    source = render_template(
        "pytorch.py.j2",
        header=common.header(model, TARGET),
        module_doc=common.module_doc(model, "PyTorch", "pytorch"),
        classes=classes,
        helpers=ctx.helpers,
        same_modules=[(SAME_MODULES[b], b, PAD_FILL.get(SAME_MODULES[b], "")) for b in sorted(ctx.same_modules)],
        needs=ctx.printer.needs,
        functional=ctx.functional or bool({"pad_same", "CausalConv1d"} & ctx.helpers),
    )
    return common.unique_names(source, model, TARGET)
