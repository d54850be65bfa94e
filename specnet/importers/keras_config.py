"""Keras model configs (Keras 1, 2 and 3 JSON) → a specnet spec, layer by layer.

A config is read into :class:`KLayer` records (name, class, config, inbound layers) whatever
its dialect — Keras 1's ``nb_filter``/``border_mode``/``subsample``/``dim_ordering`` and config
as a list, Keras 2's ``filters``/``padding``/``data_format``, list or ``{name, layers}``
configs, functional ``inbound_nodes`` as nested lists (Keras 1/2) or ``{args, kwargs}`` with
``keras_history`` (Keras 3) — then each record is translated to a spec layer.

**Layout.** Every spec is channels last. Each Keras tensor carries its order: ``hwc`` (Keras
sees what the spec sees), ``chw`` (a channels-first layer's tensor: Keras holds (c, h, w) where
the spec holds (h, w, c)), ``flat`` and ``flat_chw`` (a vector flattened from a ``chw`` tensor:
its values in (c, h, w) order). A channels-first layer reads a ``chw`` tensor and writes one,
so channels-first models become channels-last specs with kernels permuted
(:mod:`~specnet.importers.keras_weights`), and the first Dense after such a Flatten has its rows
reordered from (c, h, w) to (h, w, c). Each layer is checked against the order of the tensor
it reads, so a model that mixes orderings is translated — or refused — layer by layer, never
under one assumption for the whole model.

**Theano.** A model that ran under Theano padded ``same`` convolutions differently from
TensorFlow (k//2 rows before the data, where TensorFlow puts the odd row after): such a layer
becomes an explicit ``ZeroPadding2D`` and a ``valid`` convolution — exact — wherever the two
rules differ for its input size (the second pass of :func:`translate`, once shapes are known).
Theano's ``same`` pooling, which pads with zeros on both sides, is refused where it differs.

**Refused, naming the layer**: code (``Lambda``: its marshalled bytecode is never decoded;
custom objects; ``function_type``), nested models, shared layers, several outputs, and layers
or fields specnet has no equal for. Training-only settings the spec cannot hold yet
(constraints, frozen layers, regularizers specnet has not) are dropped with a note that says
so; L1/L2 regularizers are kept.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

from specnet.errors import Issue, SpecError, brief
from specnet.spec import INITIALIZERS

__all__ = ["KLayer", "KerasModel", "ModelImportError", "parse_config", "read_json", "translate"]

#: the largest JSON an import reads (the largest real Keras configs are a few MB)
MAX_JSON_BYTES = 32 << 20
#: the deepest nesting of a JSON config (Keras's are < 15 deep)
MAX_DEPTH = 64


class ModelImportError(SpecError):
    """A model file specnet cannot turn into a spec: each issue names the file, where in it
    (line and column for JSON, the HDF5 path otherwise), the layer and why."""


@dataclass
class KLayer:
    """One layer of a Keras config, whatever the dialect."""

    name: str
    cls: str
    config: dict[str, Any]
    inputs: list[str]  # inbound Keras layer names; "" is the model's input
    index: int  # position in the config's layer list (for messages)


@dataclass
class WeightRule:
    """How a spec layer's weights come out of the file."""

    spec_name: str
    keras_name: str
    keras_class: str
    kernel_channels_first: bool = False  # Keras 1 'th' kernels: (out, in, rows, cols)
    rows_chw: str | None = None  # the Flatten (spec name) whose (c, h, w) order the rows follow
    input_dim: int | None = None  # a Keras 1 Dense's recorded input size, to check
    position: int = 0  # index of the Keras layer in the config (Keras 3 keys its weights so)


@dataclass
class KerasModel:
    """A translated config: the spec mapping and how to fill its weights."""

    name: str
    spec: dict[str, Any]
    rules: dict[str, WeightRule]
    keras_layers: list[KLayer]
    config_order: list[tuple[str, str]]  # every layer's (name, class), as the config lists them
    dialect: str  # "Keras 1", "Keras 2", "Keras 3"
    version: str | None  # keras_version where recorded
    backend: str | None  # the backend recorded in the config (Keras 2), if any
    notes: list[str] = field(default_factory=list)
    channels_first: bool = False
    same_convs: list[str] = field(default_factory=list)  # spec names of 'same' convolutions
    same_pools: list[str] = field(default_factory=list)


class _Locator:
    """Line and column of a layer in the JSON text (the first ``"name": "<layer>"``)."""

    def __init__(self, file: str, text: str, inner: bool) -> None:
        self.file, self.text, self.inner = file, text, inner

    def issue(self, field: str, message: str, layer: str | None = None, hint: str = "") -> Issue:
        line = column = 0
        if layer is not None and not self.inner:
            match = re.search(r'"name"\s*:\s*' + re.escape(json.dumps(layer)), self.text)
            if match:
                line = self.text.count("\n", 0, match.start()) + 1
                column = match.start() - self.text.rfind("\n", 0, match.start())
        return Issue(self.file, line, column, field, message, hint)

    def fail(self, field: str, message: str, layer: str | None = None, hint: str = "") -> NoReturn:
        raise ModelImportError([self.issue(field, message, layer, hint)])


