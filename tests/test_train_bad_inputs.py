"""Bad inputs of train, test, report and weights: damaged weight files and run directories,
images too large to decode, outputs that cannot be written. Each ends in a clear message,
exit 1 or 2, no traceback, nothing half-written. Most are found before a framework runs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from archspec import weights as W
from archspec.cli import main
from archspec.pipeline import compile_spec
from archspec.training.core import Metrics
from archspec.training.data import SEGMENTATION, check_image, load
from archspec.training.run import reconcile_metrics
from tests.conftest import SPECS
from tests.test_grid_report import fake_run

LENET = str(SPECS / "lenet.yaml")


def run(*args: str) -> tuple[int, str]:
    """Exit code and output of an archspec command; fails on a traceback."""
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


# ----------------------------------------------------------------------------
# Weight files


def _damaged(path: Path, how: str) -> Path:
    good = {"conv.weight": np.ones((2, 1, 3, 3), np.float32), "conv.bias": np.zeros(2, np.float32)}
    if how == "truncated":
        W.save(path, good)
        path.write_bytes(path.read_bytes()[:100])
    elif how == "text":
        path.write_text("not weights\n")
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "one array":
        with path.open("wb") as f:
            np.save(f, good["conv.bias"])
    elif how == "objects":
        with path.open("wb") as f:
            np.savez(f, conv=np.array([{}], dtype=object))
    elif how == "nan":
        W.save(path, {**good, "conv.bias": np.array([0.0, np.nan], np.float32)})
    return path


@pytest.mark.parametrize(
    "how, message",
    [
        ("truncated", "File is not a zip file"),
        ("text", "(not a zip)"),
        ("empty", "No data left in file"),
        ("one array", "one .npy array, not an .npz archive"),
        ("objects", "it holds Python objects, not arrays of numbers"),
        ("nan", "conv.bias hold NaN or infinite values"),
    ],
)
def test_a_damaged_weight_file_says_what_is_wrong_and_what_to_do(tmp_path, how, message):
    path = _damaged(tmp_path / "weights.npz", how)
    with pytest.raises(W.WeightError) as err:
        W.load(path)
    text = str(err.value)
    assert message in text and str(path) in text
    assert "give" in text and "allow_pickle" not in text


def test_weights_export_refuses_a_folder_for_its_weights_file(tmp_path):
    (tmp_path / "run").mkdir()
    code, out = run("weights", "export", str(tmp_path / "run"), "--spec", LENET, "-t", "pytorch", "-o", "x.pt")
    assert code == 2 and f"give a weights file, e.g. {tmp_path / 'run' / 'weights.npz'}" in out


# ----------------------------------------------------------------------------
# Run directories: --resume, --weights, report


def _edit(run_dir: Path, change) -> None:
    path = run_dir / "run.json"
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info))


RUN_JSON_DAMAGE = {
    "not JSON": (lambda p: p.write_text("{bad"), "Expecting property name"),
    "a list": (lambda p: p.write_text("[1, 2]"), "not a JSON object"),
    "no step": (lambda p: _edit(p.parent, lambda i: i.pop("step")), "'step' is missing or not a whole number"),
    "step text": (lambda p: _edit(p.parent, lambda i: i.update(step="x")), "'step' is missing or not a whole number"),
    "no spec": (lambda p: _edit(p.parent, lambda i: i["options"].pop("spec")), "'options.spec' is missing"),
}


@pytest.mark.parametrize("how", sorted(RUN_JSON_DAMAGE))
@pytest.mark.parametrize("command", ["resume", "test", "report"])
def test_a_damaged_run_json_is_named_with_what_to_do(tmp_path, how, command):
    run_dir = fake_run(tmp_path / "run", status="running")
    damage, message = RUN_JSON_DAMAGE[how]
    damage(run_dir / "run.json")
    before = (run_dir / "run.json").read_bytes()
    args = {
        "resume": ("train", "--resume", str(run_dir), "--iters", "400", "--quiet"),
        "test": ("test", LENET, "-t", "pytorch", "--weights", str(run_dir)),
        "report": ("report", str(run_dir)),
    }[command]
    code, out = run(*args)
    assert code == 1, out
    assert f"{run_dir / 'run.json'} is not a run description written by archspec train" in out
    assert message in out and "restore it from a copy, or train a new run" in out
    assert (run_dir / "run.json").read_bytes() == before


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda o: o.update(bogus=1), "unknown: bogus"),
        (lambda o: o.update(lr="fast"), "lr: 'fast' is not a number"),
        (lambda o: o.update(iters=2.5), "iters: 2.5 is not a whole number"),
        (lambda o: o.update(sets="a=1"), "sets: 'a=1' is not a list of strings"),
        (lambda o: o.update(input=[3, "x"]), "input: [3, 'x'] is not a list of whole numbers or null"),
    ],
)
def test_resume_refuses_options_that_train_does_not_write(tmp_path, change, message):
    run_dir = fake_run(tmp_path / "run", status="running")
    _edit(run_dir, lambda info: change(info["options"]))
    code, out = run("train", "--resume", str(run_dir), "--iters", "400", "--quiet")
    assert code == 1 and message in out and "has options that archspec train does not write" in out


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.unlink(), "metrics.csv is missing"),
        (lambda p: p.write_text(p.read_text()[:70]), "is not a metrics file written by archspec train"),
        (lambda p: p.write_text("step,loss\n1,2\n"), "has no column accuracy, test_loss"),
    ],
)
def test_resume_refuses_a_damaged_metrics_file_before_anything_runs(tmp_path, damage, message):
    run_dir = fake_run(tmp_path / "run", status="running")
    damage(run_dir / "metrics.csv")
    code, out = run("train", "--resume", str(run_dir), "--iters", "400", "--quiet")
    assert code == 1 and message in out and "train a new run" in out
    assert {p.name for p in run_dir.iterdir()} <= {"run.json", "metrics.csv"}  # no code generated, nothing written


def test_resume_drops_the_metrics_rows_after_run_jsons_step(tmp_path):
    # killed after metrics.csv was written at step 30, before run.json (which says 20)
    run_dir = fake_run(tmp_path / "run", status="running", steps=20)
    path = run_dir / "metrics.csv"
    rows = Metrics.read(path).rows
    path.write_text(Metrics([*rows, {**rows[-1], "step": 30}]).csv())
    notes: list[str] = []
    kept = reconcile_metrics(path, 20, notes.append)
    assert [r["step"] for r in kept.rows] == [10, 20] and Metrics.read(path).rows == rows
    assert len(notes) == 1 and "had rows for step 30, after step 20" in notes[0] and "dropped" in notes[0]
    assert {p.name for p in run_dir.iterdir()} == {"run.json", "metrics.csv"}  # written atomically, no temporary
    assert reconcile_metrics(path, 20, notes.append).rows == rows and len(notes) == 1  # nothing to drop: no note


# ----------------------------------------------------------------------------
# Images too large to decode


def test_an_image_beyond_pillows_pixel_limit_is_skipped_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow warns above this, refuses above twice it
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.new("L", (8, 8)).save(tmp_path / c / "small.png")
    Image.new("L", (40, 40)).save(tmp_path / "a" / "warned.png")  # 1600 pixels
    Image.new("L", (50, 50)).save(tmp_path / "a" / "refused.png")  # 2500 pixels
    assert "decompression bomb" in check_image(tmp_path / "a" / "warned.png")
    said: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not escape
        data = load(str(tmp_path), (1, 4, 4), split="all", warn=said.append)
    assert data.names == ("a/small.png", "b/small.png")
    assert len(said) == 2 and all("more pixels than Pillow's limit of 1,000" in w for w in said)


def test_a_segmentation_mask_beyond_the_pixel_limit_skips_its_image(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for name, size in (("small", 8), ("large", 40)):
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / f"{name}.png")
        Image.new("L", (size, size)).save(tmp_path / "masks" / f"{name}.png")
    said: list[str] = []
    data = load(str(tmp_path), (3, 4, 4), split="all", warn=said.append, task=SEGMENTATION, num_classes=2)
    assert data.names == ("images/small.png",)
    assert len(said) == 1 and "large.png: its mask" in said[0] and "decompression bomb" in said[0]


# ----------------------------------------------------------------------------
# A real run, damaged (PyTorch, two steps)


@pytest.mark.slow
def test_a_damaged_pytorch_run_is_refused_by_resume_test_and_export(tmp_path):
    run_dir = tmp_path / "run"
    code, out = run("train", LENET, "-t", "pytorch", "--iters", "2", "--batch-size", "4", "--threads", "1",
                    "--quiet", "-o", str(run_dir))  # fmt: skip
    assert code == 0, out
    (run_dir / "optimizer.pt").write_bytes(b"")
    code, out = run("train", "--resume", str(run_dir), "--iters", "4", "--quiet")
    assert code == 1 and f"cannot restore the optimizer's state from {run_dir}, the pytorch checkpoint" in out
    assert json.loads((run_dir / "run.json").read_text())["step"] == 2

    weights = run_dir / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:200])
    code, out = run("test", LENET, "-t", "pytorch", "--weights", str(run_dir))
    assert code == 1 and f"{weights} is not a weight file of archspec" in out
    assert "not those of" not in out  # a damaged file is not a spec mismatch

    (tmp_path / "afile").write_text("")
    W.save(weights, W.random_weights(compile_spec(LENET, {})))
    code, out = run("weights", "export", str(weights), "--spec", LENET, "-t", "pytorch",
                    "-o", str(tmp_path / "afile" / "x.pt"))  # fmt: skip
    assert code == 1 and f"cannot write {tmp_path / 'afile' / 'x.pt'}" in out and "choose another -o" in out


@pytest.mark.slow
def test_a_real_resume_after_a_kill_before_run_json_logs_each_evaluation_once(tmp_path):
    run_dir = tmp_path / "run"
    args = ("--batch-size", "4", "--threads", "1", "--eval-every", "2", "--quiet")
    code, out = run("train", LENET, "-t", "pytorch", "--iters", "4", *args, "-o", str(run_dir))
    assert code == 0, out
    _edit(run_dir, lambda info: info.update(step=2, status="running"))  # as if killed before run.json at step 4
    code, out = run("train", "--resume", str(run_dir), "--iters", "6", *args)
    assert code == 0, out
    assert "had rows for step 4, after step 2" in out
    assert [r["step"] for r in Metrics.read(run_dir / "metrics.csv").rows] == [2, 4, 6]


# ----------------------------------------------------------------------------
# A twin's own weight file (weights import --from)


def _import(spec: str, twin: str, path: Path, *extra: str) -> tuple[int, str]:
    return run("weights", "import", twin, "--spec", str(SPECS / f"{spec}.yaml"), "--input", "3x32x32",
               "--from", str(path), "-o", str(path.parent / "out.npz"), *extra)  # fmt: skip


@pytest.mark.slow
def test_a_pytorch_file_that_is_not_a_state_dict_is_named_and_never_unpickled(tmp_path):
    import torch

    from archspec.twins import TwinError, read_state_dict

    layer = torch.nn.Linear(2, 3)
    files = {"text.pt": b"not weights\n", "empty.pt": b""}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save(layer, tmp_path / "model.pt")
    torch.save(layer.state_dict(), tmp_path / "good.pt")
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:200])
    torch.save({"epoch": 3, "state_dict": layer.state_dict()}, tmp_path / "checkpoint.pt")
    torch.save([layer.weight], tmp_path / "list.pt")
    expected = {
        "text.pt": "it is a text file, which torch cannot read",
        "empty.pt": "it is an empty file",
        "model.pt": "pickled Python objects (torch.nn.modules.linear.Linear; a whole model saved with torch.save",
        "truncated.pt": "it is a damaged or truncated zip archive",
        "checkpoint.pt": "entries epoch, state_dict are not tensors (a training checkpoint?); its entry 'state_dict'",
        "list.pt": "holding a list, not a state_dict",
    }
    for name, message in expected.items():
        with pytest.raises(TwinError) as err:
            read_state_dict(tmp_path / name)
        text = str(err.value)
        assert message in text and f"{tmp_path / name} is not a PyTorch state_dict that archspec can read" in text
        assert "weights_only" not in text and "torch.save(model.state_dict(), FILE)" in text
    assert set(read_state_dict(tmp_path / "good.pt")) == {"weight", "bias"}


@pytest.mark.slow
def test_weights_import_names_what_differs_in_a_torchvision_file(tmp_path):
    import torch

    from archspec import reference

    tv = reference.torchvision()
    torch.save(tv.models.resnet18(num_classes=10).state_dict(), tmp_path / "ten.pt")
    code, out = _import("resnet18", "torchvision:resnet18", tmp_path / "ten.pt")
    assert code == 1 and "fc.weight: (10, 512) in the file, (1000, 512) in the twin" in out
    assert "the file holds 10 classes: give --set num_classes=10" in out and not (tmp_path / "out.npz").exists()
    code, out = _import("resnet18", "torchvision:resnet18", tmp_path / "ten.pt", "--set", "num_classes=10")
    assert code == 0, out
    torch.save(torch.nn.Linear(2, 3).state_dict(), tmp_path / "other.pt")
    code, out = _import("resnet18", "torchvision:resnet18", tmp_path / "other.pt")
    assert code == 1 and "is a state_dict, but not of torchvision:resnet18 (missing 122" in out
    assert "unexpected 2: bias, weight" in out and "Traceback" not in out


@pytest.mark.slow
def test_weights_import_names_what_differs_in_a_keras_file(tmp_path):
    import keras

    (tmp_path / "bad.weights.h5").write_text("not weights\n")
    code, out = _import("mobilenet_v2", "keras:MobileNetV2", tmp_path / "bad.weights.h5")
    assert code == 1 and "is not Keras weights that archspec can read: it is a text file" in out
    twin = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=10)
    twin.save_weights(tmp_path / "ten.weights.h5")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        code, out = _import("mobilenet_v2", "keras:MobileNetV2", tmp_path / "ten.weights.h5")
    assert code == 1 and "1 of its layers do not fit, the first predictions: (1280, 10) in the file" in out
    assert "give --set num_classes=10" in out and not (tmp_path / "out.npz").exists()
    assert not [w for w in said if "Skipping nested container" in str(w.message)]  # Keras' own words stay inside
