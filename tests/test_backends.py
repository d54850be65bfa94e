"""Keras and PyTorch compute the same function for every spec in specs/ (inference parity)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from specnet import infer, load_spec, loads_spec
from specnet.backends import BACKENDS, get_backend
from specnet.backends import keras as keras_backend
from specnet.backends import torch as torch_backend
from specnet.shapes import RULES, ends_in_softmax, flatten_folds, logits_plan
from specnet.spec import LAYER_KINDS, spec_from_dict
from specnet.weights import init_weights, load_weights, save_weights
from tests.conftest import SPECS
from tests.helpers import assert_agree, batch, busy_weights

KERAS, TORCH = get_backend("keras"), get_backend("torch")


def test_every_table_covers_every_layer_kind() -> None:
    for table in (RULES, keras_backend.LAYERS, torch_backend.LAYERS):
        assert set(table) == set(LAYER_KINDS)
    assert set(torch_backend.ACTIVATIONS) == set(
        LAYER_KINDS[1].model_fields["activation"].annotation.__args__  # type: ignore[union-attr]
    )
    assert set(BACKENDS) == {"keras", "torch", "onnx"}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_inference_parity(path: Path) -> None:
    plan = infer(load_spec(path))
    weights = busy_weights(plan, seed=7)
    x = batch(plan.input_shape)
    for variant in (logits_plan(plan), plan):  # pre-softmax outputs first, then the full model
        outputs = {}
        for backend in (KERAS, TORCH):
            model = backend.build(variant)
            backend.set_weights(model, variant, weights)
            outputs[backend.name] = backend.predict(model, x)
            assert outputs[backend.name].shape == (len(x), *variant.output_shape)
        assert_agree(outputs["torch"], outputs["keras"], f"{plan.name}: torch vs keras")
    if ends_in_softmax(plan):
        np.testing.assert_allclose(outputs["keras"].sum(1), 1.0, rtol=1e-5)


def _keras_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Every layer's output shape; a functional model's first layer is its InputLayer."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    return {layer.name: tuple(layer.output.shape[1:]) for layer in layers}


def _torch_shapes(model: Any, plan: Any, x: np.ndarray) -> dict[str, tuple[int, ...]]:
    import torch

    seen: dict[str, tuple[int, ...]] = {}
    for name, module in model.named_children():
        module.register_forward_hook(
            lambda _m, _i, out, name=name: seen.__setitem__(name, tuple(out.shape[1:]))
        )
    with torch.no_grad():
        values = model.trace(torch.from_numpy(x).permute(0, 3, 1, 2))
    # the last module of each spec layer (a merge has none: its value); NCHW → NHWC
    out = {}
    for step in plan.layers:
        modules = torch_backend.LAYERS[type(step.layer)](step.layer, step)
        shape = seen[modules[-1][0]] if modules else tuple(values[step.name].shape[1:])
        assert tuple(values[step.name].shape[1:]) == shape
        out[step.name] = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
    return out


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_framework_shapes_and_params_equal_the_plan(path: Path) -> None:
    plan = infer(load_spec(path))
    want = {step.name: step.output_shape for step in plan.layers}
    keras_model, torch_model = KERAS.build(plan), TORCH.build(plan)
    assert _keras_shapes(keras_model) == want
    assert _torch_shapes(torch_model, plan, batch(plan.input_shape, n=2)) == want
    assert KERAS.count_params(keras_model) == plan.total_params
    assert TORCH.count_params(torch_model) == plan.total_params
    for step in plan.layers:
        assert keras_model.get_layer(step.name).count_params() == step.params


def test_round_trip_is_bit_identical(tmp_path: Path) -> None:
    """keras → weights.safetensors → torch → weights.safetensors → keras: the same bits."""
    plan = infer(load_spec(SPECS[0].parent / "strides_same.yaml"))
    rng = np.random.default_rng(3)
    original = {
        key: rng.standard_normal(value.shape).astype(np.float32)
        for key, value in init_weights(plan).items()
    }
    keras_model = KERAS.build(plan)
    KERAS.set_weights(keras_model, plan, original)
    save_weights(tmp_path / "a.safetensors", KERAS.get_weights(keras_model, plan), overwrite=False)
    torch_model = TORCH.build(plan)
    TORCH.set_weights(torch_model, plan, load_weights(tmp_path / "a.safetensors", plan))
    save_weights(tmp_path / "b.safetensors", TORCH.get_weights(torch_model, plan), overwrite=False)
    again = KERAS.build(plan)
    KERAS.set_weights(again, plan, load_weights(tmp_path / "b.safetensors", plan))
    final = KERAS.get_weights(again, plan)
    assert final.keys() == original.keys()
    for key in original:
        assert final[key].dtype == np.float32
        assert np.array_equal(final[key], original[key]), key


def test_safetensors_file_is_read_identically_by_the_library_and_numpy(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    plan = infer(load_spec(SPECS[0]))
    weights = init_weights(plan, seed=1)
    save_weights(tmp_path / "w.safetensors", weights, overwrite=False)
    ours, theirs = load_weights(tmp_path / "w.safetensors"), load_file(tmp_path / "w.safetensors")
    assert ours.keys() == theirs.keys() == weights.keys()
    for key in weights:
        assert np.array_equal(ours[key], theirs[key])


@pytest.mark.parametrize(
    "tail",
    [[], [{"type": "Dropout", "rate": 0.5}, {"type": "Activation", "activation": "relu"}],
     [{"type": "Softmax"}], [{"type": "Dense", "units": 3}, {"type": "Flatten"}],
     [{"type": "Dense", "units": 3}, {"type": "Flatten"}, {"type": "Dense", "units": 2}]],
    ids=["flatten", "then_dropout_relu", "then_softmax", "dense_then_flat_vector",
         "a_vector_flattened_between_denses"],
)  # fmt: skip
def test_a_flattened_output_is_in_keras_order_on_every_runtime(tail: list[dict[str, Any]]) -> None:
    """A Flatten whose vector is the output (no Dense after it) reads the image as Keras does,
    row by row, (h, w, c): PyTorch and ONNX compute in NCHW and must transpose back first."""
    from specnet.backends.onnx import BACKEND as ONNX
    from specnet.spec import spec_from_dict

    layers = [{"type": "Conv2D", "filters": 3, "kernel_size": 2}, {"type": "Flatten"}, *tail]
    plan = infer(spec_from_dict({"name": "t", "input_shape": [5, 4, 2], "layers": layers}))
    weights = busy_weights(plan, seed=1)
    x = batch(plan.input_shape, n=3)
    # the reference: the conv in NumPy, flattened row by row as numpy.reshape does
    kernel, bias = weights["conv2d.kernel"], weights["conv2d.bias"]
    windows = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(1, 2))  # N,4,3,C,2,2
    conv = np.einsum("nhwcij,ijcf->nhwf", windows, kernel) + bias
    want = conv.reshape(3, -1)
    denses = iter(["dense", "dense_1"])
    for layer in tail:  # Dropout is the identity at inference; a vector's Flatten too
        if layer["type"] == "Activation":
            want = np.maximum(want, 0)
        elif layer["type"] == "Softmax":
            want = np.exp(want) / np.exp(want).sum(1, keepdims=True)
        elif layer["type"] == "Dense":
            name = next(denses)
            want = want @ weights[f"{name}.kernel"] + weights[f"{name}.bias"]
    for backend in (KERAS, TORCH, ONNX):
        model = backend.build(plan)
        backend.set_weights(model, plan, weights)
        assert_agree(backend.predict(model, x), want, backend.name, atol=1e-5)
    # ONNX: one Transpose back to (h, w, c) before the image's Flatten; a vector's Flatten (the
    # identity) is no node at all
    ops = [node.op_type for node in model.proto().graph.node]
    back = ["Transpose"] if flatten_folds(plan)[1] else []
    assert ops[: 3 + len(back)] == ["Transpose", "Conv", *back, "Flatten"]
    assert ops.count("Flatten") == 1


def test_pytorchs_one_channel_channels_last_convolution_is_still_wrong() -> None:
    """The PyTorch 2.13 CPU bug the backend works around (_torch_modules.OneChannelConv2d): a
    one-channel input and kernel in channels-last strides, an output one column wide at strides
    (1, 3), give wrong values. When this test fails, PyTorch computes it right and the
    workaround can go. specnet's PyTorch model of the same layer computes it right."""
    import torch

    torch.manual_seed(0)
    x = torch.randn(3, 1, 11, 3)
    conv = torch.nn.Conv2d(1, 2, (4, 2), stride=(1, 3), bias=False).requires_grad_(False)
    want = torch.nn.functional.conv2d(x.double(), conv.weight.double(), stride=(1, 3))
    conv = conv.to(memory_format=torch.channels_last)
    got = conv(x.contiguous(memory_format=torch.channels_last))
    assert not torch.allclose(got.double(), want, atol=1e-3)  # unset memory: any value, NaN
    layer = {"type": "Conv2D", "filters": 2, "kernel_size": [4, 2], "strides": [1, 3],
             "use_bias": False, "name": "conv"}  # fmt: skip
    plan = infer(spec_from_dict({"name": "c", "input_shape": [11, 3, 1], "layers": [layer]}))
    weights = {"conv.kernel": conv.weight.numpy().transpose(2, 3, 1, 0).copy()}
    model = TORCH.build(plan)
    TORCH.set_weights(model, plan, weights)
    nhwc = x.permute(0, 2, 3, 1).numpy()
    assert_agree(TORCH.predict(model, nhwc), want.permute(0, 2, 3, 1).numpy(), "specnet torch")


