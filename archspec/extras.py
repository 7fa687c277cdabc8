"""Which optional packages each extra of ``pip install 'archspec[...]'`` brings.

``pip install archspec`` installs what reads specs and writes code, tables and
diagrams; whatever runs a network is an extra (pyproject.toml). A command that
needs one calls :func:`require` before importing anything from it, and the
command line turns :class:`MissingExtra` into one line saying what to install.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Extra:
    """An extra: what to call it in a message, and the top-level modules it provides."""

    title: str
    modules: tuple[str, ...]


EXTRAS: dict[str, Extra] = {
    "pytorch": Extra("PyTorch", ("numpy", "torch")),
    "tensorflow": Extra("TensorFlow", ("numpy", "tensorflow")),
    "keras": Extra("Keras", ("numpy", "tensorflow", "keras")),
    "chainer": Extra("Chainer", ("numpy", "pkg_resources", "chainer")),
    "train": Extra("the training tools", ("numpy", "PIL", "sklearn", "matplotlib", "tqdm")),
    "distributed": Extra("mpi4py", ("mpi4py",)),
    "onnx": Extra("ONNX", ("numpy", "torch", "onnx", "onnxscript", "onnxruntime")),
    "gallery": Extra("Pygments", ("pygments",)),
    "reference": Extra("torchvision and timm", ("numpy", "torch", "torchvision", "timm")),
}


class MissingExtra(Exception):
    """``command`` needs ``extras``, which are not (all) installed; ``modules``: the absent ones."""

    def __init__(self, command: str, extras: list[str], modules: list[str]) -> None:
        self.command, self.extras, self.modules = command, extras, modules
        titles = [EXTRAS[e].title for e in extras]
        needs = titles[0] if len(titles) == 1 else f"{', '.join(titles[:-1])} and {titles[-1]}"
        super().__init__(
            f"{command} needs {needs}: pip install 'archspec[{','.join(extras)}]' (not installed: {', '.join(modules)})"
        )


def installed(module: str) -> bool:
    """Whether a top-level module can be imported (found, not imported)."""
    return importlib.util.find_spec(module) is not None


def require(command: str, *extras: str) -> None:
    """Raise :class:`MissingExtra` naming every extra among ``extras`` that lacks a module."""
    wanted = list(dict.fromkeys(extras))
    absent = {e: [m for m in EXTRAS[e].modules if not installed(m)] for e in wanted}
    lacking = [e for e in wanted if absent[e]]
    if lacking:
        raise MissingExtra(command, lacking, list(dict.fromkeys(m for e in lacking for m in absent[e])))


def from_import_error(command: str, exc: ModuleNotFoundError) -> MissingExtra | None:
    """The extra to install when ``exc`` says that one of the extras' modules is
    absent (the first extra that provides it); None for any other module."""
    top = (exc.name or "").partition(".")[0]
    if not top or installed(top):
        return None
    extra = next((name for name, e in EXTRAS.items() if top in e.modules), None)
    return MissingExtra(command, [extra], [top]) if extra else None
