"""The style of the committed TensorFlow files (issue 12), checked on their syntax
trees without TensorFlow: each file defines only what it uses, takes `training` only
where it reads it, runs no loop of one iteration, and writes "SAME" where it can."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

FILES = sorted((ROOT / "generated").glob("*/*_tensorflow.py"))
LAYERS = {"Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv1D", "Dense", "BatchNorm", "LayerNorm", "InstanceNorm"}


def unused_training(tree: ast.Module) -> list[str]:
    """Functions that take `training` and never read it."""
    out = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef) or "training" not in [a.arg for a in fn.args.args + fn.args.kwonlyargs]:
            continue
        if not any(isinstance(n, ast.Name) and n.id == "training" for n in ast.walk(fn)):
            out.append(fn.name)
    return out


def unused_definitions(tree: ast.Module) -> list[str]:
    """Top-level classes and functions that nothing else in the file names (the
    network, the last class, is what the file is for)."""
    defs = [s for s in tree.body if isinstance(s, (ast.ClassDef, ast.FunctionDef))]
    network = [s for s in defs if isinstance(s, ast.ClassDef)][-1].name
    out = []
    for d in defs:
        others = [s for s in defs if s is not d]
        used = any(isinstance(n, ast.Name) and n.id == d.name for s in others for n in ast.walk(s))
        if not used and d.name != network:
            out.append(d.name)
    return out


def unused_layer_arguments(tree: ast.Module) -> list[str]:
    """Optional arguments of the layer classes (stride, padding, groups, bias...) that no
    call in the file passes; normalization's keyword-only eps and decay state the file's
    values, so calls may leave them all out."""
    classes = {s.name: s for s in tree.body if isinstance(s, ast.ClassDef) and s.name in LAYERS}
    passed: dict[str, set[str]] = {name: set() for name in classes}
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in classes:
            passed[n.func.id] |= {k.arg for k in n.keywords if k.arg}
    out = []
    for name, cls in classes.items():
        init = next(s for s in cls.body if isinstance(s, ast.FunctionDef) and s.name == "__init__")
        args = init.args
        optional = [a.arg for a in args.args[len(args.args) - len(args.defaults) :]]
        out += [f"{name}.{a}" for a in optional if a not in passed[name]]
    return out


def one_iteration_loops(tree: ast.Module) -> list[int]:
    """Lines of `for` loops over range(1), or over a list or tuple of one item
    (written in the loop or bound to a name just before, as a settings table)."""
    literals: dict[str, int] = {}
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Assign) and isinstance(n.value, (ast.List, ast.Tuple)):
            for t in n.targets:
                if isinstance(t, ast.Name):
                    literals[t.id] = len(n.value.elts)
    for n in ast.walk(tree):
        if not isinstance(n, (ast.For, ast.comprehension)):
            continue
        it = n.iter
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "enumerate":
            it = it.args[0]
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range":
            items = it.args[0].value if len(it.args) == 1 and isinstance(it.args[0], ast.Constant) else None
        elif isinstance(it, (ast.List, ast.Tuple)):
            items = len(it.elts)
        else:
            items = literals.get(it.id) if isinstance(it, ast.Name) else None
        if items == 1:
            out.append(it.lineno)
    return out


BAD = """
import tensorflow as tf


def pair(value):
    return value


class Dense(tf.Module):
    def __init__(self, n: int, bias: bool = True, *, name: str) -> None:
        super().__init__()

    def __call__(self, x, training: bool = False):
        return x


class Net(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = Dense(3, name="fc")
        settings = [(1, 2)]
        for a, b in settings:
            pass
        for i in range(1):
            pass

    def __call__(self, x, training: bool = False):
        return self.fc(x) if training else x
"""


def test_the_checks_find_what_they_look_for():
    tree = ast.parse(BAD)
    assert unused_training(tree) == ["__call__"]  # Dense's; Net's reads it
    assert unused_definitions(tree) == ["pair"]
    assert unused_layer_arguments(tree) == ["Dense.bias"]
    assert one_iteration_loops(tree) == [22, 24]


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


@pytest.mark.parametrize("path", FILES, ids=[p.parent.name for p in FILES])
def test_generated_tensorflow_style(path):
    tree = _tree(path)
    assert unused_training(tree) == [], "takes training and never reads it"
    assert unused_definitions(tree) == [], "defined and never used"
    assert unused_layer_arguments(tree) == [], "a layer argument no call passes"
    assert one_iteration_loops(tree) == [], "a loop of one iteration"


def test_the_zoo_is_checked():
    assert len(FILES) >= 30


def test_normalization_calls_leave_out_the_default():
    """BatchNorm's eps and decay default to the file's most used values, which no call repeats."""
    for path in FILES:
        tree = _tree(path)
        cls = next((s for s in tree.body if isinstance(s, ast.ClassDef) and s.name == "BatchNorm"), None)
        if cls is None:
            continue
        init = next(s for s in cls.body if isinstance(s, ast.FunctionDef) and s.name == "__init__")
        defaults = {
            a.arg: ast.literal_eval(d) for a, d in zip(init.args.kwonlyargs, init.args.kw_defaults) if d is not None
        }
        assert set(defaults) == {"eps", "decay"}, path.name
        for n in ast.walk(tree):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "BatchNorm":
                for k in n.keywords:
                    if k.arg in defaults and isinstance(k.value, ast.Constant):
                        assert k.value.value != defaults[k.arg], f"{path.name}: BatchNorm repeats {k.arg}"


def test_same_padding_where_tensorflows_rule_gives_the_pads():
    """googlenet's max-pools pad (0, 1) at stride 2 on even sizes, which is "SAME"; resnet50's
    stem pool pads (1, 1) there, which is not, and stays explicit."""
    googlenet = (ROOT / "generated/googlenet/googlenet_tensorflow.py").read_text()
    assert "[[0, 0], [0, 1], [0, 1], [0, 0]]" not in googlenet
    assert googlenet.count('tf.nn.max_pool2d(x, 3, 2, "SAME")') >= 3
    assert 'tf.nn.max_pool2d(x, 3, 1, "SAME")' in googlenet  # stride 1: "SAME" at any size
    resnet = (ROOT / "generated/resnet50/resnet50_tensorflow.py").read_text()
    assert "tf.nn.max_pool2d(x, 3, 2, [[0, 0], [1, 1], [1, 1], [0, 0]])" in resnet


def test_stages_of_numbers_are_a_table():
    """efficientnet_b0's seven stages: one settings table, one loop, one call line each."""
    text = (ROOT / "generated/efficientnet_b0/efficientnet_b0_tensorflow.py").read_text()
    assert text.count("make_stage(") == 2  # the definition and the loop's call
    assert "# in_channels, units, expand_ratio, kernel, out; stride of the first unit" in text
    for i in range(1, 8):
        assert f"x = self.stage{i}(x, training=training)" in text
