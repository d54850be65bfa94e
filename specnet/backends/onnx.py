"""The direct ONNX backend: a graph built straight from the Plan and canonical weights.

No TensorFlow, no PyTorch: only the ``onnx`` package builds the graph, and ONNX Runtime (or ONNX's
own reference evaluator, :func:`reference_predict`) runs it. It is the leanest of the three
graphs: one node per spec operation (a fused activation is its own node), Dropout gone, no shape
subgraphs, and one layout Transpose at most at each end — the graph computes in NCHW, as ONNX's
Conv and MaxPool require, so an NHWC input (the default) is transposed once at the start, and an
image output (or a flattened one: Keras flattens in (h, w, c) order) once at the end. Conv and
MaxPool take Keras's asymmetric ``same`` padding directly in their ``pads`` attribute (MaxPool's
padding never wins a max), and the Dense after a Flatten gets its rows in (c, h, w) order through
the PyTorch backend's conversion table (pure NumPy). It cannot train.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specnet import __version__
from specnet._frameworks import require
from specnet._io import atomic_write_bytes
from specnet.backends import DEFAULT_OPTIONS, TrainOptions
from specnet.backends.torch import apply_steps, conversions
from specnet.errors import UsageError
from specnet.layout import nchw_axis
from specnet.shapes import (
    Plan,
    PlanLayer,
    concat_axis,
    flatten_folds,
    reshape_target,
    same_padding,
    transpose_crops,
)
from specnet.spec import (
    Activation,
    Add,
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
    Subtract,
    Train,
    UpSampling2D,
    ZeroPadding2D,
)
from specnet.weights import Weights, check_weights

__all__ = [
    "BACKEND",
    "DEFAULT_OPSET",
    "LAYERS",
    "OnnxBackend",
    "OnnxModel",
    "ort_session",
    "read_onnx",
    "reference_predict",
    "run_session",
]

DEFAULT_OPSET = 18  # the newest tf2onnx 1.17 writes; every path exports at the same opset

# (op_type, extra inputs (initializer keys), attributes)
Node = tuple[str, list[str], dict[str, Any]]


def _act(activation: str | None, opset: int) -> list[Node]:
    if activation in (None, "linear"):
        return []
    if activation == "gelu" and opset < 20:
        return [("specnet.Gelu", [], {})]  # expanded by _emit into Div/Erf/Add/Mul/Mul
    ops: dict[str, Node] = {
        "relu": ("Relu", [], {}),
        "sigmoid": ("Sigmoid", [], {}),
        "tanh": ("Tanh", [], {}),
        "softmax": ("Softmax", [], {"axis": 1}),  # channels in NCHW, units in (N, units)
        "elu": ("Elu", [], {"alpha": 1.0}),
        "selu": ("Selu", [], {}),
        "gelu": ("Gelu", [], {}),
        "softplus": ("Softplus", [], {}),
        "leaky_relu": ("LeakyRelu", [], {"alpha": 0.2}),  # Keras's slope
        "relu6": ("Clip", ["scalar/0.0", "scalar/6.0"], {}),
        "hard_sigmoid": _HARD_SIGMOID,
        "exponential": ("Exp", [], {}),
    }
    if activation in _GATED:
        native, first_opset, ops_of_f = _GATED[activation]
        if native is not None and opset >= first_opset:
            return [(native, [], {})]
        return [("specnet.Gated", [], {"ops": ops_of_f})]  # expanded by build_graph's _gated
    return [ops[activation]]


# Keras 3's hard_sigmoid, relu6(x + 3) / 6, as ONNX's max(0, min(1, alpha·x + beta))
_HARD_SIGMOID: Node = ("HardSigmoid", [], {"alpha": 1.0 / 6.0, "beta": 0.5})
# x · f(x): activation → (native op or None, the first opset that has it, the ops of f otherwise)
_Gated = tuple[str | None, int, list[Node]]
_SILU: _Gated = (None, 0, [("Sigmoid", [], {})])  # spelled out at every opset
_HARD_SILU: _Gated = ("HardSwish", 14, [_HARD_SIGMOID])  # HardSwish's alpha, beta are Keras's
_GATED: dict[str, _Gated] = {
    "silu": _SILU,
    "swish": _SILU,
    "hard_silu": _HARD_SILU,
    "hard_swish": _HARD_SILU,
    "mish": ("Mish", 18, [("Softplus", [], {}), ("Tanh", [], {})]),
}


def _pads(step: PlanLayer, window: tuple[int, int], stride: tuple[int, int]) -> list[int]:
    top, bottom = same_padding(step.input_shape[0], window[0], stride[0])
    left, right = same_padding(step.input_shape[1], window[1], stride[1])
    return [top, left, bottom, right]  # ONNX: begins of each axis, then ends


def _conv2d(
    layer: Conv2D | DepthwiseConv2D | SeparableConv2D, step: PlanLayer, opset: int
) -> list[Node]:
    """Conv; a depthwise one has a group per channel; a separable one is that (no bias) and a
    1×1 Conv with the bias."""
    (kh, kw), (dh, dw) = layer.kernel_size, layer.dilation_rate
    effective = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    pads = _pads(step, effective, layer.strides) if layer.padding == "same" else [0, 0, 0, 0]
    kernel = "kernel" if isinstance(layer, Conv2D) else "depthwise_kernel"
    bias = [f"{step.name}.bias"] if layer.use_bias else []
    attrs = {
        "group": 1 if isinstance(layer, Conv2D) else step.input_shape[-1],
        "kernel_shape": list(layer.kernel_size),
        "strides": list(layer.strides),
        "dilations": list(layer.dilation_rate),
        "pads": pads,
    }
    if isinstance(layer, SeparableConv2D):
        pointwise: Node = (
            "Conv",
            [f"{step.name}.pointwise_kernel", *bias],
            {"kernel_shape": [1, 1]},
        )
        convs: list[Node] = [("Conv", [f"{step.name}.{kernel}"], attrs), pointwise]
    else:
        convs = [("Conv", [f"{step.name}.{kernel}", *bias], attrs)]
    return [*convs, *_act(layer.activation, opset)]


def _conv_transpose(layer: Conv2DTranspose, step: PlanLayer, opset: int) -> list[Node]:
    """ConvTranspose cut to Keras's output by its (asymmetric) ``pads``, or extended by
    ``output_padding`` where a kernel smaller than its stride leaves rows untouched (see
    :func:`specnet.shapes.transpose_crops`)."""
    (rows, rows_end), (cols, cols_end) = transpose_crops(layer, step.input_shape)
    weights = [f"{step.name}.kernel"] + ([f"{step.name}.bias"] if layer.use_bias else [])
    attrs = {
        "kernel_shape": list(layer.kernel_size),
        "strides": list(layer.strides),
        "pads": [rows, cols, max(rows_end, 0), max(cols_end, 0)],
        "output_padding": [max(-rows_end, 0), max(-cols_end, 0)],
    }
    return [("ConvTranspose", weights, attrs), *_act(layer.activation, opset)]


def _up_sampling(layer: UpSampling2D, step: PlanLayer, opset: int) -> list[Node]:
    """Resize by the factors: ``nearest`` as repetition (asymmetric coordinates, floor),
    ``bilinear`` with half-pixel centres (TensorFlow's and PyTorch's)."""
    sh, sw = layer.size
    if layer.interpolation == "nearest":
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                 "nearest_mode": "floor"}  # fmt: skip
    else:
        attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    return [("Resize", ["", f"scales/1,1,{sh},{sw}"], attrs)]


def _layer_norm(layer: LayerNormalization, step: PlanLayer, opset: int) -> list[Node]:
    """ONNX's LayerNormalization (opset 17) over the last axis; an NCHW image's channels are
    moved last and back around it."""
    if opset < 17:
        raise UsageError(
            f"layer {step.name!r}: LayerNormalization needs ONNX opset 17 or newer, not {opset}"
        )
    name, c = step.name, step.input_shape[-1]
    scale = [f"{name}.gamma" if layer.scale else f"ones/{c}"]
    shift = [f"{name}.beta"] if layer.center else []
    norm: Node = ("LayerNormalization", [*scale, *shift], {"axis": -1, "epsilon": layer.epsilon})
    if len(step.input_shape) == 1:
        return [norm]
    return [_TO_NHWC, norm, _TO_NCHW]


_TO_NHWC: Node = ("Transpose", [], {"perm": [0, 2, 3, 1]})
_TO_NCHW: Node = ("Transpose", [], {"perm": [0, 3, 1, 2]})


def _permute(layer: Permute, step: PlanLayer, opset: int) -> list[Node]:
    """One Transpose: the NCHW tensor's (h, w, c) view permuted, back in NCHW."""
    nhwc = [0, *layer.dims]  # on the (h, w, c) view
    to_nhwc, to_nchw = [0, 2, 3, 1], [0, 3, 1, 2]
    perm = [to_nhwc[nhwc[axis]] for axis in to_nchw]
    return [("Transpose", [], {"perm": perm})]


