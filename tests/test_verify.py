"""`archspec verify`: every spec of the zoo and every converter case gives the
same outputs in all four targets with the same weights, and the check fails
when a target really differs.

Converter cases (tests/converter_cases/*.yaml) are small specs for what breaks
ports between frameworks: 'same' padding at stride 2 on an even input,
ceil-mode pooling, LRN with a large alpha, average pooling with padding
(counted and not), flatten before dense on a non-square map, depthwise and
grouped convolutions, channel shuffle, SE's broadcast multiply and a causal
dilated 1-D convolution, blocks with several outputs, and issue 14's ops
(transposed convolution, upsampling, slice, layer scale, GELU, hard sigmoid,
drop path). They run with --trace, which must find no
divergence either (so the trace does not cry wolf).
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from click.testing import CliRunner

from archspec.cli import main
from archspec.pipeline import compile_spec
from archspec.runtime import TARGETS
from archspec.verify import format_table, verify
from tests.conftest import ROOT, SPEC_NAMES, SPECS, cheap_input

CASES = ROOT / "tests" / "converter_cases"
CASE_NAMES = sorted(p.stem for p in CASES.glob("*.yaml"))

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "tensorflow", "keras", "chainer")),
    reason="verify needs all four frameworks",
)


def check(report) -> None:
    assert [t.target for t in report.targets] == list(TARGETS)
    assert report.ok, format_table(report, trace=True)
    assert not report.notes
    for t in report.targets:
        assert t.output_shapes == report.expected_output_shapes, t.target
        assert (t.trainable, t.non_trainable) == (report.expected_trainable, report.expected_non_trainable)
        if t.target != report.reference:
            kinds = {c.kind for c in t.comparisons}
            assert kinds == ({"output", "pre-softmax"} if report.softmax else {"output"}), t.target


@pytest.mark.slow
@pytest.mark.parametrize("name", SPEC_NAMES)
def test_zoo_same_weights_same_outputs(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the cheapest input whose code is generated/'s with other numbers (the
    same layers, paddings and flattens on smaller maps)."""
    monkeypatch.chdir(ROOT)  # the generated header names specs/<name>.yaml, as generated/'s
    report = verify(compile_spec(f"specs/{name}.yaml", input_shape=cheap_input(name)))
    check(report)
    # Random weights at a sensible scale: the values compared (logits where
    # there is a softmax) are of order one, neither vanished nor exploded.
    kind = "pre-softmax" if report.softmax else "output"
    scales = [c.scale for c in report.targets[1].comparisons if c.kind == kind]
    assert scales and all(0.1 < s < 100 for s in scales), scales


def test_the_cheap_inputs_keep_the_code_paths() -> None:
    """The zoo is verified on smaller maps only where the code stays the same:
    VGG's flatten still meets a 2x2 map (so the NHWC targets' transpose runs; at
    32 it would meet 1x1 and be a plain reshape), GoogLeNet's fixed 7x7 pool
    keeps its 224, a sequence keeps its length."""
    assert cheap_input("resnet50") == (3, 32, 32)
    assert cheap_input("vgg16") == (3, 64, 64)
    assert cheap_input("googlenet") == (3, 224, 224)
    assert cheap_input("wavenet") == compile_spec(SPECS / "wavenet.yaml").graph.input_shape


@pytest.mark.slow
@pytest.mark.parametrize("name", CASE_NAMES)
def test_converter_case(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CASES)  # a short path: the generated header names it
    report = verify(compile_spec(f"{name}.yaml"), trace=True)
    check(report)
    for t in report.targets[1:]:
        assert t.trace is not None and t.trace.node is None and t.trace.compared >= 2, (t.target, t.trace)


