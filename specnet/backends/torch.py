"""The PyTorch backend: an idiomatic ``torch.nn`` module per Plan, NCHW inside.

Each spec layer becomes one or more modules (:data:`LAYERS`): ``conv2d_pad`` (an explicit,
possibly asymmetric pad: Keras's ``same`` puts the odd row/column at the bottom/right, which
PyTorch's symmetric ``padding=`` cannot), ``conv2d`` (the parametrised module, so state_dict keys
read ``conv2d.weight``), ``conv2d_act``. The same table builds the live model and writes the
standalone source, so the two cannot drift apart. The live model is a ``_torch_modules.Graph``:
the modules registered flat under their names and a forward over the spec's layers (merges in
:data:`MERGE_SOURCE`, run by ``_torch_modules.MERGES``); the generated source writes that forward
out as a person would, ``x`` for a value only the next layer reads and a layer's name otherwise.

Layout conversions live in :func:`conversions`, the one place that maps canonical weights to
PyTorch's: conv kernels HWIO → OIHW (a transpose, never ``.T``); Dense kernels (in, out) → (out,
in); and for the first Dense after a Flatten its rows are permuted from Keras's (h, w, c) order
to PyTorch's (c, h, w). Conversions are data (a list of reshape/transpose steps), so the
generated source replays exactly what the backend does.
"""

from __future__ import annotations

import inspect
import math
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from specnet import __version__, _standalone
from specnet._frameworks import require
from specnet._io import atomic_write_bytes
from specnet.backends import (
    DEFAULT_OPTIONS,
    TrainOptions,
    call_source,
    py_literal,
    value_names,
)
from specnet.errors import UsageError
from specnet.layout import nchw_axis
from specnet.shapes import (
    Plan,
    PlanLayer,
    concat_axis,
    flatten_folds,
    out_channels,
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

__all__ = ["ACTIVATIONS", "BACKEND", "LAYERS", "TorchBackend", "apply_steps", "conversions"]

# (child name, torch.nn class name, positional args, keyword args)
Module = tuple[str, str, tuple[Any, ...], dict[str, Any]]

ACTIVATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "relu": ("ReLU", {}),
    "sigmoid": ("Sigmoid", {}),
    "tanh": ("Tanh", {}),
    "softmax": ("Softmax", {"dim": 1}),  # the channel axis in NCHW, the unit axis in (N, units)
    "linear": ("Identity", {}),
    "elu": ("ELU", {"alpha": 1.0}),
    "selu": ("SELU", {}),
    "gelu": ("GELU", {"approximate": "none"}),  # Keras's gelu is exact by default
    "softplus": ("Softplus", {}),
    "leaky_relu": ("LeakyReLU", {"negative_slope": 0.2}),  # Keras's slope, not PyTorch's 0.01
    "relu6": ("ReLU6", {}),
    "silu": ("SiLU", {}),
    "swish": ("SiLU", {}),
    "hard_sigmoid": ("Hardsigmoid", {}),  # relu6(x + 3) / 6, Keras 3's (not Keras 2's 0.2·x + 0.5)
    "hard_silu": ("Hardswish", {}),
    "hard_swish": ("Hardswish", {}),
    "mish": ("Mish", {}),
    "exponential": ("Exp", {}),  # no torch.nn class: _torch_modules.Exp, torch.exp in the source
}


def _activation_module(name: str, activation: str | None) -> list[Module]:
    if activation is None or activation == "linear":
        return []
    cls, kwargs = ACTIVATIONS[activation]
    return [(name, cls, (), kwargs)]


def _pads(step: PlanLayer, window: tuple[int, int], stride: tuple[int, int]) -> tuple[int, ...]:
    """(left, right, top, bottom) for Keras ``same`` padding on this layer's input."""
    top, bottom = same_padding(step.input_shape[0], window[0], stride[0])
    left, right = same_padding(step.input_shape[1], window[1], stride[1])
    return (left, right, top, bottom)