def _reshape(layer: Reshape, step: PlanLayer, opset: int) -> list[Node]:
    """Keras's row-major (h, w, c) order: an image's channels moved last before the Reshape,
    and an image result moved back to NCHW."""
    target = reshape_target(layer, step.input_shape)
    shape = ",".join(str(n) for n in (-1, *target))
    nodes: list[Node] = [_TO_NHWC] if len(step.input_shape) == 3 else []
    nodes.append(("Reshape", [f"shape/{shape}"], {}))
    return nodes + ([_TO_NCHW] if len(target) == 3 else [])


def _relu(layer: ReLU, step: PlanLayer, opset: int) -> list[Node]:
    slope, ceiling = layer.negative_slope, layer.max_value
    if ceiling is not None and not slope:  # relu6 and its kind: one Clip, as PyTorch exports it
        return [("Clip", ["scalar/0.0", f"scalar/{float(ceiling)!r}"], {})]
    nodes: list[Node] = [("LeakyRelu", [], {"alpha": slope}) if slope else ("Relu", [], {})]
    if ceiling is not None:  # Clip's bounds are inputs from opset 11: no lower one
        nodes.append(("Clip", ["", f"scalar/{float(ceiling)!r}"], {}))
    return nodes


def _activation(layer: Activation, step: PlanLayer, opset: int) -> list[Node]:
    return _act(layer.activation, opset)


