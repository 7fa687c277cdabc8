"""archspec train / test: the command line, run directories, resume, Ctrl-C, bad input.

The framework-specific trainers have their own tests (test_train_keras_tf.py,
test_train_chainer.py); here PyTorch stands for all four where a real run is
needed, and the cross-framework tests train in one and test in the others.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from archspec.cli import main
from archspec.training.core import Metrics, cross_entropy, softmax
from archspec.training.data import load as load_data
from archspec.training.run import Options, TrainingError

ROOT = Path(__file__).resolve().parent.parent
LENET = str(ROOT / "specs" / "lenet.yaml")
ARCHSPEC = str(Path(sys.executable).parent / "archspec")


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def make_folder(root: Path, classes=("akahara", "madara"), per_class: int = 12, size: int = 40) -> Path:
    """A folder in the quiz's layout: one subfolder per class, images that a
    network can tell apart (class 0 dark with a bright square, class 1 bright)."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            base = 40 + 160 * c
            pixels = np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            if c == 0:
                pixels[8:20, 8:20] = 250
            suffix = "jpg" if i % 2 else "png"
            Image.fromarray(pixels).save(root / name / f"{name}_{i:04d}.{suffix}")
    return root


# ----------------------------------------------------------------------------
# Pieces (fast)


def test_cross_entropy_and_softmax_match_the_definitions():
    logits = np.array([[2.0, 0.0, -1.0], [1000.0, 0.0, 0.0]])
    p = softmax(logits)
    assert np.allclose(p.sum(axis=1), 1)
    assert np.allclose(cross_entropy(logits, np.array([0, 1])), [-np.log(p[0, 0]), 1000.0])


def test_metrics_round_trip_through_csv(tmp_path):
    m = Metrics([{"step": 5, "loss": 0.5, "accuracy": 0.75, "lr": 0.01, "seconds": 1.5}])
    m.rows.append({"step": 10, "loss": 0.25, "accuracy": 1.0, "test_loss": 0.3, "test_accuracy": 0.9, "lr": 0.01})
    (tmp_path / "metrics.csv").write_text(m.csv())
    back = Metrics.read(tmp_path / "metrics.csv")
    assert back.rows[0]["step"] == 5 and back.rows[0]["test_loss"] == ""
    assert back.rows[1]["test_accuracy"] == 0.9


@pytest.mark.parametrize(
    "change, message",
    [
        ({"lr": 0.0}, "--lr 0.0 is out of range"),
        ({"lr": float("nan")}, "--lr nan is out of range"),
        ({"lr": 100.0}, "at most 10"),
        ({"iters": 0}, "--iters 0 is out of range"),
        ({"batch_size": -1}, "--batch-size -1 is out of range"),
        ({"eval_every": 0}, "--eval-every 0"),
        ({"threads": 0}, "--threads 0"),
        ({"seed": -1}, "--seed -1 is out of range"),
        ({"seed": 2**32}, "--seed 4294967296 is out of range"),
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
    ],
)
def test_options_out_of_range_are_refused(change, message):
    with pytest.raises(TrainingError, match=message.replace("(", r"\(")):
        Options(spec=LENET, target="pytorch", **change).check()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lr", "-1"], "--lr -1.0 is out of range"),
        (["--iters", "0"], "--iters 0 is out of range"),
        (["--batch-size", "0"], "--batch-size 0 is out of range"),
        (["--seed", "-1"], "--seed -1 is out of range"),
        (["--data", "imagenet"], "imagenet"),
        (["--data", "/nonexistent/folder"], "/nonexistent/folder"),
        (["--set", "num_classes=5"], "num_classes=5"),
        (["--input", "3x8x8"], "--input"),
    ],
)
def test_train_bad_input_exits_1_with_a_message_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "run"
    result = run_cli("train", LENET, "-t", "pytorch", "-o", str(out), "--quiet", *args)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())


def test_train_needs_a_spec_and_a_target():
    result = run_cli("train", LENET)
    assert result.exit_code == 2
    assert "give a SPEC and --target" in result.output


