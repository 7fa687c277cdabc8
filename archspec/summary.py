"""Per-layer summaries of a compiled network: text table, Markdown, JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from archspec.ir import Shape
from archspec.passes.count import Count
from archspec.pipeline import Compiled

COUNTING = (
    "Shapes are per sample, channels first. Params: trainable + non-trainable "
    "(batch-norm running mean and variance). MACs: multiply-accumulates of "
    "convolutions and dense layers, per sample; other ops count 0."
)


@dataclass(frozen=True)
class Row:
    depth: int
    label: str  # what the table shows in the first column
    path: str
    op: str  # op name, or "block" / "block x N" for instances
    shape: Shape
    count: Count
    is_node: bool


def rows(c: Compiled, max_depth: int | None = None) -> list[Row]:
    """Table rows in network order: each block instance is a header row (with
    the sums of what it holds) followed by its contents, indented."""
    instances = {i.path: i for i in c.graph.instances}
    out: list[Row] = []
    opened: set[str] = set()
    for node in c.graph.nodes:
        parts = node.path.split(".")
        for depth in range(1, len(parts)):
            prefix = ".".join(parts[:depth])
            if prefix in opened:
                continue
            opened.add(prefix)
            if max_depth is not None and depth - 1 > max_depth:
                continue
            inst = instances[prefix]
            op = f"{inst.block} x{inst.units}" if inst.units else inst.block
            out.append(Row(depth - 1, prefix, prefix, op, inst.shape, c.counts.scopes[prefix], False))
        depth = len(parts) - 1
        if max_depth is None or depth <= max_depth:
            label = node.name if depth else node.path
            out.append(Row(depth, label, node.path, node.op, node.shape, c.counts.nodes[node.path], True))
    return out


def shape_str(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def human(n: int) -> str:
    """1234567 -> '1.23M'."""
    for unit, scale in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def header_lines(c: Compiled) -> list[str]:
    g = c.graph
    outs = ", ".join(f"{o} {shape_str(g.shape_of(o))}" for o in g.outputs)
    params = ", ".join(f"{k}={v}" for k, v in g.params.items())
    return [
        f"{g.name}  ({g.file})",
        f"input {shape_str(g.input_shape)} -> {outs}",
        *([f"params: {params}"] if params else []),
    ]


def total_lines(c: Compiled) -> list[tuple[str, str]]:
    t = c.counts.total
    return [
        ("Trainable params", f"{t.trainable:,}"),
        ("Non-trainable params", f"{t.non_trainable:,}"),
        ("Total params", f"{t.total:,}"),
        ("MACs", f"{t.macs:,} ({human(t.macs)})"),
    ]


def format_table(c: Compiled, max_depth: int | None = None) -> str:
    table = rows(c, max_depth)
    labels = ["  " * r.depth + r.label for r in table]
    cols = [
        ("Layer", labels, "<"),
        ("Op", [r.op for r in table], "<"),
        ("Output shape", [shape_str(r.shape) for r in table], "<"),
        ("Params", [f"{r.count.total:,}" if r.count.total else "-" for r in table], ">"),
        ("MACs", [human(r.count.macs) if r.count.macs else "-" for r in table], ">"),
    ]
    widths = [max(len(h), *(len(v) for v in vals)) if vals else len(h) for h, vals, _ in cols]

    def line(values: list[str]) -> str:
        cells = [f"{v:{a}{w}}" for v, (_, _, a), w in zip(values, cols, widths)]
        return "  ".join(cells).rstrip()

    rule = "-" * len(line([h for h, _, _ in cols]))
    out = [*header_lines(c), "", line([h for h, _, _ in cols]), rule]
    out += [line([col[1][i] for col in cols]) for i in range(len(table))]
    out.append(rule)
    totals = total_lines(c)
    w = max(len(k) for k, _ in totals)
    out += [f"{k + ':':<{w + 1}} {v}" for k, v in totals]
    return "\n".join(out) + "\n"


def format_markdown(c: Compiled, max_depth: int | None = None) -> str:
    g = c.graph
    out = [f"# {g.name}", "", g.source.strip(), ""]
    out += [f"- Input: `{shape_str(g.input_shape)}`"]
    out += [f"- Output `{o}`: `{shape_str(g.shape_of(o))}`" for o in g.outputs]
    if g.params:
        out.append("- Parameters: " + ", ".join(f"`{k}={v}`" for k, v in g.params.items()))
    out += [f"- {k}: {v}" for k, v in total_lines(c)]
    out += ["", COUNTING, "", "| Layer | Op | Output shape | Params | MACs |", "|---|---|---|---:|---:|"]
    for r in rows(c, max_depth):
        indent = "&nbsp;&nbsp;" * r.depth
        label = f"{indent}`{r.path}`" if r.is_node else f"{indent}**`{r.path}`**"
        out.append(f"| {label} | {r.op} | {shape_str(r.shape)} | {r.count.total:,} | {r.count.macs:,} |")
    return "\n".join(out) + "\n"


def _count_obj(cnt: Count) -> dict[str, int]:
    return {"trainable": cnt.trainable, "non_trainable": cnt.non_trainable, "total": cnt.total}


def to_json(c: Compiled) -> dict[str, Any]:
    g = c.graph
    t = c.counts.total
    first = _first_node(c)
    return {
        "name": g.name,
        "source": g.source,
        "file": g.file,
        "spec_params": g.params,
        "input_shape": list(g.input_shape),
        "output_shape": list(g.shape_of(g.outputs[0])),
        "outputs": [{"path": o, "shape": list(g.shape_of(o))} for o in g.outputs],
        "params": _count_obj(t),
        "macs": t.macs,
        "layers": [
            {
                "path": n.path,
                "op": n.op,
                "inputs": list(n.inputs),
                "output_shape": list(n.shape),
                "params": _count_obj(c.counts.nodes[n.path]),
                "macs": c.counts.nodes[n.path].macs,
                "attrs": {k: list(v) if isinstance(v, tuple) else v for k, v in n.attrs.items()},
            }
            for n in g.nodes
        ],
        "blocks": [
            {
                "path": i.path,
                "block": i.block,
                "units": i.units,
                "args": i.args,
                "output_shape": list(i.shape),
                "params": _count_obj(c.counts.scopes.get(i.path, Count())),
                "macs": c.counts.scopes.get(i.path, Count()).macs,
            }
            for i in sorted(c.graph.instances, key=lambda i: first[i.path])
        ],
    }


def _first_node(c: Compiled) -> dict[str, int]:
    """Block-instance path -> index of its first node (network order)."""
    first: dict[str, int] = {}
    for k, n in enumerate(c.graph.nodes):
        parts = n.path.split(".")
        for depth in range(1, len(parts)):
            first.setdefault(".".join(parts[:depth]), k)
    return first


def format_json(c: Compiled) -> str:
    return json.dumps(to_json(c), indent=2) + "\n"
