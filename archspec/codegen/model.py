"""The code model: what every target writes, decided once.

The emitters write one class (or function) per block the spec defines, and
one for the network, so that the generated code mirrors the spec instead of
unrolling it. This module turns a compiled spec into that structure, target
independent:

* each block becomes a :class:`Unit` with constructor arguments (``in_channels``
  first, then the block's parameters, then the spec parameters it reads),
* each node of the block becomes a :class:`Step` whose attributes are
  expressions over those arguments (``width * 4``, ``stride``), and whose input
  channel count is tracked symbolically from ``in_channels``,
* ``when`` becomes a condition, and the forward data flow gets variable names,
* a softmax that gives a network output (:func:`logits_outputs`) takes the
  ``logits`` switch: built with ``logits=True``, the network returns that
  softmax's input (the blocks on the way pass the switch down).

Every expression is then *verified* against the expanded IR: evaluated with
the arguments of each instance of the block, it must give exactly the value
the IR resolved (attributes, input channels). Generated code that disagrees
with the IR is a bug in archspec and is refused with :class:`CodegenError`,
never written.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any

from archspec import ops
from archspec.diagnostics import Pos, SpecError
from archspec.ir import INPUT, Graph, Instance, Node
from archspec.names import GLOBAL_NAMES
from archspec.passes.count import count
from archspec.passes.expand import expand
from archspec.pipeline import Compiled
from archspec.schema import expr as E
from archspec.schema.spec import BlockDef, NodeDef, Value

# Channel counts are written as expressions over a unit's arguments
# (``in_channels + growth_rate``). One that grows past this many nodes (a long
# stage or concatenation that adds to ``in_channels`` unit by unit) is written
# as its value instead, which must then be the same in every instance.
MAX_CHANNEL_TERMS = 64

# The constructor argument that makes a network return the values before its
# final softmax (what training's cross-entropy on logits needs).
LOGITS = "logits"

# Op attributes that size a weight: a spec parameter they read is written in as
# its value (unless it is an ``option``).
SIZING_ATTRS = ("out", "multiplier", "groups")


class CodegenError(Exception):
    """The code model cannot express the IR faithfully (an archspec bug or an
    unsupported construct); nothing is written. ``pos``: where the spec writes
    an unsupported construct (validate reports it there); None for a bug."""

    def __init__(self, message: str, pos: Pos | None = None) -> None:
        super().__init__(message)
        self.pos = pos

    @property
    def located(self) -> list[CodegenError]:
        """The spec's faults it reports (each with a ``pos``); none for a bug."""
        return [self] if self.pos is not None else []


class Limits(CodegenError):
    """Every construct of the spec that one emitter cannot write (located
    CodegenErrors, met step by step), so that validate reports them at once."""

    def __init__(self, errors: list[CodegenError]) -> None:
        super().__init__("; ".join(map(str, errors)), errors[0].pos)
        self.errors = errors

    @property
    def located(self) -> list[CodegenError]:
        return self.errors


@dataclass(frozen=True)
class Arg:
    name: str
    type: str
    default: Any = ops.REQUIRED  # REQUIRED: no default


@dataclass
class Padding:
    """How a node pads: ``mode`` is "explicit" (``sides`` the per-side values,
    equal in every instance, or ``expr`` when they vary but stay symmetric),
    "same"/"causal"/"valid" (the spec's keyword; ``sides`` is the resolved value
    when every instance resolves alike, else None), "keyword" (``expr`` is a
    parameter that names 'same' or 'valid' per instance, every 'same' at
    stride 1), or "none"."""

    mode: str
    sides: tuple[int, ...] | None
    expr: E.Expr | tuple | None = None  # symmetric padding as an expression, or (h, w)


@dataclass
class Step:
    name: str  # attribute name; the IR path component
    op: str | None  # op name, for op nodes
    unit: str | None  # class name of the block, for block nodes
    attrs: dict[str, E.Expr]  # op attributes (resolved), or block arguments
    first: dict[str, E.Expr]  # first-unit overrides of a stage
    units: E.Expr | None  # repeat count of a stage
    in_channels: E.Expr  # channel count of the first input
    in_shape: tuple[int, ...] | None  # input shape when equal in every instance
    out_shape: tuple[int, ...] | None  # output shape when equal in every instance
    inputs: list[str]  # variable names
    output: str  # variable name
    cond: E.Expr | None  # None: always present
    padding: Padding | None = None
    varies_with_i: bool = False  # a stage whose arguments use the unit index i
    in_ranks: tuple[int, ...] = ()  # rank of each input (per sample)
    # Per input: a list of values (``stage.*.skip``, every unit's), spliced in.
    starred: tuple[bool, ...] = ()
    # A block with several outputs: the variable of each output after the
    # first ("_" where nothing reads it); for a stage, those of one unit.
    side_outputs: list[str] = field(default_factory=list)
    # Stages: (list variable, variable of one unit's output it collects).
    collect: list[tuple[str, str]] = field(default_factory=list)
    # The attribute that holds a condition a step's own attribute cannot
    # (``self.use_relu = not last``); never another step's name.
    flag: str = ""
    # A stage whose arguments use i is built in one loop over i: the input
    # channels of unit i (``in_channels if i == 0 else width``); None where
    # every unit takes in_channels.
    unit_in_channels: E.Expr | None = None
    # A softmax that gives a network output: left out (its value is its input)
    # when the unit is built with logits=True. A block step that leads to one
    # passes the switch on instead (``attrs["logits"]``).
    logits_switch: bool = False
    # The step gives an output of its unit (a network output: None when switched off).
    is_output: bool = False
    # The variable a conditional step stands for where it is left out, when a
    # conditional input names it (``{if: project, then: downsample, else:
    # input}``); "" for its first input.
    otherwise: str = ""
    # Where the spec writes the node (what an emitter's limit is reported at).
    pos: Pos | None = None

    @property
    def stand_in(self) -> str:
        """The variable a conditional step's output holds where it is left out."""
        return self.otherwise or self.inputs[0]

    @property
    def unpacks(self) -> bool:
        """The block returns a tuple: its call is unpacked (``x, skip = ...``)."""
        return bool(self.side_outputs)


@dataclass
class Unit:
    """A generated class: a block, or the network itself (``is_model``)."""

    name: str  # block name (snake_case) or spec name
    class_name: str
    args: list[Arg]
    steps: list[Step]
    output_vars: list[str]  # a block's declared outputs (the first its value), or the network's
    out_channels: E.Expr  # of the first output
    doc: str
    is_model: bool = False
    output_channels: list[E.Expr] = field(default_factory=list)  # of each declared output
    # The attribute that keeps the logits switch for forward (PyTorch,
    # TensorFlow), when a step of the unit takes it; "" when none does.
    logits_attr: str = ""
    # Sizes the block names once (the spec's ``let``), written first in its
    # constructor: ``width = int(planes * (base_width / 64.0)) * groups``.
    lets: list[tuple[str, E.Expr]] = field(default_factory=list)
    # A chain of unnamed layers (the spec's ``sequential: true``), written as the
    # target's sequential container: its steps are named "0", "1", ...
    sequential: bool = False

    @property
    def defaults(self) -> dict[str, E.Expr]:
        """The optional arguments' defaults, as expressions."""
        return {a.name: literal(a.default) for a in self.args if a.default is not ops.REQUIRED}


