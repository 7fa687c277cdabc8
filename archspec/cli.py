"""The ``archspec`` command line.

Exit codes: 0 success, 1 invalid input (diagnostics printed) or stale
output, 2 usage error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import click

from archspec import diagram, extras, ops
from archspec.codegen import DERIVED, EMITTERS
from archspec.diagnostics import Diagnostic, SpecError
from archspec.passes.count import MAX_MEMORY_GIB
from archspec.passes.expand import INPUT_FORMS, parse_input, parse_overrides
from archspec.pipeline import Compiled, compile_spec


class Failed(click.ClickException):
    """Invalid input: diagnostics were printed; exit 1 without a traceback."""

    exit_code = 1

    def __init__(self) -> None:
        super().__init__("")

    def show(self, file=None) -> None:  # the diagnostics are already printed
        pass


def _overrides(values: tuple[str, ...]) -> dict[str, str]:
    try:
        return parse_overrides(values)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _report(err: SpecError) -> None:
    for d in err.diagnostics:
        click.echo(str(d), err=True)
    n = len(err.diagnostics)
    click.echo(f"{n} error{'s' if n != 1 else ''}", err=True)


def load(
    path: str, sets: tuple[str, ...] = (), input_shape: tuple[int, ...] | None = None, targets: Iterable[str] = ()
) -> Compiled:
    """Compile a spec for a command (``input_shape`` from :data:`input_option`)
    that writes or runs it in ``targets``; print diagnostics and exit 1 on error."""
    try:
        c = compile_spec(path, _overrides(sets), input_shape=input_shape)
        _check_targets(c, targets)
        return c
    except SpecError as err:
        _report(err)
        raise Failed() from None


set_option = click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a spec parameter (repeatable), e.g. --set alpha=0.5.",
)


def _input(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return parse_input(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


input_option = click.option(
    "--input",
    "input_shape",
    callback=_input,
    metavar="CxHxW",
    help=f"Run the network on another input size, channels first: {INPUT_FORMS}.",
)


class _NeedsExtra(click.ClickException):
    """A command needs an extra that is not installed (:mod:`archspec.extras`): a usage error."""

    exit_code = 2


class _Main(click.Group):
    """The command group: a missing extra, whether a command checked for it
    (:func:`archspec.extras.require`) or an import found it missing, is one
    line saying what to install."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except extras.MissingExtra as exc:
            raise _NeedsExtra(str(exc)) from None
        except ModuleNotFoundError as exc:
            missing = extras.from_import_error(f"archspec {ctx.invoked_subcommand}", exc)
            if missing is None:
                raise
            raise _NeedsExtra(str(missing)) from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archspec")
def main() -> None:
    """Compile framework-neutral CNN specs into PyTorch, TensorFlow, Keras and
    Chainer code, diagrams and per-layer tables."""


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@set_option
@input_option
def validate(specs: tuple[str, ...], sets: tuple[str, ...], input_shape: tuple[int, ...] | None) -> None:
    """Check SPEC files; print every error of each, sorted. Exit 1 if any fails."""
    overrides = _overrides(sets)
    failed = 0
    for path in specs:
        try:
            c = compile_spec(path, overrides, input_shape=input_shape)
            _check_targets(c, EMITTERS)
        except SpecError as err:
            _report(err)
            failed += 1
            continue
        t = c.counts.total
        frozen = f", {t.non_trainable:,} non-trainable, {t.total:,} total" if t.non_trainable else ""
        click.echo(
            f"{path}: ok ({c.graph.name}: {len(c.graph.nodes)} nodes, {t.trainable:,} trainable parameters{frozen})"
        )
    if failed:
        raise Failed()


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=str))
@set_option
@input_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--depth",
    type=click.IntRange(min=0),
    default=None,
    help="Show block contents only down to this nesting depth (0: top level only).",
)
def summary(spec: str, sets: tuple[str, ...], input_shape: tuple[int, ...] | None, fmt: str, depth: int | None) -> None:
    """Print SPEC's layers with output shapes, parameters and MACs."""
    from archspec import summary as S

    c = load(spec, sets, input_shape)
    if fmt == "json":
        click.echo(S.format_json(c), nl=False)
    elif fmt == "markdown":
        click.echo(S.format_markdown(c, depth), nl=False)
    else:
        click.echo(S.format_table(c, depth), nl=False)


def _internal(exc: Exception) -> Failed:
    click.echo(f"error: archspec could not generate code: {exc}", err=True)
    click.echo("This is a bug in archspec, not in your spec; please report it with the spec.", err=True)
    return Failed()


def _check_targets(c: Compiled, targets: Iterable[str]) -> None:
    """Raise SpecError for what keeps ``c`` from being written in ``targets``."""
    from archspec.passes.targets import check_targets

    problems = check_targets(c, targets)
    if problems:
        raise SpecError(problems)


