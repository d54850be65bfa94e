"""The generated PyTorch source says the truth about itself, and the PyTorch model is built as its
docstrings promise.

Every claim the generated file makes in prose (the shape comments, the usage lines of its
docstring, the loss to train the logits with, the class name) is checked against what PyTorch
itself does when the file is run; the defaults it leaves out are checked against torch.nn's own
signatures. The numbers the generated model computes are checked in ``test_build.py``.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import specnet
from specnet.backends import DEFAULT_OPTIONS, TrainOptions, get_backend
from specnet.errors import RuntimeFailure, UsageError
from specnet.shapes import Plan, infer
from specnet.spec import load_spec, spec_from_dict
from specnet.weights import init_weights, save_weights
from tests.conftest import ROOT

TORCH = get_backend("torch")


def _plan(
    layers: list[dict[str, Any]], name: str = "t", shape: tuple[int, ...] = (9, 9, 2), **rest: Any
) -> Plan:
    return infer(
        spec_from_dict({"name": name, "input_shape": list(shape), "layers": layers, **rest})
    )


SOFTMAX_HEAD = ROOT / "specs" / "seed_cnn.yaml"
PLANS = {
    "softmax_head": lambda: infer(load_spec(SOFTMAX_HEAD)),
    "strides_same": lambda: infer(load_spec(ROOT / "specs" / "strides_same.yaml")),
    "sigmoid_head": lambda: _plan(
        [
            {"type": "Conv2D", "filters": 3, "kernel_size": 3, "activation": "linear"},
            {"type": "Flatten"},
            {"type": "Dense", "units": 1, "activation": "sigmoid"},
        ],
        train={"loss": "binary_crossentropy"},
    ),
    "sigmoid_layer_head": lambda: _plan(
        [
            {"type": "Flatten"},
            {"type": "Dense", "units": 1},
            {"type": "Activation", "activation": "sigmoid"},
        ],
        train={"loss": "binary_crossentropy"},
    ),
    "plain_head": lambda: _plan(
        [
            {"type": "MaxPool", "pool_size": 3, "strides": 2, "padding": "same"},
            {"type": "Flatten"},
            {"type": "Dense", "units": 4},
        ],
    ),
    "no_parameters": lambda: _plan([{"type": "Flatten"}, {"type": "Softmax"}]),
    # asymmetric `same` (a function the source carries), symmetric `same`, valid; exponential,
    # Rescaling (another carried function)
    "average_pools": lambda: _plan(
        [
            {"type": "Rescaling", "scale": 2.0, "offset": -1.0},
            {"type": "AveragePooling2D", "pool_size": 2, "padding": "same"},
            {"type": "AveragePooling2D", "pool_size": 3, "strides": 1, "padding": "same"},
            {"type": "AveragePooling2D", "pool_size": [2, 1]},
            {"type": "Activation", "activation": "exponential"},
            {"type": "Flatten"},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ],
    ),
    # unequal strides: on Keras, stride 1 then a 1×1 AveragePooling2D (keras.unequal_strides);
    # one input channel: PyTorch's OneChannelConv2d
    "unequal_strides": lambda: _plan(
        [
            {
                "type": "DepthwiseConv2D",
                "kernel_size": [1, 4],
                "strides": [1, 2],
                "padding": "same",
                "depth_multiplier": 2,
            },
            {"type": "SeparableConv2D", "filters": 3, "kernel_size": 2, "strides": [2, 1]},
            {"type": "Flatten"},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ],
        shape=(9, 7, 1),
    ),
    # a transposed convolution with its slice (Crop, a carried function) and output_padding,
    # a separable one, both upsamplings, a LayerNorm on the channels moved last and on a vector,
    # Reshapes (a carried function) from an image and to one
    "decoder": lambda: _plan(
        [
            {
                "type": "SeparableConv2D",
                "filters": 4,
                "kernel_size": 3,
                "padding": "same",
                "depth_multiplier": 2,
                "activation": "relu",
            },
            {
                "type": "Conv2DTranspose",
                "filters": 3,
                "kernel_size": 3,
                "strides": 2,
                "padding": "same",
            },
            {"type": "Conv2DTranspose", "filters": 3, "kernel_size": 1, "strides": 2},
            {"type": "UpSampling2D", "size": [1, 2], "interpolation": "bilinear"},
            {"type": "MaxPool", "pool_size": 4},
            {"type": "UpSampling2D"},
            {"type": "LayerNormalization"},
            {"type": "Reshape", "target_shape": -1},
            {"type": "Dense", "units": 8},
            {"type": "LayerNormalization", "center": False},
            {"type": "Reshape", "target_shape": [2, 2, 2]},
            {"type": "Flatten"},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ],
    ),
}


def _run_source(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "generated"}
    exec(compile(source, "generated_model.py", "exec"), namespace)  # noqa: S102 - generated here
    return namespace


def _net_class(namespace: dict[str, Any]) -> type:
    import torch

    (cls,) = [
        v
        for v in namespace.values()
        if isinstance(v, type) and issubclass(v, torch.nn.Module) and v.__module__ == "generated"
    ]
    return cls


@pytest.mark.parametrize("which", list(PLANS))
def test_the_shape_comments_are_the_shapes_pytorch_computes(
    which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    plan = PLANS[which]()
    source = TORCH.emit_source(plan)
    namespace = _run_source(source)
    net = _net_class(namespace)().eval()
    # the layers that are function calls, not modules (torch.exp, average_pool_valid): their
    # outputs in call order, against their comments in source order
    functions = re.findall(r"x = ([\w.]+)\(x[^\n]*\)  # (\(N, [\d, ]+\))", source)
    functions = [(f, comment) for f, comment in functions if not f.startswith("self.")]
    returned: list[str] = []

    def recording(original: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            returned.append("(N, " + ", ".join(str(n) for n in out.shape[1:]) + ")")
            return out

        return call

    for function in {f for f, _ in functions}:
        owner, attr = (torch, "exp") if function == "torch.exp" else (namespace, function)
        if owner is torch:
            monkeypatch.setattr(torch, attr, recording(torch.exp))
        else:
            namespace[attr] = recording(namespace[attr])
    # a module called on the channels moved last (and its result moved back: LayerNorm)
    called = r"x = self\.(\w+)\((?:x|x\.permute\(0, 2, 3, 1\))\)(\.permute\(0, 3, 1, 2\))?"
    found = re.findall(called + r"  # (\(N, [\d, ]+\))", source)
    commented = {name: comment for name, _, comment in found}
    moved_back = {name for name, back, _ in found if back}
    calls = [name for name, _ in re.findall(called, source)]
    seen: dict[str, str] = {}
    for name, child in net.named_children():

        def hook(_m: Any, _i: Any, out: Any, name: str = name) -> None:
            shape = out.permute(0, 3, 1, 2).shape if name in moved_back else out.shape
            seen[name] = "(N, " + ", ".join(str(n) for n in shape[1:]) + ")"

        child.register_forward_hook(hook)
    h, w, c = plan.input_shape
    with torch.no_grad():
        net(torch.rand(2, c, h, w))
    assert commented, source
    for name, comment in commented.items():
        assert comment == seen[name], (name, comment, seen[name])
    assert [comment for _, comment in functions] == returned
    # one comment per spec layer, on the module that finishes it (the head's last is in forward)
    squashed = "def logits" in source
    assert len(commented) + len(functions) == len(plan.layers) - squashed
    assert set(commented) <= set(calls)


@pytest.mark.parametrize("which", list(PLANS))
def test_the_docstring_usage_runs_as_written(
    which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    plan = PLANS[which]()
    source = TORCH.emit_source(plan)
    namespace = _run_source(source)
    docstring = ast.get_docstring(ast.parse(source), clean=False) or ""
    assert docstring.startswith(
        f"{plan.name}: a PyTorch model generated by specnet {specnet.__version__}."
    )
    usage = [
        line.strip() for line in docstring.splitlines() if line.startswith("    ") and line.strip()
    ]
    h, w, c = plan.input_shape
    nchw = f"(N, {c}, {h}, {w})"
    assert f"# images: {nchw}, float32, channels first" in usage[3]
    assert inspect.getdoc(_net_class(namespace)).startswith(f"Input {nchw} (NCHW)")  # type: ignore[union-attr]
    save_weights(tmp_path / "weights.safetensors", init_weights(plan, seed=3), overwrite=False)
    monkeypatch.chdir(tmp_path)
    namespace["images"] = images = torch.rand(3, c, h, w)
    for line in usage:
        exec(line, namespace)  # noqa: S102 - the docstring's own lines
    model = namespace["model"]
    assert type(model) is _net_class(namespace)  # the docstring builds the file's own class
    with torch.no_grad():
        want = TORCH.predict(
            _loaded_with(TORCH, plan, tmp_path), images.permute(0, 2, 3, 1).numpy()
        )
    np.testing.assert_allclose(namespace["probabilities"].detach().numpy(), want, atol=1e-6)
    last = plan.layers[-1]
    head = getattr(last.layer, "activation", None) if last.layer.type != "Softmax" else "softmax"
    if head in ("softmax", "sigmoid"):
        assert usage[-1].startswith("logits = model.logits(images)  # train on these: ")
        loss_call = usage[-1].split("# train on these: ")[1]
        loss_name = {"softmax": "CrossEntropyLoss", "sigmoid": "BCEWithLogitsLoss"}[head]
        assert loss_call == f"nn.{loss_name}()(logits, labels)"
        logits = namespace["logits"]
        labels = torch.zeros(3, dtype=torch.long) if head == "softmax" else torch.zeros(3, 1)
        loss = eval(loss_call, {**namespace, "labels": labels})  # noqa: S307 - the docstring's own
        squash = torch.softmax(logits, 1) if head == "softmax" else torch.sigmoid(logits)
        np.testing.assert_allclose(squash.detach().numpy(), want, atol=1e-6)
        doc = inspect.getdoc(_net_class(namespace).logits) or ""  # type: ignore[attr-defined]
        assert doc.startswith(
            f"The scores before the final {head}: train on these with nn.{loss_name},"
        )
        assert f"applies the {head} itself" in doc
        assert float(loss) > 0
    else:
        assert "logits" not in source
        assert usage[-1].startswith("probabilities = model(images)")


@pytest.mark.parametrize(
    ("name", "class_name"),
    [
        ("seed_cnn", "SeedCnn"),
        ("my-small_net2", "MySmallNet2"),
        ("Flowers", "Flowers"),
        ("_", "Net"),
    ],
)
def test_the_class_is_named_after_the_spec(name: str, class_name: str) -> None:
    source = TORCH.emit_source(
        _plan([{"type": "Flatten"}, {"type": "Dense", "units": 2}], name=name)
    )
    assert _net_class(_run_source(source)).__name__ == class_name
    assert f"def load_canonical_weights(model: {class_name}, " in source


@pytest.mark.parametrize("which", list(PLANS))
def test_the_source_leaves_out_exactly_torch_nn_defaults(which: str) -> None:
    from torch import nn

    def pair(value: Any) -> Any:
        return (value, value) if isinstance(value, int) and not isinstance(value, bool) else value

    source = TORCH.emit_source(PLANS[which]())
    calls = [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and isinstance(node.value.func.value, ast.Name)
        and node.value.func.value.id == "nn"
    ]
    assert calls
    for call in calls:
        signature = inspect.signature(getattr(nn, call.func.attr))  # type: ignore[attr-defined]
        for keyword in call.keywords:
            default = signature.parameters[keyword.arg].default  # type: ignore[index]
            written = ast.literal_eval(keyword.value)
            assert pair(written) != pair(default), (ast.unparse(call), keyword.arg)


def test_a_network_without_weights_loads_an_empty_file(tmp_path: Path) -> None:
    import torch

    plan = PLANS["no_parameters"]()
    namespace = _run_source(TORCH.emit_source(plan))
    net = _net_class(namespace)()
    save_weights(tmp_path / "w.safetensors", {}, overwrite=False)
    namespace["load_canonical_weights"](net, tmp_path / "w.safetensors")
    x = torch.rand(2, 2, 9, 9)
    flat = x.permute(0, 2, 3, 1).reshape(2, -1).numpy()  # Keras flattens (h, w, c)
    want = np.exp(flat) / np.exp(flat).sum(1, keepdims=True)
    np.testing.assert_allclose(net(x).detach().numpy(), want, rtol=1e-5, atol=1e-7)
    # and the backend predicts a network without parameters (no parameter tells the device)
    got = TORCH.predict(TORCH.build(plan), x.permute(0, 2, 3, 1).contiguous().numpy())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- the built model


def test_the_built_model_has_the_modules_its_docstrings_promise() -> None:
    import torch

    from specnet.backends._torch_modules import FastDropout, FastFlatten

    plan = _plan(
        [
            {
                "type": "Conv2D",
                "filters": 4,
                "kernel_size": 3,
                "padding": "same",
                "activation": "linear",
            },
            {"type": "Activation", "activation": "linear"},
            {"type": "MaxPool", "pool_size": 3, "strides": 1, "padding": "same"},  # pads 1 and 1
            {"type": "MaxPool", "pool_size": 2, "strides": 2, "padding": "same"},  # pads 0 and 1
            {"type": "Dropout", "rate": 0.5},
            {"type": "Flatten"},
            {"type": "Dense", "units": 3, "activation": "linear"},
        ]
    )
    model = TORCH.build(plan)
    kinds = [type(child).__name__ for child in model.children()]
    # a linear activation is no module (the Activation layer keeps one Identity as its place);
    # symmetric `same` pooling is MaxPool2d's own padding, asymmetric is an explicit -inf pad
    assert kinds == [
        "Conv2d",
        "Identity",
        "MaxPool2d",
        "ConstantPad2d",
        "MaxPool2d",
        "FastDropout",
        "FastFlatten",
        "Linear",
    ]
    children = dict(model.named_children())
    assert children["max_pooling2d"].padding == (1, 1)
    assert children["max_pooling2d_1_pad"].padding == (0, 1, 0, 1)
    assert children["max_pooling2d_1_pad"].value == -np.inf
    assert isinstance(children["dropout"], FastDropout)
    assert isinstance(children["flatten"], FastFlatten)
    # channels-last: an NHWC batch viewed as NCHW needs no copy on the way in
    assert children["conv2d"].weight.is_contiguous(memory_format=torch.channels_last)


def test_native_files_say_they_are_pytorch_and_belong_to_one_network(tmp_path: Path) -> None:
    plan = PLANS["softmax_head"]()
    path = tmp_path / TORCH.native_file
    TORCH.save_native(TORCH.build(plan), path)
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    # the metadata Hugging Face's loaders require of a PyTorch safetensors file
    assert header["__metadata__"] == {"format": "pt"}
    layers = [{"type": "Flatten"}, {"type": "Dense", "units": 2, "name": "other"}]
    other = _plan(layers, shape=(32, 32, 3))
    with pytest.raises(RuntimeError, match="Missing key"):
        TORCH.load_native(path, other)


def test_the_torch_trainer_takes_its_options(tmp_path: Path) -> None:
    import torch

    plan = PLANS["softmax_head"]()
    spec = load_spec(SOFTMAX_HEAD)
    weights = init_weights(plan)
    with pytest.raises(UsageError) as refused:
        TORCH.trainer(plan, spec.train, weights, TrainOptions(strategy="mirrored"))
    assert str(refused.value) == "--strategy is Keras's; PyTorch runs several workers with --nproc"
    assert TORCH.trainer(plan, spec.train, weights, DEFAULT_OPTIONS).device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeFailure) as info:
            TORCH.trainer(plan, spec.train, weights, TrainOptions(device="cuda"))
        assert str(info.value) == "--device cuda: PyTorch sees no CUDA device here"


# ----------------------------------------------------------------------------- the Keras source

KERAS_PLANS = {
    **PLANS,
    "sgd_sparse": lambda: _plan(
        [{"type": "Conv2D", "filters": 2, "kernel_size": [2, 3], "strides": 2, "use_bias": False},
         {"type": "MaxPool", "pool_size": 2, "strides": 1}, {"type": "Flatten"},
         {"type": "Dense", "units": 3, "kernel_initializer": "he_normal"}],
        train={"loss": "sparse_categorical_crossentropy",
               "optimizer": {"type": "sgd", "learning_rate": 0.05, "momentum": 0.9,
                             "nesterov": True}},
    ),
    "rmsprop": lambda: _plan(
        [{"type": "Flatten"}, {"type": "Dense", "units": 2, "activation": "softmax"}],
        train={"optimizer": {"type": "rmsprop", "rho": 0.8, "centered": True}},
    ),
    "features": lambda: _plan(  # ends in a layer that has no activation field
        [{"type": "Conv2D", "filters": 2, "kernel_size": 3}, {"type": "Flatten"}]
    ),
}  # fmt: skip


@pytest.mark.parametrize("which", list(KERAS_PLANS))
def test_the_keras_source_says_what_keras_builds(
    which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shape comments are the shapes Keras computes, the docstring's usage runs as written,
    and the compiled model trains as the spec says (optimizer, its options, the loss)."""
    import keras

    keras_backend = get_backend("keras")
    plan = KERAS_PLANS[which]()
    source = keras_backend.emit_source(plan)
    namespace = _run_source(source)
    docstring = ast.get_docstring(ast.parse(source), clean=False) or ""
    assert docstring.startswith(
        f"{plan.name}: a Keras 3 model generated by specnet {specnet.__version__}."
    )
    save_weights(tmp_path / "weights.safetensors", init_weights(plan, seed=3), overwrite=False)
    monkeypatch.chdir(tmp_path)
    namespace["images"] = images = np.random.default_rng(0).random((3, *plan.input_shape), "f4")
    usage = [line.strip() for line in docstring.splitlines() if line.startswith("    ")]
    for line in usage:
        exec(line, namespace)  # noqa: S102 - the docstring's own lines
    model = namespace["model"]
    assert model.name == plan.name
    assert tuple(model.input_shape) == (None, *plan.input_shape)
    want = keras_backend.predict(_loaded_with(keras_backend, plan, tmp_path), images)
    np.testing.assert_allclose(namespace["probabilities"], want, atol=1e-6)
    # the comments: `# -> (None, ...)` beside each layer, the shape Keras gives its output
    # (on the last Keras layer of a spec layer made of several: keras.unequal_strides)
    from specnet.backends.keras import output_names

    comments = re.findall(r"layers\.\w+\(.*name=\"(\w+)\"\),  # -> (\(None, [\d, ]+\))", source)
    last = output_names(plan)
    assert [name for name, _ in comments] == [last[step.name] for step in plan.layers]
    for name, shape in comments:
        dims = model.get_layer(name).output.shape[1:]
        assert shape == "(None, " + ", ".join(str(n) for n in dims) + ")"
    # compiled as the spec trains it
    config = plan.spec.train.optimizer
    chosen = model.optimizer.get_config()
    classes = {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop"}
    assert type(model.optimizer).__name__ == classes[config.type]
    for field, value in config.model_dump(exclude={"type"}).items():
        if isinstance(value, float):
            assert np.isclose(chosen[field], value), field
        else:
            assert chosen[field] == value, field
    loss = model.loss
    assert (
        type(loss).__name__
        == {
            "categorical_crossentropy": "CategoricalCrossentropy",
            "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
            "binary_crossentropy": "BinaryCrossentropy",
        }[plan.spec.train.loss]
    )
    last = plan.layers[-1].layer
    squashed = last.type == "Softmax" or getattr(last, "activation", None) in ("softmax", "sigmoid")
    assert loss.get_config()["from_logits"] is (not squashed)
    labels = re.search(r"# labels for fit\(\): (.*)", source).group(1)  # type: ignore[union-attr]
    assert (
        labels
        == {
            "categorical_crossentropy": "one-hot rows (keras.utils.to_categorical)",
            "sparse_categorical_crossentropy": "class indices",
            "binary_crossentropy": "0 or 1",
        }[plan.spec.train.loss]
    )
    assert model.get_compile_config()["metrics"] == list(plan.spec.train.metrics) == ["accuracy"]
    assert keras.__version__.startswith("3.")


def _loaded_with(backend: Any, plan: Plan, where: Path) -> Any:
    from specnet.weights import load_weights

    model = backend.build(plan)
    backend.set_weights(model, plan, load_weights(where / "weights.safetensors", plan))
    return model


@pytest.mark.parametrize("which", list(KERAS_PLANS))
def test_the_keras_source_leaves_out_exactly_keras_defaults(which: str) -> None:
    import keras

    plan = KERAS_PLANS[which]()
    source = get_backend("keras").emit_source(plan)
    calls = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "layers"
    ]
    from specnet.backends.keras import _calls

    assert len(calls) == sum(len(_calls(step)) for step in plan.layers)
    for call in calls:
        signature = inspect.signature(getattr(keras.layers, call.func.attr).__init__)  # type: ignore[attr-defined]
        written = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        for key, value in written.items():
            if key in ("name", "pool_size"):  # the pool size is always written, as Keras's own
                continue  # examples write MaxPooling2D(pool_size=(2, 2))
            default = signature.parameters[key].default  # type: ignore[index]
            if isinstance(default, int) and not isinstance(default, bool):
                default = (default, default)
            assert value != default, (ast.unparse(call), key)
        if call.func.attr == "MaxPooling2D":  # strides default to the pool size
            assert written.get("strides") != written["pool_size"]


