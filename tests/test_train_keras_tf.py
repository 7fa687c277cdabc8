"""The Keras and TensorFlow trainers: they learn, they report every step, they save
and resume, and a training step is PyTorch's step (same loss, same updated
weights) from the same canonical weights on the same batch, dropout off.

TINY is a small network with what LeNet lacks: batch norm, dropout, a final
softmax and an auxiliary classifier (``aux_logits``), at 12x12 so it is fast.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from archspec import runtime
from archspec import weights as W
from archspec.codegen.model import class_name, has_logits_switch
from archspec.pipeline import compile_spec
from archspec.training import data as D
from archspec.training import keras as keras_trainer
from archspec.training import run
from archspec.training.core import Setup, TrainingError, scores
from archspec.weights import random_weights
from tests.conftest import SPECS

pytestmark = [
    pytest.mark.slow,
    # Keras 3 on TensorFlow 2.21 under numpy 2, converting tensors: nothing to act on here
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]

TARGETS = ("keras", "tensorflow")
TOLERANCE = 1e-5  # relative to the largest value of the reference tensor or loss

TINY = """\
name: tiny
source: A small network with batch norm, dropout and an auxiliary classifier, for training tests.
input: [3, 12, 12]
params:
  num_classes: 3
  aux_logits: {type: bool, default: true, doc: build the auxiliary classifier}
blocks:
  head:
    doc: An auxiliary classifier.
    params: {}
    nodes:
      - pool: {op: avg_pool2d, kernel: 4, stride: 4}
      - flatten: {op: flatten}
      - fc: {op: dense, out: num_classes}
      - prob: {op: softmax}
layers:
  - conv1: {op: conv2d, out: 8, kernel: 3, padding: 1}
  - bn1: {op: batch_norm}
  - act1: {op: relu}
  - aux: {block: head, in: act1, when: aux_logits}
  - pool: {op: max_pool2d, in: act1, kernel: 2, stride: 2}
  - conv2: {op: conv2d, out: 8, kernel: 3}
  - bn2: {op: batch_norm}
  - act2: {op: relu}
  - flatten: {op: flatten}
  - drop: {op: dropout, rate: 0.5}
  - fc: {op: dense, out: num_classes}
  - prob: {op: softmax}
outputs: [prob, aux]
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY)
    return path


def make(target: str, compiled, directory: Path, **options):
    """A trainer of ``compiled`` in ``target`` (dropout off unless asked)."""
    outputs = run.task_of(compiled).outputs
    setup = Setup(
        num_classes=int(compiled.graph.params["num_classes"]),
        logits=has_logits_switch(compiled.graph),
        outputs=outputs,
        **{"dropout": False, **options},
    )
    directory.mkdir(parents=True, exist_ok=True)
    return run.trainer_for(target, run.generate(compiled, target, directory), compiled, setup)


def lenet(num_classes: int = 10):
    return compile_spec(SPECS / "lenet.yaml", {"num_classes": str(num_classes)})


def digits(compiled, n: int = 96) -> D.Dataset:
    return D.load("digits", compiled.graph.input_shape, split="train", warn=print).subset(range(n))


def close(got: np.ndarray, want: np.ndarray) -> bool:
    want = np.asarray(want, np.float64)
    return bool(np.abs(np.asarray(got, np.float64) - want).max() <= TOLERANCE * np.abs(want).max() + 1e-7)


