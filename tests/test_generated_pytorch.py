"""Run the committed PyTorch code of every spec and hold it to the IR.

For each spec: import generated/<name>/<name>_pytorch.py, build the model,
run a random batch of 2 at the spec's input size in inference mode, and
check the output shapes, the parameter counts (trainable parameters and
batch-norm running statistics) and the output shape of every block and
stage against archspec's own inference.
"""

from __future__ import annotations

import pytest

from archspec.codegen.model import class_name
from archspec.passes.count import weights
from archspec.pipeline import compile_spec
from tests.conftest import SPEC_NAMES, SPECS, called_instances, load_generated

torch = pytest.importorskip("torch")


def first_shape(out) -> tuple[int, ...]:
    """A module's output shape without the batch; a block with several outputs: its first's."""
    return tuple((out[0] if isinstance(out, tuple) else out).shape[1:])


@pytest.mark.slow
@pytest.mark.parametrize("name", SPEC_NAMES)
def test_pytorch_model_matches_ir(name: str) -> None:
    compiled = compile_spec(SPECS / f"{name}.yaml")
    graph, total = compiled.graph, compiled.counts.total
    module = load_generated(name, "pytorch")
    model = getattr(module, class_name(name))().eval()

    seen: dict[str, tuple[int, ...]] = {}
    wanted = called_instances(compiled)
    for path, sub in model.named_modules():
        if path in wanted:
            sub.register_forward_hook(lambda m, i, o, path=path: seen.__setitem__(path, first_shape(o)))

    torch.manual_seed(0)
    with torch.no_grad():
        out = model(torch.randn(2, *graph.input_shape))
    outs = [o for o in (out if isinstance(out, tuple) else (out,)) if o is not None]  # None: a head switched off

    assert [tuple(o.shape) for o in outs] == [(2, *s) for s in graph.output_shapes]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    stats = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    assert (trainable, stats) == (total.trainable, total.non_trainable)
    # Every block and stage of the spec is a module of the same name and shape.
    assert seen == wanted
    # state_dict keys are the canonical weight keys: IR path + weight name.
    keys = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert keys == {f"{n.path}.{w.name}" for n in graph.nodes for w in weights(n)}