@pytest.mark.parametrize("layout", ["channels_last", "contiguous", "vector"])
def test_the_fast_flatten_hands_back_the_gradient_in_its_input_layout(layout: str) -> None:
    """FastFlatten is nn.Flatten (same values, same gradient) whose gradient comes back in the
    memory layout of its input: channels-last for a channels-last image, plain otherwise."""
    import torch

    from specnet.backends._torch_modules import FastFlatten

    shape = (2, 3) if layout == "vector" else (2, 3, 4, 5)
    x = torch.randn(*shape)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    seen: list[torch.Tensor] = []
    x.register_hook(lambda grad: seen.append(grad))
    weights = torch.randn(int(np.prod(shape[1:])))
    (FastFlatten()(x) @ weights).sum().backward()
    reference = x.detach().clone().requires_grad_(True)
    (torch.nn.Flatten()(reference) @ weights).sum().backward()
    assert torch.equal(FastFlatten()(x), torch.flatten(x, 1))
    (grad,) = seen
    assert torch.equal(grad, reference.grad)  # type: ignore[arg-type]
    if layout == "channels_last":
        assert grad.is_contiguous(memory_format=torch.channels_last)
        assert not grad.is_contiguous()
    else:
        assert grad.is_contiguous()


def test_tensorflow_start_up_chatter_is_filtered_and_the_rest_passed_on(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """TensorFlow's C++ start-up prints info lines to fd 2 before its logging is configured;
    specnet drops those two kinds and passes every other line on. TensorFlow is imported once per
    process, so its first import is played here by a stand-in writing what TF writes."""
    import os
    import sys

    from specnet import _frameworks

    def fake_tensorflow(name: str) -> None:
        assert name == "tensorflow"
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are "
                    b"written to STDERR\nI0000 00:00:1733 cpu_feature_guard.cc:210] hi\n"
                    b"E external/xla: a real problem\n\n")  # fmt: skip

    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.setattr(_frameworks, "require", fake_tensorflow)
    _frameworks.import_tensorflow()
    captured = capfd.readouterr()
    assert captured.err == "E external/xla: a real problem\n"
    os.write(2, b"after\n")  # fd 2 is the terminal's again
    assert capfd.readouterr().err == "after\n"