def test_train_list_data_names_the_built_ins():
    result = run_cli("train", "--list-data")
    assert result.exit_code == 0
    assert result.output.startswith("digits ")
    assert "one subfolder per class" in result.output


def test_train_refuses_an_out_that_exists_or_cannot_be_written(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    result = run_cli("train", LENET, "-t", "pytorch", "-o", str(tmp_path / "full"), "--quiet")
    assert result.exit_code == 1 and "already exists" in result.output and "--resume" in result.output
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    (tmp_path / "file").write_text("")
    result = run_cli("train", LENET, "-t", "pytorch", "-o", str(tmp_path / "file" / "run"), "--quiet")
    assert result.exit_code == 1 and "cannot write the run" in result.output


def test_resume_and_test_refuse_what_is_not_a_run_directory(tmp_path):
    result = run_cli("train", "--resume", str(tmp_path))
    assert result.exit_code == 1 and "is not a run directory: it has no run.json" in result.output
    (tmp_path / "run.json").write_text("{not json")
    result = run_cli("test", LENET, "-t", "pytorch", "--weights", str(tmp_path))
    assert result.exit_code == 1 and "not a run description" in result.output
    result = run_cli("test", LENET, "-t", "pytorch", "--weights", str(tmp_path / "none.npz"))
    assert result.exit_code == 1 and "no such file or run directory" in result.output
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    result = run_cli("test", LENET, "-t", "pytorch", "--weights", str(tmp_path / "bad.npz"))
    assert result.exit_code == 1 and "not a weight file" in result.output


def test_a_spec_that_is_not_a_classifier_is_refused(tmp_path):
    result = run_cli("train", str(ROOT / "specs" / "wavenet.yaml"), "-t", "pytorch", "-o", str(tmp_path / "r"))
    assert result.exit_code == 1
    assert "image data needs" in result.output or "need" in result.output


SOFTMAX_READ_ELSEWHERE = """
name: twice
source: a softmax output that another node reads
input: [3, 8, 8]
params:
  num_classes: 10
layers:
  - conv: {op: conv2d, out: 4, kernel: 3, padding: 1}
  - pool: {op: global_avg_pool}
  - fc: {op: dense, out: num_classes}
  - prob: {op: softmax}
  - sharpened: {op: relu, in: prob}
outputs: [prob, sharpened]
"""


def test_a_softmax_output_without_a_logits_switch_is_refused(tmp_path):
    """Training on logits needs the final softmax switched off; one that another
    node reads cannot be, and training on its probabilities would be wrong."""
    spec = tmp_path / "twice.yaml"
    spec.write_text(SOFTMAX_READ_ELSEWHERE)
    result = run_cli("train", str(spec), "-t", "pytorch", "--iters", "2", "-o", str(tmp_path / "run"))
    assert result.exit_code == 1, result.output
    assert "output prob is a softmax that the generated code cannot switch off" in result.output
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------
# Real runs (PyTorch)


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """LeNet trained 60 steps on an image folder in the quiz's layout, with a test folder."""
    root = tmp_path_factory.mktemp("quiz")
    train_dir = make_folder(root / "train" / "images")
    test_dir = make_folder(root / "test" / "images", per_class=4)
    out = root / "run"
    result = run_cli(
        "train", LENET, "-t", "pytorch", "--data", str(train_dir), "--test-data", str(test_dir),
        "--iters", "60", "--batch-size", "8", "--eval-every", "20", "--threads", "1", "-o", str(out), "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, train_dir, test_dir, result.output


@pytest.mark.slow
def test_a_run_writes_every_file(lenet_run):
    out, train_dir, test_dir, output = lenet_run
    assert "lenet in pytorch: 60 steps" in output and f"run saved in {out}" in output
    names = {p.name for p in out.iterdir()}
    assert {
        "weights.npz",
        "model.pt",
        "optimizer.pt",
        "metrics.csv",
        "curves.png",
        "run.json",
        "lenet_pytorch.py",
    } <= names
    assert not [n for n in names if n.endswith(".tmp")]
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "done" and info["step"] == 60
    assert info["classes"] == ["akahara", "madara"] and info["num_classes"] == 2
    assert info["options"]["lr"] == 0.003 and info["options"]["optimizer"] == "adam"
    assert info["params"]["trainable"] == 58_866  # lenet with 2 classes, as the quiz's table
    assert info["versions"]["torch"].startswith("2.")
    assert info["weights_mb"] > 0.2 and info["device"] == "cpu"
    assert 0.0 <= info["test_accuracy"] <= 1.0 and "train_accuracy" in info
    rows = Metrics.read(out / "metrics.csv").rows
    assert [r["step"] for r in rows] == [20, 40, 60]
    assert all(r["test_accuracy"] != "" for r in rows)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The run's code is the standalone generated file: its state_dict loads model.pt.
    import torch

    spec = importlib.util.spec_from_file_location("run_lenet_pytorch", out / "lenet_pytorch.py")
    code = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(code)
    model = code.LeNet(num_classes=2)
    model.load_state_dict(torch.load(out / "model.pt"))
    assert not model.logits


@pytest.mark.slow
def test_the_images_are_learned(lenet_run):
    out, _, test_dir, _ = lenet_run
    result = run_cli("test", LENET, "-t", "pytorch", "--weights", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["n"] == 8 and report["accuracy"] == 1.0  # dark squares against bright noise
    assert set(report["per_class"]) == {"akahara", "madara"}
    first = report["predictions"][0]
    assert first["file"] == "akahara/akahara_0000.png" and first["predicted"] == "akahara"
    assert 0.5 < first["probability"] <= 1.0


@pytest.mark.slow
def test_test_prints_the_quiz_lines_and_the_confusion_matrix(lenet_run):
    out, _, test_dir, _ = lenet_run
    result = run_cli("test", LENET, "-t", "pytorch", "--weights", str(out / "weights.npz"), "--data", str(test_dir))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:2] == ["akahara/akahara_0000.png", "akahara"]
    assert "accuracy 1.0000 (8 of 8) in pytorch" in result.output
    assert "confusion matrix" in result.output


@pytest.mark.slow
def test_test_refuses_weights_of_another_spec_and_other_classes(lenet_run, tmp_path):
    out, _, _, _ = lenet_run
    result = run_cli("test", str(ROOT / "specs" / "zfnet.yaml"), "-t", "pytorch", "--weights", str(out))
    assert result.exit_code == 1 and "is a run of lenet, not of zfnet" in result.output
    result = run_cli(
        "test", str(ROOT / "specs" / "nin.yaml"), "-t", "pytorch", "--weights", str(out / "weights.npz"), "--data",
        str(out.parent / "test" / "images"),
    )  # fmt: skip
    assert result.exit_code == 1 and "weights do not fit" in result.output
    other = make_folder(tmp_path / "other", classes=("cat", "dog"), per_class=2)
    result = run_cli("test", LENET, "-t", "pytorch", "--weights", str(out), "--data", str(other))
    assert result.exit_code == 1 and "are not those the run was trained on" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tensorflow", "keras", "chainer"])
def test_trained_in_pytorch_tested_in_another_framework(lenet_run, target):
    out, _, _, _ = lenet_run
    here = json.loads(run_cli("test", LENET, "-t", "pytorch", "--weights", str(out), "--json").output)
    there = run_cli("test", LENET, "-t", target, "--weights", str(out), "--json")
    assert there.exit_code == 0, there.output
    there = json.loads(there.output)
    assert there["accuracy"] == here["accuracy"]
    for a, b in zip(here["predictions"], there["predictions"]):
        assert a["predicted"] == b["predicted"]
        assert abs(a["probability"] - b["probability"]) < 1e-4


@pytest.mark.slow
def test_resume_continues_to_more_steps(lenet_run, tmp_path):
    out, _, _, _ = lenet_run
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(out), str(copy)], check=True)
    result = run_cli("train", "--resume", str(copy), "--iters", "80", "--quiet")
    assert result.exit_code == 0, result.output
    info = json.loads((copy / "run.json").read_text())
    assert info["step"] == 80 and info["status"] == "done"
    assert [r["step"] for r in Metrics.read(copy / "metrics.csv").rows] == [20, 40, 60, 80]
    result = run_cli("train", "--resume", str(copy), "--iters", "80")
    assert result.exit_code == 1 and "already taken 80 steps" in result.output
    result = run_cli("train", LENET, "-t", "keras", "--resume", str(copy), "--iters", "90")
    assert result.exit_code == 2 and "is a run of pytorch" in result.output


