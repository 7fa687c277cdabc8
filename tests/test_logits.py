"""The ``logits`` switch: a network whose outputs end in a softmax can return
the values before it (what training's cross-entropy on logits needs).

Fast tests check the code model and the committed files (which networks and
blocks take the switch); slow ones build the generated code of every target
with the same canonical weights and check that ``logits=True`` gives the
pre-softmax values and the default their softmax.
"""

from __future__ import annotations

import ast
import importlib.util

import numpy as np
import pytest

from archspec import runtime
from archspec.codegen import EMITTERS
from archspec.codegen.model import LOGITS, build, class_name, has_logits_switch, logits_outputs
from archspec.codegen.writer import format_many
from archspec.diagnostics import SpecError
from archspec.pipeline import compile_spec
from archspec.runtime import TARGETS
from archspec.verify import generate
from archspec.weights import random_weights
from tests.conftest import ROOT, SPEC_NAMES, SPECS

FRAMEWORKS = ("torch", "tensorflow", "keras", "chainer")
needs_frameworks = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in FRAMEWORKS), reason="needs all four frameworks"
)

# A softmax deep in blocks: the network passes logits to outer, outer to inner.
NESTED = """
name: nested
source: a test of the logits switch
input: [3, 8, 8]
params: {num_classes: 5}
blocks:
  inner:
    nodes:
      - fc: {op: dense, out: num_classes}
      - prob: {op: softmax}
  outer:
    nodes:
      - pool: {op: global_avg_pool}
      - head: {block: inner}
layers:
  - conv: {op: conv2d, out: 4, kernel: 3}
  - body: {block: outer}
"""

# A softmax under its own switch that gives a network output.
CONDITIONAL = """
name: conditional
source: a test of the logits switch
input: [6]
params:
  num_classes: 3
  probs: {type: bool, default: true}
layers:
  - fc: {op: dense, out: num_classes}
  - prob: {op: softmax, when: probs}
  - extra: {op: dense, in: fc, out: 2}
outputs: [prob, extra]
"""

# A softmax whose value another node reads: logits=True would change that node's input.
READ_BACK = """
name: read_back
source: a test of the logits switch
input: [6]
layers:
  - fc: {op: dense, out: 3}
  - prob: {op: softmax}
  - fc2: {op: dense, out: 2}
outputs: [prob, fc2]
"""

# A softmax at the end of a stage: its units share one constructor call.
IN_A_STAGE = """
name: in_a_stage
source: a test of the logits switch
input: [6]
blocks:
  head:
    nodes:
      - fc: {op: dense, out: 6}
      - prob: {op: softmax}
layers:
  - stack: {block: head, repeat: 2}
"""

CLASH = """
name: clash
source: a test of the logits switch
input: [6]
params: {logits: 2}
layers:
  - fc: {op: dense, out: logits}
  - prob: {op: softmax}
"""


def args_of(unit) -> dict[str, object]:
    return {a.name: a.default for a in unit.args}


# ----------------------------------------------------------------------------
# Which networks and blocks take the switch


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_the_network_takes_logits_exactly_when_an_output_is_a_softmax(name: str) -> None:
    compiled = compile_spec(SPECS / f"{name}.yaml")
    graph = compiled.graph
    softmax_out = any(graph.node(o).op == "softmax" for o in graph.outputs)  # no zoo spec reads its softmax
    model = build(compiled)
    assert has_logits_switch(graph) == model.has_logits_switch == softmax_out
    if softmax_out:
        assert args_of(model.model)[LOGITS] is False
    else:  # resnets return their logits already: no argument that does nothing
        assert all(LOGITS not in args_of(u) and not u.logits_attr for u in model.units)


def test_googlenet_aux_heads_pass_the_switch_down() -> None:
    compiled = compile_spec(SPECS / "googlenet.yaml")
    assert logits_outputs(compiled.graph) == ["prob", "aux1.prob", "aux2.prob"]
    units = {u.name: u for u in build(compiled).units}
    aux, net = units["aux_classifier"], units["googlenet"]
    assert args_of(aux)[LOGITS] is False and aux.logits_attr == LOGITS
    assert [s.name for s in aux.steps if s.logits_switch] == ["prob"]
    assert LOGITS not in args_of(units["inception"]) and LOGITS not in args_of(units["conv_relu"])
    calls = {s.name: s.attrs.get(LOGITS) for s in net.steps if s.unit is not None}
    assert {k for k, v in calls.items() if v is not None} == {"aux1", "aux2"}
    assert [s.name for s in net.steps if s.logits_switch] == ["prob"]


@pytest.mark.parametrize(("text", "switched"), [(READ_BACK, False), (IN_A_STAGE, False), (NESTED, True)])
def test_only_a_softmax_that_nothing_else_reads_takes_the_switch(write_spec, text: str, switched: bool) -> None:
    compiled = compile_spec(write_spec(text))
    model = build(compiled)
    assert has_logits_switch(compiled.graph) == model.has_logits_switch == switched
    if not switched:
        assert all(LOGITS not in args_of(u) for u in model.units)
        assert not any(s.logits_switch for u in model.units for s in u.steps)


def test_nested_blocks_pass_the_switch_to_the_softmax(write_spec) -> None:
    model = build(compile_spec(write_spec(NESTED)))
    units = {u.name: u for u in model.units}
    assert [s.attrs[LOGITS] for s in units["nested"].steps if s.name == "body"][0].id == LOGITS
    assert [s.attrs[LOGITS] for s in units["outer"].steps if s.name == "head"][0].id == LOGITS
    assert not units["outer"].logits_attr  # outer only passes it on
    assert [s.name for s in units["inner"].steps if s.logits_switch] == ["prob"]
    source = EMITTERS["pytorch"](model)
    assert "self.body = Outer(4, num_classes=num_classes, logits=logits)" in source
    assert "self.head = Inner(in_channels, num_classes=num_classes, logits=logits)" in source


