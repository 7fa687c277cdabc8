"""Chainer emitter: ``chainer.Chain`` classes, ``chainer.ChainList`` stages.

Links are created in ``with self.init_scope():`` and named after the IR
paths; everything without parameters (activations, pooling, merges) is a
``chainer.functions`` call in ``forward``. A parameter's path therefore maps
1:1 to its canonical weight key once Chainer's names are translated::

    /layer1/0/conv1/W        -> layer1.0.conv1.weight
    /layer1/0/conv1/b        -> layer1.0.conv1.bias
    /layer1/0/bn1/gamma      -> layer1.0.bn1.weight         (batch, layer, group norm)
    /layer1/0/bn1/beta       -> layer1.0.bn1.bias
    /layer1/0/bn1/avg_mean   -> layer1.0.bn1.running_mean   (persistent, not a parameter)
    /layer1/0/bn1/avg_var    -> layer1.0.bn1.running_var    (persistent, not a parameter)

(:data:`PARAM_NAMES` holds that table.) Stages are a small ``Stage``
(a ``chainer.ChainList``), not ``chainer.Sequential``: in chainer 7.8.1,
``Sequential.insert`` finds the first link before the position instead of the
last, so from the third link on its children are named out of order (``/1``
is the last unit) and the paths would not be the spec's.

Every link keeps the canonical layout: convolution kernels (out, in/groups,
kh, kw), including depthwise ones, which are grouped ``L.Convolution2D``
(``L.DepthwiseConvolution2D`` stores (multiplier, in, kh, kw)); ``L.Linear``
weights (out, in).

Semantics that differ from Chainer's defaults, handled here: batch-norm
``eps`` is always written (Chainer's default 2e-5 is nobody else's) and
``decay`` is 1 - the IR momentum; max pooling says ``cover_all=False`` unless
the IR's ``ceil_mode`` output size is what ``cover_all=True`` gives; average
pooling that does not count padded zeros is ``F.average_pooling_nd(...,
pad_value=None)``. Padding ``pad=`` cannot express (asymmetric, or 'same'
that depends on the input size, causal) is done by a small subclass of the
convolution link (``Convolution2DSame``, ``CausalConvolution1D``) or, for max
pooling, a helper function; what remains (explicit asymmetric padding, a
separable convolution's or an average pooling's) is an ``F.pad`` in forward.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from archspec.codegen import common
from archspec.codegen.model import (
    LOGITS,
    CodegenError,
    CodeModel,
    Padding,
    Step,
    Unit,
    evaluate,
    is_const,
    mul,
    substitute,
)
from archspec.codegen.render import render_template
from archspec.ir import Node
from archspec.schema import expr as E

TARGET = "chainer"

# Chainer's parameter (and batch-norm persistent) names -> canonical weight names.
PARAM_NAMES = {
    "W": "weight",
    "b": "bias",
    "gamma": "weight",
    "beta": "bias",
    "avg_mean": "running_mean",
    "avg_var": "running_var",
}

# Attributes of chainer.Chain: a stored constructor argument must not shadow them.
_CHAIN_ATTRS = frozenset(
    [
        "add_hook",
        "add_link",
        "add_param",
        "add_persistent",
        "addgrads",
        "children",
        "cleargrads",
        "copy",
        "copyparams",
        "count_params",
        "delete_hook",
        "device",
        "device_resident_accept",
        "disable_update",
        "enable_update",
        "forward",
        "from_chx",
        "from_params",
        "init_scope",
        "links",
        "local_link_hooks",
        "name",
        "namedlinks",
        "namedparams",
        "params",
        "printable_specs",
        "register_persistent",
        "repeat",
        "serialize",
        "to_chx",
        "to_cpu",
        "to_device",
        "to_gpu",
        "to_intel64",
        "update_enabled",
        "within_init_scope",
        "xp",
        "zerograds",
        "out_channels",
    ]
)

# Module-level names of a generated file that forward reads or that classes use.
_MODULE_NAMES = frozenset(
    ["F", "L", "np", "math", "chainer", "make_divisible", "pad_same", "same_pad", "fixed_same_pad"]
    + ["Convolution2DSame", "Convolution1DSame", "CausalConvolution1D", "max_pooling_2d_same"]
    + ["channel_shuffle", "instance_norm", "make_stage", "Stage", "SeparableConvolution2D", "ChannelLayerNormalization"]
    + ["gelu", "drop_path", "upsample_bilinear", "LayerScale"]
)

# Helpers written into the generated file, and what each one uses.
_HELPER_USES = {
    "pad_same": {"F", "math"},
    "fixed_same_pad": set(),
    "Convolution2DSame": {"L"},
    "Convolution1DSame": {"L"},
    "CausalConvolution1D": {"F", "L"},
    "max_pooling_2d_same": {"F", "np"},
    "same_pad": set(),
    "channel_shuffle": {"F"},
    "instance_norm": {"F"},
    "make_stage": set(),
    "Stage": set(),
    "SeparableConvolution2D": {"L"},
    "ChannelLayerNormalization": {"F", "L"},
    "gelu": {"F", "math"},
    "drop_path": {"F"},
    "upsample_bilinear": {"F", "np"},
    "LayerScale": {"F"},
}


@dataclass
class Ctx:
    printer: common.Printer
    model: CodeModel
    nodes: dict[str, Node]
    helpers: set[str] = field(default_factory=set)
    limits: list[CodegenError] = field(default_factory=list)  # what the spec asks that cannot be written
    unit: Unit | None = None
    taken: set[str] = field(default_factory=set)  # attribute names of the current unit
    stored: dict[str, str] = field(default_factory=dict)  # argument -> attribute read in forward

    def expr(self, value: E.Expr | tuple) -> str:
        """An init-time value (the constructor's arguments are in scope)."""
        return self.printer.pair(value)

    def runtime(self, value: E.Expr | tuple) -> str:
        """A forward-time value: constructor arguments are read from attributes
        that ``__init__`` stores (``self.stride = stride``)."""
        if isinstance(value, tuple):
            return self.printer.pair(tuple(self._bind(v) for v in value))
        return self.printer.expr(self._bind(value))

    def _bind(self, e: E.Expr) -> E.Expr:
        return substitute(e, {n.id: E.Name(f"self.{self.store(n.id)}", 0) for n in E.free_names(e)})

    def store(self, arg: str) -> str:
        if arg not in self.stored:
            attr = arg
            while attr in self.taken or attr in _CHAIN_ATTRS:
                attr += "_"
            self.taken.add(attr)
            self.stored[arg] = attr
        return self.stored[arg]

    def instances(self, step: Step) -> list[tuple[dict[str, Any], Node]]:
        """(environment, IR node) of every instance of an op step."""
        assert self.unit is not None
        return common.instances(self.model, self.unit, step, self.nodes)


def _where(ctx: Ctx, step: Step) -> str:
    return f"{ctx.unit.name}.{step.name}" if ctx.unit else step.name


# ----------------------------------------------------------------------------
# Padding: what Chainer's ``pad=`` can say (symmetric), and what goes into an
# explicit ``F.pad`` in forward.


def _symmetric(p: Padding) -> bool:
    s = p.sides
    if s is None:
        return False
    return s[0] == s[1] if len(s) == 2 else (s[0] == s[1] and s[2] == s[3])


def _in_forward(step: Step, ctx: Ctx) -> bool:
    """True when ``pad=`` cannot say the padding: a padding link
    (:func:`_pad_link`), a padding helper or an explicit pad in forward does."""
    p = step.padding
    if p is None or p.mode == "none" or p.expr is not None:
        return False
    return not _symmetric(p) and _same_expr(step, ctx) is None


def _same_expr(step: Step, ctx: Ctx) -> E.Expr | tuple | None:
    """Per-instance 'same' padding that one symmetric expression writes (``kernel // 2``)."""
    p = step.padding
    if p is None or p.mode != "same" or p.sides is not None:
        return None
    return common.symmetric_same(step, ctx.instances(step))


# Links whose padding ``pad=`` cannot say, padded by a subclass instead (in its
# forward, so that the network's stays ``h = self.conv(x)``): TensorFlow's
# 'same' where it is asymmetric or depends on the input size, and causal padding.
SAME_LINKS = {"L.Convolution2D": "Convolution2DSame", "L.Convolution1D": "Convolution1DSame"}


def _pad_link(step: Step, ctx: Ctx, base: str) -> str:
    """The link class of a convolution: ``base``, or the subclass that pads for it."""
    p = step.padding
    if p is None or not _in_forward(step, ctx):
        return base
    if p.mode == "causal" and base == "L.Convolution1D":
        ctx.helpers.add("CausalConvolution1D")
        return "CausalConvolution1D"
    if p.mode == "same" and base in SAME_LINKS:
        ctx.helpers |= {"pad_same", "fixed_same_pad", SAME_LINKS[base]}
        return SAME_LINKS[base]
    return base


def _pad_kw(step: Step, ctx: Ctx, runtime: bool) -> list[str]:
    """The ``pad=`` keyword of a convolution or pooling (symmetric padding)."""
    p = step.padding
    if p is None or p.mode == "none" or _in_forward(step, ctx):
        return []
    show = ctx.runtime if runtime else ctx.expr
    if p.mode == "keyword":
        return [f"pad={_keyword_pad(step, ctx, show)}"]
    if p.expr is not None:
        return [f"pad={show(p.expr)}"]
    if p.sides is None:  # 'same' that one expression writes
        return [f"pad={show(_same_expr(step, ctx))}"]  # type: ignore[arg-type]
    sides = p.sides
    if len(sides) == 2:
        return [f"pad={sides[0]}"] if sides[0] else []
    t, _, left, _ = sides
    if not t and not left:
        return []
    return [f"pad={t if t == left else (t, left)}"]


def _keyword_pad(step: Step, ctx: Ctx, show: Callable) -> str:
    """Padding chosen by a parameter, 'same' (at stride 1) or 'valid': Chainer
    takes numbers, so 'same' becomes (k - 1) * dilation / 2 per side, verified
    symmetric in every instance."""
    p = step.padding
    kernel, dilation = step.attrs["kernel"], step.attrs.get("dilation")
    axes = 0
    for env, node in ctx.instances(step):
        sides = node.attrs["padding"]
        axes = len(sides) // 2
        want = [(sides[2 * a], sides[2 * a + 1]) for a in range(axes)]
        same = _same_pads(kernel, dilation, env, axes)
        word = evaluate(p.expr, env)
        got = same if word == "same" else [(0, 0)] * axes
        if got != want or any(a != b for a, b in got):
            raise CodegenError(
                f"{_where(ctx, step)}: padding {word!r} chosen by a parameter resolves to {sides} here, which "
                "Chainer's symmetric pad= cannot express; write the padding as numbers",
                step.pos,
            )
    choice = f"if {show(p.expr)} == 'same' else 0"
    if _all_const(kernel) and (dilation is None or _all_const(dilation)):
        pad = [a for a, _ in _same_pads(kernel, dilation, {}, axes)]
        return f"{pad[0] if len(set(pad)) == 1 else tuple(pad)} {choice}"
    ctx.helpers.add("same_pad")
    dil = "" if _is_one(dilation) else f", {show(dilation)}"
    return f"same_pad({show(kernel)}{dil}) {choice}"


def _same_pads(kernel: E.Expr | tuple, dilation: E.Expr | tuple | None, env: dict, axes: int) -> list[tuple[int, int]]:
    """'same' padding at stride 1, per axis: (before, after)."""
    k = evaluate(kernel, env)
    d = evaluate(dilation, env) if dilation is not None else 1
    ks = k if isinstance(k, tuple) else (k,) * axes
    ds = d if isinstance(d, tuple) else (d,) * axes
    return [((k - 1) * d // 2, (k - 1) * d - (k - 1) * d // 2) for k, d in zip(ks, ds)]


def _all_const(value: E.Expr | tuple) -> bool:
    return all(is_const(v) for v in value) if isinstance(value, tuple) else is_const(value)


def _pad_input(step: Step, ctx: Ctx, inp: str, link: str | None, value: str = "") -> str:
    """Wrap the input in an explicit pad when ``pad=`` cannot say it."""
    p = step.padding
    if not _in_forward(step, ctx):
        return inp
    if link is not None and _pad_link(step, ctx, _LINK_BASE[step.op]) != _LINK_BASE[step.op]:
        return inp  # the link pads
    fill = f", value={value}" if value else ""
    if p.sides is None:  # 'same' resolved differently per instance: pad at run time
        ctx.helpers.add("pad_same")
        if link is not None:
            dil = "" if _is_one(step.attrs.get("dilation")) else f", {link}.dilate"
            return f"pad_same({inp}, {link}.ksize, {link}.stride{dil}{fill})"
        stride = step.attrs.get("stride", step.attrs["kernel"])
        return f"pad_same({inp}, {ctx.runtime(step.attrs['kernel'])}, {ctx.runtime(stride)}{fill})"
    s = p.sides
    widths = ((0, 0), (0, 0), *((s[k], s[k + 1]) for k in range(0, len(s), 2)))
    const = f", constant_values={value}" if value else ""
    return f'F.pad({inp}, {widths}, "constant"{const})'


# The link class of each convolution op (see _pad_link).
_LINK_BASE = {
    "conv2d": "L.Convolution2D",
    "depthwise_conv2d": "L.Convolution2D",
    "conv1d": "L.Convolution1D",
    "separable_conv2d": "SeparableConvolution2D",
}


def _is_one(value: E.Expr | tuple | None) -> bool:
    if value is None:
        return True
    vals = value if isinstance(value, tuple) else (value,)
    return all(is_const(v) and E.evaluate(v, {}) == 1 for v in vals)


# ----------------------------------------------------------------------------
# Per-op rules: the link a step constructs (None: a function call in
# forward) and the expression its forward computes from the input variables.

LinkCtor = Callable[[Step, Ctx], str | None]
Forward = Callable[[Step, Ctx, list[str], str], str]


def _kw(name: str, value: str, default: str) -> list[str]:
    return [] if value == default else [f"{name}={value}"]


def _nobias(step: Step, ctx: Ctx) -> list[str]:
    bias = ctx.expr(step.attrs["bias"])
    if bias == "True":
        return []
    if bias == "False":
        return ["nobias=True"]
    e = step.attrs["bias"]  # Chainer reads nobias for its truth value
    return [f"nobias={ctx.expr(e.operand if isinstance(e, E.Unary) and e.op == 'not' else E.Unary('not', e, 0))}"]


def conv2d(step: Step, ctx: Ctx) -> str:
    args = [ctx.expr(step.in_channels), ctx.expr(step.attrs["out"]), ctx.expr(step.attrs["kernel"])]
    kw = [*_kw("stride", ctx.expr(step.attrs["stride"]), "1"), *_pad_kw(step, ctx, runtime=False)]
    kw += _nobias(step, ctx)
    kw += _kw("dilate", ctx.expr(step.attrs["dilation"]), "1")
    kw += _kw("groups", ctx.expr(step.attrs["groups"]), "1")
    return f"{_pad_link(step, ctx, 'L.Convolution2D')}({', '.join(args + kw)})"


def depthwise_conv2d(step: Step, ctx: Ctx) -> str:
    # A grouped convolution: its W is (in * multiplier, 1, kh, kw), the canonical layout.
    cin = ctx.expr(step.in_channels)
    cout = ctx.expr(mul(step.in_channels, step.attrs["multiplier"]))
    kw = [*_kw("stride", ctx.expr(step.attrs["stride"]), "1"), *_pad_kw(step, ctx, runtime=False)]
    kw += _nobias(step, ctx)
    kw += _kw("dilate", ctx.expr(step.attrs["dilation"]), "1")
    kw.append(f"groups={cin}")
    return f"{_pad_link(step, ctx, 'L.Convolution2D')}({', '.join([cin, cout, ctx.expr(step.attrs['kernel']), *kw])})"


def separable_conv2d(step: Step, ctx: Ctx) -> str:
    ctx.helpers.add("SeparableConvolution2D")
    args = [ctx.expr(step.in_channels), ctx.expr(step.attrs["out"]), ctx.expr(step.attrs["kernel"])]
    kw = [*_kw("stride", ctx.expr(step.attrs["stride"]), "1"), *_pad_kw(step, ctx, runtime=False)]
    kw += _kw("dilate", ctx.expr(step.attrs["dilation"]), "1")
    kw += _kw("multiplier", ctx.expr(step.attrs["multiplier"]), "1")
    kw += _nobias(step, ctx)
    return f"SeparableConvolution2D({', '.join(args + kw)})"


def conv1d(step: Step, ctx: Ctx) -> str:
    args = [ctx.expr(step.in_channels), ctx.expr(step.attrs["out"]), ctx.expr(step.attrs["kernel"])]
    kw = [*_kw("stride", ctx.expr(step.attrs["stride"]), "1"), *_pad_kw(step, ctx, runtime=False)]
    kw += _nobias(step, ctx)
    kw += _kw("dilate", ctx.expr(step.attrs["dilation"]), "1")
    kw += _kw("groups", ctx.expr(step.attrs["groups"]), "1")
    return f"{_pad_link(step, ctx, 'L.Convolution1D')}({', '.join(args + kw)})"


def dense(step: Step, ctx: Ctx) -> str:
    args = [ctx.expr(step.in_channels), ctx.expr(step.attrs["out"])]
    return f"L.Linear({', '.join(args + _nobias(step, ctx))})"


def batch_norm(step: Step, ctx: Ctx) -> str:
    # eps always explicit (Chainer's default is 2e-5); decay = 1 - momentum.
    kw = _kw("decay", common.decay(step.attrs["momentum"], ctx.expr), "0.9")
    args = [ctx.expr(step.in_channels), f"eps={ctx.expr(step.attrs['eps'])}", *kw]
    return f"L.BatchNormalization({', '.join(args)})"


def layer_norm(step: Step, ctx: Ctx) -> str:
    args = [ctx.expr(step.in_channels), f"eps={ctx.expr(step.attrs['eps'])}"]
    if step.in_ranks[0] == 1:
        return f"L.LayerNormalization({', '.join(args)})"
    ctx.helpers.add("ChannelLayerNormalization")
    return f"ChannelLayerNormalization({', '.join(args)})"


def instance_norm(step: Step, ctx: Ctx) -> str | None:
    affine = ctx.expr(step.attrs["affine"])
    if affine == "False":
        return None  # a function: nothing to learn
    if affine != "True":
        raise CodegenError(
            f"{_where(ctx, step)}: instance norm whose affine is chosen by a parameter: Chainer writes a link "
            "where it is true and a function where it is false; give affine as true or false",
            step.pos,
        )
    # Group normalization with one channel per group is instance normalization.
    cin = ctx.expr(step.in_channels)
    return f"L.GroupNormalization({cin}, {cin}, eps={ctx.expr(step.attrs['eps'])})"


def _instance_norm_call(step: Step, ctx: Ctx, ins: list[str], link: str) -> str:
    if ctx.expr(step.attrs["affine"]) == "True":
        return f"{link}({ins[0]})"
    ctx.helpers.add("instance_norm")
    return f"instance_norm({ins[0]}, {ctx.runtime(step.attrs['eps'])})"


def _call(step: Step, ctx: Ctx, ins: list[str], link: str) -> str:
    return f"{link}({ins[0]})"


def _padded_call(step: Step, ctx: Ctx, ins: list[str], link: str) -> str:
    return f"{link}({_pad_input(step, ctx, ins[0], link)})"


def _window_sizes(step: Step, ctx: Ctx, node: Node) -> list[tuple[int, int, int, int, int]]:
    """Per spatial axis of one instance: (padded size, pad per side given to
    Chainer, kernel, stride, IR output size)."""
    out = []
    t, b, left, r = node.attrs["padding"]
    explicit = _in_forward(step, ctx)
    for axis, (before, after) in enumerate(((t, b), (left, r))):
        size = node.in_shapes[0][1 + axis]
        k, s = node.attrs["kernel"][axis], node.attrs["stride"][axis]
        if explicit:
            out.append((size + before + after, 0, k, s, node.shape[1 + axis]))
        else:
            out.append((size, before, k, s, node.shape[1 + axis]))
    return out


def _floor_fits(step: Step, ctx: Ctx) -> bool:
    return all(
        (n + 2 * p - k) // s + 1 == want
        for _, node in ctx.instances(step)
        for n, p, k, s, want in _window_sizes(step, ctx, node)
    )


def _cover_all(step: Step, ctx: Ctx) -> bool | None:
    """Chainer's ``cover_all=True`` pads the end so that every input pixel is
    covered: the output is ceil((n + 2p - k) / s) + 1. That is PyTorch's
    ceil_mode except where PyTorch drops a last window starting in the padding,
    so it is used only where it gives the IR's output size on both axes; None
    when neither it nor rounding down does."""
    ceil = ctx.expr(step.attrs["ceil_mode"])
    if ceil not in ("True", "False"):
        raise CodegenError(
            f"{_where(ctx, step)}: ceil_mode chosen by a parameter: Chainer's cover_all is chosen when the code "
            "is written; give ceil_mode as true or false",
            step.pos,
        )
    if ceil == "True" and all(
        (n + 2 * p - k + s - 1) // s + 1 == want
        for _, node in ctx.instances(step)
        for n, p, k, s, want in _window_sizes(step, ctx, node)
    ):
        return True
    return False if _floor_fits(step, ctx) else None


def _ceil_pads(step: Step, ctx: Ctx) -> tuple[tuple[int, int], ...]:
    """Per-axis (before, after) padding that makes rounding down give the IR's
    ceil_mode size: the end is padded up to the last window PyTorch keeps."""
    widths = set()
    for _, node in ctx.instances(step):
        t, b, left, r = node.attrs["padding"]
        axes = []
        for axis, (before, after) in enumerate(((t, b), (left, r))):
            n, k, s = node.in_shapes[0][1 + axis], node.attrs["kernel"][axis], node.attrs["stride"][axis]
            need = (node.shape[1 + axis] - 1) * s + k
            axes.append((before, max(after, need - n - before)))
        widths.add(tuple(axes))
    if len(widths) != 1:
        raise CodegenError(
            f"{_where(ctx, step)}: a max pooling that Chainer must pad at the end to give the IR's output size "
            "(for ceil_mode or asymmetric padding), by widths that differ between the block's instances; give "
            "it explicit padding that needs no such pad (the same in every instance)",
            step.pos,
        )
    return widths.pop()


def _pool_args(step: Step, ctx: Ctx, inp: str) -> list[str]:
    args = [inp, ctx.runtime(step.attrs["kernel"])]
    if "stride" in step.attrs:
        args.append(f"stride={ctx.runtime(step.attrs['stride'])}")
    return args + _pad_kw(step, ctx, runtime=True)


def max_pool2d(step: Step, ctx: Ctx, ins: list[str], link: str) -> str:
    cover = _cover_all(step, ctx)
    if cover is None:
        # Rounding up on one axis but not the other: pad the ends with -inf up to
        # the windows PyTorch's ceil_mode keeps, and round down.
        widths = ((0, 0), (0, 0), *_ceil_pads(step, ctx))
        inp = f'F.pad({ins[0]}, {widths}, "constant", constant_values=-np.inf)'
        args = [inp, ctx.runtime(step.attrs["kernel"])]
        if "stride" in step.attrs:
            args.append(f"stride={ctx.runtime(step.attrs['stride'])}")
        return f"F.max_pooling_2d({', '.join([*args, 'cover_all=False'])})"
    p = step.padding
    if p is not None and p.mode == "same" and _in_forward(step, ctx) and not cover:
        ctx.helpers |= {"pad_same", "max_pooling_2d_same"}
        stride = step.attrs.get("stride", step.attrs["kernel"])
        return f"max_pooling_2d_same({ins[0]}, {ctx.runtime(step.attrs['kernel'])}, {ctx.runtime(stride)})"
    inp = _pad_input(step, ctx, ins[0], None, "-np.inf")
    return f"F.max_pooling_2d({', '.join([*_pool_args(step, ctx, inp), f'cover_all={cover}'])})"


def avg_pool2d(step: Step, ctx: Ctx, ins: list[str], link: str) -> str:
    where = _where(ctx, step)
    if ctx.expr(step.attrs["ceil_mode"]) != "False" and not _floor_fits(step, ctx):
        raise CodegenError(common.ceil_average("Chainer"), step.pos)
    count_pad = ctx.expr(step.attrs["count_include_pad"])
    padded = step.padding is not None and step.padding.mode != "none"
    if count_pad == "True" or not padded:
        # Chainer's average pooling counts padded zeros, as does an explicit zero pad.
        inp = _pad_input(step, ctx, ins[0], None)
        return f"F.average_pooling_2d({', '.join(_pool_args(step, ctx, inp))})"
    if count_pad != "False":
        raise CodegenError(
            f"{where}: count_include_pad chosen by a parameter: Chainer writes each choice as another function; "
            "give it as true or false",
            step.pos,
        )
    if _in_forward(step, ctx):
        raise CodegenError(
            f"{where}: average pooling that leaves the padded zeros out of the average needs symmetric padding "
            "in Chainer (F.average_pooling_nd's pad_value=None; a pad before it would count them); pad "
            "symmetrically, or count the padded zeros (count_include_pad: true)",
            step.pos,
        )
    return f"F.average_pooling_nd({', '.join([*_pool_args(step, ctx, ins[0]), 'pad_value=None'])})"


def _global_pool(fn: str) -> Forward:
    def call(step: Step, ctx: Ctx, ins: list[str], link: str) -> str:
        axes = "(2, 3)" if step.in_ranks[0] == 3 else "2"
        keep = ctx.expr(step.attrs["keepdims"])
        if keep not in ("True", "False"):
            raise CodegenError(
                f"{_where(ctx, step)}: keepdims chosen by a parameter: Chainer's call is written with one "
                "choice; give keepdims as true or false",
                step.pos,
            )
        return f"F.{fn}({ins[0]}, axis={axes}{', keepdims=True' if keep == 'True' else ''})"

    return call


def lrn(step: Step, ctx: Ctx, ins: list[str], link: str) -> str:
    # Chainer's n and alpha are the IR's: a window of n channels, alpha not divided by n.
    a = step.attrs
    kw = [f"n={ctx.runtime(a['size'])}", f"k={ctx.runtime(a['k'])}"]
    kw += [f"alpha={ctx.runtime(a['alpha'])}", f"beta={ctx.runtime(a['beta'])}"]
    return f"F.local_response_normalization({', '.join([ins[0], *kw])})"


def dropout(step: Step, ctx: Ctx, ins: list[str], link: str) -> str:
    return f"F.dropout({ins[0]}, ratio={ctx.runtime(step.attrs['rate'])})"


def leaky_relu(step: Step, ctx: Ctx, ins: list[str], link: str) -> str:
    return f"F.leaky_relu({ins[0]}, slope={ctx.runtime(step.attrs['negative_slope'])})"


def _fn(template: str) -> Forward:
    return lambda step, ctx, ins, link: template.format(x=ins[0])


def _multiply(step: Step, ctx: Ctx, ins: list[str], link: str) -> str:
    """Element-wise product; a channel vector (C,) or (C, 1, 1) is broadcast
    over the other input explicitly (SE's rescale)."""
    shapes = {node.in_shapes for _, node in ctx.instances(step)}
    if all(a == b for a, b in shapes):
        return f"{ins[0]} * {ins[1]}"
    # Which input is the channel vector: the one of lower rank, or of size 1 in space.
    vector = {1 if (len(b), b) < (len(a), a) else 0 for a, b in shapes}
    if len(vector) != 1:
        raise CodegenError(
            f"{_where(ctx, step)}: a multiply whose channel vector is one input in some of the block's instances "
            "and the other in others: Chainer broadcasts it explicitly, so it must be the same input in each",
            step.pos,
        )
    k = vector.pop()
    full, vec = ins[1 - k], ins[k]
    missing = step.in_ranks[1 - k] - step.in_ranks[k]
    if missing:
        vec = f"F.reshape({vec}, {vec}.shape + {(1,) * missing})"
    broadcast = f"F.broadcast_to({vec}, {full}.shape)"
    return f"{full} * {broadcast}" if k == 1 else f"{broadcast} * {full}"


def zero_pad2d(step: Step, ctx: Ctx, ins: list[str], link: str) -> str:
    p = step.padding
    if p is None or p.sides is None:
        raise CodegenError(f"{_where(ctx, step)}: {common.VARYING_ZERO_PAD}", step.pos)
    t, b, left, r = p.sides
    return f'F.pad({ins[0]}, ((0, 0), (0, 0), ({t}, {b}), ({left}, {r})), "constant")'


def channel_shuffle(step: Step, ctx: Ctx, ins: list[str], link: str) -> str:
    ctx.helpers.add("channel_shuffle")
    return f"channel_shuffle({ins[0]}, {ctx.runtime(step.attrs['groups'])})"


def conv_transpose2d(step: Step, ctx: Ctx) -> str:
    """L.Deconvolution2D: PyTorch's ConvTranspose2d, W (in, out, kh, kw) as the canonical
    weight. output_padding has no keyword: the output size (outsize) says it, for the
    spec's input size."""
    args = [ctx.expr(step.in_channels), ctx.expr(step.attrs["out"]), ctx.expr(step.attrs["kernel"])]
    kw = [*_kw("stride", ctx.expr(step.attrs["stride"]), "1"), *_kw("pad", ctx.expr(step.attrs["padding"]), "0")]
    kw += _nobias(step, ctx)
    if ctx.expr(step.attrs["output_padding"]) != "0":
        sizes = {node.shape[1:] for _, node in ctx.instances(step)}
        if len(sizes) != 1:
            raise CodegenError(
                f"{_where(ctx, step)}: output_padding on a transposed convolution whose output size differs "
                "between the block's instances: Chainer states it as the output size (outsize), which must be the "
                "same in each; make it so, or drop output_padding",
                step.pos,
            )
        kw.append(f"outsize={sizes.pop()}")
    return f"L.Deconvolution2D({', '.join(args + kw)})"


def _helper(name: str, template: str) -> Forward:
    def call(step: Step, ctx: Ctx, ins: list[str], link: str) -> str:
        ctx.helpers.add(name)
        return template.format(x=ins[0], **{k: ctx.runtime(v) for k, v in step.attrs.items()})

    return call


def gelu(step: Step, ctx: Ctx, ins: list[str], link: str) -> str:
    ctx.helpers.add("gelu")
    tanh = ctx.expr(step.attrs["approximate"]) == "'tanh'" or ctx.expr(step.attrs["approximate"]) == '"tanh"'
    return f"gelu({ins[0]}, approximate=True)" if tanh else f"gelu({ins[0]})"


def upsample(step: Step, ctx: Ctx, ins: list[str], link: str) -> str:
    """Nearest: F.unpooling_2d copies each pixel into a scale x scale square; bilinear: a
    helper (Chainer's F.resize_images puts the corners on the corners, align_corners=True)."""
    scale = ctx.runtime(step.attrs["scale"])
    if ctx.expr(step.attrs["mode"]) in ("'bilinear'", '"bilinear"'):
        ctx.helpers.add("upsample_bilinear")
        return f"upsample_bilinear({ins[0]}, {scale})"
    return f"F.unpooling_2d({ins[0]}, {scale}, cover_all=False)"


def _slice(step: Step, ctx: Ctx, ins: list[str], link: str) -> str:
    start = ctx.runtime(step.attrs["start"])
    return f"{ins[0]}[:, {'' if start == '0' else start}:{ctx.runtime(step.attrs['stop'])}]"


def layer_scale(step: Step, ctx: Ctx) -> str:
    ctx.helpers.add("LayerScale")
    return f"LayerScale({', '.join([ctx.expr(step.in_channels), *_kw('init', ctx.expr(step.attrs['init']), '1.0')])})"


@dataclass(frozen=True)
class Rule:
    link: LinkCtor | None
    forward: Forward = _call


OPS: dict[str, Rule] = {
    "conv2d": Rule(conv2d, _padded_call),
    "depthwise_conv2d": Rule(depthwise_conv2d, _padded_call),
    "separable_conv2d": Rule(separable_conv2d, _padded_call),
    "conv1d": Rule(conv1d, _padded_call),
    "dense": Rule(dense),
    "max_pool2d": Rule(None, max_pool2d),
    "avg_pool2d": Rule(None, avg_pool2d),
    "global_avg_pool": Rule(None, _global_pool("mean")),
    "global_max_pool": Rule(None, _global_pool("max")),
    "batch_norm": Rule(batch_norm),
    "layer_norm": Rule(layer_norm),
    "instance_norm": Rule(instance_norm, _instance_norm_call),
    "lrn": Rule(None, lrn),
    "dropout": Rule(None, dropout),
    "relu": Rule(None, _fn("F.relu({x})")),
    "relu6": Rule(None, _fn("F.clipped_relu({x}, 6.0)")),
    "leaky_relu": Rule(None, leaky_relu),
    "sigmoid": Rule(None, _fn("F.sigmoid({x})")),
    "tanh": Rule(None, _fn("F.tanh({x})")),
    "silu": Rule(None, _fn("{x} * F.sigmoid({x})")),
    "hard_swish": Rule(None, _fn("{x} * F.clipped_relu({x} + 3, 6.0) / 6")),
    "softmax": Rule(None, _fn("F.softmax({x}, axis=1)")),
    "hard_sigmoid": Rule(None, _fn("F.clipped_relu({x} + 3, 6.0) / 6")),
    "gelu": Rule(None, gelu),
    "drop_path": Rule(None, _helper("drop_path", "drop_path({x}, {rate})")),
    "scale": Rule(layer_scale),
    "slice": Rule(None, _slice),
    "upsample": Rule(None, upsample),
    "conv_transpose2d": Rule(conv_transpose2d),
    "flatten": Rule(None, _fn("F.reshape({x}, ({x}.shape[0], -1))")),
    "add": Rule(None, lambda step, ctx, ins, link: _add(step, ins)),
    "concat": Rule(None, lambda step, ctx, ins, link: f"F.concat({common.items(step, ins)}, axis=1)"),
    "multiply": Rule(None, _multiply),
    "channel_shuffle": Rule(None, channel_shuffle),
    "zero_pad2d": Rule(None, zero_pad2d),
}


# ----------------------------------------------------------------------------
# Classes


@dataclass
class ClassCode:
    name: str
    doc: str
    signature: str
    links: list[str]  # lines inside ``with self.init_scope():``
    init: list[str]  # plain attributes, after it
    forward: list[str]
    returns: str
    lets: list[str]  # sizes the block names once, before the links
    # A sequential block: a ``chainer.ChainList`` of ``links`` (unnamed: 0, 1, ...)
    # whose forward calls them in order.
    sequential: bool = False


def sequential_code(unit: Unit, ctx: Ctx, stage_blocks: set[str]) -> ClassCode:
    """A sequential block as a ``chainer.ChainList`` of its links, named 0, 1, ...
    (the IR paths of its layers), called in order."""
    ctx.unit = unit
    ctx.stored = {}
    links = []
    for step in unit.steps:
        with common.gathered(ctx.limits):
            link = OPS[step.op].link(step, ctx) if OPS[step.op].link else None
            if link is None or ctx.stored or OPS[step.op].forward(step, ctx, ["x"], "link") != "link(x)":
                raise CodegenError(f"{unit.name}.{step.name}: a {step.op} that Chainer cannot write as one link")
            links.append(link)
    init = [f"self.out_channels = {ctx.expr(unit.out_channels)}"] if unit.name in stage_blocks else []
    doc = common.docstring(unit.doc, indent="    ")
    lets = [f"{lname} = {ctx.printer.expr(e)}" for lname, e in unit.lets]
    return ClassCode(unit.class_name, doc, common.signature(unit), links, init, [], "", lets, sequential=True)


def unit_code(unit: Unit, ctx: Ctx, stage_blocks: set[str]) -> ClassCode:
    if unit.sequential:
        return sequential_code(unit, ctx, stage_blocks)
    ctx.unit = unit
    ctx.stored = {}
    # The links first: their names are taken before forward stores any argument.
    ctors: list[str | None] = [None] * len(unit.steps)
    for k, step in enumerate(unit.steps):
        with common.gathered(ctx.limits):
            if step.unit is not None:
                ctors[k] = _block_ctor(step, ctx)
            elif OPS[step.op].link:
                ctors[k] = OPS[step.op].link(step, ctx)
    ctx.taken = {s.name for s, c in zip(unit.steps, ctors) if c} | {s.flag for s in unit.steps}
    var = _local_names(unit)
    links: list[str] = []
    flags: list[str] = []
    forward: list[str] = []
    comments = common.shape_comments(unit, TARGET)
    pending = comments[0]  # a step's shape comment follows its lines
    tables = common.stage_tables(
        unit,
        ctx.model,
        ctx.printer,
        lambda st: len(f"self.{st.name} = {_block_ctor(st, ctx)}") + 12 > 120,
        lambda var, fn, args, name: [f"{var} = {fn}({', '.join(args)})", f"setattr(self, {name}, {var})"],
        min_run=5,  # as PyTorch
    )
    for step, ctor, after in zip(unit.steps, ctors, comments[1:]):
        with common.gathered(ctx.limits):
            forward += pending
            pending = after
            attr = f"self.{step.name}"
            cond = ctx.printer.expr(step.cond, outer=1) if step.cond is not None else None
            ins, out = [var(v) for v in step.inputs], var(step.output)
            if step.name in tables:  # built by its table's loop, under its own name (a weight key)
                links += tables[step.name]
                forward += common.assign(out, f"{attr}({ins[0]})", None, var(step.stand_in), step.is_output)
                continue
            if step.unit is not None and (step.unpacks or step.collect):
                if cond:  # pragma: no cover - the spec's checks refuse 'when' on such a block
                    raise CodegenError(f"{step.name}: a block with several outputs under a condition")
                links.append(f"{attr} = {ctor}")
                named = replace(
                    step,
                    inputs=ins,
                    output=out,
                    side_outputs=[var(v) for v in step.side_outputs],
                    collect=[(var(a), var(b)) for a, b in step.collect],
                )
                if step.units is None:
                    forward.append(common.unit_outputs(named, f"{attr}({ins[0]})"))
                else:
                    forward += common.run_units(named, f"block in {attr}", lambda x: f"block({x})")
                continue
            if ctor is not None:
                links.append(f"{attr} = {ctor} if {cond} else None" if cond else f"{attr} = {ctor}")
                call = f"{attr}({ins[0]})" if step.unit is not None else OPS[step.op].forward(step, ctx, ins, attr)
                present = f"{attr} is not None"
            else:
                if cond:
                    flags.append(f"self.{step.flag} = {cond}")
                call = OPS[step.op].forward(step, ctx, ins, attr)
                present = f"self.{step.flag}"
            is_output = unit.is_model and step.is_output
            skip = ctx.runtime(E.Name(LOGITS, 0)) if step.logits_switch else None
            forward += common.assign(out, call, present if cond else None, var(step.stand_in), is_output, skip)
    init = [f"self.{attr} = {arg}" for arg, attr in ctx.stored.items()] + flags
    if unit.name in stage_blocks:
        init.append(f"self.out_channels = {ctx.expr(unit.out_channels)}")
    forward += pending
    outs = [var(v) for v in unit.output_vars]
    forward.append(f"return {', '.join(outs)}")
    returns = "chainer.Variable" if len(outs) == 1 else f"tuple[{', '.join(['chainer.Variable'] * len(outs))}]"
    doc = common.model_doc(ctx.model) if unit.is_model else common.docstring(unit.doc, indent="    ")
    lets = [f"{lname} = {ctx.printer.expr(e)}" for lname, e in unit.lets]
    return ClassCode(unit.class_name, doc, common.signature(unit), links, init, forward, returns, lets)


def _local_names(unit: Unit) -> Callable[[str], str]:
    """Forward's variable names, with a trailing underscore where a node's name
    would shadow a module-level name that forward reads (``F``, a helper)."""
    used = {v for s in unit.steps for v in [s.output, *s.inputs, *s.side_outputs, *(a for a, _ in s.collect)]}
    rename: dict[str, str] = {}
    for v in sorted(used & _MODULE_NAMES):
        new = f"{v}_"
        while new in used or new in rename.values():
            new += "_"
        rename[v] = new
    return lambda v: rename.get(v, v)


def _add(step: Step, ins: list[str]) -> str:
    if not any(step.starred):
        return " + ".join(ins)
    return f"F.add({', '.join(f'*{v}' if star else v for v, star in zip(ins, step.starred))})"


def _block_ctor(step: Step, ctx: Ctx) -> str:
    cin = ctx.expr(step.in_channels)
    kwargs = [f"{k}={ctx.expr(v)}" for k, v in step.attrs.items()]
    if step.units is None:
        return f"{step.unit}({', '.join([cin, *kwargs])})"
    units = ctx.expr(step.units)
    if step.varies_with_i:
        cin = ctx.expr(step.unit_in_channels or step.in_channels)
    if step.varies_with_i and (step.unpacks or step.collect):  # run unit by unit in forward: a list
        return f"chainer.ChainList(*[{step.unit}({', '.join([cin, *kwargs])}) for i in range({units})])"
    ctx.helpers.add("Stage")
    if step.varies_with_i:
        return f"Stage(*[{step.unit}({', '.join([cin, *kwargs])}) for i in range({units})])"
    ctx.helpers.add("make_stage")
    first = [f"{k}={ctx.expr(v)}" for k, v in step.first.items()]
    extra = [f"first=dict({', '.join(first)})"] if first else []
    return f"make_stage({', '.join([step.unit, cin, units, *kwargs, *extra])})"


def _uses(classes: list[ClassCode], helpers: set[str], needs: set[str]) -> set[str]:
    text = "\n".join(line for c in classes for line in [*c.links, *c.init, *c.forward])
    used = {mod for mod in ("F", "L", "math") if re.search(rf"\b{mod}\.", text)}
    for h in helpers:
        used |= _HELPER_USES[h]
    return used | ({"math"} & needs)


def emit(model: CodeModel) -> str:
    missing = model.ops_used - set(OPS)
    if missing:  # pragma: no cover - the coverage test keeps OPS complete
        raise CodegenError(f"chainer: no rule for ops {sorted(missing)}")
    nodes = {n.path: n for n in model.compiled.graph.nodes}
    ctx = Ctx(common.Printer(), model, nodes)
    classes = [unit_code(u, ctx, model.stage_blocks) for u in model.units]
    common.refuse(ctx.limits)
    clash = {c.name for c in classes} & _MODULE_NAMES
    if clash:
        raise CodegenError(
            f"chainer: block class {sorted(clash)[0]} would shadow a name the file needs; rename the block"
        )
    uses = _uses(classes, ctx.helpers, ctx.printer.needs)
    source = render_template(
        "chainer.py.j2",
        header=common.header(model, TARGET),
        module_doc=common.module_doc(model, "Chainer", "chainer"),
        classes=classes,
        helpers=ctx.helpers,
        needs=ctx.printer.needs,
        uses=uses,
        weights=_weight_kinds(model),
    )
    return common.unique_names(source, model, TARGET)


def _weight_kinds(model: CodeModel) -> set[str]:
    """What the header's weight-name key must explain: "norm" (gamma, beta),
    "batch_norm" (the running statistics)."""
    ops = model.ops_used
    return ({"norm"} if ops & {"batch_norm", "layer_norm", "instance_norm"} else set()) | (ops & {"batch_norm"})
