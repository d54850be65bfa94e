"""The spec language: YAML text → a validated :class:`Spec`.

Field names and meanings follow Keras (``Conv2D.filters``, ``MaxPool.pool_size``, ``Dense.units``).
One pydantic class per layer kind; :data:`Layer` is their discriminated union on ``type``, and
:data:`LAYER_KINDS` is the one list every table in specnet (shape rules, backend builders) is
checked against. Keras's own class spellings are accepted as aliases of ``type``.

Fields are strict: ``"64"``, ``true`` and ``10.0`` are not integers; ``yes``/``no`` are not booleans
(see ``_yaml.py`` for the YAML 1.2 reading). Unknown keys are errors with a "did you mean" hint.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import math
import re
from pathlib import Path as FilePath
from typing import Annotated, Any, ClassVar, Literal, get_args

import annotated_types as at
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Strict,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from specnet._yaml import Located, Path, load_yaml
from specnet.blocks import expand
from specnet.errors import Issue, SpecValidationError, UsageError, brief

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "LAYER_KINDS",
    "MAX_INPUTS",
    "Activation",
    "Add",
    "Average",
    "AveragePooling2D",
    "BatchNormalization",
    "Concatenate",
    "Conv2D",
    "Conv2DTranspose",
    "Data",
    "Dense",
    "DepthwiseConv2D",
    "Dropout",
    "Flatten",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Layer",
    "LayerBase",
    "LayerNormalization",
    "MaxPool",
    "Maximum",
    "Multiply",
    "Permute",
    "ReLU",
    "Rescaling",
    "Reshape",
    "SeparableConv2D",
    "Softmax",
    "Spec",
    "Subtract",
    "Train",
    "UpSampling2D",
    "ZeroPadding2D",
    "as_spec",
    "load_spec",
    "loads_spec",
    "spec_from_dict",
]

# ----------------------------------------------------------------------------- field types

#: the largest integer any field takes (64-bit signed): a bigger one is refused by validation,
#: before a message or a shape computation would have to print or multiply it
MAX_INT = 2**63 - 1
PositiveInt = Annotated[int, Strict(), at.Gt(0), at.Le(MAX_INT)]
NonNegativeInt = Annotated[int, Strict(), at.Ge(0), at.Le(MAX_INT)]
StrictBool = Annotated[bool, Strict()]
PositiveFloat = Annotated[float, Strict(), at.Gt(0), at.Lt(math.inf)]
Fraction = Annotated[float, Strict(), at.Ge(0), at.Lt(1)]  # 0 ≤ x < 1
NonNegativeFloat = Annotated[float, Strict(), at.Ge(0), at.Lt(math.inf)]
FiniteNumber = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Name = Annotated[str, Strict(), Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")]
# Layer names become Python attributes in generated PyTorch code and weight-key prefixes.
LayerName = Annotated[str, Strict(), Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]

# Keras 3's definitions, which every backend computes: relu6 = min(max(x, 0), 6); silu = swish =
# x·sigmoid(x); hard_sigmoid = relu6(x + 3) / 6 (Keras 2's was clip(0.2·x + 0.5, 0, 1): a Keras 2
# file's hard_sigmoid is another function); hard_silu = hard_swish = x·hard_sigmoid(x);
# mish = x·tanh(softplus(x)); exponential = exp(x).
ActivationName = Literal[
    "relu",
    "sigmoid",
    "tanh",
    "softmax",
    "linear",
    "elu",
    "selu",
    "gelu",
    "softplus",
    "leaky_relu",
    "relu6",
    "silu",
    "swish",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "mish",
    "exponential",
]
ACTIVATIONS: tuple[str, ...] = get_args(ActivationName)
Initializer = Literal[
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "zeros",
    "ones",
]
INITIALIZERS: tuple[str, ...] = get_args(Initializer)


def _to_pair(value: object) -> object:
    """Keras accepts ``3`` for ``(3, 3)``; lists of two become tuples; anything else is refused."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, list | tuple) and len(value) == 2:
        return tuple(value)
    raise PydanticCustomError(
        "pair_type", "expected a positive integer or a pair [height, width] of them"
    )


_PairInput = (
    Annotated[int, at.Ge(1), at.Le(MAX_INT)]
    | Annotated[list[Annotated[int, at.Ge(1), at.Le(MAX_INT)]], at.Len(2, 2)]
)
Pair = Annotated[
    tuple[PositiveInt, PositiveInt],
    BeforeValidator(_to_pair, json_schema_input_type=_PairInput),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, populate_by_name=True)


# ----------------------------------------------------------------------------- regularizers


class _Regularizer(_Model):
    @property
    def factors(self) -> tuple[float, float]:
        """(l1, l2): the penalty is ``l1 · Σ|w| + l2 · Σw²``."""
        return float(getattr(self, "l1", 0.0)), float(getattr(self, "l2", 0.0))


class L1(_Regularizer):
    """``keras.regularizers.L1``: ``l1 · Σ|w|`` added to the loss (Keras's default 0.01)."""

    type: Literal["l1", "L1"]
    l1: NonNegativeFloat = 0.01


class L2(_Regularizer):
    """``keras.regularizers.L2``: ``l2 · Σw²`` added to the loss — no ½, unlike the
    ``weight_decay`` of PyTorch's SGD (Keras's default 0.01)."""

    type: Literal["l2", "L2"]
    l2: NonNegativeFloat = 0.01


class L1L2(_Regularizer):
    """``keras.regularizers.L1L2``: ``l1 · Σ|w| + l2 · Σw²``. Keras 3's defaults are 0 and 0
    (Keras 2's ``l1_l2()`` had 0.01 for both), so ``l1_l2`` with no factors adds nothing."""

    type: Literal["l1_l2", "L1L2"]
    l1: NonNegativeFloat = 0.0
    l2: NonNegativeFloat = 0.0


def _regularizer_shorthand(value: object) -> object:
    """``kernel_regularizer: l2`` is ``{type: l2}`` with Keras's default factor, as
    ``keras.regularizers.get("l2")`` reads it."""
    return {"type": value} if isinstance(value, str) else value


Regularizer = Annotated[
    L1 | L2 | L1L2,
    Field(discriminator="type"),
    BeforeValidator(
        _regularizer_shorthand,
        json_schema_input_type=Literal["l1", "L1", "l2", "L2", "l1_l2", "L1L2"] | L1 | L2 | L1L2,
    ),
]
#: a weighted layer's regularizer fields → the canonical weight each applies to
REGULARIZED = {
    "kernel_regularizer": "kernel",
    "depthwise_regularizer": "depthwise_kernel",
    "pointwise_regularizer": "pointwise_kernel",
    "bias_regularizer": "bias",
}


def regularizers(layer: Any) -> dict[str, L1 | L2 | L1L2]:
    """A layer's regularized weights (canonical suffix → regularizer)."""
    return {
        suffix: getattr(layer, field)
        for field, suffix in REGULARIZED.items()
        if getattr(layer, field, None) is not None
    }


# ----------------------------------------------------------------------------- layers


def _to_names(value: object) -> object:
    """``inputs: stem`` is ``inputs: [stem]``."""
    return [value] if isinstance(value, str) else value


#: the most inputs one layer may name (a merge of hundreds of tensors is a mistake, and each is
#: a tensor held until the merge runs)
MAX_INPUTS = 256
Inputs = Annotated[
    Annotated[tuple[LayerName, ...], at.Len(1, MAX_INPUTS)],
    BeforeValidator(
        _to_names,
        json_schema_input_type=LayerName | Annotated[list[LayerName], at.Len(1, MAX_INPUTS)],
    ),
]


class LayerBase(_Model):
    """Fields every layer has. ``KIND`` is the canonical type; ``PREFIX`` Keras's auto-name;
    ``ARITY`` how many inputs it takes (at least, at most: None for no limit); ``MERGE`` whether
    it combines several tensors (a Keras merge layer, called on a list).

    ``inputs`` names the layers it reads (or ``input``, the model's input); without it a layer
    reads the layer above. After loading, :attr:`inputs` is always filled in (the loader
    resolves the default), and ``resolved()`` leaves it out where it is the default.
    """

    KIND: ClassVar[str]
    PREFIX: ClassVar[str]
    ARITY: ClassVar[tuple[int, int | None]] = (1, 1)
    MERGE: ClassVar[bool] = False
    name: LayerName | None = None
    inputs: Inputs | None = None


class Conv2D(LayerBase):
    """2-D convolution over (height, width, channels). Kernel layout HWIO, as in Keras."""

    KIND = "Conv2D"
    PREFIX = "conv2d"
    type: Literal["Conv2D", "Convolution2D"]
    filters: PositiveInt
    kernel_size: Pair
    strides: Pair = (1, 1)
    padding: Literal["valid", "same"] = "valid"
    dilation_rate: Pair = (1, 1)
    activation: ActivationName | None = None
    use_bias: StrictBool = True
    kernel_initializer: Initializer = "glorot_uniform"
    bias_initializer: Initializer = "zeros"
    kernel_regularizer: Regularizer | None = None
    bias_regularizer: Regularizer | None = None


