"""Run the committed TensorFlow code of every spec and hold it to the IR.

For each spec: import generated/<name>/<name>_tensorflow.py, build the model,
run a random batch of 2 at the spec's input size (channels last) in inference
mode, and check the output shapes, the parameter counts (trainable variables
and batch-norm moving statistics) and the variable names (the canonical
weight keys) against archspec's own inference. A cross-check copies the
weights of the PyTorch model of a few specs into the TensorFlow one and
compares their outputs.
"""

from __future__ import annotations

import importlib.util
import math
import sys

import numpy as np
import pytest

from archspec import ops
from archspec.build import outputs
from archspec.codegen import tensorflow as tf_emitter
from archspec.codegen.model import class_name
from archspec.passes.count import weights
from archspec.pipeline import compile_spec
from tests.conftest import SPEC_NAMES, SPECS, channels_last, load_generated


def test_rules_cover_every_op() -> None:
    assert set(tf_emitter.OPS) == set(ops.OPS)


@pytest.fixture(scope="module")
def tf():
    tf = pytest.importorskip("tensorflow")
    # Tracing a deep network as a graph costs more than running it once: the
    # test runs __call__ eagerly (test_tf_function_traces checks the graph).
    tf.config.run_functions_eagerly(True)
    yield tf
    tf.config.run_functions_eagerly(False)


def variable_key(v) -> str:
    return v.name.removesuffix(":0")


@pytest.mark.slow
@pytest.mark.parametrize("name", SPEC_NAMES)
def test_tensorflow_model_matches_ir(name: str, tf) -> None:
    compiled = compile_spec(SPECS / f"{name}.yaml")
    graph, total = compiled.graph, compiled.counts.total
    module = load_generated(name, "tensorflow")
    model = getattr(module, class_name(name))()

    x = tf.random.stateless_normal((2, *channels_last(graph.input_shape)), seed=(0, 0))
    out = model(x)
    outs = [o for o in (out if isinstance(out, tuple) else (out,)) if o is not None]  # None: a head switched off

    assert [tuple(o.shape) for o in outs] == [(2, *channels_last(s)) for s in graph.output_shapes]
    assert all(bool(tf.reduce_all(tf.math.is_finite(o))) for o in outs)
    trainable = sum(math.prod(v.shape) for v in model.trainable_variables)
    stats = sum(math.prod(v.shape) for v in model.non_trainable_variables)
    assert (trainable, stats) == (total.trainable, total.non_trainable)
    # Variables are named after the canonical weight keys, with the canonical sizes.
    found = {variable_key(v): math.prod(v.shape) for v in model.variables}
    assert len(found) == len(model.variables)
    assert found == {f"{n.path}.{w.name}": w.size for n in graph.nodes for w in weights(n)}
    # Every block is a module and every stage a Sequential of them (a list where
    # the units' side outputs are read), at its IR path.
    for inst in graph.instances:
        sub = model
        for part in inst.path.split("."):
            units = sub if isinstance(sub, list) else getattr(sub, "layers", None)
            sub = units[int(part)] if part.isdigit() else getattr(sub, part)
        stage = isinstance(sub, list) or type(sub).__name__ == "Sequential"
        assert stage if inst.units else isinstance(sub, tf.Module) and not stage, inst.path


@pytest.mark.slow
def test_tf_function_traces(tf) -> None:
    """The generated __call__ is a tf.function and traces to a graph."""
    tf.config.run_functions_eagerly(False)
    try:
        module = load_generated("shufflenet_v1", "tensorflow")
        model = module.ShuffleNetV1()
        graph = compile_spec(SPECS / "shufflenet_v1.yaml").graph
        x = tf.zeros((1, *channels_last(graph.input_shape)))
        concrete = type(model).__call__.get_concrete_function(model, tf.TensorSpec(x.shape))
        assert concrete.graph.get_operations()
        assert tuple(model(x).shape) == (1, *graph.output_shapes[0])
    finally:
        tf.config.run_functions_eagerly(True)