def test_converter_cases_cover_what_breaks_ports() -> None:
    graphs = {name: compile_spec(CASES / f"{name}.yaml").graph for name in CASE_NAMES}
    nodes = [n for g in graphs.values() for n in g.nodes]

    def has(predicate) -> bool:
        return any(predicate(n) for n in nodes)

    assert has(lambda n: n.op == "conv2d" and n.attrs["stride"] == (2, 2) and n.attrs["padding"] == (0, 1, 0, 1))
    assert has(lambda n: n.op == "max_pool2d" and n.attrs["ceil_mode"])
    assert has(lambda n: n.op == "lrn" and n.attrs["alpha"] >= 1)
    for include in (True, False):
        assert has(
            lambda n, i=include: n.op == "avg_pool2d" and any(n.attrs["padding"]) and n.attrs["count_include_pad"] is i
        )
    assert has(lambda n: n.op == "flatten" and len(n.in_shapes[0]) == 3 and n.in_shapes[0][1] != n.in_shapes[0][2])
    assert has(lambda n: n.op == "depthwise_conv2d" and n.attrs["multiplier"] > 1)
    assert has(lambda n: n.op == "conv2d" and n.attrs["groups"] > 1)
    assert has(lambda n: n.op == "channel_shuffle")
    assert has(lambda n: n.op == "multiply" and len(n.in_shapes[0]) != len(n.in_shapes[1]))
    assert has(lambda n: n.op == "conv1d" and n.attrs["dilation"] > 1 and n.attrs["padding"][1] == 0)
    # Blocks with several outputs, read beside the value and from every unit of a stage.
    instances = [i for g in graphs.values() for i in g.instances]
    assert any(i.side_outputs and i.index is None for i in instances)
    assert has(lambda n: n.op == "concat" and sum(".side" in r for r in n.inputs) >= 3)
    assert any(i.side_outputs and i.path.count(".") >= 3 for i in instances)  # a stage inside a stage's unit
    # Issue 14's ops: transposed convolution cropped and grown, both upsamplings, a split, both GELUs.
    assert has(lambda n: n.op == "conv_transpose2d" and any(n.attrs["padding"]) and any(n.attrs["output_padding"]))
    for mode in ("nearest", "bilinear"):
        assert has(lambda n, m=mode: n.op == "upsample" and n.attrs["mode"] == m)
    assert has(lambda n: n.op == "slice" and n.attrs["start"] > 0)
    for form in ("none", "tanh"):
        assert has(lambda n, f=form: n.op == "gelu" and n.attrs["approximate"] == f)
    assert (
        has(lambda n: n.op == "scale") and has(lambda n: n.op == "drop_path") and has(lambda n: n.op == "hard_sigmoid")
    )


# ----------------------------------------------------------------------------
# The check can fail


def run_cli(*args: str):
    return CliRunner().invoke(main, ["verify", *args])


@pytest.mark.slow
def test_verify_fails_on_a_wrong_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keras conv kernels loaded as (kw, kh, in, out): the shapes fit (square
    kernels), the outputs do not; --trace names the first convolution."""
    from archspec import runtime
    from archspec.runtime import keras as keras_rt

    monkeypatch.setitem(
        keras_rt.LAYOUTS, "Conv2D", {**keras_rt.LAYOUTS["Conv2D"], "kernel": ("weight", runtime.transpose(3, 2, 1, 0))}
    )
    result = run_cli(str(CASES / "flatten_nonsquare.yaml"), "--targets", "keras", "--trace")
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output and "pre-softmax prob: max |diff|" in result.output
    assert "trace keras: first differs at conv (conv2d)" in result.output


@pytest.mark.slow
def test_verify_fails_on_a_changed_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Chainer classifier's biases all off by 1e-3 after loading: the
    probabilities cannot show it (softmax ignores a common shift), the
    pre-softmax values do, and --trace points at the layer."""
    from archspec.runtime import chainer as chainer_rt

    load = chainer_rt.load_weights

    def load_and_nudge(model, weights) -> None:
        load(model, weights)
        model.fc2.b.array[...] += 1e-3

    monkeypatch.setattr(chainer_rt, "load_weights", load_and_nudge)
    report = verify(compile_spec(CASES / "flatten_nonsquare.yaml"), ["chainer"], trace=True)
    chainer = report.targets[1]
    assert not report.ok and not chainer.ok
    (out,) = [c for c in chainer.comparisons if c.kind == "output"]
    (pre,) = [c for c in chainer.comparisons if c.kind == "pre-softmax"]
    assert out.ok and out.max_abs_diff < 1e-6
    assert not pre.ok and pre.max_abs_diff == pytest.approx(1e-3, rel=1e-2)
    assert chainer.trace.node == "fc2" and chainer.trace.agreed_before == 2
    assert run_cli(str(CASES / "flatten_nonsquare.yaml"), "--targets", "chainer").exit_code == 1


