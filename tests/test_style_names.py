"""Variables in generated code are named by branch and by role (issue 12, rule 1).

Checked on every committed file in generated/: the main path keeps one running
variable, a branch keeps one variable named after the branch, side outputs get
names of their own, and no call passes a tensor under the name of one of its
keyword arguments.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from archspec.codegen.model import _shared_prefix

GENERATED = Path(__file__).resolve().parent.parent / "generated"
FILES = sorted(GENERATED.glob("*/*.py"))
PYTORCH = [f for f in FILES if f.name.endswith("_pytorch.py")]
# The running variables of the main path (and of a chain whose steps share no name).
GENERIC = {"x", "out", "y", "h", "z"}


def forward_assignments(path: Path) -> list[tuple[str, str, str]]:
    """(class, variable, attribute) for each ``v = self.attr(...)`` in a forward."""
    out = []
    for cls in ast.parse(path.read_text()).body:
        if not isinstance(cls, ast.ClassDef):
            continue
        for fn in cls.body:
            if not (isinstance(fn, ast.FunctionDef) and fn.name == "forward"):
                continue
            for node in ast.walk(fn):
                if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
                    continue
                target, value = node.targets[0], node.value
                if isinstance(value, ast.IfExp):
                    value = value.body
                if (
                    isinstance(target, ast.Name)
                    and isinstance(value, ast.Call)
                    and isinstance(value.func, ast.Attribute)
                    and isinstance(value.func.value, ast.Name)
                    and value.func.value.id == "self"
                ):
                    out.append((cls.name, target.id, value.func.attr))
    return out


@pytest.mark.parametrize("path", PYTORCH, ids=lambda p: p.name)
def test_a_named_variable_holds_its_own_branch(path: Path) -> None:
    """A variable that is not the running one is named after the steps that
    write it: ``branch3x3dbl = self.branch3x3dbl_2(...)``, never ``bn3 = ...``
    followed by ``out = bn3 + ...`` or one name for unrelated tensors."""
    for cls, var, attr in forward_assignments(path):
        if var.rstrip("_") in GENERIC:
            continue
        assert attr.startswith(var.rstrip("_")), f"{path.name}: {cls}.forward writes self.{attr}(...) into {var}"


def test_branches_and_main_path_as_torchvision_writes_them() -> None:
    inception = (GENERATED / "inception_v3" / "inception_v3_pytorch.py").read_text()
    for line in (
        "branch3x3dbl = self.branch3x3dbl_1(x)",
        "branch3x3dbl = self.branch3x3dbl_2(branch3x3dbl)",
        "branch3x3dbl = self.branch3x3dbl_3(branch3x3dbl)",
        "x = torch.cat([branch1x1, branch5x5, branch3x3dbl, branch_pool], dim=1)",
    ):
        assert line in inception
    googlenet = (GENERATED / "googlenet" / "googlenet_pytorch.py").read_text()
    # The auxiliary heads read the main path without interrupting it.
    assert "aux1 = self.aux1(x) if self.aux1 is not None else None\n        x = self.inception4b(x)" in googlenet
    resnet = (GENERATED / "resnet50" / "resnet50_pytorch.py").read_text()
    assert "out = self.bn3(out)" in resnet and "out = out + downsample" in resnet
    wavenet = (GENERATED / "wavenet" / "wavenet_pytorch.py").read_text()
    assert "gate = self.gate_sigmoid(gate)" in wavenet and "out = out * gate" in wavenet


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_call_passes_a_tensor_under_one_of_its_keyword_names(path: Path) -> None:
    """``out = conv_bn(out, out=c7)`` reads as if the tensor were the width.
    Checked where tensors flow: every function but constructors."""
    bodies = [
        f for f in ast.walk(ast.parse(path.read_text())) if isinstance(f, ast.FunctionDef) and f.name != "__init__"
    ]
    assert bodies
    for node in (n for fn in bodies for n in ast.walk(fn)):
        if isinstance(node, ast.Call):
            positional = {a.id for a in node.args if isinstance(a, ast.Name)}
            clash = positional & {k.arg for k in node.keywords}
            assert not clash, f"{path.name}:{node.lineno}: {sorted(clash)} is both a tensor and a keyword"


@pytest.mark.parametrize(
    ("names", "prefix"),
    [
        (["branch3x3dbl_1", "branch3x3dbl_2"], "branch3x3dbl"),
        (["branch_pool_avg", "branch_pool"], "branch_pool"),
        (["gate", "gate_sigmoid"], "gate"),
        (["branch1x1"], "branch1x1"),
        (["norm1", "relu1", "conv1"], ""),
        (["expand", "exp_bn"], ""),  # a cut inside a word is no name
        (["conv1", "conv2"], "conv"),
    ],
)
def test_shared_prefix(names: list[str], prefix: str) -> None:
    assert _shared_prefix(names) == prefix


@pytest.mark.parametrize("target", ["pytorch", "tensorflow", "keras", "chainer"])
def test_a_derived_size_is_named_once(target: str) -> None:
    """The spec's ``let: {width: ...}`` is computed once, under its name (rule 2)."""
    tree = ast.parse((GENERATED / "resnext50" / f"resnext50_{target}.py").read_text())
    code = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Assign)]
    written = [line for line in code if "int(planes * width_per_group / 64) * groups" in line]
    assert written == ["width = int(planes * width_per_group / 64) * groups"]


def test_pytorch_writes_many_long_stages_as_a_table_and_few_as_lines() -> None:
    """Rule 5 in PyTorch: MobileNetV2's seven stages are a settings table with
    its columns named (weight keys unchanged: add_module under stageN), ResNet's
    four layers one short line each, as torchvision writes them."""
    mobilenet = (GENERATED / "mobilenet_v2" / "mobilenet_v2_pytorch.py").read_text()
    assert "# in_channels, units, expand_ratio, out; stride of the first unit" in mobilenet
    assert 'self.add_module(f"stage{i}", stage)' in mobilenet and "self.stage2 =" not in mobilenet
    assert "x = self.stage2(x)" in mobilenet
    resnet = (GENERATED / "resnet50" / "resnet50_pytorch.py").read_text()
    assert "self.layer2 = make_stage(Bottleneck, 256, 4, width=128, first=dict(stride=2, project=True))" in resnet


def test_numbered_block_calls_are_a_table_too() -> None:
    """MobileNetV3's fifteen bneck blocks are torchvision's settings table, not
    fifteen calls (Keras' mobilenet_v2.py spelled out 17)."""
    text = (GENERATED / "mobilenet_v3_large" / "mobilenet_v3_large_pytorch.py").read_text()
    assert "# in_channels, kernel, expanded_channels, out, use_se, use_hs, stride" in text
    assert 'self.add_module(f"bneck{i}", block)' in text and "self.bneck2 =" not in text
    keras = (GENERATED / "mobilenet_v3_large" / "mobilenet_v3_large_keras.py").read_text()
    assert "for block, kernel, expanded_channels, out, use_se, use_hs, stride in settings:" in keras
    assert keras.count("inverted_residual(") == 2 and 'name="bneck2"' not in keras  # the definition, one call
    # Numbered calls that fit a line stay one per line (mobilenet_v1's block1 to block6).
    assert 'name="block2")' in (GENERATED / "mobilenet_v1" / "mobilenet_v1_keras.py").read_text()
