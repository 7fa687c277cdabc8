"""The gallery's page data: plain values computed from a compiled spec.

Every number shown comes from here, and everything here comes from the
compiled spec and :mod:`archspec.summary` (the same rows and totals as
``archspec summary`` and ``generated/<name>/<name>.md``): the gallery has no
second source of numbers. Functions here are pure; highlighting is passed in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from archspec import summary
from archspec.build import target_file
from archspec.pipeline import Compiled

TARGET_LABELS = {"pytorch": "PyTorch", "tensorflow": "TensorFlow", "keras": "Keras", "chainer": "Chainer"}

# highlight(text, language) -> HTML markup; language is "python" or "yaml".
Highlighter = Callable[[str, str], str]


@dataclass(frozen=True)
class Download:
    """A file offered for download on a network page; ``href`` is relative to the page."""

    label: str
    href: str


@dataclass(frozen=True)
class Tab:
    """One source file shown in a tab: its raw text (what the copy button
    copies and the download link serves) and its highlighted markup."""

    id: str
    label: str
    filename: str
    text: str
    html: str


@dataclass(frozen=True)
class LayerRow:
    depth: int
    path: str
    op: str
    shape: str
    params: int
    macs: int
    is_node: bool


@dataclass
class NetworkPage:
    name: str
    family: str
    year: int | None
    input_shape: tuple[int, ...]
    outputs: list[str]  # "fc 1000"
    trainable: int
    non_trainable: int
    total: int
    macs: int
    source: str
    description: str
    rows: list[LayerRow]
    tabs: list[Tab]
    svg: str  # the diagram, inline SVG markup
    # Files offered for download. Another exporter (ONNX) appends its file here
    # and adds it to the site's files under the same name.
    downloads: list[Download] = field(default_factory=list)

    @property
    def input(self) -> str:
        return summary.shape_str(self.input_shape)

    @property
    def input_size(self) -> int:
        """Values in one input sample (what the index sorts the input column by)."""
        return math.prod(self.input_shape)

    @property
    def macs_human(self) -> str:
        return summary.human(self.macs)

    @property
    def thumbnail(self) -> str:
        """The diagram's file, relative to the site's root."""
        return f"{self.name}/{self.name}.svg"


def page_files(name: str) -> dict[str, str]:
    """Download label -> file name inside the network's folder."""
    files = {label: target_file(name, target).split("/")[1] for target, label in TARGET_LABELS.items()}
    tail = {"Layer table (Markdown)": f"{name}.md", "Diagram (SVG)": f"{name}.svg"}
    return {"Spec (YAML)": f"{name}.yaml", **files, **tail}


def network_page(c: Compiled, spec_text: str, files: Mapping[str, str], highlight: Highlighter) -> NetworkPage:
    """A network's page data. ``files``: the outputs of :func:`archspec.build.render_all`
    (relative path -> text), with this network's code, table and diagram."""
    g = c.graph
    t = c.counts.total
    name = g.name
    tabs = [Tab("spec", "Spec", f"{name}.yaml", spec_text, highlight(spec_text, "yaml"))]
    for target, label in TARGET_LABELS.items():
        rel = target_file(name, target)
        tabs.append(Tab(target, label, rel.split("/")[1], files[rel], highlight(files[rel], "python")))
    rows = [
        LayerRow(r.depth, r.path, r.op, summary.shape_str(r.shape), r.count.total, r.count.macs, r.is_node)
        for r in summary.rows(c)
    ]
    return NetworkPage(
        name=name,
        family=c.spec.family,
        year=c.spec.year,
        input_shape=tuple(g.input_shape),
        outputs=[f"{o} {summary.shape_str(g.shape_of(o))}" for o in g.outputs],
        trainable=t.trainable,
        non_trainable=t.non_trainable,
        total=t.total,
        macs=t.macs,
        source=g.source.strip(),
        description=(g.description or "").strip(),
        rows=rows,
        tabs=tabs,
        svg=inline_svg(files[f"{name}/{name}.svg"]),
        downloads=[Download(label, href) for label, href in page_files(name).items()],
    )


_PROLOG = re.compile(r"\A\s*(<\?xml[^>]*\?>\s*)?(<!DOCTYPE[^>]*>\s*)?", re.IGNORECASE)


def inline_svg(svg: str) -> str:
    """Graphviz' SVG document as markup to place inside HTML (no XML prolog
    or doctype)."""
    return _PROLOG.sub("", svg, count=1)
