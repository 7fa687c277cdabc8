"""``archspec verify --train``: the four frameworks train alike.

From the same canonical weights (:func:`archspec.weights.random_weights`,
batch-norm statistics included), every target's trainer takes the same
optimizer steps on the same batches, with every dropout off (the only random
op). After each step the loss is compared with PyTorch's; after the last, every
tensor of the model: the trained weights and the batch-norm running
statistics. This pins down the conventions that differ between frameworks
(batch-norm variance and momentum, the optimizers' formulas, the loss of
auxiliary heads, weight decay and the learning-rate schedule, over ``steps``
iterations) instead of hoping they agree. Augmentation is not part of it: it
is the same numpy code in every target (archspec/training/augment.py).

Tolerance: a step's loss, and each tensor, may differ from the reference by
at most ``RTOL x max|reference| + ATOL``. Training accumulates float32
rounding differences step after step, so RTOL is larger than inference's.

Rounding: where batch norm normalizes few values (a 1x1 map in a batch of 4
gives four per channel), training amplifies float32 rounding until it alone
exceeds the tolerance, and no comparison can tell a wrong step from it. So
where a target fails, the reference trains again in float64, and a target
whose every failing difference is within ``tolerance + 2 x |float32 - float64|``
of the reference (its own rounding and the reference's, of about the same
size) is reported as inconclusive at this input rather than as different: it
still fails, and the message asks for a larger input or batch.
"""

from __future__ import annotations

import gc
import tempfile
import time
import traceback
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from archspec.codegen.model import has_logits_switch
from archspec.pipeline import Compiled
from archspec.runtime import TARGETS
from archspec.summary import shape_str
from archspec.training.core import OPTIMIZERS, SCHEDULES, Setup
from archspec.training.data import SEGMENTATION
from archspec.training.run import task_of, trainer_for
from archspec.verify import REFERENCE, Comparison, TargetReport, generate
from archspec.weights import random_weights

RTOL = 1e-3
ATOL = 1e-6
STATISTICS = ("running_mean", "running_var")


def tolerance(reference: np.ndarray) -> float:
    return RTOL * (float(np.abs(reference).max()) if reference.size else 0.0) + ATOL


@dataclass
class TrainReport:
    spec: str
    name: str
    input_shape: list[int]
    batch: int
    steps: int
    optimizer: str
    lr: float
    seed: int
    reference: str
    targets: list[TargetReport]
    losses: dict[str, list[float]] = field(default_factory=dict)  # by target, one per step
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    rounding: float | None = None  # the reference's float32 - float64 difference / its size (where a target failed)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.targets)

    def to_json(self) -> dict:
        return {**asdict(self), "ok": self.ok, "mode": "train"}


def batches(compiled: Compiled, steps: int, batch: int, num_classes: int, seed: int):
    """The same inputs in [0, 1) and labels (masks for a segmentation network) for every
    target, one pair per step."""
    rng = np.random.default_rng([seed, 2])
    shape = (batch, *compiled.graph.input_shape)
    per_pixel = task_of(compiled).kind == SEGMENTATION
    targets = (batch, *compiled.graph.input_shape[1:]) if per_pixel else (batch,)
    return [
        (rng.random(shape, dtype=np.float32), rng.integers(0, num_classes, targets).astype(np.int64))
        for _ in range(steps)
    ]


def _train(target, module, compiled, setup, weights, data) -> tuple[list[float], dict[str, np.ndarray]]:
    trainer = trainer_for(target, module, compiled, setup)
    trainer.load(weights)
    losses = [float(trainer.train_step(x, y)) for x, y in data]
    trained = trainer.export()
    del trainer
    gc.collect()
    return losses, trained


def _float64_reference(module, compiled, setup, weights, data) -> tuple[list[float], dict[str, np.ndarray]]:
    """The reference's steps in float64 (a PyTorch model made ``double()``): what the
    float32 steps would be without rounding."""
    trainer = trainer_for(REFERENCE, module, compiled, setup)
    trainer.load(weights)
    trainer.model.double()  # the optimizer holds the same Parameter objects
    losses = [float(trainer.train_step(x, y)) for x, y in data]
    return losses, trainer.export()


