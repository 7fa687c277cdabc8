"""The training options of seed 003 in every target: augmentation, lr schedules,
weight decay, early stopping (archspec/training/augment.py, core.py, run.py and
the four trainers), and ``archspec verify --train --weight-decay --schedule``."""

from __future__ import annotations

import dataclasses
import importlib
import json

import numpy as np
import pytest
from click.testing import CliRunner

from archspec.cli import main
from archspec.codegen.model import has_logits_switch
from archspec.pipeline import compile_spec
from archspec.training import augment as A
from archspec.training import equivalence, run
from archspec.training.core import STEP_GAMMA, Metrics, Setup, best_row, scheduled_lr, stalled
from archspec.training.run import Options, TrainingError
from tests.conftest import SPECS

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"  # Keras' save_weights
)
LENET = str(SPECS / "lenet.yaml")
TARGETS = ("pytorch", "tensorflow", "keras", "chainer")


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def batch(n: int = 6, shape=(3, 32, 32), seed: int = 0) -> np.ndarray:
    """Images whose left and right halves differ, so that a flip shows."""
    x = np.random.default_rng(seed).random((n, *shape), dtype=np.float32)
    x[..., : shape[-1] // 2] *= 0.5
    return x


# ----------------------------------------------------------------------------
# Augmentation (numpy only)


def test_augment_keeps_shape_dtype_and_range_and_is_a_function_of_seed_and_step():
    x = batch()
    every = ("crop", "flip", "brightness")
    y = A.augment(x, every, seed=3, step=7)
    assert y.shape == x.shape and y.dtype == np.float32
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert np.array_equal(y, A.augment(x.copy(), every, seed=3, step=7))
    assert not np.array_equal(y, A.augment(x, every, seed=3, step=8))
    assert not np.array_equal(y, A.augment(x, every, seed=4, step=7))
    assert np.array_equal(x, batch())  # the input is not modified


def test_augment_off_is_the_identity():
    x = batch()
    assert A.augment(x, (), seed=0, step=1) is x


def test_flip_mirrors_exactly_the_chosen_samples():
    x = batch(4)
    y = A.flip(x, np.array([True, False, True, False]))
    assert np.array_equal(y[0], x[0, :, :, ::-1]) and np.array_equal(y[2], x[2, :, :, ::-1])
    assert np.array_equal(y[1], x[1]) and np.array_equal(y[3], x[3])
    flipped = [not np.array_equal(s, t) for s, t in zip(A.augment(batch(200), ("flip",), 0, 1), batch(200))]
    assert 70 < sum(flipped) < 130  # p 0.5


def test_crop_keeps_the_size_and_shifts_the_image_over_zero_padding():
    x = batch(3, (1, 8, 8))
    pad = 2
    y = A.crop(x, np.array([pad, 0, 2 * pad]), np.array([pad, 0, 1]), pad)
    assert y.shape == x.shape
    assert np.array_equal(y[0], x[0])  # the centred window is the image
    assert np.array_equal(y[1, :, pad:, pad:], x[1, :, :-pad, :-pad])  # top-left window: zeros, then the image
    assert not y[1, :, :pad].any() and not y[1, :, :, :pad].any()
    assert np.array_equal(y[2, :, :-pad, 1:], x[2, :, pad:, : 8 - 1])
    assert A.crop_padding((3, 32, 32)) == 4 and A.crop_padding((3, 224, 224)) == 28


def test_brightness_scales_within_its_range_and_clips():
    x = np.full((400, 1, 2, 2), 0.5, np.float32)
    y = A.augment(x, ("brightness",), seed=0, step=1)
    factors = y[:, 0, 0, 0] / 0.5
    assert (1 - A.BRIGHTNESS) <= factors.min() < 0.85 and 1.15 < factors.max() <= (1 + A.BRIGHTNESS)
    assert A.brightness(np.ones((2, 1, 1, 1), np.float32), np.array([1.2, 0.5])).ravel().tolist() == [1.0, 0.5]


def test_the_draws_do_not_depend_on_which_augmentations_are_on():
    x = batch(8)
    flipped = A.augment(x, ("flip",), 5, 2)
    mask = np.array([not np.array_equal(a, b) for a, b in zip(flipped, x)])
    both = A.augment(x, ("brightness", "flip"), 5, 2)  # brightness commutes with the flip
    assert np.allclose(both, A.flip(A.augment(x, ("brightness",), 5, 2), mask))


def test_augmentation_names_and_parameters():
    assert A.names(["brightness", " crop", "crop", ""]) == ("crop", "brightness")
    with pytest.raises(ValueError, match="unknown augmentation 'rotate'"):
        A.names(["flip", "rotate"])
    params = A.parameters(("crop", "flip"), (3, 32, 32))
    assert params == {"crop": {"padding": 4, "fill": 0.0}, "flip": {"direction": "horizontal", "p": 0.5}}


# ----------------------------------------------------------------------------
# Schedules, early stopping, options (no framework but PyTorch's schedulers)


def torch_lrs(schedule: str, lr: float, iters: int, step_size: int) -> list[float]:
    """The lr of each optimizer step under PyTorch's own scheduler, stepped after each step."""
    import torch

    p = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([p], lr=lr, momentum=0.9)
    if schedule == "step":
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma=STEP_GAMMA)
    elif schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=iters, eta_min=0.0)
    else:
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    lrs = []
    for _ in range(iters):
        lrs.append(optimizer.param_groups[0]["lr"])
        p.grad = torch.ones(1)
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("schedule", ["constant", "step", "cosine"])
def test_scheduled_lr_is_pytorchs_scheduler(schedule):
    want = torch_lrs(schedule, 0.1, 12, 4)
    got = [scheduled_lr(schedule, 0.1, k, 12, 4) for k in range(1, 13)]
    assert np.allclose(got, want, rtol=1e-12, atol=0)
    assert got[0] == 0.1
    setup = Setup(num_classes=2, logits=False, outputs=1, lr=0.1, schedule="step", iters=12)
    assert setup.period == 4 and setup.lr_at(5) == pytest.approx(0.1 * STEP_GAMMA)


