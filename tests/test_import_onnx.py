"""``specnet import`` of ONNX files: real files from GitHub and specnet's own exports,
checked against ONNX Runtime running the original file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper

from specnet import infer
from specnet.backends.onnx import build_graph, ort_session
from specnet.importers import import_model
from specnet.spec import load_spec
from specnet.weights import read_safetensors
from tests.conftest import REALWORLD, ROOT
from tests.helpers import assert_agree, busy_weights
from tests.test_import import predict

REAL = REALWORLD
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realworld is not here")


def _digit() -> np.ndarray:
    text = (REAL / "keras1" / "k1_th_mnist_cnn.keras2cpp.sample_mnist.dat").read_text()
    rest = text.split("\n", 1)[1]
    return np.array(re.findall(r"[-+0-9.eE]+", rest), dtype=np.float32).reshape(1, 28, 28, 1)


@needs_real
@pytest.mark.parametrize(
    ("name", "layout", "argmax"),
    [("mnist-8_cntk.onnx", "nchw", 5), ("mnist-sm_keras2onnx_unsorted.onnx", "nhwc", None)],
)
def test_real_onnx_files_compute_what_onnx_runtime_computes_of_them(
    tmp_path: Path, name: str, layout: str, argmax: int | None
) -> None:
    """CNTK's mnist-8 (biases as separate Adds, a Dense weight reshaped by a node, NCHW rows)
    and keras2onnx's unsorted graph (NHWC input, Transposes): the imported spec's outputs
    are ONNX Runtime's of the original file, on the real digit and on noise."""
    path = REAL / "onnx" / name
    result = import_model(path, out=tmp_path / "b")
    session = ort_session(onnx.load(str(path)))
    inputs = [_digit(), np.random.default_rng(0).random((1, 28, 28, 1)).astype(np.float32)]
    for x in inputs:
        feed = x.transpose(0, 3, 1, 2) if layout == "nchw" else x
        want = session.run(None, {session.get_inputs()[0].name: feed})[0]
        assert_agree(predict(result.out, x), want, name)
    if argmax is not None:
        assert int(predict(result.out, _digit()).argmax()) == argmax
    assert result.plan.total_params == {"mnist-8_cntk.onnx": 5994}.get(name, 504)


ROUND_TRIP = [
    "seed_cnn.yaml",
    "graph_example.yaml",
    "bn_cnn.yaml",
    "mobile_cnn.yaml",
    "residual_cnn.yaml",
]


def _layers(plan: Any) -> dict[str, Any]:
    """Each layer's kind, fields and inputs; Dropout (not in an inference graph) left out and
    its readers pointed past it."""
    dropped = {s.name: s.inputs[0] for s in plan.layers if s.kind == "Dropout"}
    out = {}
    for step in plan.layers:
        if step.kind == "Dropout":
            continue
        inputs = tuple(dropped.get(name, name) for name in step.inputs)
        fields = step.layer.model_dump(exclude={"name", "inputs", "type"})
        out[step.name] = (step.kind, fields, inputs)
    return out


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("name", ROUND_TRIP)
def test_specnets_own_onnx_imports_to_the_same_spec_and_bits(
    tmp_path: Path, name: str, layout: str
) -> None:
    """spec → specnet's direct ONNX graph (BatchNorm kept as a node) → import: the same
    layers, fields and connections (but Dropout, which an inference graph has not) and
    bit-identical weights."""
    plan = infer(load_spec(ROOT / "specs" / name))
    weights = busy_weights(plan)
    path = tmp_path / "m.onnx"
    onnx.save(build_graph(plan, weights, layout, 17, fold_batch_norm=False), path)
    result = import_model(path, out=tmp_path / "b")
    assert _layers(result.plan) == _layers(plan)
    got = read_safetensors(result.out / "weights.safetensors")
    assert set(got) == set(weights)
    for key, value in weights.items():
        assert np.array_equal(got[key], value), key


def test_an_exported_file_imports_back(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """The CLI's export (BatchNorm folded into the convolutions) imports to a network with
    the same outputs."""
    assert (
        cli(
            "build", ROOT / "specs" / "bn_cnn.yaml", "--backend", "torch", "-o", tmp_path / "b"
        ).code
        == 0
    )
    assert cli("export", tmp_path / "b", "--onnx", "--via", "direct", "--quiet").code == 0
    result = cli("import", tmp_path / "b" / "model.onnx", "-o", tmp_path / "i")
    assert result.code == 0, result.err
    x = np.random.default_rng(0).random(
        (2, *infer(load_spec(ROOT / "specs" / "bn_cnn.yaml")).input_shape)
    )
    assert_agree(
        predict(tmp_path / "i", x.astype(np.float32)),
        predict(tmp_path / "b", x.astype(np.float32)),
        "bn_cnn",
    )


def _tiny(nodes: list[Any], inits: list[Any], shape: list[int]) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_an_operator_without_an_equal_is_refused_naming_the_node(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    model = _tiny([helper.make_node("LRN", ["x"], ["y"], name="norm1", size=3)], [], [1, 3, 4, 4])
    onnx.save(model, tmp_path / "lrn.onnx")
    result = cli("import", tmp_path / "lrn.onnx", "-o", tmp_path / "b")
    assert result.code == 2
    assert "node 'norm1' (LRN): specnet has no equal for LRN" in result.err
    assert "Traceback" not in result.err


def test_padding_is_taken_as_written(tmp_path: Path) -> None:
    """A Conv with pads that are neither valid nor TensorFlow's same (the odd row before the
    data, as PyTorch and SAME_LOWER pad) becomes an explicit ZeroPadding2D; ONNX Runtime on
    the file is the reference."""
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 2, 2, 2)).astype(np.float32)
    model = _tiny(
        [
            helper.make_node(
                "Conv", ["x", "k"], ["y"], name="c/Conv", pads=[1, 1, 0, 0], strides=[2, 1]
            )
        ],
        [onnx.numpy_helper.from_array(kernel, "k")],
        [1, 2, 7, 6],
    )
    onnx.save(model, tmp_path / "pad.onnx")
    result = import_model(tmp_path / "pad.onnx", out=tmp_path / "b")
    assert [step.kind for step in result.plan.layers] == ["ZeroPadding2D", "Conv2D"]
    x = rng.random((1, 7, 6, 2)).astype(np.float32)
    session = ort_session(model)
    want = session.run(None, {"x": x.transpose(0, 3, 1, 2)})[0].transpose(0, 2, 3, 1)
    assert_agree(predict(result.out, x), want, "explicit pads")


def test_a_truncated_onnx_file_is_a_clear_error(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    plan = infer(load_spec(ROOT / "specs" / "seed_cnn.yaml"))
    data = build_graph(plan, busy_weights(plan), "nhwc", 17).SerializeToString()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    result = cli("import", tmp_path / "cut.onnx", "-o", tmp_path / "b")
    assert result.code == 2
    assert "cut.onnx" in result.err
    assert "Traceback" not in result.err
