"""keras.applications as specs: the same parameters, names and function as Keras's own models.

Weights are taken from a keras.applications model (random initial weights, its BatchNorm
statistics randomised: with Keras's zero/one statistics a backend that ignored them would still
agree) and loaded by name, ``<layer name>.<Keras variable name>``; every runtime then has to
compute what keras.applications computes. The input is 64×64 (keras.applications accepts any
size from 32 with its own top) so the check runs once per CI run in seconds, not minutes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from specnet import infer, load_spec, loads_spec
from specnet._frameworks import keras_module
from specnet.backends import get_backend
from specnet.backends.onnx import ort_session, run_session
from specnet.export import native_onnx
from specnet.shapes import Limits
from specnet.weights import check_weights, init_weights, load_weights
from tests.conftest import ROOT
from tests.helpers import batch

RESNET50 = ROOT / "specs" / "applications" / "resnet50.yaml"
#: spec, keras.applications constructor, its total and trainable parameters, its layer count
#: (InputLayer left out), as keras.applications' own summaries print them
APPLICATIONS = [
    ("resnet50.yaml", "ResNet50", 25_636_712, 25_583_592, 176),
    ("mobilenet_v2.yaml", "MobileNetV2", 3_538_984, 3_504_872, 155),
    ("vgg16.yaml", "VGG16", 138_357_544, 138_357_544, 22),
]
#: VGG16 is over the default parameter limit (100 M): its checks raise it, as its users must
VGG16_LIMITS = Limits(max_params=140_000_000)


def _keras_weights(model: Any, seed: int) -> dict[str, np.ndarray]:
    """Every variable of a Keras model by ``<layer>.<variable>``, BatchNorm statistics drawn."""
    rng = np.random.default_rng(seed)
    weights = {}
    keras = keras_module()
    for layer in model.layers:
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        for variable in layer.weights:
            value = variable.numpy()
            if variable.name == "moving_mean":
                value = rng.normal(0, 0.2, value.shape).astype(np.float32)
            elif variable.name == "moving_variance":
                value = rng.uniform(0.5, 2.0, value.shape).astype(np.float32)
            elif variable.name in ("gamma", "beta"):
                value = (value + rng.normal(0, 0.1, value.shape)).astype(np.float32)
            variable.assign(value)
            # Keras 3 calls a depthwise kernel `kernel`; canonically (Keras 2, HDF5 files) it is
            # `depthwise_kernel`, a layout of its own
            name = "depthwise_kernel" if depthwise and variable.name == "kernel" else variable.name
            weights[f"{layer.name}.{name}"] = value
    return weights


@pytest.mark.parametrize(("file", "constructor", "total", "trainable", "count"), APPLICATIONS)
def test_an_application_is_keras_applications_own(
    file: str, constructor: str, total: int, trainable: int, count: int
) -> None:
    keras = keras_module()
    path = ROOT / "specs" / "applications" / file
    full = infer(load_spec(path), VGG16_LIMITS)
    assert full.total_params == total
    assert full.trainable_params == trainable
    assert len(full.layers) == count
    written = [line for line in path.read_text().splitlines() if line.strip()]
    assert len([line for line in written if not line.lstrip().startswith("#")]) <= 150

    small = infer(loads_spec(path.read_text().replace("[224, 224, 3]", "[64, 64, 3]")))
    make = getattr(keras.applications, constructor)
    reference = make(weights=None, input_shape=(64, 64, 3))
    # the same layers by name (Keras lists a functional model's layers in its own traversal
    # order, which puts conv2_block1_1_conv before the shortcut's 0_conv)
    assert sorted(layer.name for layer in reference.layers[1:]) == sorted(
        s.name for s in small.layers
    )
    weights = check_weights(small, _keras_weights(reference, seed=3), "keras.applications weights")
    x = batch(small.input_shape, n=3, seed=4) * 255.0 - 128.0  # caffe-like, unnormalised input
    want = np.asarray(reference.predict_on_batch(x))
    assert want.shape == (3, 1000)
    for name in ("keras", "torch", "onnx"):
        backend = get_backend(name)
        model = backend.build(small)
        backend.set_weights(model, small, weights)
        got = backend.predict(model, x)
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=0, err_msg=name)
        assert (got.argmax(1) == want.argmax(1)).all(), name
    # and an export of the same network through ONNX Runtime
    from specnet.export import _torch_onnx

    proto, layout = _torch_onnx(small, weights, 18)
    got = run_session(ort_session(proto), x, layout)
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=0, err_msg="torch → onnx")
    # and specnet's own export, every BatchNormalization folded into its convolution: no more
    # nodes than PyTorch's exporter writes (in its layout: NCHW, no input Transpose)
    folded = native_onnx(small, weights, "direct", layout, 18)
    ops = [node.op_type for node in folded.graph.node]
    assert "BatchNormalization" not in ops
    assert len(ops) <= len(proto.graph.node), (len(ops), len(proto.graph.node))
    got = run_session(ort_session(folded), x, layout)
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=0, err_msg="direct, folded")
    assert (got.argmax(1) == want.argmax(1)).all()


@pytest.mark.parametrize("file", ["resnet50.yaml", "mobilenet_v2.yaml"])
def test_an_application_trains_exports_and_passes_parity(file: str, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """The whole user path on a real architecture, small: at 64×64 with a 4-class head on the
    built-in data, a few SGD steps on each backend (its BatchNormalization in training mode,
    moving statistics updated), the direct export, and ``specnet parity`` of the trained run
    across the frameworks and ONNX. (At 32×32 ResNet50's last stage is 1×1: a batch's variance
    there is over a handful of values, and inference with it overflows as below.)"""
    text = (ROOT / "specs" / "applications" / file).read_text()
    text = text.replace("[224, 224, 3]", "[64, 64, 3]").replace("units: 1000", "units: 4")
    # momentum 0: after a few steps the moving statistics are the last batch's (4 batches of 8,
    # none short). With Keras's 0.99 they stay near their initial 0 and 1 for hundreds of
    # steps, and ResNet50's inference forward then overflows float32 (activations grow ~20×
    # per block: NaN by conv4), which the export refuses to check
    text = re.sub(r"momentum: [0-9.]+", "momentum: 0.0", text)
    text = text.replace(
        "type: BatchNormalization, epsilon", "type: BatchNormalization, momentum: 0.0, epsilon"
    )
    assert text.count("momentum: 0.0") == text.count("type: BatchNormalization")
    text = re.sub(r"(?m)^train: .*$", "", text)
    text += "train: {optimizer: sgd, epochs: 1, batch_size: 8}\n"
    text += "data: {source: synthetic, samples: 40}\n"
    spec = tmp_path / file
    spec.write_text(text)
    plan = infer(load_spec(spec))
    start = init_weights(plan, seed=0)
    for backend in ("keras", "torch"):
        run = tmp_path / backend
        assert cli("train", spec, "--backend", backend, "-o", run, "--quiet").code == 0
        trained = load_weights(run / "weights.safetensors")
        assert set(trained) == set(start)
        moved = [key for key in start if not np.array_equal(trained[key], start[key])]
        assert any(key.endswith(".moving_mean") for key in moved), backend  # BN trained
        assert any(key.endswith(".kernel") for key in moved), backend
        exported = tmp_path / f"{backend}.onnx"
        assert cli("export", run, "--onnx", "--via", "direct", "-o", exported).code == 0
        result = cli("parity", run, "--backends", "keras,torch,onnx,ort:direct/nhwc", "--json")
        assert result.code == 0, result.out
        report = json.loads(result.out)
        assert report["ok"] is True
        assert len(report["pairs"]) == 6


def test_vgg16_needs_the_parameter_limit_raised_on_purpose(cli) -> None:  # type: ignore[no-untyped-def]
    path = ROOT / "specs" / "applications" / "vgg16.yaml"
    refused = cli("validate", path)
    assert refused.code == 2
    assert "the network has 138,357,544 parameters, over the limit of 100,000,000; layer " \
        "'fc1' alone has 102,764,544" in refused.err  # fmt: skip
    assert "--max-params" in refused.err
    assert cli("validate", path, "--max-params", "140000000").code == 0


def test_batch_norm_moving_statistics_follow_keras_not_pytorch() -> None:
    """Keras: moving = m · moving + (1 − m) · batch, with the batch's biased variance; PyTorch's
    stock BatchNorm2d uses the unbiased one (and momentum in the opposite sense). One training
    forward on both backends against that formula in NumPy."""
    import torch

    text = """\
