"""The data layer of `archspec train` / `archspec test`: built-in digits and image folders."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from archspec.training import data
from archspec.training.data import DataError, check_num_classes, load, split_pair


def save(path, image: Image.Image, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def garbage(path, text: bytes = b"this is not an image"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text)
    return path


def balanced(root, counts: dict[str, int], size=(12, 10)):
    """A folder with counts[c] small PNGs per class c, each a distinct grey level."""
    for c, n in counts.items():
        for i in range(n):
            save(root / c / f"{c}_{i:03d}.png", Image.new("L", size, 10 * i))
    return root


def quiet_load(source, shape, **kwargs):
    warnings: list[str] = []
    return load(source, shape, warn=warnings.append, **kwargs), warnings


def one(root, image: Image.Image, name: str, shape, **save_kwargs) -> np.ndarray:
    """Load ``image`` saved as ``name`` in a two-class folder and return its decoded array."""
    save(root / "a" / name, image, **save_kwargs)
    save(root / "b" / "filler.png", Image.new("L", (4, 4)))
    ds, warnings = quiet_load(str(root), shape, split="all")
    assert warnings == []
    return ds.batch([ds.names.index(f"a/{name}")])[0]


# --- image folders: layout, order, conversion ---------------------------------------------


@pytest.fixture
def mixed(tmp_path):
    root = tmp_path / "train"
    save(root / "dog" / "d1.jpeg", Image.new("RGB", (64, 48), (0, 0, 255)))
    save(root / "cat" / "b.png", Image.new("RGB", (40, 30), (255, 0, 0)))
    save(root / "cat" / "a.JPG", Image.new("L", (20, 20), 255), format="JPEG")
    save(root / "cat" / "c.webp", Image.new("RGB", (9, 7), (0, 255, 0)), lossless=True)
    save(root / "ant" / "x.bmp", Image.new("RGB", (5, 5), (0, 0, 0)))
    save(root / "ant" / "y.gif", Image.new("P", (33, 17), 0))
    return root


def test_folder_classes_names_labels_sorted(mixed):
    ds, warnings = quiet_load(str(mixed), (3, 16, 16), split="all")
    assert warnings == []
    assert ds.name == str(mixed)
    assert ds.classes == ("ant", "cat", "dog")
    assert ds.names == ("ant/x.bmp", "ant/y.gif", "cat/a.JPG", "cat/b.png", "cat/c.webp", "dog/d1.jpeg")
    assert ds.labels.dtype == np.int64
    assert ds.labels.tolist() == [0, 0, 1, 1, 1, 2]
    assert ds.shape == (3, 16, 16) and len(ds) == 6


def test_folder_batch_shape_range_and_colours(mixed):
    ds, _ = quiet_load(str(mixed), (3, 16, 8), split="all")
    x = ds.batch(np.arange(len(ds)))
    assert x.shape == (6, 3, 16, 8) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    means = x.mean(axis=(2, 3))  # (n, C)
    np.testing.assert_allclose(means[ds.names.index("ant/x.bmp")], [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(means[ds.names.index("cat/b.png")], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(means[ds.names.index("cat/c.webp")], [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(means[ds.names.index("dog/d1.jpeg")], [0, 0, 1], atol=0.02)
    np.testing.assert_allclose(means[ds.names.index("cat/a.JPG")], [1, 1, 1], atol=0.02)  # grey -> 3 equal channels


def test_rgb_to_grey_is_luma(tmp_path):
    x = one(tmp_path / "d", Image.new("RGB", (6, 6), (255, 0, 0)), "red.png", (1, 4, 4))
    assert x.shape == (1, 4, 4)
    np.testing.assert_allclose(x, 76 / 255, atol=1e-6)  # ITU-R 601: 0.299 * 255


def test_grey_to_rgb_repeats_the_channel(tmp_path):
    ramp = Image.fromarray(np.tile(np.arange(0, 256, 16, dtype=np.uint8), (8, 1)))
    x = one(tmp_path / "d", ramp, "ramp.png", (3, 8, 16))
    assert np.array_equal(x[0], x[1]) and np.array_equal(x[1], x[2])
    np.testing.assert_allclose(x[0, 0], np.arange(0, 256, 16) / 255, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_transparent_pixels_become_white(tmp_path, channels):
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.paste((0, 0, 0, 255), (0, 0, 8, 4))  # top half opaque black, bottom half transparent black
    x = one(tmp_path / "d", rgba, "rgba.png", (channels, 8, 8))
    np.testing.assert_allclose(x[:, :3], 0.0, atol=1e-6)
    np.testing.assert_allclose(x[:, 5:], 1.0, atol=1e-6)


def test_half_transparent_black_is_mid_grey(tmp_path):
    x = one(tmp_path / "d", Image.new("LA", (4, 4), (0, 128)), "la.png", (1, 4, 4))
    np.testing.assert_allclose(x, 127 / 255, atol=1.5 / 255)


@pytest.mark.parametrize("name", ["p.png", "p.gif"])
def test_palette_transparency_becomes_white(tmp_path, name):
    p = Image.new("P", (8, 8), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 0 black (transparent), index 1 red
    p.paste(1, (0, 0, 4, 8))
    x = one(tmp_path / "d", p, name, (3, 8, 8), transparency=0)
    np.testing.assert_allclose(x[:, :, 6:], 1.0, atol=1e-6)  # right half: transparent -> white
    np.testing.assert_allclose(x[:, :, :2].mean(axis=(1, 2)), [1, 0, 0], atol=1e-6)  # left half red


def test_sixteen_bit_grey_scaled_by_its_range(tmp_path):
    levels = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    image = Image.fromarray(levels)
    assert image.mode == "I;16"
    x = one(tmp_path / "d", image, "deep.png", (1, 4, 4))
    np.testing.assert_allclose(x[0, 0], levels[0] / 65535, atol=1e-6)


def test_cmyk_jpeg(tmp_path):
    x = one(tmp_path / "d", Image.new("CMYK", (16, 16), (0, 0, 0, 0)), "cmyk.jpg", (3, 8, 8))
    assert x.min() > 0.97  # no ink = white


def test_exif_orientation_is_applied(tmp_path):
    # Stored 64 wide x 32 high, left half black, right half white; orientation 6 = "rotate 90 cw to view":
    # viewed it is 32 wide x 64 high, top half black, bottom half white.
    stored = Image.new("L", (64, 32), 0)
    stored.paste(255, (32, 0, 64, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    x = one(tmp_path / "d", stored, "rotated.jpg", (1, 16, 8), exif=exif.tobytes(), quality=95)
    assert x[0, :6].max() < 0.1
    assert x[0, 10:].min() > 0.9


def test_sizes_differ_output_does_not(tmp_path):
    root = tmp_path / "d"
    for i, size in enumerate([(3, 200), (128, 128), (1, 1), (500, 20)]):
        save(root / ("a" if i % 2 else "b") / f"{i}.png", Image.new("RGB", size, (200, 100, 50)))
    ds, _ = quiet_load(str(root), (3, 7, 5), split="all")
    x = ds.batch(range(len(ds)))
    assert x.shape == (4, 3, 7, 5)
    np.testing.assert_allclose(x, np.broadcast_to(np.array([200, 100, 50])[None, :, None, None] / 255, x.shape))


def test_large_jpeg_decoded_at_reduced_scale_matches_full_decode(tmp_path):
    root = tmp_path / "d"
    stripes = Image.fromarray((np.arange(640) // 8 % 2 * 255).astype(np.uint8)[None].repeat(400, axis=0))
    save(root / "a" / "big.jpg", stripes, quality=95)
    save(root / "b" / "filler.png", Image.new("L", (4, 4)))
    ds, _ = quiet_load(str(root), (1, 100, 160), split="all")
    with Image.open(root / "a" / "big.jpg") as im:
        full = np.asarray(im.convert("L").resize((160, 100), Image.Resampling.BILINEAR)) / 255
    np.testing.assert_allclose(ds.batch([0])[0, 0], full, atol=0.03)  # stripes 4 px wide survive


# --- what is skipped, what is refused ------------------------------------------------------


def test_hidden_files_are_ignored_silently(tmp_path):
    root = balanced(tmp_path / "d", {"a": 2, "b": 2})
    garbage(root / "a" / ".DS_Store")
    garbage(root / ".hidden" / "x.jpg")
    garbage(root / ".cache")
    ds, warnings = quiet_load(str(root), (1, 4, 4), split="all")
    assert warnings == []
    assert ds.classes == ("a", "b") and len(ds) == 4


def test_corrupt_and_non_image_files_are_skipped_with_a_warning(tmp_path):
    root = balanced(tmp_path / "d", {"a": 2, "b": 2})
    broken = garbage(root / "a" / "broken.jpg")
    notes = garbage(root / "b" / "notes.txt")
    truncated = root / "b" / "cut.png"
    save(tmp_path / "whole.png", Image.new("RGB", (50, 50), (1, 2, 3)))
    truncated.write_bytes((tmp_path / "whole.png").read_bytes()[:60])
    stray = save(root / "loose.png", Image.new("L", (4, 4)))
    ds, warnings = quiet_load(str(root), (1, 4, 4), split="all")
    assert len(ds) == 4 and "a/broken.jpg" not in ds.names
    assert len(warnings) == 4
    text = "\n".join(warnings)
    assert f"{broken}: not a readable image" in text
    assert f"{truncated}: not a readable image" in text
    assert f"{notes}: not an image file name" in text
    assert f"{stray}: an image outside the class folders" in text


def test_at_most_ten_skipped_files_are_named(tmp_path):
    root = balanced(tmp_path / "d", {"a": 1, "b": 1})
    for i in range(13):
        garbage(root / "a" / f"bad_{i:02d}.png")
    ds, warnings = quiet_load(str(root), (1, 4, 4), split="all")
    assert len(ds) == 2
    assert len(warnings) == 11
    assert all("bad_" in w for w in warnings[:10])
    assert "and 3 more skipped" in warnings[10]


def test_segmentation_folders_name_skipped_files_as_class_folders_do(tmp_path):
    root = tmp_path / "seg"
    for i in range(14):
        save(root / "images" / f"im{i:02d}.png", Image.new("RGB", (6, 6)))
        save(root / "masks" / f"im{i:02d}.png", Image.new("L", (6, 6)))
    for i in range(12):
        garbage(root / "images" / f"im{i:02d}.png")
    ds, warnings = quiet_load(str(root), (3, 4, 4), split="all", task=data.SEGMENTATION, num_classes=2)
    assert ds.names == ("images/im12.png", "images/im13.png") and ds.masks.shape == (2, 4, 4)
    assert len(warnings) == 11
    assert warnings[0].startswith(f"warning: skipping {root / 'images' / 'im00.png'}: not a readable image")
    assert warnings[10] == "warning: ... and 2 more skipped"


def test_warn_skipped_names_ten_then_counts():
    said: list[str] = []
    data.warn_skipped([(data.Path(f"f{i}"), "why") for i in range(12)], said.append)
    assert said[:2] == ["warning: skipping f0: why", "warning: skipping f1: why"]
    assert said[10:] == ["warning: ... and 2 more skipped"]


def test_class_left_empty_by_skipped_files_is_refused(tmp_path):
    root = balanced(tmp_path / "d", {"a": 2})
    garbage(root / "b" / "bad.jpg")
    warnings: list[str] = []
    with pytest.raises(DataError, match=r"no readable images, every file skipped: b") as err:
        load(str(root), (1, 4, 4), warn=warnings.append)
    assert str(root) in str(err.value)
    assert len(warnings) == 1 and "bad.jpg" in warnings[0]


def test_file_broken_after_the_check_names_the_file(tmp_path):
    root = balanced(tmp_path / "d", {"a": 2, "b": 2})
    ds, _ = quiet_load(str(root), (1, 4, 4), split="all")
    garbage(root / "b" / "b_001.png")
    with pytest.raises(DataError, match="cannot decode .*b_001.png"):
        ds.batch([ds.names.index("b/b_001.png")])


def bad(source, shape=(1, 8, 8), **kwargs) -> str:
    with pytest.raises(DataError) as err:
        load(source, shape, warn=lambda m: None, **kwargs)
    return str(err.value)


def test_missing_path_and_unknown_name(tmp_path):
    message = bad(str(tmp_path / "nowhere"))
    assert f"no such folder: {tmp_path / 'nowhere'}" in message and "one subfolder per class" in message
    message = bad("mnist")
    assert "'mnist'" in message and "built-in data set (digits)" in message and "one subfolder per class" in message


def test_file_instead_of_folder(tmp_path):
    path = save(tmp_path / "x.png", Image.new("L", (4, 4)))
    assert "is a file, not a folder" in bad(str(path))


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "is empty" in bad(str(tmp_path / "empty"))


def test_images_without_class_subfolders(tmp_path):
    for i in range(3):
        save(tmp_path / "flat" / f"{i}.jpg", Image.new("RGB", (4, 4)))
    message = bad(str(tmp_path / "flat"))
    assert "holds 3 images but no class subfolders" in message
    assert f"put the images in one subfolder per class, e.g. {tmp_path / 'flat' / 'cat'}/*.jpg" in message


def test_a_single_class_is_refused_with_a_hint_for_one_level_too_high(tmp_path):
    balanced(tmp_path / "Dataset" / "train" / "images", {"akahara": 1, "madara": 1})
    message = bad(str(tmp_path / "Dataset" / "train"))
    assert "one class folder (images)" in message and "at least 2 classes" in message
    assert f"give {tmp_path / 'Dataset' / 'train' / 'images'}" in message


def test_class_folder_without_images(tmp_path):
    root = balanced(tmp_path / "d", {"a": 2, "c": 1})
    (root / "b").mkdir()
    assert "class folders with no images: b" in bad(str(root))


def test_input_shapes_images_cannot_take(tmp_path):
    root = balanced(tmp_path / "d", {"a": 2, "b": 2})
    assert "image data needs a CxHxW input" in bad(str(root), (1, 100))
    assert "image data needs a CxHxW input" in bad("digits", (1, 100))
    message = bad(str(root), (2, 8, 8))
    assert "1 (grey) or 3 (RGB) channels" in message and "--input" in message


def test_bad_split_arguments(tmp_path):
    root = balanced(tmp_path / "d", {"a": 2, "b": 2})
    assert "unknown split 'val'" in bad(str(root), split="val")
    assert "strictly between 0 and 1" in bad(str(root), test_fraction=1.0)


# --- splits --------------------------------------------------------------------------------


@pytest.fixture
def uneven(tmp_path):
    return balanced(tmp_path / "d", {"a": 10, "b": 5, "c": 1, "d": 2})


def test_split_is_stratified_disjoint_and_complete(uneven):
    train, test = split_pair(str(uneven), None, (1, 4, 4), warn=lambda m: None)
    everything, _ = quiet_load(str(uneven), (1, 4, 4), split="all")
    assert train.classes == test.classes == ("a", "b", "c", "d")
    assert set(train.names) | set(test.names) == set(everything.names)
    assert not set(train.names) & set(test.names)
    assert np.bincount(test.labels, minlength=4).tolist() == [2, 1, 0, 1]  # c's single image stays in train
    assert np.bincount(train.labels, minlength=4).tolist() == [8, 4, 1, 1]
    for ds in (train, test):  # labels follow the names
        assert all(ds.classes[k] == n.split("/")[0] for k, n in zip(ds.labels, ds.names))


def test_split_is_deterministic_and_shared_with_load(uneven):
    first = split_pair(str(uneven), None, (1, 4, 4), warn=lambda m: None)
    again = split_pair(str(uneven), None, (1, 4, 4), warn=lambda m: None)
    assert first[1].names == again[1].names
    test, _ = quiet_load(str(uneven), (1, 4, 4), split="test")
    train, _ = quiet_load(str(uneven), (1, 4, 4), split="train")
    assert test.names == first[1].names and train.names == first[0].names
    other, _ = quiet_load(str(uneven), (1, 4, 4), split="test", seed=1)
    assert other.names != test.names


def test_too_few_images_to_split(tmp_path):
    root = balanced(tmp_path / "d", {"a": 1, "b": 1})
    assert len(quiet_load(str(root), (1, 4, 4), split="all")[0]) == 2
    with pytest.raises(DataError, match="too few images to hold any out"):
        split_pair(str(root), None, (1, 4, 4), warn=lambda m: None)


def test_separate_test_folder(tmp_path):
    train_root = balanced(tmp_path / "train", {"a": 3, "b": 2})
    test_root = balanced(tmp_path / "test", {"a": 1, "b": 2})
    train, test = split_pair(str(train_root), str(test_root), (1, 4, 4), warn=lambda m: None)
    assert len(train) == 5 and len(test) == 3
    assert test.name == str(test_root) and test.labels.tolist() == [0, 1, 1]


def test_test_folder_with_other_classes(tmp_path):
    train_root = balanced(tmp_path / "train", {"a": 2, "b": 2, "c": 2})
    test_root = balanced(tmp_path / "test", {"a": 1, "b": 1, "z": 1})
    with pytest.raises(DataError) as err:
        split_pair(str(train_root), str(test_root), (1, 4, 4), warn=lambda m: None)
    assert f"only in {train_root}: c" in str(err.value) and f"only in {test_root}: z" in str(err.value)


def test_test_folder_needs_the_same_layout(tmp_path):
    train_root = balanced(tmp_path / "train", {"a": 2, "b": 2})
    save(tmp_path / "test" / "0.png", Image.new("L", (4, 4)))
    with pytest.raises(DataError, match="a test folder needs the same layout and classes"):
        split_pair(str(train_root), str(tmp_path / "test"), (1, 4, 4), warn=lambda m: None)


# --- digits ----------------------------------------------------------------------------------


def test_builtins_are_listed():
    assert set(data.BUILTIN) == set(data.BUILTIN_TASK) == {"digits", "shapes"}
    assert all(isinstance(text, str) and text for text in data.BUILTIN.values())


def test_digits_at_native_size_are_the_scaled_source():
    from sklearn.datasets import load_digits

    source = load_digits()
    ds = load(None, (1, 8, 8), split="all")
    assert ds.name == "digits" and ds.classes == tuple("0123456789")
    assert len(ds) == 1797 and ds.names[42] == "digits_0042"
    assert np.array_equal(ds.labels, source.target)
    np.testing.assert_array_equal(ds.batch(np.arange(1797))[:, 0], source.images.astype(np.float32) / 16)


def test_digits_split_upsampled_to_three_channels():
    train, test = split_pair("digits", None, (3, 32, 32), warn=lambda m: None)
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert train.classes == test.classes
    counts = np.bincount(train.labels, minlength=10) + np.bincount(test.labels, minlength=10)
    assert np.array_equal(np.bincount(test.labels), np.floor(0.2 * counts + 0.5).astype(int))
    assert load("digits", (3, 32, 32), split="test").names == test.names  # the split does not depend on a caller
    x = test.batch(np.arange(50))
    assert x.shape == (50, 3, 32, 32) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() > 0.9
    assert np.array_equal(x[:, 0], x[:, 1]) and np.array_equal(x[:, 0], x[:, 2])
    small = load("digits", (1, 8, 8), split="test").batch(np.arange(50))[:, 0]
    np.testing.assert_allclose(x[:, 0], bilinear(small, 32, 32), atol=1e-6)
    wide = load("digits", (1, 12, 20), split="test").batch(np.arange(50))[:, 0]
    np.testing.assert_allclose(wide, bilinear(small, 12, 20), atol=1e-6)


def bilinear(images: np.ndarray, h: int, w: int) -> np.ndarray:
    """Reference bilinear resize of (n, H, W): pixel centres aligned, edges clamped."""

    def weights(n_in: int, n_out: int) -> np.ndarray:
        x = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(x).astype(int)
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), i0] += 1 - (x - i0)
        m[np.arange(n_out), np.minimum(i0 + 1, n_in - 1)] += x - i0
        return m

    return np.einsum("hi,nij,wj->nhw", weights(images.shape[1], h), images, weights(images.shape[2], w))


# --- batches and the memory budget ------------------------------------------------------------


def test_memory_budget_gives_identical_batches(monkeypatch, mixed):
    cached, _ = quiet_load(str(mixed), (3, 16, 16), split="all")
    monkeypatch.setattr(data, "CACHE_BUDGET", 16 * 16 * 3 * 4)  # room for one image, not six
    uncached, _ = quiet_load(str(mixed), (3, 16, 16), split="all")
    order = [5, 0, 3, 3, 1]
    first = cached.batch(order)
    assert cached._cache.array is not None and cached._cache.done.sum() == 4
    np.testing.assert_array_equal(first, uncached.batch(order))
    assert uncached._cache.array is None
    first[:] = -1  # a batch is a copy: the cache is not touched
    np.testing.assert_array_equal(cached.batch(order), uncached.batch(order))


def test_a_pickled_dataset_starts_with_an_empty_cache(mixed):
    ds, _ = quiet_load(str(mixed), (1, 4, 4), split="all")
    x = ds.batch([0, 4])
    copy = pickle.loads(pickle.dumps(ds))  # as DataLoader workers under "spawn" receive it
    assert copy._cache.array is None and copy.names == ds.names
    np.testing.assert_array_equal(copy.batch([0, 4]), x)


def test_batch_indices(mixed):
    ds, _ = quiet_load(str(mixed), (1, 4, 4), split="all")
    assert ds.batch([]).shape == (0, 1, 4, 4)
    assert ds.batch(np.array([2])).shape == (1, 1, 4, 4)
    with pytest.raises(IndexError):
        ds.batch([len(ds)])


def test_subset_keeps_classes_and_pairs(mixed):
    ds, _ = quiet_load(str(mixed), (3, 4, 4), split="all")
    sub = ds.subset([5, 2])
    assert sub.classes == ds.classes and sub.names == ("dog/d1.jpeg", "cat/a.JPG")
    assert sub.labels.tolist() == [2, 1]
    np.testing.assert_array_equal(sub.batch([0, 1]), ds.batch([5, 2]))


# --- num_classes --------------------------------------------------------------------------------


def test_check_num_classes(mixed):
    ds, _ = quiet_load(str(mixed), (1, 4, 4), split="all")
    assert check_num_classes(ds, None, 1000) == 3
    assert check_num_classes(ds, 3, 1000) == 3
    with pytest.raises(DataError) as err:
        check_num_classes(ds, 5, 1000)
    message = str(err.value)
    assert "the data has 3 classes (ant, cat, dog) but --set num_classes=5" in message
    assert "drop the --set" in message
