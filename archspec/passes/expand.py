"""Expand a validated spec into the IR graph.

Expansion instantiates blocks and repeats, evaluates every expression,
resolves ``same`` padding per side and infers the output shape of every node
with the op table's rules. Shapes are inferred during the same walk because
the walk needs them: ``same`` padding depends on the input size, and a block
may size itself from ``in_channels``.

Every error is collected (once per source position) and raised together.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from typing import Any

import yaml

from archspec import ops
from archspec.diagnostics import Collector, Pos, did_you_mean, one_of, show
from archspec.ir import INPUT, Graph, Instance, Node, Shape
from archspec.schema import expr as E
from archspec.schema.spec import NodeDef, ParamDef, Spec, Value, key_hint
from archspec.schema.yamlload import yaml11_surprise

MAX_NODES = 10_000  # benchmarks/node_limit.py: verify time grows with it
MAX_REPEAT = 1_000
MAX_SIZE = 1_000_000  # any single size: channels, kernel, spatial extent
MAX_ELEMENTS = 2**31  # elements of one per-sample tensor


class _Abort(Exception):
    """Stop expanding: a limit was hit and going on would only cost time."""


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["alpha=0.5", ...]`` -> ``{"alpha": "0.5"}``; raises ValueError."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        if key.strip() in out:
            raise ValueError(f"--set {key.strip()} is given twice; give each parameter once")
        out[key.strip()] = value.strip()
    return out


INPUT_FORMS = "CxHxW (e.g. 3x112x112) or CxL (e.g. 1x16000)"


def parse_input(value: str) -> tuple[int, ...]:
    """``"3x112x112"`` -> ``(3, 112, 112)``: 1 to 3 sizes, channels first; raises ValueError."""
    parts = [p.strip() for p in value.strip().lower().split("x")]
    if not value.strip():
        raise ValueError(f"expected {INPUT_FORMS}, got nothing")
    if len(parts) > 3:
        raise ValueError(f"expected {INPUT_FORMS}, got {value!r} ({len(parts)} sizes)")
    shape = []
    for part in parts:
        if not re.fullmatch(r"[+-]?[0-9]+", part):
            what = "an empty size" if not part else f"{part!r} is not a whole number"
            raise ValueError(f"expected {INPUT_FORMS}, got {value!r} ({what})")
        n = int(part) if len(part) <= 10 else MAX_SIZE + 1
        if not 1 <= n <= MAX_SIZE:
            raise ValueError(f"sizes must be whole numbers from 1 to {MAX_SIZE}, got {value!r} ({part})")
        shape.append(n)
    return tuple(shape)


def expand(spec: Spec, overrides: Mapping[str, str] | None = None, input_shape: tuple[int, ...] | None = None) -> Graph:
    """Expand ``spec`` with ``overrides`` (raw ``--set`` strings) and, when
    given, ``input_shape`` (from ``--input``) in place of the spec's input. Raises SpecError."""
    return _Expander(spec).run(dict(overrides or {}), input_shape)


def _typed(value: Any, ptype: str) -> Any:
    """Coerce ``value`` to a parameter type, or raise TypeError."""
    if ptype == "bool":
        if isinstance(value, bool):
            return value
        raise TypeError("expected true or false")
    if ptype == "str":
        if isinstance(value, str):
            return value
        raise TypeError("expected a string")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected {'an integer' if ptype == 'int' else 'a number'}")
    if isinstance(value, float) and not math.isfinite(value):
        raise TypeError("expected a finite number")
    if ptype == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise TypeError("expected an integer; use int(), round() or make_divisible()")
            return int(value)
        return value
    return float(value)


