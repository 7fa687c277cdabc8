"""Data augmentation of training batches, once, in numpy, for every target.

``archspec train --augment crop,flip,brightness`` (any of the three, in any
order; off by default) transforms each training batch, never a test batch:

- ``crop``: pad each side with ``pad = ceil(max(H, W) / 8)`` zeros (4 pixels
  at 32x32, torchvision's ``RandomCrop(32, padding=4)``), then crop a random
  H x W window back out;
- ``flip``: mirror left-right with probability ``FLIP_P`` (0.5);
- ``brightness``: multiply by a factor drawn from U(1 - d, 1 + d), d =
  ``BRIGHTNESS`` (0.2), then clip to [0, 1].

They run in that order whatever the order given. For segmentation data,
:func:`augment_batch` crops and flips each mask with its image (the padding of
a crop is class 0, the background) and leaves it alone in ``brightness``. The random numbers of a batch
come from ``(seed, step)`` alone (the run's seed, the optimizer step the batch
is for), so a run's augmentation is reproducible, is the same in every
framework and after ``--resume``, and does not depend on which augmentations
are on (every draw is made every time). Each framework's data pipeline calls
:func:`augment` where its idiom puts augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

AUGMENTATIONS = ("crop", "flip", "brightness")
FLIP_P = 0.5
BRIGHTNESS = 0.2
STREAM = 0xA06  # keeps these draws apart from any other use of (seed, step)


def names(given: Iterable[str]) -> tuple[str, ...]:
    """The augmentations asked for, checked, each once, in the order they run;
    ValueError naming an unknown one."""
    chosen = {n.strip() for n in given if n.strip()}
    unknown = sorted(chosen - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(
            f"unknown augmentation {unknown[0]!r}; choose from {', '.join(AUGMENTATIONS)} (comma-separated)"
        )
    return tuple(n for n in AUGMENTATIONS if n in chosen)


def crop_padding(shape: tuple[int, ...]) -> int:
    """The zeros added on each side before a random crop of a ``(C, H, W)`` sample."""
    return math.ceil(max(shape[-2:]) / 8)


def parameters(chosen: tuple[str, ...], shape: tuple[int, ...]) -> dict[str, dict]:
    """What run.json records: each augmentation on, with its parameters."""
    table = {
        "crop": {"padding": crop_padding(shape), "fill": 0.0},
        "flip": {"direction": "horizontal", "p": FLIP_P},
        "brightness": {"factor": [1 - BRIGHTNESS, 1 + BRIGHTNESS], "clip": [0.0, 1.0]},
    }
    return {n: table[n] for n in chosen}


def crop(x: np.ndarray, top: np.ndarray, left: np.ndarray, pad: int) -> np.ndarray:
    """Each sample of ``x`` (N, C, H, W) padded with ``pad`` zeros and cropped back to
    H x W at (top[i], left[i]) of the padded image, 0 <= top, left <= 2 pad."""
    h, w = x.shape[-2:]
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))  # (N, C, 2p+1, 2p+1, H, W)
    return windows[np.arange(len(x)), :, top, left]


def flip(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The samples of ``x`` where ``mask`` is true, mirrored left-right."""
    return np.where(mask[:, None, None, None], x[..., ::-1], x)


def brightness(x: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Each sample of ``x`` times its factor, clipped to [0, 1]."""
    return np.clip(x * factors.astype(x.dtype)[:, None, None, None], 0, 1)


def augment(x: np.ndarray, chosen: tuple[str, ...], seed: int, step: int) -> np.ndarray:
    """The training batch ``x`` (N, C, H, W) of optimizer step ``step``, augmented;
    ``x`` itself when ``chosen`` is empty."""
    return augment_batch(x, np.zeros(len(x), dtype=np.int64), chosen, seed, step)[0]


def augment_batch(
    x: np.ndarray, y: np.ndarray, chosen: tuple[str, ...], seed: int, step: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`augment` of images ``x`` with their targets ``y``: labels (N,) as they are,
    masks (N, H, W) cropped and flipped with their images; both themselves when
    ``chosen`` is empty."""
    if not chosen:
        return x, y
    n, pad = len(x), crop_padding(x.shape)
    rng = np.random.default_rng([STREAM, seed % 2**63, step % 2**63])
    top, left = rng.integers(0, 2 * pad + 1, size=(2, n))
    mirrored = rng.random(n) < FLIP_P
    factors = rng.uniform(1 - BRIGHTNESS, 1 + BRIGHTNESS, n)
    masks = y[:, None] if y.ndim == 3 else None  # (N, 1, H, W): transformed as images are
    if "crop" in chosen:
        x = crop(x, top, left, pad)
        masks = None if masks is None else crop(masks, top, left, pad)
    if "flip" in chosen:
        x = flip(x, mirrored)
        masks = None if masks is None else flip(masks, mirrored)
    if "brightness" in chosen:
        x = brightness(x, factors)
    y = y if masks is None else np.ascontiguousarray(masks[:, 0])
    return np.ascontiguousarray(x, dtype=np.float32), y
