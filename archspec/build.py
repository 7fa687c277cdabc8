"""Build, compile and check generated/: every output of every spec.

For a spec ``specs/NAME.yaml`` the outputs are ``NAME/NAME_<target>.py`` for
each target, ``NAME/NAME.md`` (the per-layer table) and ``NAME/NAME.svg`` (the
diagram, drawn by Graphviz' ``dot``). Everything is produced
in memory, formatted, and only then written (atomically, file by file), so a
spec that fails leaves its files as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from archspec import summary
from archspec.codegen import generate
from archspec.codegen.model import CodegenError
from archspec.codegen.writer import format_many, write_atomic
from archspec.pipeline import Compiled


def target_file(name: str, target: str) -> str:
    return f"{name}/{name}_{target}.py"


def outputs(compiled: Compiled, targets: Iterable[str], table: bool = True) -> dict[str, str]:
    """Relative path -> unformatted content, for one compiled spec."""
    name = compiled.graph.name
    out: dict[str, str] = {}
    for target in targets:
        out[target_file(name, target)] = generate(compiled, target)
    if table:
        out[f"{name}/{name}.md"] = summary.format_markdown(compiled)
    return out


def diagrams(compiled: list[Compiled]) -> dict[str, str]:
    """``NAME/NAME.svg`` for every spec, rendered two at a time (``dot`` is a
    separate process, so threads overlap)."""
    from concurrent.futures import ThreadPoolExecutor

    from archspec.diagram import run_dot, to_dot

    def draw(c: Compiled) -> tuple[str, str]:
        return f"{c.graph.name}/{c.graph.name}.svg", run_dot(to_dot(c)).decode("utf-8")

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(draw, compiled))


def render_all(
    compiled: list[Compiled], targets: Iterable[str], table: bool = True, diagram: bool = False
) -> dict[str, str]:
    """Every output of every spec, formatted (Python through ruff)."""
    raw: dict[str, str] = {}
    for c in compiled:
        try:
            raw.update(outputs(c, targets, table))
        except CodegenError as exc:
            raise CodegenError(f"{c.graph.file}: {exc}") from None
    py = format_many({k: v for k, v in raw.items() if k.endswith(".py")})
    if diagram:
        raw.update(diagrams(compiled))
    return {k: py.get(k, v) for k, v in sorted(raw.items())}


@dataclass
class Drift:
    stale: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.stale or self.missing or self.extra)


def check(expected: dict[str, str], out_dir: Path) -> Drift:
    """Compare the expected outputs with what ``out_dir`` holds."""
    drift = Drift()
    for rel, content in expected.items():
        path = out_dir / rel
        if not path.is_file():
            drift.missing.append(rel)
        elif path.read_bytes() != content.encode():
            drift.stale.append(rel)
    if out_dir.is_dir():
        for path in sorted(out_dir.rglob("*")):
            rel = path.relative_to(out_dir).as_posix()
            if path.is_file() and rel not in expected and not path.name.startswith("."):
                drift.extra.append(rel)
    return drift


def write(expected: dict[str, str], out_dir: Path, progress: Callable[[str, bool], None] | None = None) -> int:
    """Write the outputs; returns how many files changed."""
    changed = 0
    for rel, content in expected.items():
        did = write_atomic(out_dir / rel, content)
        changed += did
        if progress:
            progress(rel, did)
    return changed
