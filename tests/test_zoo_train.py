"""Zoo networks train alike in the four frameworks: one ``verify --train``
step per spec (batch 4, all four targets in one call) at ``train_input``: the
cheap input of tests/conftest.py, larger where a batch norm would see 1x1 maps.
There, with four values per channel, training amplifies float32 rounding until
PyTorch's own float32 step differs from its float64 step by 12% (shufflenet_v1
at 32x32) and no comparison can tell a wrong step from it.

WaveNet is refused: its output scores every time step, (classes, length), and
archspec train knows image classifiers and per-pixel segmentation only.

benchmarks/train_zoo.py prints the same runs as a table, with times.
"""

from __future__ import annotations

import numpy as np
import pytest

from archspec.pipeline import compile_spec
from archspec.training.core import TrainingError
from archspec.training.equivalence import explain, format_table, rounding_of, verify_training
from archspec.verify import Comparison, TargetReport
from tests.conftest import SPECS, train_input

# The training paths that tests/test_verify_train.py does not step: dropout (NIN),
# LRN (ZFNet-GAP), drop path, layer norm, layer scale and GELU (ConvNeXt), squeeze-
# excitation and SiLU (EfficientNet-B0), hard swish (MobileNetV3), transposed
# convolution and the per-pixel loss (U-Net), separable convolution (Xception).
# The whole zoo takes over 15 minutes on 2 cores (DenseNet-121 at 64x64: 49 s):
# benchmarks/train_zoo.py runs it.
COVERING = ["nin", "zfnet_gap", "convnext_tiny", "efficientnet_b0", "mobilenet_v3_small", "unet", "xception"]


@pytest.mark.slow
@pytest.mark.parametrize("name", COVERING)
def test_zoo_trains_alike(name: str) -> None:
    compiled = compile_spec(SPECS / f"{name}.yaml", {"num_classes": "5"}, input_shape=train_input(name))
    report = verify_training(compiled, steps=1, batch=4)
    assert [t.target for t in report.targets] == ["pytorch", "tensorflow", "keras", "chainer"]
    assert report.ok, format_table(report)
    for t in report.targets[1:]:
        assert {"loss", "weights"} <= {c.kind for c in t.comparisons}, t.target


def test_a_sequence_model_is_refused_with_the_reason() -> None:
    with pytest.raises(TrainingError, match=r"wavenet's outputs have shapes \[\[5, 16000\]\]"):
        verify_training(compile_spec(SPECS / "wavenet.yaml", {"num_classes": "5"}), steps=1)


def test_rounding_is_the_reference_float32_against_float64() -> None:
    float32 = ([2.0, 1.5], {"a.weight": [1.0, 2.0], "a.running_var": [1.0]})
    float64 = ([2.0, 1.25], {"a.weight": [1.0, 2.5], "a.running_var": [0.5]})
    as_arrays = [(losses, {k: np.array(v) for k, v in t.items()}) for losses, t in (float32, float64)]
    assert rounding_of(*as_arrays) == {
        ("loss", "step 1"): 0.0,
        ("loss", "step 2"): 0.25,
        ("weights", "a.weight"): 0.5,
        ("statistics", "a.running_var"): 0.5,
    }


def failing(diff: float) -> TargetReport:
    t = TargetReport("chainer", comparisons=[Comparison("a.weight", "weights", diff, 1.0, 0.001, False)])
    t.problems.append("weights a.weight: above the tolerance")
    return t


def test_a_difference_within_twice_the_rounding_is_inconclusive() -> None:
    t = failing(0.005)
    explain(t, {("weights", "a.weight"): 0.003})
    assert t.problems[0].startswith("inconclusive: float32 rounding alone moves the reference's own steps by up to")


def test_a_difference_beyond_the_rounding_stays_a_difference() -> None:
    t = failing(0.5)
    explain(t, {("weights", "a.weight"): 0.003})
    assert len(t.problems) == 1 and not t.problems[0].startswith("inconclusive")
    t = failing(0.005)
    t.problems.append("tensors not in both models: b.weight")  # not a rounding matter
    explain(t, {("weights", "a.weight"): 0.003})
    assert not t.problems[0].startswith("inconclusive")