def _compile_all(
    paths: list[str],
    sets: tuple[str, ...],
    targets: Iterable[str],
    input_shape: tuple[int, ...] | None = None,
    compile_options: tuple[str, ...] | None = None,
) -> tuple[list[Compiled], int]:
    """Compile specs to be written in ``targets``; report the invalid ones and
    specs that share a name. Returns the valid ones and how many failed.
    ``compile_options``: see :class:`Compiled` (set before the target checks,
    which emit the code the writers then take); none, for a spec of specs/, is
    what `archspec build` writes, header included, so `archspec check` agrees."""
    overrides = _overrides(sets)
    compiled, failed = [], 0
    for path in dict.fromkeys(paths):  # a file given twice is compiled once
        options = None if compile_options == () and Path(path).parent == Path("specs") else compile_options
        try:
            c = replace(compile_spec(path, overrides, input_shape=input_shape), compile_options=options)
            _check_targets(c, targets)
            compiled.append(c)
        except SpecError as err:
            _report(err)
            failed += 1
    clashes = same_names(compiled)
    for c in compiled:
        if c.graph.name in clashes:
            _report(SpecError([clashes[c.graph.name][c.spec.file]]))
    return [c for c in compiled if c.graph.name not in clashes], failed + sum(map(len, clashes.values()))


def same_names(compiled: list[Compiled]) -> dict[str, dict[str, Diagnostic]]:
    """Specs that share a ``name`` (their files would overwrite each other):
    name -> file -> a diagnostic at its ``name`` naming the other files."""
    by_name: dict[str, list[Compiled]] = {}
    for c in compiled:
        by_name.setdefault(c.graph.name, []).append(c)
    out: dict[str, dict[str, Diagnostic]] = {}
    for name, group in by_name.items():
        if len(group) < 2:
            continue
        files = [c.spec.file for c in group]
        out[name] = {
            c.spec.file: Diagnostic(
                c.spec.name_pos or c.spec.pos,
                "E106",
                f"{', '.join(f for f in files if f != c.spec.file)} is also named '{name}'; "
                f"both would write {name}/{name}_*.py, one over the other: rename one",
            )
            for c in group
        }
    return out


def _spec_files(specs_dir: str) -> list[str]:
    files = sorted(str(p) for p in Path(specs_dir).glob("*.yaml"))
    if not files:
        raise click.UsageError(f"no specs (*.yaml) in {specs_dir}/")
    return files


def _render(compiled: list[Compiled], targets: list[str], table: bool, drawings: bool = False) -> dict[str, str]:
    from archspec.build import render_all
    from archspec.codegen.model import CodegenError
    from archspec.codegen.writer import FormatError

    try:
        return render_all(compiled, targets, table, drawings)
    except diagram.GraphvizNotFound as exc:
        click.echo(f"error: {exc}", err=True)
        raise Failed() from None
    except (CodegenError, FormatError, diagram.DiagramError) as exc:
        raise _internal(exc) from None


def check_output_dir(out_dir: Path, given: Path | str | None = None) -> None:
    """Refuse, before anything is written, an output folder that is a file or
    lies under one (``-o afile/sub``): a usage error. ``given``: what -o said."""
    for p in (out_dir, *out_dir.parents):
        if p.exists():
            if not p.is_dir():
                raise click.UsageError(f"-o {given or out_dir}: {p} is a file, not a folder; give a path in a folder")
            return


def _write_or_fail(write: Callable[[], object], what: Path) -> None:
    """Run ``write``; an OS error (``-o /proc/x``, a full disk, no
    permission) is one line naming the file, exit 1."""
    try:
        write()
    except OSError as exc:
        click.echo(f"error: cannot write {what}: {exc.strerror or exc}; choose another output path", err=True)
        raise Failed() from None


specs_dir_option = click.option(
    "--specs",
    "specs_dir",
    default="specs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory of specs.",
)
out_dir_option = click.option(
    "-o",
    "--output",
    "out_dir",
    default="generated",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output directory.",
)
target_choice = click.Choice([*EMITTERS, "all"])


@main.command(name="compile")
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--target",
    "-t",
    "targets",
    type=target_choice,
    multiple=True,
    required=True,
    help="Framework to generate (repeatable), or all.",
)
@out_dir_option
@set_option
@input_option
def compile_command(
    specs: tuple[str, ...],
    targets: tuple[str, ...],
    out_dir: Path,
    sets: tuple[str, ...],
    input_shape: tuple[int, ...] | None,
) -> None:
    """Generate framework code: writes DIR/<name>/<name>_<target>.py."""
    from archspec.build import write

    chosen = list(EMITTERS) if "all" in targets else list(dict.fromkeys(targets))
    check_output_dir(out_dir)
    options = ["-o", str(out_dir)] if out_dir != Path("generated") else []
    options += [arg for kv in sets for arg in ("--set", kv)]
    options += ["--input", "x".join(map(str, input_shape))] if input_shape else []
    compiled, failed = _compile_all(list(specs), sets, chosen, input_shape, tuple(options))
    files = _render(compiled, chosen, table=False)

    def progress(rel: str, did: bool) -> None:
        click.echo(f"{'wrote' if did else 'unchanged'} {out_dir / rel}")

    _write_or_fail(lambda: write(files, out_dir, progress), out_dir)
    if failed:
        raise Failed()