def rounding_of(float32: tuple[list[float], dict], float64: tuple[list[float], dict]) -> dict[tuple[str, str], float]:
    """(kind, name) -> max |float32 - float64| of each loss and trained tensor of the reference."""
    (l32, t32), (l64, t64) = float32, float64
    found = {("loss", f"step {i + 1}"): abs(a - b) for i, (a, b) in enumerate(zip(l32, l64))}
    for k, v in t32.items():
        found[_kind(k), k] = float(np.abs(v - t64[k]).max(initial=0.0))
    return found


def _kind(name: str) -> str:
    """How a trained tensor is compared: a batch-norm statistic or a weight."""
    return "statistics" if name.endswith(STATISTICS) else "weights"


def explain(t: TargetReport, rounding: dict[tuple[str, str], float]) -> None:
    """Say whether float32 rounding explains every failing comparison of a target."""
    bad = [c for c in t.comparisons if not c.ok]
    if not bad or len(bad) != len(t.problems):
        return  # an error, a shape, a missing tensor or a loss that is not finite: not rounding
    worst = max(rounding.get((c.kind, c.output), 0.0) for c in bad)
    if all(c.max_abs_diff <= c.tolerance + 2 * rounding.get((c.kind, c.output), 0.0) for c in bad):
        t.problems.insert(
            0,
            f"inconclusive: float32 rounding alone moves the reference's own steps by up to {worst:.3g} (against "
            "its float64 steps), which explains every difference below; verify at a larger input or batch",
        )


def _compare(report: TargetReport, kind: str, pairs: Iterable[tuple[str, np.ndarray, np.ndarray]]) -> None:
    for name, want, got in pairs:
        if got.shape != want.shape:
            report.problems.append(f"{kind} {name}: shape {got.shape}, the reference's is {want.shape}")
            continue
        diff = float(np.abs(got - want).max()) if want.size else 0.0
        tol = tolerance(want)
        ok = diff <= tol  # NaN fails
        report.comparisons.append(
            Comparison(name, kind, diff, float(np.abs(want).max()) if want.size else 0.0, tol, ok)
        )
        if not ok:
            report.problems.append(f"{kind} {name}: max |diff| {diff:.3g} is above the tolerance {tol:.3g}")