def test_best_row_and_stalled_evaluations():
    rows = [{"step": 1, "test_loss": 2.0}, {"step": 2, "test_loss": 1.0}, {"step": 3, "test_loss": 1.0}]
    rows += [{"step": 4, "loss": 0.5, "test_loss": ""}, {"step": 5, "test_loss": float("nan")}]
    assert best_row(rows)["step"] == 2
    assert stalled(rows) == 2  # steps 3 (not better) and 5 (NaN); step 4 had no evaluation
    assert best_row([]) is None and stalled([]) == 0


@pytest.mark.parametrize(
    "change, message",
    [
        ({"weight_decay": -0.1}, "--weight-decay -0.1 is out of range"),
        ({"weight_decay": float("nan")}, "--weight-decay nan is out of range"),
        ({"schedule": "linear"}, "unknown schedule 'linear'; choose from constant, step, cosine"),
        ({"patience": 0}, "--patience 0 is out of range"),
        ({"step_size": 0, "schedule": "step"}, "--step-size 0 is out of range"),
        ({"step_size": 10, "schedule": "cosine"}, "--step-size applies to --schedule step only"),
        ({"augment": ("crop", "zoom")}, "--augment: unknown augmentation 'zoom'"),
    ],
)
def test_bad_training_options_are_refused(change, message):
    with pytest.raises(TrainingError, match=message.replace("(", r"\(")):
        Options(spec=LENET, target="pytorch", **change).check()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--weight-decay", "-0.5"], 1, "--weight-decay -0.5 is out of range"),
        (["--schedule", "exponential"], 1, "unknown schedule 'exponential'"),
        (["--patience", "0"], 1, "--patience 0 is out of range"),
        (["--augment", "crop,rotate"], 2, "unknown augmentation 'rotate'"),
        (["--step-size", "5"], 1, "--step-size applies to --schedule step only"),
    ],
)
def test_train_refuses_bad_training_options_and_writes_nothing(tmp_path, args, code, message):
    out = tmp_path / "run"
    result = run_cli("train", LENET, "-t", "pytorch", "-o", str(out), "--quiet", *args)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "args, message", [(["--weight-decay", "-1"], "--weight-decay"), (["--schedule", "linear"], "--schedule")]
)
def test_verify_train_refuses_bad_options(args, message):
    result = run_cli("verify", LENET, "--train", *args)
    assert result.exit_code == 2 and message in result.output


