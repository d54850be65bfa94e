"""Training data: every source becomes float32 NHWC images in [0, 1] and int64 class indices.

Sources (the spec's ``data:``, or ``--data`` on the command line):

* ``synthetic`` — coloured shapes on noisy backgrounds, drawn in memory from a seed at the
  spec's input size; classes by shape (position, size and colour vary, so no linear model
  separates them) or by colour ("red / blue / yellow", as in the seed story);
* ``npz`` — a ``.npz`` with ``x`` (N, H, W[, C]) and ``y`` (N,) or one-hot, optional
  ``x_test``/``y_test``; uint8 is scaled by 1/255;
* ``folder`` — ``root/<class>/*.png|jpg|…``, classes in sorted order (as Keras's
  ``image_dataset_from_directory`` reads them), resized with Pillow;
* ``digits`` — scikit-learn's bundled 1,797 8×8 handwritten digits (no download), resized to
  the input shape; the last 20% is kept as a test split.

The validation split is Keras's: the *last* ``validation_split`` of the training samples, taken
before any shuffling. Batch order is a permutation drawn from (seed, epoch), the same on every
backend, which is what makes training parity and exact resume possible.
"""

from __future__ import annotations

import hashlib
import math
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specnet._frameworks import require
from specnet.errors import UsageError, brief
from specnet.shapes import channels_last_guess
from specnet.spec import DigitsData, FolderData, NpzData, Spec, SyntheticData

if TYPE_CHECKING:
    import numpy as np

# what NumPy raises for a file that is not a whole .npz (truncated, empty, not a zip)
#: what reading a damaged .npz raises (a truncated or foreign file is a zip error, not OSError)
BAD_NPZ = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
Names = list[str] | None


@dataclass(frozen=True)
class _Job:
    """What every loader is asked: the spec (input shape), the network's class count, the
    folder relative paths start from, the seed, the wanted class names, and a list that
    collects what was done to the data (resizes, scaling) for the user to be told."""

    spec: Spec
    classes: int
    base: Path
    seed: int
    wanted: Names
    notes: list[str]
    #: splits the source holds itself (a folder's ``val/``): role → (x, y)
    held: dict[str, Any] = field(default_factory=dict)


__all__ = [
    "Dataset",
    "anchored",
    "batch_order",
    "fit_images",
    "load_data",
    "parse_data_option",
    "read_image",
    "scaled",
    "synthetic",
    "synthetic_classes",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond")
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.1, 0.1),
    "blue": (0.1, 0.2, 0.9),
    "yellow": (0.95, 0.85, 0.1),
    "green": (0.1, 0.75, 0.2),
    "magenta": (0.85, 0.1, 0.8),
    "cyan": (0.1, 0.85, 0.85),
    "orange": (1.0, 0.5, 0.0),
    "white": (0.95, 0.95, 0.95),
    "purple": (0.5, 0.1, 0.75),
    "pink": (1.0, 0.55, 0.7),
    "lime": (0.6, 1.0, 0.2),
    "brown": (0.6, 0.35, 0.1),
}
#: the colours a shape class is painted in at random (the first eight, as they always were)
PALETTE = 8
#: how classes beyond the base shapes (colours) stay distinct: the same shape (colour) with a
#: pattern cut into it, in the shape's own unit coordinates so that it scales with the shape
PATTERNS = ("", "striped", "banded", "checked")