def _window(layer: MaxPool | AveragePooling2D, step: PlanLayer) -> dict[str, Any]:
    """A pooling window's attributes: strides default to the pool size, ``same`` as pads."""
    strides = layer.strides or layer.pool_size
    pads = _pads(step, layer.pool_size, strides) if layer.padding == "same" else [0, 0, 0, 0]
    return {"kernel_shape": list(layer.pool_size), "strides": list(strides), "pads": pads}


def _max_pool(layer: MaxPool, step: PlanLayer, opset: int) -> list[Node]:
    return [("MaxPool", [], _window(layer, step))]


def _average_pool(layer: AveragePooling2D, step: PlanLayer, opset: int) -> list[Node]:
    # count_include_pad=0: a border window averages its valid elements only, as in Keras
    return [("AveragePool", [], {**_window(layer, step), "count_include_pad": 0})]


def _dropout(layer: Dropout, step: PlanLayer, opset: int) -> list[Node]:
    return []  # the identity at inference


def _flatten(layer: Flatten, step: PlanLayer, opset: int) -> list[Node]:
    return [("Flatten", [], {"axis": 1})] if len(step.input_shape) == 3 else []


def _dense(layer: Dense, step: PlanLayer, opset: int) -> list[Node]:
    weights = [f"{step.name}.kernel"] + ([f"{step.name}.bias"] if layer.use_bias else [])
    # B stored (inputs, units): ONNX Runtime's Gemm is faster untransposed (0.24 vs 0.29 ms at
    # batch 1 for cifar10_cnn); rows in (c, h, w) order after a Flatten, as PyTorch reads them
    return [("Gemm", weights, {}), *_act(layer.activation, opset)]


def _softmax(layer: Softmax, step: PlanLayer, opset: int) -> list[Node]:
    return [("Softmax", [], {"axis": 1})]


def _batch_norm(layer: BatchNormalization, step: PlanLayer, opset: int) -> list[Node]:
    """Inference mode (the moving statistics): what an exported model computes."""
    name, c = step.name, step.input_shape[-1]
    scale = f"{name}.gamma" if layer.scale else f"ones/{c}"
    shift = f"{name}.beta" if layer.center else f"zeros/{c}"
    statistics = [f"{name}.moving_mean", f"{name}.moving_variance"]
    # momentum does nothing at inference; it is written so that the file says what the
    # layer is (specnet import reads it back)
    attrs = {"epsilon": layer.epsilon, "momentum": layer.momentum}
    return [("BatchNormalization", [scale, shift, *statistics], attrs)]