@pytest.mark.slow
def test_verify_cli_table_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CASES)
    result = run_cli("se_broadcast.yaml", "--seed", "3")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("se_broadcast.yaml: se_broadcast, input 8x6x5, batch 2, seed 3; reference pytorch")
    for target in TARGETS:
        assert any(line.split()[:1] == [target] and line.endswith("pass") for line in lines), target
    assert lines[-2].strip().startswith("ok")

    result = run_cli("flatten_nonsquare.yaml", "--json", "--targets", "keras,chainer", "--set", "num_classes=4")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["ok"] is True
    (spec,) = doc["specs"]
    assert spec["softmax"] is True and spec["expected_output_shapes"] == [[2, 4]]
    assert [t["target"] for t in spec["targets"]] == ["pytorch", "keras", "chainer"]
    keras = spec["targets"][1]
    assert keras["ok"] and keras["output_shapes"] == [[2, 4]]
    assert keras["max_abs_diff"] < 1e-4 and keras["max_abs_diff_pre_softmax"] < 1e-4
    assert keras["trainable"] == spec["expected_trainable"]
    assert {c["kind"] for c in keras["comparisons"]} == {"output", "pre-softmax"}


def test_verify_usage_and_spec_errors(tmp_path) -> None:
    result = run_cli(str(CASES / "lrn.yaml"), "--targets", "pytorch,theano")
    assert result.exit_code == 2 and "unknown target 'theano'" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsource: test\ninput: [3, 8, 8]\nlayers:\n  - conv: {op: conv2d, out: 4, kernal: 3}\n")
    result = run_cli(str(bad))
    assert result.exit_code == 1
    assert "bad.yaml:5:" in result.output and "E202" in result.output and "did you mean 'kernel'" in result.output
    result = run_cli(str(bad), "--json")
    assert result.exit_code == 1
    assert json.loads(result.output[result.output.index("{") :])["specs"][0]["ok"] is False


def test_verify_refuses_code_that_cannot_be_generated_at_its_place(tmp_path) -> None:
    """A stage whose units, built in one loop over i, would each need another
    input channel count: no target can write it, and verify says so at the
    stage, as validate does (exit 1), instead of failing with a traceback."""
    spec = tmp_path / "grow.yaml"
    spec.write_text(
        "name: growing\nsource: test\ninput: [3, 8, 8]\n"
        "blocks:\n  grow:\n    params: {k: int}\n    nodes:\n"
        "      - conv: {op: conv2d, out: in_channels + k, kernel: 1}\n"
        "layers:\n  - stage: {block: grow, repeat: 3, k: i + 1}\n"
    )
    result = run_cli(str(spec), "--targets", "pytorch,keras")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "grow.yaml:10:5: error[E501]: every target: " in result.output
    assert "one loop cannot write" in result.output


def test_tolerance_scales_with_the_output() -> None:
    from archspec.verify import ATOL, RTOL, tolerance

    assert tolerance(np.array([0.0, -50.0])) == pytest.approx(RTOL * 50 + ATOL)
    assert tolerance(np.zeros(3)) == ATOL


@pytest.mark.slow
def test_verify_the_committed_generated_files() -> None:
    """verify can run modules already imported (here generated/'s) instead of
    generating the code; their models load the same weights."""
    from tests.conftest import load_generated

    modules = {t: load_generated("lenet", t) for t in TARGETS}
    check(verify(compile_spec(SPECS / "lenet.yaml"), modules=modules))