def _conv2d(layer: Conv2D | DepthwiseConv2D | SeparableConv2D, step: PlanLayer) -> list[Module]:
    """Conv2d; a DepthwiseConv2D is one with a group per input channel, a SeparableConv2D
    that (``<name>_depthwise``, no bias) then a 1×1 Conv2d (``<name>``, the bias)."""
    kh, kw = layer.kernel_size
    dh, dw = layer.dilation_rate
    modules: list[Module] = []
    padding: tuple[int, int] = (0, 0)
    if layer.padding == "same":
        left, right, top, bottom = _pads(
            step, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), layer.strides
        )
        if (left, top) == (right, bottom):
            padding = (top, left)
        else:
            modules.append((f"{step.name}_pad", "ZeroPad2d", ((left, right, top, bottom),), {}))
    c = step.input_shape[-1]
    conv = {
        "kernel_size": layer.kernel_size,
        "stride": layer.strides,
        "padding": padding,
        "dilation": layer.dilation_rate,
        "groups": 1 if isinstance(layer, Conv2D) else c,
        "bias": layer.use_bias,
    }
    if isinstance(layer, SeparableConv2D):
        middle = c * layer.depth_multiplier
        modules.append((f"{step.name}_depthwise", "Conv2d", (c, middle), {**conv, "bias": False}))
        pointwise = {"kernel_size": (1, 1), "bias": layer.use_bias}
        modules.append((step.name, "Conv2d", (middle, layer.filters), pointwise))
    else:
        modules.append((step.name, "Conv2d", (c, out_channels(layer, c)), conv))
    return modules + _activation_module(f"{step.name}_act", layer.activation)


def _conv_transpose(layer: Conv2DTranspose, step: PlanLayer) -> list[Module]:
    """ConvTranspose2d, cut to Keras's output (:func:`specnet.shapes.transpose_crops`): its
    symmetric ``padding`` cuts both ends, ``output_padding`` adds rows at the end, and a
    slice (``<name>_crop``, the pseudo-class ``Crop``) cuts what is left over."""
    padding, extra, rest = [], [], []
    for before, end in transpose_crops(layer, step.input_shape):
        cut = 0 if end < 0 else min(before, end)
        padding.append(cut)
        extra.append(max(-end, 0))
        rest.append((before - cut, max(end, 0) - cut))
    conv = {
        "kernel_size": layer.kernel_size,
        "stride": layer.strides,
        "padding": tuple(padding),
        "output_padding": tuple(extra),
        "bias": layer.use_bias,
    }
    modules: list[Module] = [
        (step.name, "ConvTranspose2d", (step.input_shape[-1], layer.filters), conv)
    ]
    (top, bottom), (left, right) = rest
    if top or bottom or left or right:
        edges = {"top": top, "bottom": bottom, "left": left, "right": right}
        modules.append((f"{step.name}_crop", "Crop", (), edges))
    return modules + _activation_module(f"{step.name}_act", layer.activation)


def _up_sampling(layer: UpSampling2D, step: PlanLayer) -> list[Module]:
    options: dict[str, Any] = {"scale_factor": tuple(float(n) for n in layer.size)}
    if layer.interpolation == "bilinear":  # half-pixel centres, as TensorFlow's resize
        options.update(mode="bilinear", align_corners=False)
    return [(step.name, "Upsample", (), options)]


def _layer_norm(layer: LayerNormalization, step: PlanLayer) -> list[Module]:
    """nn.LayerNorm over the last axis: a vector's units, or (``LayerNormChannels``) an NCHW
    image's channels, which it moves last and back."""
    cls = "LayerNormChannels" if len(step.input_shape) == 3 else "LayerNorm"
    options = {"eps": layer.epsilon, "elementwise_affine": layer.scale, "bias": layer.center}
    return [(step.name, cls, (step.input_shape[-1],), options)]


def _permute(layer: Permute, step: PlanLayer) -> list[Module]:
    return [(step.name, "PermuteHWC", (), {"dims": tuple(layer.dims)})]


def _reshape(layer: Reshape, step: PlanLayer) -> list[Module]:
    target = reshape_target(layer, step.input_shape)
    return [(step.name, "ReshapeHWC", (), {"shape": target})]


