"""Random *valid* networks, as hypothesis strategies, built from specnet's own shape rules.

NNSmith's idea: grow a network one layer at a time, choosing each layer's kind and fields so
that its input shape can take them, and let the runtimes disagree if they will. Each draw
picks a value to read (usually the layer above, sometimes an earlier one: graphs), a layer kind
that value's rank admits (images: convolutions of every kind, poolings, paddings, upsampling,
normalisations, reshapes; vectors: Dense, normalisations, reshapes back to images), and fields
within what the shape allows (a ``valid`` window no larger than the input, no stride with a
dilation); merges join values of one shape, Concatenate values that differ on one axis only; a
block (a residual unit used several times) appears in a share of them. Every spec is then put
through :func:`specnet.infer`, the rule book: a draw it refuses is discarded, not fixed up, so
the generator cannot hide a shape-rule bug.

Sizes stay small (inputs up to 13×13, up to 8 channels) so that hundreds run in a CI minute;
hypothesis shrinks a failing network towards fewer layers, smaller sizes and default fields.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from specnet.spec import ACTIVATIONS, INITIALIZERS

Shape = tuple[int, ...]
#: the activations drawn; ``exponential`` too, rarely (it can overflow: such draws are dropped)
COMMON = [name for name in ACTIVATIONS if name not in ("softmax", "exponential")]


@st.composite
def _activation(draw: st.DrawFn, fused: bool = True) -> str | None:
    choices: list[str | None] = [*COMMON, "softmax", "exponential"]
    if fused:
        choices = [None, None, None, *choices]
    return draw(st.sampled_from(choices))


def _window_fields(draw: st.DrawFn, h: int, w: int, allow_dilation: bool) -> dict[str, Any]:
    """kernel_size, strides, padding, dilation_rate that an h×w input can take."""
    padding = draw(st.sampled_from(["valid", "same"]))
    dilation = (1, 1)
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    if allow_dilation and strides == (1, 1) and draw(st.booleans()):
        dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    limit_h = h if padding == "valid" else 5
    limit_w = w if padding == "valid" else 5
    kh = draw(st.integers(1, max(1, min(5, (limit_h - 1) // dilation[0] + 1))))
    kw = draw(st.integers(1, max(1, min(5, (limit_w - 1) // dilation[1] + 1))))
    fields: dict[str, Any] = {"kernel_size": [kh, kw], "padding": padding}
    if strides != (1, 1):
        fields["strides"] = list(strides)
    if dilation != (1, 1):
        fields["dilation_rate"] = list(dilation)
    return fields


def _image_layer(draw: st.DrawFn, shape: Shape) -> dict[str, Any]:
    h, w, c = shape
    kind = draw(
        st.sampled_from(
            [
                "Conv2D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose",
                "MaxPool", "AveragePooling2D", "ZeroPadding2D", "UpSampling2D",
                "BatchNormalization", "LayerNormalization", "Activation", "ReLU", "Rescaling",
                "Dropout", "Softmax", "Conv2D", "DepthwiseConv2D", "SeparableConv2D",
                "Conv2DTranspose", "MaxPool", "AveragePooling2D", "UpSampling2D",
                # the ways out to a vector, rarer: most of a CNN is images
                "Reshape", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten",
                "Permute",
            ]
        )
    )  # fmt: skip
    layer: dict[str, Any] = {"type": kind}
    if kind in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D"):
        layer.update(_window_fields(draw, h, w, allow_dilation=True))
        if kind != "DepthwiseConv2D":
            layer["filters"] = draw(st.integers(1, 8))
        if kind != "Conv2D" and draw(st.booleans()):
            layer["depth_multiplier"] = draw(st.integers(1, 3))
        layer["activation"] = draw(_activation())
        layer["use_bias"] = draw(st.booleans())
        if kind == "Conv2D" and draw(st.booleans()):
            layer["kernel_initializer"] = draw(st.sampled_from(INITIALIZERS))
    elif kind == "Conv2DTranspose":
        window = _window_fields(draw, h, w, allow_dilation=False)
        layer.update({k: v for k, v in window.items() if k != "padding"})
        layer["padding"] = window["padding"]
        layer["filters"] = draw(st.integers(1, 8))
        layer["activation"] = draw(_activation())
        layer["use_bias"] = draw(st.booleans())
    elif kind in ("MaxPool", "AveragePooling2D"):
        padding = draw(st.sampled_from(["valid", "same"]))
        ph = draw(st.integers(1, min(4, h) if padding == "valid" else 4))
        pw = draw(st.integers(1, min(4, w) if padding == "valid" else 4))
        layer.update({"pool_size": [ph, pw], "padding": padding})
        if draw(st.booleans()):
            layer["strides"] = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    elif kind == "ZeroPadding2D":
        layer["padding"] = [[draw(st.integers(0, 2)) for _ in range(2)] for _ in range(2)]
    elif kind == "UpSampling2D":
        layer["interpolation"] = draw(st.sampled_from(["nearest", "bilinear"]))
        # bilinear by 3 or 5: the interpolation weights (o + 0.5) / 3 − 0.5 are inexact in
        # float32, and every runtime lands ~1e-5 from the float64 value on inputs near 3
        # (measured: Keras 1.2e-5, PyTorch 1.2e-5, ONNX Runtime 6e-6) — the parity tolerance
        # itself, before any layer after it adds its own rounding; powers of two are exact
        sizes = [1, 2, 4] if layer["interpolation"] == "bilinear" else [1, 2, 3]
        layer["size"] = [draw(st.sampled_from(sizes)), draw(st.sampled_from(sizes))]
    elif kind == "BatchNormalization":
        both = draw(st.booleans())
        layer.update({"center": both, "scale": both, "epsilon": draw(st.sampled_from([1e-3, 0.1]))})
        layer["momentum"] = draw(st.sampled_from([0.99, 0.5]))
    elif kind == "LayerNormalization":
        layer["scale"] = draw(st.booleans())
        layer["center"] = layer["scale"] and draw(st.booleans())
        layer["epsilon"] = draw(st.sampled_from([1e-3, 0.05]))
    elif kind == "Activation":
        layer["activation"] = draw(_activation(fused=False))
    elif kind == "ReLU":
        if draw(st.booleans()):
            layer["max_value"] = draw(st.sampled_from([6.0, 0.5, 2.0]))
        if draw(st.booleans()):
            layer["negative_slope"] = draw(st.sampled_from([0.1, 0.3]))
    elif kind == "Rescaling":
        layer["scale"] = draw(st.sampled_from([2.0, 0.5, -1.0]))
        layer["offset"] = draw(st.sampled_from([0.0, -1.0, 0.25]))
    elif kind == "Dropout":
        layer["rate"] = draw(st.sampled_from([0.0, 0.3]))
    elif kind == "Reshape":
        layer["target_shape"] = draw(st.sampled_from([[w, h, c], [h * w, 1, c], [-1], [1, -1, c]]))
    elif kind == "Permute":
        layer["dims"] = draw(st.permutations([1, 2, 3]))
    elif kind.startswith("Global"):
        layer["keepdims"] = draw(st.booleans())
    return layer


def _vector_layer(draw: st.DrawFn, shape: Shape) -> dict[str, Any]:
    (n,) = shape
    kind = draw(
        st.sampled_from(
            ["Dense", "Dense", "Activation", "ReLU", "Dropout", "BatchNormalization",
             "LayerNormalization", "Rescaling", "Reshape", "Softmax"]
        )
    )  # fmt: skip
    layer: dict[str, Any] = {"type": kind}
    if kind == "Dense":
        layer["units"] = draw(st.integers(1, 12))
        layer["activation"] = draw(_activation())
        layer["use_bias"] = draw(st.booleans())
    elif kind == "Reshape":  # back to an image: n = a·b·c
        divisors = [d for d in range(1, n + 1) if n % d == 0]
        c = draw(st.sampled_from(divisors))
        rest = n // c
        a = draw(st.sampled_from([d for d in range(1, rest + 1) if rest % d == 0]))
        layer["target_shape"] = [a, rest // a, c]
    else:
        layer.update(_image_layer_fields(draw, kind))
    return layer


def _image_layer_fields(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """The fields of a kind a vector takes too (Activation, ReLU, …)."""
    fields: dict[str, Any] = {}
    if kind == "Activation":
        fields["activation"] = draw(_activation(fused=False))
    elif kind == "ReLU":
        if draw(st.booleans()):
            fields["max_value"] = draw(st.sampled_from([6.0, 0.5]))
        if draw(st.booleans()):
            fields["negative_slope"] = 0.2
    elif kind == "Dropout":
        fields["rate"] = 0.25
    elif kind == "BatchNormalization":
        both = draw(st.booleans())
        fields.update({"center": both, "scale": both})
    elif kind == "LayerNormalization":
        fields["scale"] = draw(st.booleans())
        fields["center"] = fields["scale"] and draw(st.booleans())
    elif kind == "Rescaling":
        fields["scale"] = draw(st.sampled_from([2.0, -0.5]))
    return fields


MERGES = ["Add", "Subtract", "Multiply", "Average", "Maximum"]

#: a residual unit, used as a block: a same-size convolution, its normalisation, an
#: activation, and the block's input added back
UNIT = {
    "params": ["filters", "act"],
    "layers": [
        {"name": "conv", "type": "Conv2D", "filters": "$filters", "kernel_size": 3,
         "padding": "same", "use_bias": False},
        {"name": "bn", "type": "BatchNormalization"},
        {"name": "act", "type": "Activation", "activation": "$act"},
        {"name": "add", "type": "Add", "inputs": ["input", "act"]},
    ],
}  # fmt: skip


@st.composite
def networks(draw: st.DrawFn, max_layers: int = 12, head: bool | None = None) -> dict[str, Any]:
    """A spec (as a dict) whose every layer its input can take. ``head``: end in a softmax
    classifier over 2–4 classes (what training needs); None draws it."""
    from specnet import infer
    from specnet.errors import SpecError
    from specnet.spec import spec_from_dict

    h, w = draw(st.integers(1, 13)), draw(st.integers(1, 13))
    c = draw(st.sampled_from([1, 1, 2, 3, 4]))
    spec: dict[str, Any] = {"name": "random", "input_shape": [h, w, c], "layers": []}
    values: dict[str, Shape] = {"input": (h, w, c)}
    above = "input"

    def plan_of(layers: list[dict[str, Any]]) -> Any:
        try:
            return infer(spec_from_dict({**spec, "layers": layers}))
        except SpecError:
            return None

    count = draw(st.integers(1, max_layers))
    for i in range(count):
        name = f"l{i}"
        if len(values[above]) == 3 and draw(st.integers(0, 9)) == 0:  # a block use
            use = {"block": "unit", "name": f"b{i}", "filters": values[above][2],
                   "act": draw(st.sampled_from(COMMON))}  # fmt: skip
            trial = {**spec, "blocks": {"unit": UNIT}}
            try:
                planned = infer(spec_from_dict({**trial, "layers": [*spec["layers"], use]}))
            except SpecError:
                continue
            spec["blocks"] = {"unit": UNIT}
            spec["layers"].append(use)
            last = planned.layers[-1]
            values[last.name] = last.output_shape
            above = last.name
            continue
        same = [v for v, s in values.items() if s == values[above] and v != above]
        joinable = [
            v for v, s in values.items()
            if v != above and len(s) == len(values[above]) and len(s) == 3
            and sum(a != b for a, b in zip(s, values[above], strict=True)) <= 1
        ]  # fmt: skip
        choice = draw(st.sampled_from(["layer"] * 6 + ["merge", "concat", "branch", "residual"]))
        side_branch = None
        if choice == "residual" and len(values[above]) == 3:  # a same-shape branch, then a merge
            side = {"type": "Conv2D", "filters": values[above][2], "name": f"r{i}",
                    "kernel_size": draw(st.sampled_from([1, 3])), "padding": "same",
                    "activation": draw(_activation())}  # fmt: skip
            spec["layers"].append(side)
            values[side["name"]] = values[above]
            side_branch = side["name"]
            kind = draw(st.sampled_from(MERGES))
            layer: dict[str, Any] = {"type": kind, "inputs": [side["name"], above]}
        elif choice == "merge" and same:
            other = draw(st.sampled_from(same))
            kind = draw(st.sampled_from(MERGES))
            layer = {"type": kind, "inputs": [above, other]}
            if kind not in ("Subtract",) and len(same) > 1 and draw(st.booleans()):
                layer["inputs"].append(draw(st.sampled_from([v for v in same if v != other])))
        elif choice == "concat" and joinable:
            other = draw(st.sampled_from(joinable))
            differs = [j for j in range(3) if values[other][j] != values[above][j]]
            axis = (differs[0] + 1) if differs else draw(st.sampled_from([1, 2, 3, -1]))
            layer = {"type": "Concatenate", "inputs": [above, other], "axis": axis}
        else:
            source = above
            if choice == "branch" and len(values) > 1:
                source = draw(st.sampled_from(sorted(values)))
            shape = values[source]
            layer = _image_layer(draw, shape) if len(shape) == 3 else _vector_layer(draw, shape)
            if source != above:
                layer["inputs"] = [source]
        layer["name"] = name
        plan = plan_of([*spec["layers"], layer])
        if plan is None:  # the rule book refuses it: try no other repair, draw on
            if side_branch:  # (a residual's side branch stays: it is the layer above now)
                above = side_branch
            continue
        spec["layers"].append(layer)
        values[name] = plan.layers[-1].output_shape
        above = name
    want_head = draw(st.booleans()) if head is None else head
    if want_head:
        if len(values[above]) == 3:
            spec["layers"].append(
                {"type": draw(st.sampled_from(["Flatten", "GlobalAveragePooling2D"])),
                 "name": "to_vector"}
            )  # fmt: skip
        units = draw(st.integers(2, 4))
        spec["layers"].append(
            {"type": "Dense", "units": units, "activation": "softmax", "name": "head"}
        )
    if not spec["layers"]:
        spec["layers"].append({"type": "Activation", "activation": "linear", "name": "l0"})
    return spec
