"""Graphviz diagrams of a compiled network.

:func:`to_dot` is a pure function from a :class:`~archspec.pipeline.Compiled`
network to DOT text; the same input always gives byte-identical text (every
order comes from the graph's node order, nothing from ``id()`` or hashing).
:func:`render` writes an SVG, PNG or PDF with Graphviz' ``dot`` program (the
DOT text itself for the ``dot`` format, and beside the drawing when ``dot`` is
missing or fails).

What a diagram shows:

* one box per op, labelled with the op and its key attributes
  (``conv 3x3, 64, /2``, ``max_pool 3x3 /2``, ``dense 1000``), coloured by the
  op's family (a legend lists the families drawn). A chain of ops where each
  feeds only the next, inside one block, shares a box when it holds at most one
  op that is not a norm, an activation or a dropout: ``conv 3x3, 64`` over
  ``BN | ReLU``, ``add`` over ``ReLU``. The box lists the ops in the order they
  run, each in its family's colour, so merging never hides an op;
* edges labelled with the shape of the tensor they carry (``64x56x56``); the
  edges into ``add`` / ``concat`` / ``multiply`` come from their real sources,
  so skip connections and concatenations stay visible;
* the input and every output as separate nodes;
* block instances as clusters labelled ``path: block(arguments)`` (arguments
  equal to their default are left out);
* a stage (a block with ``repeat``) as a dashed cluster ``layer2: bottleneck x4``.

Large networks stay readable: by default a diagram draws each distinct
structure once. Within a stage, a unit is drawn when its structure (ops and
wiring, attribute values aside) is new in the stage: the first unit, and for
example the first with an identity shortcut after a projection one, so skip
connections stay visible; every run of the other units is one stacked box
``layer2.2-3: bottleneck(width=128) x2`` whose outgoing edge carries the
stage's output shape. A block instance with the same block and structure as
one drawn earlier is one dashed box ``layer2.0: bottleneck(...)`` that says
``drawn in full at layer1.0``. So ResNet-152 draws like ResNet-50, DenseNet-264
like DenseNet-121. ``expand=True`` draws every unit and every instance;
``depth=N`` draws block instances nested deeper than ``N`` (0: the top level)
as single boxes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archspec import ops
from archspec.codegen.writer import write_atomic
from archspec.ir import INPUT, Graph, Instance, Node
from archspec.pipeline import Compiled
from archspec.summary import human, shape_str

FORMATS = ("svg", "png", "pdf", "dot")
DIRECTIONS = ("TB", "LR")
RENDER_TIMEOUT = 120.0  # seconds; dot lays out the largest default diagrams in about a second

INSTALL_HINT = (
    "Graphviz's `dot` program is not on PATH. Install Graphviz "
    "(Debian/Ubuntu: `sudo apt-get install graphviz`; macOS: `brew install graphviz`) and run again"
)

FAMILIES = ("conv", "dense", "pool", "norm", "activation", "merge", "reshape", "regularization")
FAMILY_COLORS = {
    "conv": "#8ecae6",
    "dense": "#b39ddb",
    "pool": "#a5d6a7",
    "norm": "#ffe082",
    "activation": "#ffab91",
    "merge": "#f48fb1",
    "reshape": "#b0bec5",
    "regularization": "#bcaaa4",
}
UNKNOWN_COLOR = "#ffffff"
# Ops of these families join the box of their only producer (see the module doc).
LIGHT = frozenset({"norm", "activation", "regularization"})

FONT = "Helvetica"
BORDER = "#555555"
CLUSTER_FILLS = ("#f4f6f8", "#e6eaee")  # alternate by nesting depth
BLOCK_FILL = "#eceff1"
LABEL_WIDTH = 48  # wrap argument lists in cluster and block labels


class DiagramError(Exception):
    """Rendering failed; the message says why and what to do."""


class GraphvizNotFound(DiagramError):
    """``dot`` is not on PATH. ``dot_path``: where the DOT source was written, if it was."""

    def __init__(self, dot_path: Path | None, fmt: str, target: Path | None) -> None:
        self.dot_path = dot_path
        where = (
            f". The DOT source was written to {dot_path}; render it later with: dot -T{fmt} {dot_path} -o {target}"
            if dot_path
            else ""
        )
        super().__init__(f"{INSTALL_HINT}{where}")


# ----------------------------------------------------------------------------
# Labels


def _dims(v: tuple[int, ...] | int) -> str:
    if isinstance(v, int):
        return str(v)
    return str(v[0]) if len(set(v)) == 1 and len(v) == 2 else "x".join(str(d) for d in v)


def _square(v: tuple[int, ...] | int) -> str:
    """Kernel size: 3 -> ``3x3``, (1, 7) -> ``1x7``."""
    if isinstance(v, int):
        return f"{v}x{v}"
    return "x".join(str(d) for d in v)


def _window_suffix(a: dict[str, Any]) -> list[str]:
    parts = []
    stride = a.get("stride")
    if stride is not None and any(s != 1 for s in (stride if isinstance(stride, tuple) else (stride,))):
        parts.append(f"/{_dims(stride)}")
    dilation = a.get("dilation")
    if dilation is not None and any(d != 1 for d in (dilation if isinstance(dilation, tuple) else (dilation,))):
        parts.append(f"d={_dims(dilation)}")
    return parts


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def op_label(node: Node) -> str:
    """The op and its key attributes, e.g. ``conv 3x3, 64, /2``."""
    a = node.attrs
    op = node.op
    if op == "conv2d":
        parts = [f"conv {_square(a['kernel'])}", str(a["out"]), *_window_suffix(a)]
        if a.get("groups", 1) != 1:
            parts.append(f"g={a['groups']}")
        return ", ".join(parts)
    if op == "depthwise_conv2d":
        parts = [f"dw conv {_square(a['kernel'])}"]
        if a.get("multiplier", 1) != 1:
            parts.append(f"x{a['multiplier']}")
        return ", ".join(parts + _window_suffix(a))
    if op == "separable_conv2d":
        return ", ".join([f"sep conv {_square(a['kernel'])}", str(a["out"]), *_window_suffix(a)])
    if op == "conv1d":
        parts = [f"conv1d {a['kernel']}", str(a["out"]), *_window_suffix(a)]
        if a.get("groups", 1) != 1:
            parts.append(f"g={a['groups']}")
        pad = a.get("padding")
        if a["kernel"] > 1 and pad == ((a["kernel"] - 1) * a.get("dilation", 1), 0):
            parts.append("causal")
        return ", ".join(parts)
    if op == "dense":
        return f"dense {a['out']}"
    if op in ("max_pool2d", "avg_pool2d"):
        kind = op.split("_")[0]
        return " ".join([f"{kind}_pool {_square(a['kernel'])}", *_window_suffix(a)]) + (
            " ceil" if a.get("ceil_mode") else ""
        )
    if op in ("global_avg_pool", "global_max_pool"):
        return f"global {op.split('_')[1]}_pool"
    if op == "batch_norm":
        return "BN"
    if op == "layer_norm":
        return "LayerNorm"
    if op == "instance_norm":
        return "InstanceNorm"
    if op == "lrn":
        return f"LRN {a['size']}"
    if op == "dropout":
        return f"dropout {_num(a['rate'])}"
    if op == "leaky_relu":
        return f"LeakyReLU {_num(a['negative_slope'])}"
    if op == "channel_shuffle":
        return f"shuffle g={a['groups']}"
    if op == "zero_pad2d":
        return "zero_pad " + ",".join(str(p) for p in a["padding"])
    names = {"relu": "ReLU", "relu6": "ReLU6", "silu": "SiLU", "hard_swish": "hard-swish"}
    return names.get(op, op)


def _args_str(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_num(v)}" for k, v in args.items())


def _wrap(text: str, width: int = LABEL_WIDTH) -> list[str]:
    """Wrap a ``k=v, k=v`` list at commas."""
    lines: list[str] = []
    cur = ""
    for part in text.split(", "):
        if cur and len(cur) + 2 + len(part) > width:
            lines.append(cur + ",")
            cur = part
        else:
            cur = f"{cur}, {part}" if cur else part
    if cur:
        lines.append(cur)
    return lines


def _family(node: Node) -> str:
    opdef = ops.OPS.get(node.op)
    return opdef.family if opdef is not None else "unknown"


def _color(family: str) -> str:
    return FAMILY_COLORS.get(family, UNKNOWN_COLOR)


# ----------------------------------------------------------------------------
# DOT quoting


def _q(text: str) -> str:
    """A DOT double-quoted string; newlines become centred line breaks."""
    return '"' + _esc(text) + '"'


def _h(text: str) -> str:
    """Text inside an HTML-like label."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


