"""PyTorch runtime: ``state_dict`` keys are the canonical keys, in the canonical layouts.

The generated modules are named after IR paths, so a ``state_dict`` key
(``layer1.0.conv1.weight``) is the canonical key and every tensor already has
the canonical layout; the table of layouts is empty. ``num_batches_tracked``
(a batch-norm counter, not a weight) is left as it is.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import torch

from archspec.runtime import IDENTITY, Slot, export_slots, load_slots
from archspec.weights import Weights

TARGET = "pytorch"
SKIPPED = ("num_batches_tracked",)


def slots(model: torch.nn.Module) -> dict[str, Slot]:
    out = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        if key.rsplit(".", 1)[-1] in SKIPPED:
            continue

        def write(value: np.ndarray, t: torch.Tensor = tensor) -> None:
            with torch.no_grad():
                t.copy_(torch.from_numpy(value))

        out[key] = Slot(tuple(tensor.shape), IDENTITY, lambda t=tensor: t.detach().cpu().numpy(), write)
    return out


def load_weights(model: torch.nn.Module, weights: Weights) -> None:
    load_slots(slots(model), weights, f"the PyTorch model {type(model).__name__}")


def export_weights(model: torch.nn.Module) -> Weights:
    return export_slots(slots(model))


def build(module: ModuleType, class_name: str, **kwargs: Any) -> torch.nn.Module:
    return getattr(module, class_name)(**kwargs).eval()


def param_counts(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    frozen += sum(b.numel() for n, b in model.named_buffers() if n.rsplit(".", 1)[-1] not in SKIPPED)
    return trainable, frozen


def device(model: torch.nn.Module) -> torch.device:
    """Where the model's tensors are (the CPU for a model without any)."""
    return next((t.device for t in itertools.chain(model.parameters(), model.buffers())), torch.device("cpu"))


def run(model: torch.nn.Module, x: np.ndarray) -> list[np.ndarray]:
    """Inference on the model's device; outputs back on the CPU."""
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device(model)))
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().cpu().numpy() for o in outs if o is not None]  # (None: a head switched off)


@contextlib.contextmanager
def softmax_bypassed() -> Iterator[None]:
    """``nn.Softmax`` (how the generated code applies softmax) as the identity."""
    forward = torch.nn.Softmax.forward
    torch.nn.Softmax.forward = lambda self, x: x
    try:
        yield
    finally:
        torch.nn.Softmax.forward = forward


def intermediates(model: torch.nn.Module, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run once and return the output of every named module (node and block
    paths), recorded by forward hooks; a module called more than once is left
    out (its output would be ambiguous)."""
    seen: dict[str, np.ndarray] = {}
    calls: dict[str, int] = {}

    def hook(path: str):
        def record(module, inputs, output) -> None:
            calls[path] = calls.get(path, 0) + 1
            if isinstance(output, torch.Tensor):
                seen[path] = output.detach().cpu().numpy().copy()

        return record

    handles = [m.register_forward_hook(hook(path)) for path, m in model.named_modules() if path]
    try:
        run(model, x)
    finally:
        for h in handles:
            h.remove()
    return {path: v for path, v in seen.items() if calls[path] == 1}
