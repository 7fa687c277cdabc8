"""Training the generated TensorFlow model (tf.Module, no Keras): tf.data, GradientTape, tf.function.

Batches come from a ``tf.data`` pipeline over sample indices (shuffled with the
seed, the last partial batch of each pass dropped) mapped through the archspec
dataset with ``tf.numpy_function``. A step calls the model with
``training=True`` (when it takes it), so batch norm normalizes with the batch statistics and
updates its moving ones (in the generated ``BatchNorm``, PyTorch's rule).

The optimizer is :class:`Optimizer`, written here with tf ops in PyTorch's
form, so that a step matches PyTorch's to rounding: ``sgd`` w -= lr g;
``momentum`` v = mu v + g, w -= lr v; ``adam`` with epsilon added to the
bias-corrected sqrt(v) (PyTorch's placement, not Keras'). It computes each
step's lr from its step count (PyTorch's StepLR and CosineAnnealingLR, see
:func:`archspec.training.core.scheduled_lr`) and adds weight_decay x w to
every gradient first (torch.optim's weight decay). Augmentation is a map of
the tf.data pipeline, through ``tf.numpy_function``, given each batch's step.

The native checkpoint is the folder ``checkpoint/`` of a
``tf.train.Checkpoint(model=..., optimizer=...)``, written by a
``tf.train.CheckpointManager`` keeping one checkpoint: it writes the new
checkpoint's files, then replaces the folder's state file atomically (the
commit), then deletes the previous checkpoint, so the folder always names a
whole checkpoint. A fresh generated model loads it with
``tf.train.Checkpoint(model=model).restore(tf.train.latest_checkpoint("checkpoint")).expect_partial()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import tensorflow as tf

from archspec.runtime import channels_last
from archspec.runtime import tensorflow as rt
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
)
from archspec.training.data import Dataset

TARGET = "tensorflow"


def set_threads(threads: int | None) -> None:
    """TensorFlow's intra- and inter-op thread pools, if ``threads`` is given."""
    if not threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TF is already initialized (an earlier model in this process): its pools stay
        pass


@contextlib.contextmanager
def dropout_off() -> Iterator[None]:
    """``tf.nn.dropout`` (what the generated code calls while training) as the
    identity, for the functions traced inside this context."""
    dropout = tf.nn.dropout
    tf.nn.dropout = lambda x, rate=None, noise_shape=None, seed=None, name=None: x
    try:
        yield
    finally:
        tf.nn.dropout = dropout


class Optimizer(tf.Module):
    """SGD, SGD with momentum or Adam over a list of variables, in PyTorch's form.
    Its state (step count and slots) is variables, so a checkpoint holds it."""

    def __init__(self, setup: Setup, variables: list[tf.Variable]) -> None:
        super().__init__(name="optimizer")
        self.kind, self.lr, self.setup = setup.optimizer, setup.lr, setup
        self.steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="steps")
        slots = {"sgd": (), "momentum": ("momentum",), "adam": ("m", "v")}[self.kind]
        self.slots = {s: [tf.Variable(tf.zeros_like(v), trainable=False, name=s) for v in variables] for s in slots}

    def rate(self, t: tf.Tensor) -> tf.Tensor:
        """The learning rate of step ``t`` (1-based, float64)."""
        e, setup = t - 1, self.setup
        if setup.schedule == "step":
            return setup.lr * tf.pow(tf.constant(STEP_GAMMA, tf.float64), tf.math.floordiv(e, setup.period))
        if setup.schedule == "cosine":
            return setup.lr * (1 + tf.cos(np.pi * e / setup.iters)) / 2
        return tf.constant(setup.lr, tf.float64)

    def apply(self, grads: list[tf.Tensor | None], variables: list[tf.Variable]) -> None:
        self.steps.assign_add(1)
        t = tf.cast(self.steps, tf.float64)
        lr = self.rate(t)
        b1, b2 = ADAM_BETAS
        for i, (g, w) in enumerate(zip(grads, variables)):
            if g is None:  # a variable the loss does not reach (PyTorch skips it too)
                continue
            if self.setup.weight_decay:
                g = g + tf.cast(self.setup.weight_decay, w.dtype) * w
            if self.kind == "sgd":
                w.assign_sub(tf.cast(lr, w.dtype) * g)
            elif self.kind == "momentum":
                v = self.slots["momentum"][i]
                v.assign(MOMENTUM * v + g)
                w.assign_sub(tf.cast(lr, w.dtype) * v)
            else:
                m, v = self.slots["m"][i], self.slots["v"][i]
                m.assign(b1 * m + (1 - b1) * g)
                v.assign(b2 * v + (1 - b2) * tf.square(g))
                step_size = tf.cast(lr / (1 - b1**t), w.dtype)
                correction = tf.cast(tf.sqrt(1 - b2**t), w.dtype)
                w.assign_sub(step_size * m / (tf.sqrt(v) / correction + ADAM_EPS))


