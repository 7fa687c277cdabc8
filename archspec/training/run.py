"""``archspec train`` and ``archspec test``: a run from options to a run directory.

A run directory holds

- ``<name>_<target>.py``: the generated code that was trained (``--set`` and
  ``--input`` applied), standalone;
- ``weights.npz``: canonical weights, loadable by every target;
- the framework's own checkpoint (``model.pt``, ``model.weights.h5``,
  ``model.npz`` or ``checkpoint/``) and the optimizer's state, for ``--resume``;
- ``metrics.csv`` (step, loss, accuracy, test_loss, test_accuracy, lr, seconds;
  segmentation runs also test_mean_iou), ``curves.png``, and ``run.json`` (spec,
  target, task, every option, the device, package versions, seconds, parameters,
  the weights' size, final accuracies, status).

A segmentation network (:func:`task_of`) trains on masks; its accuracies are
pixel accuracies and its test figures add the mean IoU.

Every file is written atomically, at every evaluation: a run that is stopped
at any moment leaves the last checkpoint whole.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import platform
import tempfile
import time
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import ModuleType

import numpy as np

from archspec import weights as W
from archspec.codegen.model import class_name, has_logits_switch, logits_outputs
from archspec.diagnostics import SpecError
from archspec.ir import INPUT
from archspec.pipeline import Compiled, compile_spec
from archspec.training import data as D
from archspec.training import device as placement
from archspec.training.augment import names as augment_names
from archspec.training.augment import parameters as augment_parameters
from archspec.training.core import (
    DAMAGED,
    OPTIMIZERS,
    SCHEDULES,
    STEP_GAMMA,
    Diverged,
    Interrupted,
    Metrics,
    Monitor,
    Setup,
    Stop,
    StoppedEarly,
    Trainer,
    TrainingError,
    best_row,
    predict_all,
    scores,
    softmax,
    write_json,
    write_text,
)

TARGETS = ("pytorch", "tensorflow", "keras", "chainer")
FRAMEWORK_PACKAGES = {"pytorch": "torch", "tensorflow": "tensorflow-cpu", "keras": "keras", "chainer": "chainer"}
RUN_FILE = "run.json"
BEST_WEIGHTS = "best/weights.npz"  # with --patience: the weights of the evaluation with the lowest test loss
LIMITS = {"lr": (0.0, 10.0), "iters": (1, 10_000_000), "batch_size": (1, 65_536)}


@dataclass(frozen=True)
class Options:
    """Everything ``archspec train`` is told; run.json keeps it."""

    spec: str
    target: str
    data: str | None = None
    test_data: str | None = None
    lr: float = 0.003
    iters: int = 300
    batch_size: int = 32
    optimizer: str = "adam"
    seed: int = 0
    sets: tuple[str, ...] = ()
    input: tuple[int, ...] | None = None  # channels first, from --input
    threads: int | None = None
    eval_every: int | None = None  # default: 20 evaluations in a run
    out: str | None = None
    quiet: bool = False
    dropout: bool = True
    augment: tuple[str, ...] = ()  # archspec.training.augment's names, in the order they run
    schedule: str = "constant"  # constant, step or cosine (core.SCHEDULES)
    step_size: int | None = None  # --schedule step: default iters // 3
    weight_decay: float = 0.0
    patience: int | None = None  # evaluations without a better test loss before stopping; None: never
    nproc: int = 1  # data-parallel replicas (archspec.training.distributed); batch_size is the global batch
    sync_bn: bool = False  # batch norm over the global batch, where the engine offers it
    distributed: bool = False  # this process is one worker of a launcher's job (torchrun, mpirun, TF_CONFIG)
    device: str = "auto"  # auto, cpu, cuda or cuda:N (archspec.training.device)

    def check(self) -> None:
        """Refuse values out of range, with what is allowed."""
        if self.target not in TARGETS:
            raise TrainingError(f"unknown target {self.target!r}; choose from {', '.join(TARGETS)}")
        if self.optimizer not in OPTIMIZERS:
            raise TrainingError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        lo, hi = LIMITS["lr"]
        if not (lo < self.lr <= hi):  # NaN fails too
            raise TrainingError(f"--lr {self.lr} is out of range: give a learning rate above {lo:g} and at most {hi:g}")
        for name in ("iters", "batch_size"):
            lo, hi = LIMITS[name]
            value = getattr(self, name)
            if not lo <= value <= hi:
                flag = "--" + name.replace("_", "-")
                raise TrainingError(f"{flag} {value} is out of range: give a whole number from {lo} to {hi:,}")
        if not 0 <= self.seed < 2**32:  # what every framework's generator takes
            raise TrainingError(f"--seed {self.seed} is out of range: give a whole number from 0 to 2**32 - 1")
        if self.eval_every is not None and self.eval_every < 1:
            raise TrainingError(f"--eval-every {self.eval_every} is out of range: give 1 or more steps")
        if self.threads is not None and self.threads < 1:
            raise TrainingError(f"--threads {self.threads} is out of range: give 1 or more")
        try:
            placement.parse(self.device)
        except ValueError as exc:
            raise TrainingError(f"--device {exc}") from None
        self._check_training_options()
        from archspec.training import distributed  # here: the launchers run it as a script (python -m)

        distributed.check(self.target, self.nproc, self.batch_size, self.sync_bn, self.device)

    def _check_training_options(self) -> None:
        try:
            augment_names(self.augment)
        except ValueError as exc:
            raise TrainingError(f"--augment: {exc}") from None
        if self.schedule not in SCHEDULES:
            raise TrainingError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if self.step_size is not None and self.schedule != "step":
            raise TrainingError(f"--step-size applies to --schedule step only (the schedule is {self.schedule})")
        if self.step_size is not None and self.step_size < 1:
            raise TrainingError(f"--step-size {self.step_size} is out of range: give 1 or more steps")
        if not 0 <= self.weight_decay <= 1:  # NaN fails too
            raise TrainingError(f"--weight-decay {self.weight_decay} is out of range: give a number from 0 to 1")
        if self.patience is not None and self.patience < 1:
            raise TrainingError(
                f"--patience {self.patience} is out of range: give 1 or more evaluations "
                "(leave it out not to stop early)"
            )

    @property
    def every(self) -> int:
        return self.eval_every or max(1, self.iters // 20)


@dataclass
class Result:
    run_dir: Path
    status: str  # done, interrupted, diverged, stopped early
    step: int
    message: str = ""
    summary: dict = field(default_factory=dict)
    main: bool = True  # False: another process (rank 0) wrote the run and reports it


# ----------------------------------------------------------------------------
# Compiling, generating, importing


def parse_sets(sets: tuple[str, ...]) -> dict[str, str]:
    from archspec.passes.expand import parse_overrides

    try:
        return parse_overrides(sets)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None


@dataclass(frozen=True)
class Task:
    """What a network learns, from its compiled graph (:func:`task_of`)."""

    kind: str  # D.CLASSIFICATION (a class per image) or D.SEGMENTATION (a class per pixel)
    num_classes: int  # the num_classes the spec was compiled with
    outputs: int  # how many outputs the network returns (the first is the main one)


def task_of(compiled: Compiled) -> Task:
    """The one rule: a network with a ``num_classes`` parameter is an image classifier
    when every output is one value per class, (K,), and a segmentation network when
    every output is (num_classes, H, W) at the input's H x W; anything else is refused."""
    graph = compiled.graph
    if "num_classes" not in graph.params:
        raise TrainingError(
            f"{graph.name} has no num_classes parameter: archspec train and test need an image classifier "
            "or a segmentation network"
        )
    switched = set(logits_outputs(graph))
    unswitched = [p for p in graph.outputs if p != INPUT and graph.node(p).op == "softmax" and p not in switched]
    if unswitched:
        raise TrainingError(
            f"{graph.name}'s output {unswitched[0]} is a softmax that the generated code cannot switch off (another "
            "node reads it, or a stage builds it): training would take its probabilities for logits. End the "
            "network with a softmax node of its own that nothing else reads, as the zoo's specs do, or drop it"
        )
    k, shapes = int(graph.params["num_classes"]), [tuple(s) for s in graph.output_shapes]
    if all(len(s) == 1 for s in shapes):
        return Task(D.CLASSIFICATION, k, len(shapes))
    size = tuple(graph.input_shape[1:])
    if all(len(s) == 3 and s[0] == k for s in shapes):
        if all(s[1:] == size for s in shapes):
            return Task(D.SEGMENTATION, k, len(shapes))
        raise TrainingError(
            f"{graph.name} scores every pixel at {'x'.join(map(str, shapes[0][1:]))}, not at the input's "
            f"{'x'.join(map(str, size))}: archspec train needs per-pixel outputs of the input's size"
        )
    raise TrainingError(
        f"{graph.name}'s outputs have shapes {[list(s) for s in shapes]}: archspec train and test need outputs "
        f"of one value per class ({k},) or of one value per class and pixel ({k}, H, W)"
    )


