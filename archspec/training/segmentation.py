"""Segmentation data: a class per pixel, for networks whose output is (classes, H, W).

A segmentation folder holds::

    DIR/images/<name>.<ext>   the images (the formats archspec.training.data reads)
    DIR/masks/<name>.png      a mask per image, same stem: each pixel's value is its class index
    DIR/classes.txt           optional: the class names, one per line, class 0 first

Without ``classes.txt`` the classes are ``0 .. num_classes - 1``, the network's
``num_classes``. A mask is a greyscale (L, 16-bit I) or palette (P: the palette
index is the class, as in PASCAL VOC) PNG of its image's size (after the image's
EXIF orientation). Everything is checked when the folder is read. An image that
is not readable, or whose mask is not, is skipped with a warning, as a classifier
folder skips one (:func:`archspec.training.data.warn_skipped`); it is an error
when no pair is left. Every other problem is reported at once: a missing
``images/`` or ``masks/``, an image without a mask or a mask without an image, a
mask that is not one class index per pixel (RGB), a mask of another size than its
image, a mask value that is not a class. Images are decoded as
:mod:`archspec.training.data` decodes them (bilinear, to the input size); masks
are resized to the input's H x W with nearest neighbour, so they keep class
indices, and are kept in memory (int64, n x H x W).

``shapes`` is the built-in data set: :data:`SHAPES_COUNT` images of one to three
filled circles and rectangles of random colours on a noisy background, with their
masks (0 background, 1 circle, 2 rectangle; a later shape covers an earlier one).
Image k's shapes come from the seed ``(SHAPES_SEED, k)`` in units of the image
size, so the data set is the same on every machine and looks the same at every
input size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from archspec.training.data import (
    CLASSIFICATION,
    IMAGE_SUFFIXES,
    MAX_NAMED,
    SEGMENTATION,
    DataError,
    Dataset,
    check_image,
    entries,
    is_image_name,
    listing,
    warn_skipped,
)

SHAPES_COUNT = 400
SHAPES_SEED = 0
SHAPES_CLASSES = ("background", "circle", "rectangle")
MASK_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L")  # one value per pixel: the class index
_LAYOUT = "DIR/images/<name>.<ext> and DIR/masks/<name>.png (same stem)"


def layout(root: Path) -> str | None:
    """The task a folder's layout is for: segmentation when it has both ``images/`` and
    ``masks/``, classification when it has neither but other subfolders (class folders);
    None when it is not a folder or either may fit (the loaders then say what is missing)."""
    if not root.is_dir():
        return None
    has = [(root / sub).is_dir() for sub in ("images", "masks")]
    if all(has):
        return SEGMENTATION
    if not any(has) and any(p.is_dir() for p in entries(root)):
        return CLASSIFICATION
    return None


def read_classes(path: Path) -> tuple[str, ...]:
    """The class names of a ``classes.txt``: one per line, blank lines ignored."""
    try:
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path} ({exc}); it names the classes, one per line, in UTF-8") from None
    repeated = sorted({n for n in names if names.count(n) > 1})
    if len(names) < 2 or repeated:
        why = f"names {listing(repeated)} more than once" if repeated else f"names {len(names)} class(es)"
        raise DataError(f"{path} {why}: give at least 2 distinct class names, one per line, class 0 first")
    return names


def _oriented_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image as it is shown: after its EXIF orientation."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        return (h, w) if im.getexif().get(0x0112) in (5, 6, 7, 8) else (w, h)


class UnreadableMask(DataError):
    """A mask file that Pillow cannot read."""


def read_mask(path: Path) -> np.ndarray:
    """A mask file's class indices, int64 (H, W); UnreadableMask when it is not a readable
    image (:func:`archspec.training.data.check_image`), DataError when it is not one class
    index per pixel."""
    from PIL import Image

    reason = check_image(path)
    if reason:
        raise UnreadableMask(f"{path} is {reason}")
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode in MASK_MODES:
                return np.asarray(im, dtype=np.int64)
    except Exception as exc:  # Pillow raises many kinds for broken files
        raise UnreadableMask(f"{path} is not a readable image ({type(exc).__name__}: {exc})") from None
    raise DataError(
        f"{path} is a {mode} image: a mask holds one class index per pixel; save it as a greyscale (L) "
        "or palette (P) PNG whose pixel values are the classes"
    )


def resize_mask(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """Class indices resized to (h, w) with nearest neighbour (no new values)."""
    from PIL import Image

    if mask.shape == (h, w):
        return mask
    im = Image.fromarray(mask.astype(np.int32))
    return np.asarray(im.resize((w, h), Image.Resampling.NEAREST), dtype=np.int64)


def _named(problems: list[str], what: str, paths: Sequence[str], fix: str) -> None:
    if paths:
        problems.append(f"{what}: {listing(list(paths), MAX_NAMED)} ({fix})")


def folder(
    given: str,
    root: Path,
    shape: tuple[int, ...],
    default_classes: tuple[str, ...],
    warn: Callable[[str], None] = print,
) -> Dataset:
    """A segmentation folder (module docstring) at ``shape``; unreadable pairs skipped with a
    warning (``warn``), DataError naming every other problem."""
    if not root.is_dir():
        raise DataError(f"{given} is a file, not a folder: give a segmentation folder, {_LAYOUT}")
    missing = [sub for sub in ("images", "masks") if not (root / sub).is_dir()]
    if missing:
        raise DataError(
            f"{given} has no {' and no '.join(m + '/' for m in missing)} folder: a segmentation folder holds "
            f"{_LAYOUT}, and optionally classes.txt"
        )
    classes = read_classes(root / "classes.txt") if (root / "classes.txt").is_file() else default_classes
    images = [p for p in entries(root / "images") if p.is_file()]
    masks = [p for p in entries(root / "masks") if p.is_file()]
    problems: list[str] = []
    _named(
        problems,
        "files in images/ that are not images",
        [p.name for p in images if not is_image_name(p)],
        f"accepted: {' '.join(IMAGE_SUFFIXES)}; move them out",
    )
    not_png = [p.name for p in masks if p.suffix.lower() != ".png"]
    _named(problems, "masks that are not PNG files", not_png, "a mask is <name>.png")
    images = [p for p in images if is_image_name(p)]
    by_stem: dict[str, Path] = {}
    twice = []
    for p in images:
        if p.stem in by_stem:
            twice.append(f"{by_stem[p.stem].name} and {p.name}")
        by_stem[p.stem] = p
    _named(problems, "images that share a name", twice, "a mask belongs to one image: rename one of each pair")
    mask_of = {p.stem: p for p in masks if p.suffix.lower() == ".png"}
    _named(
        problems,
        "images without a mask",
        [p.name for s, p in by_stem.items() if s not in mask_of],
        "add masks/<name>.png for each, or remove the images",
    )
    _named(
        problems,
        "masks without an image",
        [p.name for s, p in mask_of.items() if s not in by_stem],
        "add the images to images/, or remove the masks",
    )
    if not by_stem and not problems:
        problems.append(f"images/ holds no images: put the images in {_LAYOUT}")
    _, h, w = shape
    pairs = [(by_stem[s], mask_of[s]) for s in sorted(by_stem) if s in mask_of]
    kept: list[Path] = []
    decoded: list[np.ndarray] = []
    skipped: list[tuple[Path, str]] = []
    not_masks, sizes, values = [], [], []
    for image, mask_path in pairs:
        reason = check_image(image)
        if reason:
            skipped.append((image, reason))
            continue
        try:
            mask = read_mask(mask_path)
        except UnreadableMask as exc:
            skipped.append((image, f"its mask {exc}"))
            continue
        except DataError as exc:
            not_masks.append(str(exc).replace(str(mask_path), mask_path.name, 1))
            continue
        size = _oriented_size(image)
        if (mask.shape[1], mask.shape[0]) != size:
            sizes.append(f"{mask_path.name} is {mask.shape[1]}x{mask.shape[0]}, {image.name} {size[0]}x{size[1]}")
            continue
        if mask.size and mask.max() >= len(classes):
            values.append(f"{mask_path.name} has the value {int(mask.max())}")
            continue
        kept.append(image)
        decoded.append(resize_mask(mask, h, w))
    warn_skipped(skipped, warn)
    _named(problems, "masks that are not one class index per pixel", not_masks, "fix or replace them")
    _named(problems, "masks of another size than their image (width x height)", sizes, "a mask is its image's size")
    _named(
        problems,
        f"mask values that are not classes (there are {len(classes)}: {listing(list(classes))})",
        values,
        "a pixel's value is its class index: fix the masks, name every class in classes.txt, "
        "or give the network more classes with --set num_classes=K",
    )
    if pairs and not kept and not problems:
        problems.append(
            "no image with a readable mask is left, every one skipped "
            "(see the warnings above; fix or replace the files)"
        )
    if problems:
        raise DataError(f"{given}: " + "; ".join(problems))
    return Dataset(
        name=given,
        classes=tuple(classes),
        labels=np.zeros(len(kept), dtype=np.int64),
        names=tuple(image.relative_to(root).as_posix() for image in kept),
        shape=tuple(shape),
        sources=tuple(kept),
        masks=np.stack(decoded),
    )


def draw_shapes(k: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Image ``k`` of ``shapes`` at ``shape`` (C, H, W): float32 in [0, 1] and its int64 mask."""
    c, h, w = shape
    rng = np.random.default_rng([SHAPES_SEED, k])
    y, x = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
    image = np.empty((c, h, w), dtype=np.float32)
    image[:] = rng.uniform(0.0, 0.6, (c, 1, 1))
    mask = np.zeros((h, w), dtype=np.int64)
    for _ in range(rng.integers(1, 4)):
        kind, colour = int(rng.integers(1, 3)), rng.uniform(0.0, 1.0, (c, 1))
        cy, cx, a, b = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.25), rng.uniform(0.1, 0.25)
        circle = (y - cy) ** 2 + (x - cx) ** 2 <= a**2  # radius a
        rectangle = (np.abs(y - cy) <= a) & (np.abs(x - cx) <= b)  # half-sides a, b
        region = circle if kind == 1 else rectangle
        image[:, region] = colour
        mask[region] = kind
    noise = rng.normal(0.0, 0.08, (c, h, w)).astype(np.float32)
    return np.clip(image + noise, 0.0, 1.0), mask