def _depth(value: Any, limit: int) -> int:
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def read_json(raw: bytes, file: str) -> tuple[dict[str, Any], _Locator]:
    """Parse a Keras JSON file (also one double-encoded: a JSON string holding the JSON,
    as ``json.dump(model.to_json())`` writes), refusing huge or deeply nested input."""
    if len(raw) > MAX_JSON_BYTES:
        raise ModelImportError(
            [
                Issue(
                    file,
                    0,
                    0,
                    "",
                    f"{len(raw):,} bytes; specnet reads configs up to {MAX_JSON_BYTES:,}",
                )
            ]
        )
    try:
        text = raw.decode("utf-8-sig")
        value = json.loads(text)
        inner = False
        if isinstance(value, str):  # double-encoded
            text, inner = value, True
            value = json.loads(value)
    except UnicodeDecodeError as exc:
        raise ModelImportError([Issue(file, 0, 0, "", f"not UTF-8 text ({exc.reason})")]) from None
    except RecursionError:
        raise ModelImportError(
            [Issue(file, 0, 0, "", "nested too deeply to be a Keras config")]
        ) from None
    except ValueError as exc:
        line, column = getattr(exc, "lineno", 0), getattr(exc, "colno", 0)
        message = getattr(exc, "msg", str(exc))
        raise ModelImportError([Issue(file, line, column, "", f"not JSON: {message}")]) from None
    if _depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise ModelImportError(
            [Issue(file, 0, 0, "", f"nested deeper than {MAX_DEPTH} levels; not a Keras config")]
        )
    if not isinstance(value, dict):
        raise ModelImportError(
            [
                Issue(
                    file,
                    1,
                    1,
                    "",
                    f"expected a Keras model config (a JSON object), found {type(value).__name__}",
                )
            ]
        )
    return value, _Locator(file, text, inner)


# ----------------------------------------------------------------------------- parsing

_MODELS = {"Sequential", "Model", "Functional"}


def _history(value: Any) -> list[tuple[str, int, int]]:
    """The (layer, node, tensor) references inside a Keras 3 call's args."""
    found: list[tuple[str, int, int]] = []
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            name, node, tensor = value["config"]["keras_history"]
            found.append((str(name), int(node), int(tensor)))
        else:
            for item in value.values():
                found += _history(item)
    elif isinstance(value, list):
        for item in value:
            found += _history(item)
    return found


def _inbound(layer: dict[str, Any], where: _Locator, name: str) -> list[tuple[str, int, int]]:
    nodes = layer.get("inbound_nodes") or []
    if len(nodes) > 1:
        where.fail(
            "inbound_nodes",
            f"layer {name!r} is called {len(nodes)} times (a shared layer); specnet's layers "
            "are called once",
            name,
        )
    if not nodes:
        return []
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        return _history(node.get("args", []))
    refs = []
    for item in node:  # Keras 1/2: [[name, node_index, tensor_index, kwargs], ...]
        if isinstance(item, list) and len(item) >= 3:
            refs.append((str(item[0]), int(item[1]), int(item[2])))
    return refs


def _ref_name(ref: Any) -> str:
    """A model's input/output reference: [name, node, tensor] or a list of them."""
    return str(ref[0])


