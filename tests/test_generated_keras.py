"""Run the committed Keras code of every spec and hold it to the IR.

For each spec: import generated/<name>/<name>_keras.py, build the model, run
a random batch of 2 at the spec's input size (channels last), and check the
output shapes, the parameter counts (trainable, and batch-norm moving
statistics) and the output shape of every block and stage against archspec's
own inference. Layers are named by IR path, so a block's output is the layer
named like the node that produces it.
"""

from __future__ import annotations

import math

import pytest

from archspec.codegen.model import class_name
from archspec.pipeline import compile_spec
from tests.conftest import SPEC_NAMES, SPECS, channels_last, load_generated

keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")


@pytest.mark.slow
@pytest.mark.parametrize("name", SPEC_NAMES)
def test_keras_model_matches_ir(name: str) -> None:
    compiled = compile_spec(SPECS / f"{name}.yaml")
    graph, total = compiled.graph, compiled.counts.total
    model = getattr(load_generated(name, "keras"), class_name(name))()

    x = np.random.default_rng(0).standard_normal((2, *channels_last(graph.input_shape))).astype("float32")
    out = model(x, training=False)
    outs = out if isinstance(out, (list, tuple)) else [out]
    assert [tuple(o.shape) for o in outs] == [(2, *channels_last(s)) for s in graph.output_shapes]

    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    frozen = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    assert (trainable, frozen) == (total.trainable, total.non_trainable)
    assert model.count_params() == total.total

    for inst in graph.instances:
        layer = model.get_layer(inst.output)
        assert tuple(layer.output.shape[1:]) == channels_last(inst.shape), inst.path
