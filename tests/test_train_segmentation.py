"""Segmentation: U-Net trained and tested on masks (a class per pixel) in every target.

Fast tests cover the data layer (folders of images and masks, the built-in
shapes), task detection, augmentation of masks, the per-pixel figures and bad
input; the slow ones train specs/unet.yaml a few steps at 16x16 in each
framework, and a little longer in PyTorch to see the loss fall.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from archspec.cli import main
from archspec.pipeline import compile_spec
from archspec.training import segmentation
from archspec.training.augment import augment, augment_batch
from archspec.training.core import Metrics, confusion, cross_entropy, iou, mean_iou
from archspec.training.data import CLASSIFICATION, SEGMENTATION, DataError, load, split_pair
from archspec.training.run import TrainingError, task_of
from tests.conftest import SPECS

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"  # Keras' save_weights
)
UNET = str(SPECS / "unet.yaml")
LENET = str(SPECS / "lenet.yaml")
SMALL = ("--input", "3x16x16", "--threads", "1", "--quiet")


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def seg_folder(root: Path, n: int = 6, size=(20, 16), classes: tuple[str, ...] | None = None) -> Path:
    """A segmentation folder: images with a bright square, masks 1 on the square."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        w, h = size
        mask = np.zeros((h, w), dtype=np.uint8)
        mask[2 + i % 4 : 10 + i % 4, 3:11] = 1
        pixels = (40 + 180 * np.repeat(mask[..., None], 3, axis=2)).astype(np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"img{i}.{'png' if i % 2 else 'jpg'}")
        Image.fromarray(mask).save(root / "masks" / f"img{i}.png")
    if classes:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


# ----------------------------------------------------------------------------
# Task detection


def test_unet_is_a_segmentation_network_and_lenet_a_classifier():
    unet, lenet = task_of(compile_spec(UNET, {})), task_of(compile_spec(LENET, {}))
    assert (unet.kind, unet.num_classes, unet.outputs) == (SEGMENTATION, 2, 1)
    assert (lenet.kind, lenet.outputs) == (CLASSIFICATION, 1)


def test_per_pixel_scores_smaller_than_the_input_are_refused(tmp_path):
    spec = tmp_path / "half.yaml"
    spec.write_text(
        "name: half\nsource: a test\ndescription: a test\ninput: [3, 16, 16]\nparams:\n  num_classes: 2\n"
        "layers:\n  - head: {op: conv2d, out: num_classes, kernel: 2, stride: 2}\n"
    )
    with pytest.raises(TrainingError, match="scores every pixel at 8x8, not at the input's 16x16"):
        task_of(compile_spec(str(spec), {}))


# ----------------------------------------------------------------------------
# The built-in shapes


def test_shapes_is_deterministic_and_split_like_the_other_data():
    a = load("shapes", (3, 16, 16), split="all", task=SEGMENTATION)
    b = load("shapes", (3, 16, 16), split="all", task=SEGMENTATION)
    assert a.classes == ("background", "circle", "rectangle")
    assert len(a) == segmentation.SHAPES_COUNT
    assert np.array_equal(a.masks, b.masks) and np.array_equal(a.batch([0, 7]), b.batch([0, 7]))
    assert set(np.unique(a.masks)) == {0, 1, 2}
    assert all(m.any() for m in a.masks)  # every image has a shape
    x = a.batch(np.arange(len(a)))
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    train, test = split_pair("shapes", None, (1, 16, 16), task=SEGMENTATION)
    assert (len(train), len(test)) == (320, 80) and not set(train.names) & set(test.names)
    assert train.targets([0]).shape == (1, 16, 16)


def test_shapes_draws_the_same_scene_at_every_size():
    _, small = segmentation.draw_shapes(3, (3, 16, 16))
    _, large = segmentation.draw_shapes(3, (3, 64, 64))
    assert np.mean(large[2::4, 2::4] == small) > 0.95


# ----------------------------------------------------------------------------
# Segmentation folders