def _relu(layer: ReLU, step: PlanLayer) -> list[Module]:
    """Keras's ReLU layer as the stock module that computes it."""
    slope, ceiling = layer.negative_slope, layer.max_value
    if slope == 0 and ceiling is None:
        return [(step.name, "ReLU", (), {})]
    if slope == 0 and ceiling == 6:
        return [(step.name, "ReLU6", (), {})]
    if slope == 0:
        return [(step.name, "Hardtanh", (0.0, float(ceiling)), {})]  # type: ignore[arg-type]
    if ceiling is None:
        return [(step.name, "LeakyReLU", (slope,), {})]
    # both: the leak below 0, then the ceiling (min(leaky(x), max_value) is Keras's formula)
    return [
        (step.name, "LeakyReLU", (slope,), {}),
        (f"{step.name}_max", "Hardtanh", (-math.inf, float(ceiling)), {}),
    ]


def _activation(layer: Activation, step: PlanLayer) -> list[Module]:
    return _activation_module(step.name, layer.activation) or [(step.name, "Identity", (), {})]


def _max_pool(layer: MaxPool, step: PlanLayer) -> list[Module]:
    strides = layer.strides or layer.pool_size
    modules: list[Module] = []
    padding: tuple[int, int] = (0, 0)
    if layer.padding == "same":
        left, right, top, bottom = _pads(step, layer.pool_size, strides)
        # MaxPool2d pads with -inf itself, symmetrically, up to half the window; `same` never
        # pads more than window - 1 in all ((out - 1) * stride < input), so symmetric fits
        if (left, top) == (right, bottom):
            padding = (top, left)
        else:
            pad = ((left, right, top, bottom), -math.inf)
            modules.append((f"{step.name}_pad", "ConstantPad2d", pad, {}))
    pool = {"kernel_size": layer.pool_size, "stride": strides, "padding": padding}
    return [*modules, (step.name, "MaxPool2d", (), pool)]


def _average_pool(layer: AveragePooling2D, step: PlanLayer) -> list[Module]:
    strides = layer.strides or layer.pool_size
    padding: tuple[int, int] = (0, 0)
    if layer.padding == "same":
        left, right, top, bottom = _pads(step, layer.pool_size, strides)
        if (left, top) != (right, bottom):  # AvgPool2d pads symmetrically only
            pads = {"kernel_size": layer.pool_size, "stride": strides,
                    "pads": (left, right, top, bottom)}  # fmt: skip
            return [(step.name, "AvgPoolValid", (), pads)]
        padding = (top, left)
    # count_include_pad=False: a border window averages its valid elements only, as in Keras
    pool = {"kernel_size": layer.pool_size, "stride": strides, "padding": padding,
            "count_include_pad": False}  # fmt: skip
    return [(step.name, "AvgPool2d", (), pool)]


def _dropout(layer: Dropout, step: PlanLayer) -> list[Module]:
    return [(step.name, "Dropout", (layer.rate,), {})]


def _flatten(layer: Flatten, step: PlanLayer) -> list[Module]:
    return [(step.name, "Flatten", (), {})]


def _dense(layer: Dense, step: PlanLayer) -> list[Module]:
    linear = (step.name, "Linear", (step.input_shape[0], layer.units), {"bias": layer.use_bias})
    return [linear, *_activation_module(f"{step.name}_act", layer.activation)]


def _softmax(layer: Softmax, step: PlanLayer) -> list[Module]:
    return [(step.name, "Softmax", (), {"dim": 1})]


def _batch_norm(layer: BatchNormalization, step: PlanLayer) -> list[Module]:
    cls = "BatchNorm2d" if len(step.input_shape) == 3 else "BatchNorm1d"
    # PyTorch's momentum weighs the batch, Keras's the moving average
    momentum = round(1.0 - layer.momentum, 12)
    options = {"eps": layer.epsilon, "momentum": momentum, "affine": layer.scale}
    return [(step.name, cls, (step.input_shape[-1],), options)]


