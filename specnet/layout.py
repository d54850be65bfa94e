"""Keras's channels-last axes → the NCHW axes of PyTorch and ONNX, framework-free.

specnet's shapes are Keras's without the batch: ``(height, width, channels)`` for an image,
``(units,)`` for a vector. PyTorch and ONNX compute on ``(N, C, H, W)`` (PyTorch keeps the memory
channels-last, which does not change the axes it indexes by). Every layer kind that carries an
axis (Concatenate today) translates it here, once.
"""

from __future__ import annotations

__all__ = ["NCHW_OF_NHWC", "nchw_axis"]

#: NHWC axis (batch included) → the NCHW axis holding the same data
NCHW_OF_NHWC = {0: 0, 1: 2, 2: 3, 3: 1}


def nchw_axis(axis: int, rank: int) -> int:
    """The NCHW axis (batch = 0) of the batch-free, 0-based ``axis`` of a ``rank``-D shape."""
    if rank == 3:
        return NCHW_OF_NHWC[axis + 1]
    return axis + 1  # a vector (or any non-image) keeps its axes
