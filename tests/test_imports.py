"""Lazy frameworks, the public API, and the missing-framework message."""

from __future__ import annotations

import subprocess
import sys

import pytest

import specnet
from specnet._frameworks import require
from specnet.errors import MissingFrameworkError
from tests.conftest import ROOT

HEAVY = ("tensorflow", "keras", "torch", "onnx", "onnxruntime", "tf2onnx", "numpy")


def test_validate_summary_schema_import_no_framework() -> None:
    code = (
        "import sys\n"
        "from specnet.cli import main\n"
        "assert main(['validate', 'specs/seed_cnn.yaml']) == 0\n"
        "assert main(['summary', 'specs/keras/cifar10_cnn.yaml', '--json']) == 0\n"
        "assert main(['schema']) == 0\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_public_api_is_pinned() -> None:
    assert sorted(specnet.__all__) == sorted(
        [
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
    )
    for name in specnet.__all__:
        assert hasattr(specnet, name)


@pytest.mark.parametrize(
    ("module", "extra"), [("torch", "torch"), ("tensorflow", "keras"), ("onnxruntime", "onnx")]
)
def test_missing_framework_names_the_extra(
    module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(MissingFrameworkError, match=rf"pip install 'specnet\[{extra}\]'") as info:
        require(module)
    assert info.value.exit_code == 1
    assert "\n" not in str(info.value)