@dataclass
class CodeModel:
    compiled: Compiled  # what the code is written from
    units: list[Unit]  # blocks in dependency order, the model last
    # The build the constructor's defaults describe, where it is not ``compiled``:
    # a head switched off by default (``aux_logits: false``) is written from a
    # build with it on, so that the switch is a real argument.
    built: Compiled | None = None

    @property
    def defaults(self) -> Compiled:
        """The build that the generated network's default arguments make."""
        return self.built or self.compiled

    @property
    def model(self) -> Unit:
        return self.units[-1]

    @property
    def stage_blocks(self) -> set[str]:
        """Blocks that a make_stage helper chains, reading each unit's
        ``out_channels`` (a stage whose arguments use i is built in one loop
        and reads none)."""
        names = {u.class_name: u.name for u in self.units}
        return {
            names[s.unit] for u in self.units for s in u.steps if s.unit and s.units is not None and not s.varies_with_i
        }

    @property
    def ops_used(self) -> set[str]:
        return {s.op for u in self.units for s in u.steps if s.op}

    @property
    def has_logits_switch(self) -> bool:
        """The network class takes ``logits`` (see :func:`has_logits_switch`)."""
        return any(a.name == LOGITS for a in self.model.args)


def logits_outputs(graph: Graph) -> list[str]:
    """The network outputs (node paths) that ``logits=True`` returns the input
    of: outputs that a softmax produces, which no node reads and no stage holds
    (the units of a stage share one constructor call)."""
    read = {i for n in graph.nodes for i in n.inputs}
    units = {inst.path for inst in graph.instances if inst.index is not None}
    out = []
    for path in dict.fromkeys(graph.outputs):
        if path == INPUT or graph.node(path).op != "softmax" or path in read:
            continue
        parts = path.split(".")
        if not any(".".join(parts[:k]) in units for k in range(1, len(parts))):
            out.append(path)
    return out


def has_logits_switch(graph: Graph) -> bool:
    """Whether the generated network takes ``logits`` (a softmax gives an output),
    so that training can build it with ``logits=True``; networks without one
    return their logits already."""
    return bool(logits_outputs(graph))


# How the anchors (the papers, torchvision, keras.applications) write the
# words that are not plain capitalized English: acronyms and coined names.
_WORDS = {
    "400mf": "400MF",
    "alexnet": "AlexNet",
    "bn": "BN",
    "cn": "CN",
    "convnext": "ConvNeXt",
    "densenet": "DenseNet",
    "efficientnet": "EfficientNet",
    "fc": "FC",
    "gap": "GAP",
    "googlenet": "GoogLeNet",
    "lenet": "LeNet",
    "lrn": "LRN",
    "mbconv": "MBConv",
    "mlpconv": "MLPConv",
    "mnasnet": "MNASNet",
    "mobilenet": "MobileNet",
    "nin": "NIN",
    "preact": "PreAct",
    "relu": "ReLU",
    "regnet": "RegNet",
    "resnet": "ResNet",
    "resnext": "ResNeXt",
    "se": "SE",
    "shufflenet": "ShuffleNet",
    "silu": "SiLU",
    "squeezenet": "SqueezeNet",
    "vgg": "VGG",
    "wavenet": "WaveNet",
    "xception": "Xception",
    "zfnet": "ZFNet",
}


def class_name(name: str) -> str:
    """The class of a block or network: each ``_``-separated word capitalized,
    or written as the anchors write it (``conv_bn_silu`` -> ``ConvBNSiLU``,
    ``mbconv`` -> ``MBConv``, ``resnet50`` -> ``ResNet50``), a word's trailing
    digits kept. Where a word starting with a digit follows one ending in one,
    the underscore stays, as in torchvision's function names, so that the
    numbers stay apart: ``squeezenet1_1`` -> ``SqueezeNet1_1``,
    ``shufflenet_v2_x1_0`` -> ``ShuffleNetV2X1_0`` (not ``SqueezeNet11``)."""
    out = ""
    for part in name.split("_"):
        head = part.rstrip("0123456789")
        word = _WORDS.get(head, head.capitalize()) + part[len(head) :]
        out += "_" + word if out[-1:].isdigit() and word[:1].isdigit() else word
    return out


# ----------------------------------------------------------------------------
# Expression helpers


def flat_size(shape: tuple[int, ...]) -> E.Expr:
    """The length of a flattened (C, H, W) tensor written as the product of
    its shape, as torchvision writes it: ``256 * 6 * 6``, not ``9216``; a
    (C, 1, 1) tensor is C long."""
    out = num(shape[0])
    if all(n == 1 for n in shape[1:]):
        return out
    for n in shape[1:]:
        out = E.Binary("*", out, num(n), 0)
    return out


def num(v: int | float | bool) -> E.Expr:
    return E.Num(v, 0)


def name(n: str) -> E.Expr:
    return E.Name(n, 0)


def larger_than(e: E.Expr, n: int) -> bool:
    """Whether ``e`` has more than ``n`` nodes (walking at most ``n + 1`` of them)."""
    return next(islice(E.walk(e), n, None), None) is not None


def is_const(e: E.Expr) -> bool:
    return not E.free_names(e)


def const_value(e: E.Expr) -> Any:
    return E.evaluate(e, {})


def add(a: E.Expr, b: E.Expr) -> E.Expr:
    if is_const(a) and is_const(b):
        return num(const_value(a) + const_value(b))
    return E.Binary("+", a, b, 0)


def mul(a: E.Expr, b: E.Expr) -> E.Expr:
    if is_const(b) and const_value(b) == 1:
        return a
    if is_const(a) and is_const(b):
        return num(const_value(a) * const_value(b))
    return E.Binary("*", a, b, 0)


def substitute(e: E.Expr, env: dict[str, E.Expr]) -> E.Expr:
    """Replace names by expressions (a callee's arguments by the caller's)."""
    if isinstance(e, E.Name):
        return env.get(e.id, e)
    if isinstance(e, E.Unary):
        return E.Unary(e.op, substitute(e.operand, env), 0)
    if isinstance(e, E.Binary):
        return E.Binary(e.op, substitute(e.left, env), substitute(e.right, env), 0)
    if isinstance(e, E.Compare):
        return E.Compare(substitute(e.first, env), tuple((op, substitute(r, env)) for op, r in e.rest), 0)
    if isinstance(e, E.IfElse):
        return E.IfElse(substitute(e.cond, env), substitute(e.then, env), substitute(e.other, env), 0)
    if isinstance(e, E.Call):
        return E.Call(e.func, tuple(substitute(a, env) for a in e.args), 0)
    return e


def fold(e: E.Expr) -> E.Expr:
    """Evaluate constant sub-expressions: ``64 * 4`` -> ``256``, ``x if True else
    y`` -> ``x``. A constant
    part that cannot be evaluated (``1 // 0`` in a branch no instance takes)
    is left as written. One pass, bottom up: linear in the expression's size."""
    return _fold(e)[0]


def _fold(e: E.Expr) -> tuple[E.Expr, bool]:
    """``(folded, constant)``: constant when the expression reads no name."""
    if isinstance(e, (E.Num, E.Str)):
        return e, True
    if isinstance(e, E.Name):
        return e, False
    if isinstance(e, E.Unary):
        operand, const = _fold(e.operand)
        out: E.Expr = E.Unary(e.op, operand, 0)
        parts: tuple[bool, ...] = (const,)
    elif isinstance(e, E.Binary):
        (left, lc), (right, rc) = _fold(e.left), _fold(e.right)
        out, parts = E.Binary(e.op, left, right, 0), (lc, rc)
    elif isinstance(e, E.Compare):
        first = _fold(e.first)
        rest = [(op, _fold(r)) for op, r in e.rest]
        out = E.Compare(first[0], tuple((op, r) for op, (r, _) in rest), 0)
        parts = (first[1], *(c for _, (_, c) in rest))
    elif isinstance(e, E.IfElse):
        (cond, cc), (then, tc), (other, oc) = _fold(e.cond), _fold(e.then), _fold(e.other)
        if cc:  # a convention written in: ``stride if True else 1`` -> ``stride``
            try:
                return (then, tc) if const_value(cond) else (other, oc)
            except E.ExprError:
                pass
        out, parts = E.IfElse(cond, then, other, 0), (cc, tc, oc)
    elif isinstance(e, E.Call):
        args = [_fold(a) for a in e.args]
        out, parts = E.Call(e.func, tuple(a for a, _ in args), 0), tuple(c for _, c in args)
    else:  # pragma: no cover
        return e, is_const(e)
    if not all(parts):
        return out, False
    try:
        v = const_value(out)
    except E.ExprError:
        return out, True
    return (num(v) if isinstance(v, (int, float, bool)) else out), True