def _rescaling(layer: Rescaling, step: PlanLayer) -> list[Module]:
    return [(step.name, "Rescale", (), {"scale": layer.scale, "offset": layer.offset})]


def _zero_padding(layer: ZeroPadding2D, step: PlanLayer) -> list[Module]:
    (top, bottom), (left, right) = layer.padding
    return [(step.name, "ZeroPad2d", ((left, right, top, bottom),), {})]


def _global_pool(
    layer: GlobalAveragePooling2D | GlobalMaxPooling2D, step: PlanLayer
) -> list[Module]:
    cls = "AdaptiveAvgPool2d" if isinstance(layer, GlobalAveragePooling2D) else "AdaptiveMaxPool2d"
    pool: Module = (step.name, cls, (1,), {})
    return [pool] if layer.keepdims else [pool, (f"{step.name}_flatten", "Flatten", (), {})]


def _merge(layer: LayerBase, step: PlanLayer) -> list[Module]:
    return []  # no module: the forward combines its inputs (MERGES)


LAYERS: dict[type[LayerBase], Callable[[Any, PlanLayer], list[Module]]] = {
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
    Add: _merge,
    Subtract: _merge,
    Multiply: _merge,
    Average: _merge,
    Maximum: _merge,
    Concatenate: _merge,
    SeparableConv2D: _conv2d,
    Conv2DTranspose: _conv_transpose,
    UpSampling2D: _up_sampling,
    LayerNormalization: _layer_norm,
    Reshape: _reshape,
    Permute: _permute,
}


def _concatenate_dim(step: PlanLayer) -> int:
    assert isinstance(step.layer, Concatenate)
    rank = len(step.input_shape)
    return nchw_axis(concat_axis(step.layer, rank), rank)


#: merge kind → the forward's expression over its inputs' variables, as generated source writes
#: it (the live model runs the same operations: ``_torch_modules.MERGES``)
MERGE_SOURCE: dict[type[LayerBase], Callable[[list[str], PlanLayer], str]] = {
    Add: lambda xs, step: " + ".join(xs),
    Subtract: lambda xs, step: f"{xs[0]} - {xs[1]}",
    Multiply: lambda xs, step: " * ".join(xs),
    Average: lambda xs, step: f"({' + '.join(xs)}) / {len(xs)}",
    Maximum: lambda xs, step: _maximum(xs),
    Concatenate: lambda xs, step: f"torch.cat([{', '.join(xs)}], dim={_concatenate_dim(step)})",
}


def _maximum(xs: list[str]) -> str:
    return xs[0] if len(xs) == 1 else f"torch.maximum({_maximum(xs[:-1])}, {xs[-1]})"


# ----------------------------------------------------------------------------- weights

Step = tuple[str, tuple[int, ...]]  # ("reshape", shape) or ("transpose", axes)


#: BatchNormalization's and LayerNormalization's variables → their PyTorch parameters and buffers
_NORMALIZATION = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