class Recorder:
    """A monitor that only records what fit reports."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, float, int, int]] = []

    def step(self, step: int, loss: float, correct: int, n: int) -> None:
        self.steps.append((step, loss, correct, n))


# ----------------------------------------------------------------------------
# Runs


@pytest.mark.parametrize("target", TARGETS)
def test_lenet_learns_the_digits_and_its_checkpoints_load(target, tmp_path):
    # benchmarks/train_lenet.py's settings. Momentum at lr 0.1 diverges from Keras' and TF's own (Glorot)
    # initial weights; from PyTorch's initial weights it reaches 90% in both, as in PyTorch
    out = tmp_path / "run"
    options = run.Options(
        spec=str(SPECS / "lenet.yaml"), target=target, iters=300, lr=0.003, optimizer="adam", out=str(out), quiet=True
    )
    result = run.train(options, echo=lambda m: None)
    assert result.status == "done" and result.step == 300
    assert result.summary["test_accuracy"] > 0.9, result.summary

    # weights.npz and the native checkpoint, each in a fresh model of the run's code, give the run's test accuracy
    compiled = lenet()
    rt = runtime.get(target)
    path = out / f"lenet_{target}.py"
    spec = importlib.util.spec_from_file_location(f"trained_lenet_{target}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    from_npz, from_native = (rt.build(module, class_name("lenet"), num_classes=10, logits=True) for _ in range(2))
    rt.load_weights(from_npz, W.load(out / "weights.npz", compiled))
    if target == "keras":
        from_native.load_weights(out / "model.weights.h5")
        assert (out / "optimizer.npz").is_file()
    else:
        import tensorflow as tf

        tf.train.Checkpoint(model=from_native).restore(tf.train.latest_checkpoint(out / "checkpoint")).expect_partial()
    test = D.load("digits", compiled.graph.input_shape, split="test", warn=print)
    predictions = [scores(lambda x, m=m: rt.run(m, x)[0], test) for m in (from_npz, from_native)]
    assert predictions[0] == predictions[1]
    assert predictions[0]["accuracy"] == pytest.approx(result.summary["test_accuracy"], abs=1e-9)

    resumed = run.train(run.Options(spec=options.spec, target=target, iters=310, quiet=True), resume=out)
    assert resumed.status == "done" and resumed.step == 310
    assert run.read_run(out)["step"] == 310
    assert resumed.summary["test_accuracy"] > 0.85


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("aux", [True, False], ids=["aux", "no_aux"])
def test_a_network_with_batch_norm_and_aux_heads_learns(target, aux, tiny, tmp_path):
    sets = ("num_classes=10",) if aux else ("num_classes=10", "aux_logits=false")
    options = run.Options(spec=str(tiny), target=target, iters=60, lr=0.05, sets=sets, out=str(tmp_path), quiet=True)
    result = run.train(options, echo=lambda m: None)
    assert result.status == "done"
    assert result.summary["test_accuracy"] > 0.7, result.summary


@pytest.mark.parametrize("target", TARGETS)
def test_fit_takes_exactly_the_steps_asked_and_reports_each_ones_own_loss(target, tmp_path):
    """fit from step 4 to 10 over 96 images in batches of 16 (an epoch boundary
    included), replayed batch by batch with train_step from the same weights."""
    compiled = lenet()
    data = digits(compiled)
    trainer = make(target, compiled, tmp_path, optimizer="momentum", lr=0.05)
    start_weights = trainer.export()
    recorder = Recorder()
    trainer.fit(data, 16, 4, 10, recorder)
    assert [s[0] for s in recorder.steps] == list(range(5, 11))
    assert all(n == 16 for *_, n in recorder.steps)

    replay = make(target, compiled, tmp_path, optimizer="momentum", lr=0.05)
    replay.load(start_weights)
    if target == "keras":
        from archspec.training.keras import Batches

        batches = Batches(data, 16, 6, replay.setup.seed + 4, lambda y: y)
        pairs = [(runtime.channels_first(x), y) for x, y in (batches[i] for i in range(len(batches)))]
    else:
        pairs = [(runtime.channels_first(x.numpy()), y.numpy()) for x, y in replay.batches(data, 16, 4, 10)]
    assert len(pairs) == 6
    for (_, loss, correct, _), (x, y) in zip(recorder.steps, pairs, strict=True):
        expected_correct = int((replay.predict(x).argmax(1) == y).sum())  # lenet: training mode = inference
        assert replay.train_step(x, y) == pytest.approx(loss, rel=TOLERANCE)
        assert correct == expected_correct
    assert all(close(replay.export()[k], v) for k, v in trainer.export().items())


@pytest.mark.parametrize("target", TARGETS)
def test_one_step_lowers_the_loss_on_a_fixed_batch(target, tmp_path):
    compiled = lenet()
    data = digits(compiled, 32)
    trainer = make(target, compiled, tmp_path, optimizer="sgd", lr=0.01)
    x, y = data.batch(range(32)), data.labels
    before = trainer.train_step(x, y)
    after = trainer.train_step(x, y)
    assert after < before


# ----------------------------------------------------------------------------
# A step is PyTorch's step


CASES = [
    ("lenet", "sgd", 0.1, {}),
    ("lenet", "momentum", 0.1, {}),
    ("tiny", "sgd", 0.1, {}),
    ("tiny", "momentum", 0.1, {}),
    ("tiny", "momentum", 0.1, {"aux_logits": "false"}),
]


def same_steps(target: str, compiled, optimizer: str, lr: float, tmp_path: Path, steps: int = 3):
    """(losses, trained weights) of PyTorch and of ``target`` from the same weights and batches."""
    weights = random_weights(compiled, 0)
    rng = np.random.default_rng(1)
    classes = int(compiled.graph.params["num_classes"])
    shape = (4, *compiled.graph.input_shape)
    batches = [(rng.random(shape, dtype=np.float32), rng.integers(0, classes, 4)) for _ in range(steps)]
    found = []
    for t in ("pytorch", target):
        trainer = make(t, compiled, tmp_path / t, optimizer=optimizer, lr=lr)
        trainer.load(weights)
        found.append(([trainer.train_step(x, y) for x, y in batches], trainer.export()))
    return found


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(
    ("name", "optimizer", "lr", "sets"), CASES, ids=[f"{c[0]}-{c[1]}" + ("-no_aux" if c[3] else "") for c in CASES]
)
def test_a_training_step_is_pytorchs(target, name, optimizer, lr, sets, tiny, tmp_path):
    path = SPECS / "lenet.yaml" if name == "lenet" else tiny
    compiled = compile_spec(path, sets)
    (want_losses, want), (losses, got) = same_steps(target, compiled, optimizer, lr, tmp_path)
    assert losses == pytest.approx(want_losses, rel=TOLERANCE)
    assert set(got) == set(want)
    wrong = [k for k in want if not close(got[k], want[k])]
    assert not wrong, wrong


@pytest.mark.parametrize("target", TARGETS)
def test_adam_is_pytorchs(target, tmp_path, monkeypatch):
    """Epsilon where PyTorch adds it. Where a gradient is of the order of epsilon
    (~1e-7 in lenet's fc1 here) its float32 rounding moves Adam's step by a
    fraction of a percent of lr, so the weights are compared at 1% of lr;
    Keras' stock Adam (epsilon before the bias correction) is 66% of lr away."""
    lr = 0.01

    def worst(found) -> float:
        (_, want), (_, got) = found
        return max(float(np.abs(got[k] - want[k]).max()) for k in want)

    found = same_steps(target, lenet(5), "adam", lr, tmp_path / "ours")
    (want_losses, _), (losses, _) = found
    assert losses == pytest.approx(want_losses, rel=TOLERANCE)
    assert worst(found) < 0.01 * lr
    if target == "keras":
        from archspec.training import keras as trainer

        monkeypatch.setattr(trainer, "Adam", trainer.keras.optimizers.Adam)
        assert worst(same_steps(target, lenet(5), "adam", lr, tmp_path / "stock")) > 0.1 * lr


def test_keras_batch_norm_running_variance_is_pytorchs(tiny, tmp_path, monkeypatch):
    """keras.layers.BatchNormalization updates moving_variance with the biased batch
    variance; the trainer brings it to PyTorch's unbiased one after every step."""
    (_, want), (_, got) = same_steps("keras", compile_spec(tiny), "sgd", 0.1, tmp_path, steps=1)
    assert close(got["bn2.running_var"], want["bn2.running_var"])
    monkeypatch.setattr(keras_trainer.UnbiasedMovingVariance, "correct", lambda self, batch_size: None)
    (_, want), (_, got) = same_steps("keras", compile_spec(tiny), "sgd", 0.1, tmp_path / "stock", steps=1)
    assert not close(got["bn2.running_var"], want["bn2.running_var"])  # Keras' own convention differs


@pytest.mark.parametrize("target", TARGETS)
def test_dropout_is_on_unless_switched_off(target, tiny, tmp_path):
    compiled = compile_spec(tiny, {"aux_logits": "false"})
    weights = random_weights(compiled, 0)
    x = np.random.default_rng(2).random((8, 3, 12, 12), dtype=np.float32)
    y = np.arange(8) % 3
    losses = []
    for dropout in (False, False, True):
        trainer = make(target, compiled, tmp_path / str(dropout), dropout=dropout, optimizer="sgd")
        trainer.load(weights)
        losses.append(trainer.train_step(x, y))
    assert losses[0] == losses[1] and losses[2] != losses[0]


# ----------------------------------------------------------------------------
# The optimizer's state


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_restore_brings_back_the_optimizer_state(target, optimizer, tmp_path):
    """After save and restore, a step is the step the saved trainer would take;
    without restore it is not (the momentum or Adam's moments start over)."""
    compiled = lenet()
    data = digits(compiled, 16)
    x, y = data.batch(range(16)), data.labels
    trained = make(target, compiled, tmp_path / "a", optimizer=optimizer, lr=0.01)
    for _ in range(2):
        trained.train_step(x, y)
    trained.save(tmp_path)
    assert (tmp_path / trained.native).exists()
    resumed, fresh = (make(target, compiled, tmp_path / d, optimizer=optimizer, lr=0.01) for d in "bc")
    for t in (resumed, fresh):
        t.load(trained.export())
    resumed.restore(tmp_path)
    for t in (trained, resumed, fresh):
        t.train_step(x, y)
    want = trained.export()
    assert all(close(resumed.export()[k], v) for k, v in want.items())
    assert not all(close(fresh.export()[k], v) for k, v in want.items())


@pytest.mark.parametrize("target", TARGETS)
def test_restore_refuses_a_missing_or_foreign_optimizer_state(target, tmp_path):
    compiled = lenet()
    with pytest.raises(TrainingError, match="optimizer|checkpoint"):
        make(target, compiled, tmp_path / "a", optimizer="momentum").restore(tmp_path / "nothing")
    make(target, compiled, tmp_path / "b", optimizer="sgd").save(tmp_path)
    with pytest.raises(TrainingError, match="optimizer"):
        make(target, compiled, tmp_path / "c", optimizer="adam").restore(tmp_path)