def shapes(shape: tuple[int, ...]) -> Dataset:
    """The built-in ``shapes`` data set at ``shape`` (C, H, W)."""
    drawn = [draw_shapes(k, tuple(shape)) for k in range(SHAPES_COUNT)]
    return Dataset(
        name="shapes",
        classes=SHAPES_CLASSES,
        labels=np.zeros(SHAPES_COUNT, dtype=np.int64),
        names=tuple(f"shapes_{k:04d}" for k in range(SHAPES_COUNT)),
        shape=tuple(shape),
        sources=tuple(image for image, _ in drawn),
        masks=np.stack([mask for _, mask in drawn]),
    )


def write_masks(directory: Path, names: Sequence[str], masks: np.ndarray) -> list[Path]:
    """Each mask as ``directory/<stem of its name>.png`` (8-bit greyscale, pixel value =
    class index, the layout of masks/), each written atomically; the paths written."""
    from PIL import Image

    from archspec.training.core import atomic

    if masks.size and masks.max() > 255:
        raise DataError(f"cannot write masks of {int(masks.max()) + 1} classes as 8-bit PNGs (at most 256)")
    written = []
    for name, mask in zip(names, masks):
        path = Path(directory) / f"{Path(name).stem}.png"
        with atomic(path) as tmp:
            Image.fromarray(mask.astype(np.uint8)).save(tmp, format="PNG")
        written.append(path)
    return written