def refuse_parallel(options: Options, compiled: Compiled) -> None:
    """Refuse data-parallel training (--nproc, --distributed) of a segmentation network."""
    if (options.nproc > 1 or options.distributed) and task_of(compiled).kind == D.SEGMENTATION:
        raise TrainingError(
            f"{compiled.graph.name} is a segmentation network: --nproc and --distributed train classifiers only "
            "for now; train it in one process (drop --nproc and --distributed)"
        )


def check_parallel(options: Options) -> None:
    """:func:`refuse_parallel` before a launcher starts the workers (a broken spec is left to them)."""
    if options.nproc > 1 or options.distributed:
        try:
            compiled = compile_spec(options.spec, parse_sets(options.sets), input_shape=options.input)
        except SpecError:
            return
        refuse_parallel(options, compiled)


def generate(compiled: Compiled, target: str, directory: Path) -> ModuleType:
    """Write the target's code into ``directory`` and import it."""
    from archspec.verify import generate as generate_code

    module = generate_code(compiled, [target], directory)[target]
    if isinstance(module, str):
        raise TrainingError(module)
    return module


def trainer_for(target: str, module: ModuleType, compiled: Compiled, setup: Setup) -> Trainer:
    from archspec import runtime

    runtime.get(target)  # the framework's import-time settings
    trainer_module = importlib.import_module(f"archspec.training.{target}")
    return trainer_module.Trainer(module, class_name(compiled.graph.name), setup)