# ----------------------------------------------------------------------------- Keras natives


def test_the_keras_model_is_named_after_its_spec_and_its_file_is_compiled(tmp_path: Path) -> None:
    """`model.keras` from a build is compiled as the spec trains it, so that Keras's own
    `load_model(path).fit(x, y)` continues training; without a plan it is saved as it is."""
    import keras

    keras_backend = get_backend("keras")
    plan = KERAS_PLANS["sgd_sparse"]()
    model = keras_backend.build(plan)
    assert model.name == plan.name
    keras_backend.save_native(model, tmp_path / "model.keras", plan)
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded.optimizer).__name__ == "SGD"
    assert math.isclose(float(loaded.optimizer.learning_rate), 0.05, rel_tol=1e-6)
    assert type(loaded.loss).__name__ == "SparseCategoricalCrossentropy"
    assert loaded.loss.get_config()["from_logits"] is True  # the plan ends in logits
    x = np.random.default_rng(0).random((4, *plan.input_shape), dtype=np.float32)
    history = loaded.fit(x, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    assert set(history.history) == {"loss", "accuracy"}  # the spec's metrics
    plain = keras_backend.build(plan)
    keras_backend.save_native(plain, tmp_path / "plain.keras")
    assert getattr(keras.saving.load_model(tmp_path / "plain.keras"), "optimizer", None) is None
    # load_native reads the network only: no optimizer state, whatever the file holds
    assert (
        getattr(keras_backend.load_native(tmp_path / "model.keras", plan), "optimizer", None)
        is None
    )


def test_keras_natives_are_written_atomically_beside_their_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from specnet._io import TEMP_SUFFIX

    keras_backend = get_backend("keras")
    plan = PLANS["plain_head"]()
    model = keras_backend.build(plan)
    target = tmp_path / "model.keras"
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append((a, b)), real_replace(a, b)))
    old = os.umask(0o002)
    try:
        keras_backend.save_native(model, target)
    finally:
        os.umask(old)
    ((temporary, final),) = replaced
    assert Path(final) == target
    assert Path(temporary).parent == tmp_path  # same file system: the rename is atomic
    assert Path(temporary).name.startswith(".model.keras.")
    assert temporary.endswith(f"{TEMP_SUFFIX}.keras")
    assert target.stat().st_mode & 0o777 == 0o664  # like open(): 0o666 less the umask
    blocked = tmp_path / "taken"
    (blocked / "inside").mkdir(parents=True)  # a folder in the way
    with pytest.raises(RuntimeFailure) as info:
        keras_backend.save_native(model, blocked)
    assert str(info.value).startswith(f"{blocked}: cannot write (")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras", "taken"]  # no temp left