@main.command(name="build")
@specs_dir_option
@out_dir_option
def build_command(specs_dir: str, out_dir: Path) -> None:
    """Regenerate everything for every spec: code for all targets, tables, diagrams."""
    import time

    from archspec.build import diagrams, write

    start = time.perf_counter()
    check_output_dir(out_dir)
    paths = _spec_files(specs_dir)
    compiled, failed = _compile_all(paths, (), EMITTERS)
    click.echo(f"compiled {len(compiled)} specs; generating {', '.join(EMITTERS)}, tables and diagrams")
    files = _render(compiled, list(EMITTERS), table=True)
    no_dot = None
    try:
        files.update(diagrams(compiled))
    except diagram.GraphvizNotFound as exc:  # write the rest, and the DOT sources instead of the drawings
        no_dot = exc
        files.update({f"{c.graph.name}/{c.graph.name}.dot": diagram.to_dot(c) for c in compiled})
    except diagram.DiagramError as exc:
        raise _internal(exc) from None
    by_spec: dict[str, list[bool]] = {}

    def progress(rel: str, did: bool) -> None:
        by_spec.setdefault(rel.split("/")[0], []).append(did)

    changed = 0

    def write_all() -> None:
        nonlocal changed
        changed = write(files, out_dir, progress)

    _write_or_fail(write_all, out_dir)
    for name, flags in by_spec.items():
        click.echo(f"  {name:<18} {sum(flags)} of {len(flags)} files changed")
    click.echo(f"{changed} files changed in {out_dir}/ ({time.perf_counter() - start:.1f} s)")
    if no_dot:
        click.echo(f"error: {no_dot}. The diagrams were written as .dot files instead of .svg.", err=True)
    if failed:
        click.echo(f"{failed} spec{'s' if failed > 1 else ''} failed; their files were left as they were", err=True)
    if failed or no_dot:
        raise Failed()


@main.command(name="check")
@specs_dir_option
@out_dir_option
def check_command(specs_dir: str, out_dir: Path) -> None:
    """Exit 1 if generated/ differs from what `archspec build` would write."""
    from archspec.build import check

    compiled, failed = _compile_all(_spec_files(specs_dir), (), EMITTERS)
    drift = check(_render(compiled, list(EMITTERS), table=True, drawings=True), out_dir)
    for kind, files in (("stale", drift.stale), ("missing", drift.missing), ("extra", drift.extra)):
        for rel in files:
            click.echo(f"{kind}: {out_dir / rel}")
    if drift or failed:
        click.echo("generated/ is not current: run `archspec build`", err=True)
        raise Failed()
    click.echo(f"{out_dir}/ is current")


@main.command(name="ops")
def list_ops() -> None:
    """List the ops a spec can use, with their attributes."""
    for op in ops.OPS.values():
        click.echo(f"{op.name}  [{op.family}]  {op.doc}")
        for name, attr in op.attrs.items():
            default = "required" if attr.required else f"default {attr.default!r}"
            click.echo(f"    {name}: {attr.kind}, {default}. {attr.doc}")


# ----------------------------------------------------------------------------
# diagram: Graphviz drawings


@main.command(name="diagram")
@click.argument("specs", nargs=-1, type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Output file (one SPEC only). Default: generated/<name>/<name>.<format>.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(diagram.FORMATS),
    default=None,
    help="Output format. Default: from -o's suffix, else svg.",
)
@click.option("--expand", is_flag=True, help="Draw every unit of a stage (default: the first, the rest folded).")
@click.option(
    "--depth",
    type=click.IntRange(min=0),
    default=None,
    help="Draw block instances nested deeper than this as single boxes (0: top level only).",
)
@click.option(
    "--direction",
    type=click.Choice(diagram.DIRECTIONS),
    default="TB",
    show_default=True,
    help="Layout direction: top to bottom or left to right.",
)
@set_option
@input_option
def diagram_command(
    specs: tuple[str, ...],
    output: str | None,
    fmt: str | None,
    expand: bool,
    depth: int | None,
    direction: str,
    sets: tuple[str, ...],
    input_shape: tuple[int, ...] | None,
) -> None:
    """Draw SPEC files as Graphviz diagrams (every specs/*.yaml when none is given).

    Writes generated/<name>/<name>.<format>. Exit 1 if a spec is invalid or
    Graphviz' dot is missing (the .dot source is written instead).
    """
    if expand and depth is not None:
        raise click.UsageError("--expand and --depth exclude each other; give one of them")
    if not specs:
        found = sorted(Path("specs").glob("*.yaml"))
        if not found:
            raise click.UsageError("no SPEC given and no specs/*.yaml in the current directory")
        specs = tuple(str(p) for p in found)
    if output is not None and len(specs) > 1:
        raise click.UsageError("-o/--output takes one SPEC; without -o each spec goes to generated/<name>/")
    fmt = _diagram_format(output, fmt)
    if output is not None:
        check_output_dir(Path(output).parent, output)

    failed = False
    missing: diagram.GraphvizNotFound | None = None
    for spec in specs:
        try:
            c = load(spec, sets, input_shape)
        except Failed:
            failed = True
            continue
        name = c.graph.name
        target = Path(output) if output else Path("generated") / name / f"{name}.{fmt}"
        text = diagram.to_dot(c, depth=depth, expand=expand, direction=direction)
        try:
            written = diagram.render(text, target, fmt)
        except OSError as exc:
            click.echo(f"{spec}: cannot write {target}: {exc.strerror or exc}; choose another -o", err=True)
            failed = True
            continue
        except diagram.GraphvizNotFound as exc:
            missing = exc
            click.echo(
                f"{spec}: wrote {exc.dot_path} ({diagram.box_count(text)} boxes); not rendered to {fmt}", err=True
            )
            continue
        except diagram.DiagramError as exc:
            click.echo(f"{spec}: {exc}", err=True)
            failed = True
            continue
        click.echo(f"{spec}: wrote {', '.join(str(p) for p in written)} ({diagram.box_count(text)} boxes)")
    if missing is not None:
        raise click.ClickException(
            f"{diagram.INSTALL_HINT}. The .dot files were written; render them with dot -T{fmt} FILE.dot -o FILE.{fmt}"
        )
    if failed:
        raise Failed()