def parse_config(
    top: dict[str, Any], where: _Locator
) -> tuple[str, list[KLayer], str, str | None, list[tuple[str, str]]]:
    """(model name, the layers the output needs in order, dialect, keras_version, every
    layer's (name, class) in the config's order) of a Keras model config."""
    if "class_name" not in top:
        if isinstance(top.get("layers"), list):
            where.fail(
                "layers",
                "a Keras 0.x config (top-level `layers`, each layer's `name` its class), from "
                "before Keras 1.0; specnet imports Keras 1, 2 and 3 configs",
                hint="load it with Keras 0.3 and save it again with Keras 1 or 2 (model.to_json())",
            )
        where.fail("class_name", "not a Keras model config (no class_name)")
    cls = top["class_name"]
    version = str(top["keras_version"]) if "keras_version" in top else None
    if cls not in _MODELS:
        where.fail(
            "class_name",
            f"the model is a {brief(cls)}; specnet imports Sequential and functional models",
        )
    config = top.get("config")
    raw_layers: Any
    if isinstance(config, list):
        name, raw_layers = "sequential", config
    elif isinstance(config, dict):
        name = str(config.get("name") or cls.lower())
        raw_layers = config.get("layers")
    else:
        where.fail("config", "the model config has no layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        where.fail("config.layers", "the model has no layers")
    text = json.dumps(top)
    keras1 = any(
        key in text
        for key in ('"nb_filter"', '"output_dim"', '"border_mode"', '"dim_ordering"', '"nb_row"')
    )
    keras3 = '"__keras_tensor__"' in text or '"batch_shape"' in text or '"module": "keras' in text
    dialect = (
        "Keras 1"
        if keras1 or (version or "").startswith("1")
        else "Keras 3"
        if keras3
        else "Keras 2"
    )
    if version and version.startswith("3"):
        dialect = "Keras 3"
    layers: list[KLayer] = []
    previous = ""
    for index, raw in enumerate(raw_layers):
        if not isinstance(raw, dict) or not isinstance(raw.get("config", {}), dict):
            where.fail(f"config.layers[{index}]", "not a layer (expected {class_name, config})")
        lcls = str(raw.get("class_name", ""))
        lconfig = raw.get("config") or {}
        lname = str(raw.get("name") or lconfig.get("name") or f"{lcls.lower()}_{index}")
        if cls == "Sequential":
            inputs = [previous]
        else:
            refs = _inbound(raw, where, lname)
            for ref_name, node, tensor in refs:
                if node != 0 or tensor != 0:
                    where.fail(
                        f"config.layers[{index}].inbound_nodes",
                        f"layer {lname!r} reads output {tensor} of call {node} of {ref_name!r}; "
                        "specnet's layers have one call and one output",
                        lname,
                    )
            inputs = [ref for ref, _, _ in refs]
        layers.append(KLayer(lname, lcls, lconfig, inputs, index))
        previous = lname
    every = [(layer.name, layer.cls) for layer in layers]
    if cls != "Sequential":
        outputs = config.get("output_layers") if isinstance(config, dict) else None
        if isinstance(outputs, list) and outputs and isinstance(outputs[0], list):
            if len(outputs) > 1:
                where.fail(
                    "config.output_layers",
                    f"the model has {len(outputs)} outputs "
                    f"({', '.join(_ref_name(o) for o in outputs)}); specnet specs have one output "
                    "(several outputs are not supported yet)",
                )
            out_name = _ref_name(outputs[0])
        elif isinstance(outputs, list) and outputs:
            out_name = str(outputs[0])
        else:
            out_name = layers[-1].name
        inputs_ = config.get("input_layers") if isinstance(config, dict) else None
        if (
            isinstance(inputs_, list)
            and inputs_
            and isinstance(inputs_[0], list)
            and len(inputs_) > 1
        ):
            where.fail(
                "config.input_layers",
                f"the model has {len(inputs_)} inputs; specnet specs have one",
            )
        layers = _reachable(layers, out_name, where)
        sources = [layer.name for layer in layers if not layer.inputs]
        if len(sources) > 1:
            where.fail(
                "config.input_layers",
                f"the model has {len(sources)} inputs ({', '.join(sources)}); "
                "specnet specs have one",
            )
    return name, layers, dialect, version, every


def _reachable(layers: list[KLayer], output: str, where: _Locator) -> list[KLayer]:
    """The layers the output depends on, in a topological order that keeps the config's."""
    by_name = {layer.name: layer for layer in layers}
    if output not in by_name:
        where.fail("config.output_layers", f"the output layer {output!r} is not in the model")
    needed: set[str] = set()
    stack = [output]
    while stack:
        name = stack.pop()
        if name in needed or name == "":
            continue
        if name not in by_name:
            where.fail("inbound_nodes", f"a layer reads {name!r}, which the model does not have")
        needed.add(name)
        stack.extend(by_name[name].inputs)
    order: list[KLayer] = []
    done: set[str] = {""}
    pending = [layer for layer in layers if layer.name in needed]
    while pending:
        ready = [layer for layer in pending if all(i in done for i in layer.inputs)]
        if not ready:
            where.fail("inbound_nodes", "the layers' connections form a cycle")
        first = ready[0]
        order.append(first)
        done.add(first.name)
        pending.remove(first)
    return order


# ----------------------------------------------------------------------------- translating

_ACTIVATIONS = {
    "relu": "relu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "softmax": "softmax",
    "linear": "linear",
    "elu": "elu",
    "selu": "selu",
    "gelu": "gelu",
    "softplus": "softplus",
    "relu6": "relu6",
    "silu": "silu",
    "swish": "swish",
    "mish": "mish",
    "exponential": "exponential",
    "hard_silu": "hard_silu",
    "hard_swish": "hard_swish",
}
_INITIALIZERS = set(INITIALIZERS)
_INITIALIZER_CLASSES = {
    "GlorotUniform": "glorot_uniform",
    "GlorotNormal": "glorot_normal",
    "HeUniform": "he_uniform",
    "HeNormal": "he_normal",
    "LecunUniform": "lecun_uniform",
    "LecunNormal": "lecun_normal",
    "Zeros": "zeros",
    "Ones": "ones",
}
_TRAINING_ONLY = (
    "kernel_regularizer",
    "bias_regularizer",
    "activity_regularizer",
    "kernel_constraint",
    "bias_constraint",
    "depthwise_regularizer",
    "pointwise_regularizer",
    "depthwise_constraint",
    "pointwise_constraint",
    "beta_regularizer",
    "gamma_regularizer",
    "beta_constraint",
    "gamma_constraint",
    "W_regularizer",
    "b_regularizer",
    "W_constraint",
    "b_constraint",
)
_IMAGE = ("hwc", "chw")


def _snake(name: str) -> str:
    """Keras's ``to_snake_case`` (how Keras 3 keys a layer's weights by its class)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


@dataclass
class _State:
    where: _Locator
    dialect: str
    notes: list[str]
    layers: list[dict[str, Any]] = field(default_factory=list)
    rules: dict[str, WeightRule] = field(default_factory=dict)
    order: dict[str, str] = field(default_factory=dict)  # Keras layer → its tensor's order
    spec_of: dict[str, str] = field(default_factory=dict)  # Keras layer → spec layer name
    names: set[str] = field(default_factory=lambda: {"input"})
    same_convs: list[str] = field(default_factory=list)
    same_pools: list[str] = field(default_factory=list)
    #: Keras layer → the spec Flatten whose (c, h, w) order its vector is in (``flat_chw``)
    flat_source: dict[str, str] = field(default_factory=dict)


def _spec_name(state: _State, keras_name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", keras_name)[:60] or "layer"
    if not re.match(r"[A-Za-z_]", name):
        name = f"l_{name}"[:60]
    base, n = name, 1
    while name in state.names:
        name = f"{base}_{n}"
        n += 1
    if name != keras_name:
        state.notes.append(f"layer {keras_name!r} is named {name!r} in the spec")
    state.names.add(name)
    return name


def _pair(value: Any) -> list[int] | int:
    if isinstance(value, list | tuple):
        values = [int(v) for v in value]
        return values[0] if len(values) == 2 and values[0] == values[1] else values
    return int(value)


def _pair2(value: Any) -> tuple[int, int]:
    if isinstance(value, list | tuple):
        return int(value[0]), int(value[1])
    return int(value), int(value)


#: what a config with a missing or mistyped field raises while it is read
_MALFORMED = (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError)


def _why(exc: Exception) -> str:
    what = f"no field {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else str(exc)
    return f"{type(exc).__name__}: {what}"[:200]


#: the names Keras gives a model nobody named: the file's name says more
_GENERIC = re.compile(r"(sequential|model|functional)(_\d+)?")


def translate(top: dict[str, Any], where: _Locator, fallback: str = "imported") -> KerasModel:
    """The spec of a Keras model config (module doc); refuses what it cannot translate exactly.
    A model Keras named by itself (``sequential_1``) is named ``fallback`` (the file's stem)."""
    try:
        name, klayers, dialect, version, every = parse_config(top, where)
    except _MALFORMED as exc:
        where.fail("config", f"a malformed model config ({_why(exc)})")
    if _GENERIC.fullmatch(name):
        name = fallback
    notes: list[str] = []
    state = _State(where, dialect, notes)
    try:
        input_shape, input_order = _input(klayers, where, state)
    except _MALFORMED as exc:
        where.fail("batch_input_shape", f"a malformed input shape ({_why(exc)})", klayers[0].name)
    state.order[""] = input_order
    state.spec_of.setdefault("", "input")
    for layer in klayers:
        if layer.cls == "InputLayer":
            state.spec_of[layer.name] = state.spec_of[""]
            state.order[layer.name] = input_order
            continue
        try:
            _translate_layer(state, layer)
        except _MALFORMED as exc:
            _refuse(state, layer, f"a malformed config ({_why(exc)})")
    spec_name = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "imported"
    if not re.match(r"[A-Za-z_]", spec_name):
        spec_name = f"m_{spec_name}"[:64]
    last = klayers[-1].name
    if state.order.get(last) == "chw":
        notes.append(
            f"the output of {last!r} is an image, channels last in the spec: Keras's (c, h, w) "
            "is the spec's (h, w, c)"
        )
    spec: dict[str, Any] = {"name": spec_name, "input_shape": input_shape, "layers": state.layers}
    backend = str(top["backend"]) if "backend" in top else None
    return KerasModel(
        spec_name,
        spec,
        state.rules,
        klayers,
        every,
        dialect,
        version,
        backend,
        notes,
        channels_first=input_order == "chw",
        same_convs=state.same_convs,
        same_pools=state.same_pools,
    )


def _first_format(klayers: list[KLayer]) -> str | None:
    """channels_first / channels_last of the first layer that says, in order."""
    for layer in klayers:
        fmt = _format(layer)
        if fmt is not None:
            return fmt
    return None


def _format(layer: KLayer) -> str | None:
    config = layer.config
    if layer.cls in ("Flatten",):
        return None
    if "dim_ordering" in config:
        return "channels_first" if config["dim_ordering"] == "th" else "channels_last"
    value = config.get("data_format")
    if value in ("channels_first", "channels_last"):
        return str(value)
    return None


def _input(klayers: list[KLayer], where: _Locator, state: _State) -> tuple[list[int], str]:
    """The spec's input shape and the input tensor's order."""
    shape: list[Any] | None = None
    for layer in klayers[:2]:
        config = layer.config
        for key in ("batch_input_shape", "batch_shape"):
            if isinstance(config.get(key), list):
                shape = list(config[key])[1:]
                break
        if shape is None and isinstance(config.get("input_shape"), list):
            shape = list(config["input_shape"])
        if shape is None and config.get("input_dim"):
            shape = [int(config["input_dim"])]
        if shape is not None:
            break
    if shape is None:
        where.fail(
            "config.layers[0]",
            "the model does not record its input shape (no InputLayer, batch_input_shape or "
            "input_shape)",
            klayers[0].name,
            hint="build the model with an input shape before to_json(), or save it with "
            "model.save()",
        )
    if any(not isinstance(v, int) or v < 1 for v in shape):
        where.fail(
            "batch_input_shape",
            f"the input shape {shape} has an unknown or invalid extent; specnet needs fixed sizes",
            klayers[0].name,
        )
    if len(shape) == 3:
        fmt = _first_format(klayers)
        if fmt == "channels_first":
            c, h, w = shape
            return [h, w, c], "chw"
        return shape, "hwc"
    if len(shape) == 2:
        state.notes.append(
            f"the input {tuple(shape)} has no channel axis: imported as {(*shape, 1)}"
        )
        return [*shape, 1], "hwc"
    if len(shape) == 1:
        state.notes.append(
            f"the input ({shape[0]},) is a vector: imported as (1, 1, {shape[0]}) with a "
            "Flatten first"
        )
        state.layers.append({"name": "input_flatten", "type": "Flatten"})
        state.names.add("input_flatten")
        state.spec_of[""] = "input_flatten"
        return [1, 1, shape[0]], "flat"
    where.fail(
        "batch_input_shape", f"a rank-{len(shape)} input {shape}; specnet reads images (h, w, c)"
    )
    raise AssertionError  # unreachable


def _refuse(
    state: _State, layer: KLayer, message: str, field: str = "", hint: str = ""
) -> NoReturn:
    path = f"config.layers[{layer.index}]" + (f".config.{field}" if field else "")
    state.where.fail(path, f"layer {layer.name!r} ({layer.cls}): {message}", layer.name, hint)


def _activation(state: _State, layer: KLayer, value: Any, field: str = "activation") -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        value = (
            value.get("config", {}).get("name") if value.get("class_name") == "function" else None
        )
        if not isinstance(value, str):
            _refuse(
                state,
                layer,
                "a custom activation object; specnet runs only named activations",
                field,
            )
    name = str(value)
    if name == "hard_sigmoid" and state.dialect != "Keras 3":
        _refuse(
            state,
            layer,
            f"{state.dialect}'s hard_sigmoid is clip(0.2·x + 0.5, 0, 1); specnet's (Keras 3's) is "
            "relu6(x + 3) / 6, another function",
            field,
        )
    if name in ("leaky_relu", "hard_sigmoid"):  # leaky_relu: slope 0.2 in every Keras
        return name
    if name not in _ACTIVATIONS:
        _refuse(state, layer, f"activation {name!r} is not one specnet has", field)
    return _ACTIVATIONS[name]


def _initializer(state: _State, layer: KLayer, value: Any, default: str) -> str:
    if value is None:
        return default
    if isinstance(value, str):
        if value in _INITIALIZERS:
            return value
        mapped = {
            "normal": "glorot_normal",
            "uniform": "glorot_uniform",
            "zero": "zeros",
            "one": "ones",
        }.get(value)
    elif isinstance(value, dict):
        cls = str(value.get("class_name"))
        mapped = _INITIALIZER_CLASSES.get(cls)
        if cls == "VarianceScaling":
            cfg = value.get("config", {})
            key = (float(cfg.get("scale", 1)), cfg.get("mode"), cfg.get("distribution"))
            mapped = {
                (1.0, "fan_avg", "uniform"): "glorot_uniform",
                (1.0, "fan_avg", "normal"): "glorot_normal",
                (1.0, "fan_avg", "truncated_normal"): "glorot_normal",
                (2.0, "fan_in", "uniform"): "he_uniform",
                (2.0, "fan_in", "normal"): "he_normal",
                (2.0, "fan_in", "truncated_normal"): "he_normal",
                (1.0, "fan_in", "uniform"): "lecun_uniform",
                (1.0, "fan_in", "normal"): "lecun_normal",
                (1.0, "fan_in", "truncated_normal"): "lecun_normal",
            }.get(key)
    else:
        mapped = None
    if mapped is None:
        state.notes.append(
            f"layer {layer.name!r}: initializer {brief(value, 60)} has no specnet equal; "
            f"{default} instead (it matters only when training from scratch)"
        )
        return default
    return mapped


def _check_code(state: _State, layer: KLayer) -> None:
    if layer.cls == "Lambda":
        _refuse(
            state,
            layer,
            "a Lambda layer holds Python code (marshalled bytecode), which specnet never runs",
            "function",
            hint="replace it in the original model with a layer specnet has (a Lambda computing "
            "x / 255 - 0.5 is Rescaling(scale=1/255, offset=-0.5)), or cut it off and feed "
            "the model what it computed",
        )
    if layer.cls in _MODELS:
        _refuse(
            state,
            layer,
            "a model nested inside the model; specnet imports one flat model",
            hint="flatten it in Keras first (rebuild the outer model from the inner one's layers)",
        )
    if isinstance(layer.config.get("function_type"), str):  # code in another layer's config
        _refuse(state, layer, "a function (marshalled code), which specnet never runs")


#: a spec kind → its regularizer fields, each with the Keras 1 key it had (W_, b_)
_REGULARIZER_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "Conv2D": (("kernel_regularizer", "W_regularizer"), ("bias_regularizer", "b_regularizer")),
    "Dense": (("kernel_regularizer", "W_regularizer"), ("bias_regularizer", "b_regularizer")),
    "Conv2DTranspose": (
        ("kernel_regularizer", "W_regularizer"),
        ("bias_regularizer", "b_regularizer"),
    ),
    "DepthwiseConv2D": (("depthwise_regularizer", ""), ("bias_regularizer", "b_regularizer")),
    "SeparableConv2D": (
        ("depthwise_regularizer", ""),
        ("pointwise_regularizer", ""),
        ("bias_regularizer", "b_regularizer"),
    ),
}
#: the Keras classes whose regularizers a spec layer carries
_REGULARIZED_CLASSES = {
    "Conv2D": "Conv2D",
    "Convolution2D": "Conv2D",
    "Dense": "Dense",
    "Conv2DTranspose": "Conv2DTranspose",
    "Deconvolution2D": "Conv2DTranspose",
    "DepthwiseConv2D": "DepthwiseConv2D",
    "SeparableConv2D": "SeparableConv2D",
    "SeparableConvolution2D": "SeparableConv2D",
}


def regularizer(value: Any) -> dict[str, Any] | None:
    """A Keras 1/2/3 regularizer config as a spec regularizer, or None for one specnet has
    not (OrthogonalRegularizer, a custom class): Keras 2/3 ``{class_name: L2, config: {l2:
    0.01}}`` (``L1``, ``L1L2``, ``l1_l2``), Keras 1 ``{name: WeightRegularizer, l1, l2}``."""
    if not isinstance(value, dict):
        return {"type": value} if value in ("l1", "l2", "l1_l2", "L1", "L2", "L1L2") else None
    cls = value.get("class_name", value.get("name"))
    config = value.get("config", value)
    factors = {k: float(config[k]) for k in ("l1", "l2") if isinstance(config.get(k), int | float)}
    if any(not math.isfinite(f) or f < 0 for f in factors.values()):
        return None
    if cls in ("L1", "l1") and set(factors) <= {"l1"}:
        return {"type": "l1", **factors}
    if cls in ("L2", "l2") and set(factors) <= {"l2"}:
        return {"type": "l2", **factors}
    if cls in ("L1L2", "l1_l2", "WeightRegularizer"):
        return {"type": "l1_l2", **factors}
    return None


def _carries(layer: KLayer, key: str) -> bool:
    """Whether the spec layer made of ``layer`` keeps its regularizer ``key``."""
    fields = _REGULARIZER_FIELDS.get(_REGULARIZED_CLASSES.get(layer.cls, ""), ())
    return any(key in pair for pair in fields) and regularizer(layer.config[key]) is not None


def _drop_training_only(state: _State, layer: KLayer) -> None:
    dropped = [
        key
        for key in _TRAINING_ONLY
        if layer.config.get(key) not in (None, {}, "") and not _carries(layer, key)
    ]
    if dropped:
        state.notes.append(
            f"layer {layer.name!r}: {', '.join(dropped)} dropped (specnet has none yet; "
            "inference is the same, training from here is not)"
        )
    if layer.config.get("trainable") is False:
        state.notes.append(
            f"layer {layer.name!r} was frozen (trainable: false); specnet trains every layer"
        )


def _expect_order(state: _State, layer: KLayer, got: str, want: str) -> None:
    """Make ``layer`` read its input in the order it expects. A channels-last layer reading a
    channels-first layer's tensor (or the other way round) reads that tensor's axes as Keras
    holds them, as another layout: a Permute before it gives it exactly those axes (Keras's
    (c, h, w) tensor, which the spec holds as (h, w, c), read as (h, w, c): ``[3, 1, 2]``;
    the other way, ``[2, 3, 1]``)."""
    if got == want:
        return
    if want in _IMAGE and got in _IMAGE:
        source = layer.inputs[0]
        dims = [3, 1, 2] if got == "chw" else [2, 3, 1]
        name = _spec_name(state, f"{layer.name}_permute")
        item: dict[str, Any] = {"name": name, "type": "Permute", "dims": dims}
        previous = state.layers[-1]["name"] if state.layers else "input"
        if state.spec_of[source] != previous:
            item["inputs"] = state.spec_of[source]
        state.layers.append(item)
        key = f"\0{name}"  # a tensor of the spec's own, between two Keras layers
        state.spec_of[key], state.order[key] = name, want
        layer.inputs = [key, *layer.inputs[1:]]
        reads, wrote = ("channels first", "channels last")[:: 1 if want == "chw" else -1]
        state.notes.append(
            f"layer {layer.name!r} reads {reads} what the layer before it wrote {wrote}: Keras "
            f"read that tensor's axes as another layout; {name} reorders them so"
        )
        return
    _refuse(state, layer, f"it needs an image (h, w, c) input, but reads a {got} vector")


_CONV_INIT = (("kernel_initializer", "glorot_uniform"), ("bias_initializer", "zeros"))
_DEPTHWISE_INIT = (("depthwise_initializer", "glorot_uniform"), ("bias_initializer", "zeros"))
_NORM_INIT = (("beta_initializer", "zeros"), ("gamma_initializer", "ones"))
#: a spec kind → its initializer fields and their defaults
_INITIALIZER_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "Conv2D": _CONV_INIT,
    "Dense": _CONV_INIT,
    "Conv2DTranspose": _CONV_INIT,
    "DepthwiseConv2D": _DEPTHWISE_INIT,
    "SeparableConv2D": (*_DEPTHWISE_INIT, ("pointwise_initializer", "glorot_uniform")),
    "BatchNormalization": (
        *_NORM_INIT,
        ("moving_mean_initializer", "zeros"),
        ("moving_variance_initializer", "ones"),
    ),
    "LayerNormalization": _NORM_INIT,
}


