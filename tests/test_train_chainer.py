"""The Chainer trainer: it learns, its steps are PyTorch's, its checkpoints round-trip.

Steps are compared with the PyTorch trainer from the same canonical weights on
the same batch (dropout off): losses, weights and batch-norm statistics within
``RTOL`` of the largest value of each tensor. Batch 16 for ResNet-18 at 32x32:
at batch 4 or 8 a pre-activation within float32 rounding of zero sends a
gradient through one ReLU in one float32 framework and not in the other (the
float64 gradients of the two agree to 1e-14), and the next step spreads it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from archspec import runtime
from archspec.codegen.model import has_logits_switch
from archspec.pipeline import compile_spec
from archspec.training.core import Setup, TrainingError, cross_entropy, scores
from archspec.training.data import load
from archspec.training.run import Options, generate, task_of, train, trainer_for
from archspec.weights import load as load_weights
from archspec.weights import random_weights
from tests.conftest import SPECS, load_generated

pytestmark = pytest.mark.slow

RTOL = 1e-5

TINY = """
name: tiny
source: A small network with batch norm at two momenta and dropout.
input: [1, 12, 12]
params:
  num_classes: 4
layers:
  - conv1: {op: conv2d, out: 6, kernel: 3}
  - bn1: {op: batch_norm}
  - act1: {op: relu}
  - pool1: {op: max_pool2d, kernel: 2, stride: 2}
  - conv2: {op: conv2d, out: 8, kernel: 3}
  - bn2: {op: batch_norm, eps: 0.001, momentum: 0.01}
  - act2: {op: relu}
  - flatten: {op: flatten}
  - drop: {op: dropout, rate: 0.5}
  - fc: {op: dense, out: num_classes}
  - prob: {op: softmax}
"""


def compiled_for(name: str, input_shape=None):
    if name == "tiny":
        return compile_spec("tiny.yaml", text=TINY)
    return compile_spec(SPECS / f"{name}.yaml", input_shape=input_shape)


def setup_for(compiled, **options) -> Setup:
    task, logits = task_of(compiled), has_logits_switch(compiled.graph)
    return Setup(num_classes=task.num_classes, logits=logits, outputs=task.outputs, **options)


def trainers(compiled, setup, tmp_path, targets=("pytorch", "chainer")) -> dict:
    """Trainers of each target, holding the same canonical weights."""
    weights = random_weights(compiled, 0)
    tmp_path.mkdir(exist_ok=True)
    found = {}
    for target in targets:
        trainer = trainer_for(target, generate(compiled, target, tmp_path), compiled, setup)
        trainer.load(weights)
        found[target] = trainer
    return found


def batch(compiled, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    num_classes = task_of(compiled).num_classes
    return rng.random((n, *compiled.graph.input_shape), dtype=np.float32), rng.integers(0, num_classes, n)


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key, ref in want.items():
        diff = float(np.abs(got[key] - ref).max())
        assert diff <= RTOL * float(np.abs(ref).max()) + 1e-8, f"{key}: max |diff| {diff:.3g}"


# ----------------------------------------------------------------------------
# Learning


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """300 Adam steps of LeNet on the built-in digits, as the benchmark trains it."""
    out = tmp_path_factory.mktemp("runs") / "lenet"
    options = Options(
        spec=str(SPECS / "lenet.yaml"), target="chainer", iters=300, lr=0.003, optimizer="adam", threads=1, out=str(out)
    )
    return train(replace(options, quiet=True), echo=lambda m: None)


def test_lenet_learns_the_digits(lenet_run):
    assert lenet_run.status == "done" and lenet_run.step == 300
    assert lenet_run.summary["test_accuracy"] > 0.9
    assert lenet_run.summary["versions"]["chainer"] == "7.8.1"
    assert {"model.npz", "optimizer.npz", "weights.npz", "lenet_chainer.py"} <= {
        p.name for p in lenet_run.run_dir.iterdir()
    }


def test_threads_limit_numpys_blas(lenet_run):
    from threadpoolctl import threadpool_info

    assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"} == {1}


def test_both_checkpoints_load_into_the_standalone_file(lenet_run):
    """weights.npz and model.npz give the same model, with the run's test accuracy."""
    run_dir = lenet_run.run_dir
    info = json.loads((run_dir / "run.json").read_text())
    compiled = compile_spec(SPECS / "lenet.yaml", {"num_classes": str(info["num_classes"])})
    module = load_generated("lenet", "chainer", root=run_dir.parent)
    rt = runtime.get("chainer")
    from_native = module.LeNet(num_classes=10, logits=True)
    module.chainer.serializers.load_npz(run_dir / "model.npz", from_native)
    from_canonical = module.LeNet(num_classes=10, logits=True)
    rt.load_weights(from_canonical, load_weights(run_dir / "weights.npz", compiled))
    test = load("digits", compiled.graph.input_shape, split="test", warn=lambda m: None)
    x = test.batch(np.arange(64))
    np.testing.assert_array_equal(rt.run(from_native, x)[0], rt.run(from_canonical, x)[0])
    accuracy = scores(lambda x: rt.run(from_native, x)[0], test)["accuracy"]
    assert accuracy == pytest.approx(info["test_accuracy"], abs=1e-6)