def _diagram_format(output: str | None, fmt: str | None) -> str:
    """The drawing's format: ``--format``, else -o's suffix, else svg. A
    suffix that is no format, or that is not ``--format``, is refused (a
    PNG written into ``x.svg`` would not open)."""
    if output is None:
        return fmt or "svg"
    suffix = Path(output).suffix.lstrip(".").lower()
    if suffix not in diagram.FORMATS:
        raise click.UsageError(
            f"-o {output}: archspec draws {', '.join(diagram.FORMATS)}; name the file with one of those suffixes"
        )
    if fmt is not None and fmt != suffix:
        raise click.UsageError(f"-o {output} names a .{suffix} file but --format is {fmt}; name it .{fmt}")
    return suffix


# ----------------------------------------------------------------------------
# gallery: a static site of the zoo


@main.command(name="gallery")
@click.argument("specs", nargs=-1, type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "-o",
    "--output",
    "out_dir",
    default="site",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Output folder: created, or replaced if it holds a previous gallery.",
)
@click.option("--onnx", is_flag=True, help="Export each network to ONNX too (the [onnx] extra) and link it.")
def gallery_command(specs: tuple[str, ...], out_dir: Path, onnx: bool) -> None:
    """Write a static site of SPEC files (every specs/*.yaml when none is given):
    an index to sort and filter, and per network its diagram, layer table, spec
    and generated code. It works from file:// and needs no network."""
    extras.require("archspec gallery", "gallery", *(["onnx"] if onnx else []))
    from archspec.gallery import GalleryError, build_gallery

    paths = list(specs) or _spec_files("specs")
    try:
        report = build_gallery(paths, out_dir, onnx=onnx)
    except GalleryError as exc:
        click.echo(f"error: {exc}", err=True)
        raise Failed() from None
    n = len(report.networks)
    click.echo(
        f"wrote {report.out_dir}/ ({n} network{'s' if n != 1 else ''}, {report.files} files, "
        f"{report.seconds:.1f} s); open {report.out_dir / 'index.html'}"
    )


# ----------------------------------------------------------------------------
# verify: same weights, same outputs


VERIFY_BATCH = 2  # archspec.verify.BATCH, without importing numpy


def _gib(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if math.isnan(value):  # FloatRange lets nan through: no size compares larger
        raise click.BadParameter("nan is not a size; give a number of GiB (inf: no limit)", ctx, param)
    return value


def max_memory_option(text: str) -> Callable:
    """``--max-memory GIB``: the memory estimate a command refuses to go beyond (see :func:`_check_memory`)."""
    return click.option(
        "--max-memory",
        type=click.FloatRange(0, min_open=True),
        callback=_gib,
        default=MAX_MEMORY_GIB,
        show_default=True,
        metavar="GIB",
        help=text,
    )


def _check_memory(c: Compiled, batch: int, copies: int, limit_gib: float, doing: str) -> None:
    """Refuse (SpecError, at the spec's name) a network whose estimated
    memory is over ``limit_gib``, before any framework builds it. ``doing``:
    what would take the memory, in words."""
    from archspec.passes.count import memory

    estimate = memory(c.graph, c.counts, batch, copies)
    if estimate.bytes > limit_gib * 2**30:
        raise SpecError(
            [
                Diagnostic(
                    c.spec.name_pos or c.spec.pos,
                    "E305",
                    f"{doing} needs {estimate.explain()}; over the limit "
                    f"of {limit_gib:g} GiB: use a smaller network (--set, --input), or raise --max-memory",
                )
            ]
        )


def _targets(value: str, train: bool) -> list[str]:
    known = list(EMITTERS) if train else [*EMITTERS, *DERIVED]
    chosen = [t.strip() for t in value.split(",") if t.strip()]
    if chosen == ["all"]:
        return known
    if "all" in chosen:
        raise click.UsageError(f"--targets: 'all' stands alone; give all, or a list of {', '.join(known)}")
    if train and any(t in DERIVED for t in chosen):
        raise click.UsageError(f"--train: {', '.join(DERIVED)} runs inference only; drop it from --targets")
    unknown = [t for t in chosen if t not in known]
    if unknown or not chosen:
        what = f"unknown target {unknown[0]!r}" if unknown else "no target given"
        raise click.UsageError(f"--targets: {what}; choose from {', '.join(known)} (comma-separated) or all")
    return chosen


@main.command(name="verify")
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--targets",
    "targets",
    default="pytorch,tensorflow,keras,chainer",
    show_default=True,
    metavar="LIST",
    help="Comma-separated targets to check (pytorch, the reference, always runs; onnx: the PyTorch model "
    "exported to ONNX, run in onnxruntime), or all.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of tables.")