def versions(target: str) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for pkg in ("archspec", "numpy", FRAMEWORK_PACKAGES[target]):
        try:
            found[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            found[pkg] = "not installed"
    return found


def size_mb(path: Path) -> float:
    """A file's size in MiB (run.json's ``weights_mb``: weights.npz, the same in every framework)."""
    return round(path.stat().st_size / 2**20, 3) if path.is_file() else 0.0


# ----------------------------------------------------------------------------
# The run directory


def new_run_dir(options: Options, name: str) -> Path:
    if options.out:
        run_dir = Path(options.out)
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise TrainingError(
                f"--out {run_dir} already exists and is not an empty folder; "
                f"choose another --out, or continue that run with --resume {run_dir}"
            )
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / f"{name}-{options.target}-{stamp}"
        n = 1
        while run_dir.exists():
            n += 1
            run_dir = Path("runs") / f"{name}-{options.target}-{stamp}-{n}"
    try:
        make_writable(run_dir)
    except OSError as exc:
        raise TrainingError(f"cannot write the run to {run_dir}: {exc.strerror or exc}; choose another --out") from None
    return run_dir


def make_writable(folder: Path) -> None:
    """Make ``folder`` (and its parents) and check that a file can be written in it; OSError if not."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / ".archspec-write-test"
    probe.write_text("")
    probe.unlink()


# What the readers of run.json (test --weights, train --resume, report) take from it, by type.
RUN_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "target": (str,),
    "status": (str,),
    "step": (int,),
    "seconds": (int, float),
    "classes": (list,),
    "num_classes": (int,),
    "input_shape": (list,),
    "params": (dict,),
    "options": (dict,),
}
_JSON_NAMES = {str: "a string", int: "a whole number", float: "a number", list: "a list", dict: "an object"}


def run_problem(info: object) -> str | None:
    """What a run.json's content lacks for archspec's readers (:data:`RUN_FIELDS`), or None."""
    if not isinstance(info, dict):
        return "not a JSON object"
    for key, kinds in RUN_FIELDS.items():
        value = info.get(key)
        if not isinstance(value, kinds) or isinstance(value, bool):
            return f"{key!r} is missing or not {_JSON_NAMES[kinds[-1]]}"
    for key in ("spec", "target"):
        if not isinstance(info["options"].get(key), str):
            return f"'options.{key}' is missing or not a string"
    if info["step"] < 0 or not all(isinstance(c, str) for c in info["classes"]):
        return "'step' is negative or 'classes' holds a value that is not a string"
    return None


def read_run(run_dir: Path) -> dict:
    """run.json of a run directory; TrainingError if it is not one."""
    path = Path(run_dir) / RUN_FILE
    if not Path(run_dir).is_dir():
        raise TrainingError(f"{run_dir} is not a run directory (no such folder); give the folder archspec train wrote")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainingError(
            f"{run_dir} is not a run directory: it has no {RUN_FILE}; give a folder that archspec train wrote"
        ) from None
    except (OSError, ValueError) as exc:  # a folder named run.json, not UTF-8, not JSON
        raise TrainingError(f"{path} is not a run description written by archspec train ({exc}); {DAMAGED}") from None
    problem = run_problem(info)
    if problem:
        raise TrainingError(f"{path} is not a run description written by archspec train ({problem}); {DAMAGED}")
    return info


def _fits(value: object, hint: object) -> bool:
    """Whether a value read from JSON fits an :class:`Options` field's type (``float``, ``str | None``,
    ``tuple[str, ...]``, ...); a list stands for a tuple, an int for a float."""
    if isinstance(hint, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return isinstance(value, list | tuple) and all(_fits(v, typing.get_args(hint)[0]) for v in value)
    if isinstance(value, bool) or hint is bool:
        return isinstance(value, bool) and hint is bool
    return isinstance(value, (int, float) if hint is float else hint)


def _type_name(hint: object) -> str:
    """An :class:`Options` field's type in words: ``float | None`` -> 'a number or null'."""
    if isinstance(hint, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return f"a list of {_type_name(typing.get_args(hint)[0]).removeprefix('a ')}s"
    names = {float: "a number", int: "a whole number", str: "a string", bool: "true or false", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def resumed_options(info: dict, run_dir: Path, given: Options) -> Options:
    """The options a run was trained with (its run.json's ``info``), with what ``--resume`` takes
    from ``given``: --iters, --quiet, --threads, --nproc, --distributed, --device."""
    hints = typing.get_type_hints(Options)
    saved = dict(info["options"])
    unknown = sorted(set(saved) - set(hints))
    wrong = [
        f"{k}: {v!r} is not {_type_name(hints[k])}" for k, v in saved.items() if k in hints and not _fits(v, hints[k])
    ]
    if unknown or wrong:
        what = "; ".join([f"unknown: {', '.join(unknown)}"] * bool(unknown) + wrong)
        raise TrainingError(f"{run_dir / RUN_FILE} has options that archspec train does not write ({what}); {DAMAGED}")
    for key in ("sets", "input", "augment"):
        saved[key] = tuple(saved[key]) if saved.get(key) else (None if key == "input" else ())
    return replace(
        Options(**saved),
        iters=given.iters,
        quiet=given.quiet,
        threads=given.threads,
        nproc=given.nproc,  # the global batch stays the run's, so the steps mean the same
        distributed=given.distributed,
        device=given.device,  # the machine may be another one
    )


# ----------------------------------------------------------------------------
# train


def reconcile_metrics(path: Path, step: int, echo: Callable[[str], None]) -> Metrics:
    """metrics.csv of a run to resume at ``step`` (its run.json's), without the rows of later
    steps: those of an evaluation whose run.json was never written (the run was killed in
    between). The file is rewritten, atomically, only when rows are dropped, with a note."""
    metrics = Metrics.read(path)
    kept = [row for row in metrics.rows if not isinstance(row.get("step"), int) or row["step"] <= step]
    if len(kept) == len(metrics.rows):
        return metrics
    later = sorted({row["step"] for row in metrics.rows} - {row["step"] for row in kept})
    reconciled = Metrics(kept)
    write_text(path, reconciled.csv())
    echo(
        f"note: {path} had rows for step{'s' * (len(later) > 1)} {', '.join(map(str, later))}, after step {step} "
        f"of {path.parent / RUN_FILE} (the run stopped while saving): dropped; training continues from step {step}"
    )
    return reconciled


def compile_for(spec: str, sets: dict[str, str], input_shape: tuple[int, ...] | None, target: str) -> Compiled:
    """The spec compiled, refused (SpecError) where ``target`` cannot write it,
    as ``compile`` and ``verify`` refuse it."""
    from archspec.passes.targets import check_targets

    compiled = compile_spec(spec, sets, input_shape=input_shape)
    problems = check_targets(compiled, [target])
    if problems:
        raise SpecError(problems)
    return compiled


def train(options: Options, *, resume: Path | None = None, echo: Callable[[str], None] = print) -> Result:
    """Train a spec's generated model in one framework; see the module docstring.
    Raises TrainingError, D.DataError, W.WeightError or SpecError."""
    if resume is not None:
        info = read_run(resume)
        options = resumed_options(info, resume, options)
        start = info["step"]
        if start >= options.iters:
            raise TrainingError(
                f"{resume} has already taken {start} steps; give --iters above {start} to train it further"
            )
        resumed_metrics = reconcile_metrics(resume / "metrics.csv", start, echo)  # before anything runs
    options.check()
    from archspec.training import distributed

    world = distributed.world(
        options.target,
        options.nproc,
        options.distributed,
        options.sync_bn,
        options.batch_size,
        options.seed,
        options.threads,
        options.device,
    )
    sets = parse_sets(options.sets)
    compiled = compile_for(options.spec, sets, options.input, options.target)
    task = task_of(compiled)
    refuse_parallel(options, compiled)
    default_classes, outputs = task.num_classes, task.outputs
    set_classes = int(sets["num_classes"]) if "num_classes" in sets else None
    train_data, test_data = D.split_pair(
        options.data,
        options.test_data,
        compiled.graph.input_shape,
        warn=echo,
        task=task.kind,
        num_classes=set_classes or default_classes,
    )
    num_classes = D.check_num_classes(train_data, set_classes, default_classes)
    if num_classes != default_classes:
        sets = {**sets, "num_classes": str(num_classes)}
        compiled = compile_for(options.spec, sets, options.input, options.target)
    batch_size = options.batch_size
    if batch_size > len(train_data):
        batch_size = len(train_data) - len(train_data) % world.size
        echo(
            f"note: --batch-size {options.batch_size} is more than the {len(train_data)} training images; "
            f"using {batch_size}"
        )

    run_dir = resume if resume is not None or not world.main else new_run_dir(options, compiled.graph.name)
    # rank 0 alone writes the run; the others' code stays in a scratch folder while they train (AutoGraph reads it)
    scratch = None if world.main else tempfile.TemporaryDirectory(prefix="archspec-rank-")
    module = generate(compiled, options.target, run_dir if scratch is None else Path(scratch.name))
    setup = Setup(
        num_classes=num_classes,
        logits=has_logits_switch(compiled.graph),
        outputs=outputs,
        optimizer=options.optimizer,
        lr=options.lr,
        seed=options.seed,
        threads=options.threads,
        dropout=options.dropout,
        weight_decay=options.weight_decay,
        schedule=options.schedule,
        iters=options.iters,
        step_size=options.step_size,
        augment=options.augment,
        world=world,
        device=world.devices[0],
    )
    with world.scope():
        trainer = trainer_for(options.target, module, compiled, setup)
    metrics, start, seconds = Metrics(), 0, 0.0
    if resume is not None:
        trainer.load(W.load(run_dir / "weights.npz", compiled))
        try:
            trainer.restore(run_dir)
        except Exception as exc:  # each framework raises its own kinds for a missing or damaged checkpoint
            reason = (str(exc).splitlines() or [""])[0].split(". ")[0][:200]  # frameworks' messages run long
            raise TrainingError(
                f"cannot restore the optimizer's state from {run_dir}, the {options.target} checkpoint "
                f"({type(exc).__name__}: {reason}); {DAMAGED}"
            ) from None
        metrics, start, seconds = resumed_metrics, info["step"], float(info["seconds"])

    packages = versions(options.target)

    def describe(step: int, status: str, seconds: float) -> dict:
        c = compiled.counts.total
        return {
            "spec": options.spec,
            "name": compiled.graph.name,
            "target": options.target,
            "task": task.kind,
            "status": status,
            "step": step,
            "options": {**asdict(options), "sets": list(options.sets), "input": options.input and list(options.input)},
            "batch_size": batch_size,
            "input_shape": list(compiled.graph.input_shape),
            "classes": list(train_data.classes),
            "num_classes": num_classes,
            "data": {
                "train": {"source": train_data.name, "images": len(train_data)},
                "test": {"source": test_data.name, "images": len(test_data)},
            },
            "params": {"trainable": c.trainable, "non_trainable": c.non_trainable, "total": c.total},
            "weights_mb": size_mb(run_dir / "weights.npz"),
            "device": ",".join(world.devices),
            "seconds": round(seconds, 3),
            "versions": packages,
            "files": {"code": f"{compiled.graph.name}_{options.target}.py", "native": trainer.native},
            "distributed": world.describe(),
            **training_options(options, setup, compiled.graph.input_shape, metrics),
        }

    def checkpoint(step: int) -> None:
        # run.json goes last: it is the record that the evaluation at ``step`` is complete. A run
        # killed before it keeps the previous run.json, and the files before it may be one
        # evaluation ahead of its step; --resume trusts run.json's step and drops metrics.csv's
        # rows after it (reconcile_metrics), so no evaluation is logged twice and none is missing
        # (weights ahead of the step are trained on from there: a few steps repeated, no file
        # contradicting another). Written first, run.json could claim steps whose weights were lost.
        W.save(run_dir / "weights.npz", trainer.export(), compiled)
        trainer.save(run_dir)
        write_text(run_dir / "metrics.csv", metrics.csv())
        write_json(run_dir / RUN_FILE, describe(step, "running", monitor.seconds))

    def keep_best(step: int) -> None:
        W.save(run_dir / BEST_WEIGHTS, trainer.export(), compiled)

    monitor = Monitor(
        trainer,
        test_data,
        lr=options.lr,
        start=start,
        stop=options.iters,
        eval_every=options.every,
        checkpoint=checkpoint,
        metrics=metrics,
        seconds=seconds,
        quiet=options.quiet,
        lr_at=setup.lr_at,
        patience=options.patience,
        keep_best=keep_best if options.patience is not None else None,
        world=world,
    )
    if resume is None and world.main:
        checkpoint(0)  # a run directory is a run directory from the start
    status, message, step = "done", "", options.iters
    with monitor.running():
        try:
            trainer.fit(train_data, batch_size, start, options.iters, monitor)
        except Interrupted as stop:
            monitor.log()
            status, step = "interrupted", stop.step
            message = f"{stop.reason}; the checkpoint is saved: continue with --resume {run_dir}"
        except Diverged as stop:
            status, step = "diverged", monitor.saved
            message = f"{stop.reason}; the last good checkpoint (step {monitor.saved}) is kept in {run_dir}"
        except StoppedEarly as stop:
            status, step = "stopped early", stop.step
            best = best_row(metrics.rows)
            kept = f"the best weights (step {best['step']}) are in {run_dir / BEST_WEIGHTS}" if best else ""
            message = f"{stop.reason}; {kept or 'no evaluation had a finite test loss'}"
        except Stop as stop:  # pragma: no cover - every Stop is one of the above
            raise TrainingError(stop.reason) from None
        else:
            monitor.log()
    if scratch is not None:  # the run's files, figures and messages are rank 0's
        scratch.cleanup()
        return Result(run_dir, status, step, message, main=False)
    seconds = monitor.seconds
    info = describe(step, status, seconds)
    if status != "diverged":
        info |= {f"train_{k}": v for k, v in scores(trainer.predict, train_data).items()}
    rows = [r for r in metrics.rows if r.get("test_accuracy") != ""]
    if rows:
        info |= {k: v for k, v in rows[-1].items() if k in ("test_loss", "test_accuracy", "test_mean_iou")}
    write_json(run_dir / RUN_FILE, info)
    plot_curves(metrics, run_dir / "curves.png", f"{compiled.graph.name} ({options.target})")
    return Result(run_dir, status, step, message, info)


def training_options(options: Options, setup: Setup, shape: tuple[int, ...], metrics: Metrics) -> dict:
    """run.json's account of augmentation, the lr schedule, weight decay and early
    stopping, with the values they resolve to; the best evaluation when kept."""
    schedule: dict = {"kind": options.schedule, "lr": options.lr}
    if options.schedule == "step":
        schedule |= {"step_size": setup.period, "gamma": STEP_GAMMA}
    elif options.schedule == "cosine":
        schedule |= {"t_max": options.iters, "eta_min": 0.0}
    info = {
        "augmentation": augment_parameters(options.augment, shape),
        "schedule": schedule,
        "weight_decay": options.weight_decay,
    }
    best = best_row(metrics.rows) if options.patience is not None else None
    if best is not None:
        keys = ("step", "test_loss", "test_accuracy", "test_mean_iou")
        info["best"] = {**{k: best[k] for k in keys if k in best}, "weights": BEST_WEIGHTS}
    return info


def plot_curves(metrics: Metrics, path: Path, title: str) -> None:
    """Loss and accuracy against steps, train and test, as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from archspec.training.core import atomic

    rows = metrics.rows
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "accuracy", "accuracy")):
        for prefix, style in (("", "-"), ("test_", "--")):
            points = [(r["step"], r[prefix + key]) for r in rows if r.get(prefix + key, "") != ""]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, style, marker="o", markersize=3, label=("test " if prefix else "train ") + label)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_acc.set_ylim(0, 1.02)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------
# test


@dataclass
class TestReport:
    spec: str
    target: str
    weights: str
    data: str
    classes: list[str]
    accuracy: float
    n: int
    per_class: dict[str, dict[str, float | int]]
    confusion: list[list[int]]
    predictions: list[dict]

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class SegmentationReport:
    """``archspec test`` of a segmentation network: figures over every pixel of the test set."""

    spec: str
    target: str
    weights: str
    data: str
    classes: list[str]
    pixel_accuracy: float
    mean_iou: float  # the mean of the per-class IoUs that are defined
    n: int  # images
    pixels: int
    per_class: dict[str, dict[str, float | int | None]]  # iou (None: class neither true nor predicted), pixels
    confusion: list[list[int]]  # pixels, rows: true class, columns: predicted
    images: list[dict]  # file, pixel_accuracy, and mask: the predicted mask's file when written
    masks: str | None  # the folder of the predicted masks (test --masks)

    def to_json(self) -> dict:
        return asdict(self)


def segmentation_report(
    logits: np.ndarray, dataset: D.Dataset, classes: list[str], masks_dir: Path | None, **facts: str
) -> SegmentationReport:
    """The figures of per-pixel logits (N, K, H, W) against the dataset's masks; the
    predicted masks written into ``masks_dir`` when it is given."""
    from archspec.training import segmentation
    from archspec.training.core import confusion, iou, mean_iou

    predicted, truth = logits.argmax(axis=1), dataset.masks
    counts = confusion(truth, predicted, len(classes))
    ious = iou(counts)
    files = [None] * len(dataset)
    if masks_dir is not None:
        files = [str(f) for f in segmentation.write_masks(masks_dir, dataset.names, predicted)]
    return SegmentationReport(
        **facts,
        classes=classes,
        pixel_accuracy=float((predicted == truth).mean()),
        mean_iou=mean_iou(counts),
        n=len(dataset),
        pixels=int(truth.size),
        per_class={
            name: {"iou": None if np.isnan(v) else float(v), "pixels": int(counts[i].sum())}
            for i, (name, v) in enumerate(zip(classes, ious))
        },
        confusion=counts.tolist(),
        images=[
            {"file": name, "pixel_accuracy": float((p == t).mean()), "mask": f}
            for name, p, t, f in zip(dataset.names, predicted, truth, files)
        ],
        masks=None if masks_dir is None else str(masks_dir),
    )


def masks_folder(path: Path) -> Path:
    """``test --masks``: a folder to write predicted masks into, made when missing."""
    try:
        make_writable(path)
    except OSError as exc:
        raise TrainingError(
            f"--masks {path}: cannot write there ({exc.strerror or exc}); give a folder for the predicted masks"
        ) from None
    return path


def resolve_weights(path: Path) -> tuple[Path, dict | None]:
    """``weights.npz`` and the run description, from a run directory or an npz file;
    a run that kept its best evaluation's weights (--patience) gives those."""
    if path.is_dir():
        info = read_run(path)
        if "best" in info and (path / BEST_WEIGHTS).is_file():
            return path / BEST_WEIGHTS, info
        npz = path / "weights.npz"
        if not npz.is_file():
            raise TrainingError(f"{path} has no weights.npz: the run saved no checkpoint yet")
        return npz, info
    if not path.exists():
        raise TrainingError(f"--weights {path}: no such file or run directory")
    return path, None


def test(
    spec: str,
    target: str,
    weights_path: Path,
    *,
    data: str | None = None,
    sets: tuple[str, ...] = (),
    input_shape: tuple[int, ...] | None = None,
    echo: Callable[[str], None] = print,
    masks: Path | None = None,
    device: str = "auto",
) -> TestReport | SegmentationReport:
    """Classify every image (or, for a segmentation network, every pixel) of a test set
    with trained weights in one framework, on ``device`` (``--device``: auto, cpu,
    cuda or cuda:N); ``masks``: a folder for the predicted masks."""
    if target not in TARGETS:
        raise TrainingError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    try:
        devices = placement.place(target, placement.parse(device))  # before the framework computes
    except ValueError as exc:
        raise TrainingError(f"--device {exc}") from None
    npz, info = resolve_weights(weights_path)
    if info is not None and npz == weights_path / BEST_WEIGHTS:
        best = info["best"]
        echo(
            f"using the best weights of {weights_path}: step {best['step']} of {info['step']}, "
            f"test loss {best['test_loss']:.4f} ({npz})"
        )
    overrides = parse_sets(sets)
    classes = None
    if info is not None:
        run_sets = parse_sets(tuple(info["options"].get("sets") or ()))
        overrides = {**run_sets, "num_classes": str(info["num_classes"]), **overrides}
        input_shape = input_shape or (tuple(info["options"]["input"]) if info["options"].get("input") else None)
        classes = list(info["classes"])
        if data is None:
            data = info["options"].get("test_data")
    compiled = compile_for(spec, overrides, input_shape, target)
    if info is not None and info["name"] != compiled.graph.name:
        raise TrainingError(f"{weights_path} is a run of {info['name']}, not of {compiled.graph.name} ({spec})")
    task = task_of(compiled)
    default_classes, outputs = task.num_classes, task.outputs
    if masks is not None and task.kind != D.SEGMENTATION:
        raise TrainingError(f"--masks writes predicted masks of a segmentation network; {spec} is a classifier")
    shape, given = compiled.graph.input_shape, {"task": task.kind, "num_classes": default_classes}
    if data is None and info is not None and info["options"].get("data") not in (None, *D.BUILTIN):
        # trained on a folder without a separate test folder: its held-out split
        dataset = D.split_pair(info["options"]["data"], None, shape, warn=echo, **given)[1]
    elif data is None or data in D.BUILTIN:
        dataset = D.load(data, shape, split="test", warn=echo, classes=classes, **given)
    else:
        dataset = D.load(data, shape, split="all", warn=echo, classes=classes, **given)
    if classes is not None and list(dataset.classes) != classes:
        raise TrainingError(
            f"the test data's classes ({', '.join(dataset.classes)}) are not those the run was trained on "
            f"({', '.join(classes)}); give data with the same classes"
        )
    classes = classes or list(dataset.classes)
    if info is None:
        set_classes = int(overrides["num_classes"]) if "num_classes" in overrides else None
        num = D.check_num_classes(dataset, set_classes, default_classes)
        if num != default_classes:
            compiled = compile_for(spec, {**overrides, "num_classes": str(num)}, input_shape, target)
    weights = W.load(npz)
    try:
        W.check(weights, compiled)
    except W.WeightError as exc:
        raise W.WeightError(f"{npz}: {exc}\n(the weights are not those of {spec} with these settings)") from None

    from archspec import runtime

    rt = runtime.get(target)
    with tempfile.TemporaryDirectory(prefix="archspec-test-") as tmp:
        module = generate(compiled, target, Path(tmp))
        network = Setup(int(compiled.graph.params["num_classes"]), has_logits_switch(compiled.graph), outputs)
        model = placement.move(target, network.build(module, class_name(compiled.graph.name)), devices[0])
    rt.load_weights(model, weights)
    logits = predict_all(lambda x: rt.run(model, x)[0], dataset)
    facts = {"spec": spec, "target": target, "weights": str(npz), "data": dataset.name}
    if task.kind == D.SEGMENTATION:
        return segmentation_report(logits, dataset, classes, masks and masks_folder(masks), **facts)
    probs = softmax(logits.astype(np.float64))
    predicted = probs.argmax(axis=1)
    labels = dataset.labels
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {}
    for i, name in enumerate(classes):
        n, correct = int(confusion[i].sum()), int(confusion[i, i])
        per_class[name] = {"n": n, "correct": correct, "accuracy": correct / n if n else 0.0}
    predictions = [
        {"file": f, "label": classes[t], "predicted": classes[p], "probability": float(probs[j, p])}
        for j, (f, t, p) in enumerate(zip(dataset.names, labels, predicted))
    ]
    return TestReport(
        spec=spec,
        target=target,
        weights=str(npz),
        data=dataset.name,
        classes=classes,
        accuracy=float((predicted == labels).mean()),
        n=len(dataset),
        per_class=per_class,
        confusion=confusion.tolist(),
        predictions=predictions,
    )


def format_test(report: TestReport | SegmentationReport) -> str:
    """The quiz's answer lines (file, predicted class, probability), then the totals;
    a segmentation report's own lines (:func:`format_segmentation`)."""
    if isinstance(report, SegmentationReport):
        return format_segmentation(report)
    width = max((len(p["file"]) for p in report.predictions), default=4)
    cw = max(len(c) for c in report.classes)
    lines = []
    for p in report.predictions:
        wrong = "" if p["predicted"] == p["label"] else f"  (is {p['label']})"
        lines.append(f"{p['file']:<{width}}  {p['predicted']:<{cw}}  {p['probability']:.2f}{wrong}")
    correct = sum(v["correct"] for v in report.per_class.values())
    lines += ["", f"accuracy {report.accuracy:.4f} ({correct} of {report.n}) in {report.target}", "", "per class:"]
    for name, v in report.per_class.items():
        lines.append(f"  {name:<{cw}}  {v['accuracy']:.4f}  ({v['correct']} of {v['n']})")
    lines += ["", "confusion matrix (rows: true class, columns: predicted):"]
    cell = max(cw, len(str(max((max(r) for r in report.confusion), default=0))))
    lines.append(" " * (cw + 2) + "  ".join(f"{c:>{cell}}" for c in report.classes))
    for name, row in zip(report.classes, report.confusion):
        lines.append(f"  {name:<{cw}}" + "".join(f"  {v:>{cell}}" for v in row))
    return "\n".join(lines) + "\n"


def format_segmentation(report: SegmentationReport) -> str:
    """A line per image (file, pixel accuracy), then pixel accuracy, mean IoU, per-class IoU."""
    width = max((len(i["file"]) for i in report.images), default=4)
    lines = [f"{i['file']:<{width}}  pixel accuracy {i['pixel_accuracy']:.4f}" for i in report.images]
    correct = sum(row[k] for k, row in enumerate(report.confusion))
    cw = max(len(c) for c in report.classes)
    lines += [
        "",
        f"pixel accuracy {report.pixel_accuracy:.4f} ({correct} of {report.pixels} pixels, {report.n} images) "
        f"in {report.target}",
        f"mean IoU {report.mean_iou:.4f}",
        "",
        "per class (IoU, true pixels):",
    ]
    for name, v in report.per_class.items():
        value = "-" if v["iou"] is None else f"{v['iou']:.4f}"
        lines.append(f"  {name:<{cw}}  {value:>6}  {v['pixels']}")
    if report.masks is not None:
        lines += ["", f"predicted masks written to {report.masks} (pixel value = class index)"]
    return "\n".join(lines) + "\n"