def test_a_resumed_run_continues_from_its_step(lenet_run, tmp_path):
    run_dir = tmp_path / "resumed"
    shutil.copytree(lenet_run.run_dir, run_dir)
    options = Options(spec=str(SPECS / "lenet.yaml"), target="chainer", iters=310, quiet=True)
    result = train(options, resume=run_dir, echo=lambda m: None)
    assert result.status == "done" and result.step == 310
    info = json.loads((run_dir / "run.json").read_text())
    assert info["step"] == 310 and info["options"]["optimizer"] == "adam"
    steps = [int(line.split(",")[0]) for line in (run_dir / "metrics.csv").read_text().splitlines()[1:]]
    assert steps[:20] == list(range(15, 301, 15)) and steps[-1] == 310
    assert info["test_accuracy"] > 0.9  # it went on from the trained weights


def test_one_step_lowers_the_loss_on_its_batch(tmp_path):
    compiled = compiled_for("lenet")
    trainer = trainers(compiled, setup_for(compiled, optimizer="sgd", lr=0.01), tmp_path, ["chainer"])["chainer"]
    x, y = batch(compiled, 16)
    before = float(cross_entropy(trainer.predict(x), y).mean())
    assert trainer.train_step(x, y) == pytest.approx(before, rel=1e-5)
    assert float(cross_entropy(trainer.predict(x), y).mean()) < before


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_the_optimizer_state_round_trips(optimizer, tmp_path):
    """A trainer restored from save() takes the next step as the saved one does."""
    compiled = compiled_for("lenet")
    setup = setup_for(compiled, optimizer=optimizer, lr=0.01)
    saved = trainers(compiled, setup, tmp_path / "a", ["chainer"])["chainer"]
    for seed in range(3):
        saved.train_step(*batch(compiled, 8, seed))
    saved.save(tmp_path)
    restored = trainers(compiled, setup, tmp_path / "b", ["chainer"])["chainer"]
    restored.load(saved.export())
    restored.restore(tmp_path)
    assert restored.optimizer.t == saved.optimizer.t == 3
    x, y = batch(compiled, 8, 3)
    assert restored.train_step(x, y) == saved.train_step(x, y)
    assert_same(restored.export(), saved.export())
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == ["model.npz", "optimizer.npz"]  # no temporary files


# ----------------------------------------------------------------------------
# The same steps as PyTorch's


@pytest.mark.parametrize(
    ("name", "input_shape", "optimizer", "lr", "n"),
    [
        ("lenet", None, "sgd", 0.1, 8),
        ("lenet", None, "momentum", 0.1, 8),
        ("lenet", None, "adam", 0.01, 8),  # Chainer's epsilon moved to PyTorch's place
        ("tiny", None, "sgd", 0.1, 8),
        ("tiny", None, "momentum", 0.1, 8),
        ("resnet18", (3, 32, 32), "sgd", 0.01, 16),
        ("resnet18", (3, 32, 32), "momentum", 0.01, 16),
    ],
)
def test_steps_match_pytorchs(name, input_shape, optimizer, lr, n, tmp_path):
    compiled = compiled_for(name, input_shape)
    setup = setup_for(compiled, optimizer=optimizer, lr=lr, dropout=False)
    found = trainers(compiled, setup, tmp_path)
    x, y = batch(compiled, n)
    losses = {t: [trainer.train_step(x, y) for _ in range(2)] for t, trainer in found.items()}
    np.testing.assert_allclose(losses["chainer"], losses["pytorch"], rtol=RTOL)
    assert losses["chainer"][1] != losses["chainer"][0]
    assert_same(found["chainer"].export(), found["pytorch"].export())


