"""Training the generated PyTorch model: a DataLoader, an optimizer, CrossEntropyLoss
(which takes per-pixel logits (N, K, H, W) and masks (N, H, W) as they are).

PyTorch defines the conventions of the training options: ``weight_decay`` is
torch.optim's (L2 added to the gradient of every parameter), the schedules are
``StepLR`` and ``CosineAnnealingLR`` stepped after every optimizer step, and
augmentation runs in the DataLoader's ``collate_fn`` (:class:`Augmented`).

The model lives on the setup's device (``--device``: the CPU or ``cuda:K``);
batches follow it with ``.to(device, non_blocking=True)`` from a DataLoader
that pins its memory on CUDA.

The native checkpoint is ``model.pt``, the model's ``state_dict`` (what the
generated file loads with ``model.load_state_dict(torch.load("model.pt", map_location="cpu"))``:
a GPU run's tensors are saved on their GPU); the optimizer's state is
``optimizer.pt``, read back onto this run's device, so a GPU run resumes on
the CPU (``--resume --device cpu``) and a CPU run on a GPU.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, default_collate
from torch.utils.data import Dataset as TorchDataset

from archspec.runtime import pytorch as rt
from archspec.training.augment import augment_batch
from archspec.training.core import ADAM_BETAS, ADAM_EPS, MOMENTUM, STEP_GAMMA, Monitor, RuntimeModel, Setup, atomic
from archspec.training.data import Dataset

TARGET = "pytorch"


class Samples(TorchDataset):
    """An archspec dataset as PyTorch's map-style dataset of (image, label or mask)."""

    def __init__(self, data: Dataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.data.batch([i])[0]), torch.as_tensor(self.data.targets([i])[0])


class Augmented:
    """A ``collate_fn``: the default collation, then the augmentation of the batch's
    optimizer step (counted from ``start``; the DataLoader runs in this process)."""

    def __init__(self, names: tuple[str, ...], seed: int, start: int) -> None:
        self.names, self.seed, self.step = names, seed, start

    def __call__(self, samples):
        x, y = default_collate(samples)
        self.step += 1
        x, y = augment_batch(x.numpy(), y.numpy(), self.names, self.seed, self.step)
        return torch.from_numpy(x), torch.from_numpy(y)


def optimizer_for(name: str, params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=MOMENTUM, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=weight_decay)


def scheduler_for(setup: Setup, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
    if setup.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, setup.period, gamma=STEP_GAMMA)
    if setup.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=setup.iters, eta_min=0.0)
    return None


class Trainer(RuntimeModel):
    target = TARGET
    runtime = rt
    native = "model.pt"

    def __init__(self, module: ModuleType, class_name: str, setup: Setup) -> None:
        self.setup = setup
        if setup.threads:
            torch.set_num_threads(setup.threads)
        torch.manual_seed(setup.seed)
        self.device = torch.device(setup.device)
        self.model: nn.Module = setup.build(module, class_name).to(self.device)
        if not setup.dropout:
            for m in self.model.modules():
                if isinstance(m, nn.modules.dropout._DropoutNd):
                    m.p = 0.0
        self.net = setup.world.wrap_model(self.model)  # DistributedDataParallel with --nproc
        self.optimizer = optimizer_for(setup.optimizer, self.model.parameters(), setup.lr, setup.weight_decay)
        self.scheduler = scheduler_for(setup, self.optimizer)
        self.criterion = nn.CrossEntropyLoss()

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training loss (auxiliary outputs weighted in) and the main logits."""
        out = self.net(x)
        outs = out if isinstance(out, tuple | list) else (out,)
        loss = sum(w * self.criterion(o, y) for w, o in zip(self.setup.loss_weights, outs) if o is not None)
        return loss, outs[0]

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        self.model.train()
        self.optimizer.zero_grad()
        loss, logits = self._loss(x, y)
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.item(), int((logits.argmax(1) == y).sum())  # of y.numel() samples or pixels

    def _schedule_from(self, start: int) -> None:
        """The scheduler as after ``start`` steps (a resumed run; its iters may have grown)."""
        if self.scheduler is not None and start:
            self.scheduler.last_epoch = start
            for group in self.optimizer.param_groups:
                group["lr"] = self.setup.lr_at(start + 1)

    def fit(self, data: Dataset, batch_size: int, start: int, stop: int, monitor: Monitor) -> None:
        self._schedule_from(start)
        generator = torch.Generator().manual_seed(self.setup.seed + start)
        collate = Augmented(self.setup.augment, self.setup.seed, start) if self.setup.augment else None
        loader = DataLoader(
            Samples(data),
            batch_size,
            shuffle=True,
            drop_last=True,
            generator=generator,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
        )
        loader = self.setup.world.wrap_data(loader)  # with --nproc: a DistributedSampler, batch_size / nproc
        step = start
        while step < stop:
            for x, y in loader:
                loss, correct = self._step(x, y)
                step += 1
                monitor.step(step, loss, correct, y.numel())
                if step == stop:
                    return

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One step on a batch cast to the model's dtype."""
        x, y = self.setup.world.shard(x, y)  # with --nproc: this process's share of the global batch
        dtype = next(self.model.parameters()).dtype  # float32, or float64 after model.double()
        return self._step(torch.from_numpy(np.asarray(x)).to(dtype), torch.from_numpy(np.asarray(y, np.int64)))[0]

    def save(self, run_dir: Path) -> None:
        with atomic(run_dir / self.native) as tmp:
            torch.save(self.model.state_dict(), tmp)
        with atomic(run_dir / "optimizer.pt") as tmp:
            torch.save(self.optimizer.state_dict(), tmp)

    def restore(self, run_dir: Path) -> None:
        state = torch.load(run_dir / "optimizer.pt", map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(state)
