"""Run the committed Chainer code of every spec and hold it to the IR.

For each spec: import generated/<name>/<name>_chainer.py, build the model,
run a random batch at the spec's input size with ``train`` off, and check
the output shapes, the parameter counts (trainable parameters and batch-norm
statistics), the output shape of every block and stage, and that the
parameter paths are the canonical weight keys, against archspec's own
inference.

With PyTorch's weights copied across by canonical key, a few networks and two
small specs that use every op and padding form the zoo does not must give
PyTorch's outputs; and what Chainer cannot express is refused, not guessed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from archspec import ops
from archspec.codegen import chainer as chainer_emitter
from archspec.codegen import pytorch as pytorch_emitter
from archspec.codegen.model import CodegenError, class_name
from archspec.codegen.model import build as build_model
from archspec.codegen.writer import format_source
from archspec.passes.count import weights
from archspec.pipeline import compile_spec
from tests.conftest import ROOT, SPEC_NAMES, SPECS, called_instances, load_generated

# Not importorskip: chainer's import needs the numpy 2 shim that the generated files carry.
needs_chainer = pytest.mark.skipif(importlib.util.find_spec("chainer") is None, reason="chainer is not installed")


def test_chainer_rules_cover_every_op() -> None:
    assert set(chainer_emitter.OPS) == set(ops.OPS)


def canonical_key(path: str) -> str:
    """Chainer's '/layer1/0/conv1/W' -> the canonical 'layer1.0.conv1.weight'."""
    from archspec.runtime.chainer import canonical_key

    return canonical_key(path)


@pytest.mark.slow
@needs_chainer
@pytest.mark.parametrize("name", SPEC_NAMES)
def test_chainer_model_matches_ir(name: str) -> None:
    compiled = compile_spec(SPECS / f"{name}.yaml")
    graph, total = compiled.graph, compiled.counts.total
    module = load_generated(name, "chainer")
    chainer = module.chainer
    model = getattr(module, class_name(name))()

    # Every block and stage of the spec is a link of the same path and shape.
    wanted = called_instances(compiled)
    paths = {id(link): path.strip("/").replace("/", ".") for path, link in model.namedlinks(skipself=True)}
    seen: dict[str, tuple[int, ...]] = {}

    class Shapes(chainer.LinkHook):
        name = "shapes"

        def forward_postprocess(self, args) -> None:
            path = paths.get(id(args.link))
            if path in wanted:
                out = args.out[0] if isinstance(args.out, tuple) else args.out
                seen[path] = tuple(out.shape[1:])

    batch = 2
    x = np.random.default_rng(0).standard_normal((batch, *graph.input_shape), dtype=np.float32)
    with chainer.using_config("train", False), chainer.no_backprop_mode(), Shapes():
        out = model(x)
    outs = [o for o in (out if isinstance(out, tuple) else (out,)) if o is not None]  # None: a head switched off

    assert [o.shape for o in outs] == [(batch, *s) for s in graph.output_shapes]
    assert all(np.isfinite(o.array).all() for o in outs)
    trainable = sum(p.size for p in model.params())
    stats = sum(
        link.avg_mean.size + link.avg_var.size
        for _, link in model.namedlinks()
        if isinstance(link, chainer.links.BatchNormalization)
    )
    assert (trainable, stats) == (total.trainable, total.non_trainable)
    assert seen == wanted
    # Parameter and statistic paths are the canonical weight keys.
    keys = {canonical_key(path) for path, _ in model.namedparams()}
    keys |= {
        canonical_key(f"{path}/{stat}")
        for path, link in model.namedlinks()
        if isinstance(link, chainer.links.BatchNormalization)
        for stat in ("avg_mean", "avg_var")
    }
    assert keys == {f"{n.path}.{w.name}" for n in graph.nodes for w in weights(n)}


