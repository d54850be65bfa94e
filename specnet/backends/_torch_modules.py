"""PyTorch modules the live models use in place of stock ones: faster with the same semantics
(dropout, flatten), or training as Keras trains (batch normalisation's moving variance).

Imported only by the PyTorch backend when it builds a model. The generated source keeps the
stock ``nn`` classes: these change speed, not the function.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from typing import Any

import torch

from specnet._standalone import (
    average_pool_valid,
    crop,
    permute_channels_last,
    rescale,
    reshape_channels_last,
)


class FastDropout(torch.nn.Module):
    """Inverted dropout, like ``nn.Dropout``: zero each value with probability ``p`` while
    training and scale the rest by 1 / (1 − p); the identity in eval mode.

    ``nn.Dropout`` draws its mask with ``bernoulli_``, which on CPU costs about 2.6× a uniform
    draw compared against ``p`` (measured: 5.6 ms vs 2.2 ms for a 64×32×15×15 batch, a quarter of
    a seed-network training step). The mask here is ``rand_like(x) >= p``: the same distribution.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Any) -> Any:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))
        return x * keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _FlattenChannelsLast(torch.autograd.Function):
    """Flatten in (c, h, w) order whose gradient comes back channels-last, like its input.

    ``nn.Flatten`` hands back an NCHW-contiguous gradient; every backward op above it (dropout,
    max-pool, relu) then mixes memory formats and copies full-size activations (two copies of
    the 64×32×30×30 conv output per seed-network step, a quarter of its time). One small copy
    here keeps the whole backward pass channels-last.
    """

    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        ctx.shape = x.shape
        ctx.channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        return x.flatten(1)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> Any:
        grad = grad.reshape(ctx.shape)
        return grad.contiguous(memory_format=torch.channels_last) if ctx.channels_last else grad


class FastFlatten(torch.nn.Module):
    """``nn.Flatten()`` (start_dim 1, (c, h, w) order) that keeps the backward channels-last."""

    def forward(self, x: Any) -> Any:
        return _FlattenChannelsLast.apply(x)  # type: ignore[no-untyped-call]


class FlattenHWC(torch.nn.Module):
    """Flatten an NCHW image in Keras's (h, w, c) order: for the Flatten whose vector is the
    network's output (``specnet.shapes.output_flatten``); a Flatten before a Dense keeps PyTorch's
    order and the Dense's rows are reordered instead. On the channels-last activations the
    backend computes with, the permute makes the tensor contiguous: the flatten is a view."""

    def forward(self, x: Any) -> Any:
        return x.permute(0, 2, 3, 1).flatten(1)


class Exp(torch.nn.Module):
    """Keras's ``exponential`` activation (torch.nn has no module for it)."""

    def forward(self, x: Any) -> Any:
        return torch.exp(x)


class AvgPoolValid(torch.nn.Module):
    """Keras's average pooling with asymmetric ``same`` padding (see
    ``specnet._standalone.average_pool_valid``, which the generated source calls)."""

    def __init__(self, kernel_size: Any, stride: Any, pads: Any) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.pads = tuple(kernel_size), tuple(stride), tuple(pads)

    def forward(self, x: Any) -> Any:
        return average_pool_valid(x, self.kernel_size, self.stride, self.pads)


class Rescale(torch.nn.Module):
    """Keras's ``Rescaling`` (see ``specnet._standalone.rescale``)."""

    def __init__(self, scale: float, offset: float) -> None:
        super().__init__()
        self.scale, self.offset = scale, offset

    def forward(self, x: Any) -> Any:
        return rescale(x, self.scale, self.offset)


class Crop(torch.nn.Module):
    """Rows and columns cut off an NCHW image (see ``specnet._standalone.crop``): what is
    left of a transposed convolution's Keras cut after its symmetric ``padding``."""

    #: the network's memory format (set by the backend's build)
    memory_format: Any = torch.channels_last

    def __init__(self, top: int, bottom: int, left: int, right: int) -> None:
        super().__init__()
        self.cut = (top, bottom, left, right)

    def forward(self, x: Any) -> Any:
        # the slice is a strided view: made the network's format here, as the layers after expect
        return crop(x, *self.cut).contiguous(memory_format=self.memory_format)


class OneChannelConv2d(torch.nn.Conv2d):
    """``nn.Conv2d`` with one input channel, run on plain contiguous tensors.

    PyTorch 2.13's CPU convolution computes wrong values for some shapes when the input or the
    kernel has one channel in channels-last strides (a size-1 axis makes the two formats
    ambiguous): an output one column wide at strides (1, 2) or (1, 3), for instance, is garbage
    (found by tests/test_random_parity.py; reproduced with nn.Conv2d alone in
    tests/test_backends.py). With both in contiguous strides it computes right, so the kernel is
    kept contiguous (the backend's build) and the input — one channel, small — is copied to
    contiguous strides; the output goes back to the network's format for the layers after it."""

    #: the network's memory format (set by the backend's build)
    memory_format: Any = torch.channels_last

    def forward(self, x: Any) -> Any:
        x = x.clone(memory_format=torch.contiguous_format)
        return super().forward(x).contiguous(memory_format=self.memory_format)


class PermuteHWC(torch.nn.Module):
    """Keras's ``Permute`` (see ``specnet._standalone.permute_channels_last``)."""

    #: the network's memory format (set by the backend's build)
    memory_format: Any = torch.channels_last

    def __init__(self, dims: Any) -> None:
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: Any) -> Any:
        return permute_channels_last(x, self.dims).contiguous(memory_format=self.memory_format)