class DepthwiseConv2D(LayerBase):
    """A 2-D convolution of each channel on its own: ``depth_multiplier`` filters per input
    channel, output channels in input-channel order. Kernel layout (h, w, channels,
    depth_multiplier): Keras's ``depthwise_kernel``."""

    KIND = "DepthwiseConv2D"
    PREFIX = "depthwise_conv2d"
    type: Literal["DepthwiseConv2D"]
    kernel_size: Pair
    strides: Pair = (1, 1)
    padding: Literal["valid", "same"] = "valid"
    depth_multiplier: PositiveInt = 1
    dilation_rate: Pair = (1, 1)
    activation: ActivationName | None = None
    use_bias: StrictBool = True
    depthwise_initializer: Initializer = "glorot_uniform"
    bias_initializer: Initializer = "zeros"
    depthwise_regularizer: Regularizer | None = None
    bias_regularizer: Regularizer | None = None


class SeparableConv2D(LayerBase):
    """A depthwise convolution (``depth_multiplier`` filters per input channel, ``padding``,
    ``strides`` and ``dilation_rate`` apply to it) then a 1×1 convolution to ``filters``
    channels, the bias and the activation after that (Keras's, Xception's). Canonical weights:
    ``depthwise_kernel`` (h, w, channels, depth_multiplier) and ``pointwise_kernel`` (1, 1,
    channels·depth_multiplier, filters), Keras's layouts."""

    KIND = "SeparableConv2D"
    PREFIX = "separable_conv2d"
    type: Literal["SeparableConv2D", "SeparableConvolution2D"]
    filters: PositiveInt
    kernel_size: Pair
    strides: Pair = (1, 1)
    padding: Literal["valid", "same"] = "valid"
    depth_multiplier: PositiveInt = 1
    dilation_rate: Pair = (1, 1)
    activation: ActivationName | None = None
    use_bias: StrictBool = True
    depthwise_initializer: Initializer = "glorot_uniform"
    pointwise_initializer: Initializer = "glorot_uniform"
    bias_initializer: Initializer = "zeros"
    depthwise_regularizer: Regularizer | None = None
    pointwise_regularizer: Regularizer | None = None
    bias_regularizer: Regularizer | None = None


class Conv2DTranspose(LayerBase):
    """The transpose (gradient) of a Conv2D: each input pixel spreads a kernel-sized patch
    over an output ``strides`` times larger. Output size as Keras computes it: ``valid``:
    ``in · stride + max(kernel − stride, 0)``; ``same``: ``in · stride``. Kernel layout
    (h, w, filters, input channels): Keras's, the output channels before the input ones.
    ``output_padding`` and ``dilation_rate`` are not supported yet."""

    KIND = "Conv2DTranspose"
    PREFIX = "conv2d_transpose"
    type: Literal["Conv2DTranspose", "Convolution2DTranspose"]
    filters: PositiveInt
    kernel_size: Pair
    strides: Pair = (1, 1)
    padding: Literal["valid", "same"] = "valid"
    activation: ActivationName | None = None
    use_bias: StrictBool = True
    kernel_initializer: Initializer = "glorot_uniform"
    bias_initializer: Initializer = "zeros"
    kernel_regularizer: Regularizer | None = None
    bias_regularizer: Regularizer | None = None


class UpSampling2D(LayerBase):
    """Rows and columns repeated ``size`` times (``nearest``), or resized bilinearly with
    half-pixel centres (``bilinear``: TensorFlow's ``image.resize``, PyTorch's
    ``align_corners=False``, ONNX's ``half_pixel``)."""

    KIND = "UpSampling2D"
    PREFIX = "up_sampling2d"
    type: Literal["UpSampling2D"]
    size: Pair = (2, 2)
    interpolation: Literal["nearest", "bilinear"] = "nearest"


class LayerNormalization(LayerBase):
    """Each example normalised over its last axis (an image's channels, pixel by pixel; a
    vector's units): ``(x − mean) / sqrt(variance + epsilon) · gamma + beta``, the variance
    biased, the same in training and inference (no moving statistics)."""

    KIND = "LayerNormalization"
    PREFIX = "layer_normalization"
    type: Literal["LayerNormalization"]
    axis: Literal[-1] = -1
    epsilon: PositiveFloat = 1e-3
    center: StrictBool = True
    scale: StrictBool = True
    beta_initializer: Initializer = "zeros"
    gamma_initializer: Initializer = "ones"