name: bn
input_shape: [3, 4, 2]
layers:
  - {name: bn, type: BatchNormalization, momentum: 0.8}
"""
    plan = infer(loads_spec(text))
    x = batch(plan.input_shape, n=5, seed=1) * 3.0
    mean, variance = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))  # biased: divided by N
    want_mean = 0.8 * 0.0 + 0.2 * mean
    want_variance = 0.8 * 1.0 + 0.2 * variance
    keras = get_backend("keras").build(plan)
    keras(x, training=True)
    layer = keras.get_layer("bn")
    np.testing.assert_allclose(layer.moving_mean.numpy(), want_mean, rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), want_variance, rtol=1e-5)
    model = get_backend("torch").build(plan).train()
    model(torch.from_numpy(x).permute(0, 3, 1, 2))
    np.testing.assert_allclose(model.bn.running_mean.numpy(), want_mean, rtol=1e-5)
    np.testing.assert_allclose(model.bn.running_var.numpy(), want_variance, rtol=1e-5)
    stock = torch.nn.BatchNorm2d(2, momentum=0.2).train()
    stock(torch.from_numpy(x).permute(0, 3, 1, 2))
    assert not np.allclose(stock.running_var.numpy(), want_variance, rtol=1e-3)  # the trap


def test_mobilenet_v2_gradients_agree_in_float64() -> None:
    """Settles the float32 gap of a whole-architecture gradient: in float32 one training-mode
    gradient of MobileNetV2 differs between Keras and PyTorch by up to ~10% of a kernel's largest
    entry (block_14_expand at 64×64: BatchNorm's backward subtracts nearly equal sums). In
    float64 (tests/float64_gradients.py, a child process: Keras's float type is process-wide)
    every kernel and gamma agrees to 1e-9 of its largest entry, so the gap was rounding, not a
    different function. The project BNs' betas have no gradient in exact arithmetic (the next
    BatchNorm, in training mode, removes any per-channel shift): both frameworks give ~1e-14."""
    import subprocess
    import sys

    script = ROOT / "tests" / "float64_gradients.py"
    run = subprocess.run(
        [sys.executable, str(script), str(ROOT / "specs" / "applications" / "mobilenet_v2.yaml")],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    result = json.loads(run.stdout.strip().splitlines()[-1])
    keras_loss, torch_loss = result["loss"]
    assert abs(keras_loss - torch_loss) <= 1e-10 * abs(keras_loss)
    gradients = result["gradients"]
    assert (
        len(gradients) == 158
    )  # every trainable weight (52 BNs' gamma and beta, 54 kernels/biases)
    for key, (relative, largest) in gradients.items():
        if key.endswith("project_BN.beta") and largest < 1e-12:
            continue  # zero in exact arithmetic: both sides are rounding noise
        assert relative < 1e-9, (key, relative, largest)