@pytest.mark.parametrize(
    ("name", "optimizer", "steps"), [("resnet18", "momentum", 3), ("mobilenet_v2", "adam", 2)], ids=["resnet18", "mv2"]
)
def test_steps_match_pytorchs_in_float64(name, optimizer, steps, tmp_path):
    """verify --train's batch-4 cases, where float32 rounding grows step by step
    (PyTorch's own float32 weights end up 18% from its float64 ones): in float64
    the formulas alone decide, and they agree."""
    import torch

    from archspec.training.pytorch import optimizer_for

    compiled = compile_spec(SPECS / f"{name}.yaml", {"num_classes": "5"}, input_shape=(3, 32, 32))
    setup = setup_for(compiled, optimizer=optimizer, lr=0.01, dropout=False)
    weights = random_weights(compiled, 0)
    data = [batch(compiled, 4, seed) for seed in range(steps)]
    reference = trainer_for("pytorch", generate(compiled, "pytorch", tmp_path), compiled, setup)
    reference.load(weights)
    model = reference.model.double().train()
    optimizer = optimizer_for(optimizer, model.parameters(), setup.lr)
    want = []
    for x, y in data:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x).double()), torch.from_numpy(y))
        loss.backward()
        optimizer.step()
        want.append(loss.item())
    module = generate(compiled, "chainer", tmp_path)
    with module.chainer.using_config("dtype", np.float64):
        trainer = trainer_for("chainer", module, compiled, setup)
    trainer.load(weights)
    np.testing.assert_allclose([trainer.train_step(x, y) for x, y in data], want, rtol=1e-9)
    assert_same(trainer.export(), reference.export())  # both exported as float32


def test_dropout_off_is_the_identity_and_on_draws_masks(tmp_path):
    compiled = compiled_for("tiny")
    x, y = batch(compiled, 8)
    import chainer.functions as F

    dropout = F.dropout
    losses = {}
    for on in (False, True):
        for seed in (0, 1):
            setup = setup_for(compiled, optimizer="sgd", lr=0.1, dropout=on, seed=seed)
            losses[on, seed] = trainers(compiled, setup, tmp_path, ["chainer"])["chainer"].train_step(x, y)
    assert losses[False, 0] == losses[False, 1]
    assert losses[True, 0] != losses[True, 1]
    assert F.dropout is dropout


def test_predict_gives_logits_in_inference_mode(tmp_path):
    """Logits, not probabilities; dropout off and the running statistics used, not updated."""
    compiled = compiled_for("tiny")
    trainer = trainers(compiled, setup_for(compiled), tmp_path, ["chainer"])["chainer"]
    before = trainer.export()
    x, _ = batch(compiled, 4)
    logits = trainer.predict(x)
    assert logits.shape == (4, 4) and not np.allclose(logits.sum(axis=1), 1.0)
    np.testing.assert_array_equal(trainer.predict(x), logits)
    np.testing.assert_allclose(trainer.predict(x[:1])[0], logits[0], rtol=1e-5)  # no batch statistics
    assert_same(trainer.export(), before)


def test_a_missing_optimizer_state_is_a_clear_error(tmp_path):
    compiled = compiled_for("lenet")
    trainer = trainers(compiled, setup_for(compiled), tmp_path, ["chainer"])["chainer"]
    with pytest.raises(TrainingError, match="cannot read the optimizer's state from .*optimizer.npz"):
        trainer.restore(tmp_path)
    (tmp_path / "optimizer.npz").write_text("not an npz")
    with pytest.raises(TrainingError, match="the run cannot be resumed"):
        trainer.restore(tmp_path)