def conversions(plan: Plan) -> list[tuple[str, str, list[Step], list[Step]]]:
    """(canonical key, state_dict key, steps canonical → torch, steps torch → canonical), for
    every weight of :data:`specnet.shapes.WEIGHTS`, in its order."""
    images = flatten_folds(plan)[0]
    table: list[tuple[str, str, list[Step], list[Step]]] = []
    for step in plan.layers:
        layer, name = step.layer, step.name
        for suffix in step.weights:
            key = f"{name}.{suffix}"
            if isinstance(layer, BatchNormalization | LayerNormalization):
                table.append((key, f"{name}.{_NORMALIZATION[suffix]}", [], []))
            elif suffix == "bias":
                table.append((key, f"{name}.bias", [], []))
            elif isinstance(layer, Conv2D | Conv2DTranspose) or suffix == "pointwise_kernel":
                # HWIO → OIHW; a transposed kernel's (h, w, out, in) → PyTorch's (in, out, h, w)
                table.append(
                    (
                        key,
                        f"{name}.weight",
                        [("transpose", (3, 2, 0, 1))],
                        [("transpose", (2, 3, 1, 0))],
                    )
                )
            elif isinstance(layer, DepthwiseConv2D | SeparableConv2D):
                # (h, w, c, m) → one group per channel: (c·m, 1, h, w), output c·m = i·m + j
                (kh, kw), c, m = layer.kernel_size, step.input_shape[-1], layer.depth_multiplier
                grouped: list[Step] = [
                    ("reshape", (kh, kw, c * m, 1)),
                    ("transpose", (2, 3, 0, 1)),
                ]
                back: list[Step] = [("transpose", (2, 3, 0, 1)), ("reshape", (kh, kw, c, m))]
                module = f"{name}_depthwise" if isinstance(layer, SeparableConv2D) else name
                table.append((key, f"{module}.weight", grouped, back))
            elif isinstance(layer, Dense) and name in images:
                (h, w, c), units = images[name], layer.units
                to_torch: list[Step] = [
                    ("reshape", (h, w, c, units)),
                    ("transpose", (2, 0, 1, 3)),
                    ("reshape", (c * h * w, units)),
                    ("transpose", (1, 0)),
                ]
                to_canonical: list[Step] = [
                    ("transpose", (1, 0)),
                    ("reshape", (c, h, w, units)),
                    ("transpose", (1, 2, 0, 3)),
                    ("reshape", (h * w * c, units)),
                ]
                table.append((key, f"{name}.weight", to_torch, to_canonical))
            else:
                assert isinstance(layer, Dense), f"no PyTorch layout for {key}"
                flip: list[Step] = [("transpose", (1, 0))]
                table.append((key, f"{name}.weight", flip, flip))
    return table


def apply_steps(array: Any, steps: list[Step]) -> Any:
    """Replay a conversion (reshape/transpose steps) on a NumPy array; C-contiguous result."""
    np = require("numpy")
    for op, arg in steps:
        array = {"reshape": np.reshape, "transpose": np.transpose}[op](array, arg)
    return np.ascontiguousarray(array)


def _render(expression: str, steps: list[Step]) -> str:
    return expression + "".join(f".{op}{arg}" for op, arg in steps)


# ----------------------------------------------------------------------------- the backend


def _torch() -> Any:
    return require("torch")


def _layer_modules(plan: Plan) -> list[tuple[PlanLayer, list[Module]]]:
    """Each spec layer with its modules; a Flatten that keeps Keras's (h, w, c) order (see
    :func:`specnet.shapes.flatten_folds`) is the pseudo-class ``FlattenHWC``."""
    in_order = flatten_folds(plan)[1]
    return [
        (
            step,
            [
                (name, "FlattenHWC" if name in in_order else cls, args, kwargs)
                for name, cls, args, kwargs in LAYERS[type(step.layer)](step.layer, step)
            ],
        )
        for step in plan.layers
    ]


def _modules(plan: Plan) -> list[Module]:
    return [module for _, modules in _layer_modules(plan) for module in modules]


def _steps(plan: Plan) -> list[Any]:
    """The live forward's steps (``_torch_modules.Step``): inputs, merge, children, and the
    values to free after each (those no later layer reads; the output is returned)."""
    from specnet.backends._torch_modules import Step

    last_use = {name: step.index for step in plan.layers for name in step.inputs}
    steps = []
    for step, modules in _layer_modules(plan):
        merge = step.layer.KIND if step.layer.MERGE else None
        dim = _concatenate_dim(step) if isinstance(step.layer, Concatenate) else 0
        release = tuple(n for n in dict.fromkeys(step.inputs) if last_use[n] == step.index)
        children = tuple(module[0] for module in modules)
        steps.append(Step(step.name, step.inputs, merge, dim, children, release))
    return steps


