"""ONNX: the direct graph, every export path in both layouts, the I/O contract, `specnet parity`.

Every path is compared with Keras, PyTorch and ONNX's reference evaluator (pure Python, an
oracle independent of every framework and of ONNX Runtime).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import specnet
from specnet import RuntimeFailure, UsageError, infer, load_spec, loads_spec
from specnet import export as export_module
from specnet.backends import get_backend
from specnet.backends import onnx as onnx_backend
from specnet.backends.onnx import build_graph, reference_predict
from specnet.export import _keras_onnx, _torch_onnx, conform, verify
from specnet.shapes import logits_plan
from specnet.spec import LAYER_KINDS
from specnet.weights import init_weights
from tests.conftest import ROOT, SPECS
from tests.helpers import assert_agree, batch, busy_weights

SEED = ROOT / "specs" / "seed_cnn.yaml"
ACTIVATIONS = ROOT / "specs" / "activations.yaml"


def _native(plan: Any, weights: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for name in ("keras", "torch"):
        backend = get_backend(name)
        model = backend.build(plan)
        backend.set_weights(model, plan, weights)
        out[name] = backend.predict(model, x)
    return out


def _ort(model: Any, x: np.ndarray, layout: str) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": x if layout == "nhwc" else x.transpose(0, 3, 1, 2)})[0]
    return got.transpose(0, 2, 3, 1) if got.ndim == 4 and layout == "nchw" else got


def _check_contract(model: Any, plan: Any, layout: str, via: str) -> None:
    onnx.checker.check_model(model, full_check=True)
    (graph_input,) = model.graph.input
    (graph_output,) = model.graph.output
    assert (graph_input.name, graph_output.name) == ("input", "output")
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    h, w, c = plan.input_shape
    assert dims == (["batch", h, w, c] if layout == "nhwc" else ["batch", c, h, w])
    out = [d.dim_param or d.dim_value for d in graph_output.type.tensor_type.shape.dim]
    final = list(plan.output_shape)
    if len(final) == 3 and layout == "nchw":
        final = [final[2], final[0], final[1]]
    assert out == ["batch", *final], out
    assert model.opset_import[0].version >= 13
    if via == "direct":  # (the converters' graphs hold int64 shape constants too)
        assert (model.producer_name, model.producer_version) == ("specnet", specnet.__version__)
        # float32 weights and constants; a ZeroPadding2D's Pad and a Reshape take int64 amounts
        for t in model.graph.initializer:
            whole = t.name.startswith(("pads/", "shape/"))
            wanted = onnx.TensorProto.INT64 if whole else onnx.TensorProto.FLOAT
            assert t.data_type == wanted, t.name
    meta = {p.key: p.value for p in model.metadata_props}
    assert (meta["spec"], meta["layout"], meta["via"]) == (plan.name, layout, via)
    assert "specnet_version" in meta
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def test_the_onnx_table_covers_every_layer_kind() -> None:
    assert set(onnx_backend.LAYERS) == set(LAYER_KINDS)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_direct_graph(path: Path) -> None:
    plan = logits_plan(infer(load_spec(path)))
    weights = busy_weights(plan, seed=5)
    x = batch(plan.input_shape)
    native = _native(plan, weights, x)
    for layout in ("nhwc", "nchw"):
        model = build_graph(plan, weights, layout)
        _check_contract(model, plan, layout, "direct")
        ops = [node.op_type for node in model.graph.node]
        # layers that work in channels-last order move an NCHW image there and back: a
        # LayerNormalization of an image, a Reshape from or to one
        moves = {
            step.name: (len(step.input_shape) == 3) + (len(step.output_shape) == 3)
            for step in plan.layers
            if step.kind == "Reshape"
            or (step.kind == "LayerNormalization" and len(step.input_shape) == 3)
        }
        permutes = sum(step.kind == "Permute" for step in plan.layers)  # one Transpose each
        assert ops.count("Transpose") == (
            (1 if layout == "nhwc" else 0) + sum(moves.values()) + permutes
        )
        kinds = {step.kind for step in plan.layers}
        shape_work = {"Dropout", "Shape", "Gather"} | (
            set() if "Concatenate" in kinds else {"Concat"}
        )
        shape_work |= set() if "Reshape" in kinds else {"Reshape"}
        assert not shape_work & set(ops)
        # one node per spec operation (a fused activation is one more), Dropout and linear gone;
        # a merge of n inputs is n - 1 binary nodes (Average one more: the division)
        expected = 1 if layout == "nhwc" else 0
        for step in plan.layers:
            activation = getattr(step.layer, "activation", None)
            fused = step.kind != "Activation" and activation not in (None, "linear")
            merged = len(step.inputs) - 1 + (step.kind == "Average")
            one = merged if step.layer.MERGE and step.kind != "Concatenate" else 1
            expected += {"Dropout": 0, "Activation": activation != "linear"}.get(step.kind, one)
            expected += fused
            # a ReLU with a ceiling and a slope is LeakyRelu then Clip (without a slope one Clip)
            expected += (
                step.kind == "ReLU"
                and step.layer.max_value is not None
                and (step.layer.negative_slope > 0)
            )
            # a Rescaling with an offset is Mul then Add
            expected += step.kind == "Rescaling" and step.layer.offset != 0
            # a global pool that drops the (1, 1) axes is GlobalAveragePool then Flatten
            expected += step.kind.startswith("Global") and not step.layer.keepdims
            # a separable convolution is two Convs; channels-last layers their Transposes
            expected += step.kind == "SeparableConv2D"
            expected += moves.get(step.name, 0)
        gelu_extra = 4 * sum(1 for node in model.graph.node if node.name.endswith("/gelu_div"))
        # x · f(x) (silu, …) is f's nodes then a Mul
        gated = [node.name.rsplit("/", 1)[1] for node in model.graph.node if "/gate_" in node.name]
        gate_extra = len(gated) - gated.count("gate_mul")  # f's nodes
        assert len(ops) == expected + gelu_extra + gate_extra  # opset 18 spells GELU in 5 nodes
        fed = x if layout == "nhwc" else x.transpose(0, 3, 1, 2)
        assert_agree(
            reference_predict(model, fed), native["keras"], f"{path.stem} reference/{layout}"
        )
        assert_agree(_ort(model, x, layout), native["torch"], f"{path.stem} ort/{layout}")


@pytest.mark.parametrize("via", ["keras", "torch"])
@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_export_paths(path: Path, via: str) -> None:
    plan = logits_plan(infer(load_spec(path)))
    weights = busy_weights(plan, seed=6)
    if via == "keras" and path == ACTIVATIONS:
        with pytest.raises(RuntimeFailure, match="cannot convert TensorFlow op"):
            _keras_onnx(plan, weights, 18)
        return
    raw, native_layout = (_keras_onnx if via == "keras" else _torch_onnx)(plan, weights, 18)
    x = batch(plan.input_shape)
    native = _native(plan, weights, x)
    for layout in ("nhwc", "nchw"):
        model = conform(copy.deepcopy(raw), plan, native_layout, layout, via)
        _check_contract(model, plan, layout, via)
        verify(model, plan, weights, layout, via)
        got = _ort(model, x, layout)
        assert_agree(got, native["keras"], f"{via}/{layout} vs keras")
        assert_agree(got, native["torch"], f"{via}/{layout} vs torch")
        fed = x if layout == "nhwc" else x.transpose(0, 3, 1, 2)
        oracle = reference_predict(model, fed)  # ONNX's pure-Python ReferenceEvaluator
        if oracle.ndim == 4 and layout == "nchw":
            oracle = oracle.transpose(0, 2, 3, 1)
        assert_agree(oracle, native["keras"], f"{via}/{layout}: reference evaluator vs keras")


def test_build_then_export_as_written(tmp_path: Path, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`specnet build specs/<seed> --backend keras && specnet export --onnx`, then read the file."""
    monkeypatch.chdir(tmp_path)
    assert cli("build", SEED, "--backend", "keras").code == 0
    result = cli("export", "--onnx")
    assert result.code == 0, result.err
    assert "most recent build or run: build/seed_cnn" in result.err
    path = tmp_path / "build" / "seed_cnn" / "model.onnx"
    assert [p.name for p in path.parent.iterdir() if p.suffix == ".data"] == []
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (given,), (taken,) = session.get_inputs(), session.get_outputs()
    assert (given.name, given.type, given.shape[1:]) == ("input", "tensor(float)", [32, 32, 3])
    assert isinstance(given.shape[0], str)  # a dynamic batch dimension
    assert taken.name == "output"
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["class_names"] == '["red", "blue", "yellow"]'
    for n in (1, 5):
        out = session.run(None, {"input": batch((32, 32, 3), n=n)})[0]
        assert out.shape == (n, 3)
        np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-5)


