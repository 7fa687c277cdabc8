"""What every emitter shares: printing expressions as Python, headers, docs."""

from __future__ import annotations

import ast
import re
import shlex
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from archspec.codegen.model import (
    Arg,
    CodegenError,
    CodeModel,
    Limits,
    Step,
    Unit,
    const_value,
    fold,
    is_const,
    logits_outputs,
    source,
)
from archspec.diagnostics import one_line
from archspec.ir import INPUT, Node
from archspec.ops import REQUIRED
from archspec.schema import expr as E

# Spec functions and how generated code spells them. make_divisible is
# written into the generated file itself, so the file stays standalone.
_FUNCTIONS = {"floor": "math.floor", "ceil": "math.ceil", "sqrt": "math.sqrt"}


@dataclass
class Printer:
    """Prints expressions as Python and records what the file must import."""

    needs: set[str] = field(default_factory=set)  # "math", "make_divisible"

    def expr(self, e: E.Expr, outer: int = 0) -> str:
        """``e`` as Python; ``outer`` 1 where it is the condition or first
        branch of a conditional expression (``X if COND else None``)."""
        for call in E.calls(e):
            if call.func in _FUNCTIONS:
                self.needs.add("math")
            if call.func == "make_divisible":
                self.needs.add("make_divisible")
        return E.to_source(_tidy(e), outer, _FUNCTIONS)

    def pair(self, value: E.Expr | tuple) -> str:
        """A size that may be square: ``3`` or ``(1, 7)``."""
        if isinstance(value, tuple):
            texts = [self.expr(v) for v in value]
            if len(set(texts)) == 1:
                return texts[0]
            return "(" + ", ".join(texts) + ")"
        return self.expr(value)

    def value(self, value: E.Expr | tuple) -> object:
        """The constant value of an attribute, or None when it is symbolic."""
        if isinstance(value, tuple):
            return tuple(self.value(v) for v in value) if all(is_const(v) for v in value) else None
        return E.evaluate(value, {}) if is_const(value) else None


def _tidy(e: E.Expr) -> E.Expr:
    """``e`` as ruff wants it written, same value: ``not not x`` -> ``bool(x)``,
    ``True if c else False`` -> ``bool(c)`` (``c`` when it is a comparison or a
    negation), ``False if c else True`` -> ``not c``."""
    if isinstance(e, E.Unary):
        inner = _tidy(e.operand)
        if e.op == "not" and isinstance(inner, E.Unary) and inner.op == "not":
            return _as_bool(inner.operand)
        return E.Unary(e.op, inner, e.col)
    if isinstance(e, E.Binary):
        return E.Binary(e.op, _tidy(e.left), _tidy(e.right), e.col)
    if isinstance(e, E.Compare):
        return E.Compare(_tidy(e.first), tuple((op, _tidy(r)) for op, r in e.rest), e.col)
    if isinstance(e, E.Call):
        return E.Call(e.func, tuple(_tidy(a) for a in e.args), e.col)
    if isinstance(e, E.IfElse):
        cond, then, other = _tidy(e.cond), _tidy(e.then), _tidy(e.other)
        if _is_bool(then) and _is_bool(other) and then.value != other.value:  # type: ignore[attr-defined]
            return _as_bool(cond) if then.value else E.Unary("not", cond, e.col)  # type: ignore[attr-defined]
        return E.IfElse(cond, then, other, e.col)
    return e


def _is_bool(e: E.Expr) -> bool:
    return isinstance(e, E.Num) and isinstance(e.value, bool)


def _as_bool(e: E.Expr) -> E.Expr:
    if isinstance(e, E.Compare) or (isinstance(e, E.Unary) and e.op == "not") or _is_bool(e):
        return e
    return E.Call("bool", (e,), 0)


def instances(model: CodeModel, unit: Unit, step: Step, nodes: dict[str, Node]) -> list[tuple[dict[str, Any], Node]]:
    """(environment, IR node) of every instance of an op step of ``unit``."""
    g = model.compiled.graph
    if unit.is_model:
        return [(dict(g.params), nodes[step.name])] if step.name in nodes else []
    out = []
    for inst in g.instances:
        path = f"{inst.path}.{step.name}"
        if inst.block == unit.name and not inst.units and path in nodes:
            out.append(({**g.params, **inst.args, "in_channels": inst.in_shape[0]}, nodes[path]))
    return out


