"""Training and test data: the built-in digits and image folders in the quiz's layout
(classifiers); segmentation data (images with masks) is :mod:`archspec.training.segmentation`'s.

An image folder holds one subfolder per class, ``DIR/<class>/*.jpg`` (also
``.jpeg .png .bmp .gif .webp``, any case); the classes are the subfolder names,
sorted. Every image, whatever its size, mode and format, becomes a float32
``(C, H, W)`` array in [0, 1] at the spec's input size:

- its EXIF orientation is applied; transparent pixels (RGBA, LA, palette or
  colour-key transparency) are composited onto white;
- C=1 is Pillow's "L" (ITU-R 601 luma), C=3 is "RGB" (grey repeated); 16-bit
  greyscale is divided by 65535, 8-bit by 255;
- it is resized to (H, W) with Pillow's bilinear filter (antialiased when
  shrinking).

Files are checked when the folder is read (:func:`check_image`), so
broken files are found before training starts. Policy for a file that is not a
readable image: it is skipped with a warning (at most ``MAX_NAMED`` named, then
a count: :func:`warn_skipped`, which segmentation folders share); hidden files
(dotfiles) are ignored silently; a class left without images is an error.
Decoding is lazy and deterministic: a dataset keeps its decoded images in
memory when they fit in ``CACHE_BUDGET`` bytes of float32 and decodes them
again on every :meth:`Dataset.batch` call otherwise.

Held-out test sets are a stratified split (segmentation data: a plain random one) with a constant seed (``SPLIT_SEED``,
not the training seed), so ``archspec train`` and ``archspec test`` agree on
which images were held out.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # Pillow is imported where images are read: archspec verify --train runs without it
    from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
CACHE_BUDGET = 1 << 30  # bytes of decoded float32 one dataset may keep in memory
SPLIT_SEED = 0  # the held-out split's seed: a constant, independent of the training seed
TEST_FRACTION = 0.2
MAX_NAMED = 10  # skipped files named one by one before the rest are counted
SPLITS = ("train", "test", "all")

CLASSIFICATION, SEGMENTATION = "classification", "segmentation"  # what a network learns: a class per image or pixel
BUILTIN: dict[str, str] = {
    "digits": "scikit-learn's handwritten digits: 1797 8x8 grey images, 10 classes (0-9), upsampled to the input size",
    "shapes": "segmentation: 400 synthetic images of filled circles and rectangles on noisy backgrounds, "
    "3 classes per pixel (background, circle, rectangle), drawn at the input size from a fixed seed",
}
BUILTIN_TASK = {"digits": CLASSIFICATION, "shapes": SEGMENTATION}

_EXAMPLE = "DIR/cat/*.jpg, DIR/dog/*.jpg"


class DataError(Exception):
    """Data that cannot be used: the message says what is wrong and what to do."""


class _Cache:
    """The decoded samples of one dataset, filled as batches ask for them. Safe to share between
    threads (a sample is marked done only after it is written); a pickled copy starts empty."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None
        self.done: np.ndarray | None = None
        self.lock = threading.Lock()

    def allocate(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        with self.lock:
            if self.array is None:
                self.array = np.empty(shape, dtype=np.float32)
                self.done = np.zeros(shape[0], dtype=bool)
            return self.array, self.done

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()


@dataclass(frozen=True, eq=False)
class Dataset:
    """Labelled images, decoded on demand to float32 ``(C, H, W)`` in [0, 1]: a class per
    image (``labels``) or, for segmentation data, a class per pixel (``masks``)."""

    name: str  # "digits" or the folder path as given
    classes: tuple[str, ...]  # class names; label k is classes[k]
    labels: np.ndarray  # int64, (n,); segmentation data: all 0 (one stratum for the held-out split)
    names: tuple[str, ...]  # per sample: path relative to the folder ("cat/001.jpg") or "digits_0042"
    shape: tuple[int, ...]  # per-sample (C, H, W)
    sources: tuple[Path | np.ndarray, ...]  # per sample: an image file, a 2-D grey array or a (C, H, W) one
    cache_budget: int = CACHE_BUDGET
    masks: np.ndarray | None = None  # segmentation data: int64 (n, H, W), each pixel's class
    _cache: _Cache = field(default_factory=_Cache, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def task(self) -> str:
        return CLASSIFICATION if self.masks is None else SEGMENTATION

    def targets(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """What the network learns for the samples at ``indices``: int64 labels ``(n,)``,
        or masks ``(n, H, W)`` for segmentation data."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return self.labels[idx] if self.masks is None else self.masks[idx]

    def batch(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """The samples at ``indices`` as a new float32 array ``(len(indices), C, H, W)``."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"sample index out of range 0..{len(self) - 1}: {idx.min()}..{idx.max()}")
        if len(self) * math.prod(self.shape) * 4 > self.cache_budget:
            out = np.empty((idx.size, *self.shape), dtype=np.float32)
            for k, i in enumerate(idx):
                out[k] = _decode(self.sources[i], self.shape)
            return out
        array, done = self._cache.allocate((len(self), *self.shape))
        for i in np.unique(idx[~done[idx]]):
            array[i] = _decode(self.sources[i], self.shape)
            done[i] = True
        return array[idx]

    def subset(self, indices: np.ndarray | Sequence[int]) -> Dataset:
        """The samples at ``indices``, same classes, with a cache of its own."""
        idx = [int(i) for i in indices]
        return replace(
            self,
            labels=self.labels[idx],
            masks=None if self.masks is None else self.masks[idx],
            names=tuple(self.names[i] for i in idx),
            sources=tuple(self.sources[i] for i in idx),
        )


def load(
    source: str | None,
    shape: tuple[int, ...],
    *,
    split: str = "train",
    test_fraction: float = TEST_FRACTION,
    seed: int = SPLIT_SEED,
    warn: Callable[[str], None] = print,
    task: str = CLASSIFICATION,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
) -> Dataset:
    """Load a built-in data set or an image folder; ``split`` "train" or "test" is the
    stratified held-out split (``test_fraction``, split seed ``seed``), "all" everything.
    ``task`` is the network's; segmentation data without a classes.txt has ``num_classes``
    classes, named ``classes`` when given (a run's), else 0, 1, ..."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    data = _load_all(source, shape, warn, task, num_classes, tuple(classes) if classes else None)
    if split == "all":
        return data
    train, test = _split(data, test_fraction, seed)
    return train if split == "train" else test


def split_pair(
    source: str | None,
    test_source: str | None,
    shape: tuple[int, ...],
    warn: Callable[[str], None] = print,
    task: str = CLASSIFICATION,
    num_classes: int | None = None,
) -> tuple[Dataset, Dataset]:
    """The (train, test) data of ``archspec train``: all of ``source`` and all of ``test_source``
    when it is given (same classes required), else the held-out split of ``source``.
    A segmentation test folder without classes.txt takes the training data's class names."""
    data = _load_all(source, shape, warn, task, num_classes)
    if test_source is None:
        return _split(data, TEST_FRACTION, SPLIT_SEED)
    test = _load_all(test_source, shape, warn, task, len(data.classes), data.classes)
    if test.classes != data.classes:
        only_train = sorted(set(data.classes) - set(test.classes))
        only_test = sorted(set(test.classes) - set(data.classes))
        diff = "; ".join(
            f"only in {where}: {listing(names)}"
            for where, names in ((data.name, only_train), (test.name, only_test))
            if names
        )
        raise DataError(
            f"the test data's classes differ from the training data's ({diff}): "
            "give test data with the same classes (class subfolders, or a segmentation folder's classes.txt)"
        )
    return data, test


def check_num_classes(dataset: Dataset, num_classes_set: int | None, spec_default: int) -> int:
    """The class count training uses: the data's, which ``--set num_classes=K`` may only confirm."""
    n = len(dataset.classes)
    if num_classes_set is None or num_classes_set == n:
        return n
    raise DataError(
        f"the data has {n} classes ({listing(dataset.classes)}) but --set num_classes={num_classes_set}; "
        f"drop the --set (training uses the data's {n} classes; the spec's default is {spec_default}) "
        f"or give data with {num_classes_set} {'class folders' if dataset.masks is None else 'classes'}"
    )


def _load_all(
    source: str | None,
    shape: tuple[int, ...],
    warn: Callable[[str], None],
    task: str = CLASSIFICATION,
    num_classes: int | None = None,
    class_names: tuple[str, ...] | None = None,
) -> Dataset:
    shape = tuple(shape)
    if len(shape) != 3:
        raise DataError(
            f"image data needs a CxHxW input, but the spec's input is {'x'.join(map(str, shape))}; "
            "set an image input with --input"
        )
    from archspec.training import segmentation

    if source is None:
        source = "digits" if task == CLASSIFICATION else "shapes"
    if BUILTIN_TASK.get(source, task) != task:
        raise DataError(_wrong_task(source, BUILTIN_TASK[source], task))
    if source == "digits":
        return _digits(shape)
    if source == "shapes":
        return segmentation.shapes(shape)
    path = Path(source).expanduser()
    if not path.exists():
        builtins = ", ".join(name for name, kind in BUILTIN_TASK.items() if kind == task)
        what = (
            f"a folder of images with one subfolder per class ({_EXAMPLE})"
            if task == CLASSIFICATION
            else "a segmentation folder (DIR/images/<name>.<ext>, DIR/masks/<name>.png)"
        )
        if "/" in source or "\\" in source or source.startswith((".", "~")):
            raise DataError(f"no such folder: {source}; give {what} or a built-in data set ({builtins})")
        raise DataError(
            f"{source!r} is neither a built-in data set ({builtins}) nor an existing folder; {what} is also accepted"
        )
    if shape[0] not in (1, 3):
        raise DataError(
            f"image folders need 1 (grey) or 3 (RGB) channels, but the spec's input has {shape[0]}; "
            "set the input with --input, e.g. --input 3x32x32"
        )
    layout = segmentation.layout(path)
    if layout is not None and layout != task:
        raise DataError(_wrong_task(source, layout, task))
    if task == SEGMENTATION:
        names = class_names or tuple(str(k) for k in range(num_classes or 0))
        return segmentation.folder(source, path, shape, names, warn)
    return _folder(source, path, shape, warn)


_LAYOUTS = {
    CLASSIFICATION: f"a class per image, e.g. a folder with one subfolder per class ({_EXAMPLE}) or digits",
    SEGMENTATION: "a class per pixel, e.g. a folder with DIR/images/<name>.<ext> and DIR/masks/<name>.png, or shapes",
}


def _wrong_task(source: str, data_task: str, task: str) -> str:
    """Why ``source`` (data for ``data_task``) does not fit a network that learns ``task``."""
    net = "an image classifier" if task == CLASSIFICATION else "a segmentation network (a class per pixel)"
    return f"{source} is {data_task} data; the network is {net}: give data with {_LAYOUTS[task]}"


def _digits(shape: tuple[int, ...]) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = digits.images.astype(np.float32) / 16.0
    return Dataset(
        name="digits",
        classes=tuple(str(k) for k in range(10)),
        labels=digits.target.astype(np.int64),
        names=tuple(f"digits_{i:04d}" for i in range(len(pixels))),
        shape=shape,
        sources=tuple(pixels),
        cache_budget=CACHE_BUDGET,
    )


def _split(data: Dataset, test_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Stratified (train, test): per class round(fraction * n) test samples, at least one
    when the class has two or more, none when it has one."""
    if not 0 < test_fraction < 1:
        raise DataError(f"the test fraction must lie strictly between 0 and 1, not {test_fraction}")
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for k in range(len(data.classes)):
        members = np.flatnonzero(data.labels == k)
        n = len(members)
        n_test = 0 if n < 2 else min(n - 1, max(1, math.floor(test_fraction * n + 0.5)))
        test.append(rng.permutation(members)[:n_test])
    is_test = np.zeros(len(data), dtype=bool)
    is_test[np.concatenate(test)] = True
    if not is_test.any():
        raise DataError(
            f"{data.name}: too few images to hold any out for testing (no class has two); "
            "add images or give a separate test folder"
        )
    return data.subset(np.flatnonzero(~is_test)), data.subset(np.flatnonzero(is_test))


# Shared with archspec.training.segmentation: reading folders, checking files, naming what was skipped.


def listing(names: Sequence[str], most: int = 10) -> str:
    """``names`` joined by commas, the first ``most`` of them, then how many more."""
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown}, ... ({len(names) - most} more)"


def entries(folder: Path) -> list[Path]:
    """The folder's visible entries (dotfiles left out), sorted by name; DataError when it cannot be read."""
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise DataError(f"cannot read the folder {folder}: {exc.strerror or exc}") from None


def is_image_name(path: Path) -> bool:
    """Whether ``path`` has one of the :data:`IMAGE_SUFFIXES` (any case)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def check_image(path: Path) -> str | None:
    """Why ``path`` is not a readable image, or None when it is (``Image.open`` + ``verify``).
    An image of more pixels than Pillow's ``MAX_IMAGE_PIXELS`` (a decompression bomb, where
    Pillow only warns below twice that) is not one."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.verify()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        return (
            f"an image of more pixels than Pillow's limit of {Image.MAX_IMAGE_PIXELS:,} (a decompression bomb?): "
            "shrink it to the size you train at"
        )
    except Exception as exc:  # Pillow raises many kinds (OSError, SyntaxError, struct.error, ...) for broken files
        return f"not a readable image ({type(exc).__name__}: {exc})"
    return None


def warn_skipped(skipped: Sequence[tuple[Path, str]], warn: Callable[[str], None]) -> None:
    """One warning per skipped (path, reason), at most :data:`MAX_NAMED` of them, then a count."""
    for path, reason in skipped[:MAX_NAMED]:
        warn(f"warning: skipping {path}: {reason}")
    if len(skipped) > MAX_NAMED:
        warn(f"warning: ... and {len(skipped) - MAX_NAMED} more skipped")


def _folder(given: str, root: Path, shape: tuple[int, ...], warn: Callable[[str], None]) -> Dataset:
    if not root.is_dir():
        raise DataError(
            f"{given} is a file, not a folder: give the folder that holds one subfolder per class ({_EXAMPLE})"
        )
    visible = entries(root)
    class_dirs = [p for p in visible if p.is_dir()]
    stray = [p for p in visible if p.is_file() and is_image_name(p)]
    if not visible:
        raise DataError(f"{given} is empty: put the images in one subfolder per class ({_EXAMPLE})")
    if not class_dirs:
        found = f"holds {len(stray)} image{'s' if len(stray) != 1 else ''} but" if stray else "holds no images and"
        raise DataError(
            f"{given} {found} no class subfolders: put the images in one subfolder per class, e.g. "
            f"{Path(given) / 'cat'}/*.jpg (a test folder needs the same layout and classes as the training data)"
        )
    if len(class_dirs) < 2:
        only = class_dirs[0]
        hint = (
            f"; if the classes are the subfolders of {only.name}, give {Path(given) / only.name}"
            if any(p.is_dir() for p in entries(only))
            else ""
        )
        raise DataError(
            f"{given} has one class folder ({only.name}); a classifier needs at least 2 classes: "
            f"add one subfolder per class ({_EXAMPLE}){hint}"
        )
    skipped = [(p, "an image outside the class folders") for p in stray]
    classes, labels, names, paths, empty, emptied = [], [], [], [], [], []
    for label, folder in enumerate(class_dirs):
        classes.append(folder.name)
        files = entries(folder)
        good = 0
        for path in files:
            if path.is_dir():
                reason = "a folder inside a class folder (images must sit directly in DIR/<class>/)"
            elif not is_image_name(path):
                reason = f"not an image file name (accepted: {' '.join(IMAGE_SUFFIXES)})"
            else:
                reason = check_image(path)
            if reason:
                skipped.append((path, reason))
                continue
            good += 1
            labels.append(label)
            names.append(path.relative_to(root).as_posix())
            paths.append(path)
        if not good:
            (emptied if files else empty).append(folder.name)
    warn_skipped(skipped, warn)
    problems = []
    if empty:
        problems.append(f"class folders with no images: {listing(empty)} (add images or remove the folders)")
    if emptied:
        problems.append(
            f"class folders with no readable images, every file skipped: {listing(emptied)} "
            "(see the warnings above; fix or replace the files)"
        )
    if problems:
        raise DataError(f"{given}: " + "; ".join(problems))
    return Dataset(
        name=given,
        classes=tuple(classes),
        labels=np.asarray(labels, dtype=np.int64),
        names=tuple(names),
        shape=shape,
        sources=tuple(paths),
        cache_budget=CACHE_BUDGET,
    )


def _decode(source: Path | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """One sample as float32 ``shape`` (C, H, W) in [0, 1]."""
    c, h, w = shape
    if isinstance(source, np.ndarray) and source.shape == tuple(shape):  # drawn at the input size (shapes)
        return source
    if isinstance(source, np.ndarray):
        grey = _resize_grey(source, h, w)
        return np.repeat(grey[None], c, axis=0)
    from PIL import Image, ImageOps

    try:
        with Image.open(source) as im:
            im.draft(None, (max(h, w), max(h, w)))  # JPEG: decode at a reduced scale still >= the target size
            return _pixels(ImageOps.exif_transpose(im), c, h, w)
    except Exception as exc:  # Pillow raises many kinds for broken files; name the file, not a traceback
        raise DataError(
            f"cannot decode {source} ({type(exc).__name__}: {exc}); it passed the check when the data was read, "
            "so it changed or is truncated: replace or remove it"
        ) from None


def _resize_grey(grey: np.ndarray, h: int, w: int) -> np.ndarray:
    """A 2-D float array resized bilinearly to (h, w), clipped to [0, 1]."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(grey, dtype=np.float32))
    return np.clip(np.asarray(im.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32), 0.0, 1.0)


def _pixels(im: Image.Image, c: int, h: int, w: int) -> np.ndarray:
    """A decoded image as float32 (c, h, w) in [0, 1]; c is 1 or 3."""
    from PIL import Image

    if im.mode == "F" or im.mode.startswith("I"):  # 16/32-bit grey: scale by the 16-bit range
        grey = np.asarray(im, dtype=np.float32) / (1.0 if im.mode == "F" else 65535.0)
        return np.repeat(_resize_grey(np.clip(grey, 0.0, 1.0), h, w)[None], c, axis=0)
    if im.has_transparency_data:
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    if im.mode not in ("L", "RGB"):
        im = im.convert("RGB")
    im = im.convert("L" if c == 1 else "RGB").resize((w, h), Image.Resampling.BILINEAR)
    array = np.asarray(im, dtype=np.float32) / 255.0
    return array[None] if c == 1 else array.transpose(2, 0, 1).copy()
