"""Data-parallel training on each framework's own engine: ``archspec train --nproc N``.

Every engine averages the gradients of one global batch (``--batch-size``)
over N replicas, each computing on ``batch-size / N`` of its images, so N
replicas take the same optimizer steps as one process on the whole batch, up
to float rounding (tests/test_distributed.py proves it step by step).

=========== ============================================ =====================================
target      one machine (``--nproc N``)                  several machines (``--distributed``)
=========== ============================================ =====================================
pytorch     torchrun --standalone, N processes           torchrun --nnodes --rdzv-endpoint
            (DistributedDataParallel over gloo on the     on every machine
            CPU, nccl on GPUs: cuda:LOCAL_RANK)
tensorflow  MirroredStrategy over N GPUs, or N logical   MultiWorkerMirroredStrategy from
keras       CPU devices, in this process (Keras: fit)    TF_CONFIG (Keras: a custom loop)
chainer     mpirun -np N, ChainerMN (naive communicator  mpirun -H / --hostfile
            on the CPU, pure_nccl on GPUs: intra_rank)
=========== ============================================ =====================================

:func:`launch` is the command line's side: for PyTorch and Chainer it starts
the launcher (torchrun, mpirun) on the same command with ``--distributed``
added and waits for it. :func:`world` is a worker's side: the
:class:`World` this process trains in, with the hooks the trainers call
(``wrap_model``, ``wrap_optimizer``, ``wrap_data``, ``shard``, ``run``) and
what the monitor needs (``gather``, ``agree``). Rank 0 alone writes the run
directory, evaluates and prints; every rank stops at the same step (end,
NaN, Ctrl-C, early stopping), because the monitor agrees on it after each step.

Devices (``--device``, :mod:`archspec.training.device`): :func:`world`
chooses them, with each process's place among the processes of its machine,
and records them in ``World.devices``.

Batch norm: without ``--sync-bn`` each replica normalizes over its own
``batch-size / N`` images. ``--sync-bn`` normalizes over the global batch
where the engine offers it: Chainer's ``MultiNodeBatchNormalization`` (the
generated ``L.BatchNormalization`` links are replaced when the model is
built) and Keras' ``BatchNormalization(synchronized=True)``, and on GPUs PyTorch's
``SyncBatchNorm``. PyTorch on the CPU (``SyncBatchNorm`` refuses CPU tensors)
and the generated tf.Module (it computes its own moments) refuse ``--sync-bn``
with a message.

Keras 3 ``fit`` fails under MultiWorkerMirroredStrategy (keras-team/keras
issue 20585), so across machines the Keras model trains in a custom loop
(:class:`KerasLoop`) with the compiled losses and optimizer; on one machine
``fit`` runs under MirroredStrategy.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from archspec.training import device as D
from archspec.training.core import Interrupted, Stop, TrainingError

MAX_NPROC = 1024
LAUNCHERS = {"pytorch": "torchrun", "chainer": "mpirun"}
FOLDER_ENV = "ARCHSPEC_LAUNCH_DIR"  # set by launch(): the workers write their pids and rank 0's exit status here
ARGV_ENV = "ARCHSPEC_ARGV"  # set by launch(): the workers' command line, as JSON (torchrun would parse it)
WORKER_MODULE = "archspec.training.distributed"  # what the launchers run: the command line, once per process


def check(target: str, nproc: int, batch_size: int, sync_bn: bool, device: str = "cpu") -> None:
    """Refuse what no engine can do, before anything starts."""
    if not 1 <= nproc <= MAX_NPROC:
        raise TrainingError(f"--nproc {nproc} is out of range: give a whole number from 1 to {MAX_NPROC}")
    if batch_size % nproc:
        raise TrainingError(
            f"--batch-size {batch_size} does not split into --nproc {nproc} equal parts: give a batch size that "
            f"is a multiple of {nproc} (it is the global batch; each process takes batch-size / nproc)"
        )
    if sync_bn and target == "pytorch" and nproc > 1 and not device.startswith("cuda"):
        raise TrainingError(
            "--sync-bn: PyTorch's SyncBatchNorm runs on GPUs only (it refuses CPU tensors); give --device cuda, "
            "or leave --sync-bn out: each process then normalizes over its own batch-size / nproc images, "
            "and DistributedDataParallel gives every process rank 0's running statistics"
        )
    if sync_bn and target == "tensorflow" and nproc > 1:
        raise TrainingError(
            "--sync-bn: the generated TensorFlow model computes its batch-norm moments itself (tf.nn.moments), "
            "which tf.distribute does not synchronize; leave --sync-bn out (each replica normalizes over its own "
            "batch-size / nproc images; the first replica's moving statistics are saved), or train in keras, "
            "whose BatchNormalization(synchronized=True) it uses"
        )


# ----------------------------------------------------------------------------
# Worlds: the processes of one run, and the hooks the trainers call


class World:
    """One process, one replica: the ordinary run. Every hook is the identity."""

    engine = "none"
    devices: tuple[str, ...] = ("cpu",)  # this process's replicas' devices (archspec.training.device)
    size = 1  # replicas the gradient is averaged over
    rank = 0  # this process's rank; rank 0 writes the run
    sync_bn = False
    custom_loop = False  # Keras trains in KerasLoop, not fit (MultiWorkerMirroredStrategy)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        """What run.json records."""
        return {"engine": self.engine, "nproc": self.size, "sync_bn": self.sync_bn}

    def local_batch(self, batch_size: int) -> int:
        """The images one replica computes on in a step of ``batch_size``."""
        return batch_size // self.size

    def norm_batch(self, batch_size: int) -> int:
        """The images one batch norm's statistics come from in a step of ``batch_size``."""
        return batch_size if self.sync_bn else self.local_batch(batch_size)

    def scope(self) -> contextlib.AbstractContextManager:
        """Where the trainer builds its model and optimizer."""
        return contextlib.nullcontext()

    def wrap_model(self, model: Any) -> Any:
        return model

    def wrap_optimizer(self, optimizer: Any) -> Any:
        return optimizer

    def wrap_data(self, data: Any) -> Any:
        return data

    def shard(self, x: Any, y: Any) -> tuple[Any, Any]:
        """This process's share of a global batch (for ``Trainer.train_step``)."""
        return x, y

    def run(self, fn: Callable, x: Any, y: Any) -> Any:
        """``fn(x, y) -> (loss, gradients, correct)`` over the replicas, reduced (TensorFlow)."""
        return fn(x, y)

    def gather(self, loss: float, correct: int, n: int) -> tuple[float, int, int]:
        """A step's figures over every process, from this process's own."""
        return loss, correct, n

    def agree(self, step: int, stop: Stop | None) -> Stop | None:
        """The stop every process takes after ``step``: this one's, or one another process took."""
        return stop

    def close(self) -> None:
        """Leave the group."""