def test_a_parameter_named_logits_is_a_clear_error(write_spec) -> None:
    """The switch's name is reserved: the schema refuses it (E105; corpus: param_named_logits)."""
    with pytest.raises(SpecError, match=r"E105\]: 'logits' is a reserved name"):
        compile_spec(write_spec(CLASH))


def test_a_node_named_logits_keeps_its_name(write_spec) -> None:
    """The switch's attribute steps aside for a node called logits."""
    text = "name: named\nsource: a test\ninput: [6]\nlayers:\n  - logits: {op: dense, out: 3}\n  - prob: {op: softmax}"
    model = build(compile_spec(write_spec(text)))
    assert model.model.logits_attr == "logits_"
    files = format_many({f"n_{t}.py": emit(model) for t, emit in EMITTERS.items()})  # ruff-clean and formatted
    assert "self.logits_ = logits" in files["n_pytorch.py"]
    assert "self.logits = nn.Linear(6, 3)" in files["n_pytorch.py"]


@pytest.mark.parametrize("name", SPEC_NAMES)
@pytest.mark.parametrize("target", TARGETS)
def test_the_committed_network_declares_the_switch(name: str, target: str) -> None:
    """generated/: the network's constructor (Keras: its function) takes
    ``logits: bool = False`` exactly when the network has a final softmax."""
    tree = ast.parse((ROOT / "generated" / name / f"{name}_{target}.py").read_text())
    top = next(s for s in tree.body if getattr(s, "name", None) == class_name(name))
    fn = top if isinstance(top, ast.FunctionDef) else next(s for s in top.body if getattr(s, "name", "") == "__init__")
    args = fn.args.args[-len(fn.args.defaults) :] if fn.args.defaults else []
    defaults = {a.arg: ast.literal_eval(d) for a, d in zip(args, fn.args.defaults)}
    assert (LOGITS in defaults) == has_logits_switch(compile_spec(SPECS / f"{name}.yaml").graph)
    assert defaults.get(LOGITS, False) is False
    if LOGITS in defaults:
        assert "logits=True: outputs skip their final softmax" in (ast.get_docstring(top) or "")


# ----------------------------------------------------------------------------
# What the generated code computes


def softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Generated modules of a spec (by target), emitted and imported once."""
    cache: dict = {}

    def get(spec: str):
        if spec not in cache:
            compiled = compile_spec(spec)
            notes: list[str] = []
            modules = generate(compiled, TARGETS, tmp_path_factory.mktemp(compiled.graph.name), notes)
            assert not notes, notes
            cache[spec] = compiled, modules
        return cache[spec]

    return get


def check_switch(compiled, module, target: str, batch: int = 2) -> None:
    """Same weights and input: logits=True gives what the network computes with
    every softmax bypassed; the default gives the softmax of that."""
    rt = runtime.get(target)
    graph = compiled.graph
    assert not isinstance(module, str), module
    weights = random_weights(compiled, 0)
    x = np.random.default_rng(1).standard_normal((batch, *graph.input_shape)).astype(np.float32)
    default = rt.build(module, class_name(graph.name))
    rt.load_weights(default, weights)
    probs = rt.run(default, x)
    with rt.softmax_bypassed():
        pre = rt.run(default, x)
    del default
    model = rt.build(module, class_name(graph.name), logits=True)
    rt.load_weights(model, weights)
    logits = rt.run(model, x)
    switched = set(logits_outputs(graph))
    assert switched
    assert len(logits) == len(probs) == len(graph.outputs)
    for path, p, q, z in zip(graph.outputs, probs, pre, logits):
        np.testing.assert_allclose(z, q, rtol=1e-5, atol=1e-6, err_msg=f"{target} {path}: logits")
        if path in switched:
            np.testing.assert_allclose(p, softmax(z), rtol=1e-4, atol=1e-6, err_msg=f"{target} {path}: softmax")
            assert not np.allclose(z.sum(axis=1), 1.0), f"{target} {path}: logits=True still applies the softmax"
        else:
            np.testing.assert_allclose(p, z, rtol=1e-5, atol=1e-6, err_msg=f"{target} {path}: unswitched output")


@pytest.mark.slow
@needs_frameworks
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", ["lenet", "alexnet", "googlenet"])
def test_logits_true_returns_the_values_before_the_softmax(generated, name: str, target: str) -> None:
    compiled, modules = generated(str(SPECS / f"{name}.yaml"))
    check_switch(compiled, modules[target], target, batch=1 if name == "googlenet" else 2)


@pytest.mark.slow
@needs_frameworks
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("text", [NESTED, CONDITIONAL], ids=["nested", "conditional"])
def test_the_switch_reaches_nested_and_conditional_softmaxes(generated, write_spec, text: str, target: str) -> None:
    compiled, modules = generated(str(write_spec(text, f"{text.split()[1]}.yaml")))
    check_switch(compiled, modules[target], target)


@pytest.mark.slow
@needs_frameworks
@pytest.mark.parametrize("target", TARGETS)
def test_a_network_without_a_softmax_has_no_logits_argument(generated, target: str) -> None:
    compiled, modules = generated(str(SPECS / "resnet18.yaml"))
    assert not has_logits_switch(compiled.graph)
    rt = runtime.get(target)
    with pytest.raises(TypeError, match=LOGITS):
        rt.build(modules[target], "ResNet18", logits=True)
