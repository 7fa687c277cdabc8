"""Count parameters and MACs of an expanded graph (a pure function)."""

from __future__ import annotations

import math
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


BYTES_PER_VALUE = 4  # float32 everywhere
MAX_MEMORY_GIB = 8.0  # the estimate beyond which commands that run a network refuse it (--max-memory)


@dataclass(frozen=True)
class Memory:
    """A lower bound of the memory that running a network takes: its weights
    held ``copies`` times (the canonical set and each framework's model) and
    every node's output for ``batch`` samples, 4 bytes a value."""

    weights: int  # values of one copy of the weights
    copies: int
    activations: int  # values of every node's output, one sample
    batch: int

    @property
    def bytes(self) -> int:
        return BYTES_PER_VALUE * (self.weights * self.copies + self.activations * self.batch)

    def explain(self) -> str:
        """The estimate in words, for a message."""
        return (
            f"about {self.bytes / 2**30:.1f} GiB: {self.weights:,} weights x {self.copies} copies + "
            f"{self.activations:,} activation values x batch {self.batch}, 4 bytes each"
        )


def memory(graph: Graph, counts: Counts, batch: int, copies: int) -> Memory:
    """Estimate the memory of running ``graph`` (see :class:`Memory`)."""
    activations = sum(math.prod(n.shape) for n in graph.nodes)
    return Memory(counts.total.total, copies, activations, batch)