def _code(stop: Stop | None) -> int:
    return 0 if stop is None else 1


def _agreed(step: int, stop: Stop | None, others: int) -> Stop | None:
    if stop is not None or not others:
        return stop
    return Interrupted(step, f"stopped at step {step} with the other processes")


class TorchWorld(World):
    """torch.distributed under torchrun: DistributedDataParallel, a DistributedSampler."""

    def __init__(
        self, rank: int, size: int, backend: str, devices: tuple[str, ...] = ("cpu",), sync_bn: bool = False
    ) -> None:
        self.rank, self.size, self.backend, self.devices, self.sync_bn = rank, size, backend, devices, sync_bn
        self.engine = f"torch.distributed (DistributedDataParallel, {backend})"

    def wrap_model(self, model):
        """DistributedDataParallel around the model (already on this process's device): it broadcasts
        rank 0's weights and, every step, its buffers; --sync-bn (GPUs): SyncBatchNorm layers."""
        import torch
        from torch.nn.parallel import DistributedDataParallel

        gpu = D.index(self.devices[0])
        if gpu is None:
            return DistributedDataParallel(model)
        if self.sync_bn:
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place below the root (never a batch norm)
        return DistributedDataParallel(model, device_ids=[gpu], output_device=gpu)

    def wrap_data(self, loader):
        """The loader's dataset and collation, each process taking its batch-size / N of every global batch."""
        from torch.utils.data import DataLoader

        sampler = _epoch_sampler()(
            loader.dataset, self.size, self.rank, shuffle=True, seed=loader.generator.initial_seed(), drop_last=True
        )
        return DataLoader(
            loader.dataset,
            self.local_batch(loader.batch_size),
            sampler=sampler,
            drop_last=True,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
        )

    def shard(self, x, y):
        b = self.local_batch(len(x))
        return x[self.rank * b : (self.rank + 1) * b], y[self.rank * b : (self.rank + 1) * b]

    def gather(self, loss, correct, n):
        import torch
        import torch.distributed as dist

        t = torch.tensor([loss, correct, n], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t[0]) / self.size, int(t[1]), int(t[2])

    def agree(self, step, stop):
        import torch
        import torch.distributed as dist

        t = torch.tensor([_code(stop)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return _agreed(step, stop, int(t))

    def close(self):
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


@functools.cache
def _epoch_sampler() -> type:
    from torch.utils.data import DistributedSampler

    class EpochSampler(DistributedSampler):
        """A DistributedSampler that moves to the next epoch (``set_epoch``) each time a pass begins."""

        def __iter__(self):
            order = super().__iter__()
            self.set_epoch(self.epoch + 1)
            return order

    return EpochSampler


class ChainerWorld(World):
    """ChainerMN under mpirun: a multi-node optimizer, a scattered dataset, MultiNodeBatchNormalization."""

    def __init__(self, comm, sync_bn: bool, seed: int, devices: tuple[str, ...]) -> None:
        self.comm, self.rank, self.size, self.sync_bn, self.seed = comm, comm.rank, comm.size, sync_bn, seed
        self.devices = devices
        self.engine = f"ChainerMN (mpirun, {_communicator_name(devices)} communicator)"

    def wrap_model(self, model):
        if self.sync_bn and self.size > 1:
            sync_batch_norm(model, self.comm)
        return model

    def wrap_optimizer(self, optimizer):
        """ChainerMN's multi-node optimizer around one already set up: its first update broadcasts rank 0's
        parameters and takes no step, so it is taken here, before training."""
        import chainermn

        multi = chainermn.create_multi_node_optimizer(optimizer, self.comm)
        multi.update()
        return multi

    def wrap_data(self, dataset):
        import chainermn

        return chainermn.scatter_dataset(dataset, self.comm, shuffle=True, seed=self.seed)

    def shard(self, x, y):
        b = self.local_batch(len(x))
        return x[self.rank * b : (self.rank + 1) * b], y[self.rank * b : (self.rank + 1) * b]

    def gather(self, loss, correct, n):
        from mpi4py import MPI

        total = self.comm.mpi_comm.allreduce(np.array([loss, correct, n], np.float64), op=MPI.SUM)
        return float(total[0]) / self.size, int(total[1]), int(total[2])

    def agree(self, step, stop):
        from mpi4py import MPI

        return _agreed(step, stop, self.comm.mpi_comm.allreduce(_code(stop), op=MPI.MAX))


def sync_batch_norm(model, comm) -> int:
    """Replace every ``L.BatchNormalization`` link of a Chainer model by a
    ``chainermn.links.MultiNodeBatchNormalization`` with the same size, decay,
    epsilon, parameters and statistics; how many were replaced."""
    import chainer
    from chainermn.links import MultiNodeBatchNormalization

    replaced = 0
    for parent in list(model.links()):
        if isinstance(parent, chainer.ChainList):
            children = [(str(i), link) for i, link in enumerate(parent)]
        elif isinstance(parent, chainer.Chain):
            children = [(name, getattr(parent, name)) for name in sorted(parent._children)]
        else:  # a leaf link
            continue
        for name, old in children:
            if type(old) is not chainer.links.BatchNormalization:
                continue
            if old.axis is not None:
                raise TrainingError(f"--sync-bn: the batch norm {name} normalizes over axis {old.axis}, not channels")
            with warnings.catch_warnings():  # "experimental" since ChainerMN 1.2, unchanged in Chainer 7
                warnings.simplefilter("ignore", FutureWarning)
                new = MultiNodeBatchNormalization(
                    old.avg_mean.shape[0],
                    comm,
                    decay=old.decay,
                    eps=old.eps,
                    dtype=old.avg_mean.dtype,
                    use_gamma=hasattr(old, "gamma"),
                    use_beta=hasattr(old, "beta"),
                )
            for attr in ("gamma", "beta"):
                if hasattr(old, attr):
                    getattr(new, attr).array[...] = getattr(old, attr).array
            new.avg_mean[...], new.avg_var[...], new.N = old.avg_mean, old.avg_var, old.N
            if isinstance(parent, chainer.ChainList):
                new.name = name
                parent._children[int(name)] = new
            else:
                delattr(parent, name)
                with parent.init_scope():
                    setattr(parent, name, new)
            replaced += 1
    return replaced


class TFWorld(World):
    """tf.distribute: MirroredStrategy in one process, or MultiWorkerMirroredStrategy across processes."""

    def __init__(self, strategy, rank: int, workers: int, sync_bn: bool, devices: tuple[str, ...]) -> None:
        self.strategy, self.rank, self.workers, self.sync_bn, self.devices = strategy, rank, workers, sync_bn, devices
        self.size = strategy.num_replicas_in_sync
        kind = "MultiWorkerMirroredStrategy" if workers > 1 else "MirroredStrategy"
        self.engine = f"tf.distribute.{kind}"
        self.custom_loop = workers > 1  # Keras' fit fails under MultiWorkerMirroredStrategy (keras issue 20585)
        self._loops: dict[int, KerasLoop] = {}
        self._stops = None

    def describe(self):
        return {**super().describe(), "workers": self.workers}

    def scope(self):
        return self.strategy.scope()

    def wrap_model(self, model):
        """Keras: every BatchNormalization synchronized with --sync-bn."""
        import keras

        if self.sync_bn:
            for layer in model.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized = True
        return model

    def wrap_data(self, dataset):
        import tensorflow as tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    def shard(self, x, y):
        b = self.local_batch(len(x))

        def part(ctx, a):
            i = ctx.replica_id_in_sync_group
            return a[i * b : (i + 1) * b]

        distribute = self.strategy.experimental_distribute_values_from_function
        return distribute(lambda ctx: part(ctx, x)), distribute(lambda ctx: part(ctx, y))

    def run(self, fn, x, y):
        """Losses and gradients averaged over the replicas (equal batches), correct counts summed."""
        import tensorflow as tf

        loss, grads, correct = self.strategy.run(fn, args=(x, y))
        mean, total = tf.distribute.ReduceOp.MEAN, tf.distribute.ReduceOp.SUM
        grads = [None if g is None else self.strategy.reduce(mean, g, axis=None) for g in grads]
        return self.strategy.reduce(mean, loss, axis=None), grads, self.strategy.reduce(total, correct, axis=None)

    def agree(self, step, stop):
        if self.workers == 1:
            return stop
        import tensorflow as tf

        if self._stops is None:  # across workers: one collective, traced once

            def stops(code):
                local = self.strategy.run(lambda: tf.identity(code))
                return self.strategy.reduce(tf.distribute.ReduceOp.SUM, local, axis=None)  # no MAX in tf.distribute

            self._stops = tf.function(stops)
        return _agreed(step, stop, int(self._stops(tf.constant(_code(stop)))))

    def keras_loop(self, trainer) -> KerasLoop:
        """The custom training loop of a Keras trainer (one per trainer)."""
        if id(trainer) not in self._loops:
            self._loops[id(trainer)] = KerasLoop(trainer, self)
        return self._loops[id(trainer)]


class KerasLoop:
    """Keras without ``fit``, for MultiWorkerMirroredStrategy: each replica runs the
    model, the compiled losses (which divide by the number of replicas) and
    ``optimizer.apply_gradients`` (which sums the gradients over the replicas);
    the trainer's batch-norm correction follows every step."""

    def __init__(self, trainer, world: TFWorld) -> None:
        import tensorflow as tf

        self.trainer, self.world = trainer, world
        trainer._built()  # the optimizer's variables, before its first step is traced
        self._step = tf.function(self._graph)

    def _graph(self, x, y):
        import tensorflow as tf

        model, strategy = self.trainer.model, self.world.strategy

        def replica(x, y):
            with tf.GradientTape() as tape:
                out = model(x, training=True)
                loss = model.compute_loss(x=x, y=self.trainer._targets(y), y_pred=out, training=True)
            variables = model.trainable_variables
            self.trainer.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            main = out[0] if isinstance(out, list | tuple) else out
            correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(main, axis=1), y), tf.int32))
            return loss, correct

        loss, correct = strategy.run(replica, args=(x, y))
        total = tf.distribute.ReduceOp.SUM
        return strategy.reduce(total, loss, axis=None), strategy.reduce(total, correct, axis=None)

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """One step on a global batch (channels last): every worker passes the same batch and takes its share."""
        norms = self.trainer.norms
        norms.on_train_batch_begin(0)
        loss, correct = self._step(*self.world.shard(np.asarray(x, np.float32), np.asarray(y, np.int64)))
        norms.correct(self.world.norm_batch(len(x)))
        return float(loss), int(correct)

    def fit(self, batches, start: int, monitor) -> None:
        """The steps of ``batches`` (the trainer's :class:`~archspec.training.keras.Batches`)."""
        for i in range(len(batches)):
            x, y = batches[i]
            loss, correct = self.step(x, y[0] if isinstance(y, tuple) else y)
            monitor.step(start + i + 1, loss, correct, len(x))