@click.option("--trace", is_flag=True, help="Name the first node where each target departs from the reference.")
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    default=0,
    show_default=True,
    help="Seed of the random weights and input (0 to 2**32 - 1).",
)
@max_memory_option("Refuse a network whose estimated memory (weights per framework, activations x batch) is larger.")
@click.option("--train", is_flag=True, help="Compare training steps instead of inference (dropout off).")
@click.option("--steps", type=click.IntRange(1, 1000), default=3, show_default=True, help="--train: optimizer steps.")
@click.option(
    "--optimizer",
    type=click.Choice(["sgd", "momentum", "adam"]),
    default="momentum",
    show_default=True,
    help="--train: optimizer.",
)
@click.option(
    "--lr",
    type=click.FloatRange(0, 10, min_open=True),
    default=0.001,
    show_default=True,
    help="--train: learning rate.",
)
@click.option("--batch", type=click.IntRange(1, 4096), default=4, show_default=True, help="--train: batch size.")
@click.option(
    "--weight-decay",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="--train: weight decay (L2 added to the gradient, torch.optim's).",
)
@click.option(
    "--schedule",
    type=click.Choice(["constant", "step", "cosine"]),
    default="constant",
    show_default=True,
    help="--train: lr schedule over the --steps (step: x0.1 every steps // 3).",
)
@set_option
@input_option
def verify_command(
    specs: tuple[str, ...],
    targets: str,
    as_json: bool,
    trace: bool,
    seed: int,
    max_memory: float,
    train: bool,
    steps: int,
    optimizer: str,
    lr: float,
    batch: int,
    weight_decay: float,
    schedule: str,
    sets: tuple[str, ...],
    input_shape: tuple[int, ...] | None,
) -> None:
    """Run SPEC's generated code in every target with the same random weights and
    input; compare shapes, parameter counts and outputs with PyTorch's (and the
    pre-softmax values where there is a softmax). With --train, every target
    takes the same optimizer steps on the same batches instead; the losses, the
    trained weights and the batch-norm statistics are compared. Exit 1 unless
    every target passes."""
    import json

    if train and trace:
        raise click.UsageError("--trace compares inference only; drop it or --train")
    chosen = _targets(targets, train)
    extras.require("archspec verify", "pytorch", *chosen)
    from archspec.verify import format_table, verify

    overrides = _overrides(sets)
    failed = 0
    documents = []
    for path in specs:
        try:
            compiled = compile_spec(path, overrides, input_shape=input_shape)
            _check_targets(compiled, dict.fromkeys(DERIVED.get(t, t) for t in chosen))
            doing = f"running {compiled.graph.name} in {len(chosen)} framework(s)"
            _check_memory(compiled, batch if train else VERIFY_BATCH, 1 + len(chosen), max_memory, doing)
        except SpecError as err:
            _report(err)
            failed += 1
            documents.append({"spec": path, "ok": False, "diagnostics": [str(d) for d in err.diagnostics]})
            continue
        if train:
            from archspec.training import equivalence

            try:
                report = equivalence.verify_training(
                    compiled,
                    chosen,
                    steps=steps,
                    optimizer=optimizer,
                    lr=lr,
                    batch=batch,
                    seed=seed,
                    weight_decay=weight_decay,
                    schedule=schedule,
                )
            except _training_errors() as exc:
                click.echo(f"error: {exc}", err=True)
                failed += 1
                documents.append({"spec": path, "ok": False, "error": str(exc)})
                continue
            text = equivalence.format_table(report)
        else:
            report = verify(compiled, chosen, seed=seed, trace=trace)
            text = format_table(report, trace)
        failed += not report.ok
        if as_json:
            documents.append(report.to_json())
        else:
            click.echo(text)
    if as_json:
        click.echo(json.dumps({"ok": not failed, "specs": documents}, indent=2))
    if failed:
        raise Failed()


# ----------------------------------------------------------------------------
# train and test: the generated networks on data


def _training_errors():
    """The errors of training and testing that are the user's input, not a bug."""
    from archspec.training.core import TrainingError
    from archspec.training.data import DataError
    from archspec.weights import WeightError

    return (TrainingError, DataError, WeightError)


def _warn(message: str) -> None:
    click.echo(message, err=True)