def literal(v: Any) -> E.Expr:
    """A resolved IR value as an expression (tuples stay tuples via Call-free
    printing in the emitters: they are handled by :func:`source`)."""
    return num(v) if not isinstance(v, str) else E.Str(v, 0)


def source(e: E.Expr | tuple) -> str:
    """Python source of an expression or a tuple of expressions."""
    if isinstance(e, tuple):
        return "(" + ", ".join(source(x) for x in e) + ("," if len(e) == 1 else "") + ")"
    return E.to_source(e)


def evaluate(e: E.Expr | tuple, env: dict[str, Any]) -> Any:
    if isinstance(e, tuple):
        return tuple(evaluate(x, env) for x in e)
    return E.evaluate(e, env)


# ----------------------------------------------------------------------------
# Building the model


def build(compiled: Compiled) -> CodeModel:
    """The code model of a compiled spec. A network-level switch that is off in
    this build (a node with ``when: aux_logits``, aux_logits false) is written
    from the build with it on, its default kept: the constructor takes it, as
    torchvision's ``InceptionV3(aux_logits=...)`` does. Where that build does
    not compile (an auxiliary head too big for a small ``--input``), the
    switch stays out of the file."""
    on = _switched_on(compiled)
    if on is None:
        return _Builder(compiled).run()
    model = _Builder(on).run()
    defaults = compiled.graph.params
    model.model.args = [replace(a, default=defaults[a.name]) if a.name in defaults else a for a in model.model.args]
    model.built = compiled
    return model


def _switched_on(compiled: Compiled) -> Compiled | None:
    """``compiled`` built again with its network-level switches that are off
    turned on, or None when there is none (or that build fails)."""
    spec, graph = compiled.spec, compiled.graph
    off = {
        nd.when.expr.id
        for nd in spec.layers
        if nd.when is not None
        and isinstance(nd.when.expr, E.Name)
        and spec.params.get(nd.when.expr.id) is not None
        and spec.params[nd.when.expr.id].type == "bool"
        and graph.params[nd.when.expr.id] is False
    }
    if not off:
        return None
    overrides = {k: _override_text(True if k in off else v) for k, v in graph.params.items()}
    try:
        on = expand(spec, overrides, graph.input_shape)
    except SpecError:
        return None
    return Compiled(spec, on, count(on))