# Every op and padding form the zoo leaves out, on odd sizes: asymmetric and
# per-instance 'same' padding, padding chosen by a parameter, count_include_pad
# false, ceil_mode (mp_mixed: PyTorch's rule drops the last window in height
# but not in width), several outputs, layer and instance norm (with and without affine), hard
# swish, leaky ReLU, a separable convolution, a channel vector broadcast by
# multiply, batch and layer norm on vectors, grouped and strided conv1d.
SAMPLER_2D = """
name: sampler2d
source: test
input: [3, 17, 17]
params:
  num_classes: 5
  slope: 0.2
blocks:
  unit:
    params:
      out: int
      stride: {type: int, default: 1}
      pad: {type: str, default: same}
    nodes:
      - conv: {op: conv2d, out: out, kernel: 3, stride: stride, padding: same, bias: false}
      - ln: {op: layer_norm, eps: 0.001}
      - act: {op: hard_swish}
      - dw: {op: depthwise_conv2d, kernel: [1, 3], multiplier: 2, padding: pad}
      - inorm: {op: instance_norm, affine: true}
      - act2: {op: relu6}
      - pool: {op: max_pool2d, kernel: 3, stride: stride, padding: same}
layers:
  - zpad: {op: zero_pad2d, padding: [1, 0, 2, 1]}
  - stem: {op: conv2d, out: 8, kernel: 3, padding: [0, 1, 1, 0]}
  - bn: {op: batch_norm, eps: 0.001, momentum: 0.01}
  - act: {op: leaky_relu, negative_slope: slope}
  - u1: {block: unit, repeat: 2, out: 8, first: {stride: 2}}
  - u2: {block: unit, out: 6, pad: valid}
  - avg: {op: avg_pool2d, kernel: 3, stride: 1, padding: 1, count_include_pad: false}
  - inorm: {op: instance_norm}
  - mp_mixed: {op: max_pool2d, kernel: 3, stride: 3, padding: 1, ceil_mode: true}
  - mp: {op: max_pool2d, in: inorm, kernel: 2, stride: 2, ceil_mode: true}
  - sep: {op: separable_conv2d, out: 16, kernel: 3, padding: same}
  - act3: {op: silu}
  - shuffle: {op: channel_shuffle, groups: 4}
  - gmax: {op: global_max_pool}
  - fc: {op: dense, out: 16}
  - bn1d: {op: batch_norm}
  - ln1d: {op: layer_norm}
  - tanh: {op: tanh}
  - gate: {op: sigmoid}
  - scaled: {op: multiply, in: [gate, shuffle]}
  - avg2: {op: avg_pool2d, kernel: 3, stride: 2, padding: 1}
  - flat: {op: flatten}
  - drop: {op: dropout, rate: 0.3}
  - out: {op: dense, out: num_classes}
  - prob: {op: softmax}
outputs: [prob, mp_mixed]
"""

SAMPLER_1D = """
name: sampler1d
source: test
input: [4, 21]
params:
  num_classes: 3
blocks:
  gated:
    params:
      dilation: int
    nodes:
      - filter: {op: conv1d, out: 6, kernel: 2, padding: causal}
      - filter_tanh: {op: tanh}
      - gate: {op: conv1d, in: input, out: 6, kernel: 3, dilation: dilation, padding: same}
      - gate_sigmoid: {op: sigmoid}
      - multiply: {op: multiply, in: [filter_tanh, gate_sigmoid]}
layers:
  - causal: {op: conv1d, out: 6, kernel: 3, padding: causal, bias: false}
  - bn: {op: batch_norm, eps: 0.0001, momentum: 0.2}
  - g1: {block: gated, dilation: 1}
  - g2: {block: gated, dilation: 2}
  - strided: {op: conv1d, out: 8, kernel: 4, stride: 2, padding: same, groups: 2}
  - inorm: {op: instance_norm, affine: true, eps: 0.01}
  - ln: {op: layer_norm}
  - shuffle: {op: channel_shuffle, groups: 2}
  - pool: {op: global_avg_pool, keepdims: true}
  - fc: {op: conv1d, out: num_classes, kernel: 1}
  - flat: {op: flatten}
  - prob: {op: softmax}
"""


