"""Grids of runs: ``archspec train --lr 0.001,0.01 --iters 100,300`` trains every point
of the Cartesian product of the values, one run directory per point.

:data:`AXES` is the table of the :class:`~archspec.training.run.Options` fields
that take a list; a new option joins the grids with one row there (and its
``--flag`` declared with the CLI's list type). The entry point is
:func:`run_grid`; :func:`plan` checks a grid before anything is trained.
"""

from __future__ import annotations

import itertools
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from archspec.pipeline import compile_spec
from archspec.training.core import TrainingError, write_json, write_text
from archspec.training.run import RUN_FILE, Options, parse_sets, task_of, train

MAX_POINTS = 100


@dataclass(frozen=True)
class Axis:
    """How the values of one grid-able option are read and named."""

    kind: type  # float, int or str
    label: str  # its prefix in a point's directory name ("" where the value names itself)


AXES: dict[str, Axis] = {
    "lr": Axis(float, "lr"),
    "iters": Axis(int, "iters"),
    "batch_size": Axis(int, "batch"),
    "optimizer": Axis(str, ""),
    "seed": Axis(int, "seed"),
    "schedule": Axis(str, ""),
    "weight_decay": Axis(float, "wd"),
}


def flag(name: str) -> str:
    """The command-line flag of an Options field."""
    return "--" + name.replace("_", "-")


def text(value: object) -> str:
    """A value as a command line and a directory name write it (floats round-trip)."""
    return repr(value) if isinstance(value, float) else str(value)


def parse_values(name: str, given: str) -> tuple:
    """The values of ``--name a,b,c``, typed as :data:`AXES` says; ValueError (its
    message for the flag's error) for an empty item, a value of the wrong kind, a duplicate."""
    axis = AXES[name]
    values: list = []
    for item in given.split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"{given!r} has an empty value; give values separated by commas")
        try:
            value = axis.kind(item)
        except ValueError:
            what = {float: "a number", int: "a whole number"}.get(axis.kind, "a value")
            raise ValueError(f"{item!r} is not {what}") from None
        if value in values:
            raise ValueError(f"{text(value)} is given twice; give each value once")
        values.append(value)
    return tuple(values)


@dataclass(frozen=True)
class Point:
    index: int  # 1-based
    values: dict  # field -> value, for the axes that vary (the options hold them all)
    name: str  # the run directory's name, from ``values``
    options: Options


@dataclass
class GridResult:
    point: Point
    status: str  # done, diverged, failed, interrupted, not run
    run_dir: Path  # where the point's run is (or would have been)
    message: str = ""
    summary: dict = field(default_factory=dict)  # run.json of a finished run
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status in ("diverged", "failed")


def point_name(values: dict) -> str:
    """``lr0.001-iters100``: the axes' labels and values, filesystem-safe."""
    parts = [AXES[k].label + text(v) for k, v in values.items()]
    return re.sub(r"[^A-Za-z0-9.+-]", "_", "-".join(parts))


def plan(base: Options, axes: dict[str, tuple]) -> list[Point]:
    """Every point of the grid, in :data:`AXES` order, each checked; TrainingError
    for an unknown axis, an empty one, too many points or a value out of range."""
    for name, values in axes.items():
        if name not in AXES:
            raise TrainingError(f"{flag(name)} does not take a list of values")
        if not values:
            raise TrainingError(f"{flag(name)} has no values")
    names = [k for k in AXES if k in axes]
    n = 1
    for k in names:
        n *= len(axes[k])
    if n > MAX_POINTS:
        sizes = " x ".join(f"{len(axes[k])} ({flag(k)})" for k in names if len(axes[k]) > 1)
        raise TrainingError(f"the grid has {n:,} points ({sizes}); give at most {MAX_POINTS}")
    varying = [k for k in names if len(axes[k]) > 1]
    points, seen = [], {}
    for i, combo in enumerate(itertools.product(*(axes[k] for k in names)), 1):
        options = replace(base, **dict(zip(names, combo)))
        options.check()
        values = {k: getattr(options, k) for k in varying}
        name = point_name(values)
        if name in seen:
            raise TrainingError(f"the points {seen[name]} and {describe(values)} would share the folder {name}")
        seen[name] = describe(values)
        points.append(Point(i, values, name, options))
    return points


def describe(values: dict) -> str:
    return " ".join(f"{k}={text(v)}" for k, v in values.items())


def grid_dir(out: str | None, name: str, target: str) -> Path:
    """The grid's folder: ``out``, or ``runs/<name>-<target>-<time>``; new or empty."""
    if out is None:
        stem = f"{name}-{target}-{time.strftime('%Y%m%d-%H%M%S')}"
        root, n = Path("runs") / stem, 1
        while root.exists():
            n += 1
            root = Path("runs") / f"{stem}-{n}"
    else:
        root = Path(out)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise TrainingError(f"--out {root} already exists and is not an empty folder; choose another --out")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainingError(f"cannot write the grid to {root}: {exc.strerror or exc}; choose another --out") from None
    return root


