"""A NumPy reference for conv, max-pool, flatten and dense: the third opinion on layout traps.

Written from TensorFlow's documentation, not from specnet's code: for ``SAME`` padding,
``out = ceil(in / stride)``, ``pad_along = max((out - 1) * stride + k_eff - in, 0)``,
``pad_before = pad_along // 2`` and the rest after. Arrays are NHWC, kernels HWIO, float64.
A transposed convolution is written as what TensorFlow defines it to be, the gradient of the
forward convolution whose input has the output's size (Keras's ``deconv_output_length``);
bilinear resizing as ``tf.image.resize``'s half-pixel centres.
"""

from __future__ import annotations

import numpy as np


def _pad_amounts(size: int, window: int, stride: int, padding: str) -> tuple[int, int]:
    if padding == "valid":
        return 0, 0
    out = -(-size // stride)
    along = max((out - 1) * stride + window - size, 0)
    return along // 2, along - along // 2


def conv2d(
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None,
    strides: tuple[int, int] = (1, 1),
    padding: str = "valid",
    dilation: tuple[int, int] = (1, 1),
) -> np.ndarray:
    kh, kw, _, filters = kernel.shape
    (sh, sw), (dh, dw) = strides, dilation
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    top, bottom = _pad_amounts(x.shape[1], eh, sh, padding)
    left, right = _pad_amounts(x.shape[2], ew, sw, padding)
    x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    oh = (x.shape[1] - eh) // sh + 1
    ow = (x.shape[2] - ew) // sw + 1
    out = np.zeros((x.shape[0], oh, ow, filters))
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
            cols = slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)
            out += x[:, rows, cols, :] @ kernel[i, j]  # (N, oh, ow, in) @ (in, filters)
    return out if bias is None else out + bias


def depthwise_conv2d(
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None,
    strides: tuple[int, int] = (1, 1),
    padding: str = "valid",
    dilation: tuple[int, int] = (1, 1),
) -> np.ndarray:
    """Each channel convolved on its own with its ``m`` filters (kernel (h, w, c, m)); output
    channel ``i·m + j`` is channel i's filter j."""
    c = kernel.shape[2]
    outs = [
        conv2d(x[..., i : i + 1], kernel[:, :, i : i + 1, :], None, strides, padding, dilation)
        for i in range(c)
    ]
    out = np.concatenate(outs, axis=-1)
    return out if bias is None else out + bias


def conv2d_transpose(
    x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None, strides: tuple[int, int],
    padding: str,
) -> np.ndarray:  # fmt: skip
    """The gradient of ``conv2d(z, kernel)`` with respect to ``z``, ``z`` of Keras's output size
    (``in · stride + max(k − stride, 0)`` valid, ``in · stride`` same); kernel (h, w, out, in)."""
    n, h, w, _ = x.shape
    kh, kw, filters, _ = kernel.shape
    (sh, sw) = strides
    size = [
        length * s + (max(k - s, 0) if padding == "valid" else 0)
        for length, k, s in ((h, kh, sh), (w, kw, sw))
    ]
    top, _ = _pad_amounts(size[0], kh, sh, padding)  # the forward convolution's padding
    left, _ = _pad_amounts(size[1], kw, sw, padding)
    # scatter every input pixel's patch into a buffer wide enough for all of them, then cut
    big = np.zeros((n, (h - 1) * sh + kh + top, (w - 1) * sw + kw + left, filters))
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + sh * (h - 1) + 1, sh)
            cols = slice(j, j + sw * (w - 1) + 1, sw)
            big[:, rows, cols, :] += x @ kernel[i, j].T  # (N, h, w, in) @ (in, out)
    big = np.pad(big, ((0, 0), (0, size[0]), (0, size[1]), (0, 0)))  # untouched rows are 0
    out = big[:, top : top + size[0], left : left + size[1], :]
    return out if bias is None else out + bias


def up_sampling(x: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    if interpolation == "nearest":
        return x.repeat(size[0], axis=1).repeat(size[1], axis=2)
    for axis, factor in ((1, size[0]), (2, size[1])):
        length = x.shape[axis]
        source = np.maximum((np.arange(length * factor) + 0.5) / factor - 0.5, 0.0)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, length - 1)
        frac = (source - low).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
        x = np.take(x, low, axis=axis) * (1 - frac) + np.take(x, high, axis=axis) * frac
    return x


def layer_norm(
    x: np.ndarray, gamma: np.ndarray | None, beta: np.ndarray | None, epsilon: float
) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # biased
    out = (x - mean) / np.sqrt(variance + epsilon)
    out = out if gamma is None else out * gamma
    return out if beta is None else out + beta