def emit_spec(tmp_path: Path, text: str):
    """Compile a spec text and write its PyTorch and Chainer code under tmp_path."""
    (tmp_path / "spec.yaml").write_text(text)
    compiled = compile_spec("spec.yaml")  # a short path: the generated header names it
    name = compiled.graph.name
    model = build_model(compiled)
    for target, emit in (("pytorch", pytorch_emitter.emit), ("chainer", chainer_emitter.emit)):
        path = tmp_path / name / f"{name}_{target}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(format_source(emit(model), path.name))
    return compiled


def outputs_with_same_weights(name: str, graph, root: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run the PyTorch and the Chainer model on one batch, the Chainer model
    holding the PyTorch model's weights (batch-norm statistics and affine
    parameters perturbed, so that eps and the statistics matter)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tnet = getattr(load_generated(name, "pytorch", root), class_name(name))().eval()
    module = load_generated(name, "chainer", root)
    chainer = module.chainer
    cnet = getattr(module, class_name(name))()
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, value in tnet.state_dict().items():
        if key.endswith("running_var"):
            value = torch.rand(value.shape, generator=gen) + 0.5
        elif key.endswith(("running_mean", "bias")) or (value.dim() == 1 and key.endswith("weight")):
            value = value + 0.1 * torch.randn(value.shape, generator=gen)
        state[key] = value
    tnet.load_state_dict(state)
    from archspec.runtime import chainer as chainer_runtime
    from archspec.runtime import pytorch as torch_runtime

    assert set(chainer_runtime.slots(cnet)) == {k for k in state if not k.endswith("num_batches_tracked")}
    chainer_runtime.load_weights(cnet, torch_runtime.export_weights(tnet))

    x = np.random.default_rng(1).standard_normal((2, *graph.input_shape), dtype=np.float32)
    with torch.no_grad():
        want = tnet(torch.from_numpy(x))
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        got = cnet(x)
    want = want if isinstance(want, tuple) else (want,)
    got = got if isinstance(got, tuple) else (got,)
    return [(w.numpy(), g.array) for w, g in zip(want, got, strict=True)]


def assert_close(pairs: list[tuple[np.ndarray, np.ndarray]]) -> None:
    for want, got in pairs:
        # float32 noise, amplified where a norm divides by a near-zero variance.
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
        if (want > 0).all():  # probabilities: compare the logits they come from
            np.testing.assert_allclose(np.log(got), np.log(want), rtol=0, atol=1e-4)


@pytest.mark.slow
@needs_chainer
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "googlenet"])
def test_chainer_matches_pytorch_with_same_weights(name: str) -> None:
    graph = compile_spec(SPECS / f"{name}.yaml").graph
    assert_close(outputs_with_same_weights(name, graph, ROOT / "generated"))


@pytest.mark.slow
@needs_chainer
@pytest.mark.parametrize("text", [SAMPLER_2D, SAMPLER_1D], ids=["2d", "1d"])
def test_chainer_matches_pytorch_on_every_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.chdir(tmp_path)
    compiled = emit_spec(tmp_path, text)
    pairs = outputs_with_same_weights(compiled.graph.name, compiled.graph, tmp_path)
    assert [got.shape[1:] for _, got in pairs] == compiled.graph.output_shapes
    assert_close(pairs)


REFUSED = {
    # Chainer's average pooling has no cover_all mode.
    "ceil_mode": ("{op: avg_pool2d, kernel: 2, stride: 2, ceil_mode: true}", "no Chainer equivalent"),
    # An explicit pad would be counted in the average.
    "count_include_pad": (
        "{op: avg_pool2d, kernel: 3, stride: 2, padding: [0, 1, 0, 1], count_include_pad: false}",
        "pad_value=None",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_chainer_refuses_what_it_cannot_express(tmp_path: Path, case: str) -> None:
    node, reason = REFUSED[case]
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: refused\nsource: test\ninput: [3, 5, 5]\nlayers:\n  - pool: {node}\n")
    model = build_model(compile_spec(spec))
    with pytest.raises(CodegenError, match=reason):
        chainer_emitter.emit(model)