def _zero_padding(layer: ZeroPadding2D, step: PlanLayer, opset: int) -> list[Node]:
    (top, bottom), (left, right) = layer.padding
    return [("Pad", [f"pads/0,0,{top},{left},0,0,{bottom},{right}"], {"mode": "constant"})]


def _rescaling(layer: Rescaling, step: PlanLayer, opset: int) -> list[Node]:
    nodes: list[Node] = [("Mul", [f"scalar/{float(layer.scale)!r}"], {})]
    if layer.offset:
        nodes.append(("Add", [f"scalar/{float(layer.offset)!r}"], {}))
    return nodes


def _global_pool(
    layer: GlobalAveragePooling2D | GlobalMaxPooling2D, step: PlanLayer, opset: int
) -> list[Node]:
    op = "GlobalAveragePool" if isinstance(layer, GlobalAveragePooling2D) else "GlobalMaxPool"
    return [(op, [], {})] if layer.keepdims else [(op, [], {}), ("Flatten", [], {"axis": 1})]


def _chain(op: str) -> Callable[[Any, PlanLayer, int], list[Node]]:
    """A merge as binary nodes left to right (``(a + b) + c``), Keras's order of operations."""
    return lambda layer, step, opset: [(op, [], {})] * (len(step.inputs) - 1)


def _average(layer: Average, step: PlanLayer, opset: int) -> list[Node]:
    count = f"average/{len(step.inputs)}"  # a constant initializer (see _constants)
    return [*_chain("Add")(layer, step, opset), ("Div", [count], {})]


def _concatenate(layer: Concatenate, step: PlanLayer, opset: int) -> list[Node]:
    rank = len(step.input_shape)
    return [("Concat", [], {"axis": nchw_axis(concat_axis(layer, rank), rank)})]


LAYERS: dict[type[LayerBase], Callable[[Any, PlanLayer, int], list[Node]]] = {
    Conv2D: _conv2d,
    Activation: _activation,
    MaxPool: _max_pool,
    AveragePooling2D: _average_pool,
    Dropout: _dropout,
    Flatten: _flatten,
    Dense: _dense,
    Softmax: _softmax,
    DepthwiseConv2D: _conv2d,
    ReLU: _relu,
    BatchNormalization: _batch_norm,
    ZeroPadding2D: _zero_padding,
    Rescaling: _rescaling,
    GlobalAveragePooling2D: _global_pool,
    GlobalMaxPooling2D: _global_pool,
    Add: _chain("Add"),
    Subtract: _chain("Sub"),
    Multiply: _chain("Mul"),
    Average: _average,
    Maximum: _chain("Max"),
    Concatenate: _concatenate,
    SeparableConv2D: _conv2d,
    Conv2DTranspose: _conv_transpose,
    UpSampling2D: _up_sampling,
    LayerNormalization: _layer_norm,
    Reshape: _reshape,
    Permute: _permute,
}


@dataclass
class OnnxModel:
    """A plan, its canonical weights and the graph's options; the ONNX graph is made on demand."""

    plan: Plan
    layout: str = "nhwc"
    opset: int = DEFAULT_OPSET
    weights: Weights = field(default_factory=dict)
    _session: Any = None

    def proto(self) -> Any:
        return build_graph(self.plan, self.weights, self.layout, self.opset)

    def session(self) -> Any:
        if self._session is None:
            self._session = ort_session(self.proto())
        return self._session


def ort_session(model: Any) -> Any:
    """An ONNX Runtime CPU session for a ModelProto."""
    ort = require("onnxruntime")
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run_session(session: Any, x: Any, layout: str) -> Any:
    """Feed an NHWC batch to a session whose ``input`` is in ``layout``; the output comes back
    in the Plan's layout (NHWC for image outputs)."""
    out = session.run(None, {"input": x if layout == "nhwc" else x.transpose(0, 3, 1, 2)})[0]
    return out.transpose(0, 2, 3, 1) if out.ndim == 4 and layout == "nchw" else out


_FOLDABLE = (Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose)


