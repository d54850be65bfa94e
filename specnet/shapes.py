"""Static shape inference: a validated :class:`~specnet.spec.Spec` → a :class:`Plan`.

Pure Python, no framework imported. Shapes exclude the batch axis: ``(height, width, channels)``
for images, ``(units,)`` for vectors. The arithmetic is Keras's:

* ``valid``: ``out = (in - k_eff) // stride + 1`` with ``k_eff = dilation · (k - 1) + 1``;
* ``same``:  ``out = ceil(in / stride)`` (Keras pads the extra row/column at the bottom/right).

FLOPs are forward FLOPs per example, a multiply-add counted as 2 (a training step costs about 3×).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from specnet.errors import Issue, ShapeError, brief
from specnet.spec import (
    LAYER_KINDS,
    Activation,
    Add,
    Augmentation,
    Average,
    AveragePooling2D,
    BatchNormalization,
    Concatenate,
    Conv2D,
    Conv2DTranspose,
    Dense,
    DepthwiseConv2D,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    LayerBase,
    LayerNormalization,
    Maximum,
    MaxPool,
    Multiply,
    Permute,
    ReLU,
    Rescaling,
    Reshape,
    SeparableConv2D,
    Softmax,
    Spec,
    Subtract,
    UpSampling2D,
    ZeroPadding2D,
)

__all__ = [
    "WEIGHTS",
    "Limits",
    "Plan",
    "PlanLayer",
    "Shape",
    "advice",
    "channels_last_guess",
    "class_names_of",
    "concat_axis",
    "ends_in_softmax",
    "flatten_folds",
    "infer",
    "logits_plan",
    "out_channels",
    "reshape_target",
    "same_padding",
    "summary_text",
    "transpose_crops",
]

Shape = tuple[int, ...]
BYTES_PER_VALUE = 4  # float32


@dataclass(frozen=True)
class Limits:
    """Refuse networks a laptop cannot hold, before any framework allocates memory.

    ``max_params``: total parameters (100 M ≈ 400 MB of float32 weights, ~1.6 GB with Adam).
    ``max_activation_bytes``: forward activations of one training batch, which backprop keeps.
    """

    max_params: int = 100_000_000
    max_activation_bytes: int = 4 << 30


@dataclass(frozen=True)
class PlanLayer:
    """One layer after inference: a node of the graph, in the spec's (topological) order.

    ``inputs`` names the values it reads (earlier layers, or ``input``), ``input_shapes`` their
    shapes; ``input_shape`` is the first, the only one of every layer but a merge."""

    index: int
    name: str
    kind: str
    layer: LayerBase
    inputs: tuple[str, ...]
    input_shapes: tuple[Shape, ...]
    output_shape: Shape
    params: int  # every weight, as Keras's count_params counts (moving statistics included)
    flops: int
    #: its weights: Keras's variable name → (shape, trainable); see :data:`WEIGHTS`
    weights: dict[str, tuple[Shape, bool]] = field(default_factory=dict)

    @property
    def trainable_params(self) -> int:
        return sum(math.prod(shape) for shape, trainable in self.weights.values() if trainable)

    @property
    def input_shape(self) -> Shape:
        return self.input_shapes[0]


@dataclass(frozen=True)
class Plan:
    """Every layer's name, kind, output shape, parameter count and FLOPs; and totals."""

    spec: Spec
    input_shape: Shape
    layers: tuple[PlanLayer, ...]
    limits: Limits = field(default_factory=Limits)
    #: the leading augmentation layers: run by the training data pipeline, never built (the
    #: network reads ``input`` where the spec names one of them)
    augmentation: tuple[PlanLayer, ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def output(self) -> PlanLayer:
        """The node whose value is the network's output: the last one."""
        return self.layers[-1]

    @property
    def output_shape(self) -> Shape:
        return self.output.output_shape

    @property
    def is_chain(self) -> bool:
        """Whether every layer reads the one above: a Keras ``Sequential``."""
        above = "input"
        for layer in self.layers:
            if layer.inputs != (above,):
                return False
            above = layer.name
        return True

    def by_name(self) -> dict[str, PlanLayer]:
        """Layer name → its step (the input has none)."""
        return {step.name: step for step in self.layers}

    def consumers(self) -> dict[str, list[PlanLayer]]:
        """Value name (``input`` and every layer) → the layers that read it, in order."""
        readers: dict[str, list[PlanLayer]] = {"input": [], **{s.name: [] for s in self.layers}}
        for step in self.layers:
            for name in dict.fromkeys(step.inputs):
                readers[name].append(step)
        return readers

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def trainable_params(self) -> int:
        return sum(layer.trainable_params for layer in self.layers)

    @property
    def flops(self) -> int:
        return sum(layer.flops for layer in self.layers)

    def activation_bytes(self, batch_size: int | None = None) -> int:
        """Bytes of float32 activations one batch keeps for backprop (input included)."""
        batch = batch_size or self.spec.train.batch_size
        values = math.prod(self.input_shape) + sum(math.prod(s.output_shape) for s in self.layers)
        return values * batch * BYTES_PER_VALUE

    def to_dict(self) -> dict[str, Any]:
        """The ``specnet summary --json`` document."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "augmentation": [
                {"name": layer.name, "type": layer.kind, "output_shape": list(layer.output_shape)}
                for layer in self.augmentation
            ],
            "layers": [
                {
                    "name": layer.name,
                    "type": layer.kind,
                    "inputs": list(layer.inputs),
                    "output_shape": list(layer.output_shape),
                    "params": layer.params,
                    "flops": layer.flops,
                }
                for layer in self.layers
            ],
            "output_shape": list(self.output_shape),
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "flops": self.flops,
        }


class _Impossible(Exception):
    """Raised by a shape rule; ``infer`` turns it into a located :class:`Issue`."""

    def __init__(self, message: str, field: str = "", hint: str = "") -> None:
        super().__init__(message)
        self.message, self.field, self.hint = message, field, hint


Rule = Callable[[Any, tuple[Shape, ...]], tuple[Shape, int]]  # → (output shape, FLOPs)
#: a layer's weights: Keras's variable name (the canonical key's suffix) → (shape, trainable)
WeightShapes = dict[str, tuple["Shape", bool]]


def _show(shape: Shape) -> str:
    return "×".join(str(n) for n in shape)


def _image(shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise _Impossible(
            "needs an image (height, width, channels) but receives a vector of "
            f"{shape[0]:,} values",
            hint="put it before the Flatten",
        )
    return shape[0], shape[1], shape[2]


def _window(size: int, window: int, stride: int, padding: str, what: str, shape: Shape) -> int:
    if padding == "same":
        return -(-size // stride)
    if window > size:
        raise _Impossible(
            f"input {_show(shape)} is smaller than {what}: the output would be empty",
            hint='use padding: "same", a smaller window, or drop a pooling layer before this one',
        )
    return (size - window) // stride + 1


def same_padding(size: int, window: int, stride: int) -> tuple[int, int]:
    """Keras/TensorFlow ``same`` padding along one axis: (before, after). The odd row or column
    goes after (bottom/right); PyTorch's symmetric ``padding=`` cannot express that."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


Convolution = Conv2D | DepthwiseConv2D | SeparableConv2D


def out_channels(layer: Convolution, channels: int) -> int:
    """A convolution's output channels: ``filters``, or ``channels · depth_multiplier``."""
    if isinstance(layer, DepthwiseConv2D):
        return channels * layer.depth_multiplier
    return layer.filters


def _conv2d(layer: Convolution, shapes: tuple[Shape, ...]) -> tuple[Shape, int]:
    """Conv2D, DepthwiseConv2D, SeparableConv2D (the depthwise step, then a 1×1 one)."""
    (shape,) = shapes
    h, w, c = _image(shape)
    filters = out_channels(layer, c)
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.strides, layer.dilation_rate
    if max(sh, sw) > 1 and max(dh, dw) > 1:
        raise _Impossible(
            "strides > 1 cannot be combined with dilation_rate > 1 (Keras refuses it too)",
            "dilation_rate",
        )
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    size = f"kernel_size {kh}×{kw}" + (f" (dilated to {eh}×{ew})" if (eh, ew) != (kh, kw) else "")
    oh = _window(h, eh, sh, layer.padding, size, shape)
    ow = _window(w, ew, sw, layer.padding, size, shape)
    bias = filters if layer.use_bias else 0
    if isinstance(layer, SeparableConv2D):
        middle = c * layer.depth_multiplier
        return (oh, ow, filters), oh * ow * (2 * kh * kw * middle + 2 * middle * filters + bias)
    reads = c if isinstance(layer, Conv2D) else 1  # input channels per output one
    return (oh, ow, filters), oh * ow * (2 * kh * kw * reads * filters + bias)


def _transpose_length(size: int, kernel: int, stride: int, padding: str) -> int:
    """Keras's ``deconv_output_length`` without output_padding."""
    return size * stride + (max(kernel - stride, 0) if padding == "valid" else 0)


def transpose_crops(layer: Conv2DTranspose, shape: Shape) -> tuple[tuple[int, int], ...]:
    """Per axis (rows, columns): what to cut from the start and the end of the full transposed
    convolution (``(in − 1) · stride + kernel`` long) to get Keras's output. TensorFlow's is the
    gradient of a ``same``/``valid`` convolution of the output's size: it cuts that
    convolution's padding, the odd one at the end. A negative end is zeros (plus the bias) to
    add: a kernel smaller than its stride leaves the last rows untouched."""
    crops = []
    for size, kernel, stride in zip(shape[:2], layer.kernel_size, layer.strides, strict=True):
        out = _transpose_length(size, kernel, stride, layer.padding)
        full = (size - 1) * stride + kernel
        before = (max(full - out, 0) // 2) if layer.padding == "same" else 0
        crops.append((before, full - before - out))
    return tuple(crops)


def _conv_transpose(layer: Conv2DTranspose, shapes: tuple[Shape, ...]) -> tuple[Shape, int]:
    (shape,) = shapes
    h, w, c = _image(shape)
    (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
    oh = _transpose_length(h, kh, sh, layer.padding)
    ow = _transpose_length(w, kw, sw, layer.padding)
    bias = oh * ow * layer.filters if layer.use_bias else 0
    return (oh, ow, layer.filters), h * w * 2 * kh * kw * c * layer.filters + bias


def _up_sampling(layer: UpSampling2D, shapes: tuple[Shape, ...]) -> tuple[Shape, int]:
    (shape,) = shapes
    h, w, c = _image(shape)
    out = (h * layer.size[0], w * layer.size[1], c)
    # bilinear: two lerps per value along each axis (3 FLOPs each); nearest copies
    return out, (6 * math.prod(out) if layer.interpolation == "bilinear" else 0)


def _layer_norm(layer: LayerNormalization, shapes: tuple[Shape, ...]) -> tuple[Shape, int]:
    (shape,) = shapes
    if layer.center and not layer.scale:
        raise _Impossible(
            "scale: false with center: true is not supported yet (PyTorch's LayerNorm has a "
            "bias only alongside its weight)",
            "scale",
            "keep the scale, or set center: false too",
        )
    # the mean, the variance (3 per value) and the normalisation with gamma and beta (4)
    return shape, 7 * math.prod(shape)


def reshape_target(layer: Reshape, shape: Shape) -> Shape:
    """``target_shape`` with its -1 filled in; refused unless it holds exactly the values of
    ``shape`` and is a vector or an image (the two ranks specnet's layers take)."""
    target = layer.target_shape
    count = math.prod(shape)
    if len(target) not in (1, 3):
        raise _Impossible(
            f"target_shape {list(target)} has {len(target)} axes: specnet's layers take "
            "vectors [units] and images [height, width, channels]",
            "target_shape",
        )
    if target.count(-1) > 1 or 0 in target:
        raise _Impossible(
            f"target_shape {list(target)}: each extent must be positive, one may be -1",
            "target_shape",
        )
    known = math.prod(n for n in target if n != -1)
    if -1 in target:
        if count % known:
            raise _Impossible(
                f"cannot lay out the {count:,} values of {_show(shape)} as {list(target)}: "
                f"{count:,} is not a multiple of {known:,}",
                "target_shape",
            )
        target = tuple(count // known if n == -1 else n for n in target)
    elif known != count:
        raise _Impossible(
            f"target_shape {list(target)} holds {known:,} values but its input "
            f"{_show(shape)} has {count:,}",
            "target_shape",
            f"the extents must multiply to {count:,}",
        )
    return target


def _reshape(layer: Reshape, shapes: tuple[Shape, ...]) -> tuple[Shape, int]:
    (shape,) = shapes
    return reshape_target(layer, shape), 0


def _permute(layer: Permute, shapes: tuple[Shape, ...]) -> tuple[Shape, int]:
    image = _image(shapes[0])
    return tuple(image[axis - 1] for axis in layer.dims), 0


def _max_pool(layer: MaxPool | AveragePooling2D, shapes: tuple[Shape, ...]) -> tuple[Shape, int]:
    (shape,) = shapes
    h, w, c = _image(shape)
    ph, pw = layer.pool_size
    sh, sw = layer.strides or layer.pool_size
    oh = _window(h, ph, sh, layer.padding, f"pool_size {ph}×{pw}", shape)
    ow = _window(w, pw, sw, layer.padding, f"pool_size {ph}×{pw}", shape)
    return (oh, ow, c), oh * ow * c * ph * pw


def _flatten(layer: Flatten, shapes: tuple[Shape, ...]) -> tuple[Shape, int]:
    (shape,) = shapes
    return (math.prod(shape),), 0


def _dense(layer: Dense, shapes: tuple[Shape, ...]) -> tuple[Shape, int]:
    (shape,) = shapes
    if len(shape) != 1:
        raise _Impossible(
            f"needs a flat vector but receives {_show(shape)}",
            hint="add `- type: Flatten` before this layer",
        )
    bias = layer.units if layer.use_bias else 0
    return (layer.units,), 2 * shape[0] * layer.units + bias


def _elementwise(layer: LayerBase, shapes: tuple[Shape, ...]) -> tuple[Shape, int]:
    (shape,) = shapes
    return shape, math.prod(shape)


def _identity(layer: LayerBase, shapes: tuple[Shape, ...]) -> tuple[Shape, int]:
    (shape,) = shapes
    return shape, 0


def _batch_norm(layer: BatchNormalization, shapes: tuple[Shape, ...]) -> tuple[Shape, int]:
    (shape,) = shapes
    if layer.center != layer.scale:
        raise _Impossible(
            "center and scale must be both true or both false: not supported yet (PyTorch's "
            "BatchNorm has one `affine` switch for both)",
            "center",
        )
    return shape, 2 * math.prod(shape)  # at inference: one multiply-add per value


def _zero_padding(layer: ZeroPadding2D, shapes: tuple[Shape, ...]) -> tuple[Shape, int]:
    (shape,) = shapes
    h, w, c = _image(shape)
    (top, bottom), (left, right) = layer.padding
    return (h + top + bottom, w + left + right, c), 0


def _rescaling(layer: Rescaling, shapes: tuple[Shape, ...]) -> tuple[Shape, int]:
    (shape,) = shapes
    return shape, 2 * math.prod(shape)


def _global_pool(
    layer: GlobalAveragePooling2D | GlobalMaxPooling2D, shapes: tuple[Shape, ...]
) -> tuple[Shape, int]:
    (shape,) = shapes
    h, w, c = _image(shape)
    return ((1, 1, c) if layer.keepdims else (c,)), h * w * c


def _same_shapes(layer: LayerBase, shapes: tuple[Shape, ...]) -> Shape:
    names = layer.inputs or ()
    for shape in shapes[1:]:
        if shape != shapes[0]:  # Keras would broadcast some of these; a spec says what it means
            raise _Impossible(
                f"{layer.KIND} needs equal shapes, got {shapes[0]} and {shape} "
                f"(from {names[0]!r} and {names[shapes.index(shape)]!r})",
                "inputs",
                "make the branches agree (strides, padding, filters) or project one with a "
                "1×1 Conv2D",
            )
    return shapes[0]


def _merge(layer: LayerBase, shapes: tuple[Shape, ...]) -> tuple[Shape, int]:
    """Add, Subtract, Multiply, Average, Maximum: one operation per value per extra input."""
    shape = _same_shapes(layer, shapes)
    extra = len(shapes) - 1 + isinstance(layer, Average)  # the mean's division
    return shape, extra * math.prod(shape)


def concat_axis(layer: Concatenate, rank: int) -> int:
    """The 0-based axis of the (batch-free) shape a Concatenate joins along, from Keras's axis,
    which counts the batch: ``-1`` is the last, ``1`` the first axis after the batch."""
    axis = layer.axis
    if axis == 0 or not -rank <= axis <= rank:
        raise _Impossible(
            f"axis {axis} is not an axis of its {rank}-D inputs (0 is the batch)",
            "axis",
            f"use -1 (the last axis) or 1 … {rank}",
        )
    return axis - 1 if axis > 0 else rank + axis


def _concatenate(layer: Concatenate, shapes: tuple[Shape, ...]) -> tuple[Shape, int]:
    names = layer.inputs or ()
    ranks = {len(shape) for shape in shapes}
    if len(ranks) > 1:
        raise _Impossible(
            f"Concatenate needs inputs of one rank, got {' and '.join(map(str, shapes))}",
            "inputs",
            "flatten the images first, or concatenate images only",
        )
    axis = concat_axis(layer, len(shapes[0]))
    rest = [shape[:axis] + shape[axis + 1 :] for shape in shapes]
    for i, other in enumerate(rest[1:], 1):
        if other != rest[0]:
            raise _Impossible(
                f"Concatenate on axis {layer.axis} needs the other axes equal, got "
                f"{shapes[0]} and {shapes[i]} (from {names[0]!r} and {names[i]!r})",
                "inputs",
                "make the branches agree on every other axis (strides, padding, pooling)",
            )
    joined = sum(shape[axis] for shape in shapes)
    return (*shapes[0][:axis], joined, *shapes[0][axis + 1 :]), 0


RULES: dict[type[LayerBase], Rule] = {
    Conv2D: _conv2d,
    Activation: _elementwise,
    MaxPool: _max_pool,
    AveragePooling2D: _max_pool,
    Dropout: _identity,
    Flatten: _flatten,
    Dense: _dense,
    Softmax: _elementwise,
    DepthwiseConv2D: _conv2d,
    ReLU: _elementwise,
    BatchNormalization: _batch_norm,
    ZeroPadding2D: _zero_padding,
    Rescaling: _rescaling,
    GlobalAveragePooling2D: _global_pool,
    GlobalMaxPooling2D: _global_pool,
    Add: _merge,
    Subtract: _merge,
    Multiply: _merge,
    Average: _merge,
    Maximum: _merge,
    Concatenate: _concatenate,
    SeparableConv2D: _conv2d,
    Conv2DTranspose: _conv_transpose,
    UpSampling2D: _up_sampling,
    LayerNormalization: _layer_norm,
    Reshape: _reshape,
    Permute: _permute,
}
assert set(RULES) == set(LAYER_KINDS), "every layer kind needs a shape rule"


def _conv2d_weights(layer: Conv2D, shapes: tuple[Shape, ...]) -> WeightShapes:
    (kh, kw), c = layer.kernel_size, shapes[0][-1]
    weights: WeightShapes = {"kernel": ((kh, kw, c, layer.filters), True)}
    if layer.use_bias:
        weights["bias"] = ((layer.filters,), True)
    return weights


def _depthwise_weights(layer: DepthwiseConv2D, shapes: tuple[Shape, ...]) -> WeightShapes:
    (kh, kw), c, m = layer.kernel_size, shapes[0][-1], layer.depth_multiplier
    weights: WeightShapes = {"depthwise_kernel": ((kh, kw, c, m), True)}
    if layer.use_bias:
        weights["bias"] = ((c * m,), True)
    return weights


def _separable_weights(layer: SeparableConv2D, shapes: tuple[Shape, ...]) -> WeightShapes:
    (kh, kw), c, m = layer.kernel_size, shapes[0][-1], layer.depth_multiplier
    weights: WeightShapes = {
        "depthwise_kernel": ((kh, kw, c, m), True),
        "pointwise_kernel": ((1, 1, c * m, layer.filters), True),
    }
    if layer.use_bias:
        weights["bias"] = ((layer.filters,), True)
    return weights


def _transpose_weights(layer: Conv2DTranspose, shapes: tuple[Shape, ...]) -> WeightShapes:
    (kh, kw), c = layer.kernel_size, shapes[0][-1]
    weights: WeightShapes = {"kernel": ((kh, kw, layer.filters, c), True)}  # out before in
    if layer.use_bias:
        weights["bias"] = ((layer.filters,), True)
    return weights


def _layer_norm_weights(
    layer: LayerNormalization | BatchNormalization, shapes: tuple[Shape, ...]
) -> WeightShapes:
    """gamma and beta, per channel (the last axis), where ``scale`` and ``center`` ask."""
    c = (shapes[0][-1],)
    weights: WeightShapes = {}
    if layer.scale:
        weights["gamma"] = (c, True)
    if layer.center:
        weights["beta"] = (c, True)
    return weights


def _dense_weights(layer: Dense, shapes: tuple[Shape, ...]) -> WeightShapes:
    weights: WeightShapes = {"kernel": ((shapes[0][0], layer.units), True)}
    if layer.use_bias:
        weights["bias"] = ((layer.units,), True)
    return weights


def _batch_norm_weights(layer: BatchNormalization, shapes: tuple[Shape, ...]) -> WeightShapes:
    """LayerNormalization's, then the moving statistics (not trained: non-trainable)."""
    c = (shapes[0][-1],)
    weights = _layer_norm_weights(layer, shapes)
    weights["moving_mean"] = weights["moving_variance"] = (c, False)
    return weights


def _none(layer: LayerBase, shapes: tuple[Shape, ...]) -> WeightShapes:
    return {}


#: each kind's weights, in Keras's variable order and with Keras's variable names (the
#: canonical keys are ``<layer name>.<variable name>``). The one source of parameter counts:
#: the summary, the weights file and every backend's converter read it.
WEIGHTS: dict[type[LayerBase], Callable[[Any, tuple[Shape, ...]], WeightShapes]] = {
    Conv2D: _conv2d_weights,
    Activation: _none,
    MaxPool: _none,
    AveragePooling2D: _none,
    Dropout: _none,
    Flatten: _none,
    Dense: _dense_weights,
    Softmax: _none,
    DepthwiseConv2D: _depthwise_weights,
    ReLU: _none,
    BatchNormalization: _batch_norm_weights,
    ZeroPadding2D: _none,
    Rescaling: _none,
    GlobalAveragePooling2D: _none,
    GlobalMaxPooling2D: _none,
    Add: _none,
    Subtract: _none,
    Multiply: _none,
    Average: _none,
    Maximum: _none,
    Concatenate: _none,
    SeparableConv2D: _separable_weights,
    Conv2DTranspose: _transpose_weights,
    UpSampling2D: _none,
    LayerNormalization: _layer_norm_weights,
    Reshape: _none,
    Permute: _none,
}


def infer(spec: Spec, limits: Limits | None = None) -> Plan:
    """Infer every layer's output shape, parameters and FLOPs; refuse impossible or huge nets."""
    limits = limits or Limits()
    values: dict[str, Shape] = {"input": tuple(spec.input_shape)}
    planned: list[PlanLayer] = []
    augmented: list[PlanLayer] = []
    above = "input"
    for i, layer in enumerate(spec.layers):
        assert layer.name is not None  # named by the loader
        inputs = layer.inputs or (above,)  # resolved by the loader; a hand-made Spec may not be
        if isinstance(layer, Augmentation):  # the pipeline's, before the network: its input
            shape = tuple(spec.input_shape)
            augmented.append(
                PlanLayer(i, layer.name, layer.KIND, layer, ("input",), (shape,), shape, 0, 0, {})
            )
            above = layer.name
            continue
        inputs = tuple("input" if name in {a.name for a in augmented} else name for name in inputs)
        shapes = tuple(values[name] for name in inputs)
        try:
            out, flops = RULES[type(layer)](layer, shapes)
        except _Impossible as exc:
            path = ("layers", i, exc.field) if exc.field else ("layers", i)
            kind = "" if exc.field == "inputs" else f" ({layer.KIND})"  # the message names it
            message = f"layer {layer.name!r}{kind}: {exc.message}"
            hint = exc.hint
            guess = channels_last_guess(spec.input_shape)
            if guess is not None and exc.field != "inputs":  # a Theano / PyTorch habit
                hint = (
                    f"input_shape {list(spec.input_shape)} looks channels-first; specnet "
                    f"(like Keras) wants [height, width, channels]: {list(guess)}"
                )
            raise ShapeError([spec.issue(path, message, hint)]) from None
        weights = WEIGHTS[type(layer)](layer, shapes)
        params = sum(math.prod(shape) for shape, _ in weights.values())
        planned.append(
            PlanLayer(i, layer.name, layer.KIND, layer, inputs, shapes, out, params, flops, weights)
        )
        values[layer.name] = out
        above = layer.name
    plan = Plan(spec, tuple(spec.input_shape), tuple(planned), limits, tuple(augmented))
    issues = _check_limits(plan, limits) + _check_class_names(plan)
    if issues:
        raise ShapeError(sorted(issues, key=lambda issue: (issue.line, issue.column)))
    return plan


def channels_last_guess(shape: Shape) -> Shape | None:
    """``(c, h, w)`` → ``(h, w, c)`` when ``shape`` looks channels-first (NCHW habits from Keras 1
    on Theano or PyTorch): a first axis of 1, 3 or 4 channels, a last one that is not."""
    if len(shape) != 3:
        return None
    c, h, w = shape
    if c in (1, 3, 4) and h >= 5 and w >= 5:  # (a width of 5 or more is no channel count)
        return (h, w, c)
    return None


def advice(spec: Spec) -> list[Issue]:
    """Things that validate but are probably not what the author meant (printed as warnings)."""
    guess = channels_last_guess(spec.input_shape)
    if guess is None:
        return []
    h, w, c = spec.input_shape
    return [
        spec.issue(
            ("input_shape",),
            f"warning: {list(spec.input_shape)} reads as {h} rows × {w} columns × {c} channels, "
            "which looks like a channels-first shape (C, H, W)",
            f"specnet, like Keras, wants [height, width, channels]: write {list(guess)}",
        )
    ]


def _is_softmax(layer: LayerBase) -> bool:
    return isinstance(layer, Softmax) or getattr(layer, "activation", None) == "softmax"


def ends_in_softmax(plan: Plan) -> bool:
    """Whether the network's last operation is a softmax (a layer, or a fused activation)."""
    return _is_softmax(plan.layers[-1].layer)


#: kinds that keep a vector's order meaningful to a Dense that reads it: element-wise (or, for
#: Softmax, equivariant under a permutation of the units)
_ORDER_BLIND = (Dropout, Activation, Softmax)


def flatten_folds(plan: Plan) -> tuple[dict[str, Shape], frozenset[str]]:
    """Where a Flatten's order needs repairing on the NCHW backends (PyTorch, ONNX).

    Keras flattens an image in (h, w, c) order, NCHW backends in (c, h, w) order. Where every
    reader of the vector, through Dropout, Activation and Softmax, is a Dense, the order does not
    matter as long as each Dense's rows are reordered to match (``specnet.backends.torch.
    conversions``): the first value maps each such Dense to the (h, w, c) image its input was
    flattened from. Anywhere else (the vector is the output, or is merged, or concatenated) no
    reordering of rows repairs it: the second value names those Flattens, which transpose to
    (h, w, c) before flattening. A chain therefore keeps exactly the graph and weights it had.
    """
    readers = plan.consumers()
    folds: dict[str, Shape] = {}
    in_order: set[str] = set()
    for step in plan.layers:
        if not isinstance(step.layer, Flatten) or len(step.input_shape) != 3:
            continue
        denses, frontier, foldable = [], [step.name], True
        while frontier and foldable:
            value = frontier.pop()
            foldable = value != plan.output.name
            for reader in readers[value]:
                if isinstance(reader.layer, Dense):
                    denses.append(reader.name)
                elif isinstance(reader.layer, _ORDER_BLIND):
                    frontier.append(reader.name)
                else:
                    foldable = False
        if foldable:
            folds.update(dict.fromkeys(denses, step.input_shape))
        else:
            in_order.add(step.name)
    return folds, frozenset(in_order)


def logits_plan(plan: Plan) -> Plan:
    """The same network without its final softmax or sigmoid: what parity compares, what a loss
    on logits trains, and what predict turns into probabilities in NumPy. Only the output node
    changes (its shapes, names and weights stay); a plan that already ends in logits is returned
    as it is."""
    last = plan.output
    squashes = _is_softmax(last.layer) or getattr(last.layer, "activation", None) == "sigmoid"
    if not squashes:
        return plan
    if isinstance(last.layer, Softmax | Activation):
        linear: LayerBase = Activation(
            type="Activation", activation="linear", name=last.name, inputs=last.inputs
        )
    else:
        linear = last.layer.model_copy(update={"activation": None})
    spec = plan.spec.model_copy(update={"layers": [*plan.spec.layers[:-1], linear]})
    node = PlanLayer(
        last.index, last.name, linear.KIND, linear, last.inputs, last.input_shapes,
        last.output_shape, last.params, last.flops, last.weights,
    )  # fmt: skip
    return Plan(spec, plan.input_shape, (*plan.layers[:-1], node), plan.limits)


def _check_limits(plan: Plan, limits: Limits) -> list[Issue]:
    issues = []
    spec = plan.spec
    if plan.total_params > limits.max_params:
        big = max(plan.layers, key=lambda layer: layer.params)
        issues.append(
            spec.issue(
                ("layers", big.index),
                f"the network has {plan.total_params:,} parameters, over the limit of "
                f"{limits.max_params:,}; layer {big.name!r} alone has {big.params:,}",
                "shrink the layer (fewer units or filters, more pooling before a Dense), "
                "or raise the limit with --max-params if you mean it",
            )
        )
    batch = spec.train.batch_size
    need = plan.activation_bytes(batch)
    explicit = "batch_size" in spec.train.model_fields_set
    where = ("train", "batch_size") if explicit else ("input_shape",)
    if need > limits.max_activation_bytes:
        issues.append(
            spec.issue(
                where,
                f"activations for one batch of {batch} take {_bytes(need)}, over the "
                f"limit of {_bytes(limits.max_activation_bytes)}",
                "lower train.batch_size or input_shape, or raise --max-activation-mb",
            )
        )
    return issues


def class_names_of(plan: Plan) -> list[str]:
    """The class of each output unit: the spec's ``class_names``, else ``0``, ``1``, … (two for
    a single sigmoid unit); empty for a network that does not output a vector."""
    if plan.spec.class_names:
        return list(plan.spec.class_names)
    out = plan.output_shape
    if len(out) != 1:
        return []
    return [str(i) for i in range(2 if out[0] == 1 else out[0])]


def _check_class_names(plan: Plan) -> list[Issue]:
    names = plan.spec.class_names
    out = plan.output_shape
    if names is None or len(out) != 1:
        return []
    expected = 2 if out[0] == 1 else out[0]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:  # predictions are keyed by name: a duplicate would swallow a class
            return [
                plan.spec.issue(
                    ("class_names", i),
                    f"duplicate class name {brief(name)} (also class_names[{seen[name]}])",
                    "give every class its own name",
                )
            ]
        seen[name] = i
    if len(names) == expected:
        return []
    return [
        plan.spec.issue(
            ("class_names",),
            f"{len(names)} class names for a network with {out[0]} output(s); expected {expected}",
            "give one name per output unit (two for a single sigmoid unit)",
        )
    ]


def _bytes(count: int) -> str:
    """``1.5 GiB``, ``12.0 MiB``: the unit that keeps the figure readable."""
    if count >= 2**30:
        return f"{count / 2**30:,.1f} GiB"
    return f"{count / 2**20:,.1f} MiB"


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:,.2f} {unit}"
    return f"{value:,.0f}"


def summary_text(plan: Plan) -> str:
    """A table like Keras's ``model.summary()``, plus FLOPs. Shapes show the batch as None. A
    graph (not a chain) gets Keras's "Connected to" column, one input per line."""
    graph = not plan.is_chain
    rows: list[tuple[str, ...]] = []
    for layer in plan.augmentation:  # (training only: no parameters, no FLOPs counted)
        shape = "(None, " + ", ".join(str(n) for n in layer.output_shape) + ")"
        rows.append((f"{layer.name} ({layer.kind})", shape, "0", "train", *([""] if graph else [])))
    for layer in plan.layers:
        row = (
            f"{layer.name} ({layer.kind})",
            "(None, " + ", ".join(str(n) for n in layer.output_shape) + ")",
            f"{layer.params:,}",
            _si(layer.flops),
        )
        if not graph:
            rows.append(row)
            continue
        sources = [f"{name}[0][0]" for name in layer.inputs]
        rows.append((*row, sources[0]))
        rows += [("", "", "", "", source) for source in sources[1:]]
    header: tuple[str, ...] = ("Layer (type)", "Output Shape", "Param #", "FLOPs")
    header += ("Connected to",) if graph else ()
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    widths[0] = max(widths[0], 28)
    widths[1] = max(widths[1], 22)

    def line(cells: tuple[str, ...]) -> str:
        text = (
            f" {cells[0]:<{widths[0]}}  {cells[1]:<{widths[1]}}  "
            f"{cells[2]:>{widths[2]}}  {cells[3]:>{widths[3]}}"
        )
        if graph:
            text += f"  {cells[4]}"
        return text.rstrip()

    rule = "_" * (sum(widths) + 2 * len(widths))
    total = plan.total_params
    input_shape = "(None, " + ", ".join(str(n) for n in plan.input_shape) + ")"
    out = [f'Model: "{plan.name}"   input {input_shape}', rule, line(header), "=" * len(rule)]
    out += [line(row) for row in rows]
    out += [
        "=" * len(rule),
        f" Total params: {total:,} ({total * BYTES_PER_VALUE / 1024:,.2f} KB)",
        *(
            [
                f" Trainable params: {plan.trainable_params:,}",
                f" Non-trainable params: {total - plan.trainable_params:,} (moving statistics)",
            ]
            if plan.trainable_params != total
            else []
        ),
        f" Forward FLOPs per example: {_si(plan.flops)}",
        f" Activation memory per batch of {plan.spec.train.batch_size}: "
        f"{plan.activation_bytes() / 2**20:,.2f} MB",
        rule,
    ]
    return "\n".join(out)
