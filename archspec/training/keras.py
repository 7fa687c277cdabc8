"""Training the generated Keras model: ``compile``, then ``fit`` over a PyDataset.

``compile`` gets one ``SparseCategoricalCrossentropy(from_logits=True)`` per
output, weighted by the setup's loss weights (auxiliary heads that the model
was built without are simply not among its outputs), and the accuracy of the
main output; on a segmentation network's per-pixel output (N, H, W, K) and
masks (N, H, W) both are per pixel, the loss the mean over every pixel.
``fit`` runs over :class:`Batches`, exactly the steps asked for, with
``verbose=0``; a callback resets the metrics before every batch, so the logs
after it are that batch's own loss and accuracy, and hands them to the
monitor. ``train_step`` is ``train_on_batch``, the same compiled step.

Optimizers: :class:`SGD`, Keras' ``SGD`` and ``SGD(momentum=0.9)`` (v' = mu v'
- lr g, w += v': PyTorch's update at a constant lr, v' = -lr v; when a schedule
changes the lr, v' is first rescaled by lr_new / lr_old, which keeps v' = -lr v
and so PyTorch's update at every lr), and :class:`Adam`, Keras' Adam with
epsilon added where PyTorch adds it (to the bias-corrected sqrt(v)). The
schedules are ``keras.optimizers.schedules``: Keras calls them with the
optimizer's ``iterations`` (steps taken before this one), so step k gets
schedule(k - 1), PyTorch's lr of step k: ``ExponentialDecay(staircase=True)``
is StepLR, ``CosineDecay(alpha=0)`` is CosineAnnealingLR. Weight decay is
:class:`CoupledWeightDecay`'s, torch.optim's (wd w added to the gradient):
Keras' own ``weight_decay`` argument is decoupled (w -= lr wd w, AdamW's
form), so it is not used. Augmentation runs in :class:`Batches`' ``__getitem__``.

Batch norm: ``keras.layers.BatchNormalization`` (what the generated code uses)
updates its moving variance with the biased batch variance, PyTorch and
Chainer with the unbiased one (n / (n - 1) times larger, n the values per
channel in the batch). :class:`UnbiasedMovingVariance` brings every step to
the convention of :mod:`archspec.training.core`: from the moving variance
before the step (V0) and after it (V1 = m V0 + (1 - m) var), it sets
V1 + (V1 - m V0) / (n - 1) = m V0 + (1 - m) var n / (n - 1). The generated
file itself stays plain Keras: a model trained with its own ``fit`` keeps
Keras' convention.

The native checkpoint is ``model.weights.h5`` (``model.load_weights``); the
optimizer's variables are ``optimizer.npz`` beside it (Keras'
``save_own_variables`` store: key ``str(i)`` for the i-th variable).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import keras
import numpy as np

from archspec.runtime import channels_last
from archspec.runtime import keras as rt
from archspec.training.augment import augment_batch
from archspec.training.core import (
    ADAM_BETAS,
    ADAM_EPS,
    MOMENTUM,
    STEP_GAMMA,
    Monitor,
    RuntimeModel,
    Setup,
    TrainingError,
    atomic,
)
from archspec.training.data import Dataset

TARGET = "keras"
OPTIMIZER_FILE = "optimizer.npz"


def learning_rate(setup: Setup) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The setup's lr, or its schedule (called with the steps taken before the current one)."""
    lr = float(setup.lr)  # Keras refuses an int
    if setup.schedule == "step":
        return keras.optimizers.schedules.ExponentialDecay(lr, setup.period, STEP_GAMMA, staircase=True)
    if setup.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, setup.iters, alpha=0.0)
    return lr


def optimizer_for(setup: Setup) -> keras.optimizers.Optimizer:
    lr, name = learning_rate(setup), setup.optimizer
    if name == "sgd":
        optimizer = SGD(learning_rate=lr)
    elif name == "momentum":
        optimizer = SGD(learning_rate=lr, momentum=MOMENTUM)
    else:
        optimizer = Adam(learning_rate=lr, beta_1=ADAM_BETAS[0], beta_2=ADAM_BETAS[1], epsilon=ADAM_EPS)
    optimizer.l2 = float(setup.weight_decay)
    return optimizer


class CoupledWeightDecay:
    """torch.optim's weight decay: ``l2 * w`` added to the gradient before the
    optimizer's own update (Keras' ``weight_decay`` subtracts lr wd w apart from it)."""

    l2 = 0.0

    def decayed(self, gradient, variable):
        if not self.l2:
            return gradient
        return keras.ops.add(gradient, keras.ops.multiply(keras.ops.cast(self.l2, variable.dtype), variable))


