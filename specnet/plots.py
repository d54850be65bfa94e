"""Training curves and confusion matrices as PNG (matplotlib, headless), written atomically."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

from specnet._frameworks import require
from specnet._io import atomic_write_bytes

__all__ = ["confusion", "confusion_matrix", "training_curves"]


def _pyplot() -> Any:
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot")


def _save(figure: Any, path: Path) -> None:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # a glyph the font lacks (an emoji class name) is drawn
        warnings.simplefilter("ignore")  # as a box, not reported on stderr under --quiet
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(figure)
    atomic_write_bytes(path, buffer.getvalue(), overwrite=True)


def training_curves(history: dict[str, list[float]], path: Path, title: str) -> None:
    plt = _pyplot()
    rates = [r for r in history.get("learning_rate", []) if r == r]
    changing = len(set(rates)) > 1  # a third panel only when the rate moved
    figure, axes = plt.subplots(1, 3 if changing else 2, figsize=(15 if changing else 10, 4))
    loss_ax, acc_ax = axes[0], axes[1]
    epochs = range(1, len(history["loss"]) + 1)
    for ax, key in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.plot(epochs, history[key], marker="o", label="training")
        if any(value == value for value in history[f"val_{key}"]):  # not all NaN
            ax.plot(epochs, history[f"val_{key}"], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(require("matplotlib.ticker").MaxNLocator(integer=True))
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    if changing:
        ax = axes[2]
        ax.plot(epochs, history["learning_rate"], marker="o", color="tab:green")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(require("matplotlib.ticker").MaxNLocator(integer=True))
        ax.set_ylabel("learning rate (at the epoch's end)")
        if max(rates) / max(min(rates), 1e-30) > 10:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    figure.suptitle(title)
    _save(figure, path)


def confusion(y: Any, guess: Any, classes: int) -> Any:
    """(classes, classes) counts: rows are true classes, columns predictions."""
    np = require("numpy")
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (np.asarray(y), np.asarray(guess)), 1)
    return matrix


def confusion_matrix(y: Any, guess: Any, names: list[str], path: Path, classes: int) -> Any:
    plt = _pyplot()
    matrix = confusion(y, guess, classes)
    size = max(4.0, 0.6 * classes + 2)
    figure, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(classes), names, rotation=45, ha="right")
    ax.set_yticks(range(classes), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), count in require("numpy").ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=colour)
    ax.set_title(f"confusion matrix ({int(matrix.sum())} samples)")
    _save(figure, path)
    return matrix
