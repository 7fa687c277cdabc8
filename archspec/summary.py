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
            # Under a stage unit or deeper, a node's own name repeats from unit to unit:
            # its path says which it is (layer1.0.conv1, not conv1).
            label = node.name if depth == 1 else node.path
            out.append(Row(depth, label, node.path, node.op, node.shape, c.counts.nodes[node.path], True))
    return out


@dataclass(frozen=True)
class Separable:
    """A depthwise separable convolution (a depthwise conv and the 1x1
    pointwise conv it feeds, or one separable_conv2d), and what the same layer
    would cost as a standard convolution."""

    path: str  # the depthwise (or separable) node
    pointwise: str
    kernel: int  # Dk (square kernels; kh * kw is used for the cost)
    channels_in: int  # M
    channels_out: int  # N
    size: tuple[int, ...]  # Df x Df: the output map
    macs: int  # depthwise + pointwise
    standard_macs: int  # Dk x Dk x M x N x Df x Df

    @property
    def ratio(self) -> float:
        return self.macs / self.standard_macs

    @property
    def formula(self) -> float:
        """1/N + 1/Dk^2, the ratio the MobileNet paper derives."""
        return 1 / self.channels_out + 1 / (self.kernel * self.kernel)


_PASS_THROUGH = {"batch_norm", "relu", "relu6", "leaky_relu", "silu", "hard_swish", "sigmoid", "tanh", "dropout"}


def separable_convolutions(c: Compiled) -> list[Separable]:
    """Every depthwise separable convolution of the network, in order."""
    g = c.graph
    consumers: dict[str, list[str]] = {}
    for n in g.nodes:
        for ref in n.inputs:
            consumers.setdefault(ref, []).append(n.path)
    out = []
    for n in g.nodes:
        if n.op == "separable_conv2d" and n.attrs["multiplier"] == 1:
            pw = n
        elif n.op == "depthwise_conv2d" and n.attrs["multiplier"] == 1:
            pw = n
            while True:  # follow norms and activations to the pointwise convolution
                nxt = consumers.get(pw.path, [])
                if len(nxt) != 1:
                    pw = None
                    break
                pw = g.node(nxt[0])
                if pw.op not in _PASS_THROUGH:
                    break
            if pw is None or pw.op != "conv2d" or pw.attrs["kernel"] != (1, 1) or pw.attrs["groups"] != 1:
                continue
        else:
            continue
        kh, kw = n.attrs["kernel"]
        if kh != kw:
            continue
        m, size = n.in_shapes[0][0], n.shape[1:]
        macs = c.counts.nodes[n.path].macs + (c.counts.nodes[pw.path].macs if pw is not n else 0)
        standard = kh * kw * m * pw.shape[0] * size[0] * size[1]
        out.append(Separable(n.path, pw.path, kh, m, pw.shape[0], size, macs, standard))
    return out


def separable_lines(c: Compiled) -> list[str]:
    """A Markdown section on what depthwise separable convolution saves."""
    seps = separable_convolutions(c)
    if not seps:
        return []
    macs = sum(s.macs for s in seps)
    standard = sum(s.standard_macs for s in seps)
    lines = [
        "",
        "## Depthwise separable convolutions",
        "",
        f"{len(seps)} depthwise separable convolutions cost {macs:,} MACs; as standard convolutions with "
        f"the same kernels and channels they would cost {standard:,}: {macs / standard:.3f} of it "
        f"({standard / macs:.1f}x fewer). Per layer, a Dk x Dk depthwise convolution over M channels "
        "followed by a 1x1 pointwise one to N channels on a Df x Df map costs "
        "Dk^2 M Df^2 + M N Df^2 against Dk^2 M N Df^2, a ratio of 1/N + 1/Dk^2 (the MobileNet paper's "
        "derivation, Section 3.1).",
        "",
        "| Layer | Pointwise | Dk | M | N | Df | MACs | Standard MACs | Ratio | 1/N + 1/Dk^2 |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for s in seps:
        lines.append(
            f"| `{s.path}` | `{s.pointwise}` | {s.kernel} | {s.channels_in} | {s.channels_out} | "
            f"{shape_str(s.size)} | {s.macs:,} | {s.standard_macs:,} | {s.ratio:.4f} | {s.formula:.4f} |"
        )
    return lines


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
    seps = separable_convolutions(c)
    if seps:
        macs, standard = sum(s.macs for s in seps), sum(s.standard_macs for s in seps)
        totals.append(("Depthwise separable", f"{macs:,} MACs, {macs / standard:.3f} of standard convolutions"))
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
    out += separable_lines(c)
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