class SGD(CoupledWeightDecay, keras.optimizers.SGD):
    """Keras' SGD; with momentum under a schedule, v' rescaled to each step's lr first."""

    def update_step(self, gradient, variable, learning_rate):
        if self.momentum and isinstance(self._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            m = self.momentums[self._get_variable_index(variable)]
            before = self._learning_rate(self.iterations - 1)  # the previous step's lr (v' is 0 at the first)
            self.assign(m, keras.ops.multiply(m, keras.ops.cast(keras.ops.divide(learning_rate, before), m.dtype)))
        super().update_step(self.decayed(gradient, variable), variable, learning_rate)


class Adam(CoupledWeightDecay, keras.optimizers.Adam):
    """Adam in PyTorch's form: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
    w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + epsilon). Keras' own
    adds epsilon to sqrt(v) before the correction; its variables are kept."""

    def update_step(self, gradient, variable, learning_rate):
        ops, dtype = keras.ops, variable.dtype
        g = ops.cast(self.decayed(gradient, variable), dtype)
        t = ops.cast(self.iterations + 1, dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign(m, self.beta_1 * m + (1 - self.beta_1) * g)
        self.assign(v, self.beta_2 * v + (1 - self.beta_2) * ops.square(g))
        step_size = ops.cast(learning_rate, dtype) / (1 - ops.power(ops.cast(self.beta_1, dtype), t))
        correction = ops.sqrt(1 - ops.power(ops.cast(self.beta_2, dtype), t))
        self.assign_sub(variable, step_size * m / (ops.sqrt(v) / correction + self.epsilon))


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the samples in one pass over the data."""
    return np.random.default_rng((seed, epoch)).permutation(n)


class Batches(keras.utils.PyDataset):
    """``steps`` batches of ``batch_size`` (channels last, the labels once per
    output): passes over the data in the order of :func:`epoch_order`, each
    dropping its last partial batch."""

    def __init__(self, data: Dataset, batch_size: int, steps: int, seed: int, targets, transform=None) -> None:
        super().__init__()
        self.data, self.batch_size, self.steps, self.seed, self.targets = data, batch_size, steps, seed, targets
        self.transform = transform  # (images, targets, index) -> (images, targets): the augmentation, channels first
        self.per_epoch = len(data) // batch_size
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i: int):
        epoch, k = divmod(i, self.per_epoch)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(len(self.data), self.seed, epoch))
        idx = self._order[1][k * self.batch_size : (k + 1) * self.batch_size]
        x, y = self.data.batch(idx), self.data.targets(idx)
        if self.transform is not None:
            x, y = self.transform(x, y, i)
        return channels_last(x), self.targets(y)


class Report(keras.callbacks.Callback):
    """Each batch's loss and main-output accuracy to the monitor; ``n``: the samples
    (or pixels) of a batch."""

    def __init__(self, monitor: Monitor, start: int, n: int) -> None:
        super().__init__()
        self.monitor, self.start, self.n = monitor, start, n

    def on_train_batch_begin(self, batch: int, logs=None) -> None:
        self.model.reset_metrics()  # the logs after the batch are then its own values, not running means

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        accuracy = next(v for k, v in logs.items() if k.endswith("accuracy"))
        correct = round(float(accuracy) * self.n)
        self.monitor.step(self.start + batch + 1, float(logs["loss"]), correct, self.n)


class UnbiasedMovingVariance(keras.callbacks.Callback):
    """After each training step, every BatchNormalization's moving variance as if
    updated with the unbiased batch variance (see the module docstring)."""

    def __init__(self, model: keras.Model) -> None:
        super().__init__()
        norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
        # values per channel in one sample: the spatial size of the layer's input (channels last)
        self.norms = [(layer, int(np.prod(layer.input.shape[1:-1]))) for layer in norms]
        self.before: list[np.ndarray] = []

        self.batch_size = 0  # set by Trainer.fit

    def on_train_batch_begin(self, batch: int, logs=None) -> None:
        self.before = [layer.moving_variance.numpy() for layer, _ in self.norms]

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self.correct(self.batch_size)

    def correct(self, batch_size: int) -> None:
        for (layer, per_sample), v0 in zip(self.norms, self.before):
            n = batch_size * per_sample
            if n > 1:
                v1 = layer.moving_variance.numpy()
                layer.moving_variance.assign(v1 + (v1 - layer.momentum * v0) / (n - 1))


class Trainer(RuntimeModel):
    target = TARGET
    runtime = rt
    native = "model.weights.h5"

    def __init__(self, module: ModuleType, class_name: str, setup: Setup) -> None:
        self.setup = setup
        if setup.threads and keras.backend.backend() == "tensorflow":
            from archspec.training.tensorflow import set_threads

            set_threads(setup.threads)
        keras.utils.set_random_seed(setup.seed)
        self.model: keras.Model = setup.build(module, class_name)
        if not setup.dropout:
            for layer in self.model.layers:
                if isinstance(layer, keras.layers.Dropout):  # spatial dropouts too
                    layer.rate = 0.0
        setup.world.wrap_model(self.model)  # --sync-bn: BatchNormalization(synchronized=True)
        self.norms = UnbiasedMovingVariance(self.model)
        self.several = isinstance(self.model.output, list | tuple)
        n = len(self.model.outputs)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.optimizer = optimizer_for(setup)
        self.model.compile(
            optimizer=self.optimizer,
            loss=[loss] * n if self.several else loss,
            loss_weights=setup.loss_weights[:n] if self.several else None,
            metrics=[[accuracy]] + [[]] * (n - 1) if self.several else [accuracy],
        )

    def _targets(self, y: np.ndarray):
        """The labels as the model's outputs are structured (once per output)."""
        return tuple(y for _ in self.model.outputs) if self.several else y

    def fit(self, data: Dataset, batch_size: int, start: int, stop: int, monitor: Monitor) -> None:
        names, seed = self.setup.augment, self.setup.seed
        transform = (lambda x, y, i: augment_batch(x, y, names, seed, start + i + 1)) if names else None
        batches = Batches(data, batch_size, stop - start, self.setup.seed + start, self._targets, transform)
        if self.setup.world.custom_loop:  # MultiWorkerMirroredStrategy, where fit fails (keras issue 20585)
            return self.setup.world.keras_loop(self).fit(batches, start, monitor)
        # shuffle=False: Keras would shuffle the order of the batches, which Batches already fixes
        self.norms.batch_size = self.setup.world.norm_batch(batch_size)  # with --nproc, each replica's images
        n = batch_size * int(np.prod(data.targets([0]).shape[1:]))  # samples, or pixels of masks
        callbacks = [self.norms, Report(monitor, start, n)]  # the correction first: Report may checkpoint
        self.model.fit(batches, epochs=1, shuffle=False, verbose=0, callbacks=callbacks)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        x = channels_last(np.asarray(x, np.float32))
        if self.setup.world.custom_loop:
            return self.setup.world.keras_loop(self).step(x, y)[0]
        self.norms.on_train_batch_begin(0)
        logs = self.model.train_on_batch(x, self._targets(np.asarray(y, np.int64)), return_dict=True)
        self.norms.correct(len(x))
        return float(logs["loss"])

    def save(self, run_dir: Path) -> None:
        with atomic(run_dir / self.native) as tmp:
            h5 = tmp.with_name(tmp.name + ".weights.h5")  # save_weights wants this suffix
            try:
                self.model.save_weights(h5)
                os.replace(h5, tmp)
            finally:
                h5.unlink(missing_ok=True)
        self._built()
        store: dict[str, np.ndarray] = {}
        self.optimizer.save_own_variables(store)
        with atomic(run_dir / OPTIMIZER_FILE) as tmp, tmp.open("wb") as f:
            np.savez(f, **store)

    def restore(self, run_dir: Path) -> None:
        path = run_dir / OPTIMIZER_FILE
        self._built()
        variables = self.optimizer.variables
        try:
            with np.load(path) as npz:
                store = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as exc:
            raise TrainingError(f"cannot read the optimizer's state from {path}: {exc}") from None
        shapes = [tuple(store[str(i)].shape) if str(i) in store else None for i in range(len(variables))]
        if len(store) != len(variables) or shapes != [tuple(v.shape) for v in variables]:
            raise TrainingError(
                f"{path} is not the state of this model's {self.setup.optimizer} optimizer "
                f"({len(store)} arrays for {len(variables)} variables)"
            )
        self.optimizer.load_own_variables(store)

    def _built(self) -> None:
        """Create the optimizer's variables (Keras does at the first step) so that they can be saved or set."""
        if not self.optimizer.built:
            with self.setup.world.scope():  # with --nproc, as mirrored variables
                self.optimizer.build(self.model.trainable_variables)