def symmetric_same(step: Step, found: list[tuple[dict[str, Any], Node]]) -> E.Expr | tuple | None:
    """'same' padding that differs between instances but is symmetric in each,
    as one expression over the unit's arguments (``kernel // 2``, or
    ``(kernel - 1) * dilation // 2``) verified against every instance; None
    where that expression does not give the IR's padding everywhere."""
    kernel, dilation = step.attrs.get("kernel"), step.attrs.get("dilation")
    if kernel is None or not found:
        return None
    axes = len(found[0][1].attrs["padding"]) // 2
    kernels = kernel if isinstance(kernel, tuple) else (kernel,) * axes
    dilations = dilation if isinstance(dilation, tuple) else (dilation,) * axes
    exprs = tuple(_half_window(k, d) for k, d in zip(kernels, dilations))
    for env, node in found:
        sides = node.attrs["padding"]
        try:
            got = [E.evaluate(e, env) for e in exprs]
        except E.ExprError:
            return None
        if any(sides[2 * a] != g or sides[2 * a + 1] != g for a, g in enumerate(got)):
            return None
    return exprs[0] if len({source(e) for e in exprs}) == 1 else exprs


def _half_window(kernel: E.Expr, dilation: E.Expr | None) -> E.Expr:
    """``kernel // 2``, or ``(kernel - 1) * dilation // 2`` where the dilation is not 1."""
    if dilation is None or (is_const(dilation) and const_value(dilation) == 1):
        return fold(E.Binary("//", kernel, E.Num(2, 0), 0))
    span = E.Binary("*", E.Binary("-", kernel, E.Num(1, 0), 0), dilation, 0)
    return fold(E.Binary("//", span, E.Num(2, 0), 0))


def decay(momentum: E.Expr, show: Callable[[E.Expr], str]) -> str:
    """Batch norm's decay for Keras, TensorFlow and Chainer: 1 - the IR's
    momentum (PyTorch's update rate), as a number or, from a parameter, as the
    expression ``show`` prints."""
    if is_const(momentum):
        return repr(round(1 - const_value(momentum), 12))
    return show(E.Binary("-", E.Num(1, 0), momentum, 0))


# What an emitter says of a zero_pad2d whose padding differs between the
# instances of its block (it writes the padding as numbers).
VARYING_ZERO_PAD = (
    "zero padding that differs between the block's instances cannot be written as one layer; give it as numbers "
    "(the same in every instance), or pad in the convolution after it"
)


def ceil_average(title: str) -> str:
    """What Keras and Chainer say of a ceil-mode average pooling where ceil_mode adds a window."""
    return (
        f"ceil-mode average pooling has no {title} equivalent (a padded window would change the divisor); "
        "set ceil_mode: false and give the pooling explicit padding"
    )


@contextmanager
def gathered(limits: list[CodegenError]) -> Iterator[None]:
    """Write one step: a construct of the spec the target cannot write (a
    located CodegenError) is kept in ``limits`` and the step left out, so that
    the emitter meets every one before :func:`refuse` refuses them together."""
    try:
        yield
    except CodegenError as exc:
        if not exc.located:
            raise
        limits.extend(exc.located)


def refuse(limits: list[CodegenError]) -> None:
    """Raise what :func:`gathered` kept, if anything."""
    if limits:
        raise Limits(limits)


def header(model: CodeModel, target: str) -> str:
    """The comment on top of a generated file, with the command that writes
    it again (shell-quoted). The spec's path comes from the command line: any
    character that is not printable (a newline would end the comment) is
    written as its escape."""
    c = model.compiled
    path = one_line(c.graph.file)
    command = one_line(
        shlex.join(["archspec", "compile", c.graph.file, "--target", target, *(c.compile_options or ())])
    )
    again = f"`{command}`" if c.compile_options is not None else f"`archspec build` (or `{command}`)"
    return f"# Generated by archspec from {path} for {target}. Do not edit: change the spec\n# and run {again}.\n"


