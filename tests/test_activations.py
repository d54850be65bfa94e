"""Keras 3's newer activations (relu6, silu/swish, hard_sigmoid, hard_silu/hard_swish, mish,
exponential) on every runtime, against NumPy's own spelling of Keras 3's definitions.

The inputs span [-8, 8], past every kink: relu6's ceiling at 6, hard_sigmoid's corners at ±3.
hard_sigmoid is the trap: Keras 2 defined it as clip(0.2·x + 0.5, 0, 1), Keras 3 as
relu6(x + 3) / 6; the two differ by up to 1/30 between the corners, which the test would see.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from specnet.backends import get_backend
from specnet.backends.onnx import build_graph
from specnet.shapes import infer
from specnet.spec import spec_from_dict
from tests.helpers import assert_agree


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _hard_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(x + 3, 0), 6) / 6


NUMPY = {
    "relu6": lambda x: np.minimum(np.maximum(x, 0), 6),
    "silu": lambda x: x * _sigmoid(x),
    "swish": lambda x: x * _sigmoid(x),
    "hard_sigmoid": _hard_sigmoid,
    "hard_silu": lambda x: x * _hard_sigmoid(x),
    "hard_swish": lambda x: x * _hard_sigmoid(x),
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
    "exponential": np.exp,
}
# the first opset of each native ONNX op: below it, specnet spells the function out
OPSETS = [13, 14, 17, 18, 20]


def _plan(activation: str, fused: bool):  # type: ignore[no-untyped-def]
    """A Dense whose 33 outputs are exactly -8, -7.5, …, 8 (kernel zero, bias the ramp), then
    the activation, fused into the Dense or as its own layer."""
    dense = {"type": "Dense", "units": 33, **({"activation": activation} if fused else {})}
    layers = [{"type": "Flatten"}, dense]
    if not fused:
        layers.append({"type": "Activation", "activation": activation})
    plan = infer(spec_from_dict({"name": "act", "input_shape": [1, 1, 2], "layers": layers}))
    dense_name = plan.layers[1].name
    weights = {
        f"{dense_name}.kernel": np.zeros((2, 33), np.float32),
        f"{dense_name}.bias": np.linspace(-8, 8, 33, dtype=np.float32),
    }
    return plan, weights


X = np.random.default_rng(0).random((3, 1, 1, 2), dtype=np.float32)
RAMP = np.linspace(-8, 8, 33)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "layer"])
@pytest.mark.parametrize("activation", sorted(NUMPY))
def test_keras_and_pytorch_compute_keras_3s_definition(activation: str, fused: bool) -> None:
    plan, weights = _plan(activation, fused)
    want = np.broadcast_to(NUMPY[activation](RAMP), (3, 33))
    for name in ("keras", "torch"):
        backend = get_backend(name)
        model = backend.build(plan)
        backend.set_weights(model, plan, weights)
        assert_agree(backend.predict(model, X), want, f"{name} {activation}")


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("activation", sorted(NUMPY))
def test_the_direct_onnx_graph_computes_it_at_every_opset(activation: str, opset: int) -> None:
    plan, weights = _plan(activation, fused=True)
    model = build_graph(plan, weights, "nhwc", opset)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": X})[0]
    assert_agree(got, np.broadcast_to(NUMPY[activation](RAMP), (3, 33)), f"{activation}@{opset}")
    ops = [node.op_type for node in model.graph.node]
    native = {"hard_silu": ("HardSwish", 14), "hard_swish": ("HardSwish", 14), "mish": ("Mish", 18)}
    if activation in native:
        op, first = native[activation]
        assert (op in ops) == (opset >= first)


def test_keras_2s_hard_sigmoid_is_not_what_the_spec_means() -> None:
    """The ramp tells the two definitions apart: a backend computing Keras 2's would fail."""
    keras_2 = np.clip(0.2 * RAMP + 0.5, 0, 1)
    assert np.abs(keras_2 - _hard_sigmoid(RAMP)).max() > 0.03
    plan, weights = _plan("hard_sigmoid", fused=False)
    backend = get_backend("keras")
    model = backend.build(plan)
    backend.set_weights(model, plan, weights)
    assert np.abs(backend.predict(model, X)[0] - keras_2).max() > 0.03


_UNFUSABLE = """
import sys
import numpy as np
from specnet.backends import get_backend
from specnet.shapes import infer
from specnet.spec import spec_from_dict
from specnet.weights import init_weights

x = np.random.default_rng(0).random((2, 6, 6, 2), dtype=np.float32)
for after in ("mish", "leaky_relu"):
    if sys.argv[1] == "keras":  # the same network in plain Keras
        import keras
        inputs = keras.Input((6, 6, 2))
        out = keras.layers.Conv2D(4, 3, activation="hard_silu")(inputs)
        model = keras.Model(inputs, keras.layers.Activation(after)(out))
        try:
            model.predict(x, verbose=0)
            print(after, "ran")
        except Exception as exc:
            print(after, "failed:", "Fusion is not implemented" in str(exc))
        continue
    layers = [{"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "hard_silu"},
              {"type": "Activation", "activation": after}]
    plan = infer(spec_from_dict({"name": "t", "input_shape": [6, 6, 2], "layers": layers}))
    backend, torch = get_backend("keras"), get_backend("torch")
    model, reference = backend.build(plan), torch.build(plan)
    backend.set_weights(model, plan, init_weights(plan))
    torch.set_weights(reference, plan, init_weights(plan))
    gap = np.abs(backend.predict(model, x) - torch.predict(reference, x)).max()
    print(after, "ran" if gap < 1e-5 else f"differs by {gap}")
"""


def test_a_convolution_with_hard_silu_then_mish_or_leaky_relu_runs() -> None:
    """TensorFlow's CPU remapper fuses Conv2D + bias + hard_silu, then the Mish or LeakyRelu
    after it, into an op it has no kernel for: plain Keras fails at its first predict (kept here
    to see when TensorFlow fixes it), specnet's Keras build runs (and agrees with PyTorch). Each
    in a fresh process: the remapper switch is process-wide."""
    import subprocess
    import sys

    def run(which: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", _UNFUSABLE, which],
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    assert run("keras") == ["mish failed: True", "leaky_relu failed: True"]
    assert run("specnet") == ["mish ran", "leaky_relu ran"]


@pytest.mark.parametrize("offset", [0.0, -1.0])
def test_rescaling_is_x_times_scale_plus_offset_on_every_runtime(offset: float) -> None:
    layers = [{"type": "Rescaling", "scale": 2.5, "offset": offset}]
    plan = infer(spec_from_dict({"name": "r", "input_shape": [3, 2, 2], "layers": layers}))
    x = np.random.default_rng(2).random((2, 3, 2, 2), dtype=np.float32)
    want = x.astype(np.float64) * 2.5 + offset
    for name in ("keras", "torch"):
        backend = get_backend(name)
        assert_agree(backend.predict(backend.build(plan), x), want, name)
    model = build_graph(plan, {}, "nhwc")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert_agree(session.run(["output"], {"input": x})[0], want, "onnx")
