"""Grids of runs (archspec train --lr a,b --iters c,d) and archspec report.

Fast tests parse lists, plan grids and report on run directories written by
hand; slow ones train small PyTorch grids, and remake the committed reports of
docs/experiments/.
"""

from __future__ import annotations

import json
import shlex
import struct
from dataclasses import asdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from archspec.cli import main
from archspec.training.core import Metrics, TrainingError
from archspec.training.grid import AXES, GridResult, format_summary, outcome, parse_values, plan, point_name
from archspec.training.report import collect, command, commands, markdown, report
from archspec.training.run import Options

ROOT = Path(__file__).resolve().parent.parent
LENET = str(ROOT / "specs" / "lenet.yaml")
EXPERIMENTS = ROOT / "docs" / "experiments"


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def fake_run(run_dir: Path, status: str = "done", steps: int = 20, **options) -> Path:
    """A run directory as archspec train leaves it (run.json and metrics.csv only)."""
    opts = Options(spec="specs/lenet.yaml", target="pytorch", out=str(run_dir), **options)
    run_dir.mkdir(parents=True)
    done = status == "done"
    step = opts.iters if done else steps
    rows = [
        {"step": s, "loss": 1 / s, "accuracy": 0.5, "test_loss": 2 / s, "test_accuracy": 0.4 + s / 1000, "lr": opts.lr}
        for s in range(10, step + 1, 10)
    ]
    info = {
        "spec": opts.spec,
        "name": "lenet",
        "target": opts.target,
        "status": status,
        "step": step,
        "options": {**asdict(opts), "sets": list(opts.sets), "input": None},
        "batch_size": opts.batch_size,
        "input_shape": [3, 32, 32],
        "classes": [str(k) for k in range(10)],
        "num_classes": 10,
        "params": {"trainable": 59386, "non_trainable": 0, "total": 59386},
        "weights_mb": 0.232,
        "seconds": step / 10,
    }
    if done:
        info.update(train_accuracy=0.9, test_loss=rows[-1]["test_loss"], test_accuracy=rows[-1]["test_accuracy"])
    (run_dir / "run.json").write_text(json.dumps(info))
    (run_dir / "metrics.csv").write_text(Metrics(rows).csv())
    return run_dir


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


# ----------------------------------------------------------------------------
# Lists and grids (fast)


def test_lists_are_typed_in_the_order_given():
    assert parse_values("lr", "0.01, 0.001,1e-4") == (0.01, 0.001, 0.0001)
    assert parse_values("iters", "300,100") == (300, 100)
    assert parse_values("optimizer", "sgd,adam") == ("sgd", "adam")
    assert parse_values("seed", "3") == (3,)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lr", "0.1,,0.2"], "Invalid value for '--lr': '0.1,,0.2' has an empty value"),
        (["--lr", "0.1,"], "has an empty value"),
        (["--lr", "0.1,fast"], "Invalid value for '--lr': 'fast' is not a number"),
        (["--iters", "100,1.5"], "Invalid value for '--iters': '1.5' is not a whole number"),
        (["--batch-size", "8,x"], "'x' is not a whole number"),
        (["--lr", "0.1,0.10"], "0.1 is given twice; give each value once"),
        (["--optimizer", "sgd,adam,sgd"], "sgd is given twice"),
        (["--seed", "1,2,1"], "1 is given twice"),
    ],
)
def test_bad_lists_are_usage_errors(args, message, tmp_path):
    result = run_cli("train", LENET, "-t", "pytorch", *args, "-o", str(tmp_path / "g"))
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lr", "0.01,0"], "--lr 0.0 is out of range: give a learning rate above 0 and at most 10"),
        (["--lr", "0.01,nan"], "--lr nan is out of range"),
        (["--iters", "10,0"], "--iters 0 is out of range"),
        (["--batch-size", "8,0"], "--batch-size 0 is out of range"),
        (["--optimizer", "adam,rmsprop"], "unknown optimizer 'rmsprop'; choose from sgd, momentum, adam"),
        (
            ["--lr", "1,2,3,4,5", "--iters", "1,2,3,4,5", "--seed", "1,2,3,4,5"],
            "the grid has 125 points (5 (--lr) x 5 (--iters) x 5 (--seed)); give at most 100",
        ),
    ],
)
def test_every_value_is_checked_before_any_run(args, message, tmp_path):
    result = run_cli("train", LENET, "-t", "pytorch", *args, "-o", str(tmp_path / "g"))
    assert result.exit_code == 1
    assert f"error: {message}" in result.output
    assert not (tmp_path / "g").exists()


