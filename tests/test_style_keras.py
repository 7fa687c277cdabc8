"""The generated Keras code reads as hand-written Keras (issue 12, rules 4 and 5):
padding="same" wherever the pads are Keras' "same", zero padding before a
max pool whose input cannot be negative (a -inf pad layer only where it can),
no one-iteration loop, and one loop over a settings table for consecutive
stages of one block. Static checks of the committed files and of small specs."""

from __future__ import annotations

import ast
import builtins
import re

import pytest

from archspec.codegen import EMITTERS
from archspec.codegen.keras import nonnegative_nodes
from archspec.codegen.model import build
from archspec.pipeline import compile_spec
from tests.conftest import ROOT

KERAS_FILES = sorted((ROOT / "generated").glob("*/*_keras.py"))


def keras_source(path) -> str:
    return EMITTERS["keras"](build(compile_spec(path)))


def calls_of(tree: ast.AST, func: str) -> list[ast.Call]:
    """Calls of ``func`` or ``layers.func``."""
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and (getattr(n.func, "id", None) == func or getattr(n.func, "attr", None) == func)
    ]


def padding_of(call: ast.Call) -> str | None:
    return next((ast.literal_eval(k.value) for k in call.keywords if k.arg == "padding"), None)


@pytest.mark.parametrize("path", KERAS_FILES, ids=lambda p: p.name)
def test_no_one_iteration_loop_and_no_unused_helper_layer(path):
    tree = ast.parse(path.read_text())
    for loop in (n for n in ast.walk(tree) if isinstance(n, ast.For)):
        it = loop.iter
        one = (
            isinstance(it, ast.Call)
            and getattr(it.func, "id", None) == "range"
            and [ast.dump(a) for a in it.args] == [ast.dump(ast.Constant(1))]
        )
        assert not one, f"{path.name}:{loop.lineno}: a loop of one iteration"
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    for name in classes:
        assert calls_of(tree, name), f"{path.name} defines {name} and never uses it"


def test_a_same_network_says_same():
    """mobilenet_v2's convolutions pad 'same' (at stride 2 too) and say so,
    with no pad layer; googlenet's max pools, whose pads are what Keras' 'same'
    gives on their input, say padding="same" instead of padding by hand."""
    tree = ast.parse((ROOT / "generated/mobilenet_v2/mobilenet_v2_keras.py").read_text())
    convs = calls_of(tree, "Conv2D") + calls_of(tree, "DepthwiseConv2D")
    windows = [c for c in convs if not (isinstance(c.args[-1], ast.Constant) and c.args[-1].value == 1)]
    assert windows and all(padding_of(c) == "same" for c in windows)
    assert not calls_of(tree, "ZeroPadding2D")
    text = (ROOT / "generated/googlenet/googlenet_keras.py").read_text()
    pools = calls_of(ast.parse(text), "MaxPooling2D")
    assert len(pools) >= 5 and all(padding_of(p) == "same" for p in pools)
    assert not re.search(r"maxpool\d\.pad", text) and "NegInfPadding2D" not in text


def test_explicit_pads_that_are_same_on_the_input(write_spec):
    """Pads written as numbers are padding="same" when they are what Keras'
    'same' gives on that layer's input: (0, 1) at stride 2 on an even input,
    (1, 1) on an odd one; (1, 1) on an even input at stride 2 is not."""
    text = keras_source(
        write_spec(
            "name: pads\nsource: test\ninput: [3, 9, 9]\nlayers:\n"
            "  - odd: {op: conv2d, out: 4, kernel: 3, stride: 2, padding: 1}\n"
            "  - shrink: {op: conv2d, in: input, out: 4, kernel: 2}\n"
            "  - even: {op: conv2d, out: 4, kernel: 3, stride: 2, padding: [0, 1, 0, 1]}\n"
            "  - sym: {op: conv2d, in: shrink, out: 4, kernel: 3, stride: 2, padding: 1}\n"
            "  - a: {op: global_avg_pool, in: odd}\n"
            "  - b: {op: global_avg_pool, in: even}\n"
            "  - c: {op: global_avg_pool, in: sym}\n"
            "  - abc: {op: concat, in: [a, b, c]}\n"
        )
    )
    assert 'layers.Conv2D(4, 3, strides=2, padding="same", name="odd")(x)' in text
    assert 'layers.Conv2D(4, 3, strides=2, padding="same", name="even")(shrink)' in text
    assert 'layers.ZeroPadding2D(1, name="sym.pad")' in text