def batch_norm_folds(plan: Plan) -> dict[str, PlanLayer]:
    """Convolution name → the BatchNormalization that can be folded into it: the BN reads
    only the convolution, nothing else reads the convolution, and no activation sits between
    them (a convolution's fused activation comes before the BN)."""
    readers = plan.consumers()
    by_name = plan.by_name()
    folds = {}
    for step in plan.layers:
        if not isinstance(step.layer, BatchNormalization) or len(step.inputs) != 1:
            continue
        conv = by_name.get(step.inputs[0])
        if (
            conv is not None
            and isinstance(conv.layer, _FOLDABLE)
            and conv.layer.activation in (None, "linear")
            and [reader.name for reader in readers[conv.name]] == [step.name]
        ):
            folds[conv.name] = step
    return folds


def padding_folds(plan: Plan) -> dict[str, tuple[int, int, int, int]]:
    """Convolution name → the (top, left, bottom, right) zeros of the ZeroPadding2D it alone
    reads, to add to its own ``pads``: Keras's MobileNetV2 pads before each stride-2
    convolution (``correct_pad``), and a Conv's pads are zeros too — one node fewer each, as
    PyTorch's exporter writes it."""
    readers = plan.consumers()
    by_name = plan.by_name()
    folds = {}
    for step in plan.layers:
        if not isinstance(step.layer, Conv2D | DepthwiseConv2D | SeparableConv2D):
            continue
        pad = by_name.get(step.inputs[0])
        if (
            len(step.inputs) == 1
            and pad is not None
            and isinstance(pad.layer, ZeroPadding2D)
            and [reader.name for reader in readers[pad.name]] == [step.name]
        ):
            (top, bottom), (left, right) = pad.layer.padding
            folds[step.name] = (top, left, bottom, right)
    return folds


def _fold(plan: Plan, converted: dict[str, Any], np: Any) -> dict[str, str]:
    """Fold each inference BatchNormalization into its convolution, in ``converted`` (PyTorch
    layout): per output channel ``s = gamma / sqrt(variance + epsilon)``, the kernel times
    ``s``, the bias ``(bias − mean) · s + beta`` (float64, then float32). Returns the
    convolution weights' renames (``<conv>/folded_kernel``, ``<conv>/folded_bias``); the BN's
    weights leave ``converted``."""
    renames = {}
    by_name = plan.by_name()
    for conv, bn in batch_norm_folds(plan).items():
        layer, norm = by_name[conv].layer, bn.layer
        assert isinstance(norm, BatchNormalization)
        kernel = {DepthwiseConv2D: "depthwise_kernel", SeparableConv2D: "pointwise_kernel"}.get(
            type(layer), "kernel"
        )
        key = f"{conv}.{kernel}"
        weight = converted.pop(key).astype(np.float64)
        out = weight.shape[1 if isinstance(layer, Conv2DTranspose) else 0]
        take = {s: converted.pop(f"{bn.name}.{s}").astype(np.float64) for s in bn.weights}
        gamma = take.get("gamma", np.ones(out))
        beta = take.get("beta", np.zeros(out))
        scale = gamma / np.sqrt(take["moving_variance"] + norm.epsilon)
        bias = converted.pop(f"{conv}.bias", np.zeros(out)).astype(np.float64)
        shape = (1, out, 1, 1) if isinstance(layer, Conv2DTranspose) else (out, 1, 1, 1)
        converted[f"{conv}/folded_kernel"] = (weight * scale.reshape(shape)).astype(np.float32)
        converted[f"{conv}/folded_bias"] = ((bias - take["moving_mean"]) * scale + beta).astype(
            np.float32
        )
        renames.update({key: f"{conv}/folded_kernel", f"{conv}.bias": f"{conv}/folded_bias"})
    return renames


