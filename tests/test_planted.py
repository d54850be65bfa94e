"""Tests that kill the bugs a mutation-testing round planted and no earlier test caught.

Each test names the planted bug it kills and compares with an independent reference: Keras's
own optimizers and initializers, the safetensors format and library, scikit-learn's metrics,
ONNX Runtime, an uninterrupted run, or a distribution with a stated bound.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from specnet import Limits, ShapeError, infer, loads_spec
from specnet.backends import get_backend
from specnet.data import batch_order, synthetic
from specnet.train import training_plan
from specnet.weights import init_weights
from tests.helpers import assert_agree, batch

TINY = """\
name: tiny
input_shape: [6, 6, 2]
layers:
  - {type: Conv2D, filters: 3, kernel_size: 3, activation: tanh}
  - {type: Flatten}
  - {type: Dense, units: 5, activation: relu}
  - {type: Dense, units: 3, activation: softmax}
"""


# ----------------------------------------------------------------------------- optimizers


def _steps(backend: str, optimizer: dict[str, Any], steps: int = 6) -> dict[str, np.ndarray]:
    plan = infer(loads_spec(TINY + f"train: {{optimizer: {json.dumps(optimizer)}}}\n"))
    trainer = get_backend(backend).trainer(
        training_plan(plan), plan.spec.train, init_weights(plan, 3)
    )
    x, y, _ = synthetic(steps * 4, plan.input_shape, 3, "shape", seed=2)
    order = batch_order(len(x), seed=1, epoch=0)
    for step in range(steps):
        index = order[step * 4 : (step + 1) * 4]
        # the batches shrink their inputs over time, so that gradients (and Adam's v) decrease:
        # where v falls below its running maximum, amsgrad's v̂ is what tells the two apart
        trainer.step(x[index] * (0.5**step), y[index])
    return trainer.weights()  # type: ignore[no-any-return]


def _opt(kind: str, lr: float, **options: Any) -> dict[str, Any]:
    eps = {} if kind == "sgd" else {"epsilon": 1e-3}  # see test_training_parity's docstring
    return {"type": kind, "learning_rate": lr, **eps, **options}


OPTIMIZER_CASES = {
    "sgd": _opt("sgd", 0.1),
    "sgd-momentum": _opt("sgd", 0.05, momentum=0.8),
    "sgd-nesterov": _opt("sgd", 0.05, momentum=0.8, nesterov=True),
    "adam": _opt("adam", 0.01),
    "adam-betas": _opt("adam", 0.01, beta_1=0.5, beta_2=0.6),
    "adam-amsgrad": _opt("adam", 0.01, beta_2=0.6, amsgrad=True),
    "rmsprop": _opt("rmsprop", 0.01),
    "rmsprop-rho": _opt("rmsprop", 0.01, rho=0.5),
    "rmsprop-momentum": _opt("rmsprop", 0.01, momentum=0.6),
    "rmsprop-centered": _opt("rmsprop", 0.01, rho=0.5, centered=True),
    "rmsprop-centered-momentum": _opt("rmsprop", 0.01, momentum=0.5, centered=True),
}


@pytest.mark.parametrize("case", list(OPTIMIZER_CASES))
def test_pytorch_optimizers_follow_keras_for_every_option(case: str) -> None:
    """Planted: centered RMSprop with the sign of mean² flipped; amsgrad's v̂ computed, unused."""
    config = OPTIMIZER_CASES[case]
    keras_weights = _steps("keras", config)
    torch_weights = _steps("torch", config)
    for key in keras_weights:
        assert_agree(torch_weights[key], keras_weights[key], f"{case}: {key}", rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("option", "base"), [("amsgrad", "adam-betas"), ("centered", "rmsprop-rho")]
)
def test_the_optimizer_options_change_the_result(option: str, base: str) -> None:
    """Without this, the comparison above could pass with the option silently ignored."""
    plain = _steps("keras", OPTIMIZER_CASES[base])
    varied = _steps("keras", {**OPTIMIZER_CASES[base], option: True})
    assert any(not np.allclose(plain[k], varied[k], rtol=1e-4, atol=1e-5) for k in plain)


# ----------------------------------------------------------------------------- safetensors


