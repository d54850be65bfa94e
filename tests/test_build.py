"""`specnet build`: build directories, --weights across frameworks, --emit-source, refusals."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from specnet import infer, load_spec
from specnet.backends import get_backend
from specnet.weights import load_weights, read_safetensors
from tests.conftest import ROOT
from tests.helpers import assert_agree, batch

SEED = ROOT / "specs" / "seed_cnn.yaml"
STRIDES = ROOT / "specs" / "strides_same.yaml"


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_build_directory(backend: str, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "b"
    result = cli("build", SEED, "--backend", backend, "--out", out, "--seed", "3")
    assert result.code == 0, result.err
    native = get_backend(backend).native_file
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["specnet.json", "spec.resolved.yaml", "weights.safetensors", native, "summary.txt",
         "parity.json", "README.md", "model.svg"]
    )  # fmt: skip
    marker = json.loads((out / "specnet.json").read_text())
    assert (marker["kind"], marker["spec"], marker["backend"]) == ("build", "seed_cnn", backend)
    # the resolved spec is a valid spec with the same plan
    plan = infer(load_spec(SEED))
    assert infer(load_spec(out / "spec.resolved.yaml")).to_dict() == plan.to_dict()
    # the native model file reloads and computes what the canonical weights say
    chosen = get_backend(backend)
    x = batch(plan.input_shape)
    reloaded = chosen.load_native(out / native, plan)
    fresh = chosen.build(plan)
    chosen.set_weights(fresh, plan, read_safetensors(out / "weights.safetensors"))
    assert_agree(chosen.predict(reloaded, x), chosen.predict(fresh, x), f"{backend} native file")


def test_weights_move_between_frameworks(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """Built in PyTorch, rebuilt in Keras from the same directory: one command, same function."""
    assert (
        cli("build", STRIDES, "--backend", "torch", "--out", tmp_path / "t", "--seed", "9").code
        == 0
    )
    result = cli(
        "build", STRIDES, "--backend", "keras", "--out", tmp_path / "k", "--weights", tmp_path / "t"
    )
    assert result.code == 0, result.err
    plan = infer(load_spec(STRIDES))
    a = load_weights(tmp_path / "t" / "weights.safetensors", plan)
    b = load_weights(tmp_path / "k" / "weights.safetensors", plan)
    assert all(np.array_equal(a[key], b[key]) for key in a)
    x = batch(plan.input_shape)
    torch_model = get_backend("torch").load_native(tmp_path / "t" / "model.torch.safetensors", plan)
    keras_model = get_backend("keras").load_native(tmp_path / "k" / "model.keras", plan)
    assert_agree(
        get_backend("keras").predict(keras_model, x),
        get_backend("torch").predict(torch_model, x),
        "keras rebuilt from torch weights",
    )


def test_weights_of_another_spec_are_refused(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("build", SEED, "--backend", "torch", "--out", tmp_path / "s").code == 0
    result = cli(
        "build", STRIDES, "--backend", "torch", "--out", tmp_path / "x", "--weights", tmp_path / "s"
    )
    assert result.code == 2
    assert "do not fit spec 'strides_same'" in result.err


def test_directories_are_never_silently_overwritten(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "b"
    assert cli("build", SEED, "--backend", "torch", "--out", out).code == 0
    assert cli("build", SEED, "--backend", "keras", "--out", out).code == 0  # same spec: a rebuild
    # same spec, same (seeded) weights: both native models stay (see test_trust for the rest)
    assert (out / "model.torch.safetensors").exists()
    reseeded = cli("build", SEED, "--backend", "keras", "--out", out, "--seed", "5")
    assert reseeded.code == 0
    assert not (out / "model.torch.safetensors").exists()  # no stale model from other weights
    assert "removed" in reseeded.err
    assert "model.torch.safetensors" in reseeded.err
    other = cli("build", STRIDES, "--backend", "torch", "--out", out)
    assert other.code == 2
    assert "holds a build of spec 'seed_cnn'" in other.err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    refused = cli("build", SEED, "--backend", "torch", "--out", mine)
    assert refused.code == 2
    assert "was not made by specnet" in refused.err
    assert cli("build", SEED, "--backend", "torch", "--out", mine, "--force").code == 0
    assert (mine / "notes.txt").read_text() == "keep me"


ALLOWED_IMPORTS = {"__future__", "json", "struct", "pathlib", "typing", "numpy"}


@pytest.mark.parametrize("backend", ["keras", "torch"])
@pytest.mark.parametrize(
    "spec", [SEED, STRIDES, ROOT / "specs/activations.yaml"], ids=lambda p: p.stem
)
def test_emitted_source_computes_the_same(backend: str, spec: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / f"{backend}_{spec.stem}.py"
    out = tmp_path / "b"
    result = cli("build", spec, "--backend", backend, "--out", out, "--emit-source", source)
    assert result.code == 0, result.err
    tree = ast.parse(source.read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= ALLOWED_IMPORTS | {backend}, imported
    assert "specnet" not in imported
    module = _import(source)
    plan = infer(load_spec(spec))
    x = batch(plan.input_shape)
    chosen = get_backend(backend)
    emitted = chosen.load_native(out / chosen.native_file, plan)
    if backend == "keras":
        model = module.build_model()
        module.load_canonical_weights(model, out / "weights.safetensors")
        got = model(x, training=False).numpy()
    else:
        import torch

        classes = [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, torch.nn.Module) and v is not torch.nn.Module
        ]
        model = classes[0]()
        module.load_canonical_weights(model, out / "weights.safetensors")
        model.eval()
        with torch.no_grad():
            got = model(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    assert_agree(got, chosen.predict(emitted, x), f"generated {backend} source", atol=1e-6)


def test_emit_source_does_not_overwrite(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "model.py"
    source.write_text("# mine\n")
    result = cli(
        "build", SEED, "--backend", "torch", "--out", tmp_path / "b", "--emit-source", source
    )
    assert result.code == 2
    assert source.read_text() == "# mine\n"


def test_missing_framework_is_one_line_exit_1(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "from specnet.cli import main\n"
        f"args = ['build', {str(SEED)!r}, '--backend', 'torch', '--out', {str(tmp_path / 'b')!r}]\n"
        "sys.exit(main(args))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], "one line"
    assert "PyTorch is not installed" in proc.stderr
    assert "pip install 'specnet[torch]'" in proc.stderr
    assert not (tmp_path / "b").exists(), "nothing is written when the framework is missing"
