"""Structural options are constructor arguments, verified at every value tested
(issue 12, rule 3).

A spec parameter marked ``option: true`` (a width multiplier) is an argument of
the generated network even though it sizes layers. The code model verifies the
code it writes against the IR of the build it is given; compiling at another
value and getting the same code (but for the defaults and the shape comments)
shows that the committed file is verified at that value too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from archspec.codegen import EMITTERS
from archspec.codegen.model import build
from archspec.codegen.writer import format_source
from archspec.pipeline import compile_spec

ROOT = Path(__file__).resolve().parent.parent
# The values the reference implementations publish (keras.applications,
# torchvision, the EfficientNet family's width coefficients); for MobileNetV3,
# the paper's 0.75 and the ends of MobileNetV2's range, 0.35 and 1.4.
VALUES = {
    ("mobilenet_v1", "alpha"): ["0.25", "0.5", "0.75"],
    ("mobilenet_v2", "alpha"): ["0.35", "0.5", "0.75", "1.3", "1.4"],
    ("efficientnet_b0", "width_mult"): ["1.1", "1.4", "2.0"],
    ("mnasnet1_0", "alpha"): ["0.5", "0.75", "1.3"],
    ("mobilenet_v3_small", "width_mult"): ["0.35", "0.75", "1.4"],
    ("mobilenet_v3_large", "width_mult"): ["0.35", "0.75", "1.4"],
}


def code(source: str, param: str, value: str, default: object) -> list[str]:
    """The code lines of a generated file, comments and docstrings aside, with
    the option's default written as ``default``."""
    body = source[source.index("\nimport ") :]
    body = re.sub(r'"""(.|\n)*?"""', "", body)
    body = re.sub(rf"\b{param}(: float)? = {re.escape(value)}\b", lambda m: m[0].replace(value, repr(default)), body)
    return [line for line in body.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_every_option_is_listed_here() -> None:
    """A spec that declares an option has its published values checked below."""
    declared = set()
    for path in sorted((ROOT / "specs").glob("*.yaml")):
        spec = compile_spec(path).spec
        declared |= {(spec.name, p.name) for p in spec.params.values() if p.option}
    assert declared == set(VALUES)


@pytest.mark.parametrize(("spec", "param"), sorted(VALUES))
def test_an_option_is_an_argument_and_the_code_holds_at_every_value(spec: str, param: str) -> None:
    base = compile_spec(ROOT / "specs" / f"{spec}.yaml")
    default = base.graph.params[param]
    for target, emit in EMITTERS.items():
        committed = (ROOT / "generated" / spec / f"{spec}_{target}.py").read_text()
        assert f"{param}: float = {default!r}" in committed, f"{target}: {param} is not an argument"
        want = code(committed, param, repr(default), default)
        for value in VALUES[spec, param]:
            other = format_source(emit(build(compile_spec(ROOT / "specs" / f"{spec}.yaml", {param: value}))))
            assert code(other, param, value, default) == want, f"{target} at {param}={value}"


def test_a_baked_parameter_is_gone_from_the_network_class() -> None:
    """A spec parameter the network does not take is written in as its value:
    no constructor argument, and the class docstring does not offer it."""
    for path in sorted((ROOT / "specs").glob("*.yaml")):
        compiled = compile_spec(path)
        model = build(compiled).model
        taken = {a.name for a in model.args}
        baked = [p for p in compiled.spec.params if p not in taken]
        assert not {p for p in baked if compiled.spec.params[p].option}, path.name
        for p in baked:
            assert not re.search(rf"\b{p}\b", model.doc), f"{path.name}: the docstring names {p}, not an argument"


@pytest.mark.slow
def test_the_committed_pytorch_file_builds_other_widths() -> None:
    """MobileNetV2(alpha=0.5) from the committed file has the parameters the
    spec compiled at alpha 0.5 counts."""
    import importlib.util

    path = ROOT / "generated" / "mobilenet_v2" / "mobilenet_v2_pytorch.py"
    module_spec = importlib.util.spec_from_file_location("mobilenet_v2_pytorch", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    for alpha in ("0.5", "1.4"):
        model = module.MobileNetV2(alpha=float(alpha))
        counts = compile_spec(ROOT / "specs" / "mobilenet_v2.yaml", {"alpha": alpha}).counts
        assert sum(p.numel() for p in model.parameters()) == counts.total.trainable


def test_a_head_off_by_default_is_still_an_argument() -> None:
    """inception_v3's auxiliary head is off by default (torchvision's
    aux_logits=False count) and still a constructor argument, written from the
    build with it on; the header's figures are those of the defaults."""
    compiled = compile_spec(ROOT / "specs" / "inception_v3.yaml")
    model = build(compiled)
    args = {a.name: a.default for a in model.model.args}
    assert args["aux_logits"] is False
    assert model.defaults is compiled and model.compiled.graph.params["aux_logits"] is True
    assert "AuxLogits" in {s.name for s in model.model.steps}
    text = (ROOT / "generated" / "inception_v3" / "inception_v3_pytorch.py").read_text()
    assert "aux_logits: bool = False" in text and "if aux_logits else None" in text
    assert f"{compiled.counts.total.trainable:,} trainable parameters" in text
    # Where the head cannot be built (an input too small for it), the switch stays out.
    small = build(compile_spec(ROOT / "specs" / "inception_v3.yaml", input_shape=(3, 75, 75)))
    assert "aux_logits" not in {a.name for a in small.model.args} and small.built is None