def _override_text(value: Any) -> str:
    """A parameter's value as ``--set`` writes it."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class _Builder:
    def __init__(self, compiled: Compiled) -> None:
        self.c = compiled
        self.spec = compiled.spec
        self.graph = compiled.graph
        self.nodes = {n.path: n for n in self.graph.nodes}
        self.instance_at = {i.path: i for i in self.graph.instances}
        # Instances of each block (units of stages and plain uses), in order.
        self.instances: dict[str, list[Instance]] = {}
        for inst in self.graph.instances:
            if not inst.units:
                self.instances.setdefault(inst.block, []).append(inst)
        self.units: dict[str, Unit] = {}
        self.globals_used: dict[str, list[str]] = {}
        # Spec parameters written into the network class as their values (see model_unit).
        # A convention (a str parameter with choices: padding rule, eps) is written
        # in everywhere, blocks included: the file is generated for one of them.
        self.fixed = {p.name: literal(self.graph.params[p.name]) for p in self.spec.params.values() if p.choices}
        self.bake: dict[str, E.Expr] = dict(self.fixed)
        # Stage step (by id) -> its units' arguments and output channels (see unit_envs).
        self.stage_units: dict[int, tuple[Step, list[dict[str, E.Expr]], E.Expr]] = {}
        # Unit ("" for the network, else the block's name) -> its steps that take the logits switch.
        self.switched = self.logits_steps()

    def bind(self, e: E.Expr) -> E.Expr:
        return fold(substitute(e, self.bake)) if self.bake else e

    def run(self) -> CodeModel:
        order = self.block_order()
        for bname in order:
            self.globals_used[bname] = self.block_globals(bname)
        for bname in order:
            self.units[bname] = self.block_unit(self.spec.blocks[bname])
        model = self.model_unit()
        return CodeModel(self.c, [*(self.units[b] for b in order), model])

    # -- structure ------------------------------------------------------------

    def logits_steps(self) -> dict[str, set[str]]:
        """The steps on the way from each network output of :func:`logits_outputs`
        to its softmax: block steps that pass ``logits`` down, then the softmax."""
        out: dict[str, set[str]] = {}
        for path in logits_outputs(self.graph):
            unit, scope = "", ""
            for part in path.split("."):
                out.setdefault(unit, set()).add(part)
                inst = self.instance_at.get(_join(scope, part))
                if inst is None:
                    break
                unit, scope = inst.block, inst.path
        return out

    def block_order(self) -> list[str]:
        """Used blocks, callees before callers, in order of first use."""
        out: list[str] = []

        def visit(nodes: list[NodeDef]) -> None:
            for nd in nodes:
                if nd.block and nd.block in self.instances and nd.block not in out:
                    visit(self.spec.blocks[nd.block].nodes)
                    out.append(nd.block)

        visit(self.spec.layers)
        return out

    def block_globals(self, bname: str) -> list[str]:
        """Spec parameters a block reads, itself or through the blocks it uses."""
        used: set[str] = set()
        block = self.spec.blocks[bname]
        for _, lv in block.lets:
            used |= {n for n in _names(lv) if n in self.spec.params and n not in block.params and n not in self.fixed}
        for nd in block.nodes:
            for v in [*nd.attrs.values(), *nd.first.values(), nd.when, nd.repeat]:
                for n in _names(v):
                    if n in self.spec.params and n not in block.params and n not in self.fixed:
                        used.add(n)
            if nd.block and nd.block in self.globals_used:
                used.update(self.globals_used[nd.block])
        return [p for p in self.spec.params if p in used]

    # -- units ----------------------------------------------------------------

    def block_unit(self, block: BlockDef) -> Unit:
        insts = self.instances[block.name]
        # Required arguments first (Python's rule), each group in spec order.
        params = [Arg(p.name, p.type, p.default) for p in block.params.values()]
        args = [Arg("in_channels", "int"), *(a for a in params if a.default is ops.REQUIRED)]
        args += [Arg(g, self.spec.params[g].type) for g in self.globals_used[block.name]]
        args += [a for a in params if a.default is not ops.REQUIRED]
        if block.name in self.switched:
            args.append(Arg(LOGITS, "bool", False))
        envs = []
        for inst in insts:
            env = {**self.graph.params, **inst.args, "in_channels": inst.in_shape[0]}
            for lname, lv in block.lets:
                env[lname] = E.evaluate(lv.expr, env) if lv.expr is not None else lv.raw
            envs.append((inst.path, env))
        unit = Unit(
            block.name,
            class_name(block.name),
            args,
            [],
            [],
            num(0),
            block.doc.strip(),
            lets=[(lname, self.bind(lv.expr) if lv.expr is not None else literal(lv.raw)) for lname, lv in block.lets],
            sequential=block.sequential,
        )
        self.fill(unit, block.nodes, envs, name("in_channels"), block.output_names())
        return unit

    def model_unit(self) -> Unit:
        """The network class. Its constructor takes the spec parameters that do
        not size anything (``num_classes``, switches such as ``aux_logits``,
        dropout rates) and the structural options (``option: true``: width
        multipliers such as ``alpha``); the others (``growth_rate``...) are
        written in as the values this file is generated for, so that the class
        reads with plain channel counts, as hand-written models do."""
        unit = self.model_pass()
        sizing = {n.id for s in unit.steps for n in E.free_names(s.in_channels)}
        # A spec parameter that a block uses as a channel count sizes layers too.
        for block in self.units.values():
            lets: dict[str, E.Expr] = {}
            for lname, e in block.lets:  # each in terms of the block's arguments alone
                lets[lname] = substitute(e, lets)
            for st in block.steps:
                # what sizes a weight: widths, groups, and anything passed on to a block
                sized = st.attrs.values() if st.unit is not None else [st.attrs.get(a) for a in SIZING_ATTRS]
                for e in (st.in_channels, *sized):
                    if isinstance(e, E.Expr):
                        e = substitute(e, lets)
                        sizing |= {n.id for n in E.free_names(e) if n.id in self.spec.params}
        sizing -= {"num_classes"} | {p.name for p in self.spec.params.values() if p.option}
        if sizing:
            self.bake = {**self.fixed, **{p: literal(self.graph.params[p]) for p in sizing}}
            unit = self.model_pass()
            self.bake = dict(self.fixed)
        return unit

    def model_pass(self) -> Unit:
        spec, graph = self.spec, self.graph
        args = [Arg(p.name, p.type, graph.params[p.name]) for p in spec.params.values() if p.name not in self.bake]
        switch = [Arg(LOGITS, "bool", False)] if "" in self.switched else []
        args += switch
        env = {**graph.params}
        unit = Unit(
            spec.name,
            class_name(spec.name),
            args,
            [],
            [],
            num(0),
            (spec.description or spec.source).strip(),
            is_model=True,
        )
        self.fill(unit, spec.layers, [("", env)], num(graph.input_shape[0]), [])
        if spec.outputs:
            names = {s.name: s for s in unit.steps}
            unit.output_vars = [names[n].output for n, _ in spec.outputs if n in names]
        # A parameter that no written expression reads (say, a switch for a part
        # left out of this build) would be an argument that does nothing: drop it.
        read = {n.id for st in unit.steps for e in step_exprs(st) for n in E.free_names(e)}
        unit.args = [a for a in unit.args if a.name in read or a in switch]
        return unit

    def fill(
        self,
        unit: Unit,
        defs: list[NodeDef],
        envs: list[tuple[str, dict[str, Any]]],
        in_channels: E.Expr,
        outputs: list[str],
    ) -> None:
        """Translate a list of node definitions into steps, verifying every
        expression against every instance (``envs``: instance path -> env).
        ``outputs``: the block's declared outputs (empty: its last node)."""
        channels: dict[str, E.Expr] = {INPUT: in_channels}
        stand = _stand_ins(defs)
        totals: dict[str, E.Expr] = {}  # stage.*.out: the channels of every unit's, summed
        prev = INPUT
        steps: list[Step] = []
        made: dict[str, Step] = {}
        refs: list[list[str]] = []
        for nd in defs:
            ins = [self.plain_ref(r, defs) for r, _ in nd.inputs] if nd.inputs else [prev]
            refs.append(ins)
            for r in ins:
                if r not in channels:  # a named output
                    channels[r], totals[r] = self.named_channels(r, made, defs, envs, f"{unit.name}.{nd.name}")
            present = [self.present(nd, env) for _, env in envs]
            if not any(present):
                # Left out in every instance: nothing to write; its name is its input.
                channels[nd.name] = channels[stand.get(nd.name, ins[0])]
                prev = nd.name
                steps.append(None)  # type: ignore[arg-type]
                continue
            cond = None
            if not all(present):
                if nd.when is None or nd.when.expr is None:  # pragma: no cover - defensive
                    raise CodegenError(f"{unit.name}.{nd.name}: presence varies without a condition")
                cond = self.bind(nd.when.expr)
            elif nd.when is not None and nd.when.expr is not None and unit.is_model:
                cond = self.bind(nd.when.expr)  # a model-level switch (e.g. aux_logits) stays a switch
            # An optional step's input width, known to be present: `x if cond else y` read as x.
            in_ch = channels[ins[0]] if cond is None else assuming(cond, True, channels[ins[0]])
            step = self.step(unit, nd, envs, present, in_ch, channels, ins)
            step.cond = cond
            if nd.name in self.switched.get("" if unit.is_model else unit.name, ()):
                if step.unit is not None:
                    step.attrs[LOGITS] = name(LOGITS)
                else:
                    step.logits_switch = True
            out_ch = self.out_channels(
                step, nd, envs, present, in_ch, {**channels, **totals}, ins, f"{unit.name}.{nd.name}"
            )
            channels[nd.name] = self.writable(
                out_ch
                if cond is None
                else self.simplify_choice(E.IfElse(cond, out_ch, channels[stand.get(nd.name, ins[0])], 0), envs),
                lambda nd=nd: [self.shape_at(path, nd.name, defs)[0] for path, _ in envs],
                f"{unit.name}.{nd.name}",
            )
            steps.append(step)
            made[nd.name] = step
            prev = nd.name
        unit.output_channels = [
            self.verified(
                channels[o],
                [(path, env, self.shape_at(path, o, defs)[0]) for path, env in envs],
                f"{unit.name}: channels of output {o}",
            )
            for o in outputs or [prev]
        ]
        unit.out_channels = unit.output_channels[0]
        self.name_variables(unit, defs, steps, refs, outputs or [prev], stand)

    def plain_ref(self, ref: str, defs: list[NodeDef]) -> str:
        """``gate.out`` -> ``gate`` when ``out`` is the block's value."""
        parts = ref.split(".")
        if len(parts) == 2:
            nd = next(d for d in defs if d.name == parts[0])
            if nd.block is not None and parts[1] == self.spec.blocks[nd.block].output:
                return parts[0]
        return ref

    def ref_shapes(self, scope: str, ref: str) -> list[tuple[int, ...]]:
        """The IR shapes a named-output reference stands for in one instance
        (one per unit for ``stage.*.out``)."""
        node, *mid, out = ref.split(".")
        path = f"{scope}.{node}" if scope else node
        inst = self.instance_at[path]
        insts = [self.instance_at[f"{path}.{u}"] for u in range(inst.units)] if mid else [inst]
        block = self.spec.blocks[inst.block]
        values = [i.output if out == block.output else dict(i.side_outputs)[out] for i in insts]
        return [self.graph.shape_of(v) for v in values]

    def named_channels(
        self, ref: str, made: dict[str, Step], defs: list[NodeDef], envs, where: str
    ) -> tuple[E.Expr, E.Expr]:
        """The channel count of a named output (``gate.skip``; for ``stage.*.skip``
        that of the first unit's) and the sum over the units, as expressions over
        the unit's arguments, verified against every instance."""
        node, *mid, out = ref.split(".")
        step = made[node]
        block = next(d for d in defs if d.name == node).block
        callee = self.units[block]  # type: ignore[index]
        j = self.spec.blocks[block].output_names().index(out)  # type: ignore[index]
        unit_envs = (
            self.unit_envs(step, callee, envs, where)[0] if mid else [self.callee_env(step, callee, step.in_channels)]
        )
        per_unit = [fold(substitute(callee.output_channels[j], env)) for env in unit_envs]
        total = per_unit[0]
        for e in per_unit[1:]:
            total = add(total, e)
        # The referenced node is in every instance (a 'when' is refused there).
        firsts = [(path, env, self.ref_shapes(path, ref)[0][0]) for path, env in envs]
        sums = [(path, env, sum(s[0] for s in self.ref_shapes(path, ref))) for path, env in envs]
        total = self.writable(total, lambda: [want for _, _, want in sums], f"{where}: {ref}")
        return self.verified(per_unit[0], firsts, f"{where}: {ref}"), self.verified(total, sums, f"{where}: {ref}")

    def callee_env(self, step: Step, callee: Unit, in_ch: E.Expr, unit: int | None = None) -> dict[str, E.Expr]:
        """The arguments a block call passes (of unit ``unit`` of a stage), as
        expressions, with the block's defaults for the others."""
        args = {**step.attrs, **(step.first if unit == 0 else {})}
        if unit is not None:
            args = {k: substitute(v, {"i": num(unit)}) for k, v in args.items()}
        env = {**callee.defaults, "in_channels": in_ch, **args}
        for lname, e in callee.lets:  # a size the block names is its expression, out here
            env[lname] = fold(substitute(e, env))
        return env

    def unit_counts(self, step: Step, envs) -> list[int]:
        """The repeat counts of a stage in the instances of its unit, in order
        (several where the count is an argument of the enclosing block)."""
        return sorted({E.evaluate(step.units, env) for _, env in envs})  # type: ignore[arg-type]

    def present(self, nd: NodeDef, env: dict[str, Any]) -> bool:
        if nd.when is None:
            return True
        return bool(nd.when.raw if nd.when.expr is None else E.evaluate(nd.when.expr, env))

    def shape_at(self, scope: str, ref: str, defs: list[NodeDef]) -> tuple[int, ...]:
        """The IR shape of a name inside one instance (following skipped nodes)."""
        prefix = f"{scope}." if scope else ""
        by_name = {nd.name: nd for nd in defs}
        while ref != INPUT:
            if "." in ref:
                return self.ref_shapes(scope, ref)[0]
            path = prefix + ref
            if path in self.nodes:
                return self.nodes[path].shape
            inst = self.instance_at.get(path)
            if inst is not None:
                return inst.shape
            nd = by_name[ref]  # skipped: its value is its first input, or a choice's else
            idx = defs.index(nd)
            first = nd.inputs[0][0] if nd.inputs else (defs[idx - 1].name if idx else INPUT)
            ref = _stand_ins(defs).get(ref, first)
        if scope:
            return self.instance_at[scope].in_shape
        return self.graph.input_shape

    # -- steps ------------------------------------------------------------------

    def step(self, unit: Unit, nd: NodeDef, envs, present, in_ch, channels, ins) -> Step:
        live = [(path, env) for (path, env), p in zip(envs, present) if p]
        paths = [f"{path}.{nd.name}" if path else nd.name for path, _ in live]
        in_shapes = {self.shape_at(path, ins[0], self._defs_for(unit)) for path, _ in live}
        in_shape = next(iter(in_shapes)) if len(in_shapes) == 1 else None
        path0 = live[0][0]
        in_ranks = tuple(len(self.shape_at(path0, r, self._defs_for(unit))) for r in ins)
        where = f"{unit.name}.{nd.name}"
        self.verified(
            in_ch,
            [(path, env, self.shape_at(path, ins[0], self._defs_for(unit))[0]) for path, env in live],
            f"{where}: input channels",
        )
        if nd.op:
            irnodes = [self.nodes[p] for p in paths]
            out_shapes = {n.shape for n in irnodes}
            attrs, padding = self.op_attrs(nd, live, irnodes, where)
            return Step(
                nd.name,
                nd.op,
                None,
                attrs,
                {},
                None,
                in_ch,
                in_shape,
                next(iter(out_shapes)) if len(out_shapes) == 1 else None,
                [],
                "",
                None,
                padding,
                in_ranks=in_ranks,
                pos=nd.pos,
            )
        callee = self.units[nd.block]
        attrs = {k: self.arg_expr(v) for k, v in nd.attrs.items()}
        first = {k: self.arg_expr(v) for k, v in nd.first.items()}
        units = self.arg_expr(nd.repeat) if nd.repeat is not None else None
        for g in self.globals_used[nd.block]:
            attrs.setdefault(g, self.bind(name(g)))
        out_shapes = set()
        for path in paths:
            out_shapes.add(self.instance_at[path].shape)
        varies = any(n == "i" for v in nd.attrs.values() for n in _names(v))
        if varies and first:
            # Built in one loop over i: the first unit's overrides become
            # ``A if i == 0 else B`` (the block's default where B is not given).
            defaults = callee.defaults
            for k, v in first.items():
                rest = attrs.get(k, defaults.get(k))
                attrs[k] = v if rest is None else first_unit_choice(v, rest)
            first = {}
        step = Step(
            nd.name,
            None,
            callee.class_name,
            attrs,
            first,
            units,
            in_ch,
            in_shape,
            next(iter(out_shapes)) if len(out_shapes) == 1 else None,
            [],
            "",
            None,
            varies_with_i=varies,
            in_ranks=in_ranks,
            pos=nd.pos,
        )
        self.check_call(step, callee, live)
        return step

    def check_call(self, step: Step, callee: Unit, live) -> None:
        """The arguments a block call writes give, for every instance (every
        unit of a stage), the arguments the IR expanded it with."""
        for path, env in live:
            base = _join(path, step.name)
            n = E.evaluate(step.units, env) if step.units is not None else None
            for u in range(n) if n is not None else [None]:
                inst = self.instance_at[base if u is None else f"{base}.{u}"]
                for k, e in self.callee_env(step, callee, step.in_channels, u).items():
                    if k in inst.args:
                        self.verified(e, [(inst.path, env, inst.args[k])], f"{step.name}: argument {k}")

    def _defs_for(self, unit: Unit) -> list[NodeDef]:
        return self.spec.layers if unit.is_model else self.spec.blocks[unit.name].nodes

    def arg_expr(self, v: Value) -> E.Expr:
        if v.items is not None:
            raise CodegenError("a list as a block argument is not supported yet: pass its items as arguments", v.pos)
        return self.bind(v.expr) if v.expr is not None else literal(v.raw)

    def op_attrs(self, nd: NodeDef, live, irnodes: list[Node], where: str):
        opdef = ops.OPS[nd.op]
        attrs: dict[str, E.Expr] = {}
        padding = None
        for aname in opdef.attrs:
            values = [n.attrs[aname] for n in irnodes]
            if aname == "padding" and nd.op != "conv_transpose2d":  # that one's padding crops: a plain pair
                padding = self.padding(nd, values, live, irnodes)
                continue
            v = nd.attrs.get(aname)
            if v is not None and v.items is not None:
                items = tuple(self.arg_expr(item) for item in v.items)
                checks = [(path, env, n.attrs[aname]) for (path, env), n in zip(live, irnodes)]
                attrs[aname] = self.verified(items, checks, f"{where}.{aname}")
                continue
            if v is None or v.expr is None:
                # A literal, a default or a list: the resolved value, equal in every instance.
                if any(x != values[0] for x in values):  # pragma: no cover - literals cannot vary
                    raise CodegenError(f"{where}: attribute {aname} varies between instances")
                value = values[0]
                if aname == "stride" and nd.op in ("max_pool2d", "avg_pool2d") and "stride" not in nd.attrs:
                    continue  # the framework default is the kernel size too
                attrs[aname] = tuple(num(x) for x in value) if isinstance(value, tuple) else literal(value)
                continue
            expr = self.bind(v.expr)
            checks = []
            for (path, env), n in zip(live, irnodes):
                want = n.attrs[aname]
                checks.append((path, env, want[0] if isinstance(want, tuple) and len(set(want)) == 1 else want))
            attrs[aname] = self.verified(expr, checks, f"{where}.{aname}")
        return attrs, padding

    def padding(self, nd: NodeDef, values: list[tuple[int, ...]], live, irnodes: list[Node]) -> Padding:
        v = nd.attrs.get("padding")
        same = all(x == values[0] for x in values)
        if v is not None and v.expr is not None:
            words = [E.evaluate(v.expr, env) for _, env in live]
            if all(w == words[0] for w in words) and isinstance(words[0], str):
                # One keyword in every instance (chosen by a spec parameter): as if written.
                return Padding(words[0], values[0] if same else None)
            if all(isinstance(w, str) for w in words):
                # A keyword chosen by a parameter ('same' or 'valid' per instance).
                if any(
                    w == "same" and n.attrs.get("stride", (1,)) != (1,) * len(n.attrs["stride"])
                    for w, n in zip(words, irnodes)
                ):
                    raise CodegenError(
                        f"{nd.name}: 'same' padding chosen by a parameter at a stride > 1 cannot be written as one "
                        "layer; give this instance its padding explicitly, or choose 'same' at stride 1 only",
                        nd.pos,
                    )
                return Padding("keyword", values[0] if same else None, self.bind(v.expr))
        if v is not None and v.expr is None and v.items is None and isinstance(v.raw, str):
            return Padding(v.raw, values[0] if same else None)
        if not same:
            symmetric = all(x[0] == x[1] and x[-2] == x[-1] for x in values)
            if v is not None and symmetric:
                if v.expr is not None and all(len(set(x)) == 1 for x in values):
                    return Padding("explicit", None, self.bind(v.expr))
                if v.items is not None and len(v.items) == 2:
                    h, w = (self.arg_expr(item) for item in v.items)
                    return Padding("explicit", None, (h, w) if len(values[0]) == 4 else h)
            raise CodegenError(
                f"{nd.name}: padding that varies between the block's instances and is not "
                "symmetric cannot be written as one layer; write it as one expression or [h, w]",
                nd.pos,
            )
        if not any(values[0]):
            return Padding("none", values[0])
        return Padding("explicit", values[0])

    def out_channels(self, step: Step, nd: NodeDef, envs, present, in_ch, channels, ins, where: str) -> E.Expr:
        if step.unit is not None:
            callee = self.units[nd.block]
            if step.units is not None:
                live = [(path, env) for (path, env), p in zip(envs, present) if p]
                return self.stage_out(step, callee, live, where)
            return fold(substitute(callee.out_channels, self.callee_env(step, callee, in_ch)))
        op = step.op
        if op in ("conv2d", "separable_conv2d", "conv1d", "dense", "conv_transpose2d"):
            return step.attrs["out"]
        if op == "slice":
            return fold(E.Binary("-", step.attrs["stop"], step.attrs["start"], 0))
        if op == "depthwise_conv2d":
            return mul(in_ch, step.attrs["multiplier"])
        if op == "concat":  # ``channels`` maps stage.*.out to the sum over the units
            total = channels[ins[0]]
            for r in ins[1:]:
                total = add(total, channels[r])
                if larger_than(total, MAX_CHANNEL_TERMS):  # the sum of all inputs, as its value
                    live = [path for (path, _), p in zip(envs, present) if p]
                    paths = [f"{path}.{nd.name}" if path else nd.name for path in live]
                    return self.writable(total, lambda paths=paths: [self.nodes[p].shape[0] for p in paths], where)
            return total
        if op == "flatten":
            if step.in_shape is None:
                raise CodegenError(
                    f"{nd.name}: a flatten inside a block whose input size differs between its instances: the "
                    "layer after it would take a different size in each; flatten (or pool) before the block",
                    nd.pos,
                )
            return flat_size(step.in_shape)
        return in_ch

    def unit_envs(self, step: Step, callee: Unit, live, where: str) -> tuple[list[dict[str, E.Expr]], E.Expr]:
        """The arguments of each unit of a stage, each taking the previous
        unit's output channels, and the stage's output channels (computed once
        per stage; a count too long to write is its value, see :meth:`writable`)."""
        cached = self.stage_units.get(id(step))
        if cached is not None and cached[0] is step:  # (an id alone may be reused by a later step)
            return cached[1], cached[2]
        envs: list[dict[str, E.Expr]] = []
        ch = step.in_channels
        counts = self.unit_counts(step, live)
        ends: set[str] = set()  # the output channels after each count a stage has
        for i in range(counts[-1]):
            envs.append(self.callee_env(step, callee, ch, i))
            ch = self.writable(
                fold(substitute(callee.out_channels, envs[-1])),
                lambda i=i: [inst.shape[0] for path, _ in live if (inst := self.unit_at(path, step, i))],
                f"{where}.{i}",
            )
            if i + 1 in counts:
                ends.add(source(ch))
        if len(ends) > 1:
            raise CodegenError(  # pragma: no cover - validate's _stage_counts reports it first
                f"{where}: a stage whose repeat count varies between instances gives output channels that "
                f"depend on the count ({', '.join(sorted(ends))}); one make_stage call cannot write that"
            )
        self.stage_units[id(step)] = step, envs, ch
        return envs, ch

    def unit_at(self, path: str, step: Step, u: int) -> Instance | None:
        """Unit ``u`` of stage ``step`` in the instance at ``path``; None where that stage is shorter."""
        return self.instance_at.get(_join(path, step.name, str(u)))

    def stage_out(self, step: Step, callee: Unit, live, where: str) -> E.Expr:
        """Output channels of a stage, unit by unit; verified like everything
        else. A stage built in one loop over i also gets the input channels
        of its units after the first (:attr:`Step.unit_in_channels`)."""
        envs, ch = self.unit_envs(step, callee, live, where)
        later = [env["in_channels"] for env in envs[1:]]
        in_ch = step.in_channels
        if step.varies_with_i and any(source(e) != source(in_ch) for e in later):
            if len({source(e) for e in later}) != 1:
                raise CodegenError(
                    f"{where}: the units of a stage whose arguments use i take input channel counts that "
                    f"one loop cannot write ({', '.join(sorted({source(e) for e in later}))}): give the units "
                    "after the first the same output channels (a value that differs only for i == 0: first:)",
                    step.pos,
                )
            units = [
                (path, env, inst.in_shape[0])
                for u in range(1, len(envs))
                for path, env in live
                if (inst := self.unit_at(path, step, u))
            ]
            self.verified(later[0], units, f"{where}: input channels of units 1 to {len(later)}")
            step.unit_in_channels = E.IfElse(E.Compare(name("i"), (("==", num(0)),), 0), in_ch, later[0], 0)
        checks = [(path, env, self.instance_at[_join(path, step.name)].shape[0]) for path, env in live]
        return self.verified(ch, checks, f"{step.name}: stage output channels")

    def writable(self, e: E.Expr, values: Callable[[], list[int]], what: str) -> E.Expr:
        """``e``, or its value when it is too long to write (see
        :data:`MAX_CHANNEL_TERMS`); ``values`` gives the IR's value in each instance."""
        if not larger_than(e, MAX_CHANNEL_TERMS):
            return e
        found = set(values())
        if len(found) != 1:
            raise CodegenError(
                f"{what}: its channel count grows to an expression of more than {MAX_CHANNEL_TERMS} terms "
                f"that differs between the block's instances ({', '.join(map(str, sorted(found)))}); "
                "use fewer units or inputs, or a count that does not add up from in_channels"
            )
        return num(found.pop())

    def simplify_choice(self, choice: E.IfElse, envs) -> E.Expr:
        """``a if cond else b`` -> ``a`` (or ``b``) when it agrees with the
        choice in every instance; the branches simplified under their guard
        first (``in_channels + (out - in_channels if stride == 2 else out) if
        stride == 2 else in_channels`` -> ``out`` where a stride-1 unit keeps
        its width)."""
        choice = guarded(choice)
        for branch in (choice.then, choice.other) if isinstance(choice, E.IfElse) else ():
            try:
                if all(E.evaluate(choice, env) == E.evaluate(branch, env) for _, env in envs):
                    return branch
            except E.ExprError:
                pass
        return choice

    def verified(self, e: E.Expr, checks, what: str) -> E.Expr:
        for path, env, want in checks:
            try:
                got = evaluate(e, env)
            except E.ExprError as exc:
                raise CodegenError(f"{what}: {source(e)} fails at {path or 'top level'}: {exc.message}") from None
            if isinstance(want, tuple) and not isinstance(got, tuple):
                got = (got,) * len(want)
            if got != want:
                raise CodegenError(f"{what}: {source(e)} gives {got!r} at {path or 'top level'}, the IR has {want!r}")
        return e

    # -- variables ---------------------------------------------------------------

    def name_variables(
        self,
        unit: Unit,
        defs: list[NodeDef],
        steps: list[Step | None],
        refs: list[list[str]],
        out_names: list[str],
        stand: dict[str, str],
    ) -> None:
        """Give every step an output variable, as a hand-writer names them.

        Steps form *chains*: a step continues the chain of the value it reads
        when it is that value's last reader (an add or multiply continues its
        first such input; a concatenation always starts anew). Each chain has
        one variable: the chain that gives the unit's value is the main path
        (``x`` where that overwrites nothing still to be read, else ``out``);
        a chain that gives another output (an auxiliary head, a second block
        output) is named after that output; any other chain (a branch, a
        shortcut) after what its steps' names share (``branch3x3dbl_1``..``_3``
        -> ``branch3x3dbl``), or its last step's name. A named output read
        elsewhere (``gate.skip``) gets a variable of its own, and one read from
        every unit of a stage (``stack.*.skip``) a list that the stage's loop fills."""
        declared = {n for n, _ in self.spec.outputs or []} if unit.is_model else set()
        outputs = set(out_names) | declared
        index = {nd.name: k for k, nd in enumerate(defs)}

        def resolve(ref: str) -> str:
            """Follow names of nodes left out everywhere to the value they stand for."""
            while ref != INPUT and "." not in ref and steps[index[ref]] is None:
                ref = stand.get(ref, refs[index[ref]][0])
            return ref

        # What each live step reads, after following left-out nodes.
        reads = [[resolve(r) for r in ins] if steps[k] is not None else [] for k, ins in enumerate(refs)]
        results = [resolve(o) for o in out_names]
        # (a network output left out of this build is not returned at all)
        returned = {*results, *(o for o in outputs if o in index and steps[index[o]] is not None)}
        end = len(defs)  # what the unit returns is read after its last step
        last = {r: end for r in returned}
        readers: dict[str, set[int]] = {r: {end} for r in returned}
        for k, ins in enumerate(reads):
            # A conditional step that a choice names reads its else where it is left out.
            other = [resolve(stand[defs[k].name])] if steps[k] is not None and defs[k].name in stand else []
            for r in [*ins, *other]:
                if "." not in r:
                    last[r] = max(last.get(r, -1), k)
                    readers.setdefault(r, set()).add(k)
        # Variables share a scope with the unit's arguments in function-style
        # targets (Keras), so no variable takes an argument's name.
        taken = {"x", "self", "name", "inputs", "outputs", "block", "i", *(a.name for a in unit.args), *GLOBAL_NAMES}
        taken |= {u.class_name for u in self.units.values()} | set(self.spec.blocks)
        node_names = set(index)

        def fresh(base: str) -> str:
            v = base
            while v in taken or v in node_names or keyword.iskeyword(v):
                v += "_"
            taken.add(v)
            return v

        named: dict[str, str] = {}  # named-output reference -> its variable (a list for stage.*.out)
        for r in [*(r for ins in reads for r in ins), *results]:
            if "." in r and r not in named:
                node, *mid, out = r.split(".")
                named[r] = fresh(f"{node}_{out}s" if mid else f"{node}_{out}")

        # The spine: the values on the way to the unit's value, following first
        # inputs back (an add's path rather than its input: x + residual; a
        # concatenation's one fresh input beside kept ones: U-Net's decoder, not
        # a skip; between sibling branches it ends). A side reader (an
        # auxiliary head) never takes it over, and off the spine a value read
        # twice (two sibling branches) is nobody's chain.
        spine: dict[str, int] = {}  # value -> its successor on the spine
        r, successor = (results[0] if results else INPUT), end
        while r != INPUT and "." not in r:
            spine[r] = successor
            ins = [i for i in reads[index[r]] if "." not in i]
            if defs[index[r]].op in ("add", "multiply"):
                ins = [i for i in ins if i != INPUT] or ins
            elif defs[index[r]].op == "concat":
                fresh_ins = [i for i in ins if len(readers.get(i, ())) == 1]
                ins = fresh_ins if len(fresh_ins) == 1 and len(ins) > 1 else []
            r, successor = (ins[0] if ins else INPUT), index[r]
        # A spine value read again after its successor (a skip connection) is kept
        # in a variable of its own, named after it.
        kept = {v for v, nxt in spine.items() if last.get(v, -1) > nxt}
        # Chains, in program order: chain_of maps a value (node name) to its chain.
        chains: list[list[int]] = []
        chain_of: dict[str, int] = {}
        for k, st in enumerate(steps):
            if st is None:
                continue
            on_spine = defs[k].name in spine
            ins = [
                r
                for r in reads[k]
                if "." not in r
                and r != INPUT
                and r not in kept
                and last.get(r) == k
                and (on_spine or (r not in spine and len(readers[r]) == 1))
            ]
            if st.op == "concat" or defs[k].name in kept:
                ins = []
            elif st.op not in ("add", "multiply"):
                ins = ins[:1] if reads[k] and ins[:1] == reads[k][:1] else []
            if ins:
                c = chain_of[ins[0]]
                chains[c].append(k)
            else:
                c = len(chains)
                chains.append([k])
            chain_of[defs[k].name] = c

        names: dict[int, str] = {}
        generic: list[int] = []  # the spine's chains, and chains whose steps share no name

        # A chain's variable is not the name of a parameter of a block it is
        # passed to (``out = conv_bn(out, out=c7)`` reads as if it were the width).
        # (A stage passes its own variable to each unit in turn.)
        banned: dict[int, set[str]] = {}
        for k, st in enumerate(steps):
            if st is None or st.unit is None:
                continue
            params = {a.name for a in next(u for u in self.units.values() if u.class_name == st.unit).args}
            passed = [reads[k][0]] if reads[k] else []
            passed += [defs[k].name] if st.units is not None else []
            for r in passed:
                if r in chain_of:
                    banned.setdefault(chain_of[r], set()).update(params)

        def free(v: str, c: int) -> bool:
            clash = v in taken or v in banned.get(c, ()) or v in names.values()
            return not clash and not keyword.iskeyword(v)

        for c, ks in enumerate(chains):
            tail = defs[ks[-1]].name
            if tail in kept or (tail in returned and tail != (results[0] if results else None)):
                base = tail
            elif all(defs[k].name in spine for k in ks):
                base = ""
            else:
                base = _shared_prefix([defs[k].name for k in ks])
            if not base:
                generic.append(c)
                continue
            while not free(base, c):
                base += "_"
            names[c] = base
        reused = {"x"}  # names the running chains share where one's value is dead before the next
        for c in generic:
            # The first of a few that overwrites nothing still to be read (the
            # named chains' names are unique, so only a running name can clash).
            tail = defs[chains[c][-1]].name
            for v in ("x", "out", "y", "h", "z", *(tail + "_" * n for n in range(len(defs) + 1))):
                shared = v in reused and v not in banned.get(c, ())
                if shared or free(v, c):
                    names[c] = v
                    if not _clobbers(chains, names, last, defs):
                        reused.add(v)
                        break
        taken |= set(names.values())

        var: dict[str, str] = {INPUT: "x", **named}
        for k, nd in enumerate(defs):
            st = steps[k]
            if st is None:
                continue
            var[nd.name] = names[chain_of[nd.name]]
            st.inputs = [var[r] for r in reads[k]]
            st.starred = tuple(r.count(".") == 2 for r in reads[k])
            st.output = var[nd.name]
            # Only a declared network output is None when left out (an auxiliary
            # head); the implicit last node stands for its input like any other.
            st.is_output = nd.name in returned and nd.name in declared
            if nd.name in stand:
                st.otherwise = var[resolve(stand[nd.name])]
            if nd.block is not None:
                self.name_block_outputs(st, nd, named, fresh)
        unit.steps = [s for s in steps if s is not None]
        unit.output_vars = [var[r] for r in results]
        flags: set[str] = set()
        for st in unit.steps:
            st.flag = f"use_{st.name}"
            while st.flag in node_names or st.flag in flags:
                st.flag += "_"
            flags.add(st.flag)
        if any(st.logits_switch for st in unit.steps):
            unit.logits_attr = LOGITS
            while unit.logits_attr in node_names or unit.logits_attr in flags:
                unit.logits_attr += "_"

    def name_block_outputs(self, st: Step, nd: NodeDef, named: dict[str, str], fresh: Callable[[str], str]) -> None:
        """The variables of a block's outputs after the first; for a stage, the
        lists that collect an output of every unit."""
        names = self.spec.blocks[nd.block].output_names()  # type: ignore[index]
        if st.units is None:
            st.side_outputs = [named.get(f"{nd.name}.{o}", "_") for o in names[1:]]
            return
        for j, o in enumerate(names):
            lst = named.get(f"{nd.name}.*.{o}")
            item = st.output if j == 0 else (fresh(o) if lst else "_")
            if j:
                st.side_outputs.append(item)
            if lst:
                st.collect.append((lst, item))


