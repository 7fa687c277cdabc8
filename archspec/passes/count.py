"""Count parameters and MACs of an expanded graph (a pure function)."""

from __future__ import annotations

from dataclasses import dataclass

from archspec import ops
from archspec.ir import Graph, Node


@dataclass(frozen=True)
class Count:
    trainable: int = 0
    non_trainable: int = 0
    macs: int = 0

    @property
    def total(self) -> int:
        return self.trainable + self.non_trainable

    def __add__(self, other: Count) -> Count:
        return Count(self.trainable + other.trainable, self.non_trainable + other.non_trainable, self.macs + other.macs)


@dataclass(frozen=True)
class Counts:
    nodes: dict[str, Count]  # by node path
    scopes: dict[str, Count]  # by block-instance path: the sum over the nodes inside
    total: Count


def weights(node: Node) -> list[ops.Weight]:
    """The tensors a node owns, in canonical layout."""
    return ops.OPS[node.op].weights(node.attrs, list(node.in_shapes))


def count_node(node: Node) -> Count:
    opdef = ops.OPS[node.op]
    trainable, frozen = ops.parameter_count(weights(node))
    return Count(trainable, frozen, opdef.macs(node.attrs, list(node.in_shapes), node.shape))


def count(graph: Graph) -> Counts:
    per_node = {n.path: count_node(n) for n in graph.nodes}
    scopes: dict[str, Count] = {}
    total = Count()
    for path, c in per_node.items():
        total = total + c
        parts = path.split(".")
        for depth in range(1, len(parts)):
            prefix = ".".join(parts[:depth])
            scopes[prefix] = scopes.get(prefix, Count()) + c
    return Counts(per_node, scopes, total)