def test_a_segmentation_folder_loads_with_its_classes_and_nearest_neighbour_masks(tmp_path):
    root = seg_folder(tmp_path / "seg", classes=("sky", "square", "unused"))
    data = load(str(root), (3, 8, 10), split="all", task=SEGMENTATION, num_classes=2)
    assert data.classes == ("sky", "square", "unused")
    assert data.names[0] == "images/img0.jpg" and len(data) == 6
    assert data.masks.shape == (6, 8, 10) and set(np.unique(data.masks)) == {0, 1}
    assert data.batch([1]).shape == (1, 3, 8, 10)
    # where the mask says square, the image is bright
    red = data.batch([1])[0, 0]
    assert red[data.masks[1] == 1].mean() > red[data.masks[1] == 0].mean() + 0.3


def test_a_test_folder_without_classes_txt_takes_the_training_names(tmp_path):
    train_dir = seg_folder(tmp_path / "train", classes=("sky", "square"))
    test_dir = seg_folder(tmp_path / "test", n=2)
    train, test = split_pair(str(train_dir), str(test_dir), (3, 8, 8), task=SEGMENTATION, num_classes=2)
    assert test.classes == train.classes == ("sky", "square")


def _broken(root: Path, how: str) -> None:
    if how == "no masks":
        for p in (root / "masks").iterdir():
            p.unlink()
        (root / "masks").rmdir()
    elif how == "orphan image":
        (root / "masks" / "img3.png").unlink()
    elif how == "orphan mask":
        (root / "images" / "img4.jpg").unlink()
    elif how == "size":
        Image.new("L", (7, 7)).save(root / "masks" / "img2.png")
    elif how == "value":
        Image.new("L", (20, 16), 5).save(root / "masks" / "img5.png")
    elif how == "rgb":
        Image.new("RGB", (20, 16)).save(root / "masks" / "img1.png")


@pytest.mark.parametrize(
    "how, message",
    [
        ("no masks", "has no masks/ folder"),
        ("orphan image", "images without a mask: img3.png"),
        ("orphan mask", "masks without an image: img4.png"),
        ("size", "img2.png is 7x7, img2.jpg 20x16"),
        ("value", "img5.png has the value 5"),
        ("rgb", "img1.png is a RGB image"),
    ],
)
def test_broken_segmentation_folders_are_errors_that_name_the_file(tmp_path, how, message):
    root = seg_folder(tmp_path / "seg")
    _broken(root, how)
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        load(str(root), (3, 8, 8), split="all", task=SEGMENTATION, num_classes=2)


def test_an_unreadable_image_or_mask_is_skipped_with_a_warning(tmp_path):
    root = seg_folder(tmp_path / "seg")
    (root / "images" / "img1.png").write_bytes(b"not an image")
    (root / "masks" / "img2.png").write_bytes(b"not a mask")
    warnings: list[str] = []
    data = load(str(root), (3, 8, 8), split="all", task=SEGMENTATION, num_classes=2, warn=warnings.append)
    assert data.names == ("images/img0.jpg", "images/img3.png", "images/img4.jpg", "images/img5.png")
    assert data.masks.shape == (4, 8, 8)
    assert len(warnings) == 2
    assert warnings[0].startswith(f"warning: skipping {root / 'images' / 'img1.png'}: not a readable image")
    assert warnings[1].startswith(
        f"warning: skipping {root / 'images' / 'img2.jpg'}: its mask {root / 'masks' / 'img2.png'} "
        "is not a readable image"
    )


def test_a_segmentation_folder_with_nothing_readable_is_an_error(tmp_path):
    root = seg_folder(tmp_path / "seg", n=2)
    (root / "images" / "img0.jpg").write_bytes(b"not an image")
    (root / "masks" / "img1.png").write_bytes(b"")
    warnings: list[str] = []
    with pytest.raises(DataError, match="no image with a readable mask is left, every one skipped"):
        load(str(root), (3, 8, 8), split="all", task=SEGMENTATION, num_classes=2, warn=warnings.append)
    assert len(warnings) == 2