@dataclass
class Dataset:
    """Arrays ready for training. ``x_*``: (N, H, W, C) float32 in [0, 1]; ``y_*``: (N,) int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: list[str]
    source: str
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "train": len(self.x_train),
            "validation": len(self.x_val),
            "test": 0 if self.x_test is None else len(self.x_test),
            "classes": self.class_names,
            "notes": self.notes,
            "fingerprint": self.fingerprint(),
        }

    def fingerprint(self) -> str:
        """A SHA-256 of every split's images and labels: a run records it, and ``evaluate``
        refuses to report on a validation split that is no longer the one held out (an image
        added to a folder reshuffles which images are validation ones)."""
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test):
            if array is not None:
                digest.update(f"{array.dtype.str}{array.shape}".encode())
                digest.update(array.tobytes())
        return digest.hexdigest()[:16]


def batch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> Any:
    """The order of training samples in ``epoch``: a pure function of (seed, epoch)."""
    np = require("numpy")
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


def anchored(source: Any, base: Path) -> Any:
    """The same data source with a path made absolute against ``base`` (the spec's folder for
    paths written in a spec, the working directory for ``--data``), so a run's resolved spec
    finds its data from anywhere."""
    path = getattr(source, "path", None)
    if path is None or Path(path).is_absolute():
        return source
    return source.model_copy(update={"path": str((base / path).resolve())})


def parse_data_option(text: str) -> Any:
    """``--data`` on the command line: ``synthetic``, ``digits``, a ``.npz`` file or a folder."""
    if text in ("synthetic", "digits"):
        return (
            SyntheticData(source="synthetic")
            if text == "synthetic"
            else DigitsData(source="digits")
        )
    path = Path(text)
    if path.suffix.lower() == ".npz":  # as image suffixes, in any case (.NPZ)
        return NpzData(source="npz", path=text)
    if path.is_dir():
        return FolderData(source="folder", path=text)
    raise UsageError(
        f"--data {text!r}: expected 'synthetic', 'digits', a .npz file or an image folder"
    )


def load_data(
    spec: Spec,
    classes: int,
    data: Any = None,
    base: Path | None = None,
    seed: int | None = None,
    class_names: list[str] | None = None,
) -> Dataset:
    """Load the spec's data (or ``data``); ``classes`` is what the network outputs.

    Labels follow the class names: ``class_names`` (a trained run's) or the spec's, when
    given. A source whose classes have names of their own (an image folder's subfolders, the
    digits) is mapped onto them by name, in any order, and refused when the names differ; a
    source with bare indices (``.npz``) is labelled by them in order.
    """
    source = data if data is not None else spec.data or SyntheticData(source="synthetic")
    base = base or Path(".")
    seed = spec.train.seed if seed is None else seed
    wanted = class_names or spec.class_names
    notes: list[str] = []
    job = _Job(spec, classes, base, seed, wanted, notes)
    np = require("numpy")
    x, y, names, test = _LOADERS[type(source)](source, job)
    what = _describe(source)
    validation = job.held.get("validation")
    if names is not None and wanted is not None and list(names) != list(wanted):
        y, test = _relabel(y, test, list(names), list(wanted), what)
        if validation is not None:
            validation = _relabel(validation[1], None, list(names), list(wanted), what)[0]
            validation = (job.held["validation"][0], validation)
    names = wanted or names or [str(i) for i in range(classes)]
    _check_labels(y, classes, source)
    for role, given in (("validation", spec.validation_data), ("test", spec.test_data)):
        if given is not None:  # a set of its own, labelled by the training set's class names
            held = _held_out(given, spec, classes, base, seed, list(names), notes, role)
            if role == "validation":
                validation = held
            else:
                test = held
    if validation is not None:
        train_part: Any = np.arange(len(x))
        dataset = Dataset(x, y, validation[0], validation[1], list(names), what, notes=notes)
    else:
        train_part, held_part = _split(y, spec.train.validation_split, spec.train.stratify)
        dataset = Dataset(
            x[train_part], y[train_part], x[held_part], y[held_part], list(names), what,
            notes=notes,
        )  # fmt: skip
    if test is not None:
        dataset.x_test, dataset.y_test = test
    if len(dataset.x_train) == 0:
        raise UsageError(f"{dataset.source}: no training samples left after the validation split")
    return dataset


def _split(y: Any, fraction: float, stratify: bool) -> tuple[Any, Any]:
    """(training indices, validation indices): Keras's — the last ``fraction`` of the samples
    (``fit``'s ``validation_split``) — or, with ``stratify``, the last ``fraction`` of each
    class's samples, both in the samples' order."""
    np = require("numpy")
    if not stratify:
        cut = math.floor(len(y) * (1.0 - fraction))  # as Keras's fit splits
        return np.arange(cut), np.arange(cut, len(y))
    held = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        keep = math.floor(len(members) * (1.0 - fraction))
        held.append(members[keep:])
    validation = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    training = np.setdiff1d(np.arange(len(y)), validation)
    return training, validation


def _held_out(
    source: Any,
    spec: Spec,
    classes: int,
    base: Path,
    seed: int,
    names: list[str],
    notes: list[str],
    role: str,
) -> tuple[Any, Any]:
    """A validation or test set of its own, its labels mapped onto the training classes by
    name (a folder's) or taken as they are (an .npz's indices)."""
    np = require("numpy")
    job = _Job(spec, classes, base, seed, names, notes)
    x, y, found, _ = _LOADERS[type(source)](source, job)
    what = f"{role} data {_describe(source)}"
    if found is not None and list(found) != names:
        unknown = [name for name in found if name not in names]
        if unknown:
            raise UsageError(
                f"{what}: classes {brief_list(unknown)} are not among the training classes "
                f"{brief_list(names)}"
            )
        table = np.asarray([names.index(name) for name in found], np.int64)
        y = table[y]
    _check_labels(y, classes, source)
    return x, y


def _relabel(
    y: np.ndarray, test: Any, found: list[str], wanted: list[str], what: str
) -> tuple[Any, Any]:
    """Labels numbered in the data's own class order → numbered in ``wanted``'s order."""
    np = require("numpy")
    if sorted(found) != sorted(wanted):
        missing = [name for name in wanted if name not in found]
        extra = [name for name in found if name not in wanted]
        detail = "; ".join(
            part
            for part in (
                f"no data for {brief_list(missing)}" if missing else "",
                f"not in class_names: {brief_list(extra)}" if extra else "",
            )
            if part
        )
        raise UsageError(
            f"{what}: the data's classes {brief_list(found)} are not the class names "
            f"{brief_list(wanted)} ({detail}); rename the class folders or fix class_names "
            "(labels follow the names, in any order)"
        )
    table = np.asarray([wanted.index(name) for name in found], np.int64)
    moved = table[y]
    if test is not None:
        test = (test[0], table[test[1]])
    return moved, test


def brief_list(names: list[str], limit: int = 12) -> str:
    """``[a, b, c]`` for messages, at most ``limit`` names (then a count)."""
    shown = ", ".join(brief(name, 30) for name in names[:limit])
    more = f", … {len(names) - limit} more" if len(names) > limit else ""
    return f"[{shown}{more}]"


def _describe(source: Any) -> str:
    path = getattr(source, "path", None)
    return f"{source.source}:{path}" if path else str(source.source)


def _check_labels(y: np.ndarray, classes: int, source: Any) -> None:
    if len(y) and int(y.min()) < 0:
        raise UsageError(
            f"{_describe(source)}: labels must be class indices from 0; found {int(y.min())}"
        )
    if len(y) and int(y.max()) >= classes:
        raise UsageError(
            f"{_describe(source)}: labels run from {int(y.min())} to {int(y.max())}, but the "
            f"network has {classes} outputs; make the last Dense have one unit per class"
        )


# ----------------------------------------------------------------------------- synthetic


def synthetic(
    n: int,
    shape: tuple[int, ...],
    classes: int,
    by: str,
    seed: int,
    noise: float = 0.1,
    names: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``n`` images of ``shape`` (H, W, C): one shape per image on a noisy background.

    Class ``i`` is the ``i``-th colour (or shape) of :data:`COLOURS` (:data:`SHAPES`), unless
    ``names`` lists known colours (shapes): then class ``i`` is drawn as ``names[i]``, so that
    ``class_names: [red, blue, yellow]`` means what it says."""
    np = require("numpy")
    h, w, c = shape
    rng = np.random.default_rng([seed, 0xDA7A])
    y = rng.integers(0, classes, size=n)
    by_colour = by in ("colour", "color")
    known = synthetic_classes(by_colour)
    if classes > len(known):
        raise UsageError(
            f"the built-in data draws at most {len(known)} distinct classes "
            f"{'by colour' if by_colour else 'by shape'}; this network has {classes} outputs"
            + ("" if by_colour else " (classes_by: colour draws more)")
        )
    drawn = names if names and len(names) == classes and set(names) <= set(known) else None
    names = list(drawn) if drawn else known[:classes]
    index = np.asarray([known.index(name) for name in names])  # class → catalogue entry
    base = len(COLOURS) if by_colour else len(SHAPES)
    colours = np.array(list(COLOURS.values()))
    pattern = (index // base)[y]
    if by_colour:
        colour = colours[(index % base)[y]]
        kind = rng.integers(0, len(SHAPES), size=n)
    else:
        colour = colours[rng.integers(0, PALETTE, size=n)]
        kind = (index % base)[y]
    size = min(h, w)
    radius = rng.uniform(0.2, 0.4, size=n) * size
    cy = rng.uniform(0.35, 0.65, size=n) * h
    cx = rng.uniform(0.35, 0.65, size=n) * w
    yy, xx = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    dy = (yy[None] - cy[:, None, None]) / radius[:, None, None]  # (N, H, W), unit radius
    dx = (xx[None] - cx[:, None, None]) / radius[:, None, None]
    masks = np.stack(
        [
            dx**2 + dy**2 <= 1,
            np.maximum(abs(dx), abs(dy)) <= 0.8,
            (dy <= 0.7) & (dy >= -0.9) & (abs(dx) <= (dy + 0.9) * 0.6),
            ((abs(dx) <= 0.3) & (abs(dy) <= 1)) | ((abs(dy) <= 0.3) & (abs(dx) <= 1)),
            (dx**2 + dy**2 <= 1) & (dx**2 + dy**2 >= 0.35),
            abs(dx) + abs(dy) <= 1,
        ]
    )  # (shapes, N, H, W)
    cuts = np.stack(
        [
            np.ones_like(dx, dtype=bool),
            np.floor((dy + 2) * 2.5) % 2 == 0,  # striped: horizontal bands
            np.floor((dx + 2) * 2.5) % 2 == 0,  # banded: vertical bands
            (np.floor((dx + 2) * 2.5) + np.floor((dy + 2) * 2.5)) % 2 == 0,  # checked
        ]
    )  # (patterns, N, H, W)
    mask = (masks[kind, np.arange(n)] & cuts[pattern, np.arange(n)])[..., None]  # (N, H, W, 1)
    background = rng.uniform(0.0, 0.35, size=(n, 1, 1, 3))
    images = np.where(mask, colour[:, None, None, :], background)
    images = images + rng.normal(0, noise, size=images.shape)
    if c == 1:
        images = images @ np.array([0.299, 0.587, 0.114])[:, None]  # luminance
    elif c != 3:
        images = np.repeat(images.mean(-1, keepdims=True), c, axis=-1)
    return np.clip(images, 0, 1).astype(np.float32), y.astype(np.int64), names


def synthetic_classes(by_colour: bool) -> list[str]:
    """Every class the built-in data can draw, in order: the base shapes (colours), then each
    of them with each pattern (``circle_striped``, ``red_checked``, …)."""
    base = list(COLOURS) if by_colour else list(SHAPES)
    return [name + (f"_{pattern}" if pattern else "") for pattern in PATTERNS for name in base]


def _load_synthetic(source: SyntheticData, job: _Job) -> tuple[Any, Any, Names, Any]:
    if job.classes < 2:
        raise UsageError(
            "the built-in data set needs a network with at least 2 outputs (one per class)"
        )
    x, y, names = synthetic(
        source.samples,
        job.spec.input_shape,
        job.classes,
        source.classes_by,
        job.seed,
        source.noise,
        job.wanted,
    )
    # drawn as the wanted names when they are colours (shapes), else labelled by index
    return x, y, None if job.wanted else names, None


# ----------------------------------------------------------------------------- files


def channel_hint(found: tuple[int, ...], shape: tuple[int, ...]) -> str:
    """Why an NHWC batch of shape ``found`` may not have the spec's channel count."""
    c = shape[-1]
    if len(found) == 4 and found[1] == c and found[3] not in (1, 3, 4) and found[3] != c:
        return (
            f"; the array looks channels-first (N, C, H, W) = {found}: transpose it to "
            f"(N, H, W, C) with x.transpose(0, 2, 3, 1)"
        )
    guess = channels_last_guess(shape)
    if guess is not None:
        return f"; the spec's input_shape {list(shape)} looks channels-first: write {list(guess)}"
    return ""


def fit_images(
    x: np.ndarray, shape: tuple[int, ...], what: str, notes: list[str] | None = None
) -> Any:
    """(N, H, W, C) float images in [0, 1] → the input size (bilinear, Pillow).

    The channel count must already be the spec's: converting 3 channels into 32 (a
    channels-first shape read as channels-last) would train on garbage without a word."""
    np = require("numpy")
    h, w, c = shape
    if x.shape[-1] != c:
        raise UsageError(
            f"{what}: images have {x.shape[-1]} channel(s) (array shape {tuple(x.shape)}), "
            f"the spec's input_shape {list(shape)} has {c}{channel_hint(tuple(x.shape), shape)}"
        )
    if x.shape[1:3] != (h, w):
        if notes is not None:
            notes.append(f"{what}: resized from {x.shape[1]}×{x.shape[2]} to {h}×{w} (bilinear)")
        image = require("PIL.Image")
        x = np.stack(
            [
                np.stack(
                    [
                        np.asarray(
                            image.fromarray(channel.astype(np.float32), mode="F").resize(
                                (w, h), image.Resampling.BILINEAR
                            )
                        )
                        for channel in np.moveaxis(sample, -1, 0)
                    ],
                    axis=-1,
                )
                for sample in x
            ]
        )
    return x.astype(np.float32)


def scaled(
    x: np.ndarray,
    what: str,
    pixel_range: tuple[float, float] | None = None,
    notes: list[str] | None = None,
) -> Any:
    """Pixels of any numeric dtype → float32 in [0, 1], saying how (in ``notes``).

    ``pixel_range`` (``--pixel-range``, ``data.pixel_range``) maps [low, high] to [0, 1] and
    refuses values outside it. Otherwise: uint8 ÷ 255, uint16 ÷ 65535, other integer dtypes by
    the range their values fit (0‥255 as 8-bit, 0‥65535 as 16-bit), and floats must already
    lie in [0, 1] — a float image in 0‥255 would train unscaled."""
    np = require("numpy")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise UsageError(f"{what}: x has dtype {x.dtype}; expected numbers")
    values = x.astype(np.float64) if x.dtype != np.uint8 else x
    if values.size and not np.isfinite(values).all():
        raise UsageError(f"{what}: x contains NaN or infinite values")
    low = float(values.min()) if values.size else 0.0
    high = float(values.max()) if values.size else 0.0
    say = notes.append if notes is not None else (lambda text: None)
    if pixel_range is not None:
        lo, hi = pixel_range
        if low < lo or high > hi:
            raise UsageError(
                f"{what}: pixel values run from {low:g} to {high:g}, outside the declared "
                f"range {lo:g}‥{hi:g}"
            )
        say(f"{what}: {x.dtype} pixels scaled from {lo:g}‥{hi:g} to [0, 1]")
        return ((values - lo) / (hi - lo)).astype(np.float32)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(x.dtype, np.integer):
        if low < 0 or high > 65535:
            raise UsageError(
                f"{what}: {x.dtype} pixel values run from {low:g} to {high:g}; integer images "
                "must lie in 0‥255 or 0‥65535, or give their range with --pixel-range LOW,HIGH"
            )
        top = 255.0 if high <= 255 and x.dtype != np.uint16 else 65535.0
        bits = "8" if top == 255 else "16"
        say(f"{what}: {x.dtype} pixels read as {bits}-bit: divided by {top:g}")
        return (values / top).astype(np.float32)
    if low < 0 or high > 1:
        raise UsageError(
            f"{what}: {x.dtype} pixel values run from {low:g} to {high:g}, outside [0, 1]; "
            "scale them, or give their range with --pixel-range LOW,HIGH (e.g. 0,255)"
        )
    return x.astype(np.float32)


def _labels(y: np.ndarray, n: int, classes: int, what: str) -> Any:
    """Class indices (N,) or (N, 1), or one-hot rows (N, classes) of 0/1 summing to 1."""
    np = require("numpy")
    if not np.issubdtype(y.dtype, np.number) and y.dtype != np.bool_:
        raise UsageError(f"{what}: y must hold integer class indices, found {y.dtype}")
    if y.ndim == 2 and y.shape[1] == 1 and classes != 1:
        y = y[:, 0]  # (N, 1): how keras.datasets and CSV exports store indices
    elif y.ndim == 2:
        finite = np.isfinite(y.astype(np.float64)).all()
        binary = finite and bool(np.isin(y, (0, 1)).all())
        if y.shape[1] != classes or not binary or not bool((y.sum(1) == 1).all()):
            raise UsageError(
                f"{what}: y has shape {y.shape}; expected ({n},) or ({n}, 1) class indices, "
                f"or one-hot rows ({n}, {classes}) of 0/1 with a single 1"
            )
        y = y.argmax(1)
    if y.ndim != 1 or len(y) != n:
        raise UsageError(f"{what}: y has shape {y.shape}; expected ({n},) class indices")
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise UsageError(f"{what}: y contains NaN or infinite labels")
    whole = np.issubdtype(y.dtype, np.floating) and bool((y == np.round(y)).all())
    if not np.issubdtype(y.dtype, np.integer) and not whole:
        raise UsageError(f"{what}: y must hold integer class indices, found {y.dtype}")
    return y.astype(np.int64)


def _array(archive: Any, key: str, path: Path) -> Any:
    try:
        return archive[key]
    except BAD_NPZ as exc:  # (object arrays need pickle, which is never allowed)
        raise UsageError(f"{path}: not a readable .npz file: array {key!r}: {exc}") from None


def read_npz_images(
    archive: Any,
    key: str,
    path: Path,
    shape: tuple[int, ...],
    pixel_range: tuple[float, float] | None = None,
    notes: list[str] | None = None,
) -> Any:
    """Array ``key`` of an open ``.npz`` → (N, H, W, C) float32 in [0, 1] at the input size."""
    what = f"{path}[{key}]"
    x = scaled(_array(archive, key, path), what, pixel_range, notes)
    if x.ndim == 3:  # (N, H, W): one channel
        x = x[..., None]
    if x.ndim != 4 or 0 in x.shape[1:]:
        raise UsageError(f"{path}: {key} has shape {x.shape}; expected (N, H, W[, C])")
    return fit_images(x, shape, what, notes)


def _load_npz(source: NpzData, job: _Job) -> tuple[Any, Any, Names, Any]:
    np = require("numpy")
    path = job.base / source.path
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except BAD_NPZ as exc:
        raise UsageError(
            f"{path}: not a readable .npz file ({exc or type(exc).__name__})"
        ) from None
    with archive:
        wanted_keys = ("x", "y", "y_test") if "x_test" in archive.files else ("x", "y")
        missing = [key for key in wanted_keys if key not in archive.files]
        if missing:
            raise UsageError(f"{path}: missing array(s) {missing}; found {archive.files}")
        splits = [("x", "y")] + ([("x_test", "y_test")] if "x_test" in archive.files else [])
        out = []
        for xk, yk in splits:
            x = read_npz_images(
                archive, xk, path, job.spec.input_shape, source.pixel_range, job.notes
            )
            y = _labels(_array(archive, yk, path), len(x), max(job.classes, 2), f"{path}[{yk}]")
            out.append((x, y))
    return out[0][0], out[0][1], None, out[1] if len(out) > 1 else None


def _colour_mode(shape: tuple[int, ...], what: str) -> str:
    """The Pillow mode image files are converted to, as Keras's ``color_mode``."""
    c = shape[-1]
    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    if c not in modes:
        raise UsageError(
            f"{what}: image files are grey (1 channel), RGB (3) or RGBA (4), but the spec's "
            f"input_shape {list(shape)} has {c} channels{channel_hint((), shape)}"
        )
    return modes[c]


def read_image(path: Path, shape: tuple[int, ...]) -> Any:
    """One image file → (H, W, C) float32 in [0, 1]: Pillow decode, bilinear resize, converted
    to grey, RGB or RGBA for 1, 3 or 4 channels, as Keras's ``load_img`` ``color_mode``.

    8-bit modes (L, P, RGB, RGBA, CMYK, …) convert as Keras's ``load_img`` does (alpha is
    dropped for RGB). Deeper grey images are not squeezed into 8 bits, which would clip them:
    16-bit ones (``I;16``, or ``I`` within 0‥65535) are divided by 65535, float ones (``F``) are
    taken as they are if they lie in [0, 1]; anything else is refused with the reason.
    """
    np = require("numpy")
    image = require("PIL.Image")
    h, w, c = shape
    mode = _colour_mode(shape, str(path))
    try:
        with image.open(path) as img:
            if img.mode.startswith("I") or img.mode == "F":
                grey = _deep_grey(np, image, img, (w, h), path)[..., None]
                if c == 4:  # grey, opaque
                    return np.concatenate([grey, grey, grey, np.ones_like(grey)], axis=-1)
                return np.repeat(grey, c, axis=-1)
            img = img.convert(mode).resize((w, h), image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.float32) / 255.0
    except (OSError, ValueError, SyntaxError, image.DecompressionBombError) as exc:
        raise UsageError(f"{path}: cannot read this image ({exc})") from None
    return array if c != 1 else array[..., None]


def _deep_grey(np: Any, image: Any, img: Any, size: tuple[int, int], path: Path) -> Any:
    """A 16-bit, 32-bit integer or float grey image → (H, W) float32 in [0, 1], resized."""
    values = np.asarray(img.convert("F") if img.mode != "F" else img, dtype=np.float32)
    if not np.isfinite(values).all():
        raise UsageError(f"{path}: image ({img.mode}) holds NaN or infinite values")
    if img.mode == "F":
        top, what = 1.0, "floating-point pixels must lie in [0, 1]"
    else:
        top, what = 65535.0, "integer pixels must lie in 0‥65535 (16 bits)"
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > top:
        raise UsageError(
            f"{path}: image mode {img.mode} has values from {low:g} to {high:g}; {what} "
            "(or save it as an 8-bit PNG)"
        )
    resized = image.fromarray(values / np.float32(top), mode="F").resize(
        size, image.Resampling.BILINEAR
    )
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def image_files(folder: Path) -> list[Path]:
    """Every image under ``folder``, recursively, in sorted order, as Keras's
    ``image_dataset_from_directory`` walks a class folder; entries whose name starts with a
    dot (``.ipynb_checkpoints/``, macOS's ``._0.png``) are skipped, as Keras skips them."""
    found = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [
            Path(top) / name
            for name in sorted(files)
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES
        ]
    return found


def class_folders(root: Path) -> list[Path]:
    """The class folders of an image folder: its subfolders, sorted, dot-folders skipped."""
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise UsageError(f"{root}: no class folders; expected {root}/<class>/*.png")
    return folders


#: the subfolders that make an image folder a set of splits (``root/train/<class>/…``)
SPLIT_FOLDERS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}


def split_folders(root: Path) -> dict[str, Path] | None:
    """``{"train": …, "validation": …, "test": …}`` when ``root`` holds ``train/`` and ``val/``
    (or ``validation/``) and/or ``test/``, each of class folders (a folder of images named
    ``train`` is a class); None for a plain image folder."""
    if not root.is_dir():
        return None
    found = {p.name: p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if "train" not in found or set(found) - set(SPLIT_FOLDERS) or len(found) < 2:
        return None
    if not any(p.is_dir() and not p.name.startswith(".") for p in found["train"].iterdir()):
        return None
    return {SPLIT_FOLDERS[name]: path for name, path in found.items()}


def _load_folder(source: FolderData, job: _Job) -> tuple[Any, Any, Names, Any]:
    root = job.base / source.path
    splits = split_folders(root)
    if splits is None:
        return _load_class_folders(root, job)
    x, y, names, _ = _load_class_folders(splits["train"], job)
    job.notes.append(f"{root}: split folders {', '.join(sorted(splits))} (train/ trains)")
    known = list(names or [])
    for role in ("validation", "test"):
        if role in splits:
            sub = _Job(job.spec, job.classes, job.base, job.seed, known, job.notes)
            hx, hy, _, _ = _load_class_folders(splits[role], sub, train_names=known)
            job.held[role] = (hx, hy)
    return x, y, names, job.held.get("test")


def _load_class_folders(
    root: Path, job: _Job, train_names: list[str] | None = None
) -> tuple[Any, Any, Names, Any]:
    """``root/<class>/**/*``: images and labels, in a fixed shuffle. ``train_names``: a split
    beside a training folder, labelled by its class names (it may lack some)."""
    np = require("numpy")
    _colour_mode(job.spec.input_shape, str(root))
    folders = class_folders(root)
    if train_names is not None:
        unknown = [f.name for f in folders if f.name not in train_names]
        if unknown:
            raise UsageError(
                f"{root}: class folders {brief_list(unknown)} are not in the training folder's "
                f"classes {brief_list(train_names)}"
            )
    names = [f.name for f in folders]
    if train_names is None and job.wanted is None and len(folders) != max(job.classes, 2):
        raise UsageError(
            f"{root}: {len(folders)} class folder(s) {brief_list(names)}, but the network has "
            f"{job.classes} output(s) ({max(job.classes, 2)} classes); make the last Dense have "
            "one unit per class folder (one sigmoid unit for two)"
        )
    listed = [(label, image_files(folder)) for label, folder in enumerate(folders)]
    for (_, files), folder in zip(listed, folders, strict=True):
        if not files:
            raise UsageError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    xs, ys = [], []
    for label, files in listed:
        for file in files:
            xs.append(read_image(file, job.spec.input_shape))
            ys.append(label)
    x = np.stack(xs)
    # a fixed shuffle so the validation split (the last samples) holds every class
    order = np.random.default_rng([job.seed, 0xF01D]).permutation(len(x))
    labels = np.asarray(ys, np.int64)
    if train_names is not None:  # numbered as the training folder numbers its classes
        labels = np.asarray([train_names.index(n) for n in names], np.int64)[labels]
    return x[order], labels[order], names, None


def _load_digits(source: DigitsData, job: _Job) -> tuple[Any, Any, Names, Any]:
    np = require("numpy")
    datasets = require("sklearn.datasets")
    digits = datasets.load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]  # (1797, 8, 8, 1)
    y = digits.target.astype(np.int64)
    c = job.spec.input_shape[-1]
    if c == 3:  # grey digits as RGB, as Keras's color_mode="rgb" loads a grey image
        x = np.repeat(x, 3, axis=-1)
        job.notes.append("digits: grey images repeated into 3 channels")
    x = fit_images(x, job.spec.input_shape, "digits", job.notes)
    order = np.random.default_rng([job.seed, 0xD161]).permutation(len(x))
    x, y = x[order], y[order]
    cut = int(len(x) * 0.8)
    return x[:cut], y[:cut], [str(i) for i in range(10)], (x[cut:], y[cut:])


_LOADERS: dict[type, Any] = {
    SyntheticData: _load_synthetic,
    NpzData: _load_npz,
    FolderData: _load_folder,
    DigitsData: _load_digits,
}
