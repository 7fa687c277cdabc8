"""``archspec report``: runs of ``archspec train`` side by side.

:func:`report` reads run directories (or folders of them: a grid) and makes a
Markdown table (spec, target, options, time, parameters, size, accuracies,
status) with the commands that made the runs, reconstructed from run.json;
with an output folder it writes ``report.md``, ``accuracy.png`` and
``loss.png`` (test figures against steps, one line per run, a panel per
target) and ``time_size.png`` (training time and weights' size per run), each
atomically. Everything comes from run.json and metrics.csv, so a report can be
remade from those two files of each run.
"""

from __future__ import annotations

import math
import os
import shlex
from dataclasses import dataclass, fields
from pathlib import Path

from archspec.training.core import Metrics, TrainingError, atomic, write_text
from archspec.training.grid import AXES, flag, text
from archspec.training.run import RUN_FILE, Options, read_run

FILES = ("report.md", "accuracy.png", "loss.png", "time_size.png")
FIXED = ("lr", "iters", "batch_size", "optimizer")  # always in the table; other axes when they vary
ALWAYS = (*FIXED, "seed")  # always in a command; other options when they are not their default
NOT_IN_COMMANDS = {"spec", "target", "out", "quiet", "dropout"}  # fields without a flag of their own


@dataclass(frozen=True)
class Run:
    path: Path
    label: str  # its path relative to the report's arguments
    group: int  # which argument it came from
    info: dict  # run.json
    rows: list[dict]  # metrics.csv

    @property
    def options(self) -> dict:
        return self.info["options"]

    def option(self, name: str):
        """An option's value; its default for run.json files older than the option."""
        return self.options.get(name, DEFAULTS.get(name))


DEFAULTS = {f.name: f.default for f in fields(Options)}


# ----------------------------------------------------------------------------
# Reading


def is_run(path: Path) -> bool:
    return (path / RUN_FILE).is_file()


def collect(paths: list[Path]) -> list[Run]:
    """The runs under ``paths`` (each a run directory or a folder of them), in the
    order given and, within a folder, by spec, target and option values."""
    if not paths:
        raise TrainingError("give one or more run directories or folders of run directories")
    found: list[tuple[int, Path]] = []
    bases = []
    for i, path in enumerate(paths):
        if not path.is_dir():
            raise TrainingError(f"{path}: no such folder; give a run directory of archspec train or a folder of them")
        if is_run(path):
            found.append((i, path))
            bases.append(path.resolve().parent)
            continue
        members = [p for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith(".") and is_run(p)]
        if not members:
            raise TrainingError(
                f"{path} is neither a run directory (it has no {RUN_FILE}) nor a folder of run directories "
                f"(none of its subfolders has one)"
            )
        found += [(i, p) for p in members]
        bases.append(path.resolve())
    base = Path(os.path.commonpath(bases))
    runs, seen = [], set()
    for i, path in found:
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        runs.append(Run(path, path.resolve().relative_to(base).as_posix(), i, read_run(path), _metrics(path)))
    return sorted(runs, key=lambda r: (r.group, _sort_key(r)))


def _metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    return Metrics.read(path).rows


def _sortable(value) -> tuple:
    return (0, value, "") if isinstance(value, int | float) and not isinstance(value, bool) else (1, 0, str(value))


def _sort_key(run: Run) -> tuple:
    return (run.info["name"], run.info["target"], *(_sortable(run.option(k)) for k in AXES), run.path.name)


# ----------------------------------------------------------------------------
# What is compared


def spec_of(run: Run) -> str:
    sets = run.option("sets") or []
    return run.info["name"] + (f" ({', '.join(sets)})" if sets else "")


def last_test(run: Run) -> tuple[float | None, float | None]:
    """(test loss, test accuracy) at the last evaluation."""
    if "test_accuracy" in run.info:
        return run.info.get("test_loss"), run.info["test_accuracy"]
    rows = [r for r in run.rows if r.get("test_accuracy", "") != ""]
    return (rows[-1]["test_loss"], rows[-1]["test_accuracy"]) if rows else (None, None)


def status_of(run: Run) -> str:
    status, step, iters = run.info["status"], run.info["step"], run.option("iters")
    if status == "done":
        return "done"
    if status == "running":
        return f"not finished (step {step} of {iters})"
    if status == "failed":
        error = " ".join(str(run.info.get("error", "")).split())
        return "failed: " + (error[:77] + "..." if len(error) > 80 else error)
    return f"{status} at step {step} of {iters}"


def varying(runs: list[Run]) -> list[str]:
    """The axes (beyond :data:`FIXED`) whose values differ between runs."""
    return [k for k in AXES if k not in FIXED and len({text(r.option(k)) for r in runs}) > 1]