def _add(
    state: _State, layer: KLayer, spec_layer: dict[str, Any], order: str, rule: bool = False
) -> str:
    name = _spec_name(state, layer.name)
    item: dict[str, Any] = {"name": name, **spec_layer}
    inputs = [state.spec_of[i] for i in layer.inputs]
    previous = state.layers[-1]["name"] if state.layers else "input"
    if inputs != [previous]:
        item["inputs"] = inputs if len(inputs) != 1 else inputs[0]
    state.layers.append(item)
    state.spec_of[layer.name] = name
    state.order[layer.name] = order
    for key, default in _INITIALIZER_FIELDS.get(spec_layer["type"], ()):
        found = layer.config.get(key)
        if found is None and key == "kernel_initializer":
            found = layer.config.get("init")  # Keras 1
        if found is not None:
            chosen = _initializer(state, layer, found, default)
            if chosen != default:
                item[key] = chosen
    for key, keras1 in _REGULARIZER_FIELDS.get(spec_layer["type"], ()):
        found = layer.config.get(key, layer.config.get(keras1) if keras1 else None)
        carried = regularizer(found) if found not in (None, {}, "") else None
        if carried is not None:
            item[key] = carried
    if order == "flat_chw" and layer.inputs[0] in state.flat_source:  # Dropout, Activation
        state.flat_source[layer.name] = state.flat_source[layer.inputs[0]]
    if rule:
        state.rules[name] = WeightRule(name, layer.name, layer.cls, position=layer.index)
    return name