# ----------------------------------------------------------------------------
# This process's world


def world(
    target: str,
    nproc: int,
    distributed: bool,
    sync_bn: bool,
    batch_size: int,
    seed: int = 0,
    threads: int | None = None,
    device: str = "cpu",
) -> World:
    """The world this process trains in, on the devices ``device`` (``--device``) resolves to
    (the options passed :func:`check`); call it before the framework computes anything
    (TensorFlow fixes its devices and thread pools then: ``threads`` are set first)."""
    if not distributed and nproc == 1:
        alone = World()
        alone.devices = D.place(target, device)
        return alone
    if target in LAUNCHERS and not distributed:
        raise TrainingError(
            f"--nproc {nproc} in {target} runs under {LAUNCHERS[target]}: start it with the archspec command "
            f"(archspec train ... --nproc {nproc} starts {LAUNCHERS[target]}), or start the processes yourself "
            "and give each --distributed (docs/distributed.md)"
        )
    if target == "pytorch":
        found = _torch_world(device, sync_bn)
    elif target == "chainer":
        found = _chainer_world(sync_bn, seed, device)
    else:
        found = _tf_world(target, nproc, distributed, sync_bn, threads, device)
    if distributed and nproc > 1 and nproc != found.size:
        found.close()
        raise TrainingError(
            f"--nproc {nproc} but the launcher started {found.size} processes; "
            "leave --nproc out with --distributed, or give the launcher's total"
        )
    check(target, found.size, batch_size, sync_bn, found.devices[0])
    return found