def build_graph(
    plan: Plan,
    weights: Weights,
    layout: str = "nhwc",
    opset: int = DEFAULT_OPSET,
    fold_batch_norm: bool = False,
    mark_layers: bool = False,
) -> Any:
    """The ONNX ModelProto for ``plan`` with ``weights`` (canonical), input ``input``, output
    ``output``, a dynamic batch dimension, in ``layout`` (``nhwc`` or ``nchw``).

    ``fold_batch_norm`` folds each inference BatchNormalization that directly follows a
    convolution into it (:func:`batch_norm_folds`): one node fewer each, what deployment wants
    (``specnet export`` does it). The file then no longer holds the canonical weights (the
    metadata ``folded_batch_norm`` names the folded layers), so the ONNX backend's own file, which
    must give its weights back, is written unfolded. It also folds a ZeroPadding2D into the
    convolution that alone reads it (:func:`padding_folds`), unless ``mark_layers``.

    ``mark_layers`` adds every layer's value as a graph output ``layer:<name>`` (Polygraphy's
    "mark all"), as the graph computes it: images NCHW, a Flatten's vector in (c, h, w) order
    where it is folded into the Dense after it (:func:`specnet.shapes.flatten_folds`)."""
    onnx = require("onnx")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    np = require("numpy")
    if layout not in ("nhwc", "nchw"):
        raise UsageError(f"layout must be nhwc or nchw, not {layout!r}")
    if opset < 13:
        raise UsageError(f"opset {opset} is too old: specnet needs 13 or newer (axis-wise Softmax)")
    weights = check_weights(plan, weights)
    converted = {
        c: _onnx_layout(c, apply_steps(weights[c], steps)) for c, _, steps, _ in conversions(plan)
    }
    folds = batch_norm_folds(plan) if fold_batch_norm else {}
    renames = _fold(plan, converted, np) if folds else {}
    folded = {bn.name for bn in folds.values()}
    padded = padding_folds(plan) if fold_batch_norm and not mark_layers else {}
    by_name = plan.by_name()
    folded_pads = {by_name[conv].inputs[0] for conv in padded}
    h, w, c = plan.input_shape
    nodes: list[Any] = []
    values = {"input": "input"}  # value name → the tensor that holds it
    if layout == "nhwc":
        nodes.append(
            helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2], name="to_nchw")
        )
        values["input"] = "nchw"
    in_order = flatten_folds(plan)[1]
    for step in plan.layers:
        layer = step.layer
        if step.name in folds:  # its folded bias is an input even where it had none
            layer = layer.model_copy(update={"use_bias": True})
        made = [] if step.name in folded | folded_pads else LAYERS[type(layer)](layer, step, opset)
        if step.name in padded:  # the first Conv takes the ZeroPadding2D's zeros
            op, extra, attrs = made[0]
            pads = [a + b for a, b in zip(attrs["pads"], padded[step.name], strict=True)]
            made[0] = (op, extra, {**attrs, "pads": pads})
        if step.name in in_order:  # a vector in Keras's (h, w, c) order
            made = [_TO_NHWC, *made]
        given = [values[name] for name in step.inputs]
        # a layer's first node takes its data inputs (a binary merge chain one more each), the
        # rest the node before
        current, pending = given[0], given[1:]
        seen: dict[str, int] = {}
        for i, (op, extra, attrs) in enumerate(made):
            repeat = seen[op] = seen.get(op, -1) + 1  # a merge chain repeats its op
            label = f"{step.name}/{op}" + (f"_{repeat}" if repeat else "")
            out = f"{step.name}:{i}"
            if op == "specnet.Gelu":
                nodes += _gelu(helper, current, out, step.name)
            elif op == "specnet.Gated":
                nodes += _gated(helper, current, out, step.name, attrs["ops"])
            else:
                data = [current, *pending] if op == "Concat" else [current, *pending[:1]]
                pending = [] if op == "Concat" else pending[1:]
                extra = [renames.get(name, name) for name in extra]
                nodes.append(helper.make_node(op, [*data, *extra], [out], name=label, **attrs))
            current = out
        values[step.name] = current
    marked = [f"layer:{step.name}" for step in plan.layers] if mark_layers else []
    for step, name in zip(plan.layers, marked, strict=False):
        nodes.append(helper.make_node("Identity", [values[step.name]], [name], name=name))
    current = values[plan.output.name]
    final = plan.output_shape
    if len(final) == 3 and layout == "nhwc":
        nodes.append(
            helper.make_node(
                "Transpose", [current], ["to_output"], perm=[0, 2, 3, 1], name="to_nhwc"
            )
        )
        current = "to_output"
    if current == "input" or any(current in node.input for node in nodes):
        # the output is a value another node reads, or the input itself (a lone Dropout):
        # a graph output must have a node of its own
        nodes.append(helper.make_node("Identity", [current], ["output"], name="output"))
    else:
        _rename_output(nodes, current, "output")
    shape_in = ["batch", h, w, c] if layout == "nhwc" else ["batch", c, h, w]
    out_shape = (
        ["batch", *final]
        if len(final) == 1 or layout == "nhwc"
        else ["batch", final[2], final[0], final[1]]
    )
    initializers = [
        numpy_helper.from_array(v, name=k)
        for k, v in converted.items()  # float32 already
    ]
    initializers += [numpy_helper.from_array(v, name=k) for k, v in _constants(np, nodes).items()]
    graph = helper.make_graph(
        nodes,
        plan.name,
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, shape_in)],
        [
            helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, out_shape),
            *(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in marked),
        ],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="specnet"
    )
    model.producer_version = __version__
    model.ir_version = min(model.ir_version, _ir_version(onnx, opset))
    stamp(model, plan, layout, "direct")
    if folded:
        prop = model.metadata_props.add()
        prop.key, prop.value = "folded_batch_norm", json.dumps(sorted(folded))
    return model


