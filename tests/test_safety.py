"""Nothing runs code it should not: a scan of specnet's own source for unsafe calls."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

SOURCES = sorted([*(ROOT / "specnet").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")])


def _problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(
                n.split(".")[0] in ("pickle", "cPickle", "dill", "marshal", "shelve") for n in names
            ):
                found.append(f"{path.name}:{node.lineno}: imports a pickle-like module")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        keywords = {k.arg: k.value for k in node.keywords}
        if name in ("eval", "exec") and isinstance(func, ast.Name):
            found.append(f"{path.name}:{node.lineno}: {name}()")
        if name == "load" and isinstance(func, ast.Attribute):
            owner = ast.unparse(func.value)
            if owner == "torch" and not (
                isinstance(keywords.get("weights_only"), ast.Constant)
                and keywords["weights_only"].value is True
            ):
                found.append(f"{path.name}:{node.lineno}: torch.load without weights_only=True")
            if owner == "yaml" and "Loader" not in keywords:
                found.append(f"{path.name}:{node.lineno}: yaml.load without a safe Loader")
            flag = keywords.get("allow_pickle")
            pickles = isinstance(flag, ast.Constant) and flag.value is not False
            if owner in ("np", "numpy") and pickles:
                found.append(f"{path.name}:{node.lineno}: numpy.load with allow_pickle")
        if name in ("unsafe_load", "full_load"):
            found.append(f"{path.name}:{node.lineno}: yaml.{name}")
        safe_mode = keywords.get("safe_mode")
        if isinstance(safe_mode, ast.Constant) and safe_mode.value is False:
            found.append(f"{path.name}:{node.lineno}: safe_mode=False")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_unsafe_calls(path: Path) -> None:
    assert _problems(path) == []


def test_the_scanner_catches_what_it_looks_for(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle\nimport torch, yaml, keras, numpy as np\n"
        "torch.load('m.pt')\nyaml.load(text)\nkeras.saving.load_model(p, safe_mode=False)\n"
        "np.load(f, allow_pickle=True)\neval('1')\n"
    )
    assert len(_problems(bad)) == 6


def test_numpy_loads_never_allow_pickle() -> None:
    for path in SOURCES:
        text = path.read_text()
        if "np.load(" in text:
            assert "allow_pickle=False" in text, path