def test_train_skips_an_unreadable_pair_and_refuses_a_folder_with_none_left(tmp_path):
    root = seg_folder(tmp_path / "seg", n=2)
    for p in (root / "images").iterdir():
        p.write_bytes(b"broken")
    out = tmp_path / "run"
    result = run_cli("train", UNET, "-t", "pytorch", "--data", str(root), "-o", str(out), *SMALL)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "warning: skipping" in result.output and "no image with a readable mask is left" in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "spec, data, message",
    [
        (UNET, "digits", "digits is classification data; the network is a segmentation network"),
        (LENET, "shapes", "shapes is segmentation data; the network is an image classifier"),
        (UNET, "CLASSES", "is classification data; the network is a segmentation network"),
        (LENET, "SEG", "is segmentation data; the network is an image classifier"),
        (UNET, "EMPTY", "has no images/ and no masks/ folder"),
    ],
)
def test_train_refuses_data_of_the_other_task_and_writes_nothing(tmp_path, spec, data, message):
    if data == "CLASSES":
        for c in ("a", "b"):
            (tmp_path / "cls" / c).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / "cls" / c / "x.png")
        data = str(tmp_path / "cls")
    elif data == "SEG":
        data = str(seg_folder(tmp_path / "seg"))
    elif data == "EMPTY":
        (tmp_path / "empty").mkdir()
        data = str(tmp_path / "empty")
    out = tmp_path / "run"
    result = run_cli("train", spec, "-t", "pytorch", "--data", data, "-o", str(out), "--quiet")
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_train_refuses_mask_values_beyond_the_classes_naming_file_and_value(tmp_path):
    root = seg_folder(tmp_path / "seg")
    _broken(root, "value")
    out = tmp_path / "run"
    result = run_cli("train", UNET, "-t", "pytorch", "--data", str(root), "-o", str(out), *SMALL)
    assert result.exit_code == 1
    assert "img5.png has the value 5" in result.output and "there are 2: 0, 1" in result.output
    assert not out.exists()


