"""The Keras 3 (TensorFlow) backend: a functional ``keras.Model`` per Plan.

Keras's layout is the canonical one, so weights pass through unchanged. Each layer kind maps
through :data:`LAYERS` to a Keras class name and its keyword arguments; the same table builds
the live model and writes the standalone source, so the two cannot drift apart.

The live model is always functional, a chain too (one code path: the loop over named values
that Keras's own ``Functional`` runs), so ``model.layers`` starts with the ``InputLayer``. The
generated source of a chain still reads as the ``keras.Sequential`` of the Keras blog; a graph's
is functional, each value called ``x`` unless a later layer reads it again.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from specnet import __version__, _standalone
from specnet._frameworks import keras_module, require
from specnet._io import TEMP_SUFFIX, current_umask
from specnet.backends import (
    DEFAULT_OPTIONS,
    TrainOptions,
    call_source,
    value_names,
)
from specnet.errors import RuntimeFailure
from specnet.shapes import Plan, PlanLayer, ends_in_softmax, same_padding
from specnet.spec import (
    L1,
    L1L2,
    L2,
    REGULARIZED,
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

__all__ = ["BACKEND", "LAYERS", "KerasBackend", "compile_model", "loss_source"]

Call = tuple[str, dict[str, Any]]  # (keras.layers class name, keyword arguments)


class KerasRegularizer:
    """A spec regularizer as its ``keras.regularizers`` class: :meth:`make` builds it, ``repr``
    is its source for generated files."""

    def __init__(self, value: L1 | L2 | L1L2) -> None:
        self.kind = {"l1": "L1", "l2": "L2", "l1_l2": "L1L2"}.get(value.type, value.type)
        self.fields = value.model_dump(exclude={"type"})

    def make(self) -> Any:
        return getattr(keras_module().regularizers, self.kind)(**self.fields)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"keras.regularizers.{self.kind}({shown})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KerasRegularizer) and repr(self) == repr(other)


def _as_written(layer: LayerBase) -> Call:
    """The Keras layer of the same name, with every field as the spec holds it: the spec's
    field names are Keras's (Conv2D's ``filters``, BatchNormalization's ``momentum``…)."""
    fields = [f for f in type(layer).model_fields if f not in ("name", "inputs", "type")]
    kwargs = {field: getattr(layer, field) for field in fields}
    for field in REGULARIZED:
        if kwargs.get(field) is not None:
            kwargs[field] = KerasRegularizer(kwargs[field])
    return layer.KIND, kwargs


