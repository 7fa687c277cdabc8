"""Sequential blocks (``sequential: true``): a straight chain of unnamed layers,
named by position as ``nn.Sequential``'s, so that the ResNet family's generated
PyTorch models load torchvision's and timm's state_dicts as they are."""

from __future__ import annotations

import numpy as np
import pytest

from archspec import twins as T
from archspec.codegen import EMITTERS
from archspec.codegen.model import build as build_model
from archspec.codegen.model import class_name, has_logits_switch
from archspec.pipeline import compile_spec
from archspec.verify import generate
from archspec.weights import expected
from tests.conftest import SPECS, load_generated

SPEC = """
name: net
source: test
input: [8, 16, 16]
blocks:
  conv_bn:
    doc: A convolution and batch norm.
    sequential: true
    params: {out: int, stride: {type: int, default: 1}}
    nodes:
      - conv: {op: conv2d, out: out, kernel: 1, stride: stride, bias: false}
      - bn: {op: batch_norm}
  unit:
    params: {width: int}
    nodes:
      - conv: {op: conv2d, out: width, kernel: 3, padding: 1}
      - downsample: {block: conv_bn, in: input, out: width}
      - add: {op: add, in: [conv, downsample]}
layers:
  - layer1: {block: unit, repeat: 2, width: 16}
"""

# Specs whose generated PyTorch models take their twin's state_dict as it is.
LOADS_TWIN = [
    ("resnet18", "torchvision", "resnet18"),
    ("resnet34", "torchvision", "resnet34"),
    ("resnet50", "torchvision", "resnet50"),
    ("resnet101", "torchvision", "resnet101"),
    ("resnet152", "torchvision", "resnet152"),
    ("resnext50", "torchvision", "resnext50_32x4d"),
    ("wide_resnet50", "torchvision", "wide_resnet50_2"),
    ("inception_v3", "torchvision", "inception_v3"),
    ("resnext101", "timm", "resnext101_32x4d"),
    ("se_resnet50", "timm", "seresnet50"),  # compiled with its twin's convention=timm
]


def compiled():
    return compile_spec("net.yaml", text=SPEC)


def test_layers_of_a_sequential_block_are_named_by_position():
    c = compiled()
    paths = [n.path for n in c.graph.nodes if ".downsample." in n.path]
    assert paths == ["layer1.0.downsample.0", "layer1.0.downsample.1", "layer1.1.downsample.0", "layer1.1.downsample.1"]
    keys = set(expected(c))
    assert {"layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_var"} <= keys
    assert not any(".conv." in k or ".bn." in k for k in keys if "downsample" in k)


def test_each_target_writes_a_container_of_unnamed_layers():
    model = build_model(compiled())
    code = {t: EMITTERS[t](model) for t in EMITTERS}
    assert "class ConvBN(nn.Sequential):" in code["pytorch"]
    assert "super().__init__(\n            nn.Conv2d(" in code["pytorch"]
    assert "class ConvBN(chainer.ChainList):" in code["chainer"]
    assert "self.layers = [" in code["tensorflow"] and 'name=f"{name}.1"' in code["tensorflow"]
    assert 'name=f"{name}.0"' in code["keras"]
    assert "self.conv" not in code["pytorch"].split("class ConvBN")[1].split("class Unit")[0]


@pytest.mark.slow
@pytest.mark.parametrize("spec,library,model", LOADS_TWIN, ids=[s for s, _, _ in LOADS_TWIN])
def test_generated_pytorch_loads_the_twins_state_dict(spec, library, model, tmp_path):
    """``model.load_state_dict(twin.state_dict())`` with strict keys, then the same logits."""
    import torch

    twin_spec = next(
        t for t in compile_spec(SPECS / f"{spec}.yaml").spec.twins if (t.library, t.model) == (library, model)
    )
    source = T.Source(library, model, dict(twin_spec.config))
    compiled = compile_spec(SPECS / f"{spec}.yaml", twin_spec.sets)
    shape = (3, 75, 75) if spec == "inception_v3" else (3, 64, 64)
    twin = T.build_twin(source, shape).eval()
    kwargs = {"logits": True} if has_logits_switch(compiled.graph) else {}  # the twins return logits
    # the committed file, or the spec compiled with the twin's --set values (a convention)
    module = generate(compiled, ["pytorch"], tmp_path)["pytorch"] if twin_spec.sets else load_generated(spec, "pytorch")
    ours = getattr(module, class_name(spec))(**kwargs).eval()
    torch.manual_seed(0)
    state = twin.state_dict()
    for key, value in state.items():  # statistics that are not the defaults, so that a mix-up shows
        if key.endswith(("running_mean", "running_var")):
            value.copy_(torch.rand_like(value) + (0.5 if key.endswith("var") else -0.5))
    twin.load_state_dict(state)
    ours.load_state_dict(state, strict=True)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, *shape), dtype=np.float32))
    with torch.no_grad():
        want, got = twin(x), ours(x)
    got = got[0] if isinstance(got, tuple) else got  # inception_v3: (logits, aux logits or None)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
