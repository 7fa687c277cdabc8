"""Generated PyTorch and Chainer code pads as a hand-writer would (issue 12, rule 4),
and PyTorch activations work in place where that is safe, as torchvision's do.

A convolution whose padding is symmetric, or that has a 1x1 kernel, in every
instance takes it as its own ``padding=``/``pad=`` (or none); only padding
that is asymmetric or depends on the input size goes to a padding module
(``Conv2dSame``), and a block's or network's forward never pads itself:
it stays ``x = self.conv(x)``.
"""

from __future__ import annotations

import ast
import re

import pytest

from archspec.codegen import chainer as chainer_emitter
from archspec.codegen import common
from archspec.codegen import pytorch as pytorch_emitter
from archspec.codegen.model import build
from archspec.pipeline import compile_spec
from tests.conftest import ROOT, SPEC_NAMES, SPECS, load_generated

TARGETS = ("pytorch", "chainer")
CONVS = ("conv2d", "depthwise_conv2d", "conv1d", "separable_conv2d")
# Base classes of the generated blocks and networks (helpers subclass layers);
# a sequential block is a container of unnamed layers.
NETWORK_BASES = {"pytorch": ("nn.Module", "nn.Sequential"), "chainer": ("chainer.Chain", "chainer.ChainList")}
PLAIN = {"pytorch": r"(nn\.Conv[12]d|SeparableConv2d)", "chainer": r"(L\.Convolution[12]D|SeparableConvolution2D)"}


def generated(name: str, target: str) -> ast.Module:
    return ast.parse((ROOT / "generated" / name / f"{name}_{target}.py").read_text())


def network_classes(tree: ast.Module, target: str) -> list[ast.ClassDef]:
    return [
        c
        for c in tree.body
        if isinstance(c, ast.ClassDef) and len(c.bases) == 1 and ast.unparse(c.bases[0]) in NETWORK_BASES[target]
    ]


def method(cls: ast.ClassDef, name: str) -> ast.FunctionDef:
    return next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == name)


def layer_ctor(init: ast.FunctionDef, unit, step) -> str | None:
    """The class a step's layer is built with: ``self.NAME = CLASS(...)``, or in a
    sequential block the step's position among the arguments of ``super().__init__``."""
    if not unit.sequential:
        ctor = re.search(rf"self\.{step.name} = (\w+(\.\w+)?)\(", ast.unparse(init))
        return ctor.group(1) if ctor else None
    calls = [n for n in ast.walk(init) if isinstance(n, ast.Call) and ast.unparse(n.func) == "super().__init__"]
    return ast.unparse(calls[0].args[int(step.name)].func) if calls else None


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", SPEC_NAMES)
def test_forward_calls_no_padding_function(name: str, target: str) -> None:
    for cls in network_classes(generated(name, target), target):
        if not any(isinstance(f, ast.FunctionDef) and f.name == "forward" for f in cls.body):
            continue  # an nn.Sequential: its layers' own forward
        for node in ast.walk(method(cls, "forward")):
            if isinstance(node, ast.Call):
                func = ast.unparse(node.func)
                assert "pad" not in func.lower(), f"{name} {target}: {cls.name}.forward calls {func}"


def symmetric_everywhere(step, found) -> bool:
    """Every instance pads each axis alike on both sides (1x1: not at all)."""
    for _, node in found:
        sides = node.attrs["padding"]
        if any(sides[k] != sides[k + 1] for k in range(0, len(sides), 2)):
            return False
    return True


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", SPEC_NAMES)
def test_symmetric_and_1x1_convolutions_take_plain_layers(name: str, target: str) -> None:
    """A convolution symmetric (1x1 included) in every instance is the framework's
    own layer with static padding, never a padding module."""
    model = build(compile_spec(SPECS / f"{name}.yaml"))
    nodes = {n.path: n for n in model.compiled.graph.nodes}
    classes = {c.name: c for c in network_classes(generated(name, target), target)}
    for unit in model.units:
        init = method(classes[unit.class_name], "__init__")
        for step in unit.steps:
            if step.op not in CONVS or not symmetric_everywhere(step, common.instances(model, unit, step, nodes)):
                continue
            ctor = layer_ctor(init, unit, step)
            assert ctor, f"{name} {target}: {unit.class_name}.{step.name} not built in __init__"
            assert re.fullmatch(PLAIN[target], ctor), f"{name} {target}: {unit.class_name}.{step.name}"