def _torch_world(device: str, sync_bn: bool) -> TorchWorld:
    needed = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    missing = [k for k in needed if k not in os.environ]
    if missing:
        raise TrainingError(
            f"--distributed: this process was not started by torchrun (no {', '.join(missing)} in the environment); "
            "start it with torchrun ... -m archspec train ... --distributed (docs/distributed.md)"
        )
    import torch
    import torch.distributed as dist

    local_rank, local_size = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    devices = D.place("pytorch", device, local_rank=local_rank, local_size=local_size)
    gpu = D.index(devices[0])
    if gpu is not None:
        torch.cuda.set_device(gpu)  # nccl's device for this process
    backend = "gloo" if gpu is None else "cpu:gloo,cuda:nccl"  # the monitor's small all-reduces stay on the CPU
    if not dist.is_initialized():  # one group per process: the runs of a grid share it
        try:
            dist.init_process_group(backend)
        except (RuntimeError, ValueError) as exc:
            raise TrainingError(f"torch.distributed could not start its {backend} group: {exc}") from None
    return TorchWorld(dist.get_rank(), dist.get_world_size(), backend, devices, sync_bn)


def _chainer_world(sync_bn: bool, seed: int, device: str) -> ChainerWorld:
    from archspec import runtime

    try:
        with warnings.catch_warnings():  # chainer's own import warnings
            warnings.simplefilter("ignore")
            runtime.get("chainer")._chainer()  # numpy 2's shim first
            import chainermn  # noqa: F401 - ChainerMN, with
            import mpi4py  # noqa: F401 - its MPI
    except ImportError as exc:
        raise TrainingError(
            f"ChainerMN needs mpi4py and Open MPI ({exc}); run scripts/setup (Debian's openmpi-bin, pip's mpi4py)"
        ) from None
    from mpi4py import MPI

    node = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED)  # this machine's processes: ChainerMN's intra rank and size
    devices = D.place("chainer", device, local_rank=node.rank, local_size=node.size)
    return ChainerWorld(_communicator(_communicator_name(devices)), sync_bn, seed, devices)