class Trainer(RuntimeModel):
    target = TARGET
    runtime = rt
    native = "checkpoint"

    def __init__(self, module: ModuleType, class_name: str, setup: Setup) -> None:
        self.setup = setup
        set_threads(setup.threads)
        tf.random.set_seed(setup.seed)
        self.model: tf.Module = setup.build(module, class_name)
        self.variables = list(self.model.trainable_variables)
        self.optimizer = Optimizer(setup, self.variables)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
        self._step = tf.function(self._step_graph)

    def _step_graph(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One optimizer step: (loss before it, how many the main output classified right).
        With --nproc the gradients are computed per replica and averaged (tf.distribute)."""
        loss, grads, correct = self.setup.world.run(self._gradients, x, y)
        self.optimizer.apply(grads, self.variables)
        return loss, correct

    def _gradients(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor | None], tf.Tensor]:
        """The loss of a batch, its gradients and how many the main output classified right."""
        with tf.GradientTape() as tape:
            out = rt.call_training(self.model, x)
            outs = out if isinstance(out, tuple | list) else (out,)
            loss = tf.add_n(
                [
                    w * tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, o))
                    for w, o in zip(self.setup.loss_weights, outs)
                    if o is not None
                ]
            )
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(outs[0], axis=-1), y), tf.int32))  # samples or pixels
        return loss, tape.gradient(loss, self.variables), correct

    def _run_step(self, x: tf.Tensor, y: tf.Tensor) -> tuple[float, int]:
        with contextlib.nullcontext() if self.setup.dropout else dropout_off():
            loss, correct = self._step(x, y)
        return float(loss), int(correct)

    def batches(self, data: Dataset, batch_size: int, start: int, stop: int) -> tf.data.Dataset:
        """The batches of steps ``start + 1 .. stop``: channels-last images and labels (or masks)."""
        shape = (batch_size, *data.shape[1:], data.shape[0])  # channels last
        target_shape = (batch_size, *data.targets([0]).shape[1:])

        def load(step: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            x, y = augment_batch(
                data.batch(indices), data.targets(indices), self.setup.augment, self.setup.seed, int(step)
            )
            return channels_last(x), y

        def to_tensors(step: tf.Tensor, indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            x, y = tf.numpy_function(load, [step, indices], (tf.float32, tf.int64), stateful=False)
            return tf.ensure_shape(x, shape), tf.ensure_shape(y, target_shape)

        n = len(data)
        return (
            tf.data.Dataset.range(n)
            .shuffle(n, seed=self.setup.seed + start, reshuffle_each_iteration=True)
            .batch(batch_size, drop_remainder=True)
            .repeat()
            .take(stop - start)
            .enumerate(start + 1)  # each batch's optimizer step, for the augmentation's seed
            .map(to_tensors)
            .prefetch(1)
        )

    def fit(self, data: Dataset, batch_size: int, start: int, stop: int, monitor: Monitor) -> None:
        batches = self.setup.world.wrap_data(self.batches(data, batch_size, start, stop))  # per replica with --nproc
        n = batch_size * int(np.prod(data.targets([0]).shape[1:]))  # samples, or pixels of masks
        for step, (x, y) in enumerate(batches, start + 1):
            loss, correct = self._run_step(x, y)
            monitor.step(step, loss, correct, n)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        x = tf.constant(channels_last(np.asarray(x, np.float32)))
        return self._run_step(*self.setup.world.shard(x, tf.constant(np.asarray(y, np.int64))))[0]

    def save(self, run_dir: Path) -> None:
        manager = tf.train.CheckpointManager(self.checkpoint, str(Path(run_dir) / self.native), max_to_keep=1)
        manager.save(checkpoint_number=int(self.optimizer.steps.numpy()))

    def restore(self, run_dir: Path) -> None:
        folder = Path(run_dir) / self.native
        path = tf.train.latest_checkpoint(str(folder))
        if path is None:
            raise TrainingError(f"{folder} holds no TensorFlow checkpoint to resume from")
        try:
            status = tf.train.Checkpoint(optimizer=self.optimizer).restore(path)
            status.expect_partial().assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as exc:
            raise TrainingError(f"cannot read the optimizer's state from {path}: {exc}") from None