class _Html(str):
    """An HTML-like label: written as is, between ``<`` and ``>``."""


class _Raw(str):
    """An already escaped DOT string body."""


def _left(lines: list[str]) -> _Raw:
    """A DOT label string whose lines are left-justified (``\\l``)."""
    return _Raw("".join(_esc(line) + "\\l" for line in lines))


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _attrs(**kw: str | list[str] | None) -> str:
    """``[k="v", ...]``; a list is a label of centred lines; :class:`_Html` and
    :class:`_Raw` values are written as they are."""
    items = []
    for k, v in kw.items():
        if v is None:
            continue
        if isinstance(v, _Html):
            items.append(f"{k}=<{v}>")
        elif isinstance(v, _Raw):
            items.append(f'{k}="{v}"')
        elif isinstance(v, list):
            items.append(f"{k}={_q(chr(10).join(v))}")
        else:
            items.append(f"{k}={_q(v)}")
    return "[" + ", ".join(items) + "]"


# ----------------------------------------------------------------------------
# The layout model: boxes inside nested clusters


@dataclass
class _Box:
    id: str
    # "op": a chain of ops; "block": an instance deeper than ``depth``; "seen": an
    # instance whose structure is drawn in full at an earlier instance; "rest": folded units.
    kind: str
    container: str  # path of the enclosing cluster ("" at the top level)
    order: int  # index of the first node it holds
    members: list[Node] = field(default_factory=list)
    label: str = ""  # for every kind but "op"

    @property
    def heavy(self) -> int:
        return sum(1 for n in self.members if _family(n) not in LIGHT)