def _communicator_name(devices: tuple[str, ...]) -> str:
    """ChainerMN's communicator for these arrays: "naive" (MPI) for CPU ones, "pure_nccl" for GPU ones."""
    return "naive" if devices == ("cpu",) else "pure_nccl"


@functools.cache
def _communicator(name: str):
    """ChainerMN's communicator over MPI_COMM_WORLD, once per process."""
    import chainermn

    try:
        return chainermn.create_communicator(name)
    except RuntimeError as exc:  # pure_nccl: "PureNcclCommunicator requires NCCL 2.0+, but NCCL is not available."
        raise TrainingError(
            f"ChainerMN's {name} communicator cannot start: {exc} CuPy needs NCCL 2 for it "
            '(docs/training.md, "GPUs"); or train on the CPU: --device cpu'
        ) from None


def _tf_world(target: str, nproc: int, distributed: bool, sync_bn: bool, threads: int | None, device: str) -> TFWorld:
    cluster = _tf_config() if distributed else None  # read before TensorFlow starts
    from archspec import runtime

    runtime.get("tensorflow")  # TensorFlow's start-up messages off
    from archspec.training.tensorflow import set_threads

    set_threads(threads)
    if cluster is not None:  # a worker is one replica: one GPU, the first it sees (CUDA_VISIBLE_DEVICES) or cuda:N
        devices = D.place(target, device)
        return TFWorld(_multi_worker_strategy(), *cluster, sync_bn, devices)
    devices = D.place(target, device, replicas=nproc)
    return TFWorld(_mirrored(nproc, devices != ("cpu",)), 0, 1, sync_bn, devices)


