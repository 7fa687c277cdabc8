"""The intermediate representation: plain data, produced by the passes.

A :class:`Graph` is the expanded network: every op node with its resolved
attributes, its input shapes and output shape (per sample, channels first),
in topological order. Block instances are kept beside it, so that emitters and
diagrams can show the hierarchy the spec was written with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archspec.diagnostics import Pos

Shape = tuple[int, ...]
INPUT = "input"


@dataclass(frozen=True)
class Node:
    path: str  # hierarchical name, e.g. "layer1.0.conv1"; doubles as weight key prefix
    op: str
    attrs: dict[str, Any]  # resolved: tuples for kernel/stride, per-side padding
    inputs: tuple[str, ...]  # paths of producing nodes, or INPUT
    in_shapes: tuple[Shape, ...]
    shape: Shape
    pos: Pos  # where the node is written in the spec

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    @property
    def scope(self) -> str:
        """Path of the enclosing block instance ("" at the top level)."""
        return self.path.rsplit(".", 1)[0] if "." in self.path else ""


@dataclass(frozen=True)
class Instance:
    """One use of a block, or a stage: a block repeated N times.

    A stage (``repeat`` given) has ``units`` > 0 and ``index`` None; each of
    its units is an Instance of its own with ``index`` 0..N-1.
    """

    path: str
    block: str
    args: dict[str, Any]
    in_shape: Shape
    shape: Shape
    output: str  # path of the node whose value the instance returns
    pos: Pos
    index: int | None = None
    units: int = 0
    # The block's other named outputs (after ``output``): (name, node path).
    side_outputs: tuple[tuple[str, str], ...] = ()


@dataclass
class Graph:
    name: str
    source: str
    file: str
    params: dict[str, Any]  # resolved spec parameters
    input_shape: Shape
    nodes: list[Node]
    outputs: list[str]  # node paths
    instances: list[Instance] = field(default_factory=list)
    description: str = ""

    def node(self, path: str) -> Node:
        return self._by_path()[path]

    def _by_path(self) -> dict[str, Node]:
        cache = self.__dict__.get("_index")
        if cache is None or len(cache) != len(self.nodes):
            cache = {n.path: n for n in self.nodes}
            self.__dict__["_index"] = cache
        return cache

    def shape_of(self, ref: str) -> Shape:
        return self.input_shape if ref == INPUT else self.node(ref).shape

    @property
    def output_shapes(self) -> list[Shape]:
        return [self.shape_of(o) for o in self.outputs]