def _made(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments with the regularizers built."""
    return {k: v.make() if isinstance(v, KerasRegularizer) else v for k, v in kwargs.items()}


def _max_pool(layer: MaxPool) -> Call:
    """The one kind Keras calls otherwise (strides spelled out: they default to ``pool_size``)."""
    strides = layer.strides or layer.pool_size
    return "MaxPooling2D", {
        "pool_size": layer.pool_size,
        "strides": strides,
        "padding": layer.padding,
    }


LAYERS: dict[type[LayerBase], Callable[[Any], Call]] = {
    Conv2D: _as_written,
    Activation: _as_written,
    MaxPool: _max_pool,
    AveragePooling2D: _as_written,
    Dropout: _as_written,
    Flatten: _as_written,
    Dense: _as_written,
    Softmax: _as_written,
    DepthwiseConv2D: _as_written,
    ReLU: _as_written,
    BatchNormalization: _as_written,
    ZeroPadding2D: _as_written,
    Rescaling: _as_written,
    GlobalAveragePooling2D: _as_written,
    GlobalMaxPooling2D: _as_written,
    Add: _as_written,
    Subtract: _as_written,
    Multiply: _as_written,
    Average: _as_written,
    Maximum: _as_written,
    Concatenate: _as_written,
    SeparableConv2D: _as_written,
    Conv2DTranspose: _as_written,
    UpSampling2D: _as_written,
    LayerNormalization: _as_written,
    Reshape: _as_written,
    Permute: _as_written,
}


def unequal_strides(step: PlanLayer) -> bool:
    """A convolution with different row and column strides that TensorFlow 2.21's CPU kernels
    cannot be trusted with (found by tests/test_random_parity.py; each reproduced with
    TensorFlow alone in tests/test_decoder_layers.py):

    * a depthwise or separable one: without oneDNN TensorFlow refuses it ("Current
      implementation only supports equal length strides"); with oneDNN it runs and for some
      shapes returns wrong values (one input channel, depth_multiplier 2, strides (1, 2), a 1×4
      kernel on a 3×5 image: rows of zeros or unset memory);
    * a Conv2D on one input channel: oneDNN returns wrong values when the output is one column
      wide at strides (1, 2) or (1, 3) (the bug PyTorch's oneDNN convolution has too:
      _torch_modules.OneChannelConv2d)."""
    layer = step.layer
    if not isinstance(layer, Conv2D | DepthwiseConv2D | SeparableConv2D):
        return False
    if layer.strides[0] == layer.strides[1]:
        return False
    return not isinstance(layer, Conv2D) or step.input_shape[-1] == 1


def _calls(step: PlanLayer) -> list[Call]:
    """The Keras layers of one spec layer: one, except for :func:`unequal_strides`, computed
    exactly without them: Keras's ``same`` padding made explicit (``<name>_pad``), the
    convolution at stride 1 (``<name>``, which holds the weights), then every ``strides``-th
    row and column kept by a 1×1 AveragePooling2D (``<name>_stride``: a window of one value
    averages to that value)."""
    cls, kwargs = LAYERS[type(step.layer)](step.layer)
    kwargs = {**kwargs, "name": step.name}
    layer = step.layer
    if not unequal_strides(step):
        return [(cls, kwargs)]
    assert isinstance(layer, Conv2D | DepthwiseConv2D | SeparableConv2D)
    calls: list[Call] = []
    if layer.padding == "same":  # (a stride > 1 has no dilation: the kernel is its window)
        h, w = step.input_shape[0], step.input_shape[1]
        rows = same_padding(h, layer.kernel_size[0], layer.strides[0])
        cols = same_padding(w, layer.kernel_size[1], layer.strides[1])
        calls.append(("ZeroPadding2D", {"padding": (rows, cols), "name": f"{step.name}_pad"}))
    calls.append((cls, {**kwargs, "strides": (1, 1), "padding": "valid"}))
    every = {"pool_size": (1, 1), "strides": layer.strides, "name": f"{step.name}_stride"}
    return [*calls, ("AveragePooling2D", every)]


def output_names(plan: Plan) -> dict[str, str]:
    """Spec layer name → the Keras layer whose output is that layer's value (its last)."""
    return {step.name: _calls(step)[-1][1]["name"] for step in plan.layers}


# Keras's own defaults: the generated source leaves these out, as a person would.
_WEIGHTED = {
    "activation": None,
    "use_bias": True,
    "kernel_initializer": "glorot_uniform",
    "bias_initializer": "zeros",
    "kernel_regularizer": None,
    "bias_regularizer": None,
}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "Conv2D": {"strides": (1, 1), "padding": "valid", "dilation_rate": (1, 1), **_WEIGHTED},
    "Dense": _WEIGHTED,
    "MaxPooling2D": {"padding": "valid"},
    "AveragePooling2D": {"strides": None, "padding": "valid"},
    "Softmax": {"axis": -1},
    "Concatenate": {"axis": -1},
    "BatchNormalization": {
        "axis": -1, "momentum": 0.99, "epsilon": 1e-3, "center": True, "scale": True,
        "beta_initializer": "zeros", "gamma_initializer": "ones",
        "moving_mean_initializer": "zeros", "moving_variance_initializer": "ones",
    },
    "GlobalAveragePooling2D": {"keepdims": False},
    "DepthwiseConv2D": {
        "strides": (1, 1), "padding": "valid", "depth_multiplier": 1, "dilation_rate": (1, 1),
        "activation": None, "use_bias": True, "depthwise_initializer": "glorot_uniform",
        "bias_initializer": "zeros", "depthwise_regularizer": None, "bias_regularizer": None,
    },
    "ReLU": {"max_value": None, "negative_slope": 0.0, "threshold": 0.0},
    "Rescaling": {"offset": 0.0},
    "GlobalMaxPooling2D": {"keepdims": False},
    "SeparableConv2D": {
        "strides": (1, 1), "padding": "valid", "depth_multiplier": 1, "dilation_rate": (1, 1),
        "activation": None, "use_bias": True, "depthwise_initializer": "glorot_uniform",
        "pointwise_initializer": "glorot_uniform", "bias_initializer": "zeros",
        "depthwise_regularizer": None, "pointwise_regularizer": None, "bias_regularizer": None,
    },
    "Conv2DTranspose": {"strides": (1, 1), "padding": "valid", **_WEIGHTED},
    "UpSampling2D": {"size": (2, 2), "interpolation": "nearest"},
    "LayerNormalization": {
        "axis": -1, "epsilon": 1e-3, "center": True, "scale": True,
        "beta_initializer": "zeros", "gamma_initializer": "ones",
    },
}  # fmt: skip


_LOSSES = {
    "categorical_crossentropy": "CategoricalCrossentropy",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "binary_crossentropy": "BinaryCrossentropy",
}


def _loss(plan: Plan) -> tuple[str, bool]:
    """The Keras loss class for ``train.loss`` and its ``from_logits``: on probabilities when
    the network ends in softmax (or sigmoid), on logits otherwise."""
    last = plan.output.layer
    squashed = ends_in_softmax(plan) or getattr(last, "activation", None) == "sigmoid"
    return _LOSSES[plan.spec.train.loss], not squashed


def loss_source(plan: Plan) -> str:
    """The loss as Python source, for generated files."""
    cls, from_logits = _loss(plan)
    return f"keras.losses.{cls}(from_logits={from_logits})"


def compile_model(model: Any, plan: Plan) -> None:
    """``model.compile`` with the spec's optimizer, loss and metrics (what ``fit`` needs)."""
    keras = keras_module()
    from specnet.backends.keras_train import optimizer

    cls, from_logits = _loss(plan)
    chosen = optimizer(plan.spec.train.optimizer)
    model.compile(
        optimizer=chosen,
        loss=getattr(keras.losses, cls)(from_logits=from_logits),
        metrics=list(plan.spec.train.metrics),
    )
    # built (its slots zero) so that the saved file holds the variables load_model expects
    chosen.build(model.trainable_variables)


def _attribute(layer: LayerBase, suffix: str) -> str:
    """The Keras 3 attribute holding a canonical weight: a DepthwiseConv2D's kernel is Keras 2's
    (and keras.applications' HDF5 files') ``depthwise_kernel``, Keras 3's ``kernel``; a
    SeparableConv2D keeps the name ``depthwise_kernel``."""
    return (
        "kernel" if isinstance(layer, DepthwiseConv2D) and suffix == "depthwise_kernel" else suffix
    )


_OPTIMIZERS = {"SGD": "SGD", "Adam": "Adam", "RMSprop": "RMSprop"}
_LABELS = {
    "categorical_crossentropy": "one-hot rows (keras.utils.to_categorical)",
    "sparse_categorical_crossentropy": "class indices",
    "binary_crossentropy": "0 or 1",
}


# TensorFlow's grappler remapper (the graph rewrite that fuses ops, CPU) is wrong four times in
# TensorFlow 2.21, and specnet turns it off for a network that would meet any of them:
#
# * it fuses a convolution, its bias and a hard_silu into one op, then a following Mish or
#   LeakyRelu into it too, and has no kernel for the result: "UNIMPLEMENTED: Fusion is not
#   implemented: [BiasAdd,_FusedHardSwish,Mish]" at the first predict or fit (plain Keras:
#   Conv2D(activation="hard_silu") then Activation("mish"));
# * it rewrites maximum(x · a, x) as LeakyRelu(alpha=a), which is that function only for
#   a < 1: for a = 2 it computes min(2x, x) (plain TensorFlow: tf.function(lambda x:
#   tf.maximum(x * 2.0, x))). In a spec that is a Maximum of a value and a Rescaling of it
#   without offset (found by tests/test_random_parity.py);
# * it fuses a convolution, an Add and a LeakyRelu and computes the slope 0.2, Keras's default,
#   instead of the layer's (a ReLU with negative_slope 0.3 after a residual Add; found by
#   tests/test_random_parity.py);
# * a SeparableConv2D on one channel with a 1×1 kernel, one filter and depth_multiplier 1, with
#   a bias or after a convolution, aborts under oneDNN: "could not create a primitive
#   descriptor for the reorder primitive" (found by tests/test_random_parity.py; with the
#   remapper off it runs and equals the eager call).
#
# The option is read whenever a function runs, so it cannot be scoped to one model: such a
# network turns the remapper off for the process (the same numbers, right ones; convolutions
# lose the fusion). tests/test_activations.py and tests/test_backends.py keep the bugs'
# reproductions, to see when TensorFlow fixes them.
_UNFUSABLE = ("hard_silu", "hard_swish")
_NO_REMAPPING = """\
    # TensorFlow's CPU remapper cannot run a convolution fused with hard_silu then mish or
    # leaky_relu ("Fusion is not implemented"), rewrites maximum(x * a, x) as a LeakyRelu
    # that is wrong for a > 1, drops a LeakyRelu's slope after a convolution and an Add, and
    # aborts on a one-channel 1x1 separable convolution: turn that graph rewrite off
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options({"remapping": False})
"""


def _source(plan: Plan, name: str) -> str:
    """The value ``name`` is at inference, through the layers that pass it on unchanged."""
    steps = plan.by_name()
    step = steps.get(name)
    while step is not None and (
        isinstance(step.layer, Dropout)
        or (isinstance(step.layer, Activation) and step.layer.activation == "linear")
    ):
        name = step.inputs[0]
        step = steps.get(name)
    return name


def _max_of_scaled_self(plan: Plan, step: PlanLayer) -> bool:
    """A Maximum one of whose inputs is a Rescaling (no offset: a Mul) of another of them."""
    if not isinstance(step.layer, Maximum):
        return False
    steps = plan.by_name()
    sources = [_source(plan, name) for name in step.inputs]
    for name in sources:
        scaled = steps.get(name)
        if (
            scaled is not None
            and isinstance(scaled.layer, Rescaling)
            and not scaled.layer.offset
            and _source(plan, scaled.inputs[0]) in sources
        ):
            return True
    return False


def _leak_after_a_merge(plan: Plan, step: PlanLayer) -> bool:
    """A ReLU layer with a slope other than Keras's 0.2 right after an Add: the remapper fuses
    convolution + add + LeakyRelu and computes the slope 0.2 (found by
    tests/test_random_parity.py: Conv2D, Add with its input, ReLU(negative_slope=0.3))."""
    steps = plan.by_name()
    source = steps.get(step.inputs[0]) if step.inputs else None
    return (
        isinstance(step.layer, ReLU)
        and step.layer.negative_slope not in (0.0, 0.2)
        and source is not None
        and isinstance(source.layer, Add)
    )


def _one_channel_pointwise(step: PlanLayer) -> bool:
    """A SeparableConv2D whose depthwise and pointwise halves are both 1×1 on one channel."""
    layer = step.layer
    return (
        isinstance(layer, SeparableConv2D)
        and step.input_shape[-1] == 1
        and tuple(layer.kernel_size) == (1, 1)
        and layer.filters == 1
        and layer.depth_multiplier == 1
    )


def _needs_no_remapping(plan: Plan) -> bool:
    return any(
        (isinstance(step.layer, (Conv2D, DepthwiseConv2D)) and step.layer.activation in _UNFUSABLE)
        or _max_of_scaled_self(plan, step)
        or _leak_after_a_merge(plan, step)
        or _one_channel_pointwise(step)
        for step in plan.layers
    )


def _avoid_unfusable(plan: Plan) -> None:
    if _needs_no_remapping(plan):
        require("tensorflow").config.optimizer.set_experimental_options({"remapping": False})


class KerasBackend:
    """Keras 3 on TensorFlow. Models are functional ``keras.Model``s; the input is NHWC."""

    name = "keras"
    native_file = "model.keras"

    def build(self, plan: Plan) -> Any:
        keras = keras_module()
        _avoid_unfusable(plan)
        values = {"input": keras.Input(shape=plan.input_shape, name="input")}
        for step in plan.layers:
            args = [values[name] for name in step.inputs]
            value = args if step.layer.MERGE else args[0]
            for cls, kwargs in _calls(step):
                value = getattr(keras.layers, cls)(**_made(kwargs))(value)
            values[step.name] = value
        return keras.Model(values["input"], values[plan.output.name], name=plan.name)

    def set_weights(self, model: Any, plan: Plan, weights: Weights) -> None:
        weights = check_weights(plan, weights)
        for step in plan.layers:  # every weight by Keras's attribute name (gamma, moving_mean…)
            layer = model.get_layer(step.name) if step.weights else None
            for suffix in step.weights:
                getattr(layer, _attribute(step.layer, suffix)).assign(
                    weights[f"{step.name}.{suffix}"]
                )

    def get_weights(self, model: Any, plan: Plan) -> Weights:
        return {
            f"{step.name}.{suffix}": getattr(
                model.get_layer(step.name), _attribute(step.layer, suffix)
            ).numpy()
            for step in plan.layers
            for suffix in step.weights
        }

    def predict(self, model: Any, x: Any) -> Any:
        # Keras's compiled predict function: twice as fast as an eager model(x) call per batch
        return model.predict_on_batch(x)

    def count_params(self, model: Any) -> int:
        return int(model.count_params())

    def save_native(self, model: Any, path: Path, plan: Plan | None = None) -> None:
        """``model.keras``, compiled with the spec's optimizer, loss and metrics when ``plan`` is
        given, so that ``keras.saving.load_model(path).fit(x, y)`` continues training."""
        if plan is not None:
            compile_model(model, plan)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=f"{TEMP_SUFFIX}.keras", dir=path.parent
        )
        os.close(fd)
        try:
            model.save(tmp)
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; act like open()
            os.replace(tmp, path)
        except OSError as exc:
            raise RuntimeFailure(f"{path}: cannot write ({exc.strerror})") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def load_native(self, path: Path, plan: Plan) -> Any:
        keras = keras_module()
        _avoid_unfusable(plan)
        return keras.saving.load_model(path, compile=False, safe_mode=True)

    def trainer(
        self,
        plan: Plan,
        train: Train,
        weights: Weights,
        options: TrainOptions = DEFAULT_OPTIONS,
    ) -> Any:
        """A trainer for the training plan (see :mod:`specnet.backends.keras_train`)."""
        from specnet.backends.keras_train import KerasTrainer

        return KerasTrainer(self, plan, train, weights, options)

    def emit_source(self, plan: Plan) -> str:
        calls: list[list[tuple[str, str]]] = []  # per spec layer: (call, shape comment)
        for step in plan.layers:
            made = _calls(step)
            shape = ", ".join(str(n) for n in step.output_shape)
            row = []
            for i, (cls, kwargs) in enumerate(made, 1):
                defaults = _DEFAULTS.get(cls, {})
                if cls == "MaxPooling2D":  # Keras's default: strides = pool_size
                    defaults = {**defaults, "strides": kwargs["pool_size"]}
                comment = f"-> (None, {shape})" if i == len(made) else _SPLIT
                row.append((f"layers.{call_source(cls, (), kwargs, defaults)}", comment))
            calls.append(row)
        if plan.is_chain:
            body = "\n".join(
                f"            {call},  # {comment}" for row in calls for call, comment in row
            )
            network = _SEQUENTIAL.format(input_shape=tuple(plan.input_shape), layers=body)
        else:
            names = value_names(plan, "inputs")
            lines = []
            for step, row in zip(plan.layers, calls, strict=True):
                args = [names[name] for name in step.inputs]
                given = f"[{', '.join(args)}]" if step.layer.MERGE else args[0]
                for call, comment in row:
                    lines.append(f"    {names[step.name]} = {call}({given})  # {comment}")
                    given = names[step.name]
            network = _FUNCTIONAL.format(
                input_shape=tuple(plan.input_shape),
                layers="\n".join(lines),
                output=names[plan.output.name],
            )
        reader = inspect.getsource(_standalone.read_safetensors)
        config = plan.spec.train.optimizer
        defaults = {key: info.default for key, info in type(config).model_fields.items()}
        options = config.model_dump(exclude={"type"})
        optimizer = call_source(
            f"keras.optimizers.{_OPTIMIZERS[type(config).__name__]}", (), options, defaults
        )
        return _KERAS_SOURCE.format(
            optimizer=optimizer,
            loss=loss_source(plan),
            metrics=json.dumps(list(plan.spec.train.metrics)),
            labels=_LABELS[plan.spec.train.loss],
            name=plan.name,
            version=__version__,
            input_shape=tuple(plan.input_shape),
            network=(_NO_REMAPPING if _needs_no_remapping(plan) else "")
            + network.replace("{name}", repr(plan.name)),
            reader=reader,
        )