@dataclass
class _Cluster:
    path: str
    container: str
    order: int
    label: list[str]
    depth: int
    stage: bool


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


def _call_label(head: str, args: dict[str, Any], width: int = LABEL_WIDTH) -> list[str]:
    """``layer2.0: bottleneck(width=128, stride=2)``, wrapped at commas."""
    if not args:
        return [head]
    return _wrap(f"{head}({_args_str(args)})", width)


def _instance_label(inst: Instance, args: dict[str, Any]) -> list[str]:
    if inst.units:
        return [f"{inst.path}: {inst.block} x{inst.units}"]
    return _call_label(f"{inst.path}: {inst.block}", args)


def _rest_label(stage: Instance, units: list[Instance], args: list[dict[str, Any]]) -> list[str]:
    first, last = units[0], units[-1]
    # The arguments the folded units share (those that vary by unit are left out).
    shared = {k: v for k, v in args[0].items() if all(_same(a.get(k), v) for a in args)}
    if len(units) == 1:
        return _call_label(f"{first.path}: {stage.block}", shared)
    lines = _call_label(f"{stage.path}.{first.index}-{last.index}: {stage.block}", shared)
    lines[-1] += f" x{len(units)}"
    return lines


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


class _Layout:
    """Where every node of the graph is drawn: which box, inside which cluster."""

    def __init__(self, c: Compiled, depth: int | None, expand: bool) -> None:
        g = c.graph
        self.g = g
        self.depth = depth
        self.expand = expand
        self.instances = {i.path: i for i in g.instances}
        self.blocks = c.spec.blocks
        self.index = {n.path: k for k, n in enumerate(g.nodes)}
        self.first: dict[str, int] = {}  # instance path -> index of its first node
        self.inside: dict[str, list[Node]] = {}  # instance path -> its nodes, in order
        for k, n in enumerate(g.nodes):
            parts = n.path.split(".")
            for d in range(1, len(parts)):
                prefix = ".".join(parts[:d])
                self.first.setdefault(prefix, k)
                self.inside.setdefault(prefix, []).append(n)
        self.consumers: dict[str, list[str]] = {}
        for n in g.nodes:
            for ref in dict.fromkeys(n.inputs):
                self.consumers.setdefault(ref, []).append(n.path)
        self.outputs = set(g.outputs)
        # Folded stages: unit index -> None (drawn) or (rest box id, label).
        self.folds: dict[str, dict[int, tuple[str, str] | None]] = {}
        if not expand:
            for inst in g.instances:
                if inst.units:
                    self.folds[inst.path] = self._fold(inst)
        # Instances drawn in full, by (block, structure); instance -> the one it repeats.
        self.shown: dict[tuple[str, tuple], str] = {}
        self.repeats: dict[str, str | None] = {}
        self.boxes: dict[str, _Box] = {}
        self.clusters: dict[str, _Cluster] = {}
        self.box_of: dict[str, str] = {}  # node path -> box id
        for node in g.nodes:
            self._place(node)

    def _signature(self, unit: str) -> tuple:
        """A unit's structure: its ops and their wiring, attribute values left out."""
        cut = len(unit) + 1

        def rel(ref: str) -> str:
            return ref[cut:] if ref.startswith(unit + ".") else "@outside"

        return tuple((n.path[cut:], n.op, tuple(rel(r) for r in n.inputs)) for n in self.inside.get(unit, []))

    def _fold(self, stage: Instance) -> dict[int, tuple[str, str] | None]:
        """Draw each unit whose structure is new in the stage (the first unit,
        and for example the first with an identity shortcut where the first
        has a projection); fold every run of the others into one box."""
        plan: dict[int, tuple[str, str] | None] = {}
        seen: set[tuple] = set()
        runs: list[list[int]] = []
        for u in range(stage.units):
            sig = self._signature(f"{stage.path}.{u}")
            if sig not in seen:
                seen.add(sig)
                plan[u] = None
            elif u - 1 in plan and plan[u - 1] is None or not runs:
                runs.append([u])
            else:
                runs[-1].append(u)
        for run in runs:
            units = [self.instances[f"{stage.path}.{u}"] for u in run]
            box = (f"rest:{stage.path}.{run[0]}", "\n".join(_rest_label(stage, units, [self.args(u) for u in units])))
            for u in run:
                plan[u] = box
        return plan

    def _repeats(self, path: str) -> str | None:
        """The earlier instance drawn in full that ``path`` repeats (same block,
        same structure), or None if ``path`` is to be drawn in full itself."""
        if path not in self.repeats:
            key = (self.instances[path].block, self._signature(path))
            same = self.shown.get(key)
            if same is None or self._one_box(path):
                self.shown.setdefault(key, path)
                same = None
            self.repeats[path] = same
        return self.repeats[path]

    def _one_box(self, path: str) -> bool:
        """Whether an instance would be drawn as one box anyway (a chain of
        ops, at most one of them not light): then it is drawn, not referred to."""
        nodes = self.inside.get(path, [])
        for prev, n in zip(nodes, nodes[1:], strict=False):
            if (
                n.inputs != (prev.path,)
                or self.consumers.get(prev.path) != [n.path]
                or prev.path in self.outputs
                or n.scope != prev.scope
            ):
                return False
        return sum(1 for n in nodes if _family(n) not in LIGHT) <= 1

    def args(self, inst: Instance) -> dict[str, Any]:
        """The instance's arguments, less those equal to their default."""
        block = self.blocks.get(inst.block)
        params = block.params if block is not None else {}
        return {
            k: v
            for k, v in inst.args.items()
            if k not in params or params[k].default is ops.REQUIRED or not _same(v, params[k].default)
        }

    def _cluster(self, path: str) -> None:
        if path in self.clusters:
            return
        inst = self.instances[path]
        self.clusters[path] = _Cluster(
            path,
            _parent(path),
            self.first[path],
            _instance_label(inst, self.args(inst)),
            path.count("."),
            bool(inst.units),
        )

    def _place(self, node: Node) -> None:
        parts = node.path.split(".")
        for d in range(1, len(parts)):
            prefix = ".".join(parts[:d])
            inst = self.instances.get(prefix)
            if inst is None:  # pragma: no cover - every prefix of a node path is an instance
                continue
            if self.depth is not None and prefix.count(".") >= self.depth:
                label = _instance_label(inst, self.args(inst))
                self._add_to(f"block:{prefix}", "block", _parent(prefix), node, "\n".join(label))
                return
            same = None if inst.units or self.expand else self._repeats(prefix)
            if same is not None:
                label = [*_instance_label(inst, self.args(inst)), f"drawn in full at {same}"]
                self._add_to(f"block:{prefix}", "seen", _parent(prefix), node, "\n".join(label))
                return
            self._cluster(prefix)
            fold = self.folds.get(prefix, {}).get(int(parts[d])) if inst.units else None
            if fold is not None:
                self._add_to(fold[0], "rest", prefix, node, fold[1])
                return
        # An op of its own, or the next op of its producer's chain.
        if len(node.inputs) == 1 and node.inputs[0] != INPUT:
            src = node.inputs[0]
            box = self.boxes.get(self.box_of.get(src, ""))
            if (
                box is not None
                and box.kind == "op"
                and box.members[-1].path == src
                and box.container == node.scope
                and self.consumers.get(src) == [node.path]
                and src not in self.outputs
                and box.heavy + (_family(node) not in LIGHT) <= 1
            ):
                box.members.append(node)
                self.box_of[node.path] = box.id
                return
        self._add_to(node.path, "op", node.scope, node, "")

    def _add_to(self, box_id: str, kind: str, container: str, node: Node, label: str) -> None:
        box = self.boxes.get(box_id)
        if box is None:
            box = self.boxes[box_id] = _Box(box_id, kind, container, self.index[node.path], label=label)
        box.members.append(node)
        self.box_of[node.path] = box_id


