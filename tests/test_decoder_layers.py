"""SeparableConv2D, Conv2DTranspose, UpSampling2D, LayerNormalization and Reshape on every
runtime against NumPy (tests/numpy_reference.py, written from TensorFlow's definitions: a
transposed convolution is the gradient of the forward one, bilinear resizing uses half-pixel
centres, a reshape is row-major over (h, w, c)).

The traps each case is there for: a transposed convolution's ``same`` output is cut from a
longer one with the odd row at the end (PyTorch's ``padding`` cuts both ends alike), a kernel
smaller than its stride leaves rows no input reaches (zeros plus the bias, PyTorch's
``output_padding``); a separable convolution's kernels are two layouts (depthwise (h, w, c, m),
pointwise 1×1); layer normalisation of an image is per pixel over the channels (PyTorch's
LayerNorm normalises trailing axes, NCHW's are height and width); a reshape is in Keras's
channels-last order, not the NCHW memory order of the PyTorch and ONNX graphs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from specnet.backends import get_backend
from specnet.backends.onnx import build_graph, ort_session, reference_predict, run_session
from specnet.shapes import infer, transpose_crops
from specnet.spec import Conv2DTranspose, spec_from_dict
from tests import numpy_reference as ref
from tests.helpers import assert_agree, busy_weights

CASES: dict[str, tuple[list[int], list[dict[str, Any]]]] = {
    # a transposed convolution: (h, w) in, kernel, strides, padding
    "transpose-same-odd-cut": (
        [5, 4, 3],
        [{"type": "Conv2DTranspose", "filters": 4, "kernel_size": 3, "strides": 2,
          "padding": "same"}],
    ),
    "transpose-same-even-cut": (
        [4, 5, 2],
        [{"type": "Conv2DTranspose", "filters": 3, "kernel_size": [4, 5], "strides": [2, 3],
          "padding": "same"}],
    ),
    "transpose-kernel-below-stride": (
        [4, 3, 2],
        [{"type": "Conv2DTranspose", "filters": 3, "kernel_size": [1, 2], "strides": [2, 3]}],
    ),
    "transpose-same-kernel-below-stride": (
        [3, 4, 2],
        [{"type": "Conv2DTranspose", "filters": 2, "kernel_size": [1, 2], "strides": [3, 2],
          "padding": "same", "activation": "relu"}],
    ),
    "transpose-valid-grows": (
        [4, 4, 3],
        [{"type": "Conv2DTranspose", "filters": 5, "kernel_size": [3, 2], "use_bias": False}],
    ),
    "separable-same-stride": (
        [7, 6, 3],
        [{"type": "SeparableConv2D", "filters": 4, "kernel_size": 3, "strides": 2,
          "padding": "same", "depth_multiplier": 2, "activation": "tanh"}],
    ),
    "separable-dilated": (
        [8, 7, 2],
        [{"type": "SeparableConv2D", "filters": 3, "kernel_size": 2, "dilation_rate": 2,
          "padding": "same", "use_bias": False}],
    ),
    "depthwise": (  # the NumPy reference's depthwise step on its own, against every runtime
        [6, 5, 3],
        [{"type": "DepthwiseConv2D", "kernel_size": 3, "depth_multiplier": 2}],
    ),
    # unequal strides, which TensorFlow's CPU depthwise kernels get wrong (keras.unequal_strides)
    "depthwise-unequal-strides": (
        [3, 5, 1],
        [{"type": "DepthwiseConv2D", "kernel_size": [1, 4], "strides": [1, 2],
          "depth_multiplier": 2, "use_bias": False}],
    ),
    "depthwise-unequal-strides-same": (
        [8, 3, 1],
        [{"type": "DepthwiseConv2D", "kernel_size": [4, 2], "strides": [3, 1],
          "padding": "same", "depth_multiplier": 2, "activation": "relu"}],
    ),
    "conv-one-channel-unequal-strides": (
        [2, 3, 1],
        [{"type": "Conv2D", "filters": 2, "kernel_size": [1, 2], "strides": [1, 2]}],
    ),
    "conv-one-channel-unequal-strides-same": (
        [5, 3, 1],
        [{"type": "Conv2D", "filters": 2, "kernel_size": [3, 2], "strides": [1, 3],
          "padding": "same"}],
    ),
    "separable-unequal-strides-same": (
        [8, 3, 1],
        [{"type": "SeparableConv2D", "filters": 3, "kernel_size": [4, 2], "strides": [1, 3],
          "padding": "same", "depth_multiplier": 2}],
    ),
    "upsampling-nearest": ([3, 4, 2], [{"type": "UpSampling2D", "size": [2, 3]}]),
    "upsampling-bilinear": (
        [3, 4, 2], [{"type": "UpSampling2D", "size": [3, 2], "interpolation": "bilinear"}]
    ),
    "layer-norm-image": ([4, 3, 5], [{"type": "LayerNormalization", "epsilon": 0.01}]),
    "layer-norm-vector-scale-only": (
        [3, 2, 4],
        [{"type": "Flatten"}, {"type": "LayerNormalization", "center": False}],
    ),
    "reshape-image-to-image": ([4, 6, 2], [{"type": "Reshape", "target_shape": [3, -1, 4]}]),
    "reshape-image-to-vector": ([3, 2, 4], [{"type": "Reshape", "target_shape": -1}]),
    "reshape-vector-to-image": (
        [2, 3, 4], [{"type": "Flatten"}, {"type": "Reshape", "target_shape": [4, 3, 2]}]
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_every_runtime_computes_what_numpy_computes(case: str) -> None:
    shape, layers = CASES[case]
    spec = spec_from_dict({"name": "case", "input_shape": shape, "layers": layers})
    plan = infer(spec)
    weights = busy_weights(plan, seed=2)
    x = np.random.default_rng(3).normal(0, 1, (3, *shape)).astype(np.float32)
    resolved = spec.resolved()["layers"]
    for layer in resolved:  # the reference reshapes to the target with its -1 filled in
        if layer["type"] == "Reshape":
            layer["target_shape"] = list(plan.layers[-1].output_shape)
    want = ref.network(resolved, weights, x)
    assert want.shape[1:] == plan.output_shape
    for name in ("keras", "torch"):
        backend = get_backend(name)
        model = backend.build(plan)
        backend.set_weights(model, plan, weights)
        assert_agree(backend.predict(model, x), want, f"{name} {case}")
    for layout in ("nhwc", "nchw"):
        model = build_graph(plan, weights, layout)
        assert_agree(run_session(ort_session(model), x, layout), want, f"ort/{layout} {case}")
    fed = build_graph(plan, weights, "nhwc")
    assert_agree(reference_predict(fed, x), want, f"onnx reference {case}")


def test_the_transposed_convolution_cuts_as_tensorflow_does() -> None:
    """The crop table itself, for the cases PyTorch's symmetric padding cannot express: 3×3
    stride 2 ``same`` is 2·in + 1 long before the cut, Keras keeps the first 2·in (nothing off
    the start, one row off the end); a 1-kernel of stride 2 is one row short (-1)."""

    def crops(**fields: Any) -> Any:
        layer = Conv2DTranspose(type="Conv2DTranspose", filters=1, **fields)
        return transpose_crops(layer, (5, 4, 1))

    assert crops(kernel_size=(3, 3), strides=(2, 2), padding="same") == ((0, 1), (0, 1))
    assert crops(kernel_size=(5, 4), strides=(1, 2), padding="same") == ((2, 2), (1, 1))
    assert crops(kernel_size=(1, 1), strides=(2, 2), padding="valid") == ((0, -1), (0, -1))
    assert crops(kernel_size=(3, 3), strides=(1, 1), padding="valid") == ((0, 0), (0, 0))


def test_tensorflows_depthwise_convolution_with_unequal_strides_is_still_wrong() -> None:
    """The TensorFlow 2.21 bug the Keras backend works around (keras.unequal_strides): with
    oneDNN, tf.nn.depthwise_conv2d at strides (1, 2) returns wrong rows for this shape. When
    this test fails, TensorFlow computes it right: the workaround can go."""
    import tensorflow as tf

    x = np.random.default_rng(0).random((3, 3, 5, 1), dtype=np.float32)
    kernel = np.random.default_rng(1).normal(size=(1, 4, 1, 2)).astype(np.float32)
    want = ref.depthwise_conv2d(x, kernel, None, (1, 2), "valid")
    got = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 2, 1], "VALID").numpy()
    assert not np.allclose(got, want, atol=1e-3)  # rows of zeros, or of unset memory (NaN)


def test_tensorflows_one_channel_convolution_with_unequal_strides_is_still_wrong() -> None:
    """The other TensorFlow 2.21 (oneDNN) bug keras.unequal_strides works around: a Conv2D on
    one input channel, strides (1, 2), an output one column wide — wrong even eagerly."""
    import tensorflow as tf

    x = np.random.default_rng(0).random((3, 2, 3, 1), dtype=np.float32)
    kernel = np.random.default_rng(1).normal(size=(1, 2, 1, 1)).astype(np.float32)
    want = ref.conv2d(x, kernel, None, (1, 2), "valid")
    got = tf.nn.conv2d(x, kernel, [1, 1, 2, 1], "VALID").numpy()
    assert not np.allclose(got, want, atol=1e-3)


def test_pytorch_layer_norm_over_nchw_is_not_keras_layer_norm() -> None:
    """The trap LayerNormChannels avoids: ``nn.LayerNorm(c)`` on an NCHW image would need its
    last axis to be the channels; normalising the trailing (h, w) instead is another function
    (and would need a (h, w) weight)."""
    import torch

    x = np.random.default_rng(0).normal(0, 1, (2, 3, 4, 5)).astype(np.float32)  # NHWC
    want = ref.layer_norm(x, None, None, 1e-3)
    nchw = torch.from_numpy(x).permute(0, 3, 1, 2)
    wrong = torch.nn.functional.layer_norm(nchw, (3, 4), eps=1e-3).permute(0, 2, 3, 1)
    assert np.abs(wrong.numpy() - want).max() > 0.1
    plan = infer(spec_from_dict({"name": "n", "input_shape": [3, 4, 5],
                                 "layers": [{"type": "LayerNormalization", "scale": False,
                                             "center": False}]}))  # fmt: skip
    assert_agree(get_backend("torch").predict(get_backend("torch").build(plan), x), want, "torch")


def test_a_reshape_follows_keras_order_not_nchw_memory() -> None:
    """A 2×2×2 image reshaped to [4, 1, 2] in PyTorch's own (c, h, w) order would put the two
    channels of one pixel in different rows."""
    x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    spec = {"name": "r", "input_shape": [2, 2, 2],
            "layers": [{"type": "Reshape", "target_shape": [4, 1, 2]}]}  # fmt: skip
    plan = infer(spec_from_dict(spec))
    got = get_backend("torch").predict(get_backend("torch").build(plan), x)
    np.testing.assert_array_equal(got[0, :, 0, :], [[0, 1], [2, 3], [4, 5], [6, 7]])