def test_tensorflows_remapper_still_rewrites_a_maximum_into_a_wrong_leaky_relu() -> None:
    """The TensorFlow 2.21 bug the Keras backend works around (keras._needs_no_remapping):
    grappler's remapper turns maximum(x · 2, x) into LeakyRelu(alpha=2), which is min(2x, x).
    When this test fails, TensorFlow computes it right and the workaround can go. (Run in a
    child process: the remapper switch is process-wide.)"""
    import subprocess
    import sys

    code = (
        "import numpy as np, tensorflow as tf\n"
        "x = np.linspace(-2, 2, 9).astype(np.float32)\n"
        "f = tf.function(lambda v: tf.maximum(v * 2.0, v))\n"
        "print(float(np.abs(f(x).numpy() - np.maximum(2 * x, x)).max()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout.split()[-1]) == 2.0  # the negative half doubled: min(2x, x)
    text = (
        "name: m\ninput_shape: [3, 3, 1]\nlayers:\n"
        "  - {name: x, type: Conv2D, filters: 2, kernel_size: 1}\n"
        "  - {name: doubled, type: Rescaling, scale: 2.0}\n"
        "  - {name: max, type: Maximum, inputs: [doubled, x]}\n"
    )
    plan = infer(loads_spec(text))
    assert keras_backend._needs_no_remapping(plan)
    assert not keras_backend._needs_no_remapping(
        infer(loads_spec(text.replace("2.0}", "2.0, offset: 1.0}")))
    )


def test_tensorflows_onednn_still_aborts_on_a_tiny_one_channel_image() -> None:
    """The TensorFlow 2.21 (oneDNN) bug keras._one_channel_pointwise works around, found by the
    random campaign: a one-channel 1×1 SeparableConv2D after a Conv2D aborts once traced, in a
    fresh process ("could not create a primitive descriptor for the reorder primitive"), unless
    the remapper is off. When this test fails, TensorFlow runs it."""
    import subprocess
    import sys

    code = (
        "import numpy as np, keras, sys\n"
        "import tensorflow as tf\n"
        "if sys.argv[1] == 'off':\n"
        "    tf.config.optimizer.set_experimental_options({'remapping': False})\n"
        "L = keras.layers\n"
        "i = keras.Input((7, 1, 1))\n"
        "o = L.SeparableConv2D(1, 1, use_bias=False)(L.AveragePooling2D(1)(L.Conv2D(1, 1)(i)))\n"
        "try:\n"
        "    keras.Model(i, o).predict_on_batch(np.ones((1, 7, 1, 1), 'f4'))\n"
        "    print('ran')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, 'primitive descriptor' in str(exc))\n"
    )
    runs = {
        remapper: subprocess.run(
            [sys.executable, "-c", code, remapper], capture_output=True, text=True, check=True
        ).stdout.split()
        for remapper in ("on", "off")
    }
    assert runs["on"][-2:] == ["AbortedError", "True"]
    assert runs["off"][-1:] == ["ran"]


TINY_POINTWISE = """\
name: tiny
input_shape: [7, 1, 1]
layers:
  - {name: c, type: Conv2D, filters: 1, kernel_size: 1}
  - {name: s, type: SeparableConv2D, filters: 1, kernel_size: 1}
  - {name: f, type: Flatten}
"""


def test_a_one_channel_pointwise_separable_conv_runs_in_keras(tmp_path: Path) -> None:
    """The network TensorFlow aborts on (above), through specnet's Keras backend in a fresh
    process (where the remapper is on unless specnet turns it off): it runs, and equals NumPy's
    float64 forward pass."""
    import subprocess
    import sys

    import tests.numpy_reference as ref

    plan = infer(loads_spec(TINY_POINTWISE))
    weights = busy_weights(plan, seed=1)
    save_weights(tmp_path / "w.safetensors", weights, overwrite=False)
    x = batch(plan.input_shape, n=3)
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, numpy as np\n"
        "from specnet import infer, loads_spec\n"
        "from specnet.backends import get_backend\n"
        "from specnet.weights import load_weights\n"
        "from tests.test_backends import TINY_POINTWISE\n"
        "plan = infer(loads_spec(TINY_POINTWISE))\n"
        "b = get_backend('keras'); m = b.build(plan)\n"
        "b.set_weights(m, plan, load_weights(sys.argv[1] + '/w.safetensors', plan))\n"
        "np.save(sys.argv[1] + '/y.npy', b.predict(m, np.load(sys.argv[1] + '/x.npy')))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, capture_output=True)
    want = ref.network(plan.spec.resolved()["layers"], weights, x)
    assert_agree(np.load(tmp_path / "y.npy"), want, "one-channel pointwise separable conv")


def test_tensorflows_remapper_still_drops_a_leaky_relus_slope_after_an_add() -> None:
    """The TensorFlow 2.21 bug keras._leak_after_a_merge works around: Conv2D, an Add with its
    input, then ReLU(negative_slope=0.3) compute the slope 0.2 once traced (predict), not
    eagerly. When this test fails, TensorFlow computes it right. (A child process: the
    remapper switch is process-wide.)"""
    import subprocess
    import sys

    code = (
        "import numpy as np, keras\n"
        "L = keras.layers\n"
        "i = keras.Input((1, 3, 2))\n"
        "o = L.ReLU(negative_slope=0.3)(L.Add()([L.Conv2D(2, 1)(i), i]))\n"
        "m = keras.Model(i, o)\n"
        "x = np.random.default_rng(0).normal(size=(1, 1, 3, 2)).astype('f4')\n"
        "print(float(np.abs(m.predict_on_batch(x) - m(x).numpy()).max()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout.split()[-1]) > 1e-3
