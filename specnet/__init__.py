"""specnet: a compiler for neural-network specs.

The public API mirrors the CLI, one function per verb:

    spec = load_spec("net.yaml")               # validate     (SpecError, located)
    plan = infer(spec)                         # summary      (shapes, params, FLOPs)
    built = build_model(spec, "torch")         # build        (BuildResult: model, files)
    run = train_model(spec, "keras")           # train        (RunResult: run folder, history)
    report = evaluate_run(run.out)             # evaluate     (Evaluation)
    results = predict(run.out, ["cat.png"])    # predict      (class and probabilities)
    path = export_onnx(run.out)                # export --onnx
    proof = check_parity(run.out)              # parity       (ParityReport, .ok)
    imported = import_model("old.json", weights="old.h5")   # import  (ImportResult: out, plan)

Each takes a spec file or a :class:`Spec` (build, train) or a run/build folder (the rest).
Importing specnet imports no framework; each function imports the one it needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"

from specnet.errors import (
    Issue,
    MissingFrameworkError,
    RuntimeFailure,
    ShapeError,
    SpecError,
    SpecnetError,
    SpecSyntaxError,
    SpecValidationError,
    UsageError,
)
from specnet.schema import json_schema
from specnet.shapes import Limits, Plan, PlanLayer, infer, summary_text
from specnet.spec import LAYER_KINDS, Spec, load_spec, loads_spec, spec_from_dict


def build_model(spec: str | Path | Spec, backend: str = "keras", **options: Any) -> Any:
    """``specnet build``: see :func:`specnet.build.build` for the options."""
    from specnet.build import build

    return build(spec, backend, **options)


def train_model(spec: str | Path | Spec, backend: str = "keras", **options: Any) -> Any:
    """``specnet train``: see :func:`specnet.train.train` for the options."""
    from specnet.train import train

    return train(spec, backend, **options)


def import_model(source: str | Path, **options: Any) -> Any:
    """``specnet import``: see :func:`specnet.importers.import_model` for the options."""
    from specnet.importers import import_model as run_import

    return run_import(source, **options)


def evaluate_run(run: str | Path, data: Any = None, backend: str | None = None) -> Any:
    """``specnet evaluate``: see :func:`specnet.evaluate.evaluate`."""
    from specnet.evaluate import evaluate

    return evaluate(run, data, backend)


def predict(run: str | Path, inputs: list[str], backend: str | None = None, **options: Any) -> Any:
    """``specnet predict``: see :func:`specnet.evaluate.predict`."""
    from specnet.evaluate import predict as _predict

    return _predict(run, [str(i) for i in inputs], backend, **options)


def open_run(run: str | Path, backend: str | None = None) -> Any:
    """A trained run or a build, opened: plan, canonical weights, backend, class names."""
    from specnet.evaluate import open_run as _open

    return _open(run, backend)


def export_onnx(run: str | Path | None = None, **options: Any) -> Path:
    """``specnet export --onnx``: see :func:`specnet.export.export` for the options."""
    from specnet.export import export

    return export(run, **options)


def check_parity(target: str | Path, runtimes: list[str] | None = None, **options: Any) -> Any:
    """``specnet parity``: see :func:`specnet.parity.parity`."""
    from specnet.parity import parity

    return parity(target, runtimes, **options)


__all__ = [
    "LAYER_KINDS",
    "Issue",
    "Limits",
    "MissingFrameworkError",
    "Plan",
    "PlanLayer",
    "RuntimeFailure",
    "ShapeError",
    "Spec",
    "SpecError",
    "SpecSyntaxError",
    "SpecValidationError",
    "SpecnetError",
    "UsageError",
    "__version__",
    "build_model",
    "check_parity",
    "evaluate_run",
    "export_onnx",
    "import_model",
    "infer",
    "json_schema",
    "load_spec",
    "loads_spec",
    "open_run",
    "predict",
    "spec_from_dict",
    "summary_text",
    "train_model",
]
