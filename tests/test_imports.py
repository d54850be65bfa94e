"""Lazy frameworks, the public API, and the missing-framework message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def _imports(path: Path, package: str) -> set[str]:
    """The specnet modules ``path`` imports, at module level and inside functions alike."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith(package)}


def test_specnet_imports_form_no_circle() -> None:
    """Imports go one way: a circle (keras.py ↔ keras_train.py, export.py ↔ parity.py once)
    forces lazy imports to hide it and makes every module depend on all the others. A lazy
    import inside a function counts too: it is a dependency all the same."""
    root = Path(specnet.__file__).parent
    modules = {
        ".".join(("specnet", *path.relative_to(root).with_suffix("").parts)).removesuffix(
            ".__init__"
        ): path
        for path in root.rglob("*.py")
    }
    edges = {
        name: {m for m in _imports(path, "specnet") if m in modules and m != name}
        for name, path in modules.items()
    }
    # a package's __init__ is imported by its modules implicitly; its own imports of its
    # modules (lazy registries, the public API) are not circles through them
    for name in edges:
        edges[name] -= {"specnet", "specnet.backends"}
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        seen[name] = 1
        for child in sorted(edges[name]):
            assert seen.get(child) != 1, " → ".join([*path, name, child])
            if child not in seen:
                visit(child, [*path, name])
        seen[name] = 2

    for name in sorted(modules):
        if name not in seen:
            visit(name, [])
