"""The committed generated files read as their docstrings say (issue 12, rules 6
and 8): short class docstrings from the spec's description, headers that state
each target's real layout and output, names and numbers with their origin.
Fast: the files are parsed, never run."""

from __future__ import annotations

import ast
import math
import re
from functools import cache

import pytest

from archspec.codegen.common import LOGITS_DOC
from archspec.codegen.model import class_name
from archspec.pipeline import Compiled, compile_spec
from archspec.schema.spec import DESCRIPTION_CHARS
from tests.conftest import ROOT, SPECS

TARGETS = ("pytorch", "tensorflow", "keras", "chainer")
ZOO = sorted(p.stem for p in SPECS.glob("*.yaml"))
GENERATED = ROOT / "generated"


@cache
def compiled(name: str) -> Compiled:
    return compile_spec(SPECS / f"{name}.yaml")


@cache
def tree(name: str, target: str) -> ast.Module:
    return ast.parse((GENERATED / name / f"{name}_{target}.py").read_text())


def network_doc(name: str, target: str) -> str:
    """The docstring of the network class (Keras: the function that builds it)."""
    cls = class_name(name)
    for stmt in tree(name, target).body:
        if isinstance(stmt, (ast.ClassDef, ast.FunctionDef)) and stmt.name == cls:
            return ast.get_docstring(stmt) or ""
    raise AssertionError(f"{name}_{target}.py defines no {cls}")


def words(text: str) -> str:
    return " ".join(text.split())


READ = sorted([*SPECS.glob("*.yaml"), *GENERATED.glob("*/*.py"), *GENERATED.glob("*/*.md")])


@pytest.mark.parametrize("path", READ, ids=lambda p: p.name)
def test_no_quiz_internals(path):
    """Readers of a spec or a generated file cannot know what 'seed 000' is."""
    text = path.read_text()
    assert not re.search(r"\bseeds? \d|\bquiz", text, re.IGNORECASE)


@pytest.mark.parametrize("name", ZOO)
def test_every_network_has_a_short_description_as_its_class_docstring(name):
    spec = compiled(name).spec
    assert spec.description, f"specs/{name}.yaml has no description"
    assert len(words(spec.description)) <= DESCRIPTION_CHARS
    for target in TARGETS:
        doc = words(network_doc(name, target))
        assert doc.removesuffix(" " + LOGITS_DOC) == words(spec.description)
        assert words(spec.source) not in doc


@pytest.mark.parametrize("name", ZOO)
def test_module_docstrings_state_the_real_layout_and_output(name):
    graph = compiled(name).graph
    first, last = {1: ("(N, C)",) * 2, 2: ("NCL", "NLC"), 3: ("NCHW", "NHWC")}[len(graph.input_shape)]
    c, *rest = graph.input_shape
    for target in TARGETS:
        doc = words(ast.get_docstring(tree(name, target)))
        if target in ("tensorflow", "keras"):
            assert f"Input {(('N', *rest, c))}, channels last ({last})".replace("'", "") in doc
            assert "channels first" not in doc
        else:
            assert f"Input {(('N', c, *rest))}, channels first ({first})".replace("'", "") in doc
            assert "channels last" not in doc
        op = graph.node(graph.outputs[0]).op
        assert ("probabilities after a softmax" in doc) == (op == "softmax")
        # Logits come from a dense layer or a convolution; a pooled output (SqueezeNet's) is named as such.
        assert ("logits (no softmax)" in doc) == (op in ("dense", "conv2d", "conv1d"))
        assert (f"the output of a {op}" in doc) == (op not in ("softmax", "dense", "conv2d", "conv1d"))


@pytest.mark.parametrize("name", ZOO)
def test_batch_norm_statistics_only_where_there_is_batch_norm(name):
    has_bn = any(n.op == "batch_norm" for n in compiled(name).graph.nodes)
    for target in TARGETS:
        doc = ast.get_docstring(tree(name, target))
        assert ("batch-norm statistics" in words(doc)) == has_bn