def _stand_ins(defs: list[NodeDef]) -> dict[str, str]:
    """The nodes that conditional inputs name (``then``) -> what each stands
    for where it is left out (the choice's ``else``)."""
    return {c.then: c.other for nd in defs for c in nd.choices.values()}


def _join(*parts: str) -> str:
    """An IR path: the dot-joined non-empty parts (``""`` is the top level)."""
    return ".".join(p for p in parts if p)


def guarded(choice: E.IfElse) -> E.Expr:
    """``a if c else b`` with the same test inside each branch decided by the
    branch (``(x if c else y) if c else z`` -> ``x if c else z``), then
    ``p + (q - p)`` -> ``q``."""
    cond = choice.cond
    return E.IfElse(cond, assuming(cond, True, choice.then), assuming(cond, False, choice.other), 0)


def assuming(cond: E.Expr, value: bool, e: E.Expr) -> E.Expr:
    """``e`` where ``cond`` is known to be ``value``: ``x if cond else y`` inside
    it decided (``x``), then ``p + (q - p)`` -> ``q``."""
    if isinstance(e, E.IfElse):
        if source(e.cond) == source(cond):
            return assuming(cond, value, e.then if value else e.other)
        return E.IfElse(e.cond, assuming(cond, value, e.then), assuming(cond, value, e.other), 0)
    if isinstance(e, E.Binary):
        left, right = assuming(cond, value, e.left), assuming(cond, value, e.right)
        if e.op == "+" and isinstance(right, E.Binary) and right.op == "-" and source(right.right) == source(left):
            return right.left
        return E.Binary(e.op, left, right, 0)
    return e


