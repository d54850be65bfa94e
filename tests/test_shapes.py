"""Static shapes and sizes, checked against published figures and independent arithmetic."""

from __future__ import annotations

import math
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