def test_safetensors_headers_are_padded_to_8_bytes_whatever_their_length(tmp_path: Path) -> None:
    """Planted: the header left unpadded. The format lets data start anywhere, but the library
    and memory-mapping readers align tensors on 8 bytes; specnet promises what it writes."""
    import safetensors.numpy

    from specnet.weights import encode_safetensors

    lengths = set()
    for k in range(1, 17):
        arrays = {"a" * k: np.arange(3, dtype=np.float64), "b": np.ones((2, 2), np.float32)}
        raw = encode_safetensors(arrays, metadata={"n": "x" * k})
        (header,) = np.frombuffer(raw[:8], "<u8")
        assert header % 8 == 0, k
        text = raw[8 : 8 + int(header)]
        lengths.add(len(text.rstrip(b" ")) % 8)
        assert text.rstrip(b" ") + b" " * (len(text) - len(text.rstrip(b" "))) == text
        path = tmp_path / f"{k}.safetensors"
        path.write_bytes(raw)
        loaded = safetensors.numpy.load_file(str(path))
        assert all(np.array_equal(loaded[name], arrays[name]) for name in arrays)
    assert any(residue % 2 for residue in lengths)  # odd-length headers were padded too


# ----------------------------------------------------------------------------- resume


DROPPING = """\
name: dropping
input_shape: [8, 8, 3]
layers:
  - {type: Conv2D, filters: 4, kernel_size: 3, activation: relu}
  - {type: Dropout, rate: 0.5}
  - {type: Flatten}
  - {type: Dense, units: 3, activation: softmax}
train: {epochs: 4, batch_size: 16, seed: 3}
data: {source: synthetic, samples: 96}
"""


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_a_resumed_run_draws_the_same_dropout_masks(backend: str, tmp_path: Path) -> None:
    """Planted: the RNG state not restored on resume. Dropout draws from it, so the resumed
    epochs must equal an uninterrupted run's, weight by weight."""
    from specnet.train import train
    from specnet.weights import read_safetensors

    spec = tmp_path / "s.yaml"
    spec.write_text(DROPPING)
    train(spec, backend, out=tmp_path / "whole")
    train(spec, backend, out=tmp_path / "part", epochs=2)
    train(None, None, resume=tmp_path / "part", epochs=4)
    whole = read_safetensors(tmp_path / "whole" / "weights.safetensors")
    part = read_safetensors(tmp_path / "part" / "weights.safetensors")
    for key in whole:
        assert np.array_equal(whole[key], part[key]), key


