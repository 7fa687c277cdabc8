"""The ``archspec`` command line.

Exit codes: 0 success, 1 invalid input (diagnostics printed) or stale
output, 2 usage error.
"""

from __future__ import annotations

import click

from archspec import ops
from archspec.diagnostics import SpecError
from archspec.passes.expand import parse_overrides
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


def load(path: str, sets: tuple[str, ...] = ()) -> Compiled:
    """Compile a spec for a command; print diagnostics and exit 1 on error."""
    try:
        return compile_spec(path, _overrides(sets))
    except SpecError as err:
        _report(err)
        raise Failed() from None


set_option = click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE",
    help="Override a spec parameter (repeatable), e.g. --set alpha=0.5.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archspec")
def main() -> None:
    """Compile framework-neutral CNN specs into PyTorch, TensorFlow, Keras and
    Chainer code, diagrams and per-layer tables."""


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@set_option
def validate(specs: tuple[str, ...], sets: tuple[str, ...]) -> None:
    """Check SPEC files; print every error of each, sorted. Exit 1 if any fails."""
    overrides = _overrides(sets)
    failed = 0
    for path in specs:
        try:
            c = compile_spec(path, overrides)
        except SpecError as err:
            _report(err)
            failed += 1
            continue
        click.echo(f"{path}: ok ({c.graph.name}: {len(c.graph.nodes)} nodes, "
                   f"{c.counts.total.total:,} params)")
    if failed:
        raise Failed()


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=str))
@set_option
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table",
              show_default=True, help="Output format.")
@click.option("--depth", type=click.IntRange(min=0), default=None,
              help="Show block contents only down to this nesting depth (0: top level only).")
def summary(spec: str, sets: tuple[str, ...], fmt: str, depth: int | None) -> None:
    """Print SPEC's layers with output shapes, parameters and MACs."""
    from archspec import summary as S

    c = load(spec, sets)
    if fmt == "json":
        click.echo(S.format_json(c), nl=False)
    elif fmt == "markdown":
        click.echo(S.format_markdown(c, depth), nl=False)
    else:
        click.echo(S.format_table(c, depth), nl=False)


@main.command(name="ops")
def list_ops() -> None:
    """List the ops a spec can use, with their attributes."""
    for op in ops.OPS.values():
        click.echo(f"{op.name}  [{op.family}]  {op.doc}")
        for name, attr in op.attrs.items():
            default = "required" if attr.required else f"default {attr.default!r}"
            click.echo(f"    {name}: {attr.kind}, {default}. {attr.doc}")


if __name__ == "__main__":  # pragma: no cover
    main()