def verify_training(
    compiled: Compiled,
    targets: Iterable[str] = TARGETS,
    *,
    steps: int = 3,
    optimizer: str = "momentum",
    lr: float = 0.001,
    batch: int = 4,
    seed: int = 0,
    weight_decay: float = 0.0,
    schedule: str = "constant",
) -> TrainReport:
    """Train every target ``steps`` steps from the same weights on the same batches;
    compare losses and trained tensors with the reference's. The schedule runs over
    ``steps`` iterations (step: a step size of steps // 3)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    if not 0 <= weight_decay <= 1:
        raise ValueError(f"weight decay {weight_decay} is out of range: give a number from 0 to 1")
    start = time.perf_counter()
    task = task_of(compiled)
    num_classes, outputs = task.num_classes, task.outputs
    targets = [REFERENCE, *(t for t in dict.fromkeys(targets) if t != REFERENCE)]
    setup = Setup(
        num_classes=num_classes,
        logits=has_logits_switch(compiled.graph),
        outputs=outputs,
        optimizer=optimizer,
        lr=lr,
        seed=seed,
        dropout=False,
        weight_decay=weight_decay,
        schedule=schedule,
        iters=steps,
    )
    weights = random_weights(compiled, seed)
    data = batches(compiled, steps, batch, num_classes, seed)
    graph = compiled.graph
    report = TrainReport(
        spec=str(graph.file),
        name=graph.name,
        input_shape=list(graph.input_shape),
        batch=batch,
        steps=steps,
        optimizer=optimizer,
        lr=lr,
        seed=seed,
        reference=REFERENCE,
        targets=[],
        weight_decay=weight_decay,
        schedule=schedule,
    )
    reference: tuple[list[float], dict[str, np.ndarray]] | None = None
    with tempfile.TemporaryDirectory(prefix="archspec-verify-train-") as tmp:
        code = generate(compiled, targets, Path(tmp), report.notes)
        for target in targets:
            t = TargetReport(target)
            report.targets.append(t)
            began = time.perf_counter()
            module = code[target]
            if isinstance(module, str):
                t.error = module
                t.problems.append(module)
                continue
            try:
                losses, trained = _train(target, module, compiled, setup, weights, data)
            except Exception as exc:
                frame = traceback.extract_tb(exc.__traceback__)[-1]
                t.error = f"{type(exc).__name__}: {exc} (at {Path(frame.filename).name}:{frame.lineno})"
                t.problems.append(t.error)
                continue
            finally:
                t.seconds = time.perf_counter() - began
            report.losses[target] = losses
            if not all(np.isfinite(losses)):
                t.problems.append(f"losses are not finite: {losses}")
            if target == REFERENCE:
                reference = (losses, trained)
            elif reference is None:
                t.problems.append(f"no reference to compare with: {REFERENCE} failed")
            else:
                ref_losses, ref_trained = reference
                steps = (f"step {i + 1}" for i in range(len(losses)))
                _compare(t, "loss", zip(steps, np.array(ref_losses), np.array(losses)))
                for kind, is_stat in (("weights", False), ("statistics", True)):
                    pairs = ((k, v, trained[k]) for k, v in ref_trained.items() if k in trained)
                    _compare(t, kind, ((k, a, b) for k, a, b in pairs if k.endswith(STATISTICS) == is_stat))
                missing = sorted(set(ref_trained) ^ set(trained))
                if missing:
                    t.problems.append(f"tensors not in both models: {', '.join(missing[:5])}")
            t.ok = not t.problems
        if reference is not None and any(t.comparisons and not t.ok for t in report.targets):
            float64 = _float64_reference(code[REFERENCE], compiled, setup, weights, data)
            rounding = rounding_of(reference, float64)
            report.rounding = max(
                rounding[_kind(k), k] / float(np.abs(v).max())
                for k, v in reference[1].items()
                if v.size and np.abs(v).max() > 0
            )
            for t in report.targets[1:]:
                explain(t, rounding)
    report.seconds = time.perf_counter() - start
    return report


def _worst(t: TargetReport, kind: str) -> str:
    c = t.worst(kind)
    return "-" if c is None else f"{c.max_abs_diff:.1e} / {c.tolerance:.1e}"


def _options(report: TrainReport) -> str:
    """The schedule and weight decay, where they are not the defaults."""
    parts = [f"{report.schedule} schedule"] if report.schedule != "constant" else []
    parts += [f"weight decay {report.weight_decay:g}"] if report.weight_decay else []
    return "".join(f", {p}" for p in parts)


def format_table(report: TrainReport) -> str:
    """One row per target: the worst loss, weight and statistic difference against the reference."""
    lines = [
        f"{report.spec}: {report.name}, input {shape_str(report.input_shape)}, batch {report.batch}, "
        f"{report.steps} {report.optimizer} steps at lr {report.lr:g}{_options(report)}, dropout off, "
        f"seed {report.seed}; "
        f"reference {report.reference}; tolerance {RTOL:g} x max|reference| + {ATOL:g}"
    ]
    header = ["target", "final loss", "loss |diff| / tol", "weights", "bn statistics", "time", "result"]
    rows = [header]
    for t in report.targets:
        losses = report.losses.get(t.target)
        ref = t.target == report.reference
        rows.append(
            [
                t.target,
                f"{losses[-1]:.6f}" if losses else "-",
                "reference" if ref else _worst(t, "loss"),
                "reference" if ref else _worst(t, "weights"),
                "reference" if ref else _worst(t, "statistics"),
                f"{t.seconds:.1f}s",
                "pass" if t.ok else "FAIL",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    for t in report.targets:
        lines += [f"  {t.target}: {p}" for p in t.problems[:10]]
        if len(t.problems) > 10:
            lines.append(f"  {t.target}: and {len(t.problems) - 10} more problems")
    lines += [f"  note: {n}" for n in report.notes]
    if report.rounding is not None:
        beyond = (
            ": this input cannot show agreement, verify at a larger input or batch" if report.rounding > RTOL else ""
        )
        lines.append(
            f"  float32 rounding: the reference's own float32 and float64 steps differ by up to "
            f"{report.rounding:.1e} of a tensor's largest value (the tolerance: {RTOL:g}){beyond}"
        )
    lines.append(f"  {'ok' if report.ok else 'FAILED'} ({report.seconds:.1f}s)")
    return "\n".join(lines) + "\n"