def test_nproc_is_refused_for_a_segmentation_network(tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", UNET, "-t", "pytorch", "--nproc", "2", "--batch-size", "4", "-o", str(out), *SMALL)
    assert result.exit_code == 1
    assert "unet is a segmentation network: --nproc and --distributed train classifiers only" in result.output
    assert not out.exists()


# ----------------------------------------------------------------------------
# Augmentation and figures


def test_crop_and_flip_move_the_mask_with_its_image_and_brightness_leaves_it():
    rng = np.random.default_rng(1)
    masks = rng.integers(0, 3, (6, 16, 16))
    x = np.repeat((masks / 2.0)[:, None], 3, axis=1).astype(np.float32)  # the image is its mask
    for step in range(4):
        ax, am = augment_batch(x, masks, ("crop", "flip"), seed=0, step=step)
        assert am.shape == masks.shape and am.dtype == masks.dtype
        assert np.array_equal(ax[:, 0] * 2, am)  # the crop's padding is 0 in both
        assert np.array_equal(ax, augment(x, ("crop", "flip"), 0, step))  # the images as without masks
        assert not np.array_equal(am, masks) or step  # the first step moves something
    bx, bm = augment_batch(x, masks, ("brightness",), seed=0, step=1)
    assert np.array_equal(bm, masks) and not np.array_equal(bx, x)
    labels = np.arange(6)
    assert augment_batch(x, labels, ("crop", "flip"), 0, 1)[1] is labels


def test_per_pixel_cross_entropy_and_iou():
    logits = np.random.default_rng(0).normal(size=(2, 3, 4, 5))
    masks = np.random.default_rng(1).integers(0, 3, (2, 4, 5))
    flat = logits.transpose(0, 2, 3, 1).reshape(-1, 3)
    assert np.allclose(cross_entropy(logits, masks).ravel(), cross_entropy(flat, masks.ravel()))
    counts = confusion(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 3)
    assert counts.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert np.allclose(iou(counts)[:2], [1 / 2, 2 / 3]) and np.isnan(iou(counts)[2])
    assert mean_iou(counts) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_metrics_csv_has_a_mean_iou_column_for_segmentation_runs_only():
    row = {"step": 1, "loss": 0.5, "accuracy": 0.5, "test_loss": 0.4, "test_accuracy": 0.6, "lr": 0.1}
    assert Metrics([row]).csv().splitlines()[0] == "step,loss,accuracy,test_loss,test_accuracy,lr,seconds"
    header = Metrics([{**row, "test_mean_iou": 0.3}]).csv().splitlines()[0]
    assert header == "step,loss,accuracy,test_loss,test_accuracy,test_mean_iou,lr,seconds"


# ----------------------------------------------------------------------------
# Real runs


@pytest.mark.slow
@pytest.mark.parametrize("target", ["pytorch", "tensorflow", "keras", "chainer"])
def test_unet_trains_and_tests_on_shapes_in_every_target(target, tmp_path):
    out = tmp_path / "run"
    args = ("--iters", "2", "--batch-size", "4", "--eval-every", "2", "--augment", "crop,flip,brightness")
    result = run_cli("train", UNET, "-t", target, *args, "-o", str(out), *SMALL)
    assert result.exit_code == 0, result.output
    assert "test pixel accuracy" in result.output and "test mean IoU" in result.output
    info = json.loads((out / "run.json").read_text())
    assert info["task"] == "segmentation" and info["classes"] == ["background", "circle", "rectangle"]
    assert info["num_classes"] == 3 and 0 <= info["test_mean_iou"] <= 1 and 0 <= info["train_mean_iou"] <= 1
    assert (out / "metrics.csv").read_text().startswith("step,loss,accuracy,test_loss,test_accuracy,test_mean_iou,")
    result = run_cli("test", UNET, "-t", target, "--weights", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["n"] == 80 and report["pixels"] == 80 * 16 * 16
    assert report["pixel_accuracy"] == pytest.approx(info["test_accuracy"], abs=1e-6)
    assert report["mean_iou"] == pytest.approx(info["test_mean_iou"], abs=1e-6)
    assert sum(v["pixels"] for v in report["per_class"].values()) == report["pixels"]


@pytest.mark.slow
def test_the_loss_falls_on_shapes_in_pytorch(tmp_path):
    out = tmp_path / "run"
    args = ("--input", "3x32x32", "--iters", "60", "--batch-size", "8", "--eval-every", "20")
    result = run_cli("train", UNET, "-t", "pytorch", *args, "--threads", "1", "--quiet", "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = Metrics.read(out / "metrics.csv").rows
    assert rows[-1]["loss"] < 0.75 * rows[0]["loss"]
    assert rows[-1]["test_loss"] < rows[0]["test_loss"]
    assert rows[-1]["test_mean_iou"] > rows[0]["test_mean_iou"]


@pytest.mark.slow
def test_a_folder_run_resumes_stops_early_writes_masks_and_reports(tmp_path):
    root = seg_folder(tmp_path / "seg", n=10, classes=("sky", "square"))
    out = tmp_path / "run"
    args = ("--data", str(root), "--iters", "2", "--batch-size", "4", "--eval-every", "1", "--patience", "5")
    result = run_cli("train", UNET, "-t", "pytorch", *args, "--augment", "crop,flip", "-o", str(out), *SMALL)
    assert result.exit_code == 0, result.output
    result = run_cli("train", "--resume", str(out), "--iters", "3", "--quiet")
    assert result.exit_code == 0, result.output
    info = json.loads((out / "run.json").read_text())
    assert info["step"] == 3 and info["classes"] == ["sky", "square"] and "test_mean_iou" in info["best"]
    masks = tmp_path / "predicted"
    result = run_cli("test", UNET, "-t", "pytorch", "--weights", str(out), "--masks", str(masks))
    assert result.exit_code == 0, result.output
    assert "mean IoU" in result.output and "sky" in result.output
    written = sorted(p.name for p in masks.iterdir())
    assert written == sorted(f"{Path(n).stem}.png" for n in info_test_names(root))
    for p in masks.iterdir():
        mask = np.asarray(Image.open(p))
        assert mask.shape == (16, 16) and mask.max() <= 1
    report = run_cli("report", str(out))
    assert report.exit_code == 0 and "test mean IoU" in report.output


def info_test_names(root: Path) -> list[str]:
    """The images of the folder's held-out split, as test holds them out."""
    return list(split_pair(str(root), None, (3, 16, 16), task=SEGMENTATION, num_classes=2)[1].names)


@pytest.mark.slow
def test_test_masks_is_refused_for_a_classifier(tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", LENET, "-t", "pytorch", "--iters", "1", "--batch-size", "4", "-o", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    result = run_cli("test", LENET, "-t", "pytorch", "--weights", str(out), "--masks", str(tmp_path / "m"))
    assert result.exit_code == 1 and "--masks writes predicted masks of a segmentation network" in result.output
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_verify_train_takes_the_same_per_pixel_steps_in_chainer_as_in_pytorch():
    result = run_cli("verify", UNET, "--train", "--input", "3x16x16", "--targets", "pytorch,chainer", "--steps", "2")
    assert result.exit_code == 0, result.output
    assert "chainer" in result.output and "ok" in result.output