# ----------------------------------------------------------------------------
# Same weights, same outputs as the PyTorch code


def copy_weights(compiled, torch_model, tf_model) -> None:
    """PyTorch's weights into the TensorFlow model, by canonical key (archspec.runtime)."""
    from archspec.runtime import pytorch as torch_runtime
    from archspec.runtime import tensorflow as tf_runtime

    tf_runtime.load_weights(tf_model, torch_runtime.export_weights(torch_model))


def compare_with_pytorch(compiled, torch_model, tf_model, torch, tf, batch: int = 2) -> float:
    """Copy the PyTorch model's weights (with non-trivial batch-norm statistics)
    into the TensorFlow one and return the largest difference of their outputs,
    relative to the largest output."""
    torch.manual_seed(0)
    with torch.no_grad():
        for m in torch_model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    copy_weights(compiled, torch_model, tf_model)
    x = np.random.default_rng(0).standard_normal((batch, *compiled.graph.input_shape)).astype(np.float32)
    with torch.no_grad():
        want = torch_model(torch.from_numpy(x))
    got = tf_model(tf.constant(np.moveaxis(x, 1, -1)))
    want = [w for w in (want if isinstance(want, tuple) else (want,)) if w is not None]  # None: a head switched off
    got = [g for g in (got if isinstance(got, tuple) else (got,)) if g is not None]
    worst = 0.0
    for w, g in zip(want, got, strict=True):
        w = w.numpy()
        g = np.moveaxis(g.numpy(), -1, 1) if w.ndim > 2 else g.numpy()
        assert w.shape == g.shape
        worst = max(worst, float(np.abs(w - g).max()) / max(1.0, float(np.abs(w).max())))
    return worst


@pytest.fixture
def logits(monkeypatch, tf):
    """Softmax outputs of random networks are close to uniform and hide
    differences: compare the logits (eager mode makes the patch effective)."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(tf.nn, "softmax", lambda x, axis=-1: x)
    monkeypatch.setattr(torch.nn.Softmax, "forward", lambda self, x: x)
    return torch


CROSS_CHECKED = ["resnet18", "mobilenet_v2", "xception", "googlenet", "shufflenet_v1", "inception_v3", "wavenet"]


@pytest.mark.slow
@pytest.mark.parametrize("name", CROSS_CHECKED)
def test_same_weights_same_outputs_as_pytorch(name: str, tf, logits) -> None:
    compiled = compile_spec(SPECS / f"{name}.yaml")
    torch_model = getattr(load_generated(name, "pytorch"), class_name(name))().eval()
    tf_model = getattr(load_generated(name, "tensorflow"), class_name(name))()
    batch = 1 if name == "wavenet" else 2  # 16000 steps long
    assert compare_with_pytorch(compiled, torch_model, tf_model, logits, tf, batch) < 1e-5


# Ops and forms the zoo does not use (or uses only where they barely matter).
MIX_SPECS = {
    "mix2d": """
name: mix2d
source: ops and padding forms the zoo does not use
input: [4, 19, 17]
params:
  num_classes: 5
  rate: {type: float, default: 0.3}
blocks:
  unit:
    params:
      c: int
      stride: {type: int, default: 1}
    nodes:
      - conv: {op: conv2d, out: c, kernel: 3, stride: stride, padding: 1}
      - ln: {op: layer_norm}
      - act: {op: leaky_relu, negative_slope: 0.2}
      - avg: {op: avg_pool2d, kernel: 3, stride: 1, padding: 1, count_include_pad: false}
      - pool: {op: global_max_pool}
      - gate: {op: sigmoid}
      - scale: {op: multiply, in: [avg, gate]}
      - shuffle: {op: channel_shuffle, groups: 2, when: stride == 1}
  dil:
    params:
      d: int
    nodes:
      - dw: {op: depthwise_conv2d, kernel: 3, dilation: d, padding: d}
      - t: {op: tanh}