def memory_format(plan: Plan) -> Any:
    """The memory format a plan's model runs in on CPU: channels-last, unless it has a
    depthwise convolution.

    Channels-last: PyTorch 2.13's CPU convolutions and pooling run faster on NHWC memory, and
    an NHWC batch viewed as NCHW (predict's and the trainer's permute) is already channels-last:
    no copy on input. Its depthwise (grouped) convolutions are the exception, several times
    slower in channels-last than on contiguous NCHW (benchmarks/bench_applications.py,
    MobileNetV2); a network with one runs contiguous, its input copied once at the top."""
    torch = _torch()
    depthwise = any(
        isinstance(step.layer, DepthwiseConv2D | SeparableConv2D) for step in plan.layers
    )
    return torch.contiguous_format if depthwise else torch.channels_last


class TorchBackend:
    """PyTorch. Models are ``_torch_modules.Graph`` taking NCHW; :meth:`predict` takes NHWC."""

    name = "torch"
    native_file = "model.torch.safetensors"

    def build(self, plan: Plan) -> Any:
        torch = _torch()
        from specnet.backends._torch_modules import REPLACEMENTS, Graph, OneChannelConv2d

        def make(cls: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if cls == "Conv2d" and args[0] == 1:  # one input channel (a grey image's)
                return OneChannelConv2d(*args, **kwargs)
            return (REPLACEMENTS.get(cls) or getattr(torch.nn, cls))(*args, **kwargs)

        children = OrderedDict(
            (name, make(cls, args, kwargs)) for name, cls, args, kwargs in _modules(plan)
        )
        fmt = memory_format(plan)
        model = Graph(children, _steps(plan), fmt).to(memory_format=fmt)  # type: ignore[call-overload]
        for module in model.modules():  # see _torch_modules.OneChannelConv2d
            if hasattr(module, "memory_format"):
                module.memory_format = fmt
            if isinstance(module, OneChannelConv2d):
                module.weight.data = module.weight.data.clone(memory_format=torch.contiguous_format)
        return model.eval()

    def set_weights(self, model: Any, plan: Plan, weights: Weights) -> None:
        torch = _torch()
        weights = check_weights(plan, weights)
        state = {
            key: torch.from_numpy(apply_steps(weights[canonical], steps))
            for canonical, key, steps, _ in conversions(plan)
        }
        # batch norm's step counter is PyTorch's alone (canonical weights have none): kept
        state.update(
            {k: v for k, v in model.state_dict().items() if k.endswith(".num_batches_tracked")}
        )
        model.load_state_dict(state)  # strict: every parameter, nothing else

    def state_keys(self, plan: Plan) -> dict[str, str]:
        """Canonical weight name → the model's ``state_dict`` key holding it."""
        return {canonical: key for canonical, key, _, _ in conversions(plan)}

    def get_weights(self, model: Any, plan: Plan) -> Weights:
        state = model.state_dict()
        return {
            canonical: apply_steps(state[key].detach().cpu().numpy(), steps)
            for canonical, key, _, steps in conversions(plan)
        }

    def predict(self, model: Any, x: Any) -> Any:
        torch = _torch()
        model.eval()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.inference_mode():
            batch = torch.from_numpy(x).permute(0, 3, 1, 2)  # channels-last view, no copy
            out = model(batch.to(device))
            if out.ndim == 4:
                out = out.permute(0, 2, 3, 1)
            return out.cpu().contiguous().numpy()

    def count_params(self, model: Any) -> int:
        """Parameters and batch norm's moving statistics, as Keras's ``count_params`` counts."""
        statistics = (
            b
            for name, b in model.named_buffers()
            if name.endswith((".running_mean", ".running_var"))
        )
        return sum(int(p.numel()) for p in model.parameters()) + sum(
            int(b.numel()) for b in statistics
        )

    def save_native(self, model: Any, path: Path, plan: Plan | None = None) -> None:
        save = require("safetensors.torch").save
        state = {key: value.contiguous() for key, value in model.state_dict().items()}
        atomic_write_bytes(path, save(state, metadata={"format": "pt"}), overwrite=True)

    def load_native(self, path: Path, plan: Plan) -> Any:
        load = require("safetensors.torch").load
        model = self.build(plan)
        model.load_state_dict(load(Path(path).read_bytes()))  # strict: another network fails
        return model

    def trainer(
        self,
        plan: Plan,
        train: Train,
        weights: Weights,
        options: TrainOptions = DEFAULT_OPTIONS,
    ) -> Any:
        """A trainer for the training plan (see :mod:`specnet.backends.torch_train`)."""
        from specnet.backends.torch_train import TorchTrainer

        if options.strategy is not None:
            raise UsageError("--strategy is Keras's; PyTorch runs several workers with --nproc")
        return TorchTrainer(self, plan, train, weights, options)

    def emit_source(self, plan: Plan) -> str:
        class_name = "".join(part.capitalize() for part in plan.name.replace("-", "_").split("_"))
        layered = _layer_modules(plan)
        names = value_names(plan)
        inits, calls = [], []
        shapes = _output_shapes(plan)
        for step, modules in layered:
            out, given = names[step.name], [names[name] for name in step.inputs]
            if step.layer.MERGE:
                expression = MERGE_SOURCE[type(step.layer)](given, step)
                calls.append(f"        {out} = {expression}  # {step.name} {shapes[step.name]}")
            for i, (name, cls, args, kwargs) in enumerate(modules):
                comment = f"  # {shapes[name]}" if name in shapes else ""
                value = out if i else given[0]
                if cls in _FUNCTIONS:  # no torch.nn class: a function call, no module
                    function = _FUNCTIONS[cls]
                    called = function if isinstance(function, str) else function.__name__
                    options = "".join(f", {k}={v!r}" for k, v in kwargs.items())
                    calls.append(f"        {out} = {called}({value}{options}){comment}")
                    continue
                # a stock module run on the image's channels moved last (see _CHANNELS_LAST)
                stock, before, after = _CHANNELS_LAST.get(cls, (cls, "", ""))
                call = call_source(stock, args, kwargs, _DEFAULTS.get(stock, {}))
                inits.append(f"        self.{name} = nn.{call}")
                calls.append(f"        {out} = self.{name}({value}{before}){after}{comment}")
        loads = [
            f"    model.{key}.copy_(torch.from_numpy(np.ascontiguousarray("
            f"{_render(f'weights[{py_literal(canonical)}]', steps)})))"
            for canonical, key, steps, _ in conversions(plan)
        ]
        h, w, c = plan.input_shape
        last, last_cls = (layered[-1][1] or [("", "", (), {})])[-1][:2]  # (a merge: none)
        squash = {"Softmax": "nn.CrossEntropyLoss", "Sigmoid": "nn.BCEWithLogitsLoss"}
        arg = names["input"]
        if last_cls in squash:  # expose the logits: PyTorch's losses take logits
            head = _TORCH_HEAD.format(
                last=last,
                loss=squash[last_cls],
                what=last_cls.lower(),
                calls="\n".join(calls[:-1]),
                arg=arg,
            )
            usage = (
                f"logits = model.logits(images)  # train on these: {squash[last_cls]}"
                f"()(logits, labels)\n    "
            )
        else:
            head = _TORCH_PLAIN.format(calls="\n".join(calls), arg=arg)
            usage = ""
        # the standalone functions the forward calls (an asymmetric `same` average pool)
        used = {cls for _, modules in layered for _, cls, _, _ in modules}
        helpers = "".join(
            "\n\n" + inspect.getsource(function)
            for cls, function in _FUNCTIONS.items()
            if cls in used and not isinstance(function, str)
        )
        return _TORCH_SOURCE.format(
            name=plan.name,
            version=__version__,
            class_name=class_name or "Net",
            inits="\n".join(inits),
            head=head,
            usage=usage,
            input_nchw=f"(N, {c}, {h}, {w})",
            reader=inspect.getsource(_standalone.read_safetensors),
            helpers=helpers,
            loads="\n".join(loads) or "    pass",
        )


# module pseudo-classes that are no torch.nn class (``_torch_modules.REPLACEMENTS`` runs them):
# the generated source calls the function instead, PyTorch's by name or specnet's own, whose
# text the source then carries
_FUNCTIONS: dict[str, str | Callable[..., Any]] = {
    "Exp": "torch.exp",
    "AvgPoolValid": _standalone.average_pool_valid,
    "Rescale": _standalone.rescale,
    "ReshapeHWC": _standalone.reshape_channels_last,
    "PermuteHWC": _standalone.permute_channels_last,
    "Crop": _standalone.crop,
}

_TO_NHWC = ".permute(0, 2, 3, 1)"
# pseudo-classes that are a stock module run on an NCHW image's channels moved last: (the
# stock class, the input's permute, the output's) — the Flatten keeping Keras's (h, w, c) order
# (``_torch_modules.FlattenHWC``) and a LayerNorm over an image's channels
_CHANNELS_LAST: dict[str, tuple[str, str, str]] = {
    "FlattenHWC": ("Flatten", _TO_NHWC, ""),
    "LayerNormChannels": ("LayerNorm", _TO_NHWC, ".permute(0, 3, 1, 2)"),
}

# torch.nn's own defaults: the generated source leaves these out, as a person would.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "Conv2d": {
        "stride": (1, 1),
        "padding": (0, 0),
        "dilation": (1, 1),
        "groups": 1,
        "bias": True,
    },
    "MaxPool2d": {"padding": (0, 0)},
    "AvgPool2d": {"padding": (0, 0), "count_include_pad": True},
    "Linear": {"bias": True},
    "ConvTranspose2d": {
        "stride": (1, 1),
        "padding": (0, 0),
        "output_padding": (0, 0),
        "bias": True,
    },
    "LayerNorm": {"eps": 1e-5, "elementwise_affine": True, "bias": True},
    "Upsample": {"mode": "nearest"},
    "BatchNorm2d": {"eps": 1e-5, "momentum": 0.1, "affine": True},
    "BatchNorm1d": {"eps": 1e-5, "momentum": 0.1, "affine": True},
    "ELU": {"alpha": 1.0},
    "GELU": {"approximate": "none"},
}