def _list_data(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    extras.require("archspec train", "train")
    from archspec.training.data import BUILTIN

    for name, doc in BUILTIN.items():
        click.echo(f"{name:<10} {doc}")
    click.echo("or a folder of images with one subfolder per class (DIR/<class>/*.jpg), for a classifier,")
    click.echo("or a segmentation folder (DIR/images/<name>.jpg, DIR/masks/<name>.png), for a segmentation network")
    ctx.exit()


def _augmentations(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    extras.require("archspec train", "train")  # train's options are read by archspec.training
    from archspec.training.augment import names

    try:
        return names(value.split(","))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from archspec.training.device import parse  # the standard library only: the command checks the extras

    try:
        return parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


device_option = click.option(
    "--device",
    metavar="DEVICE",
    default="auto",
    show_default=True,
    callback=_device,
    help="auto (a GPU when the framework sees one, else the CPU), cpu, cuda or cuda:N.",
)


class _Values(click.ParamType):
    """A comma-separated list of values of one grid axis (archspec.training.grid.AXES)."""

    name = "values"

    def __init__(self, field: str) -> None:
        self.field = field

    def convert(self, value, param, ctx) -> tuple:
        if isinstance(value, tuple):
            return value
        extras.require("archspec train", "train")
        from archspec.training.grid import parse_values

        try:
            return parse_values(self.field, str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@main.command(name="train")
@click.argument("spec", required=False, type=click.Path(dir_okay=False, path_type=str))
@click.option("--target", "-t", type=click.Choice(list(EMITTERS)), help="Framework to train in.")
@click.option("--data", metavar="DIR|NAME", help="Training images (DIR/<class>/*.jpg) or a built-in set. [digits]")
@click.option("--test-data", metavar="DIR", help="Test images in the same layout. [a held-out fifth of --data]")
@click.option(
    "--lr", type=_Values("lr"), metavar="X[,X...]", default="0.003", show_default=True, help="Learning rate(s)."
)
@click.option(
    "--iters", type=_Values("iters"), metavar="X[,X...]", default="300", show_default=True, help="Optimizer steps."
)
@click.option(
    "--batch-size",
    type=_Values("batch_size"),
    metavar="X[,X...]",
    default="32",
    show_default=True,
    help="Images per step.",
)
@click.option(
    "--optimizer",
    type=_Values("optimizer"),
    metavar="X[,X...]",
    default="adam",
    show_default=True,
    help="Optimizer(s): sgd, momentum or adam.",
)
@click.option(
    "--seed",
    type=_Values("seed"),
    metavar="X[,X...]",
    default="0",
    show_default=True,
    help="Seed(s) of the initial weights and shuffling.",
)
@set_option
@input_option
@click.option("--threads", type=int, help="CPU threads for the framework. [its default]")
@device_option
@click.option("--eval-every", type=int, help="Steps between test evaluations and checkpoints. [iters / 20]")
@click.option(
    "-o", "--out", metavar="RUN_DIR", help="Run directory, or a grid's folder of them. [runs/<spec>-<target>-<time>]"
)
@click.option(
    "--resume",
    metavar="RUN_DIR",
    type=click.Path(path_type=Path),
    help="Continue an interrupted run (its options; --iters may grow).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option(
    "--augment",
    metavar="LIST",
    default="",
    callback=_augmentations,
    help="Augment training batches: any of crop, flip, brightness, comma-separated. [none]",
)
@click.option(
    "--schedule",
    type=_Values("schedule"),
    metavar="X[,X...]",
    default="constant",
    show_default=True,
    help="Learning-rate schedule(s): constant, step (x0.1 every --step-size) or cosine (to 0 at --iters).",
)
@click.option("--step-size", type=int, help="--schedule step: steps between two x0.1. [iters // 3]")
@click.option(
    "--weight-decay",
    type=_Values("weight_decay"),
    metavar="X[,X...]",
    default="0",
    show_default=True,
    help="Weight decay(s): L2 added to every parameter's gradient (torch.optim's).",
)
@click.option(
    "--patience",
    type=int,
    help="Stop after this many evaluations without a better test loss; keep the best weights. [never]",
)
@click.option(
    "--nproc",
    type=int,
    default=1,
    show_default=True,
    help="Data-parallel processes (replicas); --batch-size is the global batch (docs/distributed.md).",
)
@click.option("--sync-bn", is_flag=True, help="Batch norm over the global batch, where the engine offers it.")
@click.option(
    "--distributed",
    is_flag=True,
    help="This process is one worker of a job started by torchrun, mpirun or TF_CONFIG (several machines).",
)
@click.option(
    "--list-data",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_list_data,
    help="List the built-in datasets and exit.",
)
def train_command(spec: str | None, target: str | None, resume: Path | None, sets, input_shape, **kw) -> None:
    """Train SPEC's generated model in one framework and write a run directory:
    weights.npz (every framework loads it), the framework's own checkpoint,
    metrics.csv, curves.png and run.json. Ctrl-C stops after the current step
    and keeps a checkpoint that --resume continues.

    Lists (--lr 0.001,0.01 --iters 100,300) train every combination: one run
    directory per point under --out, then a summary; exit 1 if a point failed."""
    from archspec.training.grid import AXES, flag
    from archspec.training.run import Options, train

    if resume is None and (spec is None or target is None):
        raise click.UsageError("give a SPEC and --target (or --resume RUN_DIR)")
    axes = {k: kw.pop(k) for k in AXES if k in kw}
    lists = [flag(k) for k, values in axes.items() if len(values) > 1]
    if resume is not None and lists:
        raise click.UsageError(f"--resume continues one run: give one value for {', '.join(lists)}")
    first = {k: values[0] for k, values in axes.items()}
    options = Options(spec=spec or "", target=target or "", sets=sets, input=input_shape, **kw, **first)
    _launch(options, resume, grid=bool(lists))
    if lists:
        _train_grid(options, axes)
        return
    try:
        if resume is not None:
            from archspec.training.run import read_run

            info = read_run(resume)
            for given, saved, what in ((spec, info["spec"], "SPEC"), (target, info["target"], "--target")):
                if given is not None and given != saved:
                    raise click.UsageError(f"{resume} is a run of {saved}; drop {what} or give {saved}")
        result = train(options, resume=resume, echo=_warn)
    except SpecError as err:
        _report(err)
        raise Failed() from None
    except _training_errors() as exc:
        click.echo(f"error: {exc}", err=True)
        raise Failed() from None
    if not result.main:  # rank 0 reports
        return
    info = result.summary
    if result.status == "diverged":
        click.echo(f"error: {result.message}", err=True)
        raise Failed()
    pixel = "pixel " if info.get("task") == "segmentation" else ""
    accuracy = f"test {pixel}accuracy {info['test_accuracy']:.4f}" if "test_accuracy" in info else "no test evaluation"
    if "train_accuracy" in info:
        accuracy += f" (train {info['train_accuracy']:.4f})"
    if "test_mean_iou" in info:
        accuracy += f", test mean IoU {info['test_mean_iou']:.4f}"
    click.echo(
        f"{info['name']} in {info['target']}: {result.step} steps in {info['seconds']:.1f} s; {accuracy}; "
        f"{info['params']['trainable']:,} parameters, weights {info['weights_mb']:.2f} MB, on {info['device']}"
    )
    click.echo(f"run saved in {result.run_dir}")
    if result.status == "interrupted":
        click.echo(result.message, err=True)
        raise click.exceptions.Exit(130)
    if result.status == "stopped early":
        click.echo(result.message)
    click.echo(f"test it: archspec test {info['spec']} --target {info['target']} --weights {result.run_dir}")


def _launch(options, resume: Path | None, grid: bool) -> None:
    """--nproc N in PyTorch or Chainer: this command again in N processes under
    torchrun or mpirun (archspec.training.distributed.launch); exits with rank 0's status."""
    import sys

    from archspec.training.distributed import LAUNCHERS, launch
    from archspec.training.run import check_parallel, read_run

    try:
        target = options.target or read_run(resume)["target"]
        mpi = target == "chainer" and (options.nproc > 1 or options.distributed)
        extras.require("archspec train", target, *(["distributed"] if mpi else []))
        if grid and (options.distributed or (target in LAUNCHERS and options.nproc > 1)):
            raise click.UsageError(
                f"a grid runs in one process: give one value per option with --nproc in {target}, "
                "or train the grid's points one by one"
            )
        if resume is None:
            options.check()
            check_parallel(options)
        code = launch(target, options.nproc, options.distributed, sys.argv[1:])
    except _training_errors() as exc:
        click.echo(f"error: {exc}", err=True)
        raise Failed() from None
    if code is not None:
        raise click.exceptions.Exit(code)


def _train_grid(options, axes: dict[str, tuple]) -> None:
    """A grid of runs: a line per point, a summary; exit 1 if a point failed, 130 on Ctrl-C."""
    from archspec.training.grid import format_summary, run_grid

    try:
        results = run_grid(options, axes, options.out, echo=click.echo, warn=_warn)
    except SpecError as err:
        _report(err)
        raise Failed() from None
    except _training_errors() as exc:
        click.echo(f"error: {exc}", err=True)
        raise Failed() from None
    click.echo("")
    click.echo(format_summary(results), nl=False)
    if any(r.status == "interrupted" for r in results):
        raise click.exceptions.Exit(130)
    if any(r.failed for r in results):
        raise Failed()


@main.command(name="test")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=str))
@click.option("--target", "-t", type=click.Choice(list(EMITTERS)), required=True, help="Framework to test in.")
@click.option(
    "--weights",
    "weights_path",
    required=True,
    type=click.Path(path_type=Path),
    help="weights.npz, or a run directory of archspec train.",
)
@click.option(
    "--data", metavar="DIR|NAME", help="Test images (DIR/<class>/*.jpg, or DIR/images + DIR/masks). [the run's]"
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option(
    "--masks",
    type=click.Path(file_okay=False, path_type=Path),
    help="Segmentation: write each image's predicted mask to DIR/<name>.png (pixel value = class).",
)
@set_option
@input_option
@device_option
def test_command(
    spec: str,
    target: str,
    weights_path: Path,
    data: str | None,
    as_json: bool,
    masks: Path | None,
    sets,
    input_shape,
    device: str,
):
    """Classify every test image with trained weights in one framework: one line
    per image (file, predicted class, probability), accuracy, per-class
    accuracy and the confusion matrix. A segmentation network (a class per
    pixel): one line per image (pixel accuracy), pixel accuracy, mean IoU and
    per-class IoU; --masks writes the predicted masks."""
    import json

    extras.require("archspec test", target, "train")
    from archspec.training.run import format_test, test

    try:
        report = test(
            spec,
            target,
            weights_path,
            data=data,
            sets=sets,
            input_shape=input_shape,
            echo=lambda m: click.echo(m, err=True),
            masks=masks,
            device=device,
        )
    except SpecError as err:
        _report(err)
        raise Failed() from None
    except _training_errors() as exc:
        click.echo(f"error: {exc}", err=True)
        raise Failed() from None
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else format_test(report), nl=as_json)


@main.command(name="report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write report.md, accuracy.png, loss.png and time_size.png here. [print the table only]",
)
def report_command(runs: tuple[Path, ...], out: Path | None) -> None:
    """Compare runs of archspec train: each of RUNS is a run directory or a folder
    of them (a grid). Prints a Markdown table (spec, target, options, training
    time, parameters, model size, final accuracies, status) and the commands
    that made the runs; with -o also writes it with plots of the test accuracy
    and loss against steps and bar charts of time and size."""
    extras.require("archspec report", "train")
    from archspec.training.report import FILES, report

    try:
        text = report(list(runs), out)
    except _training_errors() as exc:
        click.echo(f"error: {exc}", err=True)
        raise Failed() from None
    click.echo(text, nl=False)
    if out is not None:
        click.echo(f"report written to {out}: {', '.join(FILES)}")


# ----------------------------------------------------------------------------
# weights: canonical weights in and out of the frameworks' own formats


@main.group(name="weights")
def weights_group() -> None:
    """Move weights between archspec's canonical .npz and the frameworks' own files."""


@weights_group.command(name="export")
@click.argument("npz", type=click.Path(path_type=Path))
@click.option("--spec", required=True, type=click.Path(dir_okay=False, path_type=str), help="The spec of the weights.")
@click.option("--target", "-t", type=click.Choice(list(EMITTERS)), required=True, help="Framework of the file.")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path), help="File to write.")
@set_option
@input_option
def weights_export(npz: Path, spec: str, target: str, out: Path, sets, input_shape) -> None:
    """Write canonical weights (NPZ, e.g. a run's weights.npz) in TARGET's own format,
    which the standalone generated file loads with its framework alone (its
    docstring shows how). Give --set num_classes=K for weights trained on K classes."""
    extras.require("archspec weights export", target)
    from archspec.export.native import ExportError, export_native
    from archspec.weights import WeightError

    if npz.is_dir():
        raise click.BadParameter(
            f"{npz} is a folder: give a weights file, e.g. {npz / 'weights.npz'}", param_hint="NPZ"
        )
    compiled = load(spec, sets, input_shape, [target])
    try:
        written = export_native(compiled, npz, target, out)
    except (ExportError, WeightError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise Failed() from None
    except OSError as exc:  # the folder of -o cannot be made or written
        click.echo(f"error: cannot write {out}: {exc.strerror or exc}; choose another -o", err=True)
        raise Failed() from None
    for path in written:
        click.echo(f"wrote {path}")


@weights_group.command(name="import")
@click.argument("source")
@click.option("--spec", required=True, type=click.Path(dir_okay=False, path_type=str), help="The spec of the twin.")
@click.option(
    "--from",
    "from_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The twin's own weight file (a state_dict .pt/.pth/.safetensors, Keras .weights.h5/.keras/.h5). "
    "[random weights]",
)
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path), help="The .npz to write.")
@set_option
@input_option
def weights_import(source: str, spec: str, from_file: Path | None, out: Path, sets, input_shape) -> None:
    """Canonical weights (an .npz every target loads) from SOURCE, a twin: torchvision:NAME,
    timm:NAME or keras:NAME, built from the installed package (never downloaded) with
    the spec's declared configuration, random weights or those of --from. Layers are
    paired by structure (the dataflow graph, kind, every tensor's shape); a twin that
    does not fit names its first layer that differs, and nothing is written."""
    from archspec.schema.spec import parse_spec

    try:
        declared = parse_spec(spec).twins
    except SpecError as err:
        _report(err)
        raise Failed() from None
    from archspec.twins import FRAMEWORK, TwinError, parse_source

    try:
        src = parse_source(source, declared)
    except TwinError as exc:
        raise click.BadParameter(str(exc), param_hint="SOURCE") from None
    extras.require("archspec weights import", "reference" if src.library != "keras" else "keras")
    if not out.name.endswith(".npz"):
        raise click.BadParameter(f"{out}: canonical weights are an .npz file", param_hint="-o")
    given = _overrides(sets)
    compiled = load(spec, tuple(f"{k}={v}" for k, v in {**src.sets, **given}.items()), input_shape)
    from archspec import weights as W
    from archspec.twins import import_weights

    try:
        W.save(out, import_weights(compiled, src, from_file=from_file), compiled)
    except (TwinError, W.WeightError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise Failed() from None
    except OSError as exc:  # the folder of -o cannot be made or written
        click.echo(f"error: cannot write {out}: {exc.strerror or exc}; choose another -o", err=True)
        raise Failed() from None
    setting = "".join(f" --set {k}={v}" for k, v in src.sets.items() if k not in given)
    click.echo(f"imported {src.name} ({FRAMEWORK[src.library]}) into {compiled.graph.name}{setting}")
    click.echo(f"wrote {out}")


# ----------------------------------------------------------------------------
# export: the network in an exchange format


def _opset(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    from archspec.export.onnx import OnnxExportError, check_opset

    try:
        check_opset(value)
    except OnnxExportError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    return value


@main.command(name="export")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=str))
@click.option("--format", "fmt", type=click.Choice(["onnx"]), required=True, help="File format.")
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), help="File to write. [./<spec name>.onnx]")
@click.option("--opset", type=int, callback=_opset, help="ONNX opset, 18 to 25. [the exporter's default, 20]")
@max_memory_option(
    "Refuse a network whose estimated memory (weights x 3: PyTorch's, the exporter's and the file's; "
    "activations x batch 2) is larger."
)
@set_option
@input_option
def export_command(
    spec: str, fmt: str, out: Path | None, opset: int | None, max_memory: float, sets, input_shape
) -> None:
    """Export SPEC's generated PyTorch model (its outputs as the spec says, PyTorch's
    initial weights) to ONNX with torch.onnx's dynamo exporter: one file, input
    `input` with a dynamic batch axis, checked with onnx.checker. Prints the opset
    written and the files."""
    extras.require("archspec export", "onnx")
    from archspec.export.onnx import TRACE_BATCH, WEIGHT_COPIES, OnnxExportError, export_onnx

    compiled = load(spec, sets, input_shape)
    out = out or Path(f"{compiled.graph.name}.onnx")
    check_output_dir(out.parent, out)
    try:
        _check_memory(compiled, TRACE_BATCH, WEIGHT_COPIES, max_memory, f"exporting {compiled.graph.name} to ONNX")
    except SpecError as err:
        _report(err)
        raise Failed() from None
    try:
        report = export_onnx(compiled, out, opset)
    except OnnxExportError as exc:
        click.echo(f"error: {exc}", err=True)
        raise Failed() from None
    click.echo(f"exported {compiled.graph.name} to ONNX opset {report.opset}")
    for path in report.files:
        click.echo(f"wrote {path}")
