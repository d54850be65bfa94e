"""Static shapes and sizes, checked against published figures and independent arithmetic."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specnet import Limits, ShapeError, infer, load_spec, loads_spec
from specnet.shapes import RULES
from specnet.spec import LAYER_KINDS
from tests.conftest import ROOT

# Published parameter counts: keras.io mnist_convnet; the Keras 2 cifar10_cnn example's
# model.summary(); PyTorch's "Training a Classifier" tutorial network.
PUBLISHED = {
    "specs/keras/mnist_convnet.yaml": 34_826,
    "specs/keras/cifar10_cnn.yaml": 1_250_858,
    "specs/pytorch/cifar10_tutorial.yaml": 62_006,
}


@pytest.mark.parametrize(("path", "params"), list(PUBLISHED.items()))
def test_published_parameter_counts(path: str, params: int) -> None:
    assert infer(load_spec(ROOT / path)).total_params == params


def test_mnist_convnet_matches_the_published_keras_summary() -> None:
    plan = infer(load_spec(ROOT / "specs/keras/mnist_convnet.yaml"))
    rows = [(layer.name, layer.output_shape, layer.params) for layer in plan.layers]
    assert rows == [
        ("conv2d", (26, 26, 32), 320),
        ("max_pooling2d", (13, 13, 32), 0),
        ("conv2d_1", (11, 11, 64), 18_496),
        ("max_pooling2d_1", (5, 5, 64), 0),
        ("flatten", (1600,), 0),
        ("dropout", (1600,), 0),
        ("dense", (10,), 16_010),
    ]


def test_pytorch_tutorial_flattens_16x5x5() -> None:
    plan = infer(load_spec(ROOT / "specs/pytorch/cifar10_tutorial.yaml"))
    assert plan.layers[4].output_shape == (16 * 5 * 5,)


def test_cifar10_cnn_training_flops_match_the_quoted_figure() -> None:
    # issue 6 quotes 124 MFLOP per training image (forward + backward ≈ 3 × forward)
    plan = infer(load_spec(ROOT / "specs/keras/cifar10_cnn.yaml"))
    assert abs(3 * plan.flops - 124e6) / 124e6 < 0.01


def test_every_layer_kind_has_a_shape_rule() -> None:
    assert set(RULES) == set(LAYER_KINDS)


def _windows(size: int, window: int, stride: int) -> int:
    """Count valid window positions by enumeration (independent of the closed form)."""
    return len([start for start in range(0, size, stride) if start + window <= size])


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(1, 40),
    kernel=st.integers(1, 7),
    stride=st.integers(1, 4),
    dilation=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same"]),
)
def test_conv_output_size(size: int, kernel: int, stride: int, dilation: int, padding: str) -> None:
    if stride > 1:
        dilation = 1
    text = (
        f"name: t\ninput_shape: [{size}, 3, 1]\nlayers:\n"
        f"  - {{type: Conv2D, filters: 1, kernel_size: [{kernel}, 1], strides: [{stride}, 1],"
        f" dilation_rate: [{dilation}, 1], padding: {padding}}}\n"
    )
    effective = dilation * (kernel - 1) + 1
    # `same`: TensorFlow's documented rule; `valid`: enumerate the windows
    same = math.ceil(size / stride)
    expected = same if padding == "same" else _windows(size, effective, stride)
    if expected == 0:
        with pytest.raises(ShapeError, match="smaller than kernel_size"):
            infer(loads_spec(text))
    else:
        assert infer(loads_spec(text)).output_shape[0] == expected


def test_same_padding_on_odd_and_even_sizes() -> None:
    plan = infer(load_spec(ROOT / "specs/strides_same.yaml"))
    assert [layer.output_shape for layer in plan.layers[:4]] == [
        (8, 8, 8),  # 15 → ceil(15/2) = 8, 16 → 8
        (4, 8, 12),  # strides [2, 1]
        (2, 4, 12),  # pool 3, stride 2, same
        (2, 4, 6),  # dilated 3×3 (effective 5×5) on 2×4 with same padding
    ]


def test_limits_are_overridable() -> None:
    spec = load_spec(ROOT / "specs/keras/cifar10_cnn.yaml")
    with pytest.raises(ShapeError, match="over the limit of 1,000,000"):
        infer(spec, Limits(max_params=1_000_000))
    with pytest.raises(ShapeError, match=r"activations for one batch of 32 take"):
        infer(spec, Limits(max_activation_bytes=1 << 20))
    assert infer(spec, Limits(max_params=2_000_000)).total_params == 1_250_858


def test_huge_dense_is_refused_fast() -> None:
    text = "name: t\ninput_shape: [64, 64, 3]\nlayers:\n  - {type: Flatten}\n"
    text += "  - {type: Dense, units: 1000000000}\n"
    with pytest.raises(ShapeError, match="12,289,000,000,000 parameters"):
        infer(loads_spec(text))


def test_summary_json_document() -> None:
    doc = infer(load_spec(ROOT / "specs/seed_cnn.yaml")).to_dict()
    assert set(doc) >= {"name", "input_shape", "layers", "total_params"}
    assert doc["input_shape"] == [32, 32, 3]
    assert doc["layers"][0] == {
        "name": "conv2d",
        "type": "Conv2D",
        "inputs": ["input"],
        "output_shape": [30, 30, 32],
        "params": 896,
        "flops": 30 * 30 * (2 * 3 * 3 * 3 * 32 + 32),
    }
    assert doc["total_params"] == sum(layer["params"] for layer in doc["layers"]) == 22_499


HUGE_LAYERS = {  # input shape, layers
    "dense_units": ("[64, 64, 3]", "[{type: Flatten}, {type: Dense, units: 1000000000}]"),
    "conv_filters": ("[64, 64, 3]", "[{type: Conv2D, filters: 1000000000, kernel_size: 3}]"),
    "conv_kernel": ("[4096, 4096, 512]", "[{type: Conv2D, filters: 512, kernel_size: 4000}]"),
    "input_size": ("[100000, 100000, 3]", "[{type: Flatten}, {type: Dense, units: 2}]"),
}


@pytest.mark.parametrize("verb", ["build --backend keras", "train --backend torch"])
@pytest.mark.parametrize("case", list(HUGE_LAYERS))
def test_huge_networks_stop_before_any_framework(case: str, verb: str, tmp_path: Path) -> None:
    """Exit 2 in well under a second of work and a few tens of MB, with nothing written:
    the limits are checked on the plan, before a framework is imported (Keras would grind for
    ~10 s on a 10^9-unit Dense; PyTorch would allocate the 2.5 GB layer)."""
    spec = tmp_path / "huge.yaml"
    shape, layers = HUGE_LAYERS[case]
    spec.write_text(f"name: huge\ninput_shape: {shape}\nlayers: {layers}\n")
    probe = (
        "import sys\n"
        "from specnet.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print('FRAMEWORKS', sorted({'torch', 'tensorflow', 'keras'} & set(sys.modules)))\n"
        # VmHWM: this process's peak; ru_maxrss would carry the forking pytest worker's over exec
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print('RSS_KB', peak.split()[1])\n"
        "sys.exit(code)\n"
    )
    args = [*verb.split()[:1], str(spec), *verb.split()[1:], "--out", str(tmp_path / "out")]
    result = subprocess.run(
        [sys.executable, "-c", probe, *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "over the limit" in result.stderr
    assert "FRAMEWORKS []" in result.stdout
    rss_mb = int(result.stdout.split("RSS_KB ")[1].split()[0]) / 1024
    assert rss_mb < 200, f"{rss_mb:.0f} MB"
    assert not (tmp_path / "out").exists()


def _windows_counted(size: int, window: int, stride: int, padding: str) -> int:
    """Output positions along one axis, counted by sliding the window (not by a formula)."""
    from tests.numpy_reference import _pad_amounts

    before, after = _pad_amounts(size, window, stride, padding)
    start, count = 0, 0
    while start + window <= before + size + after:
        count, start = count + 1, start + stride
    return count


def test_flops_and_params_of_each_layer_kind_counted_by_brute_force() -> None:
    """Every layer's FLOPs and parameters, from loops over its output positions and window
    elements (a multiply-add is 2 FLOPs, a bias add 1, a max-pool comparison 1): a reference
    that shares no arithmetic with the shape rules."""
    spec = loads_spec(
        "name: f\ninput_shape: [11, 20, 3]\nlayers:\n"
        "  - {type: Conv2D, filters: 4, kernel_size: [3, 2], strides: 2, padding: same}\n"
        "  - {type: Conv2D, filters: 5, kernel_size: 2, use_bias: false}\n"
        "  - {type: MaxPool, pool_size: [2, 3], strides: 1}\n"
        "  - {type: Activation, activation: relu}\n"
        "  - {type: Dropout, rate: 0.5}\n"
        "  - {type: Flatten}\n"
        "  - {type: Dense, units: 6}\n"
        "  - {type: Dense, units: 2, use_bias: false}\n"
        "  - {type: Softmax}\n"
    )
    layers = infer(spec).to_dict()["layers"]
    oh, ow = _windows_counted(11, 3, 2, "same"), _windows_counted(20, 2, 2, "same")
    assert layers[0]["output_shape"] == [oh, ow, 4]
    assert (layers[0]["params"], layers[0]["flops"]) == (
        3 * 2 * 3 * 4 + 4,
        oh * ow * 4 * (2 * 3 * 2 * 3 + 1),
    )
    h2, w2 = _windows_counted(oh, 2, 1, "valid"), _windows_counted(ow, 2, 1, "valid")
    assert (layers[1]["params"], layers[1]["flops"]) == (2 * 2 * 4 * 5, h2 * w2 * 5 * 2 * 2 * 2 * 4)
    h3, w3 = _windows_counted(h2, 2, 1, "valid"), _windows_counted(w2, 3, 1, "valid")
    assert layers[2]["output_shape"] == [h3, w3, 5]
    assert h3 != w3  # a non-square output, so that no axis can stand for the other
    assert w3 > 1
    assert (layers[2]["params"], layers[2]["flops"]) == (0, h3 * w3 * 5 * 2 * 3)
    assert [layer["flops"] for layer in layers[3:6]] == [h3 * w3 * 5, 0, 0]  # relu: one per value
    flat = h3 * w3 * 5
    assert (layers[6]["params"], layers[6]["flops"]) == (flat * 6 + 6, 2 * flat * 6 + 6)
    assert (layers[7]["params"], layers[7]["flops"]) == (6 * 2, 2 * 6 * 2)
    assert layers[8]["params"] == 0


def test_plan_layers_chain_their_shapes_and_keep_their_spec_layers() -> None:
    spec = load_spec(ROOT / "specs/strides_same.yaml")
    plan = infer(spec, Limits(max_params=10**7))
    assert plan.limits == Limits(max_params=10**7)
    shape = plan.input_shape
    for i, (step, layer) in enumerate(zip(plan.layers, spec.layers, strict=True)):
        assert (step.index, step.layer, step.name, step.kind) == (i, layer, layer.name, layer.KIND)
        assert step.input_shape == shape
        shape = step.output_shape
    doc = plan.to_dict()
    assert doc["output_shape"] == list(plan.output_shape)
    assert doc["flops"] == sum(layer["flops"] for layer in doc["layers"]) == plan.flops


@pytest.mark.parametrize(
    ("last", "logits"),
    [
        ("{type: Dense, units: 3, activation: softmax}", "{type: Dense, units: 3}"),
        ("{type: Dense, units: 1, activation: sigmoid}", "{type: Dense, units: 1}"),
        ("{type: Softmax}", None),
        ("{type: Activation, activation: softmax}", None),
        ("{type: Activation, activation: sigmoid}", None),
    ],
)
def test_logits_plan_drops_only_the_final_squash(last: str, logits: str | None) -> None:
    from specnet.shapes import ends_in_softmax, logits_plan

    head = "name: l\ninput_shape: [4, 4, 2]\nlayers: [{type: Flatten}, {type: Dense, units: 3}, "
    plan = infer(loads_spec(head + last + "]\n"), Limits(max_params=10**6))
    out = logits_plan(plan)
    assert ends_in_softmax(plan) == ("softmax" in last or "Softmax" in last)
    assert not ends_in_softmax(out)
    assert out.limits == plan.limits
    assert [s.name for s in out.layers] == [s.name for s in plan.layers]  # weights still fit
    assert out.output_shape == plan.output_shape
    final = out.spec.layers[-1]
    assert getattr(final, "activation", None) in (None, "linear")
    if logits is not None:
        assert final.model_dump(exclude={"name", "activation"}) == loads_spec(
            head + logits + "]\n"
        ).layers[-1].model_dump(exclude={"name", "activation"})
    plain = infer(loads_spec(head + "{type: Dense, units: 2}]\n"))
    assert logits_plan(plain) is plain  # already logits: the same plan


@pytest.mark.parametrize(
    ("size", "window", "stride"),
    [(15, 3, 2), (16, 3, 2), (7, 2, 1), (8, 4, 3), (5, 7, 1), (1, 1, 1)],
)
def test_same_padding_matches_tensorflows_documentation(
    size: int, window: int, stride: int
) -> None:
    from specnet.shapes import same_padding
    from tests.numpy_reference import _pad_amounts

    assert same_padding(size, window, stride) == _pad_amounts(size, window, stride, "same")


def test_limit_messages_give_the_numbers() -> None:
    spec = load_spec(ROOT / "specs/keras/cifar10_cnn.yaml")
    plan = infer(spec)
    with pytest.raises(ShapeError) as info:
        infer(spec, Limits(max_params=1_000_000, max_activation_bytes=3 << 19))
    text = str(info.value)
    big = max(plan.layers, key=lambda layer: layer.params)
    assert (
        "the network has 1,250,858 parameters, over the limit of 1,000,000; "
        f"layer {big.name!r} alone has {big.params:,}" in text
    )
    assert "hint: shrink the layer (fewer units or filters, more pooling before a Dense)" in text
    need = plan.activation_bytes(32) / 2**20
    assert (
        f"activations for one batch of 32 take {need:,.1f} MiB, over the limit of 1.5 MiB" in text
    )
    assert "hint: lower train.batch_size or input_shape, or raise --max-activation-mb" in text


@pytest.mark.parametrize(
    ("units", "names", "ok"),
    [(1, 2, True), (1, 1, False), (1, 3, False), (3, 3, True), (3, 2, False)],
)
def test_class_name_counts(units: int, names: int, ok: bool) -> None:
    listed = ", ".join(f"c{i}" for i in range(names))
    layers = f"[{{type: Flatten}}, {{type: Dense, units: {units}}}]"
    text = f"name: c\ninput_shape: [2, 2, 1]\nclass_names: [{listed}]\nlayers: {layers}\n"
    if ok:
        assert infer(loads_spec(text)).spec.class_names == [f"c{i}" for i in range(names)]
        return
    expected = 2 if units == 1 else units
    message = f"{names} class names for a network with {units} output(s); expected {expected}"
    with pytest.raises(ShapeError, match=re.escape(message)):
        infer(loads_spec(text))


def test_impossible_layers_say_why() -> None:
    conv = "{type: Conv2D, filters: 2, kernel_size: 3"
    cases = {
        f"{conv}, dilation_rate: 3}}": "kernel_size 3×3 (dilated to 7×7)",
        f"{conv}, strides: 2, dilation_rate: 2}}": "strides > 1 cannot be combined with "
        "dilation_rate > 1 (Keras refuses it too)",
        "{type: MaxPool, pool_size: [2, 9]}": "pool_size 2×9",
    }
    for layer, message in cases.items():
        with pytest.raises(ShapeError, match=re.escape(message)):
            infer(loads_spec(f"name: i\ninput_shape: [6, 6, 1]\nlayers: [{layer}]\n"))


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ("{type: Conv2D, filters: 2, kernel_size: 3}",
         "input 8×2×1 is smaller than kernel_size 3×3: the output would be empty"),
        ("{type: MaxPool, pool_size: [2, 3]}",
         "input 8×2×1 is smaller than pool_size 2×3: the output would be empty"),
        ("{type: MaxPool, pool_size: [9, 1]}",
         "input 8×2×1 is smaller than pool_size 9×1: the output would be empty"),
    ],
)  # fmt: skip
def test_a_window_too_large_for_one_axis_is_named(layer: str, message: str) -> None:
    with pytest.raises(ShapeError, match=re.escape(message) + "\n") as info:
        infer(loads_spec(f"name: w\ninput_shape: [8, 2, 1]\nlayers: [{layer}]\n"))
    assert "dilated" not in str(info.value)


def test_a_plan_ending_in_a_layer_without_activation_is_its_own_logits_plan() -> None:
    from specnet.shapes import logits_plan

    plan = infer(loads_spec("name: f\ninput_shape: [4, 4, 1]\nlayers: [{type: Flatten}]\n"))
    assert logits_plan(plan) is plan


def test_memory_figures_switch_unit_at_one_gib() -> None:
    from specnet.shapes import _bytes

    assert [_bytes(n) for n in (2**20, 2**30 - 2**20, 2**30, 2**31)] == [
        "1.0 MiB", "1,023.0 MiB", "1.0 GiB", "2.0 GiB"
    ]  # fmt: skip


def test_summary_columns_stay_aligned_for_long_names_and_shapes() -> None:
    from specnet.shapes import summary_text

    long_name = "a_very_long_layer_name_that_keras_users_write"
    text = summary_text(infer(loads_spec(
        "name: s\ninput_shape: [100000, 1000, 3]\ntrain: {batch_size: 1}\nlayers:\n"
        f"  - {{type: MaxPool, name: {long_name}, pool_size: 1}}\n"  # (None, 100000, 1000, 3)
        "  - {type: MaxPool, pool_size: 1000}\n  - {type: Flatten}\n  - {type: Dense, units: 2}\n"
    )))  # fmt: skip
    lines = text.splitlines()
    header = next(line for line in lines if "Output Shape" in line)
    column = header.index("Output Shape")
    rows = [line for line in lines if line.startswith(f" {long_name}") or "(Flatten)" in line]
    assert len(rows) == 2
    assert "(None, 100000, 1000, 3)" in rows[0]  # wider than the shape column's minimum
    for row in rows:
        assert row[column - 2 : column] == "  "  # the name column ends before the shape column
        assert row[column] == "("
    params = header.index("Param #") + len("Param #")
    assert all(row[:params].endswith(("0", "2")) for row in rows)  # right-aligned under the header


@pytest.mark.parametrize(
    ("layers", "output"),
    [
        ([{"type": "Conv2D", "filters": 2, "kernel_size": 1}, {"type": "Flatten"}], "flatten"),
        ([{"type": "Flatten"}, {"type": "Dropout", "rate": 0.5}, {"type": "Softmax"}], "flatten"),
        ([{"type": "Flatten", "name": "a"}, {"type": "Dense", "units": 2}], None),
        ([{"type": "Flatten"}, {"type": "Dense", "units": 2}, {"type": "Flatten"}], None),
        ([{"type": "Conv2D", "filters": 2, "kernel_size": 1}], None),
        ([{"type": "Flatten", "name": "a"}, {"type": "Dense", "units": 2},
          {"type": "Flatten", "name": "b"}, {"type": "Dropout", "rate": 0.1}], None),
        # graphs: a vector that is merged keeps Keras's order; one only Denses read is folded
        ([{"type": "Flatten", "name": "f"}, {"type": "Dense", "units": 32, "name": "d"},
          {"type": "Add", "inputs": ["f", "d"]}], "f"),
        ([{"type": "Flatten", "name": "f"}, {"type": "Dense", "units": 2, "name": "d"},
          {"type": "Dropout", "rate": 0.1, "name": "e", "inputs": ["f"]},
          {"type": "Dense", "units": 2, "name": "g"}, {"type": "Add", "inputs": ["d", "g"]}], None),
        ([{"type": "Flatten", "name": "f"}, {"type": "Dense", "units": 2, "name": "d"},
          {"type": "Concatenate", "inputs": ["d", "f"]}], "f"),
    ],
)  # fmt: skip
def test_the_flatten_that_keeps_keras_order(layers: list[dict], output: str | None) -> None:  # type: ignore[type-arg]
    """A Flatten keeps Keras's (h, w, c) order on the NCHW backends unless every reader of its
    vector (through Dropout, Activation, Softmax) is a Dense, whose rows are folded instead."""
    from specnet.shapes import flatten_folds
    from specnet.spec import spec_from_dict

    plan = infer(spec_from_dict({"name": "t", "input_shape": [4, 4, 2], "layers": layers}))
    folds, in_order = flatten_folds(plan)
    assert in_order == ({output} if output else set())
    flattens = {s.name for s in plan.layers if s.kind == "Flatten" and len(s.input_shape) == 3}
    folded = {s.name for s in plan.layers if s.kind == "Dense" and s.inputs[0] not in in_order}
    assert set(folds) == (folded if flattens - in_order else set())
