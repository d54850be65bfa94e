"""The parity certificate (parity.json) of builds and exports, and `specnet verify`.

The recorded outputs are checked against an independent float64 NumPy forward pass of the
canonical weights, and `verify` against edits a person could make: one weight moved by one ulp,
a model file swapped, a certificate copied from another build, a truncated folder.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import tests.numpy_reference as ref
from specnet.certificate import _decode, base_digest, input_batch
from specnet.shapes import infer, logits_plan
from specnet.spec import load_spec
from specnet.weights import read_safetensors
from tests.conftest import ROOT
from tests.helpers import assert_agree

SEED = ROOT / "specs" / "seed_cnn.yaml"
RESIDUAL = ROOT / "specs" / "residual_cnn.yaml"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One torch build of the residual spec, exported once (the tests copy it before editing)."""
    from specnet.build import build
    from specnet.export import export

    folder = tmp_path_factory.mktemp("cert") / "residual"
    build(RESIDUAL, "torch", out=folder)
    export(folder, via="direct", layout="nchw")
    return folder


def _copy(built: Path, tmp_path: Path) -> Path:
    shutil.copytree(built, tmp_path / "b")
    return tmp_path / "b"


def test_the_certificate_records_what_numpy_computes(built: Path) -> None:
    certificate = json.loads((built / "parity.json").read_text())
    plan = infer(load_spec(built / "spec.resolved.yaml"))
    weights = read_safetensors(built / "weights.safetensors")
    x = input_batch(plan.input_shape)
    assert certificate["input"]["shape"] == [4, 32, 32, 3]
    assert np.array_equal(x, np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32))
    # the logits: the network without its final softmax, as parity compares
    want = ref.network(logits_plan(plan).spec.resolved()["layers"], weights, x)
    probabilities = ref.network(plan.spec.resolved()["layers"], weights, x)
    assert set(certificate["runtimes"]) == {"torch", "onnx", "ort:model.onnx"}
    for name, entry in certificate["runtimes"].items():
        logits = _decode(entry["outputs"])
        assert_agree(logits, want, f"recorded logits of {name}")
        e = np.exp(logits - logits.max(1, keepdims=True))
        assert_agree(e / e.sum(1, keepdims=True), probabilities, f"softmax of {name}'s logits")
    assert certificate["runtimes"]["torch"]["versions"]["torch"].startswith("2.13.0")
    pairs = {(p["a"], p["b"]): p for p in certificate["pairs"]}
    assert len(pairs) == 3
    assert all(p["ok"] and p["argmax_agree"] == 1.0 for p in pairs.values())
    assert certificate["ok"] is True


def test_the_exported_file_carries_the_certificate_digest(built: Path) -> None:
    import onnx

    certificate = json.loads((built / "parity.json").read_text())
    meta = {p.key: p.value for p in onnx.load(str(built / "model.onnx")).metadata_props}
    assert meta["parity_certificate"] == base_digest(certificate) == certificate["base_sha256"]
    assert meta["layout"] == "nchw"