def docstring(text: str, width: int = 88, indent: str = "") -> str:
    """A docstring body: the text's words, wrapped (never inside a word, so
    that no escape is split), safe inside triple quotes whatever the text."""
    text = _in_docstring(" ".join(text.split()))
    head = text[:-1]
    if text.endswith('"') and (len(head) - len(head.rstrip("\\"))) % 2 == 0:
        text = head + '\\"'  # no quote next to the closing ones
    if not text:
        return ""
    return textwrap.fill(
        text, width=width - len(indent), subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )


def _in_docstring(text: str) -> str:
    """``text`` as the source of a triple-quoted string with the same value:
    backslashes, triple quotes and every character that is not printable
    (a line break, a NUL, U+2028) escaped."""
    return one_line(text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"'))


# How each framework alone loads weights that ``archspec weights export`` wrote:
# target -> (file name suffix, the loading line; {file} is the file).
NATIVE_WEIGHTS = {
    "pytorch": (".pt", 'model.load_state_dict(torch.load("{file}"))'),
    "tensorflow": ("_ckpt", 'tf.train.Checkpoint(model=model).restore("{file}").expect_partial()'),
    "keras": (".weights.h5", 'model.load_weights("{file}")'),
    "chainer": ("_chainer.npz", 'chainer.serializers.load_npz("{file}", model)'),
}


# Targets whose tensors are channels last: (N, H, W, C), (N, L, C).
CHANNELS_LAST = {"tensorflow", "keras"}


def module_doc(model: CodeModel, framework: str, target: str) -> str:
    """The generated file's docstring: what it is, its input layout and
    outputs, its figures, where its numbers come from, how it loads weights."""
    g = model.compiled.graph
    origin = f"{model.model.class_name} in {framework}, generated by archspec from {_in_docstring(g.file)}."
    figures = docstring(f"{io_doc(model, target)} {figures_doc(model)} {provenance_doc(model)}")
    suffix, line = NATIVE_WEIGHTS[target]
    file = f"{g.name}{suffix}"
    weights = docstring(
        f"Weights: archspec's canonical weights (the weights.npz of `archspec train`) become {framework}'s own "
        f"format with `archspec weights export weights.npz --spec {_in_docstring(g.file)} --target {target} "
        f"-o {file}`, which this file loads with {framework} alone:"
    )
    return f"{origin}\n\n{figures}\n\n{weights}\n\n    {line.format(file=file)}\n"


def batch_shape(shape: tuple[int, ...], channels_last: bool) -> str:
    """A per-sample (C, ...) shape with the batch, in a layout: ``(N, 3, 224, 224)``
    channels first, ``(N, 224, 224, 3)`` channels last."""
    dims = [*shape[1:], shape[0]] if channels_last else list(shape)
    return "(" + ", ".join(["N", *map(str, dims)]) + ")"


_LAYOUTS = {1: ("(N, C)", "(N, C)"), 2: ("NCL", "NLC"), 3: ("NCHW", "NHWC")}


def io_doc(model: CodeModel, target: str) -> str:
    """What the model takes and returns in ``target``'s layout: "Input (N, 224,
    224, 3), channels last (NHWC); output (N, 1000), class probabilities ..."."""
    g = model.compiled.graph
    last = target in CHANNELS_LAST
    layout = _LAYOUTS[len(g.input_shape)][last]
    order = "channels last" if last else "channels first"
    switched = set(logits_outputs(g))
    outs = []
    for path, shape in zip(g.outputs, g.output_shapes):
        op = g.node(path).op if path != INPUT else INPUT
        if op == "softmax":
            what = "probabilities after a softmax"
            what += " (the logits before it with logits=True)" if path in switched else ""
        else:
            what = "logits (no softmax)" if op in ("dense", "conv2d", "conv1d") else f"the output of a {op}"
        outs.append(f"{batch_shape(shape, last)}, {what}")
    if len(outs) == 1:
        returns = f"output {outs[0]}"
    elif len(set(outs)) == 1:
        returns = f"{len(outs)} outputs ({', '.join(g.outputs)}), each {outs[0]}"
    else:
        returns = f"{len(outs)} outputs: " + "; ".join(f"{p} {o}" for p, o in zip(g.outputs, outs))
    m = model.model
    if any(st.cond is not None and st.output in m.output_vars for st in m.steps):
        gone = "left out" if target == "keras" else "None"
        returns += f"; an output whose branch a parameter switches off is {gone}"
    return f"Input {batch_shape(g.input_shape, last)}, {order} ({layout}); {returns}."


def figures_doc(model: CodeModel) -> str:
    """Parameters (the batch-norm statistics counted apart, where the network
    has batch norm) and multiply-accumulates."""
    t = model.defaults.counts.total
    if t.non_trainable:
        params = f"{t.trainable:,} trainable parameters, {t.total:,} with the batch-norm statistics"
    else:
        params = f"{t.trainable:,} parameters"
    return f"{params}; {t.macs:,} multiply-accumulates per sample."


def provenance_doc(model: CodeModel) -> str:
    """Where the network's numbers come from: the spec's ``source``, which
    ``archspec build`` also writes at the top of the network's .md table."""
    g = model.compiled.graph
    return (
        f"Its `source` in {_in_docstring(g.file)} (printed atop {g.name}.md by `archspec build`) names the paper "
        "or table it follows and every deviation."
    )


def model_doc(model: CodeModel) -> str:
    """The network class's docstring: the spec's short ``description`` (its
    ``source`` where it has none), and what ``logits`` does where the network
    takes it."""
    parts = [docstring(model.model.doc, indent="    ")]
    if model.has_logits_switch:
        parts.append(LOGITS_DOC)
    return "\n\n    ".join(p for p in parts if p)


LOGITS_DOC = "logits=True: outputs skip their final softmax and return the logits (to train on)."


def shape_comments(unit: Unit, target: str) -> list[list[str]]:
    """torchvision's shape comments for the network's forward, in the target's
    layout: ``[input comment, comment after step 0, after step 1, ...]``. A
    step of the main path gets one where its output's shape differs from the
    last one shown (``# N x 256 x 56 x 56``), not where it keeps it (a ReLU)
    or returns several tensors; side outputs (an auxiliary head) and blocks
    get none."""
    if not unit.is_model or not unit.steps:
        return [[] for _ in range(len(unit.steps) + 1)]
    main = unit.output_vars[0] if unit.output_vars else unit.steps[-1].output
    shown = unit.steps[0].in_shape
    out = [_shape_comment(shown, target)]
    for st in unit.steps:
        several = st.unpacks or bool(st.collect)
        if st.output != main or several or st.out_shape == shown:
            out.append([])
            continue
        out.append(_shape_comment(st.out_shape, target))
        shown = st.out_shape
    return out


def _shape_comment(shape: tuple[int, ...] | None, target: str) -> list[str]:
    if shape is None:
        return []
    dims = [*shape[1:], shape[0]] if target in CHANNELS_LAST else list(shape)
    return ["# " + " x ".join(["N", *map(str, dims)])]


def arg(a: Arg) -> str:
    """One argument of a generated signature: ``width: int`` or ``stride: int = 1``."""
    return f"{a.name}: {a.type}" if a.default is REQUIRED else f"{a.name}: {a.type} = {a.default!r}"


def signature(unit: Unit) -> str:
    """``self`` and the unit's arguments."""
    return ", ".join(["self", *(arg(a) for a in unit.args)])


def assign(
    output: str, call: str, present: str | None, stand_in: str, model_output: bool = False, skip: str | None = None
) -> list[str]:
    """The forward lines of one step. ``present`` is the run-time test of a
    conditional step (None: always there). Left out, a step stands for
    ``stand_in`` (its first input, or a conditional input's else), except a
    network output, which is then None. ``skip`` is the
    switch under which a step that is there still stands for its first input
    (``self.logits``, for a final softmax)."""
    if skip is not None:
        if present is None or not model_output:
            return assign(output, call, f"not {skip}" if present is None else f"{present} and not {skip}", stand_in)
        call = f"({stand_in} if {skip} else {call})"
    if present is None:
        return [f"{output} = {call}"]
    if model_output:
        return [f"{output} = {call} if {present} else None"]
    if output == stand_in:
        return [f"if {present}:", f"    {output} = {call}"]
    return [f"{output} = {call} if {present} else {stand_in}"]


def items(step: Step, ins: list[str]) -> str:
    """The inputs of an add or concat as one list expression: a list that
    collects a stage's outputs (``stack.*.skip``) is spliced in."""
    if len(ins) == 1 and step.starred[0]:
        return ins[0]
    return "[" + ", ".join(f"*{v}" if star else v for v, star in zip(ins, step.starred)) + "]"


def run_units(step: Step, loop: str, call: Callable[[str], str]) -> list[str]:
    """The forward lines of a stage run unit by unit, as it must be when its
    block returns several outputs or an output of every unit is collected
    (``stack.*.skip``). ``loop`` is what follows ``for`` (``block in
    self.stack``); ``call(x)`` is one unit's call on ``x``."""
    out, inp = step.output, step.inputs[0]
    lines = [f"{out} = {inp}"] if out != inp else []
    lines += [f"{lst} = []" for lst, _ in step.collect]
    lines += [f"for {loop}:", f"    {unit_outputs(step, call(out))}"]
    lines += [f"    {lst}.append({item})" for lst, item in step.collect]
    return lines


def unit_outputs(step: Step, call: str) -> str:
    """A block call, unpacked when the block returns several outputs."""
    return f"{', '.join([step.output, *step.side_outputs])} = {call}"


def unique_names(source: str, model: CodeModel, target: str, written: list[str] | None = None) -> str:
    """``source``, once sure that it binds every top-level name once: a block
    whose class (or function) took the name of another block, of the network,
    or of something the file imports or defines would replace it silently.
    ``written``: the name each unit is written as (default: its class name)."""
    written = written or [u.class_name for u in model.units]
    seen: set[str] = set()
    for stmt in ast.parse(source).body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names = [(a.asname or a.name).split(".")[0] for a in stmt.names]
        elif isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
            names = [stmt.name]
        else:
            continue
        for n in names:
            if n not in seen:
                seen.add(n)
                continue
            owners = [
                f"the network '{u.name}'" if u.is_model else f"block '{u.name}'"
                for u, w in zip(model.units, written)
                if w == n
            ]
            if len(owners) > 1:
                raise CodegenError(f"{target}: {owners[0]} and {owners[1]} would both be written as {n}; rename one")
            if owners:
                raise CodegenError(
                    f"{target}: {owners[0]} would be written as {n}, a name the generated file "
                    "already imports or defines; rename it"
                )
            raise CodegenError(f"{target}: the generated file binds {n} twice")  # pragma: no cover - a bug
    return source


# ----------------------------------------------------------------------------
# Stage tables


def _table_row(step: Step, p: Printer) -> dict[str, str] | None:
    """A stage's (or a block call's) arguments as source text by name
    (``in_channels``, ``units``, block arguments, first-unit overrides), or
    None when no table can hold it."""
    if step.unit is None or step.cond is not None or step.varies_with_i:
        return None
    if step.unpacks or step.collect or set(step.first) & set(step.attrs):
        return None
    row = {"in_channels": p.expr(step.in_channels)}
    if step.units is not None:
        row["units"] = p.expr(step.units)
    row |= {k: p.expr(v) for k, v in step.attrs.items()}
    return row | {f"first.{k}": p.expr(v) for k, v in step.first.items()}


def stage_tables(
    unit: Unit,
    model: CodeModel,
    p: Printer,
    too_long: Callable[[Step], bool],
    build: Callable[[str, str, list[str], str], list[str]],
    min_run: int = 3,
) -> dict[str, list[str]]:
    """Runs of ``min_run`` or more stages of one block that differ only in
    numbers, and whose calls do not fit one line each (``too_long``), as a
    settings table and one loop (as torchvision's ``inverted_residual_setting``);
    the same for numbered calls of one block (MobileNetV3's ``bneck1`` to
    ``bneck15``). ``build(variable, function, args, name)``: the loop's body,
    building ``function(*args)`` into ``variable`` and registering it under
    ``name`` (an expression). Returns the ``__init__`` lines by step: the
    table's under the first, none under the others."""
    if not unit.is_model:
        return {}  # a block's stages are few, and named after the block's own name
    callees = {u.class_name: u for u in model.units}
    runs: list[list[tuple[Step, dict[str, str]]]] = [[]]
    for step in unit.steps:
        row = _table_row(step, p)
        run = runs[-1]
        if row is None or (run and (run[0][0].unit != step.unit or _plain(run[0][1]) != _plain(row))):
            runs.append([])
        if row is not None:
            runs[-1].append((step, row))
    out: dict[str, list[str]] = {}
    for run in runs:
        if len(run) < min_run or not any(too_long(step) for step, _ in run):
            continue
        lines = _table(run, unit, callees[run[0][0].unit], p, build)
        if lines:
            out |= {step.name: [] for step, _ in run}
            out[run[0][0].name] = lines
    return out


def _plain(row: dict[str, str]) -> list[str]:
    """A row's keys but the first-unit overrides."""
    return [k for k in row if not k.startswith("first.")]


def _table(
    run: list[tuple[Step, dict[str, str]]],
    unit: Unit,
    block: Unit,
    p: Printer,
    build: Callable[[str, str, list[str], str], list[str]],
) -> list[str]:
    """The table of a run of stages (or numbered block calls) and the loop that
    builds them (empty when the table's column names would shadow an argument
    of the class, or block calls are not numbered)."""
    firsts = list(dict.fromkeys(k for _, row in run for k in row if k.startswith("first.")))
    defaults = {f"first.{k}": p.expr(v) for k, v in block.defaults.items()}
    if not set(firsts) <= set(defaults):
        return []
    rows = [{**row, **{k: row.get(k, defaults[k]) for k in firsts}} for _, row in run]
    columns = [k for k in rows[0] if k in ("in_channels", "units") or len({r[k] for r in rows}) > 1]
    names = [k.removeprefix("first.") for k in columns]
    taken = {a.name for a in unit.args} | {"i", "settings", "name", "stage", "block", "self"}
    if taken & set(names) or len(set(names)) < len(names):
        return []
    match = [re.fullmatch(r"(\D\w*?)(\d+)", step.name) for step, _ in run]
    numbered = all(match) and len({m.group(1) for m in match}) == 1  # type: ignore[union-attr]
    start = int(match[0].group(2)) if numbered else 0  # type: ignore[union-attr]
    numbered = numbered and [int(m.group(2)) for m in match] == list(range(start, start + len(run)))  # type: ignore[union-attr]
    stages = run[0][0].units is not None
    if not numbered and not stages:
        return []  # named calls (inception3a, ...) read better one per line
    if not numbered:
        names.insert(0, "name")
        columns.insert(0, "name")
        rows = [{"name": f'"{step.name}"', **row} for (step, _), row in zip(run, rows)]
    kwargs = [
        f"{k}={k if k in columns else rows[0][k]}" for k in _plain(rows[0]) if k not in ("name", "in_channels", "units")
    ]
    first = [f"{k[6:]}={k[6:] if k in columns else rows[0][k]}" for k in firsts]  # k: "first.<argument>"
    stage = f'f"{match[0].group(1)}{{i}}"' if numbered else "name"  # type: ignore[union-attr]
    if stages:
        fn, var = "make_stage", "stage"
        args = [
            run[0][0].unit,
            "in_channels",
            "units",
            *kwargs,
            *([f"first=dict({', '.join(first)})"] if first else []),
        ]
    else:
        fn, var, args = run[0][0].unit, "block", ["in_channels", *kwargs]  # type: ignore[list-item]
    comment = ", ".join(n for k, n in zip(columns, names) if not k.startswith("first."))
    first_columns = [n for k, n in zip(columns, names) if k.startswith("first.")]
    if first_columns:
        comment += f"; {', '.join(first_columns)} of the first unit"
    loop = f"enumerate(settings, start={start})" if numbered else "settings"
    target = f"i, ({', '.join(names)})" if numbered else f"{', '.join(names)}"
    return [
        f"# {comment}",
        "settings = [",
        *(f"    ({', '.join(row[k] for k in columns)})," for row in rows),
        "]",
        f"for {target} in {loop}:",
        *(f"    {line}" for line in build(var, fn, args, stage)),
    ]