class ReshapeHWC(torch.nn.Module):
    """Keras's ``Reshape`` (see ``specnet._standalone.reshape_channels_last``)."""

    #: the network's memory format (set by the backend's build)
    memory_format: Any = torch.channels_last

    def __init__(self, shape: Any) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Any) -> Any:
        out = reshape_channels_last(x, self.shape)
        return out.contiguous(memory_format=self.memory_format) if out.dim() == 4 else out


class LayerNormChannels(torch.nn.LayerNorm):
    """``nn.LayerNorm`` over an NCHW image's channels, pixel by pixel (Keras's
    ``LayerNormalization`` on an image): the channels moved last and back, views on the
    channels-last activations the backend computes with (in a contiguous network, copied back
    to its format)."""

    #: the network's memory format (set by the backend's build)
    memory_format: Any = torch.channels_last

    def forward(self, x: Any) -> Any:
        out = super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return out.contiguous(memory_format=self.memory_format)


@dataclass(frozen=True)
class Step:
    """One spec layer in :class:`Graph`'s forward: merge its inputs (a merge layer, with
    ``dim`` for a concatenation), run its child modules in order, store the value under
    ``name`` and free the values nothing later reads."""

    name: str
    inputs: tuple[str, ...]
    merge: str | None
    dim: int
    children: tuple[str, ...]
    release: tuple[str, ...]


def _reduce(op: Any) -> Any:
    return lambda xs, dim: functools.reduce(op, xs)  # left to right, as Keras's merge layers


#: merge layer kind → its function, in Keras's order of operations (``a + b + c`` is
#: ``(a + b) + c``; Average sums first, then divides by the count)
MERGES: dict[str, Any] = {
    "Add": _reduce(operator.add),
    "Subtract": lambda xs, dim: xs[0] - xs[1],
    "Multiply": _reduce(operator.mul),
    "Average": lambda xs, dim: functools.reduce(operator.add, xs) / len(xs),
    "Maximum": _reduce(torch.maximum),
    "Concatenate": lambda xs, dim: torch.cat(xs, dim=dim),
}


class Graph(torch.nn.Module):
    """A spec's network: its modules registered flat under their names (state_dict keys read
    ``conv2d.weight``, as an ``nn.Sequential`` of the same names would), and a forward that walks
    the spec's layers over a dict of named values, freeing each as soon as nothing reads it."""

    def __init__(
        self,
        children: dict[str, torch.nn.Module],
        steps: list[Step],
        memory_format: Any = torch.channels_last,
    ) -> None:
        super().__init__()
        for name, child in children.items():
            self.add_module(name, child)
        self.steps = steps
        #: the format the network's activations are in (``specnet.backends.torch.memory_format``)
        self.memory_format = memory_format

    def forward(self, x: Any) -> Any:
        return self._run(x, keep=False)[self.steps[-1].name]

    def trace(self, x: Any) -> dict[str, Any]:
        """Every layer's value (NCHW), keyed by layer name: where two runtimes part ways."""
        return self._run(x, keep=True)

    def _run(self, x: Any, keep: bool) -> dict[str, Any]:
        if x.dim() == 4 and self.memory_format is torch.contiguous_format:
            x = x.contiguous()  # a channels-last view of an NHWC batch: copied once, here
        values = {"input": x}
        for step in self.steps:
            args = [values[name] for name in step.inputs]
            x = MERGES[step.merge](args, step.dim) if step.merge else args[0]
            for child in step.children:
                x = getattr(self, child)(x)
            values[step.name] = x
            if not keep:
                for name in step.release:
                    del values[name]
        return values


class _KerasBatchNorm:
    """BatchNorm that trains as Keras's does: the moving variance follows the batch's *biased*
    variance (PyTorch's ``running_var`` follows the unbiased one, N / (N − 1) larger), with
    ``momentum`` in PyTorch's sense (1 − Keras's). Normalisation, inference and the state_dict
    are ``nn.BatchNorm``'s, so a file saved from it loads into the stock class."""

    def forward(self: Any, x: Any) -> Any:
        if not self.training:
            return super().forward(x)  # type: ignore[misc]
        dims = [0, *range(2, x.dim())]
        with torch.no_grad():
            mean = x.mean(dims)
            variance = x.var(dims, correction=0)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(variance, self.momentum)
            self.num_batches_tracked.add_(1)
        return torch.nn.functional.batch_norm(
            x, None, None, self.weight, self.bias, True, 0.0, self.eps
        )


class KerasBatchNorm2d(_KerasBatchNorm, torch.nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with Keras's moving-variance update (see :class:`_KerasBatchNorm`)."""


class KerasBatchNorm1d(_KerasBatchNorm, torch.nn.BatchNorm1d):
    """``nn.BatchNorm1d`` with Keras's moving-variance update (see :class:`_KerasBatchNorm`)."""


# stock nn class name → faster module with the same constructor and semantics; FlattenHWC,
# LayerNormChannels, Exp, AvgPoolValid, Rescale, ReshapeHWC, PermuteHWC and Crop are no stock
# class: the generated source writes nn.Flatten() / nn.LayerNorm() on x.permute(0, 2, 3, 1)
# (torch._CHANNELS_LAST), and calls torch.exp or specnet's functions (torch._FUNCTIONS)
REPLACEMENTS: dict[str, type[torch.nn.Module]] = {
    "BatchNorm2d": KerasBatchNorm2d,
    "BatchNorm1d": KerasBatchNorm1d,
    "Dropout": FastDropout,
    "Flatten": FastFlatten,
    "FlattenHWC": FlattenHWC,
    "Exp": Exp,
    "AvgPoolValid": AvgPoolValid,
    "Rescale": Rescale,
    "ReshapeHWC": ReshapeHWC,
    "PermuteHWC": PermuteHWC,
    "Crop": Crop,
    "LayerNormChannels": LayerNormChannels,
}
