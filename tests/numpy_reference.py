"""A NumPy reference for conv, max-pool, flatten and dense: the third opinion on layout traps.

Written from TensorFlow's documentation, not from specnet's code: for ``SAME`` padding,
``out = ceil(in / stride)``, ``pad_along = max((out - 1) * stride + k_eff - in, 0)``,
``pad_before = pad_along // 2`` and the rest after. Arrays are NHWC, kernels HWIO, float64.
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