def describe(run: Run, keys: list[str]) -> str:
    """A run by the given facts: ``lenet lr=0.001 iters=100``."""
    facts = {"spec": spec_of(run), "target": run.info["target"], "input": _shape(run)}
    return " ".join(facts[k] if k in facts else f"{k}={text(run.option(k))}" for k in keys)


def labels(runs: list[Run], with_target: bool) -> list[str]:
    """A short name per run from what differs between them; the run's path where
    that does not tell them apart."""
    keys = [k for k in ("spec", "target", "input") if len({describe(r, [k]) for r in runs}) > 1]
    if not with_target and "target" in keys:
        keys.remove("target")
    keys += [k for k in AXES if len({text(r.option(k)) for r in runs}) > 1]
    names = [describe(r, keys) for r in runs]
    groups = [(r.info["target"], n) if not with_target else n for r, n in zip(runs, names)]
    if not keys or len(set(groups)) < len(runs):
        return [r.label for r in runs]
    return names


def _shape(run: Run) -> str:
    return "x".join(str(n) for n in run.info["input_shape"])


# ----------------------------------------------------------------------------
# The table and the commands


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(runs: list[Run]) -> str:
    """The Markdown table, one row per run; a test mean IoU column when a run has one
    (segmentation, whose accuracies are pixel accuracies)."""
    axes = [*FIXED, *varying(runs)]
    iou = ["test mean IoU"] if any("test_mean_iou" in r.info for r in runs) else []
    head = ["run", "spec", "target", "input", *(k.replace("_", " ") for k in axes)]
    head += ["training time (s)", "parameters", "weights (MB)", "train accuracy", "test accuracy", *iou, "status"]
    align = ["---"] * 4 + ["---:" if AXES[k].kind is not str else "---" for k in axes]
    align += ["---:"] * (5 + len(iou)) + ["---"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for r in runs:
        cells = [f"`{r.label}`", spec_of(r), r.info["target"], _shape(r), *(text(r.option(k)) for k in axes)]
        cells += [
            f"{r.info['seconds']:.1f}",
            f"{r.info['params']['trainable']:,}",
            _num(r.info.get("weights_mb"), ".2f"),  # "-" for a run.json older than weights_mb
            _num(r.info.get("train_accuracy"), ".4f"),
            _num(last_test(r)[1], ".4f"),
            *([_num(r.info.get("test_mean_iou"), ".4f")] if iou else []),
            status_of(r),
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def command(options: dict, out: str, lists: dict[str, list] | None = None) -> str:
    """The ``archspec train`` command of these options (``lists``: a grid's axes)."""
    lists = lists or {}
    parts = ["archspec", "train", options["spec"], "--target", options["target"]]
    for f in fields(Options):
        value = lists.get(f.name, options.get(f.name, f.default))
        if f.name in NOT_IN_COMMANDS or value in (None, (), []) or (value == f.default and f.name not in ALWAYS):
            continue
        if f.name == "sets":
            parts += [x for s in value for x in ("--set", s)]
        elif f.name == "input":
            parts += ["--input", "x".join(map(str, value))]
        elif isinstance(value, bool):
            parts += [flag(f.name)] if value else []
        else:  # a grid's axis, or a list option (comma-separated), or one value
            parts += [flag(f.name), ",".join(map(text, value)) if isinstance(value, list | tuple) else text(value)]
    return " ".join(shlex.quote(p) for p in [*parts, "-o", out])


def commands(runs: list[Run]) -> list[str]:
    """The commands that made the runs: one per grid where a folder holds a whole
    grid of runs that differ only in their axes, else one per run."""
    out = []
    for group in sorted({r.group for r in runs}):
        members = [r for r in runs if r.group == group]
        grid = _as_grid(members)
        if grid is not None:
            out.append(grid)
            continue
        out += [command(r.options, r.option("out") or r.label) for r in members]
    return out


def _as_grid(runs: list[Run]) -> str | None:
    if len(runs) < 2 or any(not r.option("out") for r in runs):
        return None
    values = {k: sorted({r.option(k) for r in runs}, key=_sortable) for k in AXES}
    axes = {k: v for k, v in values.items() if len(v) > 1}
    rest = [{k: v for k, v in r.options.items() if k not in axes and k != "out"} for r in runs]
    parents = {Path(r.option("out")).parent.as_posix() for r in runs}
    points = {tuple(text(r.option(k)) for k in axes) for r in runs}
    if len(parents) != 1 or any(x != rest[0] for x in rest) or len(points) != len(runs):
        return None
    if len(runs) != math.prod(len(v) for v in axes.values()):
        return None
    return command(runs[0].options, parents.pop(), axes)


def markdown(runs: list[Run], plots: bool) -> str:
    """The whole report: the table, the best run, the commands, and the plots' links."""
    lines = [f"# Report: {len(runs)} run{'s' if len(runs) != 1 else ''}", "", table(runs)]
    scored = [(last_test(r)[1], -i, r) for i, r in enumerate(runs) if last_test(r)[1] is not None]
    if scored:
        acc, _, best = max(scored, key=lambda t: t[:2])
        lines += [f"Best test accuracy: `{best.label}` ({acc:.4f}).", ""]
    lines += ["Made by:", "", "```sh", *commands(runs), "```", ""]
    if plots:
        lines += ["![test accuracy](accuracy.png)", "", "![test loss](loss.png)", ""]
        lines += ["![training time and weights size](time_size.png)", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# Plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    _pyplot().close(fig)


def plot_curves(runs: list[Run], key: str, title: str, path: Path) -> None:
    """``key`` (test_accuracy or test_loss) against steps: a panel per target, a
    line per run, one colour per run's label in every panel."""
    plt = _pyplot()
    targets = list(dict.fromkeys(r.info["target"] for r in runs))
    names = labels(runs, with_target=False)
    legend = list(dict.fromkeys(names))
    cmap = plt.get_cmap("tab10" if len(legend) <= 10 else "tab20")
    styles = ("-", "--", ":", "-.")
    ncols = min(len(targets), 2)
    nrows = math.ceil(len(targets) / ncols)
    legend_rows = math.ceil(len(legend) / 3)
    height = 3.6 * nrows + 0.3 * legend_rows + 0.6
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, height), sharex=True, sharey=True, squeeze=False)
    handles = {}
    for ax, target in zip(axes.flat, targets):
        for run, name in zip(runs, names):
            points = [(row["step"], row[key]) for row in run.rows if row.get(key, "") != ""]
            if run.info["target"] != target or not points:
                continue
            steps, values = zip(*points)
            i = legend.index(name)
            style = styles[i // cmap.N % 4]
            # shorter runs on top: a run of 100 steps often retraces the start of a run of 300
            zorder = 2 + 1 / (1 + steps[-1])
            (line,) = ax.plot(steps, values, style, color=cmap(i % cmap.N), marker="o", markersize=2.5, zorder=zorder)
            handles.setdefault(name, line)
        ax.set_title(target)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel(title)
    for ax in axes.flat[len(targets) :]:
        ax.set_visible(False)
    if key == "test_accuracy":
        axes[0, 0].set_ylim(0, 1.02)
    shown = [n for n in legend if n in handles]
    fig.legend([handles[n] for n in shown], shown, loc="lower center", ncol=min(3, len(shown)) or 1, frameon=False)
    fig.suptitle(f"{title} against steps")
    fig.tight_layout(rect=(0, (0.3 * legend_rows + 0.2) / height, 1, 1))
    _save(fig, path)


def plot_time_size(runs: list[Run], path: Path) -> None:
    """Training time and the weights' size (weights.npz) per run, as horizontal bars (one colour per target)."""
    plt = _pyplot()
    names = labels(runs, with_target=True)
    targets = list(dict.fromkeys(r.info["target"] for r in runs))
    colours = [plt.get_cmap("tab10")(targets.index(r.info["target"]) % 10) for r in runs]
    height = 0.32 * len(runs) + 1.4
    fig, (ax_time, ax_size) = plt.subplots(1, 2, figsize=(12, height), sharey=True)
    y = list(range(len(runs)))
    for ax, values, unit, fmt in (
        (ax_time, [r.info["seconds"] for r in runs], "training time (s)", ".1f"),
        (ax_size, [r.info.get("weights_mb") for r in runs], "weights, weights.npz (MB)", ".2f"),
    ):
        bars = ax.barh(y, [v or 0.0 for v in values], color=colours)
        ax.bar_label(bars, [_num(v, fmt) for v in values], padding=3, fontsize=8)
        ax.set_xlabel(unit)
        ax.set_xlim(0, max(v or 0.0 for v in [*values, 0]) * 1.2 or 1)
        ax.grid(axis="x", alpha=0.3)
    ax_time.set_yticks(y, names, fontsize=8)
    ax_time.set_ylim(len(runs) - 0.5, -0.5)  # the first run on top, no margin
    fig.suptitle("training time and size of the weights")
    fig.tight_layout()
    _save(fig, path)


# ----------------------------------------------------------------------------
# The entry point


def report(paths: list[Path], out: Path | None = None) -> str:
    """Compare the runs under ``paths``; with ``out``, write the report there with its
    plots (:data:`FILES`). Returns the report without the plots' links, to print.
    Raises TrainingError."""
    runs = collect([Path(p) for p in paths])
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise TrainingError(f"-o {out} is a file; give a folder for the report")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrainingError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
        plot_curves(runs, "test_accuracy", "test accuracy", out / "accuracy.png")
        plot_curves(runs, "test_loss", "test loss", out / "loss.png")
        plot_time_size(runs, out / "time_size.png")
        write_text(out / "report.md", markdown(runs, plots=True))
    return markdown(runs, plots=False)