def first_unit_choice(first: E.Expr, rest: E.Expr) -> E.Expr:
    """``first if i == 0 else rest``, or ``i == 0`` / ``i != 0`` for booleans."""
    if is_const(first) and is_const(rest):
        a, b = const_value(first), const_value(rest)
        if a == b and type(a) is type(b):
            return first
        if isinstance(a, bool) and isinstance(b, bool):
            return E.Compare(name("i"), (("==" if a else "!=", num(0)),), 0)
    return E.IfElse(E.Compare(name("i"), (("==", num(0)),), 0), first, rest, 0)


def step_exprs(step: Step, channels: bool = True) -> list[E.Expr]:
    """Every expression a step writes into generated code (``channels``: with
    the input channel count, which channels-last Keras never writes)."""
    out: list[E.Expr] = []
    for v in [*step.attrs.values(), *step.first.values()]:
        out += list(v) if isinstance(v, tuple) else [v]
    out += [e for e in (step.cond, step.units, step.in_channels if channels else None) if e is not None]
    if channels and step.unit_in_channels is not None:
        out.append(step.unit_in_channels)
    if step.padding is not None and step.padding.expr is not None:
        pe = step.padding.expr
        out += list(pe) if isinstance(pe, tuple) else [pe]
    return out


def _names(v: Value | None) -> list[str]:
    if v is None:
        return []
    if v.items is not None:
        return [n for item in v.items for n in _names(item)]
    return [n.id for n in E.free_names(v.expr)] if v.expr is not None else []