def test_a_grid_needs_a_new_or_empty_out(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "x").write_text("")
    result = run_cli("train", LENET, "-t", "pytorch", "--lr", "0.1,0.2", "-o", str(tmp_path / "g"))
    assert result.exit_code == 1
    assert "--out" in result.output and "already exists and is not an empty folder" in result.output


def test_resume_takes_one_value_of_each_option(tmp_path):
    result = run_cli("train", "--resume", str(tmp_path), "--lr", "0.1,0.2", "--seed", "1,2")
    assert result.exit_code == 2
    assert "--resume continues one run: give one value for --lr, --seed" in result.output


def test_a_grid_is_the_product_named_by_the_axes_that_vary():
    base = Options(spec=LENET, target="pytorch", batch_size=16)
    axes = {"lr": (0.01, 0.001), "iters": (300, 100), "batch_size": (16,), "optimizer": ("sgd", "adam")}
    points = plan(base, axes)
    assert [p.name for p in points] == [
        "lr0.01-iters300-sgd",
        "lr0.01-iters300-adam",
        "lr0.01-iters100-sgd",
        "lr0.01-iters100-adam",
        "lr0.001-iters300-sgd",
        "lr0.001-iters300-adam",
        "lr0.001-iters100-sgd",
        "lr0.001-iters100-adam",
    ]
    assert [p.index for p in points] == list(range(1, 9))
    last = points[-1].options
    assert (last.lr, last.iters, last.batch_size, last.optimizer, last.seed) == (0.001, 100, 16, "adam", 0)
    assert points[-1].values == {"lr": 0.001, "iters": 100, "optimizer": "adam"}


def test_point_names_are_filesystem_safe_and_tell_values_apart():
    assert point_name({"lr": 1e-05, "seed": 2}) == "lr1e-05-seed2"
    assert point_name({"lr": 0.1}) != point_name({"lr": 0.10000000000000002})
    assert point_name({"optimizer": "a/b c"}) == "a_b_c"


def test_the_summary_gives_each_point_its_outcome(tmp_path):
    points = plan(Options(spec=LENET, target="pytorch"), {"seed": (1, 2, 3, 4, 5)})
    done = {"test_accuracy": 0.9, "train_accuracy": 0.95}
    results = [
        GridResult(points[0], "done", tmp_path / "seed1", "", done, 2.0),
        GridResult(points[1], "diverged", tmp_path / "seed2", "the loss became nan at step 3", {}, 1.0),
        GridResult(points[2], "failed", tmp_path / "seed3", "RuntimeError: broke", {}, 0.5),
        GridResult(points[3], "interrupted", tmp_path / "seed4", "interrupted at step 2", {}, 0.2),
        GridResult(points[4], "not run", tmp_path / "seed5"),
    ]
    assert [outcome(r) for r in results] == [
        "test accuracy 0.9000 in 2.0 s",
        "diverged: the loss became nan at step 3",
        "failed: RuntimeError: broke",
        "interrupted: interrupted at step 2",
        "not run",
    ]
    assert format_summary(results).splitlines() == [
        "#  seed  status       test acc  train acc  seconds",
        "1  1     done         0.9000    0.9500     2.0",
        "2  2     diverged     -         -          1.0",
        "3  3     failed       -         -          0.5",
        "4  4     interrupted  -         -          0.2",
        "5  5     not run      -         -          -",
        "",
        f"1 of 5 runs finished, 2 failed; compare them: archspec report {tmp_path}",
    ]


def test_the_table_of_axes_covers_the_options():
    assert {"lr", "iters", "batch_size", "optimizer", "seed"} <= set(AXES)
    assert set(AXES) <= set(Options.__dataclass_fields__)


# ----------------------------------------------------------------------------
# Reports of hand-written runs (fast)


@pytest.fixture
def grid_dir(tmp_path):
    root = tmp_path / "grid"
    for lr in (0.01, 0.001):
        for iters in (1000, 300):  # numerically, 300 comes before 1000
            fake_run(root / f"lr{lr}-iters{iters}", lr=lr, iters=iters, threads=1)
    return root


def test_report_orders_runs_by_their_values_and_rebuilds_the_grid_command(grid_dir):
    runs = collect([grid_dir])
    assert [r.label for r in runs] == ["lr0.001-iters300", "lr0.001-iters1000", "lr0.01-iters300", "lr0.01-iters1000"]
    (line,) = commands(runs)
    assert shlex.split(line) == [
        "archspec", "train", "specs/lenet.yaml", "--target", "pytorch", "--lr", "0.001,0.01", "--iters", "300,1000",
        "--batch-size", "32", "--optimizer", "adam", "--seed", "0", "--threads", "1", "-o", str(grid_dir),
    ]  # fmt: skip
    text = markdown(runs, plots=False)
    row = next(line for line in text.splitlines() if "`lr0.01-iters1000`" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:8] == ["lenet", "pytorch", "3x32x32", "0.01", "1000", "32", "adam"]
    assert cells[8:] == ["100.0", "59,386", "0.23", "0.9000", "1.4000", "done"]
    assert "Best test accuracy: `lr0.001-iters1000` (1.4000)." in text  # the first of equals
    assert "accuracy.png" not in text