@pytest.mark.parametrize(
    ("field", "old", "new"),
    [
        ("optimizer option", "amsgrad: false", "amsgrad: true"),
        ("learning rate", "learning_rate: 0.001", "learning_rate: 0.002"),
        ("batch size", "batch_size: 16", "batch_size: 8"),
        ("loss", "loss: categorical_crossentropy", "loss: sparse_categorical_crossentropy"),
        ("data", "samples: 96", "samples: 97"),
        ("shuffle", "shuffle: true", "shuffle: false"),
    ],
)
def test_a_resume_is_refused_after_any_edit_of_the_train_section(
    field: str, old: str, new: str, tmp_path: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    """Planted: the checkpoint fingerprint ignoring the whole ``train`` section."""
    spec = tmp_path / "s.yaml"
    spec.write_text(DROPPING)
    run = tmp_path / "run"
    assert cli("train", spec, "--backend", "torch", "--epochs", "1", "-o", run, "--quiet").code == 0
    resolved = run / "spec.resolved.yaml"
    text = resolved.read_text()
    assert old in text, (field, text)
    resolved.write_text(text.replace(old, new))
    refused = cli("train", "--resume", run, "--epochs", "2")
    assert refused.code == 2, field
    assert "was changed after the checkpoint was written" in refused.err


# ----------------------------------------------------------------------------- limits


def test_the_parameter_limit_holds_at_its_exact_boundary() -> None:
    """Planted: ``>=`` for ``>``: a network of exactly the limit must pass."""
    plan = infer(loads_spec(TINY))
    assert infer(plan.spec, Limits(max_params=plan.total_params)).total_params == plan.total_params
    with pytest.raises(ShapeError, match="over the limit"):
        infer(plan.spec, Limits(max_params=plan.total_params - 1))
    need = plan.activation_bytes()
    infer(plan.spec, Limits(max_activation_bytes=need))
    with pytest.raises(ShapeError, match="activations for one batch"):
        infer(plan.spec, Limits(max_activation_bytes=need - 1))


def test_the_nesting_limit_holds_at_its_exact_boundary() -> None:
    """Planted: ``>=`` for ``>`` in the depth check: 32 levels pass the reader, 33 do not."""
    from specnet._yaml import MAX_DEPTH, load_yaml
    from specnet.errors import SpecSyntaxError

    def nested(depth: int) -> bytes:  # depth counts the top mapping
        return ("a: " + "[" * (depth - 1) + "1" + "]" * (depth - 1) + "\n").encode()

    assert load_yaml(nested(MAX_DEPTH), "f.yaml").data is not None
    with pytest.raises(SpecSyntaxError, match=f"deeper than {MAX_DEPTH}"):
        load_yaml(nested(MAX_DEPTH + 1), "f.yaml")


# ----------------------------------------------------------------------------- initializers


@pytest.mark.parametrize("name", ["glorot_uniform", "he_normal", "lecun_uniform", "ones"])
def test_bias_initializers_draw_as_keras_does(name: str) -> None:
    """Planted: ``bias_initializer`` ignored (the biases stay zeros). Reference: Keras's own
    initializer on the same shape — the same constant, or the same distribution (a bias of n
    units has fan_in = fan_out = n in Keras's compute_fans)."""
    import keras

    units = 4096
    spec = loads_spec(
        f"name: b\ninput_shape: [1, 1, 1]\nlayers: [{{type: Flatten}}, "
        f"{{type: Dense, units: {units}, bias_initializer: {name}}}]\n"
    )
    ours = init_weights(infer(spec), seed=0)["dense.bias"]
    theirs = np.asarray(keras.initializers.get(name)(shape=(units,)))
    if name == "ones":
        assert np.array_equal(ours, theirs)
        return
    # standard errors of the std and of the range, n = 4096: well under 5%
    assert math.isclose(float(ours.std()), float(theirs.std()), rel_tol=0.05)
    assert math.isclose(float(np.abs(ours).max()), float(np.abs(theirs).max()), rel_tol=0.12)
    assert abs(float(ours.mean())) < 4 * float(theirs.std()) / math.sqrt(units)


def test_initial_draws_follow_the_layer_name_not_its_position() -> None:
    """Planted: arrays seeded by position. Inserting a layer must not change the others'."""

    def draws(*layers: str) -> dict[str, np.ndarray]:
        text = "name: a\ninput_shape: [4, 4, 1]\nlayers: [{type: Flatten}, " + ", ".join(layers)
        return init_weights(infer(loads_spec(text + "]\n")), seed=0)

    a = "{type: Dense, units: 8, name: a}"
    b = "{type: Dense, units: 8, name: b, bias_initializer: he_uniform}"
    first = draws(a, b)
    second = draws(a, "{type: Dense, units: 8, name: z}", b)
    for key in ("a.kernel", "a.bias", "b.kernel", "b.bias"):
        assert np.array_equal(first[key], second[key]), key
    assert not np.array_equal(second["z.kernel"], second["b.kernel"])
    assert np.abs(first["b.bias"]).max() > 0  # a drawn bias, not zeros


# ----------------------------------------------------------------------------- dropout


def test_fast_dropout_is_inverted_dropout() -> None:
    """Planted: FastDropout without its 1 / (1 − p) scale. Reference: nn.Dropout, and the
    expectation E[dropout(x)] = x with a bound of 6 standard errors."""
    import torch

    from specnet.backends._torch_modules import FastDropout

    torch.manual_seed(0)
    p, n = 0.3, 400_000
    x = torch.full((n,), 2.0)
    ours = FastDropout(p).train()(x)
    theirs = torch.nn.Dropout(p).train()(x)
    for out in (ours, theirs):
        kept = out[out != 0]
        assert torch.allclose(kept, torch.full_like(kept, 2.0 / (1 - p)))
        zero_share = float((out == 0).float().mean())
        assert abs(zero_share - p) < 6 * math.sqrt(p * (1 - p) / n)
    se = 2.0 * math.sqrt(p / (1 - p) / n)  # std of the mean of x·mask/(1-p)
    assert abs(float(ours.mean()) - 2.0) < 6 * se
    assert torch.equal(FastDropout(p).eval()(x), x)


# ----------------------------------------------------------------------------- gelu in ONNX


@pytest.mark.parametrize("opset", [13, 18, 20])
def test_direct_onnx_gelu_is_exact_at_every_opset(opset: int) -> None:
    """Planted: opset ≥ 20 using Gelu(approximate="tanh"). Reference: Keras's exact gelu."""
    from specnet.backends.onnx import build_graph, ort_session, run_session

    spec = loads_spec(
        "name: g\ninput_shape: [4, 4, 3]\nlayers: [{type: Conv2D, filters: 6, kernel_size: 1,"
        " activation: gelu, kernel_initializer: he_normal}]\n"
    )
    plan = infer(spec)
    weights = init_weights(plan, seed=1)
    x = (batch(plan.input_shape) - 0.5) * 8  # inputs over ±4, where the approximation is off
    keras = get_backend("keras")
    model = keras.build(plan)
    keras.set_weights(model, plan, weights)
    want = keras.predict(model, x)
    got = run_session(ort_session(build_graph(plan, weights, "nhwc", opset)), x, "nhwc")
    assert_agree(got, want, f"gelu at opset {opset}")


# ----------------------------------------------------------------------------- metrics


def test_evaluation_metrics_equal_scikit_learn(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """Planted: precision and recall swapped; the confusion matrix transposed (evaluate and
    plots). Reference: scikit-learn on the same predictions, made here from the weights."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from specnet import plots
    from specnet.data import load_data
    from specnet.evaluate import evaluate, open_run

    spec = tmp_path / "s.yaml"
    spec.write_text(TINY + "data: {source: synthetic, samples: 300}\n")
    assert cli("build", spec, "--backend", "torch", "-o", tmp_path / "b", "--seed", "4").code == 0
    report = evaluate(tmp_path / "b")
    run = open_run(tmp_path / "b")
    data = load_data(run.plan.spec, 3)
    torch_backend = get_backend("torch")
    model = torch_backend.build(run.plan)
    torch_backend.set_weights(model, run.plan, run.weights)
    guess = torch_backend.predict(model, data.x_val).argmax(1)
    want = confusion_matrix(data.y_val, guess, labels=[0, 1, 2])
    assert report.confusion == want.tolist()
    precision, recall, f1, support = precision_recall_fscore_support(
        data.y_val, guess, labels=[0, 1, 2], zero_division=0
    )
    assert not np.allclose(precision, recall)  # an untrained net: swapping them would show
    for row, p, r, f, s in zip(report.per_class, precision, recall, f1, support, strict=True):
        assert math.isclose(row["precision"], p)
        assert math.isclose(row["recall"], r)
        assert math.isclose(row["f1"], f, abs_tol=1e-12)
        assert row["support"] == s
    drawn = plots.confusion_matrix(data.y_val, guess, run.class_names, tmp_path / "c.png", 3)
    assert drawn.tolist() == want.tolist()


# ----------------------------------------------------------------------------- best checkpoint


class _Scripted:
    """A trainer whose validation losses follow a script (1.0, 0.4, 0.7, 0.6, 0.5): the best
    epoch (2) is neither the last nor the one before it. Its weights are the epoch number, so
    the best checkpoint says which epoch it holds. Not a framework: the loop under test is
    specnet's epoch loop, which compares losses."""

    def __init__(self, script: list[float]) -> None:
        self.script, self.epoch = script, 0

    def step(
        self, x: Any, y: Any, global_batch: int | None = None, sample_weight: Any = None
    ) -> tuple[float, int]:
        return 1.0, 0

    def learning_rate(self) -> float:
        return 0.01

    def logits(self, x: Any) -> Any:
        loss = self.script[self.epoch]
        self.epoch += 1
        # logits whose cross-entropy against class 0 is exactly `loss`
        p0 = math.exp(-loss)
        other = math.log((1 - p0) / 2 / p0)
        return np.tile(np.array([[0.0, other, other]]), (len(x), 1))

    def weights(self) -> dict[str, np.ndarray]:
        return {"w": np.full(1, float(self.epoch), np.float32)}

    def state(self) -> dict[str, np.ndarray]:
        return self.weights()


def test_the_best_checkpoint_is_the_best_so_far_not_the_previous_epoch(tmp_path: Path) -> None:
    """Planted: each epoch compared with the previous one instead of the best so far."""
    from specnet.data import Dataset
    from specnet.progress import Progress
    from specnet.train import BEST, COLUMNS, _fit
    from specnet.weights import read_metadata, read_safetensors

    script = [1.0, 0.4, 0.7, 0.6, 0.5]
    plan = infer(loads_spec(TINY + f"train: {{epochs: {len(script)}}}\n"))
    x = np.zeros((4, 6, 6, 2), np.float32)
    y = np.zeros(4, np.int64)
    data = Dataset(x, y, x, y, ["a", "b", "c"], "test")
    history: dict[str, list[float]] = {key: [] for key in COLUMNS}
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "spec.resolved.yaml").write_text(TINY)
    meta = {"kind": "train", "spec": "tiny", "backend": "torch", "class_names": ["a", "b", "c"]}
    _fit(tmp_path, _Scripted(script), data, plan, "torch", 0, history, math.inf,
         Progress("quiet"), meta)  # fmt: skip
    np.testing.assert_allclose(history["val_loss"], script, rtol=1e-9)
    assert read_metadata(tmp_path / BEST)["epoch"] == "2"
    assert read_safetensors(tmp_path / BEST)["w"][0] == 2.0  # the weights after epoch 2
    marker = json.loads((tmp_path / "best" / "specnet.json").read_text())
    assert (marker["epoch"], marker["value"]) == (2, pytest.approx(0.4, rel=1e-9))


# ----------------------------------------------------------------------------- spatial softmax


def test_a_softmax_over_a_4d_tensor_is_over_the_channels() -> None:
    """Planted: softmax over the width instead of the channels of an image tensor."""
    spec = loads_spec(
        "name: s\ninput_shape: [5, 7, 3]\nlayers:\n"
        "  - {type: Conv2D, filters: 4, kernel_size: 3, padding: same, activation: softmax}\n"
        "  - {type: Conv2D, filters: 6, kernel_size: 1}\n"
        "  - {type: Softmax}\n"
    )
    plan = infer(spec)
    weights = init_weights(plan, seed=2)
    x = batch(plan.input_shape)
    outputs = {}
    for name in ("keras", "torch", "onnx"):
        backend = get_backend(name)
        model = backend.build(plan)
        backend.set_weights(model, plan, weights)
        outputs[name] = backend.predict(model, x)
    assert outputs["keras"].shape == (len(x), 5, 7, 6)
    np.testing.assert_allclose(outputs["keras"].sum(-1), 1.0, rtol=1e-5)  # over the channels
    assert_agree(outputs["torch"], outputs["keras"], "torch vs keras, spatial softmax")
    assert_agree(outputs["onnx"], outputs["keras"], "onnx vs keras, spatial softmax")


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3, 4), (2, 7)])
def test_fast_flatten_is_nn_flatten_and_keeps_the_backward_channels_last(
    shape: tuple[int, ...],
) -> None:
    """FastFlatten (a speed replacement) must compute nn.Flatten's values and gradients, and
    hand a channels-last input its gradient channels-last (its reason to exist)."""
    import torch

    from specnet.backends._torch_modules import FastFlatten

    torch.manual_seed(0)
    base = torch.randn(*shape)
    layouts = [torch.contiguous_format] + ([torch.channels_last] if len(shape) == 4 else [])
    for layout in layouts:
        leaf = base.clone().requires_grad_()
        # not a leaf: autograd lays a leaf's .grad out like the leaf, whatever the op returned;
        # the hook sees the gradient exactly as FastFlatten's backward hands it on
        ours_in = (leaf * 1.0).contiguous(memory_format=layout)
        handed: list[torch.Tensor] = []
        ours_in.register_hook(handed.append)
        theirs_in = base.clone().requires_grad_()
        ours, theirs = FastFlatten()(ours_in), torch.nn.Flatten()(theirs_in)
        assert torch.equal(ours, theirs)
        weights = torch.randn(theirs.shape)
        (ours * weights).sum().backward()
        (theirs * weights).sum().backward()
        assert torch.equal(leaf.grad, theirs_in.grad)
        if layout is torch.channels_last:
            assert handed[0].is_contiguous(memory_format=torch.channels_last)