@functools.cache
def _mirrored(nproc: int, gpus: bool):
    """MirroredStrategy over ``nproc`` GPUs (``gpus``), or else logical CPU devices, once per process."""
    import tensorflow as tf

    if gpus:
        devices = [f"/gpu:{i}" for i in range(nproc)]
    else:
        cpu = tf.config.list_physical_devices("CPU")[0]
        with contextlib.suppress(RuntimeError):  # TensorFlow already runs in this process: its devices are fixed
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * nproc)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        if len(devices) < nproc:
            raise TrainingError(
                f"--nproc {nproc}: TensorFlow already started in this process with {len(devices)} CPU device(s); "
                "run the training in a new process"
            )
    return tf.distribute.MirroredStrategy(devices[:nproc])


def _tf_config() -> tuple[int, int]:
    """(this task's rank, the number of workers) from TF_CONFIG; the chief, if any, is rank 0."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise TrainingError(
            "--distributed with TensorFlow or Keras reads the cluster from TF_CONFIG, which is not set "
            '(e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}\'; docs/distributed.md)'
        )
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        order = [(kind, i) for kind in ("chief", "worker") for i in range(len(cluster.get(kind, ())))]
        return order.index((task["type"], int(task["index"]))), len(order)
    except (ValueError, KeyError, TypeError) as exc:
        raise TrainingError(
            f"TF_CONFIG is not a cluster description with this task in it ({type(exc).__name__}: {exc})"
        ) from None


@functools.cache
def _multi_worker_strategy():
    """MultiWorkerMirroredStrategy from TF_CONFIG, once per process (it must come before any other op)."""
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


# ----------------------------------------------------------------------------
# Launching the workers (the command line's side)


def launcher_command(target: str, nproc: int, *, python: str = sys.executable) -> list[str]:
    """The command that runs :func:`worker_main` in ``nproc`` processes on this machine."""
    worker = ["-m", WORKER_MODULE]
    if target == "pytorch":
        torchrun = ["-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc)]
        return [python, *torchrun, *worker]
    root = ["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    local = ["--mca", "btl", "self,vader", "--oversubscribe", "--bind-to", "none"]
    return ["mpirun", *root, "-np", str(nproc), *local, python, *worker]


def launcher_env(environ: dict[str, str], nproc: int, argv: list[str], folder: str) -> dict[str, str]:
    """The workers' environment: their command line (``archspec ARGV --distributed``),
    the launch folder, threads shared out, gloo on the loopback."""
    env = {**environ, ARGV_ENV: json.dumps([*argv, "--distributed"]), FOLDER_ENV: folder}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    return env


def launch(target: str, nproc: int, distributed: bool, argv: list[str]) -> int | None:
    """For PyTorch and Chainer with ``--nproc`` above 1: run the command line
    ``argv`` (``train ...``) under torchrun or mpirun and return rank 0's exit
    status; None when this process trains by itself.

    Ctrl-C: the launcher runs in a session of its own (torchrun would turn
    SIGINT into stopping its workers at once, mpirun into killing the job);
    each worker writes its process id into the launch folder, and this process
    passes every Ctrl-C on to each of them, so that they stop together after
    the step (a second one stops them at once). SIGTERM and SIGHUP go to the
    launcher, which ends its workers."""
    if distributed or nproc == 1 or target not in LAUNCHERS:
        return None
    if "train" not in argv:
        raise TrainingError(
            f"--nproc {nproc} re-runs the archspec command under {LAUNCHERS[target]}: run it as archspec train ..."
        )
    command = launcher_command(target, nproc)
    if shutil.which(command[0]) is None:
        raise TrainingError(
            f"{command[0]} is not installed: ChainerMN runs under Open MPI's mpirun; run scripts/setup "
            "(it installs Debian's openmpi-bin and libopenmpi-dev, then mpi4py)"
        )
    with tempfile.TemporaryDirectory(prefix="archspec-launch-") as folder:
        code = _supervise(command, launcher_env(dict(os.environ), nproc, argv, folder), Path(folder))
        try:
            return int((Path(folder) / "status").read_text())
        except (OSError, ValueError):
            pass
    raise TrainingError(
        f"the {nproc} {LAUNCHERS[target]} workers failed (exit status {code}); see their messages above"
    )


def _supervise(command: list[str], env: dict[str, str], folder: Path) -> int:
    """Run the launcher in its own session, passing signals on as :func:`launch` says; its exit status."""
    proc = subprocess.Popen(command, env=env, start_new_session=True)

    def on_interrupt(signum, frame) -> None:
        pids = [int(p.read_text()) for p in folder.glob("pid-*") if p.read_text().strip()]
        if not pids:  # no worker has started: nothing to save
            proc.terminate()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)

    def on_terminate(signum, frame) -> None:
        proc.terminate()

    handlers = {signal.SIGINT: on_interrupt, signal.SIGTERM: on_terminate, signal.SIGHUP: on_terminate}
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:
            proc.kill()


@contextlib.contextmanager
def _silenced(quiet: bool) -> Iterator[None]:
    """Rank 0 speaks for every process: the others' output (the same messages) is dropped."""
    if not quiet:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def worker_main() -> int:
    """One process started by :func:`launch`: the command line in ARCHSPEC_ARGV;
    its process id goes to the launch folder first, rank 0's exit status last,
    and the process exits 0 (a launcher reports any other status as its own
    failure, at length)."""
    argv, folder = json.loads(os.environ[ARGV_ENV]), Path(os.environ[FOLDER_ENV])
    rank = int(os.environ.get("RANK") or os.environ.get("OMPI_COMM_WORLD_RANK") or 0)
    (folder / f"pid-{rank}").write_text(str(os.getpid()))
    from archspec.cli import main

    code: int | str | None = 0
    with _silenced(rank != 0):
        try:
            main.main(argv, prog_name="archspec")
        except SystemExit as exc:
            code = exc.code
    if rank == 0:
        (folder / "status").write_text(str(code if isinstance(code, int) else 0 if code is None else 1))
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
