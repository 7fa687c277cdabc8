"""Training the generated Chainer model: a SerialIterator, an optimizer, a StandardUpdater.

The native checkpoint is ``model.npz``, written by ``chainer.serializers.save_npz``
(what the generated file loads with ``chainer.serializers.load_npz("model.npz", model)``);
the optimizer's state is ``optimizer.npz``.

Chainer agrees with PyTorch on everything :mod:`archspec.training.core` fixes:

- ``MomentumSGD`` keeps v' = mu v - lr g and adds it (PyTorch's v = mu v + g,
  w -= lr v: the same steps at a constant lr, v' = -lr v);
- ``BatchNormalization`` with the generated code's decay (0.9 unless the spec
  says otherwise) updates running = decay running + (1 - decay) batch with the
  unbiased variance (m / (m - 1) var), PyTorch's momentum 0.1;
- ``Adam`` corrects the bias in its step size, alpha_t = alpha sqrt(1 - beta2^t)
  / (1 - beta1^t), and adds epsilon to the uncorrected sqrt(v), as Keras does;
  :class:`BiasCorrectedEpsilon` scales epsilon by sqrt(1 - beta2^t) before each
  step, which is PyTorch's form exactly (epsilon added to the corrected sqrt(v);
  without it, LeNet's weights with gradients near 1e-7 moved 3% apart in two
  steps at lr 0.1).

The training options: ``chainer.optimizer_hooks.WeightDecay`` adds rate x w
to every parameter's gradient before the update, torch.optim's weight decay;
:class:`Schedule`, an optimizer hook, sets the lr of each step (``lr``, Adam's
``alpha``) and, for ``MomentumSGD``, first rescales v' by lr_new / lr_old, so
that v' = -lr v holds at every lr and the update is PyTorch's (without it, v'
would keep the old lr's scale after a step of the schedule); augmentation
runs in the updater's converter (:class:`Augmented`).

On a GPU (``--device cuda``, through CuPy) the model is moved with
``model.to_device("@cupy:K")`` and the converter sends each batch after it.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np

from archspec.runtime import chainer as rt
from archspec.training import device as placement
from archspec.training.augment import augment_batch
from archspec.training.core import ADAM_BETAS, ADAM_EPS, MOMENTUM, Monitor, RuntimeModel, Setup, TrainingError, atomic
from archspec.training.data import Dataset

chainer = rt._chainer()  # the numpy 2 shim before chainer's submodules
import chainer.functions as F  # noqa: E402

TARGET = "chainer"
OPTIMIZER_FILE = "optimizer.npz"


class Samples(chainer.dataset.DatasetMixin):
    """An archspec dataset as Chainer's dataset of (image, label or mask) pairs."""

    def __init__(self, data: Dataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def get_example(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.data.batch([i])[0], self.data.targets([i])[0]


class BiasCorrectedEpsilon:
    """An Adam hook: epsilon as PyTorch adds it, to sqrt(v / (1 - beta2^t))."""

    name = "bias_corrected_epsilon"
    timing = "pre"  # before the optimizer counts the step: t + 1 is the step to come

    def __call__(self, optimizer: chainer.optimizers.Adam) -> None:
        optimizer.eps = ADAM_EPS * math.sqrt(1.0 - optimizer.beta2 ** (optimizer.t + 1))


class Schedule:
    """An optimizer hook: the learning rate of the step to come (step t + 1), from
    the setup's schedule; MomentumSGD's velocities rescaled to it first."""

    name = "schedule"
    timing = "pre"

    def __init__(self, setup: Setup) -> None:
        self.setup = setup

    def __call__(self, optimizer: chainer.Optimizer) -> None:
        t = optimizer.t
        lr = self.setup.lr_at(t + 1)
        if isinstance(optimizer, chainer.optimizers.MomentumSGD) and t > 0:
            scale = lr / self.setup.lr_at(t)
            for param in optimizer.target.params():
                state = param.update_rule.state
                if state and state.get("v") is not None:
                    state["v"] *= scale
        setattr(optimizer, "alpha" if isinstance(optimizer, chainer.optimizers.Adam) else "lr", lr)


class Augmented:
    """The updater's converter: ``concat_examples``, then the augmentation of the
    batch's optimizer step (counted from ``start``), then the batch to the model's ``device``."""

    def __init__(self, names: tuple[str, ...], seed: int, start: int, device) -> None:
        self.names, self.seed, self.step, self.device = names, seed, start, device

    def __call__(self, batch, device=None):
        x, y = chainer.dataset.concat_examples(batch)
        self.step += 1
        x, y = augment_batch(x, y, self.names, self.seed, self.step)
        return self.device.send(x), self.device.send(y)


def optimizer_for(name: str, lr: float) -> chainer.Optimizer:
    if name == "sgd":
        return chainer.optimizers.SGD(lr=lr)
    if name == "momentum":
        return chainer.optimizers.MomentumSGD(lr=lr, momentum=MOMENTUM)
    return chainer.optimizers.Adam(alpha=lr, beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1], eps=ADAM_EPS)


@contextlib.contextmanager
def dropout_off() -> Iterator[None]:
    """``F.dropout`` (what the generated code calls) as the identity, batch norm
    still in training mode."""
    dropout = F.dropout
    F.dropout = lambda x, *args, **kwargs: x
    try:
        yield
    finally:
        F.dropout = dropout


class Trainer(RuntimeModel):
    target = TARGET
    runtime = rt
    native = "model.npz"

    def __init__(self, module: ModuleType, class_name: str, setup: Setup) -> None:
        self.setup = setup
        if setup.threads:
            from threadpoolctl import threadpool_limits

            threadpool_limits(setup.threads, user_api="blas")  # numpy's, for the rest of the process
        np.random.seed(setup.seed)  # Chainer's initializers draw from numpy's global RNG
        self.model: chainer.Chain = setup.build(module, class_name)
        self.model = setup.world.wrap_model(self.model)  # --sync-bn: MultiNodeBatchNormalization links
        self.model = placement.move(TARGET, self.model, setup.device)  # GPU K also CuPy's current device
        self.optimizer = optimizer_for(setup.optimizer, setup.lr)
        self.optimizer.setup(self.model)
        if setup.optimizer == "adam":
            self.optimizer.add_hook(BiasCorrectedEpsilon())
        if setup.weight_decay:
            self.optimizer.add_hook(chainer.optimizer_hooks.WeightDecay(setup.weight_decay))
        if setup.schedule != "constant":
            self.optimizer.add_hook(Schedule(setup))
        self.optimizer = setup.world.wrap_optimizer(self.optimizer)  # --nproc: ChainerMN's multi-node optimizer
        self.reporter = chainer.Reporter()

    def _loss(self, x: np.ndarray, y: np.ndarray) -> chainer.Variable:
        """The training loss (auxiliary outputs weighted in; per pixel, averaged, for
        masks y (N, H, W)); reports it and how many samples or pixels the main output
        classified right, of how many."""
        with dropout_off() if not self.setup.dropout else contextlib.nullcontext():
            out = self.model(x)
        outs = out if isinstance(out, tuple | list) else (out,)
        loss = sum(w * F.softmax_cross_entropy(o, y) for w, o in zip(self.setup.loss_weights, outs) if o is not None)
        correct = int((outs[0].array.argmax(axis=1) == y).sum())
        chainer.report({"loss": float(loss.array), "correct": correct, "n": int(np.size(y))})
        return loss

    def _step(self, update: Callable[[], None]) -> tuple[float, int, int]:
        """Run one optimizer update in training mode; its loss, correct count and of how many."""
        observation: dict[str, float | int] = {}
        with self.reporter.scope(observation), chainer.using_config("train", True):
            update()
        return observation["loss"], observation["correct"], observation["n"]

    def fit(self, data: Dataset, batch_size: int, start: int, stop: int, monitor: Monitor) -> None:
        order = chainer.iterators.ShuffleOrderSampler(np.random.RandomState(self.setup.seed + start))
        world = self.setup.world  # --nproc: each process iterates over its scattered part of the data
        iterator = chainer.iterators.SerialIterator(
            world.wrap_data(Samples(data)), world.local_batch(batch_size), order_sampler=order
        )
        converter = Augmented(self.setup.augment, self.setup.seed, start, self.model.device)
        updater = chainer.training.updaters.StandardUpdater(
            iterator, self.optimizer, converter=converter, loss_func=self._loss
        )
        for step in range(start + 1, stop + 1):
            monitor.step(step, *self._step(updater.update))

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One step; the batch is cast to the model's dtype (float32 unless it was
        built under ``chainer.using_config("dtype", ...)``)."""
        x, y = self.setup.world.shard(x, y)  # with --nproc: this process's share of the global batch
        send = self.model.device.send
        x, y = send(np.ascontiguousarray(x, next(self.model.params()).dtype)), send(np.asarray(y, np.int64))
        return self._step(lambda: self.optimizer.update(self._loss, x, y))[0]

    def save(self, run_dir: Path) -> None:
        for name, obj in ((self.native, self.model), (OPTIMIZER_FILE, self.optimizer)):
            with atomic(run_dir / name) as tmp, tmp.open("wb") as f:
                chainer.serializers.save_npz(f, obj)

    def restore(self, run_dir: Path) -> None:
        path = run_dir / OPTIMIZER_FILE
        try:
            chainer.serializers.load_npz(path, self.optimizer)
        except (OSError, EOFError, KeyError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
            raise TrainingError(
                f"cannot read the optimizer's state from {path} ({type(exc).__name__}: {exc}); "
                "the run cannot be resumed, start a new one"
            ) from None