def test_a_keras_file_with_code_in_it_is_refused(tmp_path: Path) -> None:
    """A `.keras` archive can carry a Lambda layer's Python code; load_native reads with Keras's
    safe mode, which refuses to run it."""
    import keras

    plan = PLANS["plain_head"]()
    doubled = keras.layers.Lambda(lambda x: x * 2)
    hostile = keras.Sequential([keras.Input(shape=plan.input_shape), doubled])
    hostile.save(tmp_path / "hostile.keras")
    with pytest.raises(ValueError, match=r"(?i)safe_mode"):
        get_backend("keras").load_native(tmp_path / "hostile.keras", plan)


def test_the_keras_trainer_trains_what_it_was_given() -> None:
    keras_backend = get_backend("keras")
    plan = KERAS_PLANS["sgd_sparse"]()
    spec = plan.spec
    weights = init_weights(plan, seed=4)
    trainer = keras_backend.trainer(plan, spec.train, weights, DEFAULT_OPTIONS)
    assert trainer.backend is keras_backend
    assert (trainer.plan, trainer.train_config) == (plan, spec.train)
    got = keras_backend.get_weights(trainer.model, plan)
    assert all(np.array_equal(got[key], weights[key]) for key in weights)
    assert type(trainer.optimizer).__name__ == "SGD"
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):  # the options reach the trainer
        with pytest.raises(RuntimeFailure, match="--device cuda"):
            keras_backend.trainer(plan, spec.train, weights, TrainOptions(device="cuda"))