class _Expander:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.diag = Collector()
        self.seen: set[tuple[Pos, str]] = set()
        self.nodes: list[Node] = []
        self.instances: list[Instance] = []
        self.input_pos: Pos | None = None  # where --input is "written", when it replaces the spec's input
        self.input_note = ""  # added to shape errors when the input came from --input

    def err(self, pos: Pos, code: str, message: str) -> None:
        if (pos, code) not in self.seen:  # a block's error repeats in every instance
            self.seen.add((pos, code))
            self.diag.error(pos, code, message)

    # -- values ---------------------------------------------------------------

    def eval(self, v: Value, env: Mapping[str, Any]) -> Any:
        """Evaluate a spec value; returns None (after reporting) on error."""
        if v.items is not None:
            items = [self.eval(i, env) for i in v.items]
            return None if any(i is None for i in items) else items
        if v.expr is None:
            return v.raw
        try:
            return E.evaluate(v.expr, env)
        except E.ExprError as exc:
            pos = Pos(v.pos.file, v.pos.line, v.pos.col + exc.col) if v.exact else v.pos
            self.err(pos, exc.code, f"in expression {show(v.raw, 60)}: {exc.message}")
            return None

    def attr(self, op: str, name: str, attr: ops.Attr, value: Any, pos: Pos, path: str) -> Any:
        """Check an evaluated attribute against its kind; None on error."""

        def bad(what: str, code: str = "E101") -> None:
            self.err(pos, code, f"{path}: attribute '{name}' of {op} {what} (got {show(value)})")

        def size(x: Any) -> int | None:
            if isinstance(x, float) and x.is_integer():
                x = int(x)
            if isinstance(x, bool) or not isinstance(x, int):
                return None
            return x

        kind = attr.kind
        if kind == "bool":
            if not isinstance(value, bool):
                return bad("must be true or false")
            return value
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return bad("must be a number")
            if not math.isfinite(value):
                return bad("must be a finite number")
            if (attr.min is not None and value < attr.min) or (attr.max is not None and value > attr.max):
                if attr.max is None:
                    return bad(f"must be at least {attr.min}", "E303")
                if attr.min is None:
                    return bad(f"must be at most {attr.max}", "E303")
                return bad(f"must be between {attr.min} and {attr.max}", "E303")
            return float(value)
        if kind == "choice":
            if value not in attr.choices:
                return bad(f"must be one of: {', '.join(attr.choices)}")
            return value
        if kind in PAD_WORDS and isinstance(value, str):
            if value not in PAD_WORDS[kind]:
                return bad(f"must be a size or one of: {', '.join(PAD_WORDS[kind])}")
            return value
        lengths = {"int": (1,), "pair": (1, 2), "pad2d": (1, 2, 4), "pad1d": (1, 2)}[kind]
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and len(value) not in lengths[1:]:
            forms = {
                "pair": "k or [h, w]",
                "pad2d": "p, [h, w] or [top, bottom, left, right]",
                "pad1d": "p or [left, right]",
                "int": "a single integer",
            }[kind]
            return bad(f"must be {forms}")
        out = []
        for x in items:
            n = size(x)
            if n is None:
                return bad("must be an integer" if kind == "int" else "must be integers")
            lo = attr.min if attr.min is not None else 0
            if n < lo:
                return bad(f"must be at least {int(lo)}", "E303")
            if n > MAX_SIZE:
                return bad(f"must be at most {MAX_SIZE}", "E305")
            out.append(n)
        return out[0] if not isinstance(value, list) else tuple(out)

    # -- parameters -------------------------------------------------------------

    def params(self, overrides: dict[str, str]) -> dict[str, Any]:
        env: dict[str, Any] = {}
        for name, p in self.spec.params.items():
            env[name] = p.default
        for key, text in overrides.items():
            pos = Pos(f"--set {key}={text}")
            p = self.spec.params.get(key)
            if p is None:
                known = ", ".join(self.spec.params) or "none"
                self.err(
                    pos,
                    "E203",
                    f"unknown parameter '{key}'{did_you_mean(key, self.spec.params)}; {self.spec.name} takes: {known}",
                )
                continue
            try:
                raw = yaml.safe_load(text) if text else None
            except yaml.YAMLError:
                raw = text
            if p.type == "str" and not isinstance(raw, str):
                raw = text
            elif isinstance(raw, (int, float)) and (surprise := yaml11_surprise(text, raw, may_quote=False)):
                self.err(pos, "E304", f"bad value {show(text)} for '{key}' ({p.type}): {surprise}")
                continue
            if p.type in ("int", "float") and isinstance(raw, str):
                with contextlib.suppress(ValueError):
                    raw = float(raw)  # YAML 1.1 reads 1e-3 as a string
            try:
                env[key] = _typed(raw, p.type)
            except TypeError as exc:
                self.err(pos, "E304", f"bad value {show(text)} for '{key}' ({p.type}): {exc}")
                continue
            if p.choices and env[key] not in p.choices:
                self.err(
                    pos,
                    "E304",
                    f"bad value {show(text)} for '{key}'{did_you_mean(str(env[key]), p.choices)}; {one_of(p.choices)}",
                )
        return env

    def args(
        self,
        nd: NodeDef,
        block_params: dict[str, ParamDef],
        values: dict[str, Value],
        env: Mapping[str, Any],
        path: str,
    ) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        ok = True
        for key, v in values.items():
            p = block_params.get(key)
            if p is None:
                self.err(
                    v.key_pos or v.pos,
                    "E203",
                    f"block '{nd.block}' has no parameter '{key}'{key_hint(key, list(block_params))}; "
                    f"it takes: {', '.join(block_params) or 'nothing'}",
                )
                ok = False
                continue
            value = self.eval(v, env)
            if value is None:
                ok = False
                continue
            try:
                out[key] = _typed(value, p.type)
            except TypeError as exc:
                hint = ""
                if p.type == "str" and isinstance(v.expr, E.Name):  # a word that names something in scope
                    hint = (
                        f"; the word '{v.raw}' is the name in scope here, not a string: "
                        f"to pass the string, quote it: \"'{v.raw}'\""
                    )
                self.err(
                    v.pos, "E101", f"{path}: argument '{key}' of block '{nd.block}': {exc} (got {show(value)}){hint}"
                )
                ok = False
        for name, p in block_params.items():
            if name not in out and name not in values:
                if p.default is ops.REQUIRED:
                    self.err(nd.pos, "E206", f"block '{nd.block}' needs argument '{name}' ({p.type})")
                    ok = False
                else:
                    out[name] = p.default
        return out if ok else None

    # -- the input --------------------------------------------------------------

    def given_input(self, own: tuple[int, ...], given: tuple[int, ...]) -> tuple[int, ...]:
        """Check an ``--input`` shape against the spec's own input and use it."""
        self.input_pos = Pos(f"--input {_x(given)}")
        if len(given) != len(own):
            self.err(
                self.input_pos,
                "E404",
                f"{self.spec.name}'s input is {_x(own)}, {_FORMS[len(own)]}, but --input gives {len(given)} "
                f"size{'s' if len(given) > 1 else ''}; give --input {_FORMS[len(own)]}, e.g. --input {_x(own)}",
            )
            return own
        self.input_note = f"; the network's input, {_x(given)}, came from --input (the spec's own is {_x(own)})"
        return given

    def shape_err(self, pos: Pos, code: str, message: str) -> None:
        """A shape error, which says what to give when the input came from --input."""
        if self.input_note:
            fix = {"E402": "larger", "E405": "larger", "E305": "smaller"}.get(code, "another")
            message += f"{self.input_note}: give a {fix} --input"
        self.err(pos, code, message)

    # -- walk -------------------------------------------------------------------

    def run(self, overrides: dict[str, str], given: tuple[int, ...] | None = None) -> Graph:
        spec = self.spec
        env = self.params(overrides)
        shape: list[int] = []
        for v in spec.input:
            d = self.eval(v, env)
            if d is None:
                continue
            if isinstance(d, float) and d.is_integer():
                d = int(d)
            if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= MAX_SIZE:
                self.err(v.pos, "E303", f"input sizes must be integers from 1 to {MAX_SIZE} (got {show(d)})")
                continue
            shape.append(d)
        self.diag.raise_if_any()
        self.globals = env
        input_shape = tuple(shape) if given is None else self.given_input(tuple(shape), given)
        if math.prod(input_shape) > MAX_ELEMENTS:
            what = f"the input {_x(input_shape)} has more than {MAX_ELEMENTS} elements; use a smaller one"
            self.err(self.input_pos or spec.input[0].pos, "E305", what)
        self.diag.raise_if_any()
        try:
            refs, skipped = self.scope(spec.layers, "", env, INPUT, input_shape)
        except _Abort:
            self.diag.raise_if_any()
            raise  # pragma: no cover
        if spec.outputs:
            outputs = [refs[name][0] for name, _ in spec.outputs if name not in skipped]
            if not outputs:
                self.err(spec.outputs[0][1], "E303", "every output is switched off by its 'when'")
        else:
            outputs = [refs["__last__"][0]]
        outputs = list(dict.fromkeys(outputs))
        if outputs and outputs[0] == INPUT:
            self.err(spec.pos, "E405", "the network does nothing: its output is its input")
        self.diag.raise_if_any()
        return Graph(
            name=spec.name,
            source=spec.source,
            file=spec.file,
            params=env,
            input_shape=input_shape,
            nodes=self.nodes,
            outputs=outputs,
            instances=self.instances,
            description=spec.description,
        )

    def scope(
        self,
        defs: list[NodeDef],
        prefix: str,
        env: Mapping[str, Any],
        input_ref: str,
        input_shape: Shape | None,
    ) -> tuple[dict[str, tuple[str, Shape | None]], set[str]]:
        """Expand one list of nodes. Returns the name table (name -> (ref,
        shape)) with the key ``__last__`` for the list's last value, and the
        names that were skipped by ``when``."""
        names: dict[str, tuple[str, Shape | None]] = {INPUT: (input_ref, input_shape)}
        # Named outputs of block nodes: name -> output -> the value of each unit.
        named: dict[str, dict[str, list[tuple[str, Shape | None]]]] = {}
        prev = names[INPUT]
        skipped: set[str] = set()
        for nd in defs:
            chosen = [self.choose(nd, j, env, names, skipped) for j in range(len(nd.inputs or []))]
            per_ref = [_lookup(r, names, named) if r else [(prefix + nd.name, None)] for r in chosen]
            ins = [v for vs in per_ref for v in vs] if nd.inputs else [prev]
            if nd.when is not None:
                cond = self.eval(nd.when, env)
                if cond is None:  # reported; later nodes may still name this one
                    names[nd.name] = prev = (prefix + nd.name, None)
                    continue
                if not cond:
                    names[nd.name] = prev = ins[0]
                    skipped.add(nd.name)
                    continue
            self.check_stand_ins(nd, per_ref, names, skipped)
            path = prefix + nd.name
            if nd.op is not None:
                result = self.op_node(nd, path, env, ins)
            else:
                result, named[nd.name] = self.block_node(nd, path, env, ins[0])
            names[nd.name] = prev = result
        names["__last__"] = prev
        return names, skipped

    def choose(
        self, nd: NodeDef, j: int, env: Mapping[str, Any], names: dict[str, tuple[str, Shape | None]], skipped: set[str]
    ) -> str | None:
        """The reference input ``j`` of ``nd`` reads: a conditional input's
        ``then`` or ``else`` by its condition, whose ``then`` node must be
        there exactly where the condition holds (None, reported, where not)."""
        ref = nd.inputs[j][0]  # type: ignore[index]
        c = nd.choices.get(j)
        if c is None:
            return ref
        cond = self.eval(c.cond, env)
        if cond is None or names[c.then][1] is None and c.then not in skipped:  # reported already
            return c.then
        left_out = c.then in skipped
        if bool(cond) == left_out:
            state = "left out (its 'when' is false)" if left_out else "there (its 'when' is true)"
            self.err(
                c.then_pos,
                "E211",
                f"{nd.name}: the condition '{c.cond.raw}' is {show(bool(cond))} here but '{c.then}' is {state}; "
                f"'{c.then}' must be there exactly where the condition holds: give it 'when: {c.cond.raw}'",
            )
            return None
        return c.then if cond else c.other

    def check_stand_ins(
        self,
        nd: NodeDef,
        per_ref: list[list[tuple[str, Shape | None]]],
        names: dict[str, tuple[str, Shape | None]],
        skipped: set[str],
    ) -> None:
        """A node that reads a left-out node whose stand-in (its first input) is
        another of its inputs would take that value twice (``add: [bn2,
        downsample]`` where a left-out ``downsample`` has no ``in: input``)."""
        for j, (ref, rpos) in enumerate(nd.inputs or []):
            if j in nd.choices or ref not in skipped:
                continue
            value = names[ref][0]
            local = next((n for n, (v, _) in names.items() if v == value and n not in skipped), value)
            if any(value == v for k, vs in enumerate(per_ref) if k != j for v, _ in vs):
                self.err(
                    rpos,
                    "E212",
                    f"{nd.name}: '{ref}' is left out here (its 'when' is false), so it stands for its first "
                    f"input, '{local}', which {nd.name} reads already: it would take that value twice; give "
                    f"'{ref}' the input it should stand for ('in: input'), or choose with "
                    f"{{if: COND, then: {ref}, else: NODE}}",
                )

    def op_node(
        self, nd: NodeDef, path: str, env: Mapping[str, Any], ins: list[tuple[str, Shape | None]]
    ) -> tuple[str, Shape | None]:
        opdef = ops.OPS[nd.op]
        attrs: dict[str, Any] = {}
        failed = False
        for name, attr in opdef.attrs.items():
            if name in nd.attrs:
                v = nd.attrs[name]
                raw = self.eval(v, env)
                value = None if raw is None else self.attr(nd.op, name, attr, raw, v.pos, path)
                if value is None:
                    failed = True
                attrs[name] = value
            else:
                attrs[name] = attr.default
        if not opdef.min_inputs <= len(ins) <= opdef.max_inputs:
            want = (
                str(opdef.min_inputs)
                if opdef.min_inputs == opdef.max_inputs
                else f"{opdef.min_inputs} to {opdef.max_inputs}"
            )
            what = "input" if want == "1" else "inputs"
            fix = "list them under 'in'" if len(ins) < opdef.min_inputs else "name fewer nodes under 'in'"
            self.err(nd.pos, "E209", f"{path}: {nd.op} takes {want} {what}, got {len(ins)}; {fix}")
            return path, None
        shapes = [s for _, s in ins]
        if failed or any(s is None for s in shapes):
            return path, None
        for i, s in enumerate(shapes):
            if len(s) not in opdef.ranks:
                dims = {1: "(features,)", 2: "(C, L)", 3: "(C, H, W)"}
                want = " or ".join(dims[r] for r in opdef.ranks)
                hint = "; add a flatten or global pool before it" if opdef.ranks == (1,) else ""
                self.err(
                    nd.pos,
                    "E404",
                    f"{path}: {nd.op} takes {want} input, but input {i + 1} ({ins[i][0]}) has shape {_fmt(s)}{hint}",
                )
                return path, None
        try:
            attrs = opdef.resolve(attrs, shapes)
            shape = opdef.shape(attrs, shapes)
        except ops.ShapeError as exc:
            detail = ", ".join(f"{ref} {_fmt(s)}" for ref, s in ins)
            self.shape_err(nd.pos, exc.code, f"{path}: {exc.message} [input: {detail}]")
            return path, None
        if any(d < 1 for d in shape):
            self.shape_err(nd.pos, "E405", f"{path}: output shape {_fmt(shape)} is empty; the input is too small")
            return path, None
        if math.prod(shape) > MAX_ELEMENTS:
            self.shape_err(
                nd.pos,
                "E305",
                f"{path}: output {_fmt(shape)} has more than {MAX_ELEMENTS} elements; "
                "use fewer channels or a smaller input",
            )
            return path, None
        big = next((w for w in opdef.weights(attrs, shapes) if w.size > MAX_ELEMENTS), None)
        if big is not None:
            self.shape_err(
                nd.pos,
                "E305",
                f"{path}: its {big.name} {_fmt(big.shape)} has more than {MAX_ELEMENTS} elements "
                f"[input: {', '.join(f'{ref} {_fmt(s)}' for ref, s in ins)}]; use a smaller input or fewer units",
            )
            return path, None
        if len(self.nodes) >= MAX_NODES:
            self.err(
                nd.pos,
                "E305",
                f"the network expands to more than {MAX_NODES:,} nodes, archspec's limit (densenet264 has 931); "
                "reduce repeat counts",
            )
            raise _Abort
        self.nodes.append(Node(path, nd.op, attrs, tuple(r for r, _ in ins), tuple(shapes), shape, nd.pos))
        return path, shape

    def block_node(
        self, nd: NodeDef, path: str, env: Mapping[str, Any], inp: tuple[str, Shape | None]
    ) -> tuple[tuple[str, Shape | None], dict[str, list[tuple[str, Shape | None]]]]:
        """Expand a block node (a stage when it repeats). Returns its value and
        the value of each of its named outputs in every unit."""
        block = self.spec.blocks[nd.block]
        outs = block.output_names()
        failed: tuple[tuple[str, Shape | None], dict[str, list[tuple[str, Shape | None]]]] = (
            (path, None),
            {o: [(path, None)] for o in outs},
        )
        units = None
        if nd.repeat is not None:
            units = self.eval(nd.repeat, env)
            if units is None:
                return failed
            if isinstance(units, bool) or not isinstance(units, int) or units < 1:
                self.err(nd.repeat.pos, "E303", f"{path}: repeat must be a positive integer (got {show(units)})")
                return failed
            if units > MAX_REPEAT:
                self.err(nd.repeat.pos, "E305", f"{path}: repeat {units} is more than the limit of {MAX_REPEAT} units")
                return failed
        cur = inp
        first_in = inp[1]
        named: dict[str, list[tuple[str, Shape | None]]] = {o: [] for o in outs}
        for u in range(units or 1):
            local = {**env, "i": u} if units else env
            values = {**nd.attrs, **nd.first} if units and u == 0 else nd.attrs
            args = self.args(nd, block.params, values, local, path)
            if args is None or cur[1] is None:
                return failed
            unit_path = f"{path}.{u}" if units else path
            benv = {**self.globals, **args, "in_channels": cur[1][0]}
            for lname, lv in block.lets:
                benv[lname] = self.eval(lv, benv)
                if benv[lname] is None:
                    return failed
            refs, _ = self.scope(block.nodes, unit_path + ".", benv, cur[0], cur[1])
            unit_in = cur[1]
            for o in outs:
                named[o].append(refs[o])
            cur = refs[block.output]
            if any(named[o][-1][1] is None for o in outs):
                return failed
            side = tuple((o, refs[o][0]) for o in outs[1:])
            self.instances.append(
                Instance(unit_path, block.name, args, unit_in, cur[1], cur[0], nd.pos, u if units else None, 0, side)
            )
        if units:
            self.instances.append(Instance(path, block.name, {}, first_in, cur[1], cur[0], nd.pos, units=units))
        return cur, named


def _lookup(
    ref: str,
    names: dict[str, tuple[str, Shape | None]],
    named: dict[str, dict[str, list[tuple[str, Shape | None]]]],
) -> list[tuple[str, Shape | None]]:
    """The values a reference stands for: a node's (``conv1``), a block's
    named output (``gate.skip``), or that output of every unit (``stack.*.skip``)."""
    if "." not in ref:
        return [names[ref]]
    node, *_, out = ref.split(".")
    if node not in named:  # the node failed to expand (reported) or was left out
        return [names[node]]
    return named[node][out]


PAD_WORDS = {"pad2d": ("same", "valid"), "pad1d": ("same", "valid", "causal")}


def _fmt(shape: Shape | None) -> str:
    return "?" if shape is None else "(" + ", ".join(str(d) for d in shape) + ")"


def _x(shape: Shape) -> str:
    """``(3, 112, 112)`` -> ``3x112x112``, as --input takes it."""
    return "x".join(str(d) for d in shape)


_FORMS = {1: "F (features)", 2: "CxL", 3: "CxHxW"}