def _shared_prefix(names: list[str]) -> str:
    """What a chain's step names share, cut at a word boundary
    (``branch5x5_1``, ``branch5x5_2`` -> ``branch5x5``); "" when too little.
    One name is its own prefix."""
    if len(names) == 1:
        return names[0]
    prefix = names[0]
    for n in names[1:]:
        while not n.startswith(prefix):
            prefix = prefix[:-1]
    if any(len(n) > len(prefix) and (prefix[-1:] + n[len(prefix)]).isalpha() for n in names):
        prefix = prefix.rstrip("abcdefghijklmnopqrstuvwxyz")  # cut inside a word: drop the partial word
    prefix = prefix.rstrip("_")
    return prefix if len(prefix) >= 2 and prefix.isidentifier() else ""


def _clobbers(chains: list[list[int]], names: dict[int, str], last: dict[str, int], defs: list[NodeDef]) -> bool:
    """Whether writing each chain's variable (``names``: chain -> variable)
    would overwrite a value that a later step, or the return, still reads."""
    holds: dict[str, str] = {"x": INPUT}  # variable -> the value it holds now
    order = sorted((k, c) for c, ks in enumerate(chains) for k in ks)
    for k, c in order:
        v = names.get(c)
        if v is None:
            continue
        held = holds.get(v)
        if held is not None and last.get(held, -1) > k:
            return True
        holds[v] = defs[k].name
    return False