def test_max_pool_pads_with_zeros_only_after_a_non_negative_op(write_spec):
    """A max pool after a ReLU (also through a concat of ReLUs, an LRN, a
    block that ends in one) pads with ZeroPadding2D, as keras' resnet; after a
    batch norm, or a concat with one input that can be negative, with -inf."""
    path = write_spec(
        "name: pools\nsource: test\ninput: [3, 8, 8]\nblocks:\n"
        "  conv_relu:\n    nodes:\n      - conv: {op: conv2d, out: 4, kernel: 1}\n      - relu: {op: relu}\n"
        "layers:\n"
        "  - stem: {block: conv_relu}\n"
        "  - lrn: {op: lrn, size: 3}\n"
        "  - p1: {op: max_pool2d, kernel: 3, stride: 2, padding: 1}\n"
        "  - bn: {op: batch_norm}\n"
        "  - relu: {op: relu}\n"
        "  - both: {op: concat, in: [relu, p1]}\n"
        "  - p2: {op: max_pool2d, kernel: 3, stride: 2, padding: 1}\n"
        "  - mixed: {op: concat, in: [bn, p1]}\n"
        "  - p3: {op: max_pool2d, kernel: 3, stride: 2, padding: 1}\n"
        "  - gap: {op: global_avg_pool}\n"
    )
    compiled = compile_spec(path)
    assert nonnegative_nodes(compiled.graph) >= {"stem.relu", "lrn", "p1", "relu", "both", "p2"}
    assert not nonnegative_nodes(compiled.graph) & {"bn", "mixed", "p3", "stem.conv"}
    text = keras_source(path)
    assert 'ZeroPadding2D(1, name="p1.pad")' in text and 'ZeroPadding2D(1, name="p2.pad")' in text
    assert 'NegInfPadding2D(1, name="p3.pad")' in text and text.count("class NegInfPadding2D") == 1


def test_consecutive_stages_are_one_loop_over_a_table():
    """mobilenet_v2 and efficientnet_b0 write their seven stages as a table
    with a comment naming its columns and one loop; efficientnet's unit count
    keeps its depth multiplier in the loop and the base count in the table."""
    text = (ROOT / "generated/mobilenet_v2/mobilenet_v2_keras.py").read_text()
    assert "# stage, expand_ratio, out, n, stride (n units; stride: the first unit's, then 1)" in text
    assert '("stage2", 6, 24, 2, 2),' in text and '("stage7", 6, 320, 1, 1),' in text
    assert text.count("for i in range(") == 1
    # the width multiplier stays in the loop, the table keeps the base widths
    assert "out=make_divisible(int(out * alpha), 8)," in text and "stride=stride if i == 0 else 1," in text
    text = (ROOT / "generated/efficientnet_b0/efficientnet_b0_keras.py").read_text()
    assert text.count("for i in range(") == 1 and "for i in range(math.ceil(n * depth_mult)):" in text
    assert '("stage6", 6, 5, 192, 4, 2),' in text


def test_a_lone_one_unit_stage_is_one_call(write_spec):
    """A stage of one unit is called once, under its unit's name (``s.0``,
    the weight names), with the first unit's arguments."""
    text = keras_source(
        write_spec(
            "name: one\nsource: test\ninput: [3, 8, 8]\nblocks:\n"
            "  b:\n    params: {stride: {type: int, default: 1}}\n"
            "    nodes:\n      - conv: {op: conv2d, out: 4, kernel: 1, stride: stride}\n"
            "layers:\n  - s: {block: b, repeat: 1, first: {stride: 2}}\n  - gap: {op: global_avg_pool}\n"
        )
    )
    assert 'x = b(x, stride=2, name="s.0")' in text and "for i in" not in text


def test_stages_whose_later_units_differ_stay_separate_loops(write_spec):
    """A first-unit override whose value for the later units differs between
    the stages (1 in one, 2 in the other) is no table column: each stage keeps
    its own loop, each unit its own name."""
    text = keras_source(
        write_spec(
            "name: two\nsource: test\ninput: [3, 32, 32]\nblocks:\n"
            "  b:\n    params: {stride: {type: int, default: 1}}\n"
            "    nodes:\n      - conv: {op: conv2d, out: 4, kernel: 1, stride: stride}\n"
            "layers:\n"
            "  - s1: {block: b, repeat: 2, first: {stride: 2}}\n"
            "  - s2: {block: b, repeat: 2, stride: 2, first: {stride: 1}}\n"
            "  - gap: {op: global_avg_pool}\n"
        )
    )
    assert "stages = [" not in text
    assert 'x = b(x, stride=2 if i == 0 else 1, name=f"s1.{i}")' in text
    assert 'x = b(x, stride=1 if i == 0 else 2, name=f"s2.{i}")' in text


def test_a_block_named_like_a_builtin_does_not_hide_it(write_spec):
    """A block named ``range`` is the function ``range_block``: the stage loop
    still calls Python's range (the file runs; see also verify's zoo tests)."""
    text = keras_source(
        write_spec(
            "name: builtin\nsource: test\ninput: [3, 8, 8]\nblocks:\n"
            "  range:\n    nodes:\n      - conv: {op: conv2d, out: 4, kernel: 1}\n"
            "layers:\n  - s: {block: range, repeat: 2}\n  - gap: {op: global_avg_pool}\n"
        )
    )
    defined = {n.name for n in ast.parse(text).body if isinstance(n, ast.FunctionDef)}
    assert "range_block" in defined and "range" not in defined
    assert "for i in range(2):" in text
    assert not defined & set(dir(builtins))