def run_grid(
    base: Options,
    axes: dict[str, tuple],
    out: str | None = None,
    *,
    echo: Callable[[str], None] = print,
    warn: Callable[[str], None] | None = None,
) -> list[GridResult]:
    """Train every point of the grid in turn, one run directory per point under
    ``out``; a point that fails is reported and the others still run; Ctrl-C stops
    the grid. ``echo`` gets a line per point, ``warn`` the runs' own notes.
    Raises TrainingError or SpecError before any run when the grid cannot start."""
    points = plan(base, axes)
    compiled = compile_spec(base.spec, parse_sets(base.sets), input_shape=base.input)  # a bad spec stops the grid here
    task_of(compiled)  # a network that train refuses stops the grid here too
    root = grid_dir(out, compiled.graph.name, base.target)
    echo(f"grid of {len(points)} runs of {compiled.graph.name} in {base.target}, in {root}")
    results: list[GridResult] = []
    stopped = False
    for point in points:
        run_dir = root / point.name
        if stopped:
            results.append(GridResult(point, "not run", run_dir))
            continue
        echo(f"[{point.index}/{len(points)}] {describe(point.values)} -> {run_dir}")
        result = _run_point(replace(point.options, out=str(run_dir)), point, run_dir, warn or echo)
        results.append(result)
        echo(f"[{point.index}/{len(points)}] {describe(point.values)}: {outcome(result)}")
        stopped = result.status == "interrupted"
    return results


def _run_point(options: Options, point: Point, run_dir: Path, warn: Callable[[str], None]) -> GridResult:
    from archspec.diagnostics import SpecError
    from archspec.training.data import DataError
    from archspec.weights import WeightError

    began = time.perf_counter()
    try:
        result = train(options, echo=warn)
    except KeyboardInterrupt:
        return GridResult(point, "interrupted", run_dir, "interrupted", seconds=time.perf_counter() - began)
    except SpecError as err:
        message = "; ".join(str(d) for d in err.diagnostics)
    except (TrainingError, DataError, WeightError) as exc:
        message = str(exc)
    except Exception as exc:  # noqa: BLE001 - a framework's error fails this point only
        message = f"{type(exc).__name__}: {exc}"
        if run_dir.is_dir():
            write_text(run_dir / "error.txt", traceback.format_exc())
            message += f" (traceback in {run_dir / 'error.txt'})"
    else:
        info = result.summary
        return GridResult(point, result.status, result.run_dir, result.message, info, info["seconds"])
    _mark_failed(run_dir, message)
    return GridResult(point, "failed", run_dir, message, seconds=time.perf_counter() - began)


def _mark_failed(run_dir: Path, message: str) -> None:
    """A run that raised says so in its run.json (it said "running")."""
    import json

    path = run_dir / RUN_FILE
    if path.is_file():
        info = json.loads(path.read_text())
        write_json(path, {**info, "status": "failed", "error": message})


def outcome(result: GridResult) -> str:
    """A point's result in a few words."""
    info = result.summary
    if result.status == "not run":
        return "not run"
    if result.failed or result.status == "interrupted":
        return f"{result.status}: {result.message}"
    acc = f"test accuracy {info['test_accuracy']:.4f}" if "test_accuracy" in info else "no test evaluation"
    more = f" ({result.status}: {result.message})" if result.status != "done" else ""
    return f"{acc} in {result.seconds:.1f} s{more}"


def format_summary(results: list[GridResult]) -> str:
    """The table printed at the end of a grid, and its count of failures."""
    axes = list(results[0].point.values)
    head = ["#", *axes, "status", "test acc", "train acc", "seconds"]
    rows = []
    for r in results:
        info = r.summary
        rows.append(
            [
                str(r.point.index),
                *(text(r.point.values[k]) for k in axes),
                r.status,
                f"{info['test_accuracy']:.4f}" if "test_accuracy" in info else "-",
                f"{info['train_accuracy']:.4f}" if "train_accuracy" in info else "-",
                f"{r.seconds:.1f}" if r.status != "not run" else "-",
            ]
        )
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *rows]]
    failed = sum(r.failed for r in results)
    finished = sum(not r.failed and r.status not in ("interrupted", "not run") for r in results)
    tail = f"{finished} of {len(results)} runs finished"
    if failed:
        tail += f", {failed} failed"
    lines += ["", f"{tail}; compare them: archspec report {results[0].run_dir.parent}"]
    return "\n".join(lines) + "\n"