@pytest.mark.slow
def test_a_loss_that_is_not_finite_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from archspec.training import pytorch as trainer

    real = trainer.Trainer._step

    def step(self, x, y):
        loss, correct = real(self, x, y)
        self.calls = getattr(self, "calls", 0) + 1
        return (float("nan") if self.calls == 7 else loss), correct

    monkeypatch.setattr(trainer.Trainer, "_step", step)
    out = tmp_path / "run"
    result = run_cli("train", LENET, "-t", "pytorch", "--iters", "20", "--eval-every", "5", "-o", str(out), "-q")
    assert result.exit_code == 1
    assert "the loss became nan at step 7; lower the learning rate (--lr 0.003 now)" in result.output
    assert "last good checkpoint (step 5)" in result.output
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "diverged" and info["step"] == 5
    assert np.isfinite(np.load(out / "weights.npz")["fc3.weight"]).all()


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_that_resume_continues(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [ARCHSPEC, "train", LENET, "-t", "pytorch", "--iters", "100000", "--eval-every", "50", "-o", str(out), "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the first evaluation is written
            if (out / "metrics.csv").is_file() and len((out / "metrics.csv").read_text().splitlines()) >= 2:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, output
    assert "interrupted at step" in output and "--resume" in output
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "interrupted" and 50 <= info["step"] < 100000
    step = info["step"]
    result = run_cli("train", "--resume", str(out), "--iters", str(step + 10), "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["step"] == step + 10


@pytest.mark.slow
def test_one_pytorch_step_lowers_the_loss_on_a_fixed_batch():
    from archspec.codegen.model import class_name
    from archspec.pipeline import compile_spec
    from archspec.training.core import Setup
    from archspec.training.run import generate, trainer_for

    compiled = compile_spec(LENET, {"num_classes": "3"})
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 3, 32, 32), dtype=np.float32), rng.integers(0, 3, 8)
    with tempfile.TemporaryDirectory() as tmp:
        module = generate(compiled, "pytorch", Path(tmp))
    assert class_name(compiled.graph.name) == "LeNet"
    trainer = trainer_for("pytorch", module, compiled, Setup(num_classes=3, logits=True, outputs=1, lr=0.01))
    first = trainer.train_step(x, y)
    assert trainer.train_step(x, y) < first
    assert abs(first - float(cross_entropy(trainer.predict(x), y).mean())) < 1.0  # logits, not probabilities


@pytest.mark.slow
@pytest.mark.parametrize("name", ["convnext_tiny", "regnet_y_400mf"])
def test_a_step_of_the_newer_networks_lowers_the_loss(name):
    """Layer norm, layer scale, GELU, drop path (on while training), SE and group
    convolutions train: one PyTorch step on a fixed batch at 32x32 lowers its loss."""
    from archspec.pipeline import compile_spec
    from archspec.training.core import Setup
    from archspec.training.run import generate, trainer_for

    compiled = compile_spec(ROOT / "specs" / f"{name}.yaml", {"num_classes": "3"}, input_shape=(3, 32, 32))
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 3, 32, 32), dtype=np.float32), rng.integers(0, 3, 8)
    with tempfile.TemporaryDirectory() as tmp:
        module = generate(compiled, "pytorch", Path(tmp))
    setup = Setup(num_classes=3, logits=False, outputs=1, lr=0.001)  # these return logits already
    trainer = trainer_for("pytorch", module, compiled, setup)
    first = trainer.train_step(x, y)
    assert trainer.train_step(x, y) < first


