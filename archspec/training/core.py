"""What every framework's training shares: options, the run directory, the monitor.

A framework's trainer (:mod:`archspec.training.pytorch`, ``.keras``,
``.tensorflow``, ``.chainer``) drives the generated model with that
framework's own idiom and follows the :class:`Trainer` protocol; everything
around the optimizer steps lives here, once: the run directory and its files,
evaluation on the test set, the progress bar, checkpoints, a loss that is no
longer finite, and Ctrl-C.

Conventions every target follows (see ../shared/design-notes.md, "Training"):

- The model is built with ``logits=True`` where the spec ends in a softmax, and
  the loss is cross-entropy on logits.
- A network with auxiliary classifiers (GoogLeNet, Inception v3) is trained on
  ``loss = main + AUX_WEIGHT * sum(aux)``, as in the GoogLeNet paper; the
  accuracy and the test figures are those of the main output.
- Batch norm in training mode normalizes with the batch statistics (biased
  variance) and updates its running variance with the unbiased one, momentum
  0.1: PyTorch and Chainer do; Keras updates with the biased variance, and the
  Keras trainer corrects every step (archspec/training/keras.py).
- Optimizers: ``sgd`` (w -= lr g), ``momentum`` (v = mu v + g, w -= lr v, mu
  0.9: Keras' and Chainer's v = mu v - lr g, w += v is the same update at a
  constant lr) and ``adam`` (beta 0.9 / 0.999, epsilon 1e-8, PyTorch's form:
  epsilon added to the bias-corrected sqrt(v); Keras adds it before the
  correction, which differs only while sqrt(v) is of the order of epsilon).
- The test set is evaluated here, in numpy, from the model's logits in
  inference mode, so that every target's test figures mean the same.
- A segmentation network (a class per pixel) is trained on the per-pixel
  softmax cross-entropy, the mean over every pixel of the batch; its accuracy
  is the pixel accuracy, and its test set also gets the mean IoU (:func:`iou`).
- Learning-rate schedules are PyTorch's, stepped after every optimizer step
  (:func:`scheduled_lr`); weight decay is PyTorch's, L2 added to the gradient
  of every trainable parameter before the optimizer's update (g += wd w).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from archspec.training.data import Dataset
from archspec.weights import Weights

if TYPE_CHECKING:
    from archspec.training.distributed import World

OPTIMIZERS = ("sgd", "momentum", "adam")
MOMENTUM = 0.9
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
AUX_WEIGHT = 0.3
EVAL_BATCH = 256
SCHEDULES = ("constant", "step", "cosine")
STEP_GAMMA = 0.1  # --schedule step multiplies the lr by this every step size


def scheduled_lr(schedule: str, lr: float, step: int, iters: int, step_size: int) -> float:
    """The learning rate of optimizer step ``step`` (1-based): PyTorch's StepLR
    (gamma STEP_GAMMA) or CosineAnnealingLR (T_max ``iters``, eta_min 0) stepped after
    every optimizer step, so step k uses the scheduler's value after k - 1 steps."""
    e = step - 1
    if schedule == "step":
        return lr * STEP_GAMMA ** (e // step_size)
    if schedule == "cosine":
        return lr * (1 + math.cos(math.pi * e / iters)) / 2
    return lr


class TrainingError(Exception):
    """A run cannot go on; the message says why and what to do (printed, exit 1)."""


DAMAGED = "it was edited or damaged: restore it from a copy, or train a new run"  # what to do about a run's file


class Stop(Exception):  # noqa: N818 - a signal to the loop, not an error
    """Raised by the monitor inside a trainer's loop to end the run early."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason


class Diverged(Stop):
    """The loss is NaN or infinite."""


class Interrupted(Stop):
    """Ctrl-C: the run stops cleanly after the step in progress."""


class StoppedEarly(Stop):
    """--patience evaluations in a row without a better test loss."""


def _one_process() -> World:
    from archspec.training.distributed import World

    return World()


@dataclass(frozen=True)
class Setup:
    """How a trainer builds its model and optimizer."""

    num_classes: int
    logits: bool  # pass logits=True to the generated class (the spec ends in a softmax)
    outputs: int  # how many outputs the model returns (the first is the main one)
    optimizer: str = "momentum"
    lr: float = 0.01
    seed: int = 0
    threads: int | None = None
    dropout: bool = True  # False: every dropout is the identity (verify --train)
    kwargs: dict[str, Any] = field(default_factory=dict)  # other constructor arguments
    weight_decay: float = 0.0  # L2 added to every trainable parameter's gradient (PyTorch's weight_decay)
    schedule: str = "constant"  # one of SCHEDULES
    iters: int = 1  # the run's optimizer steps: cosine's T_max, and step's default step size is iters // 3
    step_size: int | None = None  # --schedule step: steps between two multiplications by STEP_GAMMA
    augment: tuple[str, ...] = ()  # archspec.training.augment's names, applied to training batches
    world: World = field(default_factory=_one_process)  # the processes of a data-parallel run
    device: str = "cpu"  # where this process computes: "cpu" or "cuda:K" (archspec.training.device)

    def build(self, module: ModuleType, class_name: str) -> Any:
        """The generated network as every trainer builds it: ``num_classes``, and
        ``logits=True`` where the network has the switch."""
        kwargs = {"num_classes": self.num_classes, **self.kwargs}
        if self.logits:
            kwargs["logits"] = True
        return getattr(module, class_name)(**kwargs)

    @property
    def loss_weights(self) -> list[float]:
        return [1.0] + [AUX_WEIGHT] * (self.outputs - 1)

    @property
    def period(self) -> int:
        """The step schedule's step size."""
        return self.step_size or max(1, self.iters // 3)

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (1-based)."""
        return scheduled_lr(self.schedule, self.lr, step, self.iters, self.period)


class RuntimeModel:
    """Inference and weights of a trainer's model, through its target's runtime
    module (``runtime``: archspec.runtime.<target>)."""

    runtime: ModuleType
    model: Any

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits of the main output for a channels-first batch, in inference mode."""
        return self.runtime.run(self.model, x)[0]

    def export(self) -> Weights:
        return self.runtime.export_weights(self.model)

    def load(self, weights: Weights) -> None:
        self.runtime.load_weights(self.model, weights)


class Trainer(Protocol):
    """One framework's trainer: it owns the generated model and its optimizer."""

    target: str
    native: str  # the framework's own checkpoint in a run directory (file or folder name)

    def fit(self, data: Dataset, batch_size: int, start: int, stop: int, monitor: Monitor) -> None:
        """Take optimizer steps ``start + 1 .. stop`` over shuffled batches of ``data``
        (seeded by the setup's seed and ``start``), calling ``monitor.step`` after each;
        let the monitor's :class:`Stop` propagate."""

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One optimizer step on this batch (channels first); the loss before it."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits of the main output for a channels-first batch, in inference mode."""

    def export(self) -> Weights: ...

    def load(self, weights: Weights) -> None: ...

    def save(self, run_dir: Path) -> None:
        """Write the native checkpoint and the optimizer's state, atomically."""

    def restore(self, run_dir: Path) -> None:
        """Read the optimizer's state back (the weights come from weights.npz)."""


# ----------------------------------------------------------------------------
# Files


@contextlib.contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` only
    when the block ends without an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with atomic(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


# ----------------------------------------------------------------------------
# Evaluation, in numpy


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy of integer labels under softmax(logits) over axis 1: per sample
    for logits (N, K) and labels (N,), per pixel for (N, K, H, W) and masks (N, H, W)."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -np.take_along_axis(log_p, labels[:, None], axis=1)[:, 0]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def predict_all(predict: Callable[[np.ndarray], np.ndarray], data: Dataset, batch: int = EVAL_BATCH) -> np.ndarray:
    """Logits for every sample of ``data``, in order, a batch at a time."""
    parts = [predict(data.batch(np.arange(i, min(i + batch, len(data))))) for i in range(0, len(data), batch)]
    return np.concatenate(parts).astype(np.float32)


def confusion(truth: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """The k x k counts of (true class, predicted class) over every sample or pixel."""
    return np.bincount(truth.ravel() * k + predicted.ravel(), minlength=k * k).reshape(k, k)


def iou(counts: np.ndarray) -> np.ndarray:
    """Each class's intersection over union, TP / (TP + FP + FN), from a confusion matrix;
    NaN for a class that is neither in the truth nor predicted."""
    tp = np.diag(counts).astype(np.float64)
    union = counts.sum(axis=0) + counts.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(counts: np.ndarray) -> float:
    """The mean of :func:`iou` over the classes where it is defined."""
    values = iou(counts)
    return float(np.nanmean(values)) if not np.isnan(values).all() else float("nan")


def scores(predict: Callable[[np.ndarray], np.ndarray], data: Dataset) -> dict[str, float]:
    """A model's mean ``loss`` and ``accuracy`` on a dataset (per pixel for segmentation
    data, which also gets ``mean_iou``)."""
    logits = predict_all(predict, data)
    truth, predicted = data.targets(np.arange(len(data))), logits.argmax(axis=1)
    figures = {
        "loss": float(cross_entropy(logits, truth).mean()),
        "accuracy": float((predicted == truth).mean()),
    }
    if data.masks is not None:
        figures["mean_iou"] = mean_iou(confusion(truth, predicted, len(data.classes)))
    return figures


# ----------------------------------------------------------------------------
# The monitor: called after every optimizer step


METRICS = ("step", "loss", "accuracy", "test_loss", "test_accuracy", "lr", "seconds")
SEGMENTATION_METRICS = ("test_mean_iou",)  # metrics.csv's columns after test_accuracy for segmentation runs


@dataclass
class Metrics:
    """Rows of metrics.csv: train loss and accuracy averaged over the steps since
    the previous row; test figures on the whole test set at that step."""

    rows: list[dict[str, float | int | str]] = field(default_factory=list)

    def csv(self) -> str:
        out = io.StringIO()
        more = [k for k in SEGMENTATION_METRICS if any(k in row for row in self.rows)]
        at = METRICS.index("test_accuracy") + 1
        columns = [*METRICS[:at], *more, *METRICS[at:]]
        writer = csv.DictWriter(out, columns, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _fmt(row.get(k, "")) for k in columns})
        return out.getvalue()

    @classmethod
    def read(cls, path: Path) -> Metrics:
        """metrics.csv as :meth:`csv` writes it; TrainingError saying what is wrong with it."""
        try:
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                rows = [{k: _parse(v) for k, v in row.items()} for row in reader]
                columns = reader.fieldnames or []
        except FileNotFoundError:
            raise TrainingError(f"{path} is missing; {DAMAGED}") from None
        except (OSError, ValueError, TypeError, csv.Error) as exc:  # a row too short or long, a value not a number
            raise TrainingError(f"{path} is not a metrics file written by archspec train ({exc}); {DAMAGED}") from None
        missing = [c for c in METRICS if c not in columns]
        if missing:
            raise TrainingError(f"{path} has no column {', '.join(missing)}; {DAMAGED}")
        return cls(rows)


def _fmt(v: float | int | str) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def best_row(rows: list[dict]) -> dict | None:
    """The evaluation with the lowest finite test loss (the first of equals), or None."""
    tested = [r for r in rows if isinstance(r.get("test_loss"), float | int) and math.isfinite(r["test_loss"])]
    return min(tested, key=lambda r: r["test_loss"], default=None)


def stalled(rows: list[dict]) -> int:
    """Evaluations since the best one (all of them when none was finite)."""
    best = best_row(rows)
    tested = [r for r in rows if r.get("test_loss", "") != ""]
    return len(tested) if best is None else len(tested) - 1 - tested.index(best)


def _parse(v: str) -> float | int | str:
    if v == "":
        return ""
    try:
        return int(v)
    except ValueError:
        return float(v)


class Monitor:
    """Logs, evaluates, checkpoints and stops a run; the trainers call :meth:`step`."""

    def __init__(
        self,
        trainer: Trainer,
        test: Dataset,
        *,
        lr: float,
        start: int,
        stop: int,
        eval_every: int,
        checkpoint: Callable[[int], None],
        metrics: Metrics,
        seconds: float = 0.0,
        quiet: bool = False,
        lr_at: Callable[[int], float] | None = None,
        patience: int | None = None,
        keep_best: Callable[[int], None] | None = None,
        world: World | None = None,
    ) -> None:
        self.trainer, self.test, self.lr = trainer, test, lr
        self.start, self.stop, self.eval_every = start, stop, eval_every
        self.checkpoint, self.metrics = checkpoint, metrics
        self.last = start  # the last step taken
        self.saved = start  # the last step checkpointed
        self.seconds_before = seconds  # time spent in earlier sessions of a resumed run
        self.began = time.perf_counter()
        self.interrupted = False
        self._window: list[tuple[float, int, int]] = []
        self._bar = None
        self.quiet = quiet
        self.lr_at = lr_at  # the lr of a step, for metrics.csv (default: the constant lr)
        self.patience, self.keep_best = patience, keep_best  # early stopping; the best checkpoint's writer
        self.world = world or _one_process()  # rank 0 records and evaluates; every rank stops at the same step

    @property
    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.began

    @contextlib.contextmanager
    def running(self) -> Iterator[Monitor]:
        """The progress bar and Ctrl-C handling for the duration of the loop."""
        from tqdm import tqdm

        self._bar = tqdm(
            total=self.stop, initial=self.start, disable=True if self.quiet else None, unit="step", dynamic_ncols=True
        )
        previous = signal.getsignal(signal.SIGINT)

        def on_interrupt(signum, frame) -> None:  # the step in progress finishes first
            if self.interrupted:  # a second Ctrl-C: stop at once
                raise KeyboardInterrupt
            self.interrupted = True

        in_main = _main_thread()
        if in_main:
            signal.signal(signal.SIGINT, on_interrupt)
        try:
            yield self
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)
            self._bar.close()

    def step(self, step: int, loss: float, correct: int, n: int) -> None:
        """Record the optimizer step ``step`` (its loss, and how many of its ``n``
        samples, or pixels, the main output classified right). With several processes, the
        figures become the global batch's and every process stops at the same step."""
        loss, correct, n = self.world.gather(loss, correct, n)
        if not math.isfinite(loss):
            raise Diverged(
                step,
                f"the loss became {loss} at step {step}; lower the learning rate (--lr {self.lr:g} now)",
            )
        self.last = step
        stop: Stop | None = None
        if self.world.main:
            self._window.append((loss, correct, n))
            if self._bar is not None:
                self._bar.update(1)
                loss_avg, acc = self._averages()
                self._bar.set_postfix(loss=f"{loss_avg:.4f}", acc=f"{acc:.3f}", refresh=False)
            if step % self.eval_every == 0 or step == self.stop:
                self.log()
                waited = stalled(self.metrics.rows)  # a resumed run carries on from its metrics
                if self.patience is not None and waited >= self.patience:
                    stop = StoppedEarly(
                        step,
                        f"stopped early at step {step}: no better test loss in {waited} evaluations "
                        f"(--patience {self.patience})",
                    )
        if stop is None and self.interrupted:
            stop = Interrupted(step, f"interrupted at step {step}")
        stop = self.world.agree(step, stop)
        if stop is not None:
            raise stop

    def _averages(self) -> tuple[float, float]:
        losses, correct, n = zip(*self._window)
        return float(np.mean(losses)), sum(correct) / max(sum(n), 1)

    def log(self) -> None:
        """A row of metrics (test figures included) and a checkpoint (rank 0's)."""
        if self.last == self.saved or not self.world.main:
            return
        row: dict[str, float | int | str] = {"step": self.last}
        if self._window:
            row["loss"], row["accuracy"] = self._averages()
            self._window.clear()
        row |= {f"test_{k}": v for k, v in scores(self.trainer.predict, self.test).items()}
        row["lr"] = self.lr_at(self.last) if self.lr_at else self.lr
        row["seconds"] = round(self.seconds, 3)
        self.metrics.rows.append(row)
        if self.keep_best is not None and best_row(self.metrics.rows) is row:
            self.keep_best(self.last)
        self.checkpoint(self.last)
        self.saved = self.last
        if self._bar is not None and not self.quiet:
            self._bar.write(
                f"step {self.last}: loss {row.get('loss', float('nan')):.4f}, "
                f"test loss {row['test_loss']:.4f}, test accuracy {row['test_accuracy']:.3f}"
                + (f", test mean IoU {row['test_mean_iou']:.3f}" if "test_mean_iou" in row else "")
            )


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