def max_pool(
    x: np.ndarray, pool: tuple[int, int], strides: tuple[int, int], padding: str = "valid"
) -> np.ndarray:
    (ph, pw), (sh, sw) = pool, strides
    top, bottom = _pad_amounts(x.shape[1], ph, sh, padding)
    left, right = _pad_amounts(x.shape[2], pw, sw, padding)
    x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-np.inf)
    oh = (x.shape[1] - ph) // sh + 1
    ow = (x.shape[2] - pw) // sw + 1
    out = np.full((x.shape[0], oh, ow, x.shape[3]), -np.inf)
    for i in range(ph):
        for j in range(pw):
            out = np.maximum(
                out, x[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
            )
    return out


def flatten(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1)  # row-major over (h, w, c): Keras's order


def dense(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    out = x @ kernel
    return out if bias is None else out + bias


ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "relu6": lambda x: np.clip(x, 0, 6),
    "softmax": lambda x: (
        np.exp(x - x.max(-1, keepdims=True))
        / np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)
    ),
}


_KERAS_NAMES = {"MaxPooling2D": "MaxPool", "MaxPool2D": "MaxPool", "Convolution2D": "Conv2D"}


def network(layers: list[dict], weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """A resolved spec's layers (``Spec.resolved()["layers"]``, plain dicts) run in float64 on
    NHWC ``x``: each layer reads the one above unless it names its ``inputs`` (Keras's
    functional semantics, from Keras's documentation); merges as Keras defines them."""
    values = {"input": x.astype(np.float64)}
    above = "input"
    for layer in layers:
        args = [values[name] for name in layer.get("inputs", [above])]
        kind, name = _KERAS_NAMES.get(layer["type"], layer["type"]), layer["name"]
        kernel, bias = weights.get(f"{name}.kernel"), weights.get(f"{name}.bias")
        if kind == "Conv2D":
            out = conv2d(args[0], kernel, bias, layer["strides"], layer["padding"],
                         layer["dilation_rate"])  # fmt: skip
        elif kind == "Dense":
            out = dense(args[0], kernel, bias)
        elif kind == "MaxPool":
            out = max_pool(args[0], layer["pool_size"], layer["strides"] or layer["pool_size"],
                           layer["padding"])  # fmt: skip
        elif kind == "Flatten":
            out = flatten(args[0])
        elif kind == "DepthwiseConv2D":
            window = (layer["strides"], layer["padding"], layer["dilation_rate"])
            out = depthwise_conv2d(args[0], weights[f"{name}.depthwise_kernel"], bias, *window)
        elif kind == "SeparableConv2D":
            window = (layer["strides"], layer["padding"], layer["dilation_rate"])
            middle = depthwise_conv2d(args[0], weights[f"{name}.depthwise_kernel"], None, *window)
            out = conv2d(middle, weights[f"{name}.pointwise_kernel"], bias)
        elif kind == "Conv2DTranspose":
            out = conv2d_transpose(args[0], kernel, bias, layer["strides"], layer["padding"])
        elif kind == "UpSampling2D":
            out = up_sampling(args[0], layer["size"], layer["interpolation"])
        elif kind == "LayerNormalization":
            out = layer_norm(args[0], weights.get(f"{name}.gamma"), weights.get(f"{name}.beta"),
                             layer["epsilon"])  # fmt: skip
        elif kind == "Reshape":
            out = args[0].reshape(args[0].shape[0], *layer["target_shape"])  # row-major NHWC
        elif kind == "Permute":
            out = args[0].transpose(0, *layer["dims"])  # Keras's axes after the batch, NHWC
        elif kind in ("Dropout", "Activation", "Softmax"):
            out = args[0]
        elif kind == "Add":
            out = sum(args[1:], args[0])
        elif kind == "Subtract":
            out = args[0] - args[1]
        elif kind == "Multiply":
            out = np.prod(args, axis=0)
        elif kind == "Average":
            out = sum(args[1:], args[0]) / len(args)
        elif kind == "Maximum":
            out = np.maximum.reduce(args)
        elif kind == "Concatenate":
            out = np.concatenate(args, axis=layer["axis"])  # Keras's axis counts the batch
        else:
            raise NotImplementedError(kind)
        activation = "softmax" if kind == "Softmax" else layer.get("activation")
        values[name] = ACTIVATIONS[activation or "linear"](out)
        above = name
    return values[above]