def test_keras_runs_on_tensorflow_quietly_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """specnet picks Keras's TensorFlow backend and TensorFlow's warnings-and-up log level
    before importing them, unless the user set either."""
    import os

    from specnet import _frameworks

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    keras = _frameworks.keras_module()
    assert (os.environ["KERAS_BACKEND"], os.environ["TF_CPP_MIN_LOG_LEVEL"]) == ("tensorflow", "2")
    assert keras.backend.backend() == "tensorflow"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow ")
    _frameworks.keras_module()
    assert (os.environ["KERAS_BACKEND"], os.environ["TF_CPP_MIN_LOG_LEVEL"]) == ("tensorflow ", "3")


def test_a_torch_checkpoint_missing_a_part_is_refused() -> None:
    """Resuming loads every parameter or fails: a checkpoint without one, or without the RNG
    state, never resumes half-restored."""
    import torch

    plan = PLANS["softmax_head"]()
    trainer = TORCH.trainer(plan, load_spec(SOFTMAX_HEAD).train, init_weights(plan))
    state = trainer.state()
    drawn = torch.rand(3)
    trainer.load_state(state)  # the RNG goes back to where the state was taken
    assert torch.equal(torch.rand(3), drawn)
    model_key = next(key for key in state if key.startswith("model/"))
    with pytest.raises(RuntimeError, match="Missing key"):
        trainer.load_state({k: v for k, v in state.items() if k != model_key})
    with pytest.raises(RuntimeFailure) as info:
        trainer.load_state({k: v for k, v in state.items() if not k.startswith("rng/")})
    assert str(info.value) == "the checkpoint holds no RNG state for rank 0"
