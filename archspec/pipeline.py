"""The compiler's front half as one call: load -> validate -> expand -> count."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archspec.ir import Graph
from archspec.passes.count import Counts, count
from archspec.passes.expand import expand
from archspec.schema.spec import Spec, parse_spec


@dataclass(frozen=True)
class Compiled:
    spec: Spec
    graph: Graph
    counts: Counts
    # For the header of generated files: the options of `archspec compile`
    # that write the code (-o, --set, --input); None: `archspec build` does.
    compile_options: tuple[str, ...] | None = None
    # What code generation made of this build, made once and shared by the
    # target checks and the writers (see archspec.codegen.generate): the code
    # model and each target's source. Not copied by ``dataclasses.replace``.
    generated: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)


def compile_spec(
    path: str | Path,
    overrides: Mapping[str, str] | None = None,
    text: str | bytes | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> Compiled:
    """Parse, validate, expand and count a spec; ``input_shape`` (channels
    first, from ``--input``) replaces the spec's input. Raises SpecError."""
    spec = parse_spec(path, text)
    graph = expand(spec, overrides, input_shape)
    return Compiled(spec, graph, count(graph))
