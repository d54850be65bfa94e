"""A NumPy forward pass of small channels-first Keras 1/2 models, written from the backends'
definitions, independent of specnet's importer: the oracle for layouts no framework here runs.

Tensors are (channels, height, width), one example. Kernels are as the files hold them: Keras 1
``(out, in, rows, cols)``, Keras 2 ``(rows, cols, in, out)``. ``theano=True`` computes what
Theano's ``conv2d`` computes — a true convolution (the kernel flipped 180°) — with Keras 1's
Theano ``same`` rule: ``k // 2`` zeros on every side, then the first ``ceil(n / stride)``
outputs kept. TensorFlow's rule pads the odd row after the data instead.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tests.numpy_reference import _pad_amounts  # TensorFlow's same rule, written once


def conv_chw(
    x: np.ndarray,
    kernel_oihw: np.ndarray,
    bias: np.ndarray | None,
    padding: str = "valid",
    stride: tuple[int, int] = (1, 1),
    theano: bool = False,
) -> np.ndarray:
    _, in_c, kh, kw = kernel_oihw.shape
    assert x.shape[0] == in_c
    kernel = kernel_oihw[:, :, ::-1, ::-1] if theano else kernel_oihw
    _, h, w = x.shape
    if padding == "same":
        if theano:
            pads = [(kh // 2, kh // 2), (kw // 2, kw // 2)]
        else:
            pads = [_pad_amounts(h, kh, stride[0], "same"), _pad_amounts(w, kw, stride[1], "same")]
        x = np.pad(x, [(0, 0), *pads])
    windows = sliding_window_view(x, (kh, kw), axis=(1, 2))  # (in, H', W', kh, kw)
    windows = windows[:, :: stride[0], :: stride[1]]
    y = np.einsum("ihwab,oiab->ohw", windows, kernel)
    if padding == "same":  # Theano's 'half' keeps the first ceil(n / stride) outputs
        y = y[:, : math.ceil(h / stride[0]), : math.ceil(w / stride[1])]
    return y + (bias[:, None, None] if bias is not None else 0)


def max_pool_chw(x: np.ndarray, pool: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    windows = sliding_window_view(x, pool, axis=(1, 2))[:, :: stride[0], :: stride[1]]
    return windows.max(axis=(3, 4))


def dense(v: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    return v @ kernel + (bias if bias is not None else 0)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)