def _ir_version(onnx: Any, opset: int) -> int:
    """The IR version of the first release with ``opset`` (older runtimes refuse newer IRs)."""
    matches = [entry[1] for entry in onnx.helper.VERSION_TABLE if entry[2] == opset]
    return int(min(matches)) if matches else int(onnx.IR_VERSION)


def stamp(
    model: Any, plan: Plan, layout: str, via: str, class_names: list[str] | None = None
) -> None:
    """The metadata every exported file carries, the preprocessing included: what a user
    must do to an image to feed the model without reading specnet's data loader."""
    h, w, c = plan.input_shape
    order = {1: "grey", 3: "RGB", 4: "RGBA"}.get(c, f"{c} channels")
    dims = f"[batch, {h}, {w}, {c}]" if layout == "nhwc" else f"[batch, {c}, {h}, {w}]"
    entries = {
        "spec": plan.name,
        "specnet_version": __version__,
        "class_names": json.dumps(class_names or plan.spec.class_names or []),
        "layout": layout,
        "via": via,
        "preprocessing": json.dumps(
            {
                "channels": order,
                "resize": f"bilinear to {h}x{w} (height x width), Pillow's Image.resize",
                "scale": "pixel / 255 (8-bit), / 65535 (16-bit): float32 in [0, 1]",
                "mean": 0.0,
                "std": 1.0,
                "input": f"float32 {dims} ({layout.upper()})",
            }
        ),
    }
    del model.metadata_props[:]
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value


def _rename_output(nodes: list[Any], old: str, new: str) -> None:
    """The last value is the graph's output: no node reads it, so only its maker changes."""
    for node in nodes:
        node.output[:] = [new if name == old else name for name in node.output]


_GELU = {"gelu/sqrt2": math.sqrt(2.0), "gelu/one": 1.0, "gelu/half": 0.5}


def _gated(helper: Any, x: str, out: str, name: str, ops: list[Node]) -> list[Any]:
    """``x · f(x)`` (silu, hard_silu, mish below opset 18), f's nodes named ``<layer>/gate_<op>``
    and the product ``<layer>/gate_mul``."""
    nodes, current = [], x
    for i, (op, extra, attrs) in enumerate(ops):
        value = f"{out}/gate{i}"
        nodes.append(
            helper.make_node(op, [current, *extra], [value], name=f"{name}/gate_{op}", **attrs)
        )
        current = value
    nodes.append(helper.make_node("Mul", [x, current], [out], name=f"{name}/gate_mul"))
    return nodes


def _gelu(helper: Any, x: str, out: str, name: str) -> list[Any]:
    """Exact GELU for opsets before 20: 0.5 · x · (1 + erf(x / √2))."""
    return [
        helper.make_node("Div", [x, "gelu/sqrt2"], [f"{out}/div"], name=f"{name}/gelu_div"),
        helper.make_node("Erf", [f"{out}/div"], [f"{out}/erf"], name=f"{name}/gelu_erf"),
        helper.make_node(
            "Add", [f"{out}/erf", "gelu/one"], [f"{out}/add"], name=f"{name}/gelu_add"
        ),
        helper.make_node("Mul", [x, f"{out}/add"], [f"{out}/mul"], name=f"{name}/gelu_mul"),
        helper.make_node("Mul", [f"{out}/mul", "gelu/half"], [out], name=f"{name}/gelu_half"),
    ]