SAME_KERNELS = """
name: kernels
source: test
input: [3, 16, 16]
blocks:
  unit:
    params:
      kernel: int
      dilation: {type: int, default: 1}
    nodes:
      - conv: {op: conv2d, out: 4, kernel: kernel, dilation: dilation, padding: same}
      - dw: {op: depthwise_conv2d, kernel: kernel, padding: same}
layers:
  - a: {block: unit, kernel: 3}
  - b: {block: unit, kernel: 5, dilation: 2}
  - c: {block: unit, kernel: 1}
  - pool: {op: global_avg_pool}
"""


def test_per_instance_same_padding_is_one_verified_expression(tmp_path) -> None:
    """'same' at stride 1 that differs between instances is ``padding=`` one expression."""
    (tmp_path / "kernels.yaml").write_text(SAME_KERNELS)
    model = build(compile_spec(tmp_path / "kernels.yaml"))
    torch_src = pytorch_emitter.emit(model)
    chainer_src = chainer_emitter.emit(model)
    assert "nn.Conv2d(in_channels, 4, kernel, padding=(kernel - 1) * dilation // 2, dilation=dilation)" in torch_src
    assert "padding=kernel // 2" in torch_src  # the depthwise convolution, never dilated
    assert "pad=(kernel - 1) * dilation // 2" in chainer_src
    for src in (torch_src, chainer_src):
        assert "Same" not in src and "pad_same" not in src


@pytest.mark.slow
def test_same_module_pads_only_where_the_size_matters() -> None:
    """Conv2dSame at 1x1 or stride 1 pads as the plain layer (no pad in forward);
    at stride 2 it pads the input, the odd pixel at the end (TensorFlow's rule)."""
    torch = pytest.importorskip("torch")
    module = load_generated("mobilenet_v2", "pytorch")
    one = module.Conv2dSame(4, 4, 1, stride=2)
    three = module.Conv2dSame(4, 4, 3)
    strided = module.Conv2dSame(4, 4, 3, stride=2, bias=False)
    assert (one.pad_input, three.pad_input, three.padding, strided.pad_input) == (False, False, (1, 1), True)
    x = torch.randn(1, 4, 8, 8)
    plain = torch.nn.Conv2d(4, 4, 3, stride=2, bias=False)
    plain.load_state_dict(strided.state_dict())
    assert torch.equal(strided(x), plain(torch.nn.functional.pad(x, (0, 1, 0, 1))))


INPLACE = """
name: inplace
source: test
input: [3, 8, 8]
layers:
  - conv: {op: conv2d, out: 4, kernel: 3, padding: 1}
  - bn: {op: batch_norm}
  - relu: {op: relu}
  - conv2: {op: conv2d, out: 4, kernel: 3, padding: 1}
  - relu2: {op: relu}
  - add: {op: add, in: [relu2, conv2]}
  - relu3: {op: relu6, in: input}
  - pool: {op: global_avg_pool, in: add}
"""


def test_activations_overwrite_only_tensors_nobody_else_reads(tmp_path) -> None:
    """``inplace=True`` (as torchvision) where the activation's input is a fresh
    tensor that only it reads: not where the value is read again (conv2, by add)
    or is the network's input."""
    (tmp_path / "inplace.yaml").write_text(INPLACE)
    model = build(compile_spec(tmp_path / "inplace.yaml"))
    assert pytorch_emitter.inplace_steps(model.model) == {"relu"}
    src = pytorch_emitter.emit(model)
    assert "self.relu = nn.ReLU(inplace=True)" in src
    assert "self.relu2 = nn.ReLU()" in src and "self.relu3 = nn.ReLU6()" in src
