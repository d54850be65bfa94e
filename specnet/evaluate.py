"""``specnet evaluate`` and ``specnet predict``: use a trained run (or a build) as a model.

Both read the run's resolved spec and canonical weights, so a run trained in one framework is
evaluated in either (``--backend``). Losses are computed in NumPy from the logits, the same way
for every backend.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specnet._frameworks import require
from specnet.backends import get_backend
from specnet.build import SPEC_FILE, WEIGHTS_FILE
from specnet.data import (
    BAD_NPZ,
    IMAGE_SUFFIXES,
    Dataset,
    image_files,
    load_data,
    read_image,
    read_npz_images,
)
from specnet.errors import UsageError
from specnet.plots import confusion
from specnet.rundir import read_marker
from specnet.shapes import Plan, class_names_of, infer, logits_plan
from specnet.spec import load_spec
from specnet.train import evaluate_logits, training_plan
from specnet.weights import Weights, load_weights

__all__ = [
    "Evaluation",
    "Run",
    "evaluate",
    "open_run",
    "predict",
    "predictions_csv",
    "predictions_text",
]


@dataclass(frozen=True)
class Run:
    """A build or training run, opened for use."""

    folder: Path
    plan: Plan
    weights: Weights
    backend: str
    class_names: list[str]
    marker: dict[str, Any]  # its specnet.json


def open_run(folder: str | Path, backend: str | None = None) -> Run:
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is None or not (folder / WEIGHTS_FILE).exists():
        raise UsageError(f"{folder}: not a specnet run or build (no specnet.json and weights)")
    plan = infer(load_spec(folder / SPEC_FILE))
    names = marker.get("class_names") or class_names_of(plan)
    weights = load_weights(folder / WEIGHTS_FILE, plan)
    return Run(
        folder,
        plan,
        weights,
        # an import built no native model: ONNX Runtime on the direct graph needs no framework
        backend or marker.get("backend") or ("onnx" if "imported" in marker else "keras"),
        list(names),
        marker,
    )


@dataclass(frozen=True)
class Evaluation:
    split: str
    samples: int
    loss: float
    accuracy: float
    confusion: list[list[int]]
    per_class: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def text(self) -> str:
        lines = [
            f"{self.split}: {self.samples} samples, loss {self.loss:.4f}, "
            f"accuracy {self.accuracy:.4f}",
            "",
            f"{'class':<16} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}",
        ]
        for row in self.per_class:
            lines.append(
                f"{row['class']:<16} {row['precision']:>9.4f} {row['recall']:>9.4f} "
                f"{row['f1']:>9.4f} {row['support']:>8}"
            )
        lines += ["", "confusion matrix (rows: true class, columns: predicted class)"]
        names = [str(row["class"]) for row in self.per_class]
        width = max(5, *(len(name) for name in names))
        label = min(16, max(len(name) for name in names))
        lines.append(" " * (label + 1) + " ".join(f"{name[:width]:>{width}}" for name in names))
        for name, counts_row in zip(names, self.confusion, strict=True):
            counts = " ".join(f"{count:>{width}}" for count in counts_row)
            lines.append(f"{name[:label]:<{label}} {counts}")
        return "\n".join(lines)


def _model(run: Run, plan: Plan) -> Any:
    backend = get_backend(run.backend)
    model = backend.build(plan)
    backend.set_weights(model, plan, run.weights)
    return lambda x: backend.predict(model, x)


def _split(data: Dataset) -> tuple[str, Any, Any]:
    if data.x_test is not None:
        return "test", data.x_test, data.y_test
    if len(data.x_val):
        return "validation", data.x_val, data.y_val
    return "training", data.x_train, data.y_train


def evaluate(folder: str | Path, data: Any = None, backend: str | None = None) -> Evaluation:
    """Loss, accuracy, per-class precision/recall/F1 and the confusion matrix of a run on its
    test split (else its validation split) or on ``data``."""
    run = open_run(folder, backend)
    spec = run.plan.spec if data is None else run.plan.spec.model_copy(update={"data": data})
    classes = len(run.class_names)
    dataset = load_data(spec, classes, class_names=run.class_names)
    recorded = run.marker.get("data") or {}
    if data is None and recorded.get("fingerprint") not in (None, dataset.fingerprint()):
        raise UsageError(
            f"{run.folder}: its data ({dataset.source}) changed since it was trained "
            f"({recorded.get('train', '?')} + {recorded.get('validation', '?')} samples then, "
            f"{len(dataset.x_train)} + {len(dataset.x_val)} now): its validation split would "
            "mix in training samples; evaluate on data given explicitly with --data"
        )
    split, x, y = _split(dataset) if data is None else ("given data", *_all(dataset))
    binary = spec.train.loss == "binary_crossentropy"
    loss, accuracy, guess = evaluate_logits(_model(run, training_plan(run.plan)), x, y, binary)
    matrix = confusion(y, guess, classes)
    per_class = []
    for i, name in enumerate(run.class_names):
        tp = int(matrix[i, i])
        predicted, actual = int(matrix[:, i].sum()), int(matrix[i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append(
            {"class": name, "precision": precision, "recall": recall, "f1": f1, "support": actual}
        )
    return Evaluation(split, len(x), loss, accuracy, matrix.tolist(), per_class)


def _all(dataset: Dataset) -> tuple[Any, Any]:
    np = require("numpy")
    parts_x = [dataset.x_train, dataset.x_val] + (
        [dataset.x_test] if dataset.x_test is not None else []
    )
    parts_y = [dataset.y_train, dataset.y_val] + (
        [dataset.y_test] if dataset.y_test is not None else []
    )
    return np.concatenate(parts_x), np.concatenate(parts_y)


def _expand(paths: list[str]) -> list[Path]:
    """Image files, ``.npz`` files and folders (every image below them, recursively)."""
    found: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            images = image_files(path)
            if not images:
                raise UsageError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            found += images
        elif not path.exists():
            raise UsageError(f"{path}: no such file or folder")
        else:
            found.append(path)
    return found


def _read_inputs(
    paths: list[str], shape: tuple[int, ...], pixel_range: tuple[float, float] | None = None
) -> tuple[list[str], Any]:
    """Images (read like the folder loader), folders of them and ``.npz`` files (array ``x``,
    scaled like the npz loader) → one batch."""
    np = require("numpy")
    names: list[str] = []
    batches = []
    for path in _expand(paths):
        if path.suffix.lower() == ".npz":
            try:
                with np.load(path, allow_pickle=False) as archive:
                    if "x" not in archive.files:
                        raise UsageError(f"{path}: no array x; found {archive.files}")
                    x = read_npz_images(archive, "x", path, shape, pixel_range)
            except BAD_NPZ as exc:
                raise UsageError(f"{path}: cannot read array x ({exc})") from None
            batches.append(x)
            names += [f"{path}[{i}]" for i in range(len(x))]
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            batches.append(read_image(path, shape)[None])
            names.append(str(path))
        else:
            raise UsageError(
                f"{path}: expected an image ({', '.join(sorted(IMAGE_SUFFIXES))}), a folder "
                "of them, or .npz"
            )
    return names, np.concatenate(batches).astype(np.float32)


def predict(
    folder: str | Path,
    inputs: list[str],
    backend: str | None = None,
    top_k: int | None = None,
    pixel_range: tuple[float, float] | None = None,
) -> list[dict[str, Any]]:
    """Class probabilities for each input: ``[{input, class, probability, probabilities,
    top}]``, ``top`` being the ``top_k`` most likely classes (all of them by default), most
    likely first, as ``[class, probability]`` pairs. Folders are read recursively.

    Served by ONNX Runtime on specnet's direct graph when onnxruntime is installed (about 3×
    faster than PyTorch eager and 4× faster than Keras for one image, see benchmarks/), else by
    the run's own backend; ``backend`` picks one explicitly."""
    np = require("numpy")
    if top_k is not None and top_k < 1:
        raise UsageError(f"--top-k {top_k}: expected a positive number")
    if backend is None and importlib.util.find_spec("onnxruntime") is not None:
        backend = "onnx"
    run = open_run(folder, backend)
    if len(run.plan.output_shape) != 1:
        raise UsageError("predict needs a classifier (a network that outputs a vector)")
    names, x = _read_inputs(inputs, run.plan.input_shape, pixel_range)
    logits = _model(run, logits_plan(run.plan))(x).astype(np.float64)
    if logits.shape[1] == 1:  # one sigmoid unit: P(class 1)
        p1 = 1 / (1 + np.exp(-logits[:, 0]))
        probabilities = np.stack([1 - p1, p1], axis=1)
    else:
        shifted = logits - logits.max(1, keepdims=True)
        probabilities = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
    results = []
    k = min(top_k or len(run.class_names), len(run.class_names))
    for name, row in zip(names, probabilities, strict=True):
        best = int(row.argmax())
        order = np.argsort(-row, kind="stable")[:k]
        results.append(
            {
                "input": name,
                "class": run.class_names[best],
                "probability": float(row[best]),
                "probabilities": dict(zip(run.class_names, map(float, row), strict=True)),
                "top": [[run.class_names[i], float(row[i])] for i in order],
            }
        )
    return results


def predictions_text(results: list[dict[str, Any]], top_k: int = 4) -> str:
    """One line per input: the class, its probability, then the next most likely ones (up to
    ``top_k`` classes in all)."""
    lines = []
    for result in results:
        rest = "  ".join(f"{name} {p:.3f}" for name, p in result["top"][1:top_k])
        lines.append(f"{result['input']}: {result['class']} ({result['probability']:.3f})  {rest}")
    return "\n".join(line.rstrip() for line in lines)


def predictions_csv(results: list[dict[str, Any]]) -> str:
    """``input,class,probability`` and one column per class (its probability)."""
    import csv
    import io

    classes = list(results[0]["probabilities"]) if results else []
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["input", "class", "probability", *classes])
    for result in results:
        row = [result["probabilities"][name] for name in classes]
        writer.writerow(
            [result["input"], result["class"], repr(result["probability"]), *map(repr, row)]
        )
    return buffer.getvalue()