def test_verify_passes_bit_for_bit_here(built: Path, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("verify", built)
    assert result.code == 0, result.out
    assert result.out.count("bit-exact") == 3
    assert "certificate holds" in result.out


def _nudge_one_weight(path: Path, key: str) -> None:
    """Move the first value of tensor ``key`` by one ulp, in place, as a hex editor would."""
    raw = bytearray(path.read_bytes())
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    start = 8 + length + header[key]["data_offsets"][0]
    (value,) = struct.unpack("<f", raw[start : start + 4])
    moved = np.nextafter(np.float32(value), np.float32(np.inf))
    assert moved != value
    assert abs(float(moved) - value) < 1e-6
    raw[start : start + 4] = struct.pack("<f", moved)
    path.write_bytes(bytes(raw))


def test_verify_catches_a_one_ulp_edit_to_one_weight(built: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    folder = _copy(built, tmp_path)
    _nudge_one_weight(folder / "weights.safetensors", "res2_conv_b.kernel")
    result = cli("verify", folder)
    assert result.code == 1
    line = next(x for x in result.out.splitlines() if "weights.safetensors" in x)
    assert "✗" in line
    assert "1 tensor(s) differ" in line
    assert "res2_conv_b.kernel" in line
    assert "VERIFY FAILED" in result.out


def test_verify_names_a_swapped_model_file(built: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    folder = _copy(built, tmp_path)
    other = tmp_path / "other"
    from specnet.build import build

    build(RESIDUAL, "torch", out=other, seed=7)
    shutil.copy(other / "model.torch.safetensors", folder / "model.torch.safetensors")
    result = cli("verify", folder)
    assert result.code == 1
    line = next(x for x in result.out.splitlines() if x.strip().startswith("✗ torch"))
    assert "model.torch.safetensors differs from the certified file" in line


def test_verify_refuses_a_certificate_from_another_spec(built: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from specnet.build import build

    other = tmp_path / "seed"
    build(SEED, "torch", out=other)
    shutil.copy(built / "parity.json", other / "parity.json")
    result = cli("verify", other)
    assert result.code == 1
    assert "the certificate is for spec 'residual_cnn'" in result.out
    assert "this folder holds 'seed_cnn'" in result.out


def test_other_versions_are_held_to_the_float32_tolerance(built: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    folder = _copy(built, tmp_path)
    path = folder / "parity.json"
    certificate = json.loads(path.read_text())
    certificate["runtimes"]["torch"]["versions"]["torch"] = "2.0.0"
    path.write_text(json.dumps(certificate))
    result = cli("verify", folder)
    assert result.code == 0, result.out
    assert "torch 2.0.0 → 2.13.0" in result.out
    assert "float32 rounding may differ" in result.out
    # recorded outputs moved past the tolerance: the runtime is named
    entry = certificate["runtimes"]["onnx"]
    outputs = _decode(entry["outputs"]).copy()
    outputs[0, 0] += 1e-3
    from specnet.certificate import _encode

    entry["outputs"] = _encode(outputs)
    path.write_text(json.dumps(certificate))
    result = cli("verify", folder)
    assert result.code == 1
    assert next(x for x in result.out.splitlines() if x.strip().startswith("✗ onnx "))


def test_an_onnx_file_from_another_build_is_named(built: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from specnet.build import build
    from specnet.export import export

    folder = _copy(built, tmp_path)
    other = tmp_path / "other"
    build(RESIDUAL, "torch", out=other, seed=7)
    export(other, via="direct", layout="nchw")
    shutil.copy(other / "model.onnx", folder / "model.onnx")
    result = cli("verify", folder)
    assert result.code == 1
    assert "model.onnx differs from the certified file" in result.out


@pytest.mark.parametrize(
    ("damage", "code", "said"),
    [
        ("no certificate", 2, "no parity certificate"),
        ("bad json", 2, "not a parity certificate"),
        ("damaged outputs", 2, "recorded outputs are damaged"),
        ("truncated weights", 1, "weights.safetensors  cannot be read"),
        ("missing model", 1, "model.torch.safetensors is missing"),
        ("no spec", 2, "not a specnet build or run"),
        ("not a folder", 2, "not a build folder"),
    ],
)
def test_bad_folders_get_one_clear_line(  # type: ignore[no-untyped-def]
    built: Path, tmp_path: Path, cli, damage: str, code: int, said: str
) -> None:
    folder = _copy(built, tmp_path)
    target = folder
    if damage == "no certificate":
        (folder / "parity.json").unlink()
    elif damage == "bad json":
        (folder / "parity.json").write_text('{"format": "specnet-parity/1", ')
    elif damage == "damaged outputs":
        data = json.loads((folder / "parity.json").read_text())
        data["runtimes"]["torch"]["outputs"]["float32"] = "!!!"
        (folder / "parity.json").write_text(json.dumps(data))
    elif damage == "truncated weights":
        raw = (folder / "weights.safetensors").read_bytes()
        (folder / "weights.safetensors").write_bytes(raw[: len(raw) // 2])
    elif damage == "missing model":
        (folder / "model.torch.safetensors").unlink()
    elif damage == "no spec":
        (folder / "spec.resolved.yaml").unlink()
    else:
        target = folder / "README.md"
    result = cli("verify", target)
    assert result.code == code, (result.out, result.err)
    assert said in result.out + result.err
    assert "Traceback" not in result.out + result.err