# ----------------------------------------------------------------------------
# Every target (slow)


def trainer(target: str, tmp_path, **setup):
    compiled = compile_spec(LENET, {"num_classes": "3"})
    (tmp_path / target).mkdir(parents=True)
    module = run.generate(compiled, target, tmp_path / target)
    logits = has_logits_switch(compiled.graph)
    base = Setup(num_classes=3, logits=logits, outputs=1, optimizer="momentum", lr=0.1, seed=0, threads=1)
    return run.trainer_for(target, module, compiled, dataclasses.replace(base, **setup))


def framework_lr(target: str, t) -> float:
    """The lr the framework will use (pytorch, keras, tensorflow) or has just used (chainer)."""
    if target == "pytorch":
        return t.optimizer.param_groups[0]["lr"]
    if target == "keras":
        return float(t.optimizer.learning_rate)
    if target == "tensorflow":
        import tensorflow as tf

        return float(t.optimizer.rate(tf.cast(t.optimizer.steps + 1, tf.float64)))
    return t.optimizer.alpha if t.setup.optimizer == "adam" else t.optimizer.lr


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_the_lr_of_every_step_is_pytorchs_scheduler_in_every_target(target, tmp_path):
    iters, step_size = 7, 2
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    y = np.array([0, 1])
    for schedule, optimizer in (("step", "momentum"), ("cosine", "adam")):
        want = torch_lrs(schedule, 0.1, iters, step_size)
        t = trainer(
            target, tmp_path / schedule, schedule=schedule, optimizer=optimizer, iters=iters, step_size=step_size
        )
        got = []
        for _ in range(iters):
            if target != "chainer":
                got.append(framework_lr(target, t))
            t.train_step(x, y)
            if target == "chainer":
                got.append(framework_lr(target, t))
        assert np.allclose(got, want, rtol=1e-6, atol=0), (schedule, got, want)


