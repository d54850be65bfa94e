"""The Keras 3 (TensorFlow) backend: a ``keras.Sequential`` per Plan.

Keras's layout is the canonical one, so weights pass through unchanged. Each layer kind maps
through :data:`LAYERS` to a Keras class name and its keyword arguments; the same table builds
the live model and writes the standalone source, so the two cannot drift apart.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from specnet import __version__
from specnet._frameworks import require
from specnet._io import TEMP_SUFFIX, current_umask
from specnet.backends import DEFAULT_OPTIONS, TrainOptions, _standalone, call_source
from specnet.errors import RuntimeFailure
from specnet.shapes import Plan, PlanLayer, ends_in_softmax
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
from specnet.weights import Weights, check_weights, expected_shapes

__all__ = ["BACKEND", "LAYERS", "KerasBackend", "compile_model", "loss_source"]

Call = tuple[str, dict[str, Any]]  # (keras.layers class name, keyword arguments)


def _weighted(layer: Conv2D | Dense) -> dict[str, Any]:
    """The fields Conv2D and Dense share, which Keras spells exactly as the spec does."""
    fields = ("activation", "use_bias", "kernel_initializer", "bias_initializer")
    return {field: getattr(layer, field) for field in fields}


def _conv2d(layer: Conv2D) -> Call:
    return "Conv2D", {
        "filters": layer.filters,
        "kernel_size": layer.kernel_size,
        "strides": layer.strides,
        "padding": layer.padding,
        "dilation_rate": layer.dilation_rate,
        **_weighted(layer),
    }


def _activation(layer: Activation) -> Call:
    return "Activation", {"activation": layer.activation}


def _max_pool(layer: MaxPool) -> Call:
    strides = layer.strides or layer.pool_size
    return "MaxPooling2D", {
        "pool_size": layer.pool_size,
        "strides": strides,
        "padding": layer.padding,
    }


def _dropout(layer: Dropout) -> Call:
    return "Dropout", {"rate": layer.rate}


def _flatten(layer: Flatten) -> Call:
    return "Flatten", {}


def _dense(layer: Dense) -> Call:
    return "Dense", {"units": layer.units, **_weighted(layer)}


def _softmax(layer: Softmax) -> Call:
    return "Softmax", {"axis": layer.axis}


LAYERS: dict[type[LayerBase], Callable[[Any], Call]] = {
    Conv2D: _conv2d,
    Activation: _activation,
    MaxPool: _max_pool,
    Dropout: _dropout,
    Flatten: _flatten,
    Dense: _dense,
    Softmax: _softmax,
}


_NOISE = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ")


def _import_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up chatter (info lines printed to fd 2 before its
    logging is configured, which TF_CPP_MIN_LOG_LEVEL cannot silence) filtered out; any other
    line it prints is passed on."""
    if "tensorflow" in sys.modules:
        return
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            require("tensorflow")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if line and not line.startswith(_NOISE):
                    print(line, file=sys.stderr)


def _keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _import_tensorflow()
    return require("keras")


def _call(step: PlanLayer) -> Call:
    cls, kwargs = LAYERS[type(step.layer)](step.layer)
    return cls, {**kwargs, "name": step.name}


# Keras's own defaults: the generated source leaves these out, as a person would.
_WEIGHTED = {
    "activation": None,
    "use_bias": True,
    "kernel_initializer": "glorot_uniform",
    "bias_initializer": "zeros",
}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "Conv2D": {"strides": (1, 1), "padding": "valid", "dilation_rate": (1, 1), **_WEIGHTED},
    "Dense": _WEIGHTED,
    "MaxPooling2D": {"padding": "valid"},
    "Softmax": {"axis": -1},
}


_LOSSES = {
    "categorical_crossentropy": "CategoricalCrossentropy",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "binary_crossentropy": "BinaryCrossentropy",
}


def _loss(plan: Plan) -> tuple[str, bool]:
    """The Keras loss class for ``train.loss`` and its ``from_logits``: on probabilities when
    the network ends in softmax (or sigmoid), on logits otherwise."""
    last = plan.spec.layers[-1]
    squashed = ends_in_softmax(plan) or getattr(last, "activation", None) == "sigmoid"
    return _LOSSES[plan.spec.train.loss], not squashed


def loss_source(plan: Plan) -> str:
    """The loss as Python source, for generated files."""
    cls, from_logits = _loss(plan)
    return f"keras.losses.{cls}(from_logits={from_logits})"


def compile_model(model: Any, plan: Plan) -> None:
    """``model.compile`` with the spec's optimizer, loss and metrics (what ``fit`` needs)."""
    keras = _keras()
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


_OPTIMIZERS = {"SGD": "SGD", "Adam": "Adam", "RMSprop": "RMSprop"}
_LABELS = {
    "categorical_crossentropy": "one-hot rows (keras.utils.to_categorical)",
    "sparse_categorical_crossentropy": "class indices",
    "binary_crossentropy": "0 or 1",
}


class KerasBackend:
    """Keras 3 on TensorFlow. Models are ``keras.Sequential``; the input is NHWC."""

    name = "keras"
    native_file = "model.keras"

    def build(self, plan: Plan) -> Any:
        keras = _keras()
        layers = [getattr(keras.layers, cls)(**kwargs) for cls, kwargs in map(_call, plan.layers)]
        return keras.Sequential([keras.Input(shape=plan.input_shape), *layers], name=plan.name)

    def set_weights(self, model: Any, plan: Plan, weights: Weights) -> None:
        weights = check_weights(plan, weights)
        for step in plan.layers:
            if f"{step.name}.kernel" not in weights:
                continue
            layer = model.get_layer(step.name)
            layer.kernel.assign(weights[f"{step.name}.kernel"])
            if f"{step.name}.bias" in weights:
                layer.bias.assign(weights[f"{step.name}.bias"])

    def get_weights(self, model: Any, plan: Plan) -> Weights:
        out: Weights = {}
        for key in expected_shapes(plan):
            name, kind = key.rsplit(".", 1)
            out[key] = getattr(model.get_layer(name), kind).numpy()
        return out

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
        keras = _keras()
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
        lines = []
        for step in plan.layers:
            cls, kwargs = _call(step)
            defaults = _DEFAULTS.get(cls, {})
            if cls == "MaxPooling2D":  # Keras's default: strides = pool_size
                defaults = {**defaults, "strides": kwargs["pool_size"]}
            shape = ", ".join(str(n) for n in step.output_shape)
            call = call_source(cls, (), kwargs, defaults)
            lines.append(f"            layers.{call},  # -> (None, {shape})")
        body = "\n".join(lines)
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
            layers=body,
            reader=reader,
        )


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
    model = keras.Sequential(
        [
            keras.Input(shape={input_shape}),
{layers}
        ],
        name={name!r},
    )
    model.compile(
        optimizer={optimizer},
        loss={loss},
        metrics={metrics},
    )  # labels for fit(): {labels}
    return model


{reader}

def load_canonical_weights(model: keras.Model, path: str | Path) -> None:
    """Load specnet's canonical weights (Keras's own layout: nothing to convert)."""
    weights = read_safetensors(path)
    for layer in model.layers:
        values = [weights[f"{{layer.name}}.{{k}}"] for k in ("kernel", "bias")
                  if f"{{layer.name}}.{{k}}" in weights]
        if values:
            layer.set_weights(values)
'''

BACKEND = KerasBackend()