layers:
  - pad: {op: zero_pad2d, padding: [1, 0, 2, 1]}
  - conv: {op: conv2d, out: 8, kernel: 3, stride: 2, padding: [0, 1, 1, 0]}
  - inorm: {op: instance_norm, affine: true}
  - hs: {op: hard_swish}
  - lrn: {op: lrn, size: 3, alpha: 0.5, beta: 0.75, k: 1.0}
  - sep: {op: separable_conv2d, out: 12, kernel: 3, stride: 2, padding: same, multiplier: 2}
  - dw: {op: depthwise_conv2d, kernel: [3, 1], padding: [1, 0], multiplier: 2}
  - silu: {op: silu}
  - stage: {block: unit, repeat: 3, c: 24, first: {stride: 2}}
  - dils: {block: dil, repeat: 2, d: 2 ** i}
  - mp: {op: max_pool2d, kernel: 2, stride: 2, ceil_mode: true}
  - ap: {op: avg_pool2d, kernel: 3, stride: 2, padding: 1, ceil_mode: true}
  - r6: {op: relu6}
  - drop: {op: dropout, rate: rate}
  - flat: {op: flatten}
  - fc: {op: dense, out: num_classes}
  - prob: {op: softmax}
""",
    "mix1d": """
name: mix1d
source: 1-D ops
input: [6, 23]
params:
  num_classes: 3
layers:
  - c1: {op: conv1d, out: 8, kernel: 3, stride: 2, padding: same}
  - bn: {op: batch_norm, eps: 0.001, momentum: 0.01}
  - c2: {op: conv1d, out: 8, kernel: 4, padding: [2, 1], groups: 2}
  - ln: {op: layer_norm}
  - c3: {op: conv1d, out: 10, kernel: 2, dilation: 3, padding: causal}
  - inorm: {op: instance_norm}
  - sh: {op: channel_shuffle, groups: 5}
  - gmax: {op: global_max_pool, keepdims: true}
  - gavg: {op: global_avg_pool, in: c3}
  - flat: {op: flatten, in: gmax}
  - both: {op: concat, in: [flat, gavg]}
  - bn1: {op: batch_norm}
  - fc: {op: dense, out: num_classes}
  - prob: {op: softmax}
""",
}


def load_source(path, module_name: str):
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MIX_SPECS))
def test_rare_ops_agree_with_pytorch(name: str, tmp_path, tf, logits) -> None:
    torch = logits
    path = tmp_path / f"{name}.yaml"
    path.write_text(MIX_SPECS[name])
    compiled = compile_spec(path)
    modules = {}
    for rel, text in outputs(compiled, ["pytorch", "tensorflow"], table=False).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
        modules[rel.rsplit("_", 1)[1].removesuffix(".py")] = load_source(tmp_path / rel, f"mix_{rel.split('/')[-1]}")
    torch_model = getattr(modules["pytorch"], class_name(name))()
    tf_model = getattr(modules["tensorflow"], class_name(name))()
    graph = compiled.graph
    out = tf_model(tf.zeros((2, *channels_last(graph.input_shape))))
    assert tuple(out.shape) == (2, *graph.output_shapes[0])
    assert compare_with_pytorch(compiled, torch_model.eval(), tf_model, torch, tf) < 1e-5
    if name == "mix1d":
        # Training mode (batch norm, no dropout): batch statistics and the
        # moving-average update of the statistics agree too.
        torch_model = getattr(modules["pytorch"], class_name(name))().train()
        tf_model = getattr(modules["tensorflow"], class_name(name))()
        copy_weights(compiled, torch_model, tf_model)
        x = np.random.default_rng(1).standard_normal((4, *graph.input_shape)).astype(np.float32)
        want = torch_model(torch.from_numpy(x)).detach().numpy()
        got = tf_model(tf.constant(np.moveaxis(x, 1, -1)), training=True).numpy()
        assert np.abs(want - got).max() < 1e-5
        state = torch_model.state_dict()
        for v in tf_model.non_trainable_variables:
            assert np.abs(state[variable_key(v)].numpy() - v.numpy()).max() < 1e-6