def _conv_common(state: _State, layer: KLayer) -> tuple[dict[str, Any], str]:
    c = layer.config
    fmt = _format(layer) or "channels_last"
    order = "chw" if fmt == "channels_first" else "hwc"
    _expect_order(state, layer, state.order[layer.inputs[0]], order)
    padding = str(c.get("padding", c.get("border_mode", "valid")))
    if padding not in ("valid", "same"):
        _refuse(state, layer, f"padding {padding!r}; specnet has valid and same", "padding")
    strides = c.get("strides", c.get("subsample", 1))
    dilation = c.get("dilation_rate", c.get("atrous_rate", 1))
    out: dict[str, Any] = {}
    if _pair2(strides) != (1, 1):
        out["strides"] = _pair(strides)
    if padding != "valid":
        out["padding"] = padding
    if _pair2(dilation) != (1, 1):
        out["dilation_rate"] = _pair(dilation)
    activation = _activation(state, layer, c.get("activation"))
    if activation not in (None, "linear"):
        out["activation"] = activation
    if c.get("use_bias", c.get("bias", True)) is False:
        out["use_bias"] = False
    if int(c.get("groups", 1)) != 1:
        _refuse(state, layer, f"groups: {c['groups']}; specnet's Conv2D has one group", "groups")
    return out, order


