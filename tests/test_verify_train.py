"""archspec verify --train: the four frameworks take the same training steps.

The networks the issue names, at inputs small enough for CI: LeNet, AlexNet
(LRN; dropout off), VGG16-BN, ResNet-18, MobileNetV2 and GoogLeNet (auxiliary
heads in the loss; its 7x7 average pool needs the full 224x224).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from archspec.cli import main
from archspec.pipeline import compile_spec
from archspec.training import equivalence, run
from tests.conftest import SPECS

# (spec, input, optimizer, steps, batch). Batch-norm networks run at inputs whose
# last feature maps are 2x2 or larger and for few steps at lr 0.001: there,
# float32 rounding alone moves PyTorch's own trained weights by less than 2e-4
# of their size (at 32x32, where the last batch norm sees 4 values, by 18%).
CASES = [
    ("lenet", (3, 32, 32), "sgd", 3, 4),
    ("lenet", (3, 32, 32), "adam", 2, 4),
    ("alexnet", (3, 99, 99), "momentum", 2, 4),
    ("vgg16_bn", (3, 64, 64), "momentum", 1, 8),
    ("resnet18", (3, 64, 64), "momentum", 3, 8),
    ("mobilenet_v2", (3, 64, 64), "momentum", 1, 8),
    ("googlenet", (3, 224, 224), "momentum", 1, 2),
]
IDS = [f"{name}-{optimizer}" for name, _, optimizer, _, _ in CASES]


def compiled(name: str, input_shape):
    return compile_spec(SPECS / f"{name}.yaml", {"num_classes": "5"}, input_shape=input_shape)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "input_shape", "optimizer", "steps", "batch"), CASES, ids=IDS)
def test_four_frameworks_train_alike(name, input_shape, optimizer, steps, batch):
    report = equivalence.verify_training(compiled(name, input_shape), steps=steps, optimizer=optimizer, batch=batch)
    assert [t.target for t in report.targets] == ["pytorch", "tensorflow", "keras", "chainer"]
    assert report.ok, equivalence.format_table(report)
    for t in report.targets[1:]:
        kinds = {c.kind for c in t.comparisons}
        assert {"loss", "weights"} <= kinds, t.target
        assert len([c for c in t.comparisons if c.kind == "loss"]) == steps
    losses = report.losses["pytorch"]
    assert len(losses) == steps and all(x > 0 for x in losses)


@pytest.mark.slow
def test_batch_norm_statistics_are_compared():
    report = equivalence.verify_training(compiled("resnet18", (3, 64, 64)), ["keras"], steps=1, batch=8)
    stats = [c for c in report.targets[1].comparisons if c.kind == "statistics"]
    assert len(stats) == 2 * 20  # running mean and variance of resnet18's 20 batch norms
    assert report.ok


@pytest.mark.slow
def test_a_target_that_trains_differently_fails(monkeypatch):
    """A doubled learning rate in one target: same first loss, other weights."""
    real = run.trainer_for

    def skewed(target, module, compiled, setup):
        if target == "chainer":
            setup = dataclasses.replace(setup, lr=setup.lr * 2)
        return real(target, module, compiled, setup)

    monkeypatch.setattr(equivalence, "trainer_for", skewed)
    report = equivalence.verify_training(compiled("lenet", (3, 32, 32)), ["chainer"], steps=2, optimizer="sgd")
    assert not report.ok
    chainer = report.targets[1]
    assert any(p.startswith("weights ") for p in chainer.problems)
    assert "FAIL" in equivalence.format_table(report)


@pytest.mark.slow
def test_the_command_prints_a_table_and_json():
    args = ["verify", str(SPECS / "lenet.yaml"), "--train", "--steps", "2", "--targets", "pytorch,keras"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "2 momentum steps at lr 0.001, dropout off" in result.output
    assert "keras" in result.output and "pass" in result.output
    result = CliRunner().invoke(main, [*args, "--json"])
    document = json.loads(result.output)
    assert document["ok"] and document["specs"][0]["mode"] == "train"
    assert len(document["specs"][0]["losses"]["keras"]) == 2


def test_trace_and_train_exclude_each_other():
    result = CliRunner().invoke(main, ["verify", str(SPECS / "lenet.yaml"), "--train", "--trace"])
    assert result.exit_code == 2 and "--trace compares inference only" in result.output


@pytest.mark.slow
def test_grouped_convolutions_train_in_every_target(tmp_path):
    """A grouped convolution with explicit padding behind another layer needs the
    gradient of its input, which TensorFlow's CPU kernels lack (the generated
    code compiles it with XLA, as Keras does): ResNeXt and RegNet train in
    TensorFlow too."""
    spec = tmp_path / "grouped.yaml"
    spec.write_text(
        "name: grouped\nsource: test\ninput: [3, 8, 8]\nparams: {num_classes: 3}\nlayers:\n"
        "  - stem: {op: conv2d, out: 8, kernel: 1}\n"
        "  - conv: {op: conv2d, out: 8, kernel: 3, stride: 2, padding: 1, groups: 4}\n"
        "  - pool: {op: global_avg_pool}\n  - fc: {op: dense, out: num_classes}\n"
    )
    report = equivalence.verify_training(compile_spec(spec), steps=2, batch=4)
    assert [t.target for t in report.targets] == ["pytorch", "tensorflow", "keras", "chainer"]
    assert report.ok, equivalence.format_table(report)
