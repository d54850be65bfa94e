"""Backends: one module per framework, each mapping every layer kind through a table.

Every backend implements :class:`Backend`. Modules import their framework lazily (through
:func:`specnet._frameworks.require`), so importing this package costs nothing.
"""

from __future__ import annotations

import importlib
import keyword
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from specnet.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from specnet.shapes import Plan
    from specnet.spec import Train
    from specnet.weights import Weights

__all__ = [
    "BACKENDS",
    "DEFAULT_OPTIONS",
    "Backend",
    "TrainOptions",
    "call_source",
    "get_backend",
    "py_literal",
    "value_names",
]

# name → module holding a ``BACKEND`` object
BACKENDS: dict[str, str] = {
    "keras": "specnet.backends.keras",
    "torch": "specnet.backends.torch",
    "onnx": "specnet.backends.onnx",
}


@dataclass(frozen=True)
class TrainOptions:
    """How a trainer runs (not what it computes): ``compile`` (XLA / torch.compile, opt-in),
    ``device`` (cpu, cuda, auto), and for Keras a distribution ``strategy`` (mirrored,
    multi-worker) with ``replicas`` logical CPU devices when mirroring without GPUs."""

    compile: bool = False
    device: str = "cpu"
    strategy: str | None = None
    replicas: int = 0


DEFAULT_OPTIONS = TrainOptions()


class Backend(Protocol):
    """The small interface every backend offers. Batches are float32 NHWC NumPy arrays."""

    name: str
    native_file: str  # file name of the native model in a build or run directory

    def build(self, plan: Plan) -> Any:
        """A native model for ``plan`` (weights are whatever the framework drew)."""

    def set_weights(self, model: Any, plan: Plan, weights: Weights) -> None:
        """Load canonical weights into ``model`` (the one place that converts layouts in)."""

    def get_weights(self, model: Any, plan: Plan) -> Weights:
        """Read canonical weights back out (the one place that converts layouts out)."""

    def predict(self, model: Any, x: np.ndarray) -> np.ndarray:
        """Inference (dropout off) on an NHWC batch; the output in the Plan's layout."""

    def count_params(self, model: Any) -> int:
        """Parameters as the framework counts them."""

    def save_native(self, model: Any, path: Path, plan: Plan | None = None) -> None:
        """Write the native model file atomically (no pickle); with ``plan``, ready to train on
        as the framework's own tools expect (Keras: compiled with the spec's optimizer and loss)."""

    def load_native(self, path: Path, plan: Plan) -> Any:
        """Read a native model file written by :meth:`save_native`."""

    def trainer(
        self,
        plan: Plan,
        train: Train,
        weights: Weights,
        options: TrainOptions = DEFAULT_OPTIONS,
    ) -> Any:
        """A trainer: ``step(x, y)``, ``logits(x)``, ``weights()``, ``state()``, ``load_state``."""

    def emit_source(self, plan: Plan) -> str:
        """A standalone Python file that builds the model with this framework alone."""


def call_source(
    cls: str, args: tuple[Any, ...], kwargs: dict[str, Any], defaults: dict[str, Any]
) -> str:
    """``cls(args…, key=value…)`` as Python source for a generated file, leaving out keyword
    arguments equal to the framework's ``defaults``, as a person writing it would."""
    shown = [key for key in kwargs if key not in defaults or defaults[key] != kwargs[key]]
    rendered = [py_literal(a) for a in args] + [f"{k}={py_literal(kwargs[k])}" for k in shown]
    return f"{cls}({', '.join(rendered)})"


def py_literal(value: Any) -> str:
    """Python source for a literal: strings in double quotes (as ruff formats them),
    infinities as ``float("inf")``, tuples element by element."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return f'float("{value}")'
    if isinstance(value, tuple):
        return "(" + ", ".join(map(py_literal, value)) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


#: names a generated file already uses: a layer with one of these names gets a trailing _
_TAKEN = {"x", "inputs", "layers", "keras", "model", "self", "torch", "nn", "np", "weights"}


def value_names(plan: Plan, input_name: str | None = None) -> dict[str, str]:
    """The variable each value has in generated source, as a person would write it: ``x`` for a
    value only the next layer reads (and the output), else its layer's name, like torchvision's
    ``identity = x``. The model's input is ``input_name``, or (None) ``x`` when only the first
    layer reads it and ``inputs`` otherwise."""
    readers = plan.consumers()
    order = ["input", *(step.name for step in plan.layers)]
    names: dict[str, str] = {}
    for value, after in zip(order, [*order[1:], None], strict=True):
        read = readers[value]
        alone = len(read) == 1 and read[0].name == after and read[0].inputs.count(value) == 1
        if value == "input":
            names[value] = input_name or ("x" if alone else "inputs")
        elif after is None or alone:
            names[value] = "x"
        else:
            names[value] = f"{value}_" if value in _TAKEN or keyword.iskeyword(value) else value
    return names


def get_backend(name: str) -> Backend:
    """The backend called ``name``; imports its module (not yet its framework)."""
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    module = importlib.import_module(BACKENDS[name])
    backend: Backend = module.BACKEND
    return backend