def _flattens(name: str) -> list[tuple[int, ...]]:
    graph = compiled(name).graph
    shapes = [graph.shape_of(n.inputs[0]) for n in graph.nodes if n.op == "flatten"]
    return [s for s in shapes if math.prod(s) != s[0]]  # a (C, 1, 1) tensor is C long


@pytest.mark.parametrize("name", [n for n in ZOO if _flattens(n)])
def test_flatten_sizes_are_written_as_products_of_the_shape(name):
    """``256 * 6 * 6``, not ``9216``, wherever a target writes the size (Keras infers it)."""
    for shape in _flattens(name):
        product = " * ".join(map(str, shape))
        for target in ("pytorch", "tensorflow", "chainer"):
            source = (GENERATED / name / f"{name}_{target}.py").read_text()
            assert product in source, f"{name}_{target}.py: no {product}"
            consts = {n.value for n in ast.walk(tree(name, target)) if isinstance(n, ast.Constant)}
            assert math.prod(shape) not in consts, f"{name}_{target}.py writes {math.prod(shape)}"


def test_lrn_alpha_says_where_pytorchs_value_comes_from():
    """The spec's alpha is undivided (as TensorFlow and Chainer take it);
    PyTorch divides by size, so its line multiplies and says why."""
    source = (GENERATED / "alexnet" / "alexnet_pytorch.py").read_text()
    assert "nn.LocalResponseNorm(5, alpha=5 * 0.0001, k=2.0)  # PyTorch divides alpha by size" in source
    for target in ("tensorflow", "keras", "chainer"):
        source = (GENERATED / "alexnet" / f"alexnet_{target}.py").read_text()
        assert "alpha=0.0001" in source and "0.0005" not in source


def test_no_attribute_that_nothing_reads_in_separable_convolutions():
    """SeparableConv2d copies its depthwise geometry only for pad_same, which
    Xception's separable convolutions do not use."""
    source = (GENERATED / "xception" / "xception_pytorch.py").read_text()
    assert "class SeparableConv2d" in source
    assert "self.kernel_size" not in source


@pytest.mark.parametrize(
    ("names", "params"),
    [
        ("googlenet", {"ch1x1", "ch3x3red", "ch3x3", "ch5x5red", "ch5x5", "pool_proj"}),
        ("inception_v3", {"channels_7x7"}),
        ("mobilenet_v2", {"expand_ratio"}),
        ("efficientnet_b0", {"expand_ratio"}),
    ],
)
def test_block_parameters_are_named_as_the_anchors_name_them(names, params):
    spec = compiled(names).spec
    assert params <= {p for b in spec.blocks.values() for p in b.params}


@pytest.mark.parametrize("target", TARGETS)
def test_the_network_forward_shows_its_shapes_in_the_target_layout(target):
    """torchvision's ``# N x 2048 x 7 x 7`` where the shape changes, channels
    last in Keras and TensorFlow; block classes (whose shapes vary) have none."""
    source = (GENERATED / "resnet50" / f"resnet50_{target}.py").read_text()
    last = target in ("tensorflow", "keras")
    assert ("# N x 7 x 7 x 2048" if last else "# N x 2048 x 7 x 7") in source
    assert ("# N x 224 x 224 x 3" if last else "# N x 3 x 224 x 224") in source
    assert "# N x 1000\n" in source
    block = (source.split("class Bottleneck", 1) + [""])[1].split("class ResNet50", 1)[0]
    block = block or source.split("def bottleneck", 1)[1].split("def ResNet50", 1)[0]
    assert "# N x" not in block


@pytest.mark.parametrize("target", TARGETS)
def test_no_choice_repeats_the_test_that_guards_it(target):
    """``(a if c else b) if c else None`` reads as ``a if c else None``: inside a
    conditional, the same test is already decided (EfficientNetV2's project)."""
    repeated = []
    for name in ZOO:
        for node in ast.walk(tree(name, target)):
            if isinstance(node, ast.IfExp):
                test = ast.dump(node.test)
                inner = [n for branch in (node.body, node.orelse) for n in ast.walk(branch) if isinstance(n, ast.IfExp)]
                repeated += [f"{name}: {ast.unparse(node)}" for n in inner if ast.dump(n.test) == test]
    assert not repeated, "\n".join(repeated)