def test_a_failed_export_leaves_no_file(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "b"
    assert cli("build", ACTIVATIONS, "--backend", "keras", "--out", out).code == 0
    result = cli("export", out, "--onnx", "--via", "keras")
    assert result.code == 1
    assert "cannot convert TensorFlow op(s) Erfc" in result.err
    assert not (out / "model.onnx").exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    good = cli(
        "export", out, "--onnx", "--via", "direct", "--layout", "nchw", "-o", tmp_path / "a.onnx"
    )
    assert good.code == 0
    again = cli("export", out, "--onnx", "-o", tmp_path / "a.onnx")
    assert again.code == 2


def test_parity_command(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("parity", SEED, "--json")
    assert result.code == 0, result.out
    import json

    report = json.loads(result.out)
    assert report["ok"] is True
    assert len(report["runtimes"]) == 10
    assert len(report["pairs"]) == 45


def test_parity_catches_a_converter_bug(cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """PyTorch's default leaky_relu slope (0.01) instead of Keras's (0.2): parity must fail."""
    from specnet.backends import torch as torch_backend

    monkeypatch.setitem(
        torch_backend.ACTIVATIONS, "leaky_relu", ("LeakyReLU", {"negative_slope": 0.01})
    )
    result = cli("parity", ACTIVATIONS, "--backends", "keras,torch,onnx-reference")
    assert result.code == 1
    assert "OVER TOLERANCE: keras vs torch" in result.out
    assert "PARITY FAILED" in result.out
    # and, by itself, where: the first layer (the leaky_relu is fused into it)
    assert "the runtimes part at layer 'conv2d' (Conv2D): keras vs torch" in result.out


def test_direct_backend_round_trips_its_file(tmp_path: Path) -> None:
    plan = infer(load_spec(ROOT / "specs" / "strides_same.yaml"))
    backend = get_backend("onnx")
    weights = init_weights(plan, seed=8)
    model = backend.build(plan)
    backend.set_weights(model, plan, weights)
    backend.save_native(model, tmp_path / "m.onnx")
    again = backend.load_native(tmp_path / "m.onnx", plan)
    back = backend.get_weights(again, plan)
    assert all(np.array_equal(back[key], weights[key]) for key in weights)
    assert backend.count_params(again) == plan.total_params
    x = batch(plan.input_shape)
    assert_agree(backend.predict(again, x), backend.predict(model, x), "reloaded direct graph")


def test_every_node_of_the_direct_graph_is_named_after_its_layer() -> None:
    """Netron and ONNX Runtime's profiles show node names: each is unique and starts with the
    spec layer it computes (the layout transposes excepted), GELU's five nodes included."""
    plan = infer(load_spec(ACTIVATIONS))
    model = build_graph(plan, init_weights(plan), "nhwc", 18)
    names = [node.name for node in model.graph.node]
    assert len(set(names)) == len(names)
    layers = {step.name for step in plan.layers}
    for node in model.graph.node:
        if node.name != "to_nchw":
            assert node.name.split("/")[0] in layers, node.name
    gelu = [n.name for n in model.graph.node if "/gelu_" in n.name]
    assert [name.split("/")[1] for name in gelu] == [
        "gelu_div", "gelu_erf", "gelu_add", "gelu_mul", "gelu_half"
    ]  # fmt: skip


def test_the_direct_backend_reloads_layout_and_opset_and_replaces_its_file(tmp_path: Path) -> None:
    plan = infer(load_spec(SEED))
    backend = get_backend("onnx")
    model = backend.build(plan, layout="nchw", opset=17)
    backend.set_weights(model, plan, init_weights(plan, seed=2))
    path = tmp_path / "m.onnx"
    path.write_bytes(b"an older build")
    backend.save_native(model, path)  # a rebuild replaces the file
    again = backend.load_native(path, plan)
    assert (again.layout, again.opset) == ("nchw", 17)
    assert again.proto().opset_import[0].version == 17
    x = batch(plan.input_shape)
    assert_agree(backend.predict(again, x), backend.predict(model, x), "reloaded nchw graph")
    proto = onnx.load(str(path))
    del proto.metadata_props[:]  # a file without specnet's metadata is read as NHWC
    path.write_bytes(proto.SerializeToString())
    assert backend.load_native(path, plan).layout == "nhwc"


@pytest.mark.parametrize("location", ["../../../etc/passwd", "/etc/passwd"])
def test_external_data_is_checked_for_every_tensor(tmp_path: Path, location: str) -> None:
    from specnet import UsageError
    from specnet.backends.onnx import read_onnx

    plan = infer(load_spec(SEED))
    model = build_graph(plan, init_weights(plan), "nhwc")
    unnamed = model.graph.initializer[0]  # external, but no location: left to the loader
    unnamed.ClearField("raw_data")
    unnamed.data_location = onnx.TensorProto.EXTERNAL
    hostile = model.graph.initializer[2]  # after one stored inline
    hostile.ClearField("raw_data")
    hostile.data_location = onnx.TensorProto.EXTERNAL
    entry = hostile.external_data.add()
    entry.key, entry.value = "location", location
    path = tmp_path / "hostile.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(UsageError) as info:
        read_onnx(path)
    assert str(info.value) == (
        f"{path}: tensor {hostile.name!r} points outside the model's folder ({location!r}); "
        "refusing to read it"
    )
    del model.graph.initializer[2]
    path.write_bytes(model.SerializeToString())
    assert read_onnx(path).graph.initializer[0].name == unnamed.name
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all \x00\x01")
    with pytest.raises(UsageError) as info:
        read_onnx(tmp_path / "junk.onnx")
    assert str(info.value) == f"{tmp_path / 'junk.onnx'}: not a readable ONNX file (DecodeError)"


@pytest.mark.parametrize("opset", [18, 19, 20])
def test_gelu_is_spelled_out_below_opset_20_and_native_from_it(opset: int) -> None:
    """ONNX has Gelu from opset 20; below it the exact GELU is x · (1 + erf(x / √2)) / 2."""
    from specnet.spec import spec_from_dict

    layers = [
        {"type": "Flatten"},
        {"type": "Dense", "units": 5, "activation": "gelu"},
        {"type": "Activation", "activation": "gelu"},
    ]
    plan = infer(spec_from_dict({"name": "t", "input_shape": [2, 2, 3], "layers": layers}))
    weights = busy_weights(plan, seed=3)
    model = build_graph(plan, weights, "nhwc", opset)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Gelu") == (2 if opset >= 20 else 0)
    assert ops.count("Erf") == (0 if opset >= 20 else 2)
    constants = {t.name for t in model.graph.initializer if t.name.startswith("gelu/")}
    assert constants == (set() if opset >= 20 else {"gelu/sqrt2", "gelu/one", "gelu/half"})
    x = batch(plan.input_shape)
    assert_agree(_ort(model, x, "nhwc"), _native(plan, weights, x)["keras"], f"gelu at {opset}")


def test_the_direct_backend_keeps_its_options_and_says_what_it_cannot_do() -> None:
    from specnet import UsageError

    plan = infer(load_spec(SEED))
    weights = init_weights(plan)
    backend = get_backend("onnx")
    model = backend.build(plan, opset=17)
    backend.set_weights(model, plan, weights)
    assert model.proto().opset_import[0].version == 17
    # the IR version of the first ONNX release with opset 17 (1.12: IR 8), not the newest; an
    # opset newer than the installed onnx knows gets its newest IR
    assert model.proto().ir_version == 8
    assert onnx_backend._ir_version(onnx, 10_000) == onnx.IR_VERSION
    dims = build_graph(plan, weights).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 32, 32, 3]  # NHWC by default
    refusals = [
        (lambda: build_graph(plan, weights, "NHWC"), "layout must be nhwc or nchw, not 'NHWC'"),
        (lambda: build_graph(plan, weights, "nhwc", 12),
         "opset 12 is too old: specnet needs 13 or newer (axis-wise Softmax)"),
        (lambda: backend.trainer(plan, load_spec(SEED).train, weights),
         "the direct ONNX backend cannot train; train with keras or torch"),
        (lambda: backend.emit_source(plan),
         "the direct ONNX backend has no source form; `specnet export --onnx --via direct` "
         "writes its graph"),
    ]  # fmt: skip
    for call, message in refusals:
        with pytest.raises(UsageError) as info:
            call()
        assert str(info.value) == message


def test_image_outputs_and_empty_graphs_keep_the_contract() -> None:
    """An image output goes back to NHWC through a Transpose named `to_nhwc` (the input's is
    `to_nchw`); a network that is the identity at inference (a lone Dropout) is still a graph
    from `input` to `output`, in either layout."""
    from specnet.spec import spec_from_dict

    x = batch((4, 5, 2))
    conv = [{"type": "Conv2D", "filters": 3, "kernel_size": 3}]
    cases = [
        (conv, ["to_nchw", "conv2d/Conv", "to_nhwc"], ["conv2d/Conv"]),
        ([{"type": "Dropout", "rate": 0.5}], ["to_nchw", "to_nhwc"], ["output"]),
    ]
    for layers, nhwc, nchw in cases:
        plan = infer(spec_from_dict({"name": "t", "input_shape": [4, 5, 2], "layers": layers}))
        weights = busy_weights(plan)
        want = _native(plan, weights, x)["keras"]
        for layout, names in (("nhwc", nhwc), ("nchw", nchw)):
            model = build_graph(plan, weights, layout)
            _check_contract(model, plan, layout, "direct")
            assert [node.name for node in model.graph.node] == names
            assert_agree(_ort(model, x, layout), want, f"{names} {layout}")
            backend = get_backend("onnx")  # its predict takes and gives NHWC in either layout
            native = backend.build(plan, layout=layout)
            backend.set_weights(native, plan, weights)
            assert_agree(backend.predict(native, x), want, f"{names} {layout} predict")


CHANNEL_ORDERS = [(1, "grey"), (3, "RGB"), (4, "RGBA"), (2, "2 channels")]


@pytest.mark.parametrize(("channels", "order"), CHANNEL_ORDERS)
@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_every_file_says_how_to_prepare_an_image(channels: int, order: str, layout: str) -> None:
    import json

    from specnet.spec import spec_from_dict

    layers = [{"type": "Flatten"}, {"type": "Dense", "units": 2}]
    spec = {"name": "p", "input_shape": [6, 5, channels], "layers": layers}
    plan = infer(spec_from_dict({**spec, "class_names": ["a", "b"]}))
    meta = {p.key: p.value for p in build_graph(plan, init_weights(plan), layout).metadata_props}
    dims = f"[batch, 6, 5, {channels}]" if layout == "nhwc" else f"[batch, {channels}, 6, 5]"
    assert json.loads(meta["preprocessing"]) == {
        "channels": order,
        "resize": "bilinear to 6x5 (height x width), Pillow's Image.resize",
        "scale": "pixel / 255 (8-bit), / 65535 (16-bit): float32 in [0, 1]",
        "mean": 0.0,
        "std": 1.0,
        "input": f"float32 {dims} ({layout.upper()})",
    }
    assert json.loads(meta["class_names"]) == ["a", "b"]
    assert (meta["spec"], meta["layout"], meta["via"]) == ("p", layout, "direct")
    assert meta["specnet_version"] == specnet.__version__
    model = build_graph(plan, init_weights(plan), layout)
    onnx_backend.stamp(model, plan, layout, "keras", class_names=["x", "y"])  # given: they win
    meta = {p.key: p.value for p in model.metadata_props}
    assert (json.loads(meta["class_names"]), meta["via"]) == (["x", "y"], "keras")
    unnamed = infer(spec_from_dict(spec))
    meta = {p.key: p.value for p in build_graph(unnamed, init_weights(unnamed)).metadata_props}
    assert json.loads(meta["class_names"]) == []


def test_a_dense_without_bias_is_a_gemm_without_one() -> None:
    from specnet.spec import spec_from_dict

    layers = [{"type": "Flatten"}, {"type": "Dense", "units": 3, "use_bias": False}]
    plan = infer(spec_from_dict({"name": "t", "input_shape": [2, 3, 2], "layers": layers}))
    weights = busy_weights(plan)
    model = build_graph(plan, weights)
    _check_contract(model, plan, "nhwc", "direct")
    (gemm,) = [node for node in model.graph.node if node.op_type == "Gemm"]
    assert list(gemm.input)[1:] == ["dense.kernel"]
    x = batch(plan.input_shape)
    assert_agree(_ort(model, x, "nhwc"), x.reshape(len(x), -1) @ weights["dense.kernel"], "no bias")


def test_the_direct_export_folds_batch_norm_into_its_convolution(tmp_path: Path) -> None:
    """Each BatchNormalization right after a convolution (and read by nothing else) becomes the
    convolution's kernel and bias; a BN after an activation, or one whose convolution is read
    elsewhere too, stays. The folded graph computes what Keras computes in inference mode."""
    text = """\
name: fold
input_shape: [9, 8, 3]
layers:
  - {name: conv, type: Conv2D, filters: 4, kernel_size: 3, use_bias: false}
  - {name: conv_bn, type: BatchNormalization}
  - {name: depthwise, type: DepthwiseConv2D, kernel_size: 3, padding: same, depth_multiplier: 2}
  - {name: depthwise_bn, type: BatchNormalization, center: false, scale: false}
  - {name: separable, type: SeparableConv2D, filters: 5, kernel_size: 3, strides: 2, padding: same}
  - {name: separable_bn, type: BatchNormalization, epsilon: 0.01}
  - {name: up, type: Conv2DTranspose, filters: 3, kernel_size: 3, strides: 2, padding: same}
  - {name: up_bn, type: BatchNormalization}
  - {name: activated, type: Conv2D, filters: 3, kernel_size: 1, activation: relu}
  - {name: after_relu, type: BatchNormalization}
  - {name: shared, type: Conv2D, filters: 3, kernel_size: 1}
  - {name: shared_bn, type: BatchNormalization}
  - {name: add, type: Add, inputs: [shared, shared_bn]}
  - {type: GlobalAveragePooling2D}
  - {type: Dense, units: 3}
"""
    plan = infer(loads_spec(text))
    weights = busy_weights(plan, seed=8)
    assert set(onnx_backend.batch_norm_folds(plan)) == {"conv", "depthwise", "separable", "up"}
    x = batch(plan.input_shape)
    keras = get_backend("keras")
    model = keras.build(plan)
    keras.set_weights(model, plan, weights)
    want = keras.predict(model, x)
    for layout in ("nhwc", "nchw"):
        folded = export_module.native_onnx(plan, weights, "direct", layout, 18)
        ops = [node.op_type for node in folded.graph.node]
        assert ops.count("BatchNormalization") == 2  # after_relu and shared_bn stay
        plain = build_graph(plan, weights, layout)
        assert len(plain.graph.node) == len(folded.graph.node) + 4
        names = {t.name for t in folded.graph.initializer}
        assert "conv/folded_bias" in names
        assert "conv_bn.gamma" not in names
        assert_agree(_ort(folded, x, layout), want, f"folded/{layout}")
        meta = {p.key: p.value for p in folded.metadata_props}
        assert json.loads(meta["folded_batch_norm"]) == [
            "conv_bn", "depthwise_bn", "separable_bn", "up_bn"
        ]  # fmt: skip
    path = tmp_path / "folded.onnx"
    path.write_bytes(folded.SerializeToString())
    with pytest.raises(UsageError, match="folded into the convolutions"):
        onnx_backend.BACKEND.load_native(path, plan)


def test_an_export_of_a_model_that_computes_nan_is_refused_with_the_reason(
    tmp_path: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    """A network whose own forward overflows cannot have its export checked: exit 1 naming
    the cause (not "ONNX Runtime disagrees"), and no file."""
    spec = tmp_path / "big.yaml"
    spec.write_text(
        "name: big\ninput_shape: [4, 4, 1]\nlayers:\n"
        "  - {type: Flatten}\n"
        "  - {type: Dense, units: 4, kernel_initializer: ones, bias_initializer: ones}\n"
        "  - {type: Activation, activation: exponential}\n"
        "  - {type: Dense, units: 4, kernel_initializer: ones}\n"
        "  - {type: Activation, activation: exponential}\n"
        "  - {type: Dense, units: 2}\n"
    )
    build = tmp_path / "build"
    assert cli("build", spec, "--backend", "torch", "-o", build).code == 0
    result = cli("export", build, "--onnx", "--via", "direct", "-o", tmp_path / "big.onnx")
    assert result.code == 1
    assert "the model itself computes NaN or infinity" in result.err
    assert not (tmp_path / "big.onnx").exists()


def test_parity_layers_finds_a_bug_the_outputs_hide(cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A deliberately broken conversion in the middle of a network — PyTorch's tanh
    approximation of GELU instead of Keras's exact one, on the fifth layer — moves that layer
    by ~1e-4 but the logits, after a tanh, a pooling and two Denses, by less than the
    tolerance: the outputs agree. ``--layers`` names the layer and fails the verdict; every
    layer before it agrees."""
    from specnet.backends import torch as torch_backend
    from specnet.parity import parity

    plan = infer(load_spec(ACTIVATIONS))
    broken = plan.layers[4]
    assert (broken.kind, broken.layer.activation) == ("Conv2D", "gelu")
    monkeypatch.setitem(torch_backend.ACTIVATIONS, "gelu", ("GELU", {"approximate": "tanh"}))
    assert cli("parity", ACTIVATIONS, "--backends", "keras,torch,onnx").code == 0  # hidden
    result = cli("parity", ACTIVATIONS, "--backends", "keras,torch,onnx", "--layers")
    assert result.code == 1
    said = f"the runtimes part at layer {broken.name!r} (Conv2D): keras vs torch, torch vs onnx"
    assert said in result.out
    assert f"0 over tolerance, layer {broken.name!r} over tolerance" in result.out
    report = parity(ACTIVATIONS, ["keras", "torch", "onnx"], layers=True)
    first = report.first_divergence
    assert first is not None
    assert first.name == broken.name
    assert all(row.ok for row in report.layers[:4])
    assert first.pairs[("keras", "onnx")][2]  # Keras and ONNX still agree there


@pytest.mark.parametrize("spec", ["seed_cnn.yaml", "residual_cnn.yaml", "encoder_decoder.yaml"])
def test_parity_layers_agree_layer_by_layer_where_the_outputs_agree(cli, spec: str) -> None:  # type: ignore[no-untyped-def]
    """--layers on networks that agree: every layer's output agrees too, the vectors a Flatten
    folds into the Dense after it (kept in (c, h, w) order by PyTorch and ONNX) included."""
    result = cli(
        "parity", ROOT / "specs" / spec, "--backends", "keras,torch,onnx", "--layers", "--json"
    )
    assert result.code == 0, result.out
    report = json.loads(result.out)
    plan = infer(load_spec(ROOT / "specs" / spec))
    assert [row["name"] for row in report["layers"]] == [step.name for step in plan.layers]
    assert all(row["ok"] for row in report["layers"])
    assert report["first_divergence"] is None


@pytest.mark.parametrize("rows", [1, 3])
def test_keras_export_of_a_transposed_convolution_with_a_kernel_below_its_stride(rows: int) -> None:
    """tf2onnx writes negative ConvTranspose pads here — at the end, or (one input row) at the
    start with output_padding — which ONNX Runtime refuses; the export repairs them into
    output_padding and must still compute what Keras computes."""
    text = (
        f"name: t\ninput_shape: [{rows}, 2, 1]\nlayers:\n"
        "  - {type: Conv2DTranspose, filters: 2, kernel_size: 1, strides: [3, 1], "
        "activation: selu, bias_initializer: ones}\n"
    )
    plan = infer(loads_spec(text))
    weights = busy_weights(plan, seed=1)
    x = batch(plan.input_shape)
    want = _native(plan, weights, x)["keras"]
    for layout in ("nhwc", "nchw"):
        model = export_module.native_onnx(plan, weights, "keras", layout, 18)
        attrs = [
            {a.name: list(a.ints) for a in node.attribute}
            for node in model.graph.node
            if node.op_type == "ConvTranspose"
        ]
        assert attrs
        assert min(attrs[0]["pads"]) >= 0
        assert_agree(_ort(model, x, layout), want, f"keras/{layout}")