@pytest.mark.slow
def test_zfnet_trains_and_tests_at_another_input(tmp_path):
    """--input reaches train and test (the quiz runs ZFNet at 112x112 on a CPU; the
    run scores every digit at that size, so the test takes 67x67, the smallest
    input ZFNet's pools take)."""
    out = tmp_path / "run"
    args = ["--input", "3x67x67", "-t", "pytorch"]
    zfnet = str(ROOT / "specs" / "zfnet.yaml")
    train = ["--iters", "2", "--eval-every", "2", "--batch-size", "4"]  # one evaluation during the run
    result = run_cli("train", zfnet, *args, *train, "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    info = json.loads((out / "run.json").read_text())
    assert info["input_shape"] == [3, 67, 67] and info["options"]["input"] == [3, 67, 67]
    assert info["params"]["trainable"] == 21_601_418  # 256 features into fc1 (1,024 at 112), 10 digit classes
    assert "Input (N, 3, 67, 67)" in (out / "zfnet_pytorch.py").read_text()
    result = run_cli("test", zfnet, "-t", "pytorch", "--weights", str(out), "--json")
    assert result.exit_code == 0, result.output
    held_out = load_data(None, (3, 67, 67), split="test")
    assert json.loads(result.output)["n"] == len(held_out) == 359  # a stratified fifth of 1797 digits


@pytest.mark.slow
def test_mobilenet_v3_small_trains_at_32(tmp_path):
    """Issue 14's new ops train: hard-swish, squeeze-and-excitation with a
    hard-sigmoid gate and a width multiplier, on 32x32 digits."""
    out = tmp_path / "run"
    spec = str(ROOT / "specs" / "mobilenet_v3_small.yaml")
    args = ["--input", "3x32x32", "--set", "width_mult=0.5", "-t", "pytorch", "--iters", "2", "--batch-size", "4"]
    result = run_cli("train", spec, *args, "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "done" and info["step"] == 2
    assert info["params"]["trainable"] == 917_264 - 513_000 + 5_130  # torchvision width_mult=0.5, 10 classes
    losses = [float(row.split(",")[1]) for row in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert len(losses) == 2 and all(np.isfinite(losses))


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tensorflow", "keras", "chainer"])
def test_an_image_folder_trains_and_tests_in_every_framework(lenet_run, target, tmp_path):
    """The quiz's layout in each framework (PyTorch: lenet_run), tested in the same one."""
    _, train_dir, test_dir, _ = lenet_run
    out = tmp_path / "run"
    # 150 steps: Chainer's LeCun-normal start needs more than PyTorch's 60 on this data
    args = ["--data", str(train_dir), "--test-data", str(test_dir), "--iters", "150", "--batch-size", "8"]
    result = run_cli("train", LENET, "-t", target, *args, "--threads", "1", "-o", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    assert f"lenet in {target}: 150 steps" in result.output
    info = json.loads((out / "run.json").read_text())
    assert info["classes"] == ["akahara", "madara"] and info["target"] == target
    result = run_cli("test", LENET, "-t", target, "--weights", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["n"] == 8 and report["accuracy"] == 1.0, report["per_class"]
    assert report["accuracy"] == info["test_accuracy"]  # the run's own evaluation agrees


def test_train_refuses_what_its_target_cannot_write(tmp_path):
    """The target's checks run before training (ceil-mode average pooling in
    Keras), as compile and verify run them: a located error, nothing written."""
    spec = tmp_path / "net.yaml"
    spec.write_text(
        "name: net\nsource: test\ninput: [3, 8, 8]\nparams: {num_classes: 10}\nlayers:\n"
        "  - conv: {op: conv2d, out: 4, kernel: 1}\n"
        "  - pool: {op: avg_pool2d, kernel: 3, stride: 2, ceil_mode: true}\n"
        "  - gap: {op: global_avg_pool}\n  - fc: {op: dense, out: num_classes}\n"
    )
    out = tmp_path / "run"
    result = run_cli("train", str(spec), "-t", "keras", "-o", str(out), "--quiet", "--iters", "1")
    assert result.exit_code == 1, result.output
    assert "E501" in result.output and "keras: ceil-mode average pooling" in result.output
    assert not out.exists()