def _op_table(box: _Box) -> _Html:
    """An HTML-like label: the box's ops in the order they run, a row for each
    op that is not light, light ops side by side, each cell in its family's colour."""
    rows: list[list[Node]] = []
    for n in box.members:
        light = _family(n) in LIGHT
        if light and rows and all(_family(m) in LIGHT for m in rows[-1]):
            rows[-1].append(n)
        else:
            rows.append([n])
    width = max(len(r) for r in rows)
    html = []
    for row in rows:
        cells = []
        for k, n in enumerate(row):
            span = width - len(row) + 1 if k == len(row) - 1 else 1
            light = _family(n) in LIGHT
            size = ' POINT-SIZE="9"' if light else ""
            colspan = f' COLSPAN="{span}"' if span > 1 else ""
            cells.append(f'<TD BGCOLOR="{_color(_family(n))}"{colspan}><FONT{size}>{_h(op_label(n))}</FONT></TD>')
        html.append("<TR>" + "".join(cells) + "</TR>")
    return _Html(
        f'<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3" COLOR="{BORDER}">'
        + "".join(html)
        + "</TABLE>"
    )


def _legend(families: list[str], kinds: set[str]) -> _Html:
    rows = ['<TR><TD COLSPAN="2"><B>op families</B></TD></TR>']
    for fam in families:
        rows.append(f'<TR><TD BGCOLOR="{_color(fam)}" WIDTH="16"> </TD><TD ALIGN="LEFT">{_h(fam)}</TD></TR>')
    notes = {
        "block": ("", "block instance (deeper than --depth)"),
        "seen": ("", "block drawn in full at the instance named"),
        "rest": ("x", "units folded (--expand draws all)"),
    }
    for kind, (mark, text) in notes.items():
        if kind in kinds:
            rows.append(f'<TR><TD BGCOLOR="{BLOCK_FILL}" WIDTH="16">{mark}</TD><TD ALIGN="LEFT">{text}</TD></TR>')
    return _Html(
        f'<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="2" COLOR="{BORDER}">'
        + "".join(rows)
        + "</TABLE>"
    )