def _constants(np: Any, nodes: list[Any]) -> dict[str, Any]:
    """The constant initializers the nodes read, made from their names: GELU's scalars,
    ``average/N`` (an Average's count), ``scalar/X`` (a ReLU's ceiling), ``ones/C`` and
    ``zeros/C`` (a BatchNormalization without scale and center), ``pads/…`` and ``shape/…``
    (a Pad's and a Reshape's int64 amounts), ``scales/…`` (a Resize's float factors)."""
    read = sorted({name for node in nodes for name in node.input})
    constants = {key: np.asarray(value, np.float32) for key, value in _GELU.items() if key in read}
    for name in read:
        kind, _, value = name.partition("/")
        if kind in ("average", "scalar"):
            constants[name] = np.asarray(float(value), np.float32)
        elif kind in ("ones", "zeros"):
            constants[name] = getattr(np, kind)(int(value), np.float32)
        elif kind in ("pads", "shape"):
            constants[name] = np.asarray([int(v) for v in value.split(",")], np.int64)
        elif kind == "scales":
            constants[name] = np.asarray([float(v) for v in value.split(",")], np.float32)
    return constants


def _onnx_layout(key: str, array: Any) -> Any:
    """PyTorch layout → this graph's: Dense kernels back to (inputs, units) for Gemm."""
    return array.T if key.endswith(".kernel") and array.ndim == 2 else array


def read_onnx(path: str | Path) -> Any:
    """Load an ONNX file for reading, never following external-data paths out of its folder.

    Tensors stored beside the model (``location`` entries) are allowed only as plain relative
    paths inside the model's own folder; an absolute path or one with ``..`` could make
    specnet read any file on the machine, so it is refused with exit 2.
    """
    onnx = require("onnx")
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UsageError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    folder = path.resolve().parent
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        target = (folder / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(folder):
            raise UsageError(
                f"{path}: tensor {tensor.name!r} points outside the model's folder "
                f"({location!r}); refusing to read it"
            )
    return model


def reference_predict(model: Any, x: Any) -> Any:
    """Run an ONNX ModelProto in ONNX's reference evaluator (pure Python: an independent oracle)."""
    reference = require("onnx.reference")
    return reference.ReferenceEvaluator(model).run(None, {"input": x})[0]


class OnnxBackend:
    """Direct ONNX: builds with ``onnx``, predicts with ONNX Runtime; cannot train."""

    name = "onnx"
    native_file = "model.onnx"

    def build(self, plan: Plan, layout: str = "nhwc", opset: int = DEFAULT_OPSET) -> OnnxModel:
        require("onnx")
        return OnnxModel(plan, layout, opset)

    def set_weights(self, model: OnnxModel, plan: Plan, weights: Weights) -> None:
        model.weights = check_weights(plan, weights)
        model._session = None

    def get_weights(self, model: OnnxModel, plan: Plan) -> Weights:
        return dict(model.weights)

    def predict(self, model: OnnxModel, x: Any) -> Any:
        return run_session(model.session(), x, model.layout)

    def count_params(self, model: OnnxModel) -> int:
        return sum(int(v.size) for v in model.weights.values())

    def save_native(self, model: OnnxModel, path: Path, plan: Plan | None = None) -> None:
        atomic_write_bytes(path, model.proto().SerializeToString(), overwrite=True)

    def load_native(self, path: Path, plan: Plan) -> OnnxModel:
        onnx = require("onnx")
        proto = read_onnx(path)
        props = {p.key: p.value for p in proto.metadata_props}
        if "folded_batch_norm" in props:
            raise UsageError(
                f"{path}: its BatchNormalization layers are folded into the convolutions (an "
                "export for deployment), so its canonical weights cannot be read back; use the "
                "build's weights.safetensors"
            )
        inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
        weights = {
            c: apply_steps(_onnx_layout(c, inits[c]), back) for c, _, _, back in conversions(plan)
        }
        model = OnnxModel(plan, props.get("layout", "nhwc"), proto.opset_import[0].version)
        self.set_weights(model, plan, weights)
        return model

    def trainer(
        self,
        plan: Plan,
        train: Train,
        weights: Weights,
        options: TrainOptions = DEFAULT_OPTIONS,
    ) -> Any:
        raise UsageError("the direct ONNX backend cannot train; train with keras or torch")

    def emit_source(self, plan: Plan) -> str:
        raise UsageError(
            "the direct ONNX backend has no source form; `specnet export --onnx --via direct` "
            "writes its graph"
        )


BACKEND = OnnxBackend()
