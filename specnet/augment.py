"""Augmentation: Keras 3's preprocessing layers, computed by specnet's data pipeline in NumPy.

The spec's leading augmentation layers (:data:`specnet.spec.AUGMENTATIONS`) change each
training batch before either framework sees it, so both backends train on byte-identical
images, and no build or export contains them (a Keras model would carry them as layers that do
nothing at inference; PyTorch has no such layers at all).

**Draws.** Each layer's random values for a batch come from a NumPy generator seeded with
(the layer's ``seed`` or the run's ``train.seed``, epoch, step, the layer's position): a pure
function of where the batch is in training. A resumed run replays an epoch from its start and
redraws exactly what the killed one drew; the generator state a checkpoint needs is the seed
and the epoch it already records. Draws are float32, as Keras draws them, but not Keras's
random stream: the same spec gives other (equally distributed) images in Keras's own ``fit``.

**Transforms.** Rotation, zoom and translation are Keras's affine matrices
(``BaseImagePreprocessingLayer._compute_affine_matrix``, ``RandomZoom._get_zoom_matrix``,
``RandomTranslation._get_translation_matrix``) applied as TensorFlow's
``ImageProjectiveTransformV3`` applies them (Keras's ``affine_transform`` on TensorFlow): each
output pixel (x, y) reads the input at the matrix's (x', y'); ``fill_mode`` maps a coordinate
outside the image back in (``reflect`` about the edge of the last pixel, ``wrap``, ``nearest``)
or reads ``fill_value`` (``constant``); ``nearest`` rounds half away from zero, ``bilinear``
weighs four neighbours, a neighbour outside the image reading ``fill_value``. Float32 throughout,
operation by operation; ``tests/test_augment.py`` compares every mode with Keras's layers.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from specnet.spec import (
    Augmentation,
    RandomBrightness,
    RandomContrast,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
)

__all__ = ["Augmenter", "affine_transform", "apply"]

F32 = np.float32


def _map_coordinates(coord: np.ndarray, length: int, mode: str) -> np.ndarray:
    """TensorFlow's ``MapCoordinate<fill_mode>``: an input coordinate outside [0, length − 1]
    brought back in (``constant`` leaves it, for the read to fill)."""
    if mode == "constant":
        return coord
    top = F32(length - 1)
    if mode == "nearest" or length <= 1:
        if length <= 1:
            coord = np.where((coord < 0) | (coord > top), F32(0), coord)
        return np.asarray(np.clip(coord, F32(0), top), F32)
    low, high = coord < 0, coord > top
    if not (low.any() or high.any()):
        return coord
    out = coord.copy()
    if mode == "reflect":  # [abcd] → [dcba|abcd|dcba]
        size = 2 * length
        c = coord[low]
        c = (size * np.trunc(-c / F32(size))).astype(F32) + c
        out[low] = np.where(c < -length, c + F32(size), -c - F32(1))
        c = coord[high]
        c = c - (size * np.trunc(c / F32(size))).astype(F32)
        out[high] = np.where(c >= length, F32(size) - c - F32(1), c)
    else:  # wrap: TensorFlow's arithmetic, with its length − 1 period divisor
        period = length - 1
        c = coord[low]
        out[low] = c + (length * (np.trunc(-c / F32(period)) + 1)).astype(F32)
        c = coord[high]
        out[high] = c - (length * np.trunc(c / F32(period))).astype(F32)
    return np.asarray(np.clip(out, F32(0), top), F32)


@functools.cache
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Every output pixel's (row, column), as float32 (read only)."""
    ys, xs = np.meshgrid(np.arange(height, dtype=F32), np.arange(width, dtype=F32), indexing="ij")
    ys.flags.writeable = xs.flags.writeable = False
    return ys, xs


def _to_chw(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(images, F32).transpose(0, 3, 1, 2))


