"""ONNX files → a spec and canonical weights, operator by operator.

The graph is first put in order (nodes may be listed in any order: onnxruntime runs such
files, ``onnx.checker`` refuses them), then every node whose inputs are all constants —
initializers, ``Constant`` nodes, or results of such nodes (a weight reshaped or transposed by
a node) — is evaluated once with ONNX's reference evaluator, so what is left reads the input.

Each remaining value has a **layout**: ``nchw`` (an ONNX image; the spec holds the same data
as (h, w, c)), ``nhwc`` (an image already channels last, as a Keras export's input before its
first Transpose), ``flat`` (a vector in the spec's order) or ``flat_chw`` (a vector flattened
from an NCHW image: (c, h, w) order). A ``Transpose`` between NHWC and NCHW changes only the
label; a Flatten/Reshape of an NCHW image gives ``flat_chw``, and the Dense (``Gemm`` or
``MatMul``) that reads it gets its rows reordered to (h, w, c), as for a channels-first Keras
model. A bias added by a separate ``Add`` of a per-channel constant joins the convolution or
Dense before it; a scalar ``Add``/``Sub``/``Mul``/``Div`` becomes a Rescaling.

Operators: Conv (one group: Conv2D; one per channel: DepthwiseConv2D), Gemm, MatMul, Add,
Sub, Mul, Div, Sum, Max, Mean, Relu, LeakyRelu, Sigmoid, Tanh, Elu, Selu, Softplus, Exp, Clip
(0–6), HardSigmoid (1/6, 1/2), HardSwish, Mish, Softmax, MaxPool, AveragePool, GlobalAveragePool,
GlobalMaxPool, Flatten, Reshape (to a vector), Transpose (NHWC↔NCHW), BatchNormalization, Concat,
Pad (zeros), Dropout, Identity. Anything else is refused naming the node. Padding is taken as
written: TensorFlow's ``same`` where it is that, else an explicit ZeroPadding2D before a
``valid`` convolution; pooling windows padded otherwise are refused (zeros are not -inf).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from specnet._frameworks import require
from specnet.errors import Issue, UsageError
from specnet.importers.keras_config import ModelImportError, _snake

if TYPE_CHECKING:
    from specnet.importers.common import ImportResult

__all__ = ["import_onnx", "translate_onnx"]


@dataclass
class _Value:
    producer: str  # the spec layer whose output it is ("input" for the model's input)
    layout: str  # nchw | nhwc | flat | flat_chw
    shape: tuple[int, ...] | None  # the ONNX shape (batch included), where known


@dataclass
class _Layer:
    item: dict[str, Any]
    weights: dict[str, Any] = field(default_factory=dict)
    rows_from: str | None = None  # the Flatten whose (c, h, w) order the kernel rows follow


class _Translator:
    def __init__(self, path: Path, model: Any) -> None:
        self.path = path
        self.model = model
        self.np = require("numpy")
        self.layers: list[_Layer] = []
        self.values: dict[str, _Value] = {}
        self.consts: dict[str, Any] = {}
        self.names: set[str] = {"input"}
        self.counts: dict[str, int] = {}
        self.notes: list[str] = []
        self.uses: dict[str, int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        #: a ``flat_chw`` value → the Flatten (spec name) whose (c, h, w) order it is in
        self.flat_sources: dict[str, str] = {}

    # ------------------------------------------------------------------ helpers
    def fail(self, node: Any, message: str, hint: str = "") -> NoReturn:
        label = f"node {node.name!r} ({node.op_type})" if node.name else f"a {node.op_type} node"
        raise ModelImportError(
            [Issue(str(self.path), 0, 0, "graph.node", f"{label}: {message}", hint)]
        )

    def name_for(self, node: Any, prefix: str) -> str:
        """The layer's name: from the node's (``conv2d/Conv`` from specnet or PyTorch,
        ``sequential/conv2d/BiasAdd`` from tf2onnx: the part naming the layer), else Keras's
        automatic name for the kind."""
        parts = [part for part in node.name.split("/") if part]
        base = parts[-2] if len(parts) >= 2 else (parts[0] if parts else "")
        base = re.sub(r"[^A-Za-z0-9_]", "_", base)[:56]
        if not base or not re.match(r"[A-Za-z_]", base):
            n = self.counts.get(prefix, 0)
            self.counts[prefix] = n + 1
            base = prefix if n == 0 else f"{prefix}_{n}"
        name, n = base, 1
        while name in self.names:
            name = f"{base}_{n}"
            n += 1
        self.names.add(name)
        return name

    def add(
        self, node: Any, prefix: str, item: dict[str, Any], source: _Value | list[_Value]
    ) -> _Layer:
        sources = source if isinstance(source, list) else [source]
        name = self.name_for(node, prefix)
        entry: dict[str, Any] = {"name": name, **item}
        inputs = [s.producer for s in sources]
        previous = self.layers[-1].item["name"] if self.layers else "input"
        if inputs != [previous]:
            entry["inputs"] = inputs if len(inputs) > 1 else inputs[0]
        layer = _Layer(entry)
        self.layers.append(layer)
        return layer

    def value(self, node: Any, index: int = 0) -> _Value:
        name = node.input[index]
        if name not in self.values:
            if name in self.consts:
                self.fail(node, f"input {name!r} is a constant where specnet needs the data")
            self.fail(node, f"input {name!r} is not computed by the graph")
        return self.values[name]

    def const(self, node: Any, index: int) -> Any:
        if index >= len(node.input) or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.consts:
            self.fail(node, f"input {name!r} must be a constant (weights computed from the data?)")
        return self.consts[name]

    def attrs(self, node: Any) -> dict[str, Any]:
        onnx = require("onnx")
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def out(self, node: Any, producer: str, layout: str) -> None:
        self.values[node.output[0]] = _Value(producer, layout, self.shapes.get(node.output[0]))

    # ------------------------------------------------------------------ the graph
    def run(self) -> tuple[dict[str, Any], dict[str, Any]]:
        onnx = require("onnx")
        graph = self.model.graph
        for tensor in graph.initializer:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                raise UsageError(
                    f"{self.path}: tensor {tensor.name!r} is stored in an external file; save "
                    "the model as one file (onnx.save(model, path, save_as_external_data=False))"
                )
            self.consts[tensor.name] = onnx.numpy_helper.to_array(tensor)
        nodes = self.ordered(graph)
        self.infer_shapes(graph, nodes)
        for node in nodes:
            for name in node.input:
                self.uses[name] = self.uses.get(name, 0) + 1
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise UsageError(
                f"{self.path}: the graph has {len(inputs)} inputs "
                f"({', '.join(i.name for i in inputs)}); specnet specs have one"
            )
        if len(graph.output) != 1:
            raise UsageError(
                f"{self.path}: the graph has {len(graph.output)} outputs; specnet specs have one "
                "(several outputs are not supported yet)"
            )
        input_shape = self.input_shape(inputs[0], nodes)
        for node in nodes:
            if (
                all(name in self.consts or not name for name in node.input)
                and node.op_type != "Shape"
            ):
                self.fold(node)
            else:
                try:
                    self.translate(node)
                except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
                    self.fail(node, f"a malformed node ({type(exc).__name__}: {exc})")
        output = graph.output[0].name
        if output not in self.values:
            raise UsageError(
                f"{self.path}: the output {output!r} is a constant, not computed from the input"
            )
        last = self.values[output]
        if not self.layers or last.producer != self.layers[-1].item["name"]:
            raise UsageError(f"{self.path}: the output is not the last layer computed")
        if last.layout == "nchw":
            self.notes.append(
                "the output is an NCHW image: the spec's output is its (h, w, c) view"
            )
        items = [layer.item for layer in self.layers]
        props = {p.key: p.value for p in self.model.metadata_props}  # specnet's own files
        name = re.sub(r"[^A-Za-z0-9_-]", "_", props.get("spec") or graph.name or self.path.stem)
        name = name[:64] or "imported"
        if not re.match(r"[A-Za-z_]", name):
            name = f"m_{name}"[:64]
        spec = {"name": name, "input_shape": input_shape, "layers": items}
        return spec, {layer.item["name"]: layer for layer in self.layers}

    def ordered(self, graph: Any) -> list[Any]:
        """The nodes in an order where every input is made before it is read."""
        made = set(self.consts) | {i.name for i in graph.input} | {""}
        pending = list(graph.node)
        order = []
        while pending:
            ready = [n for n in pending if all(i in made for i in n.input)]
            if not ready:
                missing = sorted({i for n in pending for i in n.input if i not in made})[:5]
                raise UsageError(
                    f"{self.path}: the graph reads values no node makes ({', '.join(missing)}), "
                    "or its nodes form a cycle"
                )
            for node in ready:
                order.append(node)
                made.update(node.output)
                pending.remove(node)
        return order

    def infer_shapes(self, graph: Any, nodes: list[Any]) -> None:
        onnx = require("onnx")
        copy = onnx.ModelProto()
        copy.CopyFrom(self.model)
        del copy.graph.node[:]
        copy.graph.node.extend(nodes)
        try:
            inferred = onnx.shape_inference.infer_shapes(copy)
        except Exception:  # an old or odd file: sizes are then looked up where needed
            return
        for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
            dims = info.type.tensor_type.shape.dim
            if dims and all(d.HasField("dim_value") for d in dims[1:]):
                self.shapes[info.name] = (1, *(d.dim_value for d in dims[1:]))

    def input_shape(self, value: Any, nodes: list[Any]) -> list[int]:
        dims = value.type.tensor_type.shape.dim
        shape = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
        if any(v <= 0 for v in shape[1:]) or not shape:
            raise UsageError(f"{self.path}: the input {value.name!r} has no fixed size ({shape})")
        readers = [n for n in nodes if value.name in n.input]
        if len(shape) == 4:
            nhwc = bool(readers) and all(
                n.op_type == "Transpose" and list(self.attrs(n).get("perm", [])) == [0, 3, 1, 2]
                for n in readers
            )
            self.values[value.name] = _Value("input", "nhwc" if nhwc else "nchw", tuple(shape))
            _, a, b, c = shape
            return [a, b, c] if nhwc else [b, c, a]
        if len(shape) == 2:
            self.notes.append(
                f"the input {tuple(shape[1:])} is a vector: imported as (1, 1, {shape[1]}) "
                "with a Flatten first"
            )
            self.layers.append(_Layer({"name": "input_flatten", "type": "Flatten"}))
            self.names.add("input_flatten")
            self.values[value.name] = _Value("input_flatten", "flat", tuple(shape))
            return [1, 1, shape[1]]
        raise UsageError(
            f"{self.path}: a rank-{len(shape)} input; specnet reads images (N, C, H, W)"
        )

    def fold(self, node: Any) -> None:
        """Evaluate a node of constants once (a weight reshaped by a node)."""
        onnx = require("onnx")
        if node.op_type == "Constant":
            attrs = self.attrs(node)
            if "value" in attrs:
                self.consts[node.output[0]] = onnx.numpy_helper.to_array(attrs["value"])
                return
        reference = require("onnx.reference")
        inputs = [name for name in node.input if name]
        graph = onnx.helper.make_graph(
            [node],
            "fold",
            [],
            [
                onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
                for o in node.output
            ],
            [onnx.numpy_helper.from_array(self.np.asarray(self.consts[n]), n) for n in inputs],
        )
        opset = [o for o in self.model.opset_import]
        try:
            folded = onnx.helper.make_model(
                graph, opset_imports=opset, ir_version=self.model.ir_version
            )
            results = reference.ReferenceEvaluator(folded).run(None, {})
        except Exception as exc:
            self.fail(
                node, f"cannot evaluate it on its constant inputs ({type(exc).__name__}: {exc})"
            )
        for name, result in zip(node.output, results, strict=False):
            self.consts[name] = self.np.asarray(result)

    # ------------------------------------------------------------------ operators
    def translate(self, node: Any) -> None:
        op = node.op_type
        a = self.attrs(node)
        np = self.np
        item: dict[str, Any]
        if node.domain not in ("", "ai.onnx"):
            self.fail(node, f"operator domain {node.domain!r} is not ONNX's")
        if op == "Identity":
            self.values[node.output[0]] = self.value(node)
            return
        if op == "Dropout":
            source = self.value(node)
            ratio = self.const(node, 1) if len(node.input) > 1 else a.get("ratio", 0.5)
            rate = float(ratio) if ratio is not None else 0.5
            layer = self.add(node, "dropout", {"type": "Dropout", "rate": rate}, source)
            self.out(node, layer.item["name"], source.layout)
            return
        if op == "Transpose":
            source = self.value(node)
            perm = list(a.get("perm", []))
            if source.layout == "nhwc" and perm == [0, 3, 1, 2]:
                self.values[node.output[0]] = _Value(
                    source.producer, "nchw", self.shapes.get(node.output[0])
                )
            elif source.layout == "nchw" and perm == [0, 2, 3, 1]:
                self.values[node.output[0]] = _Value(
                    source.producer, "nhwc", self.shapes.get(node.output[0])
                )
            else:
                self.fail(node, f"a Transpose {perm} of a {source.layout} tensor: only NHWC↔NCHW")
            return
        if op == "Conv":
            self.conv(node, a)
            return
        if op in ("Gemm", "MatMul"):
            self.dense(node, a)
            return
        if op in ("Add", "Sub", "Mul", "Div", "Sum", "Max", "Mean"):
            self.arithmetic(node)
            return
        activations = {
            "Relu": "relu",
            "Sigmoid": "sigmoid",
            "Tanh": "tanh",
            "Softplus": "softplus",
            "Exp": "exponential",
            "HardSwish": "hard_silu",
            "Mish": "mish",
        }
        if op in activations:
            source = self.value(node)
            if self.fuse(node, source, activations[op]):
                return
            layer = self.add(
                node, "activation", {"type": "Activation", "activation": activations[op]}, source
            )
            self.out(node, layer.item["name"], source.layout)
            return
        if op in ("Elu", "Selu", "LeakyRelu", "HardSigmoid", "Clip"):
            source = self.value(node)
            if op == "Elu" and abs(a.get("alpha", 1.0) - 1.0) < 1e-7:
                item = {"type": "Activation", "activation": "elu"}
            elif (
                op == "Selu"
                and abs(a.get("alpha", 1.67326) - 1.6732632) < 1e-5
                and abs(a.get("gamma", 1.0507) - 1.0507010) < 1e-5
            ):
                item = {"type": "Activation", "activation": "selu"}
            elif op == "LeakyRelu":
                item = {"type": "ReLU", "negative_slope": _f32(a.get("alpha", 0.01))}
            elif (
                op == "HardSigmoid"
                and abs(a.get("alpha", 0.2) - 1 / 6) < 1e-6
                and abs(a.get("beta", 0.5) - 0.5) < 1e-7
            ):
                item = {"type": "Activation", "activation": "hard_sigmoid"}
            elif op == "Clip":
                low = self.const(node, 1) if len(node.input) > 1 else a.get("min")
                high = self.const(node, 2) if len(node.input) > 2 else a.get("max")
                if low is None or float(low) != 0 or high is None:
                    self.fail(
                        node, f"a Clip to [{low}, {high}]; specnet has relu6-style clips from 0"
                    )
                item = {"type": "ReLU", "max_value": float(high)}
            else:
                self.fail(node, f"attributes {a} have no specnet equal")
            layer = self.add(
                node, "activation" if item["type"] == "Activation" else "re_lu", item, source
            )
            self.out(node, layer.item["name"], source.layout)
            return
        if op == "Softmax":
            source = self.value(node)
            axis = int(a.get("axis", 1 if self.opset() < 13 else -1))
            ok = (
                (source.layout in ("flat", "flat_chw") and axis in (1, -1))
                or (source.layout == "nchw" and axis == 1 and self.opset() >= 13)
                or (source.layout == "nhwc" and axis in (3, -1) and self.opset() >= 13)
            )
            if not ok:
                self.fail(
                    node,
                    f"a softmax over axis {axis} of a {source.layout} tensor; specnet's is over "
                    "the channels",
                )
            if source.layout == "flat_chw":
                self.fail(node, "a softmax of a vector flattened channels first")
            if self.fuse(node, source, "softmax"):
                return
            layer = self.add(
                node, "activation", {"type": "Activation", "activation": "softmax"}, source
            )
            self.out(node, layer.item["name"], source.layout)
            return
        if op in ("MaxPool", "AveragePool"):
            self.pool(node, a)
            return
        if op in ("GlobalAveragePool", "GlobalMaxPool"):
            source = self.value(node)
            self.need(node, source, "nchw")
            kind = "GlobalAveragePooling2D" if op == "GlobalAveragePool" else "GlobalMaxPooling2D"
            layer = self.add(node, _snake(kind), {"type": kind, "keepdims": True}, source)
            self.out(node, layer.item["name"], "nchw")
            return
        if op in ("Flatten", "Reshape"):
            self.flatten(node, a)
            return
        if op == "BatchNormalization":
            source = self.value(node)
            if source.layout not in ("nchw", "flat"):
                self.fail(node, f"a BatchNormalization of a {source.layout} tensor")
            scale, bias, mean, var = (self.const(node, i) for i in range(1, 5))
            item = {"type": "BatchNormalization"}
            eps = _f32(a.get("epsilon", 1e-5))
            momentum = _f32(a.get("momentum", 0.9))
            item["epsilon"] = eps
            item["momentum"] = momentum
            layer = self.add(node, "batch_normalization", item, source)
            layer.weights = {
                "gamma": scale,
                "beta": bias,
                "moving_mean": mean,
                "moving_variance": var,
            }
            self.out(node, layer.item["name"], source.layout)
            return
        if op == "Concat":
            sources = [self.value(node, i) for i in range(len(node.input))]
            layouts = {s.layout for s in sources}
            if len(layouts) != 1:
                self.fail(node, f"concatenates tensors of layouts {sorted(layouts)}")
            layout = layouts.pop()
            axis = int(a.get("axis", 1))
            mapping = {
                "nchw": {1: -1, -3: -1, 2: 1, -2: 1, 3: 2, -1: 2},
                "flat": {1: -1, -1: -1},
                "nhwc": {3: -1, -1: -1, 1: 1, 2: 2},
            }
            if layout not in mapping or axis not in mapping[layout]:
                self.fail(node, f"concatenates a {layout} tensor on axis {axis}")
            item = {"type": "Concatenate"}
            if mapping[layout][axis] != -1:
                item["axis"] = mapping[layout][axis]
            layer = self.add(node, "concatenate", item, sources)
            self.out(node, layer.item["name"], layout)
            return
        if op == "Pad":
            source = self.value(node)
            self.need(node, source, "nchw")
            mode = a.get("mode", b"constant")
            pads: Any = self.const(node, 1) if len(node.input) > 1 else a.get("pads")
            value = self.const(node, 2) if len(node.input) > 2 else a.get("value", 0.0)
            if (mode not in (b"constant", "constant")) or (
                value is not None and float(np.asarray(value)) != 0.0
            ):
                self.fail(node, "only zero padding is supported")
            pads = [int(p) for p in pads]
            if any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
                self.fail(node, f"pads {pads}: specnet pads rows and columns only")
            item = {"type": "ZeroPadding2D", "padding": [[pads[2], pads[6]], [pads[3], pads[7]]]}
            layer = self.add(node, "zero_padding2d", item, source)
            self.out(node, layer.item["name"], "nchw")
            return
        self.fail(node, f"specnet has no equal for {op}")

    def by_name(self) -> dict[str, _Layer]:
        return {layer.item["name"]: layer for layer in self.layers}

    def fuse(self, node: Any, source: _Value, activation: str) -> bool:
        """An activation node made by the layer before it (``stem/Conv`` then ``stem/Relu``,
        as specnet and tf2onnx name a Conv2D with ``activation: relu``) is that layer's."""
        layer = self.by_name().get(source.producer)
        parts = [part for part in node.name.split("/") if part]
        if (
            layer is None
            or len(parts) < 2
            or layer.item["name"] != source.producer
            or re.sub(r"[^A-Za-z0-9_]", "_", parts[-2]) != source.producer
            or layer.item["type"] not in ("Conv2D", "DepthwiseConv2D", "Dense")
            or "activation" in layer.item
            or self.uses.get(node.input[0], 0) != 1
        ):
            return False
        layer.item["activation"] = activation
        self.values[node.output[0]] = _Value(
            source.producer, source.layout, self.shapes.get(node.output[0])
        )
        return True

    def opset(self) -> int:
        return max(
            (o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")), default=13
        )

    def need(self, node: Any, source: _Value, layout: str) -> None:
        if source.layout != layout:
            self.fail(node, f"reads a {source.layout} tensor where ONNX means {layout}")

    def spatial(self, node: Any, source: _Value) -> tuple[int, int]:
        shape = source.shape or self.shapes.get(node.input[0])
        if not shape or len(shape) != 4:
            self.fail(node, "the size of its input is unknown (shape inference failed)")
        return int(shape[2]), int(shape[3])

    def padding(
        self,
        node: Any,
        a: dict[str, Any],
        size: tuple[int, int],
        kernel: tuple[int, int],
        strides: tuple[int, int],
        dilations: tuple[int, int],
    ) -> tuple[str, list[list[int]] | None]:
        """``valid``, ``same`` or explicit pads ((top, bottom), (left, right)) to write out."""
        from specnet.shapes import same_padding

        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        effective = [dilations[i] * (kernel[i] - 1) + 1 for i in range(2)]
        same = [same_padding(size[i], effective[i], strides[i]) for i in range(2)]
        if auto == "VALID":
            return "valid", None
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = same if auto == "SAME_UPPER" else [(t[1], t[0]) for t in same]
        else:
            p = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
            pads = [(p[0], p[2]), (p[1], p[3])]
        if all(v == 0 for pair in pads for v in pair):
            return "valid", None
        out_same = [-(-size[i] // strides[i]) for i in range(2)]
        out_pads = [(size[i] + sum(pads[i]) - effective[i]) // strides[i] + 1 for i in range(2)]
        if [pair[0] for pair in pads] == [pair[0] for pair in same] and out_pads == out_same:
            return "same", None
        return "explicit", [list(pair) for pair in pads]

    def conv(self, node: Any, a: dict[str, Any]) -> None:
        np = self.np
        source = self.value(node)
        self.need(node, source, "nchw")
        kernel = self.const(node, 1)
        bias = self.const(node, 2)
        if kernel is None or kernel.ndim != 4:
            self.fail(node, "a Conv without a 4-D constant kernel")
        out, per_group, kh, kw = kernel.shape
        group = int(a.get("group", 1))
        strides = tuple(int(v) for v in a.get("strides", [1, 1]))
        dilations = tuple(int(v) for v in a.get("dilations", [1, 1]))
        size = self.spatial(node, source)
        channels = per_group * group
        padding, pads = self.padding(node, a, size, (kh, kw), strides, dilations)  # type: ignore[arg-type]
        if pads is not None:
            pad = self.add(
                node, "zero_padding2d", {"type": "ZeroPadding2D", "padding": pads}, source
            )
            source = _Value(pad.item["name"], "nchw", None)
            padding = "valid"
        item: dict[str, Any] = {"kernel_size": [kh, kw] if kh != kw else kh}
        if strides != (1, 1):
            item["strides"] = list(strides) if strides[0] != strides[1] else strides[0]
        if dilations != (1, 1):
            item["dilation_rate"] = (
                list(dilations) if dilations[0] != dilations[1] else dilations[0]
            )
        if padding == "same":
            item["padding"] = "same"
        if group == 1:
            item = {"type": "Conv2D", "filters": int(out), **item}
            weights = {"kernel": kernel.transpose(2, 3, 1, 0)}
            prefix = "conv2d"
        elif per_group == 1 and group == channels and out % channels == 0:
            multiplier = out // channels
            item = {"type": "DepthwiseConv2D", **item}
            if multiplier != 1:
                item["depth_multiplier"] = multiplier
            weights = {
                "depthwise_kernel": kernel.reshape(channels, multiplier, kh, kw).transpose(
                    2, 3, 0, 1
                )
            }
            prefix = "depthwise_conv2d"
        else:
            self.fail(node, f"a grouped convolution ({group} groups of {per_group} channels)")
        if bias is None:
            item["use_bias"] = False
        else:
            weights["bias"] = bias.reshape(-1)
        layer = self.add(node, prefix, item, source)
        layer.weights = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        self.out(node, layer.item["name"], "nchw")

    def dense(self, node: Any, a: dict[str, Any]) -> None:
        np = self.np
        source = self.value(node)
        if source.layout not in ("flat", "flat_chw"):
            self.fail(
                node,
                f"a {node.op_type} of a {source.layout} tensor; specnet's Dense reads a vector",
            )
        weight = self.const(node, 1)
        if weight is None or weight.ndim != 2:
            self.fail(node, "the weight is not a 2-D constant")
        if node.op_type == "Gemm":
            if a.get("transA", 0):
                self.fail(node, "transA is not supported")
            if a.get("transB", 0):
                weight = weight.T
            weight = weight * float(a.get("alpha", 1.0))
            bias = self.const(node, 2)
            if bias is not None:
                bias = np.broadcast_to(bias * float(a.get("beta", 1.0)), (weight.shape[1],))
        else:
            bias = None
        item: dict[str, Any] = {"type": "Dense", "units": int(weight.shape[1])}
        weights = {"kernel": np.asarray(weight, dtype=np.float32)}
        if bias is None:
            item["use_bias"] = False
        else:
            weights["bias"] = np.asarray(bias, dtype=np.float32)
        layer = self.add(node, "dense", item, source)
        layer.weights = weights
        if source.layout == "flat_chw":
            layer.rows_from = self.flat_sources[node.input[0]]
        self.out(node, layer.item["name"], "flat")

    def arithmetic(self, node: Any) -> None:
        np = self.np
        op = node.op_type
        dynamic = [i for i, name in enumerate(node.input) if name in self.values]
        consts = [i for i, name in enumerate(node.input) if name in self.consts]
        if len(dynamic) == 1 and len(consts) == 1 and op in ("Add", "Sub", "Mul", "Div"):
            source = self.values[node.input[dynamic[0]]]
            c = np.asarray(self.consts[node.input[consts[0]]], dtype=np.float64)
            if op == "Add" and self.fold_bias(node, source, c):
                return
            if c.size != 1:
                self.fail(
                    node,
                    f"{op} of a constant of shape {c.shape}: only a bias after a Conv or Dense, "
                    "or a scalar",
                )
            v = float(c.reshape(()))
            if op in ("Sub", "Div") and consts[0] == 0:
                self.fail(node, f"a constant {op.lower()}ed by the data (c {op} x)")
            scale, offset = {
                "Add": (1.0, v),
                "Sub": (1.0, -v),
                "Mul": (v, 0.0),
                "Div": (1 / v if v else 0.0, 0.0),
            }[op]
            if op == "Div" and v == 0:
                self.fail(node, "a division by zero")
            item: dict[str, Any] = {"type": "Rescaling", "scale": scale}
            if offset:
                item["offset"] = offset
            layer = self.add(node, "rescaling", item, source)
            self.out(node, layer.item["name"], source.layout)
            return
        if consts:
            self.fail(node, f"{op} mixes the data with constants in a way specnet has no layer for")
        sources = [self.values[name] for name in node.input]
        layouts = {s.layout for s in sources}
        if len(layouts) != 1 or "flat_chw" in layouts:
            self.fail(node, f"merges tensors of layouts {sorted(layouts)}")
        shapes = {s.shape for s in sources if s.shape}
        if len(shapes) > 1:
            self.fail(node, f"broadcasts {sorted(shapes)}; specnet merges equal shapes only")
        kind = {
            "Add": "Add",
            "Sum": "Add",
            "Sub": "Subtract",
            "Mul": "Multiply",
            "Max": "Maximum",
            "Mean": "Average",
        }.get(op)
        if kind is None or (kind == "Subtract" and len(sources) != 2):
            self.fail(node, f"{op} of {len(sources)} tensors")
        layer = self.add(node, kind.lower(), {"type": kind}, sources)
        self.out(node, layer.item["name"], sources[0].layout)

    def fold_bias(self, node: Any, source: _Value, c: Any) -> bool:
        """An Add of a per-channel constant to a Conv or Dense without bias: its bias."""
        layer = self.by_name().get(source.producer)
        data = next(name for name in node.input if name in self.values)
        if layer is None or layer.item["name"] != source.producer or self.uses.get(data, 0) != 1:
            return False
        kind = layer.item["type"]
        if kind not in ("Conv2D", "DepthwiseConv2D", "Dense"):
            return False
        units = layer.weights["kernel" if kind != "DepthwiseConv2D" else "depthwise_kernel"].shape
        channels = units[-1] if kind != "DepthwiseConv2D" else units[2] * units[3]
        squeezed = c.reshape(-1) if c.size == channels else None
        layout_ok = (
            (kind == "Dense" and c.shape[-1:] == (channels,) and c.size == channels)
            or (c.ndim in (3, 4) and c.shape[-3] == channels and c.size == channels)
            or c.size == 1
        )
        if not layout_ok:
            return False
        if squeezed is None:
            squeezed = self.np.full(channels, float(c.reshape(())))
        previous = layer.weights.get("bias")
        layer.weights["bias"] = self.np.asarray(
            squeezed + (previous if previous is not None else 0), dtype=self.np.float32
        )
        layer.item.pop("use_bias", None)
        self.values[node.output[0]] = _Value(
            source.producer, source.layout, self.shapes.get(node.output[0])
        )
        return True

    def pool(self, node: Any, a: dict[str, Any]) -> None:
        source = self.value(node)
        self.need(node, source, "nchw")
        kernel = tuple(int(v) for v in a["kernel_shape"])
        strides = tuple(int(v) for v in a.get("strides", [1, 1]))
        size = self.spatial(node, source)
        if a.get("ceil_mode", 0):
            floor = [(size[i] - kernel[i]) // strides[i] + 1 for i in range(2)]
            ceil = [-(-(size[i] - kernel[i]) // strides[i]) + 1 for i in range(2)]
            if floor != ceil:
                self.fail(
                    node, "ceil_mode rounds this window count up; specnet's pooling rounds down"
                )
        if int(a.get("storage_order", 0)) or any(int(d) != 1 for d in a.get("dilations", [1, 1])):
            self.fail(node, "dilated pooling or storage_order is not supported")
        padding, pads = self.padding(node, a, size, kernel, strides, (1, 1))  # type: ignore[arg-type]
        if pads is not None:
            self.fail(
                node,
                f"pads {pads} differ from 'same' and 'valid'; padding a pooling window with "
                "zeros would change it",
            )
        if (
            node.op_type == "AveragePool"
            and padding == "same"
            and a.get("count_include_pad", 0) != 0
        ):
            self.fail(
                node,
                "count_include_pad=1 averages the padding; specnet (Keras) averages the valid "
                "elements",
            )
        kind = "MaxPooling2D" if node.op_type == "MaxPool" else "AveragePooling2D"
        item: dict[str, Any] = {
            "type": kind,
            "pool_size": list(kernel) if kernel[0] != kernel[1] else kernel[0],
        }
        if strides != kernel:
            item["strides"] = list(strides) if strides[0] != strides[1] else strides[0]
        if padding == "same":
            item["padding"] = "same"
        layer = self.add(node, _snake(kind), item, source)
        self.out(node, layer.item["name"], "nchw")

    def flatten(self, node: Any, a: dict[str, Any]) -> None:
        source = self.value(node)
        if node.op_type == "Reshape":
            target = [int(v) for v in self.const(node, 1)]
            flat = len(target) == 2 and (target[1] == -1 or target[0] in (0, 1, -1))
            if not flat:
                self.fail(node, f"a Reshape to {target}; specnet imports Reshapes that flatten")
        elif int(a.get("axis", 1)) != 1:
            self.fail(node, f"a Flatten at axis {a['axis']}")
        if source.layout in ("flat", "flat_chw"):
            self.values[node.output[0]] = source
            return
        producer = self.by_name().get(source.producer)
        parts = [part for part in node.name.split("/") if part]
        if (
            producer is not None
            and producer.item.get("keepdims")
            and len(parts) >= 2
            and re.sub(r"[^A-Za-z0-9_]", "_", parts[-2]) == source.producer
            and self.uses.get(node.input[0], 0) == 1
        ):  # a global pooling's own squeeze (keepdims: false), as specnet exports it
            del producer.item["keepdims"]
            self.out(node, source.producer, "flat")
            return
        shape = source.shape or self.shapes.get(node.input[0])
        ones = (
            shape is not None
            and len(shape) == 4
            and (
                (source.layout == "nchw" and shape[2] == shape[3] == 1)
                or (source.layout == "nhwc" and shape[1] == shape[2] == 1)
            )
        )
        layout = "flat" if source.layout == "nhwc" or ones else "flat_chw"
        layer = self.add(node, "flatten", {"type": "Flatten"}, source)
        self.out(node, layer.item["name"], layout)
        if layout == "flat_chw":
            self.flat_sources[node.output[0]] = layer.item["name"]


def _f32(value: Any) -> float:
    """An ONNX float attribute (float32) as the shortest decimal that is that float32: the
    0.001 a spec wrote, not 0.0010000000474974513."""
    return float(str(require("numpy").float32(value)))


def translate_onnx(path: Path) -> tuple[dict[str, Any], dict[str, _Layer], list[str]]:
    """(the spec mapping, the layers with their weights, notes) of an ONNX file."""
    from specnet.backends.onnx import read_onnx

    model = read_onnx(path)
    translator = _Translator(path, model)
    spec, layers = translator.run()
    return spec, layers, translator.notes


def import_onnx(
    path: Path, *, out: str | Path | None, backend: str | None, force: bool, limits: Any
) -> ImportResult:
    """``specnet import FILE.onnx``: see the module doc."""
    from specnet.importers.common import fit_batch, rows_to_hwc, write_import
    from specnet.shapes import infer
    from specnet.spec import spec_from_dict

    np = require("numpy")
    spec_map, layers, notes = translate_onnx(path)
    fit_batch(spec_map, str(path), limits, notes)
    spec = spec_from_dict(spec_map, str(path))
    plan = infer(spec, limits)
    steps = plan.by_name()
    weights: dict[str, Any] = {}
    for name, layer in layers.items():
        for suffix, value in layer.weights.items():
            value = np.asarray(value, dtype=np.float32)
            if suffix == "kernel" and layer.rows_from is not None:
                value = rows_to_hwc(value, steps[layer.rows_from].input_shape)
            weights[f"{name}.{suffix}"] = np.ascontiguousarray(value)
    reordered = [name for name, layer in layers.items() if layer.rows_from]
    if reordered:
        notes.append(
            f"rows of {', '.join(reordered)} reordered from (c, h, w) to (h, w, c): the "
            "Flatten before it read an NCHW image"
        )
    onnx = require("onnx")
    proto = onnx.load(str(path), load_external_data=False)
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    producer = f"{proto.producer_name or '?'} {proto.producer_version}".strip()
    source_format = f"ONNX (IR {proto.ir_version}, opset {opset}, producer {producer})"
    header = f"Imported from {path} ({source_format})\n"
    header += "".join(f"note: {n}\n" for n in notes) + "\n"
    imported = {"weights": str(path), "kernel_convention": None, "notes": notes}
    return write_import(
        path,
        spec,
        spec_map,
        weights,
        source_format=source_format,
        origin=f"imported from {path}",
        header=header,
        imported=imported,
        convention=None,
        out=out,
        backend=backend,
        force=force,
        limits=limits,
    )
