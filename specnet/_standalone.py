"""Code that generated model files carry verbatim (see ``emit_source``): it must need nothing
but the standard library and NumPy (and PyTorch, imported inside, for what only the PyTorch source
carries), and it is also what specnet itself uses, so the copy in every generated file is the
tested one."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any


def average_pool_valid(
    x: Any, kernel_size: tuple[int, int], stride: tuple[int, int], pads: tuple[int, int, int, int]
) -> Any:
    """Keras's ``AveragePooling2D(padding="same")`` where its padding is asymmetric (which
    ``nn.AvgPool2d`` cannot pad): zero-pad by ``pads`` (left, right, top, bottom), sum each
    window, divide by the number of its elements that are not padding."""
    import torch.nn.functional as F

    ones = x.new_ones((1, 1, *x.shape[2:]))
    total = F.avg_pool2d(F.pad(x, pads), kernel_size, stride)
    share = F.avg_pool2d(F.pad(ones, pads), kernel_size, stride)  # valid fraction per window
    return total / share


def rescale(x: Any, scale: float, offset: float) -> Any:
    """Keras's ``Rescaling``: ``x · scale + offset``, multiplied first as Keras does."""
    return x * scale + offset


def crop(x: Any, top: int, bottom: int, left: int, right: int) -> Any:
    """An NCHW tensor without its first ``top`` and last ``bottom`` rows, its first ``left``
    and last ``right`` columns (a slice: ONNX exports it as Slice)."""
    return x[:, :, top : x.shape[2] - bottom, left : x.shape[3] - right]


def reshape_channels_last(x: Any, shape: tuple[int, ...]) -> Any:
    """Keras's ``Reshape`` on an NCHW tensor: its values in Keras's (h, w, c) order laid out as
    ``shape`` (without the batch); an image comes back NCHW."""
    if x.dim() == 4:
        x = x.permute(0, 2, 3, 1)
    x = x.reshape(x.shape[0], *shape)
    return x.permute(0, 3, 1, 2) if len(shape) == 3 else x


def permute_channels_last(x: Any, dims: tuple[int, int, int]) -> Any:
    """Keras's ``Permute`` on an NCHW tensor: the axes of its (h, w, c) view reordered as
    ``dims`` (1-based, after the batch), the result an NCHW tensor again."""
    x = x.permute(0, 2, 3, 1).permute(0, *dims)
    return x.permute(0, 3, 1, 2)


def read_safetensors(path: str | Path) -> dict[str, Any]:
    """Read a safetensors file into NumPy arrays: an 8-byte little-endian header length, a JSON
    header (name → dtype, shape, byte offsets), then the raw little-endian data. No code runs."""
    import numpy as np

    dtypes = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4"}
    raw = Path(path).read_bytes()
    if len(raw) < 8:
        raise ValueError("file too short")
    (length,) = struct.unpack("<Q", raw[:8])
    if length > len(raw) - 8:
        raise ValueError("header longer than the file")
    header = json.loads(raw[8 : 8 + length])
    body = memoryview(raw)[8 + length :]
    arrays = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        array = np.frombuffer(body[start:end], dtype=np.dtype(dtypes[info["dtype"]]))
        arrays[key] = array.reshape(info["shape"]).copy()
    return arrays
