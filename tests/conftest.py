"""Shared fixtures for the test suite."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
SPEC_NAMES = sorted(p.stem for p in SPECS.glob("*.yaml"))


def load_generated(name: str, target: str, root: Path = ROOT / "generated") -> ModuleType:
    """Import generated/<name>/<name>_<target>.py (or the same file under ``root``)."""
    path = root / name / f"{name}_{target}.py"
    assert path.is_file(), f"{path} is missing: run `archspec build`"
    module_name = f"generated_{name}_{target}" if root == ROOT / "generated" else f"sampler_{name}_{target}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def called_instances(compiled) -> dict[str, tuple[int, ...]]:
    """Path -> output shape of every block instance and stage that generated
    code calls as one module (the shape of its first output). A stage of a
    block with several outputs is not one: forward runs its units one by one."""
    blocks = compiled.spec.blocks
    return {
        inst.path: inst.shape
        for inst in compiled.graph.instances
        if not (inst.units and len(blocks[inst.block].output_names()) > 1)
    }


def channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A channels-first per-sample shape as the NHWC targets see it."""
    return (*shape[1:], shape[0])


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec text to a file and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def pytest_addoption(parser):
    parser.addoption(
        "--update-corpus",
        action="store_true",
        default=False,
        help="rewrite tests/corpus/*.expected from the current diagnostics (review the diff before committing)",
    )
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/*.dot from the current diagrams (review the diff before committing)",
    )