def _title(c: Compiled) -> list[str]:

    g = c.graph
    t = c.counts.total
    counts = (
        f"{t.trainable:,} trainable + {t.non_trainable:,} non-trainable params"
        if t.non_trainable
        else (f"{t.trainable:,} params")
    )
    lines = [g.name, f"{counts}, {human(t.macs)} MACs"]
    params = ", ".join(f"{k}={_num(v)}" for k, v in g.params.items())
    if params:
        lines.extend(_wrap(params, 80))
    return lines


# ----------------------------------------------------------------------------
# The public API


def to_dot(compiled: Compiled, *, depth: int | None = None, expand: bool = False, direction: str = "TB") -> str:
    """DOT text for ``compiled``'s network (deterministic; see the module doc).

    ``depth``: draw block instances nested deeper than this as single boxes
    (0: every top-level instance is one box; None: no limit). ``expand``: draw
    every unit of every stage instead of folding repeated units.
    ``direction``: ``TB`` (top to bottom) or ``LR`` (left to right).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if depth is not None and depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    g: Graph = compiled.graph
    lay = _Layout(compiled, depth, expand)
    io = {"shape": "oval", "style": "filled,bold", "fillcolor": "white", "margin": "0.05"}

    out = [
        f"// {g.name}: diagram generated by archspec from {Path(g.file).name}; do not edit.",
        f"digraph {_q(g.name)} {{",
        "  graph "
        + _attrs(
            rankdir=direction,
            label=_title(compiled),
            labelloc="t",
            fontname=FONT,
            fontsize="14",
            nodesep="0.25",
            ranksep="0.2",
            newrank="true",
            tooltip=g.name,
        )
        + ";",
        "  node " + _attrs(fontname=FONT, fontsize="11", shape="box") + ";",
        "  edge " + _attrs(fontname=FONT, fontsize="9", fontcolor="#444444", color="#444444", arrowsize="0.7") + ";",
        "",
        "  " + _q("@input") + " " + _attrs(label=["input", shape_str(g.input_shape)], **io) + ";",
    ]

    children: dict[str, list[tuple[int, int, str, _Box | _Cluster]]] = {}
    for box in lay.boxes.values():
        children.setdefault(box.container, []).append((box.order, 1, box.id, box))
    for cl in lay.clusters.values():
        children.setdefault(cl.container, []).append((cl.order, 0, cl.path, cl))

    def emit(container: str, indent: str) -> None:
        for _, _, _, item in sorted(children.get(container, []), key=lambda t: t[:3]):
            if isinstance(item, _Cluster):
                out.append(f"{indent}subgraph {_q('cluster_' + item.path)} {{")
                style = "rounded,filled,dashed" if item.stage else "rounded,filled"
                attrs = _attrs(
                    label=_left(item.label),
                    style=style,
                    fillcolor=CLUSTER_FILLS[item.depth % 2],
                    margin="6",
                    color="#78909c",
                    fontsize="11",
                    labeljust="l",
                    tooltip=item.path,
                )
                out.append(f"{indent}  graph {attrs};")
                emit(item.path, indent + "  ")
                out.append(f"{indent}}}")
            else:
                out.append(indent + _box_stmt(item))

    emit("", "  ")
    for o in g.outputs:
        label = [f"output {o}", shape_str(g.shape_of(o))]
        out.append("  " + _q(f"@output:{o}") + " " + _attrs(label=label, **io) + ";")

    kinds = {b.kind for b in lay.boxes.values()}
    present = {_family(n) for b in lay.boxes.values() if b.kind == "op" for n in b.members}
    families = [f for f in FAMILIES if f in present]
    out.append("  " + _q("@legend") + " " + _attrs(label=_legend(families, kinds), shape="none", margin="0") + ";")
    out.append("  {rank=source; " + _q("@input") + "; " + _q("@legend") + ";}")
    out.append("")

    # One edge per (source box, target box, shape); several distinct tensors
    # along one edge (the skip outputs of a folded stage's units) say how many.
    edges: dict[tuple[str, str, str], set[str]] = {}
    for node in g.nodes:
        dst = lay.box_of[node.path]
        for ref in node.inputs:
            src = "@input" if ref == INPUT else lay.box_of[ref]
            if src != dst:
                edges.setdefault((src, dst, shape_str(g.shape_of(ref))), set()).add(ref)
    for (src, dst, shape), refs in edges.items():
        label = f" {len(refs)} x {shape}" if len(refs) > 1 else f" {shape}"
        out.append(f"  {_q(src)} -> {_q(dst)} {_attrs(label=label)};")
    for o in g.outputs:
        out.append(f"  {_q(lay.box_of[o])} -> {_q('@output:' + o)} {_attrs(label=' ' + shape_str(g.shape_of(o)))};")
    out.append("}")
    return "\n".join(out) + "\n"


def _box_stmt(box: _Box) -> str:
    if box.kind == "op":
        tooltip = ", ".join(n.path for n in box.members)
        return (
            f"{_q(box.id)} "
            f"{_attrs(label=_op_table(box), shape='none', margin='0', width='0', height='0', tooltip=tooltip)};"
        )
    shape, style = ("box3d", "filled") if box.kind == "rest" else ("box", "filled,rounded")
    if box.kind == "seen":
        style = "filled,rounded,dashed"
    return f"{_q(box.id)} {_attrs(label=box.label, shape=shape, style=style, fillcolor=BLOCK_FILL)};"


_NODE_RE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)"\s*\[')


def box_count(dot_text: str) -> int:
    """Boxes drawn for the network in DOT text from :func:`to_dot`: op boxes,
    collapsed blocks, folded units, the input and the outputs (not the legend)."""
    count = 0
    for line in dot_text.splitlines():
        m = _NODE_RE.match(line)
        if m and m.group(1) != "@legend":
            count += 1
    return count


def run_dot(dot_text: str, fmt: str = "svg", *, timeout: float = RENDER_TIMEOUT) -> bytes:
    """Render DOT text with Graphviz' ``dot`` and return the drawing.

    Raises :class:`GraphvizNotFound` when ``dot`` is not on PATH (its
    ``dot_path`` is None then), :class:`DiagramError` when it fails or times out.
    """
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizNotFound(None, fmt, None)
    try:
        proc = subprocess.run(
            [exe, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise DiagramError(
            f"dot took longer than {timeout:g} s to render; try --depth 1 or the default folded stages"
        ) from None
    if proc.returncode != 0:
        raise DiagramError(f"dot failed (exit {proc.returncode}): {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def render(dot_text: str, path: str | Path, fmt: str = "svg", *, timeout: float = RENDER_TIMEOUT) -> list[Path]:
    """Render ``dot_text`` to ``path`` in ``fmt`` (svg, png or pdf) with
    Graphviz' ``dot``, or write the DOT text itself when ``fmt`` is ``dot``.
    Files are written atomically (a temporary file in the same directory, then
    :func:`os.replace`). Returns the paths written.

    When ``dot`` is missing or fails, the DOT source is written beside ``path``
    (suffix ``.dot``) so that nothing is lost, and :class:`GraphvizNotFound`
    (with the install command) or :class:`DiagramError` is raised.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    path = Path(path)
    if fmt != "dot" and path.suffix.lower() == ".dot":
        raise ValueError(f"{path} would hold the {fmt} drawing and the DOT source; name it .{fmt}")
    dot_path = path.with_suffix(".dot")
    if fmt == "dot":
        write_atomic(path, dot_text.encode("utf-8"))
        return [path]
    try:
        drawing = run_dot(dot_text, fmt, timeout=timeout)
    except GraphvizNotFound:
        write_atomic(dot_path, dot_text.encode("utf-8"))
        raise GraphvizNotFound(dot_path, fmt, path) from None
    except DiagramError as exc:
        write_atomic(dot_path, dot_text.encode("utf-8"))
        raise DiagramError(f"{exc} (the DOT source is in {dot_path})") from None
    write_atomic(path, drawing)
    return [path]