def _to_hwc(planes: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(planes.transpose(0, 2, 3, 1))


def affine_transform(
    images: np.ndarray,
    transforms: np.ndarray,
    interpolation: str = "bilinear",
    fill_mode: str = "constant",
    fill_value: float = 0.0,
) -> np.ndarray:
    """``ImageProjectiveTransformV3`` on (N, H, W, C) float32 images, one transform
    ``[a0, a1, a2, b0, b1, b2, c0, c1]`` per image: output (x, y) reads the input at
    ``((a0·x + a1·y + a2) / k, (b0·x + b1·y + b2) / k)``, ``k = c0·x + c1·y + 1``."""
    planes = _affine_chw(_to_chw(images), transforms, interpolation, fill_mode, fill_value)
    return _to_hwc(planes)


def _affine_chw(
    planes: np.ndarray,
    transforms: np.ndarray,
    interpolation: str,
    fill_mode: str,
    fill_value: float,
) -> np.ndarray:
    """:func:`affine_transform` on (N, C, H, W) planes, the layout the pipeline computes in:
    a weight per pixel then multiplies whole rows (channels last, it would multiply runs of
    three values, several times slower).

    The planes are read through a copy framed by one pixel of ``fill_value`` on every side,
    flattened: a coordinate is clamped to [−1, size] (beyond the frame it reads the fill, as
    the frame does) and every read is one flat ``take``, each channel at its own offset."""
    count, channels, height, width = planes.shape
    t = np.asarray(transforms, F32).reshape(count, 8)[:, :, None, None]
    fill = F32(fill_value)
    framed = np.full((count, channels, height + 2, width + 2), fill, F32)
    framed[:, :, 1:-1, 1:-1] = planes
    flat = framed.reshape(-1)
    row, plane = width + 2, (height + 2) * (width + 2)
    base = (
        ((np.arange(count, dtype=np.intp) * channels)[:, None] + np.arange(channels, dtype=np.intp))
        * plane
        + row
        + 1
    )  # (N, C): each channel's pixel (0, 0)
    base = base[:, :, None, None]
    ys, xs = _grid(height, width)
    projection = t[:, 6] * xs + t[:, 7] * ys + F32(1)
    safe = np.where(projection == 0, F32(1), projection)
    x_in = (t[:, 0] * xs + t[:, 1] * ys + t[:, 2]) / safe
    y_in = (t[:, 3] * xs + t[:, 4] * ys + t[:, 5]) / safe
    x_in = _map_coordinates(x_in, width, fill_mode)
    y_in = _map_coordinates(y_in, height, fill_mode)

    def read(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:  # (N, H, W) → (N, C, H, W)
        return np.asarray(np.take(flat, base + (rows + columns)[:, None]), F32)

    if interpolation == "nearest":  # std::round: half away from zero
        yi = (np.sign(y_in) * np.floor(np.abs(y_in) + F32(0.5))).astype(np.intp)
        xi = (np.sign(x_in) * np.floor(np.abs(x_in) + F32(0.5))).astype(np.intp)
        out = read(np.clip(yi, -1, height) * row, np.clip(xi, -1, width))
    else:
        # beyond the frame both neighbours read the fill: clamping keeps the integer parts
        # in range (a coordinate of −1e30 would overflow them) and reads the same fill
        y_in = np.clip(y_in, F32(-2), F32(height + 1))
        x_in = np.clip(x_in, F32(-2), F32(width + 1))
        y0, x0 = np.floor(y_in), np.floor(x_in)
        y1, x1 = y0 + F32(1), x0 + F32(1)
        y0i, x0i = y0.astype(np.intp), x0.astype(np.intp)
        up, down = np.clip(y0i, -1, height) * row, np.clip(y0i + 1, -1, height) * row
        left, right = np.clip(x0i, -1, width), np.clip(x0i + 1, -1, width)
        wx0, wx1 = (x1 - x_in)[:, None], (x_in - x0)[:, None]
        top = wx0 * read(up, left)
        top += wx1 * read(up, right)
        bottom = wx0 * read(down, left)
        bottom += wx1 * read(down, right)
        top *= (y1 - y_in)[:, None]
        bottom *= (y_in - y0)[:, None]
        out = top + bottom
    if (projection == 0).any():
        out = np.where((projection == 0)[:, None], fill, out)
    return np.asarray(out, F32)


def rotation_matrices(angles: np.ndarray, height: int, width: int) -> np.ndarray:
    """Keras's rotation about the image centre by ``angles`` degrees (float32)."""
    angle = np.asarray(angles, F32) * F32(math.pi / 180.0)
    cx, cy = F32(0.5) * F32(width - 1), F32(0.5) * F32(height - 1)
    cos, sin = np.cos(angle), np.sin(angle)
    zero, one = F32(0), F32(1)
    a0 = one * (cos + zero * sin)
    a1 = one * (-sin + zero * cos)
    a2 = zero + cx - cx * a0 - cy * a1
    b0 = one * (zero * cos + sin)
    b1 = one * (zero * -sin + cos)
    b2 = zero + cy - cx * b0 - cy * b1
    rest = np.zeros_like(a0)
    return np.stack([a0, a1, a2, b0, b1, b2, rest, rest], axis=1)


def zoom_matrices(
    height_zoom: np.ndarray, width_zoom: np.ndarray, height: int, width: int
) -> np.ndarray:
    """Keras's ``RandomZoom._get_zoom_matrix`` (``zoom`` = 1 + the drawn factor)."""
    zx, zy = np.asarray(width_zoom, F32), np.asarray(height_zoom, F32)
    x_offset = ((F32(width) - F32(1)) / F32(2)) * (F32(1) - zx)
    y_offset = ((F32(height) - F32(1)) / F32(2)) * (F32(1) - zy)
    zero = np.zeros_like(zx)
    return np.stack([zx, zero, x_offset, zero, zy, y_offset, zero, zero], axis=1)


def translation_matrices(dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Keras's ``RandomTranslation._get_translation_matrix``: shifts in pixels."""
    dx, dy = np.asarray(dx, F32), np.asarray(dy, F32)
    one, zero = np.ones_like(dx), np.zeros_like(dx)
    return np.stack([one, zero, -dx, zero, one, -dy, zero, zero], axis=1)


def contrast(images: np.ndarray, factors: np.ndarray, value_range: tuple[float, float]) -> Any:
    """Keras's ``RandomContrast`` on (N, H, W, C) images: ``(x − mean) · f + mean`` per image
    and channel (the mean over the rows, then the columns), clipped to ``value_range``."""
    return _to_hwc(_contrast_chw(_to_chw(images), factors, value_range))


def _contrast_chw(planes: np.ndarray, factors: np.ndarray, value_range: tuple[float, float]) -> Any:
    f = np.asarray(factors, F32).reshape(-1, 1, 1, 1)
    mean = planes.mean(axis=2, keepdims=True, dtype=F32).mean(axis=3, keepdims=True, dtype=F32)
    out = (planes - mean) * f + mean
    return np.clip(out, F32(value_range[0]), F32(value_range[1])).astype(F32)


def brightness(images: np.ndarray, deltas: np.ndarray, value_range: tuple[float, float]) -> Any:
    """Keras's ``RandomBrightness``: ``x + delta``, clipped to ``value_range`` (any layout)."""
    out = np.asarray(images, F32) + np.asarray(deltas, F32).reshape(-1, 1, 1, 1)
    return np.clip(out, F32(value_range[0]), F32(value_range[1])).astype(F32)


def flip(images: np.ndarray, flips: np.ndarray, mode: str) -> np.ndarray:
    """Keras's ``RandomFlip`` on (N, H, W, C) images: the flagged ones flipped (both ways at
    once, on one flag, for ``horizontal_and_vertical``)."""
    return _to_hwc(_flip_chw(_to_chw(images), flips, mode))


def _flip_chw(planes: np.ndarray, flips: np.ndarray, mode: str) -> np.ndarray:
    flagged = np.asarray(flips, bool).reshape(-1)
    out = planes.copy()
    if mode in ("horizontal", "horizontal_and_vertical"):
        out[flagged] = out[flagged][:, :, :, ::-1]
    if mode in ("vertical", "horizontal_and_vertical"):
        out[flagged] = out[flagged][:, :, ::-1]
    return out


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], count: int) -> np.ndarray:
    return rng.uniform(bounds[0], bounds[1], count).astype(F32)


def apply(layer: Augmentation, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One augmentation layer on a batch of (N, H, W, C) images, its random values drawn from
    ``rng``."""
    return _to_hwc(_apply_chw(layer, _to_chw(images), rng))


def _apply_chw(layer: Augmentation, planes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    count, _, height, width = planes.shape
    return _compute(layer, planes, _draw(layer, rng, count, height, width))


def _draw(
    layer: Augmentation, rng: np.random.Generator, count: int, height: int, width: int
) -> np.ndarray:
    """A layer's random values for a batch, one row per image: a flip's flag, a contrast
    factor, a brightness delta, or an affine transform's eight numbers."""
    if isinstance(layer, RandomFlip):
        return np.asarray(rng.uniform(0, 1, count), F32) <= F32(0.5)
    if isinstance(layer, RandomContrast):
        return _uniform(rng, layer.factor_range(layer.factor), count)
    if isinstance(layer, RandomBrightness):
        low, high = layer.factor_range(layer.factor)
        width_of = F32(layer.value_range[1] - layer.value_range[0])
        return np.asarray(_uniform(rng, (low, high), count) * width_of, F32)
    if isinstance(layer, RandomRotation):
        low, high = layer.factor_range(layer.factor)
        angles = _uniform(rng, (low * 360.0, high * 360.0), count)
        return rotation_matrices(angles, height, width)
    if isinstance(layer, RandomZoom):
        zoom_h = F32(1) + _uniform(rng, layer.factor_range(layer.height_factor), count)
        zoom_w = (
            zoom_h
            if layer.width_factor is None
            else F32(1) + _uniform(rng, layer.factor_range(layer.width_factor), count)
        )
        return zoom_matrices(zoom_h, zoom_w, height, width)
    assert isinstance(layer, RandomTranslation)
    dy = _uniform(rng, layer.factor_range(layer.height_factor), count) * F32(height)
    dx = _uniform(rng, layer.factor_range(layer.width_factor), count) * F32(width)
    return translation_matrices(dy, dx)


def _compute(layer: Augmentation, planes: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """A layer on (N, C, H, W) planes with its drawn values (:func:`_draw`, a row each): every
    image on its own, so any split of a batch computes the same bytes."""
    if isinstance(layer, RandomFlip):
        return _flip_chw(planes, draws, layer.mode)
    if isinstance(layer, RandomContrast):
        return np.asarray(_contrast_chw(planes, draws, layer.value_range))
    if isinstance(layer, RandomBrightness):
        return np.asarray(brightness(planes, draws, layer.value_range))
    assert isinstance(layer, RandomRotation | RandomZoom | RandomTranslation)
    return _affine_chw(planes, draws, layer.interpolation, layer.fill_mode, layer.fill_value)


#: values (images × channels × rows × columns) per piece of a batch computed at once: about
#: sixteen 32×32 RGB images, whose temporaries stay in the core's cache — measured, 2.7× the
#: speed of the whole batch of 64 at once, and faster than pieces on threads (the GIL between
#: small array operations); each image is computed alone, so the bytes do not depend on it
PIECE = 16 * 3 * 32 * 32


class Augmenter:
    """The spec's augmentation layers as one function of (images, epoch, step)."""

    def __init__(self, layers: tuple[Any, ...], seed: int) -> None:
        self.layers = [step.layer for step in layers]
        self.seed = seed

    def __bool__(self) -> bool:
        return bool(self.layers)

    def __call__(self, images: np.ndarray, epoch: int, step: int) -> np.ndarray:
        """The batch's (N, H, W, C) images augmented: every layer's values drawn for the whole
        batch, then each piece of about :data:`PIECE` values taken through all the layers,
        channels-first in between."""
        images = np.asarray(images, F32)
        count, height, width, _ = images.shape
        draws = []
        for position, layer in enumerate(self.layers):
            seed = self.seed if layer.seed is None else layer.seed
            rng = np.random.default_rng([seed, epoch, step, position])
            draws.append(_draw(layer, rng, count, height, width))
        out = np.empty_like(images)
        piece = max(1, PIECE // max(1, images[0].size))
        for start in range(0, count, piece):
            part = slice(start, start + piece)
            planes = _to_chw(images[part])
            for layer, drawn in zip(self.layers, draws, strict=True):
                planes = _compute(layer, planes, drawn[part])
            out[part] = planes.transpose(0, 2, 3, 1)
        return out