def test_report_of_separate_runs_gives_a_command_each_and_marks_unfinished_runs(tmp_path):
    a = fake_run(tmp_path / "a", lr=0.01)
    b = fake_run(tmp_path / "b", status="running", steps=40, lr=0.01, iters=300, sets=("dropout=0.2",))
    runs = collect([b, a])
    assert [r.label for r in runs] == ["b", "a"]  # the order given
    assert commands(runs) == [
        f"archspec train specs/lenet.yaml --target pytorch --lr 0.01 --iters 300 --batch-size 32 --optimizer adam "
        f"--seed 0 --set dropout=0.2 -o {b}",
        f"archspec train specs/lenet.yaml --target pytorch --lr 0.01 --iters 300 --batch-size 32 --optimizer adam "
        f"--seed 0 -o {a}",
    ]
    text = markdown(runs, plots=False)
    assert "| lenet (dropout=0.2) |" in text
    assert "| - | 0.4400 | not finished (step 40 of 300) |" in text  # no final train accuracy yet


def test_report_takes_varying_axes_as_columns(tmp_path):
    for seed in (1, 0):
        fake_run(tmp_path / "g" / f"seed{seed}", seed=seed)
    text = markdown(collect([tmp_path / "g"]), plots=False)
    assert "| optimizer | seed | training time (s) |" in text
    assert "--seed 0,1" in text


def test_a_command_has_a_flag_per_option_that_is_not_its_default():
    options = {**asdict(Options(spec="s.yaml", target="keras", threads=2)), "input": [3, 32, 32], "sets": ["a=1"]}
    options["not_an_option"] = 5  # a key no Options field has is not a flag
    assert command(options, "out dir") == (
        "archspec train s.yaml --target keras --lr 0.003 --iters 300 --batch-size 32 --optimizer adam --seed 0 "
        "--set a=1 --input 3x32x32 --threads 2 -o 'out dir'"
    )


def _empty(p: Path) -> Path:
    p.mkdir()
    return p


def _with_subfolder(p: Path) -> Path:
    (p / "sub").mkdir(parents=True)
    return p


def _with_run_json(text: str):
    def make(p: Path) -> Path:
        p.mkdir()
        (p / "run.json").write_text(text)
        return p

    return make


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p, "no such folder"),
        (_empty, "is neither a run directory (it has no run.json) nor a folder of run directories"),
        (_with_subfolder, "is neither a run directory"),
        (_with_run_json("{}"), "is not a run description"),
        (_with_run_json("not json"), "is not a run description"),
    ],
)
def test_report_refuses_what_is_not_a_run(make, message, tmp_path):
    path = make(tmp_path / "x")
    result = run_cli("report", str(path))
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    with pytest.raises(TrainingError, match="neither|no such|not a run"):
        report([path])


def test_report_refuses_a_broken_metrics_file(tmp_path):
    run = fake_run(tmp_path / "r")
    (run / "metrics.csv").write_text("step,loss\nten,1\n")
    result = run_cli("report", str(run))
    assert result.exit_code == 1 and "is not a metrics file written by archspec train" in result.output


REPORTS = ["lenet-lr-iters", "mobilenet_v2-vs-vgg16"]


def report_command(folder: str) -> tuple[list[str], Path]:
    """The ``archspec report`` line of an experiment's README: its run folders, and its -o."""
    here = EXPERIMENTS / folder
    line = next(x for x in (here / "README.md").read_text().splitlines() if x.startswith("archspec report "))
    args = shlex.split(line)[2:]
    out = args.index("-o")
    assert args[out + 1] == here.relative_to(ROOT).as_posix()
    return args[:out] + args[out + 2 :], here


@pytest.mark.parametrize("folder", REPORTS)
def test_committed_reports_are_remade_from_their_runs(folder, monkeypatch):
    """The README's archspec report command gives the committed report.md."""
    runs, here = report_command(folder)
    monkeypatch.chdir(ROOT)
    assert markdown(collect([Path(a) for a in runs]), plots=True) == (here / "report.md").read_text()
    assert {p.name for p in here.glob("*.png")} == {"accuracy.png", "loss.png", "time_size.png"}
    assert not list(here.rglob("*.npz")) and not list(here.rglob("*.pt")) and not list(here.rglob("*.h5"))


