"""specnet: a compiler for neural-network specs.

The public API mirrors the CLI: ``load_spec`` → ``infer`` → (backends, later) ``build``.
Importing specnet imports no framework; see ``specnet._frameworks``.
"""

from __future__ import annotations

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
    "infer",
    "json_schema",
    "load_spec",
    "loads_spec",
    "spec_from_dict",
    "summary_text",
]
