"""The PyTorch backend: an idiomatic ``torch.nn`` module per Plan, NCHW inside.

Each spec layer becomes one or more modules (:data:`LAYERS`): ``conv2d_pad`` (an explicit,
possibly asymmetric pad: Keras's ``same`` puts the odd row/column at the bottom/right, which
PyTorch's symmetric ``padding=`` cannot), ``conv2d`` (the parametrised module, so state_dict keys
read ``conv2d.weight``), ``conv2d_act``. The same table builds the live ``nn.Sequential`` and
writes the standalone source, so the two cannot drift apart.

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

from specnet import __version__
from specnet._frameworks import require
from specnet._io import atomic_write_bytes
from specnet.backends import DEFAULT_OPTIONS, TrainOptions, _standalone, call_source, py_literal
from specnet.errors import UsageError
from specnet.shapes import Plan, PlanLayer, flatten_folds, output_flatten, same_padding
from specnet.spec import (
    Activation,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    LayerBase,
    MaxPool,
    Softmax,
    Train,
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


def _conv2d(layer: Conv2D, step: PlanLayer) -> list[Module]:
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
    conv = {
        "kernel_size": layer.kernel_size,
        "stride": layer.strides,
        "padding": padding,
        "dilation": layer.dilation_rate,
        "bias": layer.use_bias,
    }
    modules.append((step.name, "Conv2d", (step.input_shape[-1], layer.filters), conv))
    return modules + _activation_module(f"{step.name}_act", layer.activation)


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


def _dropout(layer: Dropout, step: PlanLayer) -> list[Module]:
    return [(step.name, "Dropout", (layer.rate,), {})]


def _flatten(layer: Flatten, step: PlanLayer) -> list[Module]:
    return [(step.name, "Flatten", (), {})]


def _dense(layer: Dense, step: PlanLayer) -> list[Module]:
    linear = (step.name, "Linear", (step.input_shape[0], layer.units), {"bias": layer.use_bias})
    return [linear, *_activation_module(f"{step.name}_act", layer.activation)]


def _softmax(layer: Softmax, step: PlanLayer) -> list[Module]:
    return [(step.name, "Softmax", (), {"dim": 1})]


LAYERS: dict[type[LayerBase], Callable[[Any, PlanLayer], list[Module]]] = {
    Conv2D: _conv2d,
    Activation: _activation,
    MaxPool: _max_pool,
    Dropout: _dropout,
    Flatten: _flatten,
    Dense: _dense,
    Softmax: _softmax,
}

# ----------------------------------------------------------------------------- weights

Step = tuple[str, tuple[int, ...]]  # ("reshape", shape) or ("transpose", axes)


def conversions(plan: Plan) -> list[tuple[str, str, list[Step], list[Step]]]:
    """(canonical key, state_dict key, steps canonical → torch, steps torch → canonical)."""
    images = flatten_folds(plan)[0]
    table: list[tuple[str, str, list[Step], list[Step]]] = []
    for step in plan.layers:
        layer, name = step.layer, step.name
        if isinstance(layer, Conv2D):
            table.append(
                (
                    f"{name}.kernel",
                    f"{name}.weight",
                    [("transpose", (3, 2, 0, 1))],
                    [("transpose", (2, 3, 1, 0))],
                )
            )
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
            table.append((f"{name}.kernel", f"{name}.weight", to_torch, to_canonical))
        elif isinstance(layer, Dense):
            flip: list[Step] = [("transpose", (1, 0))]
            table.append((f"{name}.kernel", f"{name}.weight", flip, flip))
        else:
            continue
        if layer.use_bias:
            table.append((f"{name}.bias", f"{name}.bias", [], []))
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


def _modules(plan: Plan) -> list[Module]:
    output = output_flatten(plan)
    return [
        (name, "FlattenHWC" if name == output else cls, args, kwargs)
        for step in plan.layers
        for name, cls, args, kwargs in LAYERS[type(step.layer)](step.layer, step)
    ]


class TorchBackend:
    """PyTorch. Models are ``nn.Sequential`` taking NCHW; :meth:`predict` takes NHWC."""

    name = "torch"
    native_file = "model.torch.safetensors"

    def build(self, plan: Plan) -> Any:
        torch = _torch()
        from specnet.backends._torch_modules import REPLACEMENTS

        children = OrderedDict(
            (name, (REPLACEMENTS.get(cls) or getattr(torch.nn, cls))(*args, **kwargs))
            for name, cls, args, kwargs in _modules(plan)
        )
        # channels-last: convolution and pooling on CPU run faster on NHWC memory, and an NHWC
        # batch viewed as NCHW (predict's permute) is already channels-last: no copy on input
        model = torch.nn.Sequential(children).to(memory_format=torch.channels_last)
        return model.eval()

    def set_weights(self, model: Any, plan: Plan, weights: Weights) -> None:
        torch = _torch()
        weights = check_weights(plan, weights)
        state = {
            key: torch.from_numpy(apply_steps(weights[canonical], steps))
            for canonical, key, steps, _ in conversions(plan)
        }
        model.load_state_dict(state)  # strict: every parameter, nothing else

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
        return sum(int(p.numel()) for p in model.parameters())

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
        modules = _modules(plan)
        inits, calls = [], []
        shapes = _output_shapes(plan)
        for name, cls, args, kwargs in modules:
            # the output's Flatten reads the image in Keras's (h, w, c) order (see FlattenHWC)
            hwc = cls == "FlattenHWC"
            call = call_source("Flatten" if hwc else cls, args, kwargs, _DEFAULTS.get(cls, {}))
            inits.append(f"        self.{name} = nn.{call}")
            comment = f"  # {shapes[name]}" if name in shapes else ""
            given = "x.permute(0, 2, 3, 1)" if hwc else "x"
            calls.append(f"        x = self.{name}({given}){comment}")
        loads = [
            f"    model.{key}.copy_(torch.from_numpy(np.ascontiguousarray("
            f"{_render(f'weights[{py_literal(canonical)}]', steps)})))"
            for canonical, key, steps, _ in conversions(plan)
        ]
        h, w, c = plan.input_shape
        last, last_cls = modules[-1][:2]  # every spec layer makes a module (at least an Identity)
        squash = {"Softmax": "nn.CrossEntropyLoss", "Sigmoid": "nn.BCEWithLogitsLoss"}
        if last_cls in squash:  # expose the logits: PyTorch's losses take logits
            head = _TORCH_HEAD.format(
                last=last, loss=squash[last_cls], what=last_cls.lower(), calls="\n".join(calls[:-1])
            )
            usage = (
                f"logits = model.logits(images)  # train on these: {squash[last_cls]}"
                f"()(logits, labels)\n    "
            )
        else:
            head = _TORCH_PLAIN.format(calls="\n".join(calls))
            usage = ""
        return _TORCH_SOURCE.format(
            name=plan.name,
            version=__version__,
            class_name=class_name or "Net",
            inits="\n".join(inits),
            head=head,
            usage=usage,
            input_nchw=f"(N, {c}, {h}, {w})",
            reader=inspect.getsource(_standalone.read_safetensors),
            loads="\n".join(loads) or "    pass",
        )


# torch.nn's own defaults: the generated source leaves these out, as a person would.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "Conv2d": {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "bias": True},
    "MaxPool2d": {"padding": (0, 0)},
    "Linear": {"bias": True},
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
        last = LAYERS[type(step.layer)](step.layer, step)[-1][0]
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

{reader}

@torch.no_grad()
def load_canonical_weights(model: {class_name}, path: str | Path) -> None:
    """Load specnet's canonical (Keras-layout) weights: conv kernels HWIO -> OIHW, Dense kernels
    transposed, and the Dense after a Flatten has its rows reordered from (h, w, c) to (c, h, w)."""
    weights = read_safetensors(path)
{loads}
'''

_TORCH_PLAIN = """\
    def forward(self, x: torch.Tensor) -> torch.Tensor:
{calls}
        return x
"""

_TORCH_HEAD = '''\
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The scores before the final {what}: train on these with {loss}, which
        applies the {what} itself (on forward()'s output it would apply it twice)."""
{calls}
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities, as the Keras model and the ONNX export compute them."""
        return self.{last}(self.logits(x))
'''

BACKEND = TorchBackend()