def _output_shapes(plan: Plan) -> dict[str, str]:
    """Child module name → its output shape in NCHW, for the comments of the generated source."""
    out = {}
    for step in plan.layers:
        shape = step.output_shape
        nchw = (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape
        text = "(N, " + ", ".join(str(n) for n in nchw) + ")"
        modules = LAYERS[type(step.layer)](step.layer, step)
        last = modules[-1][0] if modules else step.name  # a merge: its expression's comment
        out[last] = text  # only the module that finishes the spec layer gets a comment
    return out


_TORCH_SOURCE = '''\
"""{name}: a PyTorch model generated by specnet {version}. Plain PyTorch: read it, copy it, own it.

    model = {class_name}()
    load_canonical_weights(model, "weights.safetensors")
    model.eval()
    probabilities = model(images)  # images: {input_nchw}, float32, channels first
    {usage}"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


class {class_name}(nn.Module):
    """Input {input_nchw} (NCHW); Keras's `same` padding is explicit where it is asymmetric."""

    def __init__(self) -> None:
        super().__init__()
{inits}

{head}

{reader}{helpers}

@torch.no_grad()
def load_canonical_weights(model: {class_name}, path: str | Path) -> None:
    """Load specnet's canonical (Keras-layout) weights: conv kernels HWIO -> OIHW, Dense kernels
    transposed, and the Dense after a Flatten has its rows reordered from (h, w, c) to (c, h, w)."""
    weights = read_safetensors(path)
{loads}
'''

_TORCH_PLAIN = """\
    def forward(self, {arg}: torch.Tensor) -> torch.Tensor:
{calls}
        return x
"""

_TORCH_HEAD = '''\
    def logits(self, {arg}: torch.Tensor) -> torch.Tensor:
        """The scores before the final {what}: train on these with {loss}, which
        applies the {what} itself (on forward()'s output it would apply it twice)."""
{calls}
        return x

    def forward(self, {arg}: torch.Tensor) -> torch.Tensor:
        """Probabilities, as the Keras model and the ONNX export compute them."""
        return self.{last}(self.logits({arg}))
'''

BACKEND = TorchBackend()