# ----------------------------------------------------------------------------
# Real runs (slow)


@pytest.mark.slow
def test_a_pytorch_grid_writes_a_run_per_point_and_a_report(tmp_path):
    out = tmp_path / "grid"
    result = run_cli(
        "train", LENET, "-t", "pytorch", "--lr", "0.003,0.01", "--iters", "5", "--eval-every", "5",
        "--threads", "1", "-q", "-o", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["lr0.003", "lr0.01"]
    for name, lr in (("lr0.003", 0.003), ("lr0.01", 0.01)):
        info = json.loads((out / name / "run.json").read_text())
        assert info["status"] == "done" and info["step"] == 5
        assert info["options"]["lr"] == lr and info["options"]["iters"] == 5
        assert info["options"]["out"] == str(out / name)
        assert (out / name / "weights.npz").is_file()
    lines = result.output.splitlines()
    assert f"[1/2] lr=0.003 -> {out / 'lr0.003'}" in lines
    assert any(x.startswith("[2/2] lr=0.01: test accuracy ") for x in lines)
    assert "2 of 2 runs finished; compare them: archspec report " + str(out) in result.output

    result = run_cli("report", str(out), "-o", str(tmp_path / "report"))
    assert result.exit_code == 0, result.output
    sizes = {name: png_size(tmp_path / "report" / name) for name in ("accuracy.png", "loss.png", "time_size.png")}
    assert all(w >= 600 and h >= 200 for w, h in sizes.values()), sizes
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| `lr0.003` | lenet | pytorch | 3x32x32 | 0.003 | 5 | 32 | adam |" in text
    assert "![test accuracy](accuracy.png)" in text
    assert (
        f"--lr 0.003,0.01 --iters 5 --batch-size 32 --optimizer adam --seed 0 --threads 1 --eval-every 5 -o {out}"
        in text
    )
    assert text.startswith(result.output.split("Made by:")[0])  # what is printed is the report, less the plots
    assert not [p for p in (tmp_path / "report").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_a_failed_point_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    from archspec.training import pytorch as trainer

    real_fit, real_step = trainer.Trainer.fit, trainer.Trainer._step

    def fit(self, *args):
        if self.setup.lr == 0.01:
            raise RuntimeError("the framework broke")
        return real_fit(self, *args)

    def step(self, x, y):  # lr 0.03: the loss becomes NaN at the third step
        loss, correct = real_step(self, x, y)
        self.calls = getattr(self, "calls", 0) + 1
        return (float("nan") if self.setup.lr == 0.03 and self.calls == 3 else loss), correct

    monkeypatch.setattr(trainer.Trainer, "fit", fit)
    monkeypatch.setattr(trainer.Trainer, "_step", step)
    out = tmp_path / "grid"
    result = run_cli(
        "train", LENET, "-t", "pytorch", "--lr", "0.01,0.03,0.003", "--iters", "4", "--eval-every", "2",
        "--threads", "1", "-q", "-o", str(out),
    )  # fmt: skip
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert f"[1/3] lr=0.01: failed: RuntimeError: the framework broke (traceback in {out}/lr0.01/error.txt)" in lines
    assert any(x.startswith("[2/3] lr=0.03: diverged: the loss became nan at step 3") for x in lines)
    assert any(x.startswith("[3/3] lr=0.003: test accuracy ") for x in lines)
    assert "1 of 3 runs finished, 2 failed" in result.output
    failed = json.loads((out / "lr0.01" / "run.json").read_text())
    assert failed["status"] == "failed" and failed["error"].startswith("RuntimeError: the framework broke")
    assert "raise RuntimeError" in (out / "lr0.01" / "error.txt").read_text()
    assert json.loads((out / "lr0.003" / "run.json").read_text())["status"] == "done"

    text = run_cli("report", str(out)).output
    assert "| failed: RuntimeError: the framework broke" in text
    assert "| diverged at step 2 of 4 |" in text and "| done |" in text


@pytest.mark.slow
@pytest.mark.parametrize("folder", REPORTS)
def test_the_report_command_remakes_a_committed_report(folder, tmp_path, monkeypatch):
    runs, here = report_command(folder)
    monkeypatch.chdir(ROOT)
    result = run_cli("report", *runs, "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.md").read_text() == (here / "report.md").read_text()
    for name in ("accuracy.png", "loss.png", "time_size.png"):
        assert png_size(tmp_path / name) == png_size(here / name)