@pytest.mark.slow
def test_pytorch_resumes_its_scheduler_at_the_step_it_stopped(tmp_path):
    t = trainer("pytorch", tmp_path, schedule="cosine", iters=9)
    t._schedule_from(4)
    x, y = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32), np.array([0, 1])
    got = []
    for _ in range(5):
        got.append(framework_lr("pytorch", t))
        t.train_step(x, y)
    assert np.allclose(got, torch_lrs("cosine", 0.1, 9, 3)[4:], rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_a_run_with_every_option_in_every_target(target, tmp_path, monkeypatch):
    """The framework's data pipeline augments every step's batch, seeded by its step
    (tf.data may run them out of order, Keras reads the first batches twice);
    metrics.csv has each row's lr; run.json names the options."""
    trainer_module = importlib.import_module(f"archspec.training.{target}")
    steps = []

    def spy(x, y, chosen, seed, step):
        steps.append(int(step))
        return A.augment_batch(x, y, chosen, seed, step)

    monkeypatch.setattr(trainer_module, "augment_batch", spy)
    options = Options(
        spec=LENET, target=target, iters=4, batch_size=8, eval_every=2, lr=0.01, optimizer="momentum", threads=1,
        out=str(tmp_path / "run"), quiet=True, augment=("crop", "flip", "brightness"), schedule="step",
        step_size=2, weight_decay=0.01, patience=5,
    )  # fmt: skip
    result = run.train(options, echo=lambda m: None)
    assert result.status == "done"
    assert sorted(set(steps)) == [1, 2, 3, 4]
    rows = Metrics.read(result.run_dir / "metrics.csv").rows
    assert [(r["step"], r["lr"]) for r in rows] == [(2, 0.01), (4, pytest.approx(0.001))]
    info = json.loads((result.run_dir / "run.json").read_text())
    assert list(info["augmentation"]) == ["crop", "flip", "brightness"]
    assert info["augmentation"]["crop"]["padding"] == 4
    assert info["schedule"] == {"kind": "step", "lr": 0.01, "step_size": 2, "gamma": STEP_GAMMA}
    assert info["weight_decay"] == 0.01 and info["options"]["patience"] == 5
    assert info["best"]["step"] in (2, 4) and (result.run_dir / "best" / "weights.npz").is_file()


@pytest.mark.slow
def test_patience_stops_early_keeps_the_best_weights_and_test_uses_them(tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "train", LENET, "-t", "pytorch", "--iters", "300", "--eval-every", "1", "--patience", "1",
        "--batch-size", "16", "--threads", "1", "-o", str(out), "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "stopped early" and info["step"] < 300
    assert f"stopped early at step {info['step']}" in result.output
    best = info["best"]
    assert best["step"] == info["step"] - 1  # patience 1: the evaluation after the best one stops the run
    rows = Metrics.read(out / "metrics.csv").rows
    assert rows[-1]["test_loss"] >= best["test_loss"] == pytest.approx(min(r["test_loss"] for r in rows), rel=1e-5)
    tested = run_cli("test", LENET, "-t", "pytorch", "--weights", str(out), "--json")
    assert tested.exit_code == 0
    assert f"using the best weights of {out}: step {best['step']}" in tested.output
    report = json.loads(tested.output[tested.output.index("{") :])
    assert report["weights"] == str(out / "best" / "weights.npz")
    assert report["accuracy"] == pytest.approx(best["test_accuracy"])


@pytest.mark.slow
def test_verify_train_weight_decay_and_schedules_pass_for_lenet_in_every_target():
    for optimizer, schedule in (("adam", "step"), ("momentum", "cosine")):
        result = run_cli(
            "verify", LENET, "--train", "--weight-decay", "0.01", "--schedule", schedule, "--optimizer", optimizer,
            "--steps", "4", "--lr", "0.01", "--set", "num_classes=5",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert f"{schedule} schedule, weight decay 0.01" in result.output
        assert result.output.count(" pass") == 4


@pytest.mark.slow
def test_verify_train_weight_decay_passes_for_a_batch_norm_network():
    """tests/test_verify_train.py's settings for batch-norm networks."""
    compiled = compile_spec(SPECS / "resnet18.yaml", {"num_classes": "5"}, input_shape=(3, 64, 64))
    report = equivalence.verify_training(compiled, steps=3, batch=8, weight_decay=0.01, schedule="cosine")
    assert report.ok, equivalence.format_table(report)
    assert [t.target for t in report.targets] == list(TARGETS)


@pytest.mark.slow
def test_verify_train_fails_when_a_target_decays_the_weights_decoupled(monkeypatch):
    """Keras' own weight_decay (w -= lr wd w, AdamW's form) in place of torch.optim's."""
    from archspec.training import keras as keras_trainer
    from archspec.training.core import ADAM_BETAS, ADAM_EPS

    def decoupled(setup):
        b1, b2 = ADAM_BETAS
        lr = keras_trainer.learning_rate(setup)
        return keras_trainer.Adam(lr, beta_1=b1, beta_2=b2, epsilon=ADAM_EPS, weight_decay=setup.weight_decay)

    monkeypatch.setattr(keras_trainer, "optimizer_for", decoupled)
    compiled = compile_spec(LENET, {"num_classes": "5"})
    report = equivalence.verify_training(compiled, ["keras"], steps=3, optimizer="adam", weight_decay=0.01)
    assert not report.ok
    assert any(p.startswith("weights ") for p in report.targets[1].problems)