def _get(config: dict[str, Any], *keys: str) -> Any:
    """The first of ``keys`` the config has (Keras 2's name, then Keras 1's)."""
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    raise KeyError(keys[0])


def _kernel_size(layer: KLayer) -> list[int] | int:
    c = layer.config
    if "nb_row" in c:
        return _pair([c["nb_row"], c["nb_col"]])
    return _pair(c["kernel_size"])


def _translate_layer(state: _State, layer: KLayer) -> None:
    _check_code(state, layer)
    _drop_training_only(state, layer)
    c = layer.config
    cls = layer.cls
    spec: dict[str, Any]
    if not layer.inputs:
        _refuse(state, layer, "it has no inbound layer")
    got = state.order[layer.inputs[0]]
    keras1_th = c.get("dim_ordering") == "th"

    if cls in ("Conv2D", "Convolution2D", "AtrousConvolution2D"):
        out, order = _conv_common(state, layer)
        filters = _get(c, "filters", "nb_filter")
        spec = {
            "type": "Conv2D",
            "filters": int(filters),
            "kernel_size": _kernel_size(layer),
            **out,
        }
        name = _add(state, layer, spec, order, rule=True)
        state.rules[name].kernel_channels_first = keras1_th
        if out.get("padding") == "same":
            state.same_convs.append(name)
    elif cls in ("SeparableConv2D", "SeparableConvolution2D"):
        out, order = _conv_common(state, layer)
        if keras1_th:
            _refuse(
                state,
                layer,
                "a Keras 1 channels-first SeparableConvolution2D (TensorFlow-only in Keras 1)",
            )
        spec = {
            "type": "SeparableConv2D",
            "filters": int(_get(c, "filters", "nb_filter")),
            "kernel_size": _kernel_size(layer),
            **out,
        }
        if int(c.get("depth_multiplier", 1)) != 1:
            spec["depth_multiplier"] = int(c["depth_multiplier"])
        name = _add(state, layer, spec, order, rule=True)
        if out.get("padding") == "same":
            state.same_convs.append(name)
    elif cls == "DepthwiseConv2D":
        out, order = _conv_common(state, layer)
        spec = {"type": "DepthwiseConv2D", "kernel_size": _kernel_size(layer), **out}
        if int(c.get("depth_multiplier", 1)) != 1:
            spec["depth_multiplier"] = int(c["depth_multiplier"])
        name = _add(state, layer, spec, order, rule=True)
        if out.get("padding") == "same":
            state.same_convs.append(name)
    elif cls in ("Conv2DTranspose", "Convolution2DTranspose"):
        out, order = _conv_common(state, layer)
        if c.get("output_padding") not in (None, [0, 0], 0):
            _refuse(state, layer, "output_padding is not supported yet", "output_padding")
        if "dilation_rate" in out:
            _refuse(
                state,
                layer,
                "a dilated transposed convolution is not supported yet",
                "dilation_rate",
            )
        spec = {
            "type": "Conv2DTranspose",
            "filters": int(c["filters"]),
            "kernel_size": _kernel_size(layer),
            **out,
        }
        _add(state, layer, spec, order, rule=True)
    elif cls == "Deconvolution2D":
        _refuse(state, layer, "Keras 1's Deconvolution2D (with its output_shape) is not supported")
    elif cls in ("MaxPooling2D", "MaxPool2D", "AveragePooling2D", "AvgPool2D"):
        fmt = _format(layer) or "channels_last"
        order = "chw" if fmt == "channels_first" else "hwc"
        _expect_order(state, layer, got, order)
        pool = c.get("pool_size", 2)
        strides = c.get("strides") or pool
        padding = str(c.get("padding", c.get("border_mode", "valid")))
        kind = "MaxPooling2D" if cls.startswith("Max") else "AveragePooling2D"
        spec = {"type": kind, "pool_size": _pair(pool)}
        if _pair2(strides) != _pair2(pool):
            spec["strides"] = _pair(strides)
        if padding != "valid":
            spec["padding"] = padding
        name = _add(state, layer, spec, order)
        if padding == "same":
            state.same_pools.append(name)
    elif cls in (
        "GlobalAveragePooling2D",
        "GlobalMaxPooling2D",
        "GlobalAvgPool2D",
        "GlobalMaxPool2D",
    ):
        fmt = _format(layer) or "channels_last"
        order = "chw" if fmt == "channels_first" else "hwc"
        _expect_order(state, layer, got, order)
        kind = "GlobalMaxPooling2D" if "Max" in cls else "GlobalAveragePooling2D"
        spec = {"type": kind}
        keep = bool(c.get("keepdims", False))
        if keep:
            spec["keepdims"] = True
        _add(state, layer, spec, order if keep else "flat")
    elif cls == "ZeroPadding2D":
        fmt = _format(layer) or "channels_last"
        order = "chw" if fmt == "channels_first" else "hwc"
        _expect_order(state, layer, got, order)
        pads: Any = c.get("padding", 1)
        if isinstance(pads, list) and len(pads) == 4:  # Keras 1.2: (top, bottom, left, right)
            pads = [[pads[0], pads[1]], [pads[2], pads[3]]]
        _add(state, layer, {"type": "ZeroPadding2D", "padding": pads}, order)
    elif cls == "UpSampling2D":
        fmt = _format(layer) or "channels_last"
        order = "chw" if fmt == "channels_first" else "hwc"
        _expect_order(state, layer, got, order)
        spec = {"type": "UpSampling2D", "size": _pair(c.get("size", 2))}
        if c.get("interpolation", "nearest") != "nearest":
            spec["interpolation"] = c["interpolation"]
        _add(state, layer, spec, order)
    elif cls == "Flatten":
        if got == "chw":
            order = "flat" if c.get("data_format") == "channels_first" else "flat_chw"
        elif got == "hwc":
            if c.get("data_format") == "channels_first":
                _refuse(
                    state,
                    layer,
                    "Flatten(data_format='channels_first') of a channels-last tensor permutes its "
                    "axes in a way specnet has no layer for",
                    "data_format",
                )
            order = "flat"
        else:
            order = got
        name = _add(state, layer, {"type": "Flatten"}, order)
        if order == "flat_chw":
            state.flat_source[layer.name] = name
    elif cls == "Dense":
        if got in _IMAGE:
            _refuse(
                state,
                layer,
                "a Dense on an image (Keras applies it to the last axis); specnet's Dense reads a "
                "vector",
                hint="the model needs a Flatten before it",
            )
        units = int(c.get("units", c.get("output_dim", 0)))
        spec = {"type": "Dense", "units": units}
        activation = _activation(state, layer, c.get("activation"))
        if activation not in (None, "linear"):
            spec["activation"] = activation
        if c.get("use_bias", c.get("bias", True)) is False:
            spec["use_bias"] = False
        name = _add(state, layer, spec, "flat", rule=True)
        if got == "flat_chw":
            state.rules[name].rows_chw = state.flat_source[layer.inputs[0]]
        if c.get("input_dim"):
            state.rules[name].input_dim = int(c["input_dim"])
    elif cls == "Activation":
        activation = _activation(state, layer, c.get("activation"))
        if activation == "softmax" and got == "chw":
            _refuse(
                state, layer, "a softmax over the last axis of a channels-first image (its width)"
            )
        _add(state, layer, {"type": "Activation", "activation": activation}, got)
    elif cls == "ReLU":
        spec = {"type": "ReLU"}
        if c.get("max_value") is not None:
            spec["max_value"] = float(c["max_value"])
        if float(c.get("negative_slope", 0) or 0):
            spec["negative_slope"] = float(c["negative_slope"])
        if float(c.get("threshold", 0) or 0):
            _refuse(state, layer, "a threshold other than 0 is not supported yet", "threshold")
        _add(state, layer, spec, got)
    elif cls == "LeakyReLU":
        slope = float(c.get("negative_slope", c.get("alpha", 0.3)))
        if slope < 0:
            _refuse(state, layer, "a negative slope", "alpha")
        _add(state, layer, {"type": "ReLU", "negative_slope": slope}, got)
    elif cls == "ELU":
        if float(c.get("alpha", 1.0)) != 1.0:
            _refuse(state, layer, "alpha other than 1 (specnet's elu is Keras's default)", "alpha")
        _add(state, layer, {"type": "Activation", "activation": "elu"}, got)
    elif cls == "Softmax":
        axis = c.get("axis", -1)
        channel = -1 if got != "chw" else 1
        if axis not in (-1, channel) or (got == "chw" and axis == -1):
            _refuse(
                state, layer, f"a softmax over axis {axis}; specnet's is over the channels", "axis"
            )
        _add(state, layer, {"type": "Softmax"}, got)
    elif cls == "Dropout":
        _add(state, layer, {"type": "Dropout", "rate": float(c.get("rate", c.get("p", 0.5)))}, got)
    elif cls in ("SpatialDropout2D", "GaussianDropout", "GaussianNoise", "AlphaDropout"):
        _refuse(
            state,
            layer,
            f"{cls} is the identity at inference but trains otherwise than Dropout; specnet has "
            "no equal yet",
        )
    elif cls == "BatchNormalization":
        if int(c.get("mode", 0)) != 0:
            _refuse(state, layer, f"Keras 1's mode {c['mode']} (specnet has mode 0)", "mode")
        axis = c.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        channels = {"chw": (1,), "hwc": (-1, 3), "flat": (-1, 1), "flat_chw": (-1, 1)}[got]
        if axis not in channels:
            _refuse(state, layer, f"normalises axis {axis}, not the channels", "axis")
        spec = {"type": "BatchNormalization"}
        if float(c.get("momentum", 0.99)) != 0.99:
            spec["momentum"] = float(c["momentum"])
        if float(c.get("epsilon", 1e-3)) != 1e-3:
            spec["epsilon"] = float(c["epsilon"])
        center, scale = c.get("center", True), c.get("scale", True)
        if center is False or scale is False:
            if center != scale:
                _refuse(
                    state,
                    layer,
                    "center and scale differ; specnet's BatchNormalization has both or neither",
                )
            spec["center"] = spec["scale"] = False
        if c.get("renorm"):
            _refuse(state, layer, "batch renormalization is not supported", "renorm")
        if got == "flat_chw":
            _refuse(state, layer, "a BatchNormalization of a channels-first flattened vector")
        _add(state, layer, spec, got, rule=True)
    elif cls == "LayerNormalization":
        axis = c.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        if got == "chw" or axis not in (-1, 3 if got == "hwc" else 1):
            _refuse(
                state,
                layer,
                f"normalises axis {axis}; specnet's normalises the last (channels)",
                "axis",
            )
        if c.get("rms_scaling"):
            _refuse(state, layer, "rms_scaling is not supported", "rms_scaling")
        spec = {"type": "LayerNormalization"}
        if float(c.get("epsilon", 1e-3)) != 1e-3:
            spec["epsilon"] = float(c["epsilon"])
        center, scale = c.get("center", True), c.get("scale", True)
        if not scale and center:
            _refuse(state, layer, "scale false with center true is not supported", "scale")
        if not center:
            spec["center"] = False
        if not scale:
            spec["scale"] = False
        _add(state, layer, spec, got, rule=True)
    elif cls == "Rescaling":
        spec = {"type": "Rescaling", "scale": float(c["scale"])}
        if float(c.get("offset", 0)):
            spec["offset"] = float(c["offset"])
        _add(state, layer, spec, got)
    elif cls == "Reshape":
        target = [int(v) for v in c["target_shape"]]
        if got in ("chw", "flat_chw"):
            _refuse(
                state,
                layer,
                "a Reshape of a channels-first tensor (its values are in another order)",
            )
        order = "flat" if len(target) == 1 else "hwc"
        if len(target) not in (1, 3):
            _refuse(
                state,
                layer,
                f"target_shape {target}: specnet reshapes to (n,) or (h, w, c)",
                "target_shape",
            )
        _add(state, layer, {"type": "Reshape", "target_shape": target}, order)
    elif cls in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Concatenate"):
        orders = {state.order[i] for i in layer.inputs}
        if len(orders) > 1:
            _refuse(
                state, layer, f"merges tensors of different layouts ({', '.join(sorted(orders))})"
            )
        if "flat_chw" in orders:
            _refuse(state, layer, "merges vectors flattened channels first")
        spec = {"type": cls}
        if cls == "Concatenate":
            axis = int(c.get("axis", -1))
            mapping = {
                "hwc": {-1: -1, 3: -1, 1: 1, 2: 2, -3: 1, -2: 2},
                "chw": {1: -1, -3: -1, 2: 1, -2: 1, 3: 2, -1: 2},
            }
            mapping["flat"] = {-1: -1, 1: -1}
            if axis not in mapping[got]:
                _refuse(state, layer, f"concatenates on axis {axis}", "axis")
            if mapping[got][axis] != -1:
                spec["axis"] = mapping[got][axis]
        _add(state, layer, spec, got)
    elif cls == "Merge":
        _refuse(
            state,
            layer,
            "Keras 1's Merge layer is not supported; rebuild it with Keras 2's merge layers",
        )
    elif cls == "Permute":
        if got != "hwc":
            _refuse(state, layer, "a Permute of a channels-first tensor is not supported yet")
        _add(state, layer, {"type": "Permute", "dims": [int(v) for v in c["dims"]]}, "hwc")
    elif cls in (
        "RepeatVector",
        "Cropping2D",
        "PReLU",
        "ThresholdedReLU",
        "Masking",
        "Embedding",
    ):
        _refuse(state, layer, f"specnet has no {cls} yet")
    else:
        _refuse(state, layer, f"specnet has no layer {cls!r}")