#: the comment on a layer that is one step of a spec layer (see ``_calls``)
_SPLIT = "TensorFlow's CPU kernels and unequal strides: stride 1, then keep every strides-th"

_KERAS_SOURCE = '''\
"""{name}: a Keras 3 model generated by specnet {version}. Plain Keras: read it, copy it, own it.

    model = build_model()
    load_canonical_weights(model, "weights.safetensors")
    probabilities = model.predict(images)  # images: (N, height, width, channels), float32
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import keras
from keras import layers


def build_model() -> keras.Model:
    """The network, input channels last: {input_shape}; compiled as the spec trains it, so
    ``model.fit(x, y)`` works at once."""
{network}
    model.compile(
        optimizer={optimizer},
        loss={loss},
        metrics={metrics},
    )  # labels for fit(): {labels}
    return model


{reader}

def load_canonical_weights(model: keras.Model, path: str | Path) -> None:
    """Load specnet's canonical weights (Keras's own layout: nothing to convert), by name:
    ``<layer>.<variable>`` (kernel, bias, gamma, beta, moving_mean, moving_variance)."""
    weights = read_safetensors(path)
    for layer in model.layers:
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        for variable in layer.weights:
            name = "depthwise_kernel" if depthwise and variable.name == "kernel" else variable.name
            key = f"{{layer.name}}.{{name}}"
            if key in weights:
                variable.assign(weights[key])
'''

_SEQUENTIAL = """\
    model = keras.Sequential(
        [
            keras.Input(shape={input_shape}),
{layers}
        ],
        name={{name}},
    )"""

_FUNCTIONAL = """\
    inputs = keras.Input(shape={input_shape}, name="input")
{layers}
    model = keras.Model(inputs, {output}, name={{name}})"""

BACKEND = KerasBackend()
