"""Reference models ("twins") from torchvision, imported safely.

PyPI's torchvision wheel links its C++ operators against the CUDA build of
torch, so beside the CPU torch ``import torchvision`` fails with "operator
torchvision::nms does not exist" (and so does ``import timm``). The model
code is pure Python: declaring the two operator schemas it registers
abstract implementations for (``nms`` and ``qnms``) before the import is
enough for every classification model. Nothing here downloads anything:
build models with ``weights=None``.
"""

from __future__ import annotations

from types import ModuleType

# The schemas torchvision's Python code expects its C++ library to have defined.
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_LIBRARY = []  # keeps the defining library alive: its definitions die with it


class ReferenceUnavailable(Exception):
    """torchvision cannot be imported here; the message says why."""


def torchvision() -> ModuleType:
    """``import torchvision``, declaring its operator schemas first where its
    C++ library did not (a CPU torch beside a wheel built for CUDA torch)."""
    try:
        import torch
    except ImportError as exc:
        raise ReferenceUnavailable(f"torchvision needs torch, which is not installed ({exc})") from None
    if not _declared(torch):
        lib = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS:
            lib.define(schema)
        _LIBRARY.append(lib)
    try:
        import torchvision as module
    except ImportError as exc:
        raise ReferenceUnavailable(f"torchvision is not installed ({exc}); pip install archspec[reference]") from None
    return module


def _declared(torch: ModuleType) -> bool:
    """Whether a ``torchvision::nms`` schema exists already (this process declared
    it, or torchvision imported with its C++ library)."""
    try:
        torch._C._dispatch_find_schema_or_throw("torchvision::nms", "")
    except RuntimeError:
        return False
    return True