def _to_target(value: object) -> object:
    """``target_shape: 64`` is ``[64]``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    return tuple(value) if isinstance(value, list) else value


_Extent = Annotated[int, Strict(), at.Ge(-1), at.Le(MAX_INT)]
TargetShape = Annotated[
    tuple[_Extent, ...],
    BeforeValidator(
        _to_target, json_schema_input_type=_Extent | Annotated[list[_Extent], at.Len(1, 3)]
    ),
]


class Reshape(LayerBase):
    """The values in Keras's (row-major, channels-last) order, laid out as ``target_shape``
    (without the batch): ``[units]`` or ``[height, width, channels]``; one extent may be -1,
    inferred from the others."""

    KIND = "Reshape"
    PREFIX = "reshape"
    type: Literal["Reshape"]
    target_shape: TargetShape


def _permutation(value: tuple[int, ...]) -> tuple[int, ...]:
    if sorted(value) != [1, 2, 3]:
        raise PydanticCustomError(
            "permutation", "expected an order of the axes 1, 2 and 3, each once, e.g. [3, 1, 2]"
        )
    return value


class Permute(LayerBase):
    """Keras's ``Permute``: an image's axes reordered, ``dims`` counting from 1 after the batch
    in the spec's (h, w, c) order — ``[3, 1, 2]`` makes (h, w, c) into (c, h, w), which the
    layers after it read as (height, width, channels). How ``specnet import`` translates a model
    whose layers disagree on channels first and channels last."""

    KIND = "Permute"
    PREFIX = "permute"
    type: Literal["Permute"]
    dims: Annotated[tuple[PositiveInt, PositiveInt, PositiveInt], AfterValidator(_permutation)]


class ReLU(LayerBase):
    """Keras's ``ReLU`` layer: ``min(max(x, 0), max_value)``, ``negative_slope · x`` below 0
    (``max_value: 6`` is MobileNet's relu6). ``threshold`` other than 0 is not supported yet."""

    KIND = "ReLU"
    PREFIX = "re_lu"
    type: Literal["ReLU"]
    max_value: Annotated[float, Strict(), at.Gt(0), at.Lt(math.inf)] | None = None
    negative_slope: NonNegativeFloat = 0.0
    threshold: Annotated[float, Strict(), at.Ge(0), at.Le(0)] = 0.0


class Activation(LayerBase):
    """An element-wise activation; ``softmax`` is over the last (channel) axis."""

    KIND = "Activation"
    PREFIX = "activation"
    type: Literal["Activation"]
    activation: ActivationName


class MaxPool(LayerBase):
    """2-D max pooling. ``strides`` defaults to ``pool_size``, as in Keras."""

    KIND = "MaxPool"
    PREFIX = "max_pooling2d"
    type: Literal["MaxPool", "MaxPooling2D", "MaxPool2D"]
    pool_size: Pair = (2, 2)
    strides: Pair | None = None
    padding: Literal["valid", "same"] = "valid"


class AveragePooling2D(LayerBase):
    """2-D average pooling; with ``same`` padding each window averages its *valid* elements
    only (Keras's rule: a border window of 2 of 4 pixels divides by 2, not 4)."""

    KIND = "AveragePooling2D"
    PREFIX = "average_pooling2d"
    type: Literal["AveragePooling2D", "AvgPool2D"]
    pool_size: Pair = (2, 2)
    strides: Pair | None = None
    padding: Literal["valid", "same"] = "valid"


class Rescaling(LayerBase):
    """``x · scale + offset``, element-wise (Keras's preprocessing layer). specnet's images are in
    [0, 1] already; ``scale: 2, offset: -1`` maps them to [-1, 1] (MobileNet's input range)."""

    KIND = "Rescaling"
    PREFIX = "rescaling"
    type: Literal["Rescaling"]
    scale: FiniteNumber
    offset: FiniteNumber = 0.0


class Dropout(LayerBase):
    """Zeroes a fraction ``rate`` of inputs while training; the identity at inference."""

    KIND = "Dropout"
    PREFIX = "dropout"
    type: Literal["Dropout"]
    rate: Fraction


class Flatten(LayerBase):
    """(height, width, channels) → (height·width·channels,), in that (row-major NHWC) order."""

    KIND = "Flatten"
    PREFIX = "flatten"
    type: Literal["Flatten"]


class Dense(LayerBase):
    """Fully connected layer on a flat vector. Kernel layout (inputs, units), as in Keras."""

    KIND = "Dense"
    PREFIX = "dense"
    type: Literal["Dense"]
    units: PositiveInt
    activation: ActivationName | None = None
    use_bias: StrictBool = True
    kernel_initializer: Initializer = "glorot_uniform"
    bias_initializer: Initializer = "zeros"
    kernel_regularizer: Regularizer | None = None
    bias_regularizer: Regularizer | None = None


class Softmax(LayerBase):
    """Softmax over the last axis (channels, or the units of a Dense)."""

    KIND = "Softmax"
    PREFIX = "softmax"
    type: Literal["Softmax"]
    axis: Literal[-1] = -1


class BatchNormalization(LayerBase):
    """Normalises each channel (the last axis) by the batch's statistics while training and by
    moving averages at inference, as Keras does: ``moving = momentum · moving + (1 − momentum) ·
    batch``, the batch's variance biased (divided by N), ``epsilon`` added to it."""

    KIND = "BatchNormalization"
    PREFIX = "batch_normalization"
    type: Literal["BatchNormalization"]
    axis: Literal[-1] = -1
    momentum: Fraction = 0.99
    epsilon: PositiveFloat = 1e-3
    center: StrictBool = True
    scale: StrictBool = True
    beta_initializer: Initializer = "zeros"
    gamma_initializer: Initializer = "ones"
    moving_mean_initializer: Initializer = "zeros"
    moving_variance_initializer: Initializer = "ones"


def _to_padding(value: object) -> object:
    """Keras's ZeroPadding2D padding: ``p``, ``[p_rows, p_cols]`` or ``[[top, bottom], [left,
    right]]`` → ``((top, bottom), (left, right))``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return ((value, value), (value, value))
    if isinstance(value, list | tuple) and len(value) == 2:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return ((value[0], value[0]), (value[1], value[1]))
        if all(isinstance(v, list | tuple) and len(v) == 2 for v in value):
            return (tuple(value[0]), tuple(value[1]))
    raise PydanticCustomError(
        "padding_type",
        "expected a non-negative integer, [rows, cols] or [[top, bottom], [left, right]]",
    )


_Amount = Annotated[int, Strict(), at.Ge(0), at.Le(MAX_INT)]
Padding2D = Annotated[
    tuple[tuple[_Amount, _Amount], tuple[_Amount, _Amount]],
    BeforeValidator(
        _to_padding,
        json_schema_input_type=_Amount
        | Annotated[list[_Amount], at.Len(2, 2)]
        | Annotated[list[Annotated[list[_Amount], at.Len(2, 2)]], at.Len(2, 2)],
    ),
]


class ZeroPadding2D(LayerBase):
    """Rows and columns of zeros around an image (Keras's ``padding``: top/bottom, left/right)."""

    KIND = "ZeroPadding2D"
    PREFIX = "zero_padding2d"
    type: Literal["ZeroPadding2D"]
    padding: Padding2D = ((1, 1), (1, 1))


class GlobalAveragePooling2D(LayerBase):
    """Each channel's mean over height and width: (h, w, c) → (c,), or (1, 1, c) with
    ``keepdims``."""

    KIND = "GlobalAveragePooling2D"
    PREFIX = "global_average_pooling2d"
    type: Literal["GlobalAveragePooling2D", "GlobalAvgPool2D"]
    keepdims: StrictBool = False


class GlobalMaxPooling2D(LayerBase):
    """Each channel's maximum over height and width: (h, w, c) → (c,), or (1, 1, c)."""

    KIND = "GlobalMaxPooling2D"
    PREFIX = "global_max_pooling2d"
    type: Literal["GlobalMaxPooling2D", "GlobalMaxPool2D"]
    keepdims: StrictBool = False


class _Merge(LayerBase):
    """Keras's merge layers: several tensors of one shape → one (element-wise, in input order)."""

    ARITY: ClassVar[tuple[int, int | None]] = (2, None)
    MERGE = True


class Add(_Merge):
    """The element-wise sum of its inputs (Keras ``Add``: summed left to right)."""

    KIND = "Add"
    PREFIX = "add"
    type: Literal["Add"]


class Subtract(_Merge):
    """``inputs[0] - inputs[1]`` (Keras ``Subtract``: exactly two inputs, order matters)."""

    KIND = "Subtract"
    PREFIX = "subtract"
    ARITY: ClassVar[tuple[int, int | None]] = (2, 2)
    type: Literal["Subtract"]


class Multiply(_Merge):
    """The element-wise product of its inputs (squeeze-and-excitation's gate)."""

    KIND = "Multiply"
    PREFIX = "multiply"
    type: Literal["Multiply"]


class Average(_Merge):
    """The element-wise mean of its inputs (Keras: the sum, then divided by their count)."""

    KIND = "Average"
    PREFIX = "average"
    type: Literal["Average"]


class Maximum(_Merge):
    """The element-wise maximum of its inputs."""

    KIND = "Maximum"
    PREFIX = "maximum"
    type: Literal["Maximum"]


class Concatenate(_Merge):
    """Its inputs joined along ``axis`` (Keras's axes without the batch: -1 = channels), in
    input order; every other axis must agree."""

    KIND = "Concatenate"
    PREFIX = "concatenate"
    type: Literal["Concatenate"]
    axis: Annotated[int, Strict(), at.Ge(-3), at.Le(3)] = -1


# ----------------------------------------------------------------------------- augmentation


def _factor(bounds: tuple[float, float]) -> Any:
    """A Keras factor: one number ``f`` (the range [−|f|, |f|]) or a pair [low, high], every
    value within ``bounds``."""
    low, high = bounds
    number = Annotated[float, Strict(), at.Ge(low), at.Le(high)]
    return number | Annotated[tuple[number, number], AfterValidator(_sorted_pair)]


def _sorted_pair(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        raise PydanticCustomError("range_order", "expected [low, high] with low ≤ high")
    return value


def _increasing(value: tuple[float, float]) -> tuple[float, float]:
    if not value[0] < value[1]:
        raise PydanticCustomError("range_order", "expected [low, high] with low < high")
    return value


#: ``[low, high]``, low < high: a pixel range, an augmentation's ``value_range``
Range = Annotated[tuple[FiniteNumber, FiniteNumber], AfterValidator(_increasing)]


FillMode = Literal["reflect", "wrap", "constant", "nearest"]
Interpolation = Literal["nearest", "bilinear"]


class Augmentation(LayerBase):
    """A Keras 3 preprocessing layer that changes training images only: run by specnet's data
    pipeline (:mod:`specnet.augment`) before the network, absent from every build and export.
    They come first in ``layers:``, where Keras users write them. ``seed``: this layer's own
    draws (default: the run's ``train.seed``)."""

    seed: NonNegativeInt | None = None

    def factor_range(self, value: float | tuple[float, float]) -> tuple[float, float]:
        """Keras's reading of a factor: ``f`` → (−|f|, |f|), a pair as it is."""
        if isinstance(value, tuple):
            return (float(value[0]), float(value[1]))
        return (-abs(float(value)), abs(float(value)))


class RandomFlip(Augmentation):
    """``keras.layers.RandomFlip``: each image flipped left–right (``horizontal``), top–bottom
    (``vertical``) or — one draw for both, as Keras 3 draws it — both, with probability ½."""

    KIND = "RandomFlip"
    PREFIX = "random_flip"
    type: Literal["RandomFlip"]
    mode: Literal["horizontal", "vertical", "horizontal_and_vertical"] = "horizontal_and_vertical"


class RandomRotation(Augmentation):
    """``keras.layers.RandomRotation``: each image rotated about its centre by an angle drawn
    from ``factor`` × 360° (positive: counter-clockwise), the pixels outside filled by
    ``fill_mode``."""

    KIND = "RandomRotation"
    PREFIX = "random_rotation"
    type: Literal["RandomRotation"]
    factor: _factor((-1.0, 1.0))  # type: ignore[valid-type]
    fill_mode: FillMode = "reflect"
    interpolation: Interpolation = "bilinear"
    fill_value: FiniteNumber = 0.0


class RandomZoom(Augmentation):
    """``keras.layers.RandomZoom``: each image scaled about its centre by ``1 + z``, ``z``
    drawn from ``height_factor`` (and ``width_factor``; without it the same ``z`` for both):
    a positive ``z`` zooms out, a negative one in."""

    KIND = "RandomZoom"
    PREFIX = "random_zoom"
    type: Literal["RandomZoom"]
    height_factor: _factor((-1.0, 1.0))  # type: ignore[valid-type]
    width_factor: _factor((-1.0, 1.0)) | None = None  # type: ignore[valid-type]
    fill_mode: FillMode = "reflect"
    interpolation: Interpolation = "bilinear"
    fill_value: FiniteNumber = 0.0

    @field_validator("height_factor", "width_factor")
    @classmethod
    def _above_minus_one(cls, value: Any) -> Any:
        if value is None:
            return value
        values = value if isinstance(value, tuple) else (value, -abs(value))
        if min(values) <= -1:
            raise PydanticCustomError(
                "zoom_range", "a zoom factor must be above -1 (1 + factor scales the image)"
            )
        return value


class RandomTranslation(Augmentation):
    """``keras.layers.RandomTranslation``: each image shifted by a fraction of its height
    (``height_factor``) and width (``width_factor``), drawn from each."""

    KIND = "RandomTranslation"
    PREFIX = "random_translation"
    type: Literal["RandomTranslation"]
    height_factor: _factor((-1.0, 1.0))  # type: ignore[valid-type]
    width_factor: _factor((-1.0, 1.0))  # type: ignore[valid-type]
    fill_mode: FillMode = "reflect"
    interpolation: Interpolation = "bilinear"
    fill_value: FiniteNumber = 0.0


class RandomContrast(Augmentation):
    """``keras.layers.RandomContrast``: each image's channels moved away from (or towards)
    their mean by a factor drawn from [1 − low, 1 + high] (``factor: f`` is low = high = f, as
    Keras documents), then clipped to ``value_range``."""

    KIND = "RandomContrast"
    PREFIX = "random_contrast"
    type: Literal["RandomContrast"]
    factor: _factor((0.0, 1.0))  # type: ignore[valid-type]
    value_range: Range = (0.0, 1.0)

    def factor_range(self, value: float | tuple[float, float]) -> tuple[float, float]:
        low, high = value if isinstance(value, tuple) else (value, value)
        return (1.0 - float(low), 1.0 + float(high))


class RandomBrightness(Augmentation):
    """``keras.layers.RandomBrightness``: a value drawn from ``factor`` times the width of
    ``value_range`` added to every pixel of an image, then clipped to ``value_range``."""

    KIND = "RandomBrightness"
    PREFIX = "random_brightness"
    type: Literal["RandomBrightness"]
    factor: _factor((-1.0, 1.0))  # type: ignore[valid-type]
    value_range: Range = (0.0, 1.0)


AUGMENTATIONS: tuple[type[Augmentation], ...] = (
    RandomFlip,
    RandomRotation,
    RandomZoom,
    RandomTranslation,
    RandomContrast,
    RandomBrightness,
)


#: every kind of network layer (:data:`AUGMENTATIONS` are the data pipeline's)
LAYER_KINDS: tuple[type[LayerBase], ...] = (
    Conv2D,
    Activation,
    MaxPool,
    Dropout,
    Flatten,
    Dense,
    Softmax,
    DepthwiseConv2D,
    ReLU,
    BatchNormalization,
    ZeroPadding2D,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    Add,
    Subtract,
    Multiply,
    Average,
    Maximum,
    Concatenate,
    AveragePooling2D,
    Rescaling,
    SeparableConv2D,
    Conv2DTranspose,
    UpSampling2D,
    LayerNormalization,
    Reshape,
    Permute,
)
Layer = Annotated[
    Conv2D
    | Activation
    | MaxPool
    | Dropout
    | Flatten
    | Dense
    | Softmax
    | DepthwiseConv2D
    | ReLU
    | BatchNormalization
    | ZeroPadding2D
    | GlobalAveragePooling2D
    | GlobalMaxPooling2D
    | Add
    | Subtract
    | Multiply
    | Average
    | Maximum
    | Concatenate
    | AveragePooling2D
    | Rescaling
    | SeparableConv2D
    | Conv2DTranspose
    | UpSampling2D
    | LayerNormalization
    | Reshape
    | Permute
    | RandomFlip
    | RandomRotation
    | RandomZoom
    | RandomTranslation
    | RandomContrast
    | RandomBrightness,
    Field(discriminator="type"),
]
_LAYER_BY_TYPE: dict[str, type[LayerBase]] = {
    literal: kind
    for kind in (*LAYER_KINDS, *AUGMENTATIONS)
    for literal in kind.model_fields["type"].annotation.__args__  # type: ignore[union-attr]
}

# ----------------------------------------------------------------------------- training


class CosineDecay(_Model):
    """``keras.optimizers.schedules.CosineDecay``: from ``initial_learning_rate`` (after a
    linear warm-up to ``warmup_target`` over ``warmup_steps``, when given) down a half cosine to
    ``alpha`` times it over ``decay_steps``, then constant."""

    type: Literal["CosineDecay"]
    initial_learning_rate: NonNegativeFloat
    decay_steps: PositiveInt
    alpha: Annotated[float, Strict(), at.Ge(0), at.Le(1)] = 0.0
    warmup_target: PositiveFloat | None = None
    warmup_steps: NonNegativeInt = 0


class ExponentialDecay(_Model):
    """``keras.optimizers.schedules.ExponentialDecay``: ``initial_learning_rate ·
    decay_rate ^ (step / decay_steps)`` (the exponent floored with ``staircase``)."""

    type: Literal["ExponentialDecay"]
    initial_learning_rate: PositiveFloat
    decay_steps: PositiveInt
    decay_rate: PositiveFloat
    staircase: StrictBool = False


def _rising(value: list[int]) -> list[int]:
    if any(later <= earlier for earlier, later in itertools.pairwise(value)):
        raise PydanticCustomError("schedule_boundaries", "expected steps in increasing order")
    return value


class PiecewiseConstantDecay(_Model):
    """``keras.optimizers.schedules.PiecewiseConstantDecay``: ``values[0]`` up to and
    including step ``boundaries[0]``, ``values[1]`` up to ``boundaries[1]``, …, the last value
    after the last boundary."""

    type: Literal["PiecewiseConstantDecay"]
    boundaries: Annotated[list[NonNegativeInt], at.Len(1, 1000), AfterValidator(_rising)]
    values: list[PositiveFloat]

    @field_validator("values")
    @classmethod
    def _one_more_value(cls, values: list[float], info: ValidationInfo) -> list[float]:
        boundaries = info.data.get("boundaries")
        if boundaries is not None and len(values) != len(boundaries) + 1:
            raise PydanticCustomError(
                "schedule_values",
                "expected {wanted} values, one more than boundaries",
                {"wanted": len(boundaries) + 1},
            )
        return values


class PolynomialDecay(_Model):
    """``keras.optimizers.schedules.PolynomialDecay``: from ``initial_learning_rate`` to
    ``end_learning_rate`` over ``decay_steps`` along ``(1 − step / decay_steps) ^ power``;
    ``cycle`` restarts it with ever longer decays."""

    type: Literal["PolynomialDecay"]
    initial_learning_rate: PositiveFloat
    decay_steps: PositiveInt
    end_learning_rate: NonNegativeFloat = 0.0001
    power: PositiveFloat = 1.0
    cycle: StrictBool = False


class InverseTimeDecay(_Model):
    """``keras.optimizers.schedules.InverseTimeDecay``: ``initial_learning_rate / (1 +
    decay_rate · step / decay_steps)`` (the quotient floored with ``staircase``)."""

    type: Literal["InverseTimeDecay"]
    initial_learning_rate: PositiveFloat
    decay_steps: PositiveInt
    decay_rate: NonNegativeFloat
    staircase: StrictBool = False


Schedule = Annotated[
    CosineDecay | ExponentialDecay | PiecewiseConstantDecay | PolynomialDecay | InverseTimeDecay,
    Field(discriminator="type"),
]
#: every schedule class, by its ``type``
SCHEDULES = ("CosineDecay", "ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay",
             "InverseTimeDecay")  # fmt: skip


def _rate_kind(value: object) -> str:
    """A number is a constant rate; a mapping, a schedule (one branch: one set of errors)."""
    return "schedule" if isinstance(value, dict | _Model) else "constant"


LearningRate = Annotated[
    Annotated[PositiveFloat, Tag("constant")] | Annotated[Schedule, Tag("schedule")],
    Discriminator(_rate_kind),
]


class _Optimizer(_Model):
    """What every Keras optimizer takes besides its own options (Keras's order of operations:
    the gradients clipped, then the weights decayed by ``weight · weight_decay · rate``, then
    the optimizer's update, then — with ``use_ema`` — each trainable weight's moving average
    ``a = m·a + (1 − m)·w`` (``m`` 0 at the first step), copied into the weights every
    ``ema_overwrite_frequency`` steps and when training ends)."""

    weight_decay: NonNegativeFloat | None = None
    clipnorm: PositiveFloat | None = None
    clipvalue: PositiveFloat | None = None
    global_clipnorm: PositiveFloat | None = None
    use_ema: StrictBool = False
    ema_momentum: Annotated[float, Strict(), at.Ge(0), at.Le(1)] = 0.99
    ema_overwrite_frequency: PositiveInt | None = None

    @field_validator("clipvalue", "global_clipnorm")
    @classmethod
    def _one_clip(cls, value: float | None, info: ValidationInfo) -> float | None:
        earlier = [k for k in ("clipnorm", "clipvalue") if info.data.get(k) is not None]
        earlier = [k for k in earlier if k != info.field_name]
        if value is not None and earlier:
            raise PydanticCustomError(
                "one_clip",
                "set one of clipnorm, clipvalue and global_clipnorm, as Keras allows (here "
                "also {earlier})",
                {"earlier": ", ".join(earlier)},
            )
        return value


class SGD(_Optimizer):
    """Keras ``SGD`` (defaults as in Keras)."""

    type: Literal["sgd", "SGD"]
    learning_rate: LearningRate = 0.01
    momentum: Fraction = 0.0
    nesterov: StrictBool = False


class Adam(_Optimizer):
    """Keras ``Adam`` (defaults as in Keras; note Keras's epsilon 1e-7, PyTorch's 1e-8)."""

    type: Literal["adam", "Adam"]
    learning_rate: LearningRate = 0.001
    beta_1: Fraction = 0.9
    beta_2: Fraction = 0.999
    epsilon: PositiveFloat = 1e-7
    amsgrad: StrictBool = False


class AdamW(Adam):
    """Keras ``AdamW``: Adam with decoupled weight decay (Keras's default 0.004), decayed as
    Keras decays every optimizer's weights (not PyTorch's ``AdamW``, which decays after the
    update's moments are taken but by ``lr · weight_decay`` the same way: see torch_train)."""

    type: Literal["adamw", "AdamW"]  # type: ignore[assignment]
    weight_decay: NonNegativeFloat | None = 0.004


class RMSprop(_Optimizer):
    """Keras ``RMSprop`` (defaults as in Keras)."""

    type: Literal["rmsprop", "RMSprop"]
    learning_rate: LearningRate = 0.001
    rho: Fraction = 0.9
    momentum: Fraction = 0.0
    epsilon: PositiveFloat = 1e-7
    centered: StrictBool = False


def _optimizer_shorthand(value: object) -> object:
    """``optimizer: adam`` is short for ``optimizer: {type: adam}``."""
    return {"type": value} if isinstance(value, str) else value


Optimizer = Annotated[
    SGD | Adam | AdamW | RMSprop,
    Field(discriminator="type"),
    BeforeValidator(
        _optimizer_shorthand,
        json_schema_input_type=Literal[
            "sgd", "SGD", "adam", "Adam", "adamw", "AdamW", "rmsprop", "RMSprop"
        ]
        | SGD
        | Adam
        | AdamW
        | RMSprop,
    ),
]


Monitor = Literal["val_loss", "val_accuracy", "loss", "accuracy"]


class EarlyStopping(_Model):
    """``keras.callbacks.EarlyStopping``: stop when ``monitor`` has not improved by more than
    ``min_delta`` for ``patience`` epochs (counted from ``start_from_epoch``); with
    ``restore_best_weights`` the run ends with the best epoch's weights. ``mode: auto`` minimises
    a loss and maximises an accuracy; ``baseline`` must be beaten before the wait restarts."""

    type: Literal["EarlyStopping"]
    monitor: Monitor = "val_loss"
    min_delta: NonNegativeFloat = 0.0
    patience: NonNegativeInt = 0
    mode: Literal["auto", "min", "max"] = "auto"
    baseline: FiniteNumber | None = None
    restore_best_weights: StrictBool = False
    start_from_epoch: NonNegativeInt = 0


class ReduceLROnPlateau(_Model):
    """``keras.callbacks.ReduceLROnPlateau``: multiply the learning rate by ``factor`` (not
    below ``min_lr``) after ``patience`` epochs without an improvement of ``monitor`` by more
    than ``min_delta``, then wait ``cooldown`` epochs. Needs a constant learning rate."""

    type: Literal["ReduceLROnPlateau"]
    monitor: Monitor = "val_loss"
    factor: Annotated[float, Strict(), at.Gt(0), at.Lt(1)] = 0.1
    patience: NonNegativeInt = 10
    mode: Literal["auto", "min", "max"] = "auto"
    min_delta: NonNegativeFloat = 1e-4
    cooldown: NonNegativeInt = 0
    min_lr: NonNegativeFloat = 0.0


Callback = Annotated[EarlyStopping | ReduceLROnPlateau, Field(discriminator="type")]


#: ``class_weight``: a weight per class name (Keras's ``fit`` takes class indices; a spec names
#: the classes), 1 for a class not named; or ``balanced``: ``n / (classes · count)`` over the
#: training split, scikit-learn's ``compute_class_weight("balanced")``
ClassWeight = (
    Literal["balanced"]
    | Annotated[dict[Annotated[str, Strict(), at.MinLen(1)], NonNegativeFloat], at.Len(1, 100_000)]
)


class Train(_Model):
    """What Keras's ``compile`` and ``fit`` take.

    Labels are integer class indices; ``categorical_crossentropy`` one-hot encodes them, so it
    and ``sparse_categorical_crossentropy`` compute the same loss.
    """

    optimizer: Optimizer = Field(default_factory=lambda: Adam(type="adam"))
    loss: Literal[
        "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy"
    ] = "categorical_crossentropy"
    metrics: list[Literal["accuracy"]] = Field(default_factory=lambda: ["accuracy"])  # type: ignore[arg-type]
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    validation_split: Fraction = 0.2
    shuffle: StrictBool = True
    seed: NonNegativeInt = 0
    callbacks: Annotated[list[Callback], at.Len(0, 16)] = Field(default_factory=list)
    #: the validation split drawn per class (each class's last ``validation_split``), so it
    #: keeps the classes' proportions (scikit-learn's ``train_test_split(stratify=y)``)
    stratify: StrictBool = False
    label_smoothing: Annotated[float, Strict(), at.Ge(0), at.Le(1)] = 0.0
    class_weight: ClassWeight | None = None

    @field_validator("label_smoothing")
    @classmethod
    def _smoothing_has_a_loss(cls, value: float, info: ValidationInfo) -> float:
        if value and info.data.get("loss") == "sparse_categorical_crossentropy":
            raise PydanticCustomError(
                "sparse_smoothing",
                "sparse_categorical_crossentropy takes no label_smoothing (as in Keras); "
                "use categorical_crossentropy, the same loss here on class-index labels",
            )
        return value

    @field_validator("callbacks")
    @classmethod
    def _callbacks_can_act(cls, callbacks: list[Any], info: ValidationInfo) -> list[Any]:
        optimizer = info.data.get("optimizer")
        for callback in callbacks:
            if (
                isinstance(callback, ReduceLROnPlateau)
                and optimizer is not None
                and not isinstance(optimizer.learning_rate, int | float)
            ):
                raise PydanticCustomError(
                    "plateau_schedule",
                    "ReduceLROnPlateau needs a constant learning_rate; the optimizer has a "
                    "schedule (Keras refuses the pair too)",
                )
        return callbacks


# ----------------------------------------------------------------------------- data


class SyntheticData(_Model):
    """Coloured shapes on noisy backgrounds, generated in memory from the train seed."""

    source: Literal["synthetic"]
    samples: PositiveInt = 1200
    classes_by: Literal["shape", "colour", "color"] = "shape"
    noise: Annotated[float, Strict(), at.Ge(0), at.Le(1)] = 0.1


class NpzData(_Model):
    """A ``.npz`` file with arrays ``x`` (N, H, W, C) and ``y`` (N,); path relative to the spec.

    ``pixel_range: [low, high]`` says what the pixel values span (mapped to [0, 1]); without it
    integer images are read as 8- or 16-bit and float images must lie in [0, 1]."""

    source: Literal["npz"]
    path: Annotated[str, Strict(), at.MinLen(1)]
    pixel_range: Range | None = None


class FolderData(_Model):
    """An image folder ``root/<class>/*.png|jpg``; classes in sorted order."""

    source: Literal["folder"]
    path: Annotated[str, Strict(), at.MinLen(1)]


class DigitsData(_Model):
    """scikit-learn's bundled 1,797 8×8 handwritten digits, fitted to the input shape."""

    source: Literal["digits"]


Data = Annotated[SyntheticData | NpzData | FolderData | DigitsData, Field(discriminator="source")]

# ----------------------------------------------------------------------------- the spec


class Spec(_Model):
    """A whole spec file. ``input_shape`` is (height, width, channels), channels last."""

    schema_: Annotated[str, Strict()] | None = Field(default=None, alias="$schema")
    name: Name
    description: Annotated[str, Strict()] = ""
    input_shape: tuple[PositiveInt, PositiveInt, PositiveInt]
    layers: Annotated[list[Layer], at.MinLen(1)]
    class_names: list[Annotated[str, Strict(), at.MinLen(1)]] | None = None
    train: Train = Field(default_factory=Train)
    data: Data | None = None
    #: a validation set of its own (Keras's ``validation_data``: ``validation_split`` is then
    #: not taken from ``data``) and a held-out test set, scored by ``evaluate``
    validation_data: Data | None = None
    test_data: Data | None = None

    _source: Located | None = PrivateAttr(default=None)

    def issue(self, path: Path, message: str, hint: str = "") -> Issue:
        """A located :class:`Issue` at ``path`` in the file this spec came from."""
        source = self._source or Located("<spec>", None)
        return source.issue(path, message, hint)

    @property
    def source_file(self) -> str:
        """The file this spec was loaded from (``<string>``, ``<dict>`` for API-made specs)."""
        return self._source.file if self._source is not None else "<spec>"

    def resolved(self) -> dict[str, Any]:
        """The spec with every default filled in, as plain data (what a run directory stores).

        A layer's ``inputs`` is written only where it is not the layer above, so a chain
        resolves exactly as it did before graphs existed (runs and fingerprints stay valid)."""
        data = self.model_dump(mode="json", exclude={"schema_"})  # its one alias, $schema, out
        above = "input"
        for layer in data["layers"]:
            if layer["inputs"] == [above]:
                del layer["inputs"]
            above = layer["name"]
        return data


# ----------------------------------------------------------------------------- loading


def load_spec(path: str | FilePath) -> Spec:
    """Read, parse and validate a spec file. Raises a :class:`~specnet.errors.SpecError`."""
    try:
        raw = FilePath(path).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a spec file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None
    return _validate(load_yaml(raw, str(path)))


def as_spec(spec: str | FilePath | Spec) -> tuple[Spec, str, FilePath]:
    """A spec file or a :class:`Spec` → (the spec, where it came from, the folder its relative
    data paths are relative to: the file's, else the working directory)."""
    if isinstance(spec, Spec):
        source = spec.source_file
        base = FilePath(source).parent if FilePath(source).is_file() else FilePath.cwd()
        return spec, source, base
    return load_spec(spec), str(spec), FilePath(spec).parent


def loads_spec(text: str, filename: str = "<string>") -> Spec:
    """Parse and validate spec text (``filename`` is used only in messages)."""
    return _validate(load_yaml(text.encode(), filename))


_STEP = re.compile(r"([A-Za-z_$][A-Za-z0-9_]*)|\[(\d+)\]")


def _assignment(text: str) -> tuple[list[str | int], Any]:
    """``train.callbacks[0].patience=3`` → (["train", "callbacks", 0, "patience"], 3); the
    value is read as YAML (``3``, ``0.5``, ``true``, ``[1, 2]``, ``{type: sgd}``)."""
    path_text, equals, value_text = text.partition("=")
    if not equals or not path_text.strip():
        raise UsageError(f"--set {text}: expected FIELD=VALUE, e.g. train.epochs=5")
    path: list[str | int] = []
    position = 0
    path_text = path_text.strip()
    while position < len(path_text):
        if path and path_text[position] == ".":
            position += 1
        found = _STEP.match(path_text, position)
        if found is None:
            raise UsageError(
                f"--set {text}: cannot read the field path at {path_text[position:]!r} "
                "(write names and [indices]: layers[2].rate, train.callbacks[0].patience)"
            )
        path.append(found.group(1) if found.group(1) else int(found.group(2)))
        position = found.end()
    if not isinstance(path[0], str):
        raise UsageError(f"--set {text}: a field path starts with a name")
    value = load_yaml(value_text.encode() or b"null", f"--set {text}").data
    return path, value


def with_overrides(spec: Spec, assignments: list[str]) -> Spec:
    """The spec with ``--set FIELD=VALUE`` assignments applied to its resolved document and
    validated like a file (each problem named with the assignment that made it). A field a
    mapping lacks is added (so a misspelt one is refused with a did-you-mean); a list index
    must exist, or be the list's length to append."""
    if not assignments:
        return spec
    document = spec.resolved()
    for text in assignments:
        path, value = _assignment(text)
        parent: Any = document
        for depth, step in enumerate(path):
            last = depth == len(path) - 1
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[: depth + 1])
            if isinstance(step, int):
                if not isinstance(parent, list) or step > len(parent):
                    size = f"{len(parent)} items" if isinstance(parent, list) else "not a list"
                    raise UsageError(f"--set {text}: {where.lstrip('.')} does not exist ({size})")
                if step == len(parent):
                    parent.append(value if last else {})
                elif last:
                    parent[step] = value
            else:
                if not isinstance(parent, dict):
                    raise UsageError(f"--set {text}: {where.lstrip('.')}: its parent is no mapping")
                if last:
                    parent[step] = value
                elif not isinstance(parent.get(step), dict | list):
                    parent[step] = {}
            if not last:
                parent = parent[step]
    label = f"{spec.source_file} with --set {' --set '.join(assignments)}"
    return spec_from_dict(document, filename=label)


def spec_from_dict(data: dict[str, Any], filename: str = "<dict>") -> Spec:
    """Validate already-parsed data (no line numbers; field paths still name the problem)."""
    return _validate(Located(filename, data))


def _validate(source: Located) -> Spec:
    data = source.data
    if not isinstance(data, dict):
        raise SpecValidationError(
            [
                source.issue(
                    (),
                    f"expected a mapping of fields, received {_describe(data)}",
                    "a spec starts with `name:`, `input_shape:` and `layers:`",
                )
            ]
        )
    source = expand(source)
    data = source.data
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        text = dataclasses.replace(source, as_written=True)  # errors in the text as written
        renamed = _keras1_fields(errors, text)
        issues = [
            _translate(error, text)
            for error in errors
            if not _covered_by_keras1(error, renamed, text)
        ]
        raise SpecValidationError(sorted(set(issues), key=_order)) from None
    except BaseException as exc:
        # pydantic-core is Rust: a panic there surfaces as pyo3's PanicException, which derives
        # from BaseException so that `except Exception` misses it. It is still this file's
        # problem to report (never a traceback); KeyboardInterrupt and friends pass through.
        if type(exc).__name__ != "PanicException":
            raise
        detail = str(exc).splitlines()[0][:200] if str(exc) else "no detail"
        raise SpecValidationError(
            [
                source.issue(
                    (),
                    f"the validator crashed on this spec (pydantic-core: {detail})",
                    "please report it with the spec attached",
                )
            ]
        ) from None
    spec._source = source
    written = {layer.name: i for i, layer in enumerate(spec.layers) if layer.name is not None}
    issues = _name_layers(spec) or _link_layers(spec, written) or _augmentation_first(spec)
    unvalidated = spec.train.validation_split == 0 and spec.validation_data is None
    if not issues and unvalidated and not isinstance(spec.data, FolderData):  # (its own val/?)
        issues = monitors_without_validation(spec)
    if issues:
        raise SpecValidationError(sorted(set(issues), key=_order))
    return spec


def monitors_without_validation(spec: Spec) -> list[Issue]:
    """A callback monitoring ``val_*`` where the run has no validation data (Keras warns and
    skips it every epoch; a spec refuses it)."""
    return [
        spec.issue(
            ("train", "callbacks", i, "monitor"),
            f"{callback.type} monitors {callback.monitor}, but there is no validation data "
            "(validation_split is 0 and no validation_data)",
            "monitor loss or accuracy, or give the run validation data",
        )
        for i, callback in enumerate(spec.train.callbacks)
        if callback.monitor.startswith("val_")
    ]


def _order(issue: Issue) -> tuple[int, int, str]:
    return (issue.line, issue.column, issue.field)


def _name_layers(spec: Spec) -> list[Issue]:
    """Give unnamed layers Keras-style names (``conv2d``, ``conv2d_1``) that avoid user names."""
    issues: list[Issue] = []
    taken: dict[str, int] = {}
    for i, layer in enumerate(spec.layers):
        if layer.name is None:
            continue
        if layer.name == "input":
            issues.append(
                spec.issue(
                    ("layers", i, "name"),
                    "`input` is the model's input, not a layer name",
                    "choose another name; `inputs: [input]` reads the model's input",
                )
            )
        if layer.name in taken:
            issues.append(
                spec.issue(
                    ("layers", i, "name"),
                    f"duplicate layer name {layer.name!r} (also layers[{taken[layer.name]}])",
                    "layer names must be unique; weights are keyed by them",
                )
            )
        taken[layer.name] = i
    used = set(taken)
    counters: dict[str, int] = {}
    for layer in spec.layers:
        if layer.name is not None:
            continue
        while True:
            n = counters.get(layer.PREFIX, 0)
            counters[layer.PREFIX] = n + 1
            candidate = layer.PREFIX if n == 0 else f"{layer.PREFIX}_{n}"
            if candidate not in used:
                break
        layer.name = candidate  # (counters only grow: no generated name repeats)
    return issues


def _augmentation_first(spec: Spec) -> list[Issue]:
    """Augmentation layers come first, each reading the one above (the first the input), as a
    Keras model starts with them; at least one other layer follows."""
    issues: list[Issue] = []
    network = None  # the first layer that is not augmentation
    above = "input"
    for i, layer in enumerate(spec.layers):
        if isinstance(layer, Augmentation):
            if network is not None:
                issues.append(
                    spec.issue(
                        ("layers", i, "type"),
                        f"{layer.KIND} comes after {spec.layers[network].KIND} "
                        f"(layers[{network}]); augmentation layers come first",
                        "move it to the top of `layers:` (augmentation changes the training "
                        "images before the network sees them)",
                    )
                )
            elif layer.inputs != (above,):
                issues.append(
                    spec.issue(
                        ("layers", i, "inputs"),
                        f"{layer.KIND} reads {', '.join(layer.inputs or ())}; augmentation "
                        "layers read the layer above (the first, the input)",
                        "remove its `inputs:`",
                    )
                )
            above = str(layer.name)
        elif network is None:
            network = i
    if network is None:
        issues.append(
            spec.issue(
                ("layers",),
                "the spec has only augmentation layers; the network needs at least one more",
                "add the network's layers after them",
            )
        )
    return issues


def _link_layers(spec: Spec, written: dict[str, int]) -> list[Issue]:
    """Resolve every layer's ``inputs`` (the layer above by default) and refuse a graph that is
    not one: a name that is not an earlier, explicitly named layer (a reference to itself or to
    a layer below is how a cycle would be written), the wrong number of inputs, and a layer no
    later layer reads (only the last layer is the output: a dead branch is usually a typo, and
    it would hold parameters no gradient reaches, which DDP refuses). ``written``: the names
    the spec gives (an automatic name is no reference: it shifts when a layer is inserted)."""
    issues: list[Issue] = []
    position = {str(layer.name): i for i, layer in enumerate(spec.layers)}
    used: set[str] = set()
    above = "input"
    for i, layer in enumerate(spec.layers):
        assert layer.name is not None  # named by _name_layers
        given = layer.inputs is not None
        if layer.inputs is None:
            layer.inputs = (above,)
        else:
            for k, ref in enumerate(layer.inputs):
                problem = _reference_problem(spec, i, ref, written, position)
                if problem:
                    issues.append(spec.issue(("layers", i, "inputs", k), *problem))
        low, high = layer.ARITY
        count = len(layer.inputs)
        if count < low or (high is not None and count > high):
            bound = low if count < low else high
            wanted = "exactly" if low == high else "at least" if count < low else "at most"
            issues.append(
                spec.issue(
                    ("layers", i, "inputs") if given else ("layers", i),
                    f"{layer.KIND} takes {wanted} {bound} input{'s' if bound != 1 else ''}, "
                    f"received {count}",
                    "name them: `inputs: [a, b]`" if layer.MERGE else "name one: `inputs: [a]`",
                )
            )
        used.update(layer.inputs)
        above = layer.name
    if issues:  # (a wrong reference would make the layer it meant look unused)
        return issues
    for i, layer in enumerate(spec.layers[:-1]):
        if layer.name not in used:
            issues.append(
                spec.issue(
                    ("layers", i),
                    f"layer {layer.name!r} is not read by any later layer; only the last layer "
                    "is the network's output",
                    "name it in a later layer's `inputs`, or remove it",
                )
            )
    return issues


def _reference_problem(
    spec: Spec, i: int, ref: str, written: dict[str, int], position: dict[str, int]
) -> tuple[str, str] | None:
    """(message, hint) when layers[i] may not read ``ref``, else None."""
    name = spec.layers[i].name
    if ref == "input":
        return None
    if ref == name:
        return (
            f"layer {name!r} cannot read its own output",
            "a graph has no cycles; name a layer above",
        )
    if ref in position and position[ref] > i:
        return (
            f"{ref!r} is layers[{position[ref]}], below this layer; a layer reads only the "
            "layers above it",
            "the written order is the order of computation: move the layer up",
        )
    if ref in position and ref not in written:
        return (
            f"{ref!r} is an automatic name; refer only to layers named in the spec",
            f"add `name: {ref}` to layers[{position[ref]}] (automatic names shift when a layer "
            "is inserted above)",
        )
    if ref in written:
        return None
    close = _suggest(ref, ["input", *written])
    return (
        f"no layer named {ref!r} above this one",
        f"did you mean {close!r}?" if close else "name an earlier layer or `input`",
    )


# ----------------------------------------------------------------------------- error translation


def _describe(value: object) -> str:
    """A short, safe rendering of a received value (never the whole input)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return f"a mapping with {len(value)} keys"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, str):
        return f"the string {brief(value)}"
    if isinstance(value, int) and value.bit_length() > 64:  # repr fails past 4,300 digits
        return f"{'a negative' if value < 0 else 'an'} integer of {value.bit_length()} bits"
    return brief(value)


def _lookup(data: object, loc: Path) -> tuple[Path, object]:
    """Follow pydantic's ``loc`` through the raw data; drop the steps that are union tags.

    A string step missing from a mapping is a union tag (``Conv2D`` in ``layers.0.Conv2D.filters``)
    unless it is the last step, which is then a missing field.
    """
    clean: list[str | int] = []
    for i, step in enumerate(loc):
        if isinstance(data, dict) and isinstance(step, str):
            if step in data:
                data = data[step]
                clean.append(step)
            elif i == len(loc) - 1:
                data = None
                clean.append(step)
        elif isinstance(data, list) and isinstance(step, int) and 0 <= step < len(data):
            data = data[step]
            clean.append(step)
    return tuple(clean), data


def _fields_of(parent: object, parent_path: Path) -> list[str]:
    """Valid field names of the model at ``parent_path`` (for "did you mean")."""
    model: type[BaseModel] | None = None
    if parent_path == ():
        model = Spec
    elif parent_path == ("train",):
        model = Train
    elif parent_path == ("train", "optimizer") and isinstance(parent, dict):
        optimizers: dict[str, type[BaseModel]] = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}
        model = optimizers.get(str(parent.get("type")).lower())
    elif parent_path == ("data",) and isinstance(parent, dict):
        sources: dict[str, type[BaseModel]] = {
            "synthetic": SyntheticData,
            "npz": NpzData,
            "folder": FolderData,
        }
        model = sources.get(str(parent.get("source")), DigitsData)
    elif parent_path[:1] == ("layers",) and isinstance(parent, dict):
        model = _LAYER_BY_TYPE.get(str(parent.get("type")))
    if model is None:
        return []
    fields = [info.alias or name for name, info in model.model_fields.items()]
    if "inputs" in fields:  # the graph's field reads best after the layer's own
        fields.remove("inputs")
        fields.append("inputs")
    return fields


def _suggest(word: str, choices: list[str]) -> str:
    folded: dict[str, str] = {}
    for choice in choices:  # the first spelling of a name wins (sgd, not its alias SGD)
        folded.setdefault(choice.lower(), choice)
    # difflib's defaults: the matches at least 0.6 similar, best first (an exact match is 1.0)
    close = difflib.get_close_matches(word.lower(), list(folded))
    return folded[close[0]] if close else ""


#: Keras layers specnet does not have yet → the nearest kind it has (said instead of "unknown")
NOT_YET = {
    "Conv1D": "Conv2D over a (length, 1, channels) input",
    "MaxPooling1D": "MaxPooling2D",
    "GlobalAveragePooling1D": "GlobalAveragePooling2D",
    "LeakyReLU": "Activation with activation: leaky_relu",
    "PReLU": "Activation with activation: leaky_relu",
    "ELU": "Activation with activation: elu",
    "GroupNormalization": "LayerNormalization (one group) or BatchNormalization",
    "Normalization": "BatchNormalization",
    "Cropping2D": "ZeroPadding2D",
    "SpatialDropout2D": "Dropout",
    "GaussianNoise": "Dropout",
    "Embedding": "Dense",
    "LSTM": "Dense (no recurrent layers yet)",
    "GRU": "Dense (no recurrent layers yet)",
    "RandomCrop": "RandomTranslation (RandomCrop changes the image size between training and "
    "inference)",
}

#: Keras 1 field names → today's (Keras 2/3, and specnet's)
KERAS1_FIELDS = {
    "nb_filter": "filters",
    "nb_row": "kernel_size",
    "nb_col": "kernel_size",
    "border_mode": "padding",
    "subsample": "strides",
    "output_dim": "units",
    "init": "kernel_initializer",
    "p": "rate",
    "nb_epoch": "epochs",
    "lr": "learning_rate",
    "dim_ordering": "",
    "pool_length": "pool_size",
}


def _keras1_fields(errors: list[Any], source: Located) -> dict[Path, set[str]]:
    """Mapping path → the modern fields its Keras 1 keys stand for (so that "missing
    `filters`" is not reported beside "`nb_filter` is Keras 1's `filters`")."""
    renamed: dict[Path, set[str]] = {}
    for error in errors:
        if error["type"] != "extra_forbidden":
            continue
        path, _ = _lookup(source.data, tuple(error["loc"]))
        key = str(path[-1])  # an unknown field is a key: its path ends with it
        if key in KERAS1_FIELDS:
            renamed.setdefault(path[:-1], set()).add(KERAS1_FIELDS[key])
    return renamed


def _covered_by_keras1(error: Any, renamed: dict[Path, set[str]], source: Located) -> bool:
    path, _ = _lookup(source.data, tuple(error["loc"]))
    if error["type"] == "missing":
        return str(path[-1]) in renamed.get(path[:-1], set())
    if error["type"] == "extra_forbidden" and path and path[-1] == "nb_col":
        parent = _lookup(source.data, path[:-1])[1]
        return isinstance(parent, dict) and "nb_row" in parent  # one message for the pair
    if error["type"] == "extra_forbidden" and re.fullmatch(r"\s*\d+\s*\)", str(path[-1])):
        # `pool_size: (2, 2)` in a flow mapping parses as `pool_size: "(2"` and a key `2)`:
        # the pair's message says it all
        parent = _lookup(source.data, path[:-1])[1]
        return isinstance(parent, dict) and any(
            isinstance(v, str) and v.lstrip().startswith("(") for v in parent.values()
        )
    return False


def _keras1_issue(path: Path, source: Located) -> Issue:
    """One targeted message for a Keras 1 field name, with the Keras 2 spelling to write."""
    key = str(path[-1])
    parent: dict[str, Any] = _lookup(source.data, path[:-1])[1]  # type: ignore[assignment]
    value = parent[key]
    new = KERAS1_FIELDS[key]
    shown = (
        value
        if isinstance(value, str) and re.fullmatch(r"[A-Za-z_]\w*", value)
        else json.dumps(value)
        if isinstance(value, int | float | str | list)
        else "…"
    )
    if key in ("nb_row", "nb_col"):
        rows, cols = parent.get("nb_row", "?"), parent.get("nb_col", "?")
        return source.issue(
            path,
            "`nb_row`/`nb_col` are Keras 1's `kernel_size`",
            f"write `kernel_size: [{rows}, {cols}]`",
            key=True,
        )
    if key == "dim_ordering":
        return source.issue(
            path,
            "`dim_ordering` is Keras 1's data layout; specnet is always channels last",
            "remove it; write input_shape as [height, width, "
            "channels] (`specnet import` converts channels-first models)",
            key=True,
        )
    if path == ("train", "lr"):
        return source.issue(
            path,
            "`lr` is Keras 1's `learning_rate`, an option of the optimizer",
            f"write `optimizer: {{type: adam, learning_rate: {shown}}}`",
            key=True,
        )
    if key == "nb_epoch":
        where = "" if path == ("train", key) else " under `train:`"
        return source.issue(
            path, "`nb_epoch` is Keras 1's `epochs`", f"write `epochs: {shown}`{where}", key=True
        )
    return source.issue(path, f"`{key}` is Keras 1's `{new}`", f"write `{new}: {shown}`", key=True)


def _is_key(data: object, path: Path) -> bool:
    """Whether the last step of ``path`` is in the data (a key or an index), not a union tag."""
    parent = _lookup(data, path[:-1])[1]
    if isinstance(parent, dict):
        return path[-1] in parent
    return not isinstance(path[-1], str)


def _number_hint(received: object, path: Path, source: Located, example: str) -> str:
    """ "remove the quotes" only for a quoted number; else say what a number looks like."""
    if isinstance(received, str):
        text = received.strip()
        if path in source.quoted and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
            return "remove the quotes"
    return f"write a number such as {example}"


def _translate(error: Any, source: Located) -> Issue:
    path, received = _lookup(source.data, tuple(error["loc"]))
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = _describe(received)
    if kind == "extra_forbidden" and path and str(path[-1]) in KERAS1_FIELDS:
        return _keras1_issue(path, source)
    if kind == "pair_type" and isinstance(received, str):
        inner = re.fullmatch(r"\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*", received)
        if inner:
            hint = f"write [{inner.group(1)}, {inner.group(2)}]: YAML reads parentheses as text"
        elif received.lstrip().startswith("("):
            hint = "write the pair in square brackets, e.g. [2, 2]: YAML reads parentheses as text"
        else:
            hint = "write an integer such as 3, or [3, 3]"
        return source.issue(path, f"{error['msg']}, received {got}", hint)
    if path == ("input_shape",) and kind in ("missing", "too_long", "tuple_type"):
        shown = _lookup(source.data, path)[1]
        return source.issue(
            path,
            f"expected 3 values [height, width, channels], received {_describe(shown)}",
            "e.g. [32, 32, 3]; a grey image has 1 channel: [28, 28, 1]",
        )
    if kind == "too_short" and path == ("layers",):
        return source.issue(path, "expected at least one layer, received an empty list")
    if kind == "string_type":
        return source.issue(path, f"expected a string, received {got}", "quote it")
    if kind == "extra_forbidden":
        key = str(path[-1])
        parent = _lookup(source.data, path[:-1])[1]
        fields = _fields_of(parent, path[:-1])
        close = _suggest(key, fields)
        hint = f"did you mean `{close}`?" if close else ""
        if fields and not close:
            hint = "valid fields here: " + ", ".join(fields)
        return source.issue(path, f"unknown field `{key}`", hint, key=True)
    if kind == "missing":
        return source.issue(
            path,
            f"missing required field `{path[-1]}`",
            f"add `{path[-1]}:` to {'the spec' if len(path) == 1 else 'this mapping'}",
        )
    if kind == "union_tag_invalid":
        while path and not _is_key(source.data, path):  # a tag of an outer union, not a key
            path = path[:-1]
        tags = re.findall(r"'([^']*)'", str(ctx["expected_tags"]))
        tag = str(ctx["tag"])
        field = str(ctx["discriminator"]).strip("'")
        close = _suggest(tag, tags)
        hint = f"did you mean {close!r}?" if close else "expected one of: " + ", ".join(tags)
        what = "layer type" if path[:1] == ("layers",) and len(path) == 2 else f"`{field}`"
        if path and isinstance(path[-1], str) and path[-1].endswith("_regularizer"):
            what = "regularizer"  # (Keras's names: l1, l2, l1_l2)
        if path[:1] == ("layers",) and tag in NOT_YET:
            return source.issue(
                (*path, field),
                f"Keras's {tag} is not supported yet",
                f"the nearest supported kind: {NOT_YET[tag]}",
            )
        return source.issue((*path, field), f"unknown {what} {brief(tag)}", hint)
    if kind == "union_tag_not_found":
        while path and not _is_key(source.data, path):  # a tag of an outer union, not a key
            path = path[:-1]
        field = str(ctx["discriminator"]).strip("'")
        example = "{type: Dense, units: 10}" if path[:1] == ("layers",) else f"`{field}: ...`"
        return source.issue(
            path, f"expected a mapping with a `{field}` field, received {got}", f"write {example}"
        )
    # fields are strict: pydantic reports int_type, never int_parsing or int_from_float, and
    # the same for floats and booleans; no field is a plain dict
    if kind in ("model_type", "model_attributes_type"):
        examples = {
            "layers": "{type: Dense, units: 10}",
            "train": "`optimizer: adam`",
            "data": "{source: folder, path: photos}",
        }
        hint = f"e.g. {examples[str(path[0])]}"  # every mapping-valued field is under one of these
        return source.issue(path, f"expected a mapping of fields, received {got}", hint)
    if kind in ("list_type", "tuple_type"):  # (input_shape's are answered above)
        return source.issue(path, f"expected a list, received {got}")
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx["expected"]))
        close = _suggest(str(received), choices) if isinstance(received, str) else ""
        expected = str(ctx["expected"])
        hint = f"did you mean {close!r}?" if close else ""
        return source.issue(path, f"expected {expected}, received {got}", hint)
    if kind == "bool_type":
        hint = ""
        if isinstance(received, str) and received.lower() in ("yes", "no", "on", "off", "y", "n"):
            hint = "YAML 1.2 reads yes/no/on/off as text; write true or false"
        return source.issue(path, f"expected true or false, received {got}", hint)
    if kind == "int_type":
        hint = _number_hint(received, path, source, "32").replace("a number", "an integer")
        if isinstance(received, float):
            whole = received.is_integer() and abs(received) < 2**63
            hint = f"write {int(received)}" if whole else ""
        elif isinstance(received, bool):
            hint = ""
        return source.issue(path, f"expected an integer, received {got}", hint)
    if kind == "float_type":
        hint = _number_hint(received, path, source, "0.5") if isinstance(received, str) else ""
        return source.issue(path, f"expected a number, received {got}", hint)
    bounds = {
        "greater_than": "greater than {gt}",
        "greater_than_equal": "at least {ge}",
        "less_than": "less than {lt}",
        "less_than_equal": "at most {le}",
    }
    if kind in bounds:
        return source.issue(path, f"expected a value {bounds[kind].format(**ctx)}, received {got}")
    if path[-1:] == ("inputs",) and kind in ("too_long", "too_short"):
        if kind == "too_short":
            return source.issue(path, "expected at least one name, received an empty list",
                                "leave `inputs` out to read the layer above")  # fmt: skip
        return source.issue(
            path,
            f"expected at most {MAX_INPUTS} inputs, received {ctx['actual_length']:,}",
            "a layer merging this many tensors is a mistake (each is held until the merge)",
        )
    if kind in ("too_long", "string_too_short"):  # (the one list with a minimum is layers)
        return source.issue(path, f"{error['msg'].lower()}, received {got}")
    if kind == "string_pattern_mismatch":
        allowed = "'_'" if path[:1] == ("layers",) else "'_' or '-'"
        return source.issue(
            path,
            f"expected a name of letters, digits or {allowed} (at most 64), received {got}",
            "start with a letter or '_'",
        )
    return source.issue(path, f"{error['msg']}, received {got}")
