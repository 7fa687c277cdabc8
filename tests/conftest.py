"""Shared fixtures for the test suite."""

from __future__ import annotations

import importlib.util
import re
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

from archspec.codegen import EMITTERS
from archspec.codegen.model import CodegenError
from archspec.codegen.model import build as build_model
from archspec.diagnostics import SpecError
from archspec.pipeline import Compiled, compile_spec

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


def _code_with_numbers_masked(compiled: Compiled) -> list[str]:
    """The four targets' code with every number (and line break) made the same."""
    model = build_model(compiled)
    return [" ".join(re.sub(r"\d+(?:,\d{3})*", "0", emit(model)).split()) for emit in EMITTERS.values()]


@cache
def cheap_input(name: str) -> tuple[int, ...]:
    """The smallest square input from 32 up (in steps of 8) at which the spec's
    code, in every target, is the code of its own input with other numbers: the
    same layers, paddings and flattens, only smaller maps. The spec's own input
    where there is none (a fixed-size pool at the end) and for sequences (a
    shorter one would leave the long dilations reading only padding)."""
    default = compile_spec(SPECS / f"{name}.yaml")
    shape = default.graph.input_shape
    if len(shape) != 3:
        return shape
    want = _code_with_numbers_masked(default)
    for size in range(32, min(shape[1:]), 8):
        try:
            smaller = compile_spec(SPECS / f"{name}.yaml", input_shape=(shape[0], size, size))
            if _code_with_numbers_masked(smaller) == want:
                return smaller.graph.input_shape
        except (SpecError, CodegenError):
            continue
    return shape


@cache
def train_input(name: str) -> tuple[int, ...]:
    """The smallest input from :func:`cheap_input` up (in steps of 8, the same code
    with other numbers) at which every batch norm normalizes maps of 2x2 or more:
    on 1x1 maps a batch of 4 gives it four values per channel, and training amplifies
    float32 rounding past verify --train's tolerance (see tests/test_zoo_train.py)."""
    shape = cheap_input(name)
    if len(shape) != 3:
        return shape
    want = _code_with_numbers_masked(compile_spec(SPECS / f"{name}.yaml"))
    for size in range(shape[1], 225, 8):
        compiled = compile_spec(SPECS / f"{name}.yaml", input_shape=(shape[0], size, size))
        maps = [n.in_shapes[0][1:] for n in compiled.graph.nodes if n.op == "batch_norm"]
        if all(h * w >= 4 for h, w in maps) and _code_with_numbers_masked(compiled) == want:
            return compiled.graph.input_shape
    return shape


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
