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
    out = coord.copy()
    low, high = coord < 0, coord > top
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


def _read(
    images: np.ndarray, n: np.ndarray, y: np.ndarray, x: np.ndarray, fill: np.float32
) -> np.ndarray:
    """``images[n, y, x, :]`` where (y, x) is inside the image, ``fill`` elsewhere."""
    _, height, width, _ = images.shape
    inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
    values = images[n, np.clip(y, 0, height - 1), np.clip(x, 0, width - 1)]
    return np.where(inside[..., None], values, fill)


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
    images = np.asarray(images, F32)
    t = np.asarray(transforms, F32).reshape(len(images), 8)[:, :, None, None]
    count, height, width, _ = images.shape
    fill = F32(fill_value)
    ys, xs = np.meshgrid(np.arange(height, dtype=F32), np.arange(width, dtype=F32), indexing="ij")
    projection = t[:, 6] * xs + t[:, 7] * ys + F32(1)
    safe = np.where(projection == 0, F32(1), projection)
    x_in = (t[:, 0] * xs + t[:, 1] * ys + t[:, 2]) / safe
    y_in = (t[:, 3] * xs + t[:, 4] * ys + t[:, 5]) / safe
    x_in = _map_coordinates(x_in, width, fill_mode)
    y_in = _map_coordinates(y_in, height, fill_mode)
    n = np.broadcast_to(np.arange(count)[:, None, None], x_in.shape)
    if interpolation == "nearest":  # std::round: half away from zero
        yi = (np.sign(y_in) * np.floor(np.abs(y_in) + F32(0.5))).astype(np.int64)
        xi = (np.sign(x_in) * np.floor(np.abs(x_in) + F32(0.5))).astype(np.int64)
        out = _read(images, n, yi, xi, fill)
    else:
        y0, x0 = np.floor(y_in), np.floor(x_in)
        y1, x1 = y0 + F32(1), x0 + F32(1)
        y0i, x0i, y1i, x1i = (v.astype(np.int64) for v in (y0, x0, y1, x1))
        wx0, wx1 = (x1 - x_in)[..., None], (x_in - x0)[..., None]
        top = wx0 * _read(images, n, y0i, x0i, fill) + wx1 * _read(images, n, y0i, x1i, fill)
        bottom = wx0 * _read(images, n, y1i, x0i, fill) + wx1 * _read(images, n, y1i, x1i, fill)
        out = (y1 - y_in)[..., None] * top + (y_in - y0)[..., None] * bottom
    out = np.where((projection == 0)[..., None], fill, out)
    return out.astype(F32)


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
    """Keras's ``RandomContrast``: ``(x − mean) · f + mean`` per image and channel (the mean
    over the rows, then the columns), clipped to ``value_range``."""
    f = np.asarray(factors, F32).reshape(-1, 1, 1, 1)
    mean = images.mean(axis=1, keepdims=True, dtype=F32).mean(axis=2, keepdims=True, dtype=F32)
    out = (images - mean) * f + mean
    return np.clip(out, F32(value_range[0]), F32(value_range[1])).astype(F32)


def brightness(images: np.ndarray, deltas: np.ndarray, value_range: tuple[float, float]) -> Any:
    """Keras's ``RandomBrightness``: ``x + delta``, clipped to ``value_range``."""
    out = images + np.asarray(deltas, F32).reshape(-1, 1, 1, 1)
    return np.clip(out, F32(value_range[0]), F32(value_range[1])).astype(F32)


def flip(images: np.ndarray, flips: np.ndarray, mode: str) -> np.ndarray:
    """Keras's ``RandomFlip``: the flagged images flipped (both ways at once, on one flag, for
    ``horizontal_and_vertical``)."""
    flagged = np.asarray(flips, bool).reshape(-1, 1, 1, 1)
    out = images
    if mode in ("horizontal", "horizontal_and_vertical"):
        out = np.where(flagged, out[:, :, ::-1], out)
    if mode in ("vertical", "horizontal_and_vertical"):
        out = np.where(flagged, out[:, ::-1], out)
    return np.ascontiguousarray(out, F32)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], count: int) -> np.ndarray:
    return rng.uniform(bounds[0], bounds[1], count).astype(F32)


def apply(layer: Augmentation, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One augmentation layer on a batch, its random values drawn from ``rng``."""
    count, height, width, _ = images.shape
    if isinstance(layer, RandomFlip):
        return flip(images, np.asarray(rng.uniform(0, 1, count), F32) <= F32(0.5), layer.mode)
    if isinstance(layer, RandomContrast):
        factors = _uniform(rng, layer.factor_range(layer.factor), count)
        return np.asarray(contrast(images, factors, layer.value_range))
    if isinstance(layer, RandomBrightness):
        low, high = layer.factor_range(layer.factor)
        width_of = F32(layer.value_range[1] - layer.value_range[0])
        deltas = _uniform(rng, (low, high), count) * width_of
        return np.asarray(brightness(images, deltas, layer.value_range))
    if isinstance(layer, RandomRotation):
        low, high = layer.factor_range(layer.factor)
        angles = _uniform(rng, (low * 360.0, high * 360.0), count)
        transforms = rotation_matrices(angles, height, width)
    elif isinstance(layer, RandomZoom):
        zoom_h = F32(1) + _uniform(rng, layer.factor_range(layer.height_factor), count)
        zoom_w = (
            zoom_h
            if layer.width_factor is None
            else F32(1) + _uniform(rng, layer.factor_range(layer.width_factor), count)
        )
        transforms = zoom_matrices(zoom_h, zoom_w, height, width)
    else:
        assert isinstance(layer, RandomTranslation)
        dy = _uniform(rng, layer.factor_range(layer.height_factor), count) * F32(height)
        dx = _uniform(rng, layer.factor_range(layer.width_factor), count) * F32(width)
        transforms = translation_matrices(dy, dx)
    return affine_transform(
        images, transforms, layer.interpolation, layer.fill_mode, layer.fill_value
    )


class Augmenter:
    """The spec's augmentation layers as one function of (images, epoch, step)."""

    def __init__(self, layers: tuple[Any, ...], seed: int) -> None:
        self.layers = [step.layer for step in layers]
        self.seed = seed

    def __bool__(self) -> bool:
        return bool(self.layers)

    def __call__(self, images: np.ndarray, epoch: int, step: int) -> np.ndarray:
        out = np.asarray(images, F32)
        for position, layer in enumerate(self.layers):
            seed = self.seed if layer.seed is None else layer.seed
            rng = np.random.default_rng([seed, epoch, step, position])
            out = apply(layer, out, rng)
        return out
