"""Label smoothing, class weights, L1/L2 regularizers and EMA: the PyTorch backend trains to
the weights Keras's own ``fit`` reaches with the same options, batch by batch.

The reference is ``keras.Model.fit`` itself (``class_weight=``, a compiled loss with
``label_smoothing``, layers built with ``kernel_regularizer``, an optimizer with ``use_ema``),
not specnet's Keras trainer: the definitions are Keras's, checked against Keras."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from specnet import infer, loads_spec
from specnet.backends import get_backend
from specnet.data import synthetic
from specnet.train import penalty, training_plan
from specnet.weights import init_weights
from tests.helpers import assert_agree, assert_refused

STEPS, BATCH = 6, 8
SPEC = """
name: tiny
input_shape: [8, 8, 2]
layers:
  - {type: Conv2D, filters: 4, kernel_size: 3, activation: relu%(conv)s}
  - {type: Flatten}
  - {type: Dense, units: %(units)s%(dense)s}
train:
  loss: %(loss)s
  optimizer: %(optimizer)s
  label_smoothing: %(smoothing)s
"""
SGD = {"type": "sgd", "learning_rate": 0.2, "momentum": 0.9}


def _plan(
    *,
    conv: str = "",
    dense: str = "",
    loss: str = "categorical_crossentropy",
    optimizer: dict[str, Any] | None = None,
    smoothing: float = 0.0,
) -> Any:
    binary = loss == "binary_crossentropy"
    text = SPEC % {
        "units": "1, activation: sigmoid" if binary else "3",
        "conv": conv,
        "dense": dense,
        "loss": loss,
        "optimizer": json.dumps(optimizer or SGD),
        "smoothing": smoothing,
    }
    return infer(loads_spec(text))


def _data(plan: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y, _ = synthetic(STEPS * BATCH, plan.input_shape, 3, "shape", seed=1)
    return x, y


def _keras_fit(plan: Any, x: np.ndarray, y: np.ndarray, class_weight: Any = None) -> Any:
    """Keras's own compile/fit on the training plan, batches in order, one epoch."""
    from specnet._frameworks import keras_module
    from specnet.backends.keras_train import optimizer

    keras = keras_module()
    tplan = training_plan(plan)
    backend = get_backend("keras")
    model = backend.build(tplan)
    backend.set_weights(model, tplan, init_weights(plan, seed=2))
    cfg = plan.spec.train
    if cfg.loss == "binary_crossentropy":
        loss = keras.losses.BinaryCrossentropy(
            from_logits=True, label_smoothing=cfg.label_smoothing
        )
        target = y.astype("float32")[:, None]
    else:
        loss = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=cfg.label_smoothing
        )
        target = keras.utils.to_categorical(y, 3)
    model.compile(optimizer=optimizer(cfg.optimizer), loss=loss)
    history = model.fit(
        x, target, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, class_weight=class_weight
    )
    return backend.get_weights(model, tplan), history.history["loss"][0]


def _torch_steps(plan: Any, x: np.ndarray, y: np.ndarray, weights: Any = None) -> Any:
    """specnet's PyTorch trainer over the same batches, finished as a run finishes."""
    trainer = get_backend("torch").trainer(
        training_plan(plan), plan.spec.train, init_weights(plan, seed=2)
    )
    losses = []
    for step in range(STEPS):
        index = slice(step * BATCH, (step + 1) * BATCH)
        sample = None if weights is None else weights[y[index]]
        losses.append(trainer.step(x[index], y[index], None, sample)[0])
    trainer.finish()
    return trainer.weights(), float(np.mean(losses))


def _agree(plan: Any, x: np.ndarray, y: np.ndarray, **fit: Any) -> tuple[Any, Any]:
    weights = fit.pop("weights", None)
    theirs, their_loss = _keras_fit(plan, x, y, **fit)
    ours, our_loss = _torch_steps(plan, x, y, weights)
    for key in theirs:
        assert_agree(ours[key], theirs[key], key)
    # Keras's epoch loss is the mean of its batches' losses (equal batches here)
    assert our_loss == pytest.approx(their_loss, rel=1e-4)
    return ours, theirs


def _differs(a: Any, b: Any) -> bool:
    return any(not np.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.parametrize("loss", ["categorical_crossentropy", "binary_crossentropy"])
def test_label_smoothing_is_kerass(loss: str) -> None:
    plan = _plan(loss=loss, smoothing=0.3)
    x, y = _data(plan)
    if loss == "binary_crossentropy":
        y = (y == 0).astype(np.int64)
    smoothed, _ = _agree(plan, x, y)
    plain, _ = _torch_steps(_plan(loss=loss), x, y)
    assert _differs(smoothed, plain)


def test_class_weights_are_fits() -> None:
    """``fit(class_weight=…)``: each example's loss times its class's weight, the sum divided
    by the batch size."""
    plan = _plan()
    x, y = _data(plan)
    weights = np.array([3.0, 0.5, 1.0], np.float32)
    weighted, _ = _agree(plan, x, y, class_weight={0: 3.0, 1: 0.5}, weights=weights)
    plain, _ = _torch_steps(plan, x, y)
    assert _differs(weighted, plain)


def test_pytorchs_own_class_weights_would_part_from_keras() -> None:
    """``cross_entropy(weight=w)`` divides the weighted sum by the weights' sum; Keras (and
    specnet) by the batch size. Two examples of class 0 (weight 3), losses a and b:
    PyTorch gives (3a + 3b) / 6, Keras (3a + 3b) / 2."""
    import torch

    logits = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 0])
    weight = torch.tensor([3.0, 1.0])
    each = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    theirs = torch.nn.functional.cross_entropy(logits, labels, weight=weight)
    keras_way = (each * weight[labels]).sum() / 2
    assert float(theirs) == pytest.approx(float(each.mean()))
    assert float(keras_way) == pytest.approx(3 * float(each.mean()))


def test_regularizers_are_kerass_and_in_the_reported_loss() -> None:
    plan = _plan(
        conv=", kernel_regularizer: {type: l2, l2: 0.05}, bias_regularizer: {type: l1, l1: 0.02}",
        dense=", kernel_regularizer: {type: l1_l2, l1: 0.01, l2: 0.03}",
    )
    x, y = _data(plan)
    ours, _ = _agree(plan, x, y)
    plain, _ = _torch_steps(_plan(), x, y)
    assert _differs(ours, plain)
    # the penalty itself, against NumPy, and as Keras's layers compute it
    start = init_weights(plan, seed=2)
    expected = (
        0.05 * np.sum(np.square(start["conv2d.kernel"], dtype=np.float64))
        + 0.02 * np.sum(np.abs(start["conv2d.bias"], dtype=np.float64))
        + 0.01 * np.sum(np.abs(start["dense.kernel"], dtype=np.float64))
        + 0.03 * np.sum(np.square(start["dense.kernel"], dtype=np.float64))
    )
    assert penalty(plan, start) == pytest.approx(expected, rel=1e-12)
    backend = get_backend("keras")
    model = backend.build(plan)
    backend.set_weights(model, plan, start)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)


def test_the_generated_keras_source_carries_the_regularizers() -> None:
    plan = _plan(dense=", kernel_regularizer: l2")
    source = get_backend("keras").emit_source(plan)
    assert "kernel_regularizer=keras.regularizers.L2(l2=0.01)" in source


@pytest.mark.parametrize(
    "optimizer",
    [
        {**SGD, "use_ema": True, "ema_momentum": 0.7},
        {"type": "adam", "epsilon": 1e-3, "use_ema": True, "ema_overwrite_frequency": 2},
    ],
)
def test_ema_is_kerass(optimizer: dict[str, Any]) -> None:
    """The moving average from the first step, the weights overwritten every
    ``ema_overwrite_frequency`` steps, and at the end of training (``fit``'s
    ``finalize_variable_values``)."""
    plan = _plan(optimizer=optimizer)
    x, y = _data(plan)
    averaged, _ = _agree(plan, x, y)
    raw = {k: v for k, v in optimizer.items() if not k.startswith("ema") and k != "use_ema"}
    plain, _ = _torch_steps(_plan(optimizer=raw), x, y)
    assert _differs(averaged, plain)


def test_a_resumed_torch_trainer_keeps_its_averages() -> None:
    plan = _plan(optimizer={**SGD, "use_ema": True})
    x, y = _data(plan)
    straight, _ = _torch_steps(plan, x, y)
    chosen = get_backend("torch")
    tplan = training_plan(plan)
    trainer = chosen.trainer(tplan, plan.spec.train, init_weights(plan, seed=2))
    for step in range(STEPS):
        if step == 3:
            state = trainer.state()
            trainer = chosen.trainer(tplan, plan.spec.train, init_weights(plan, seed=9))
            trainer.load_state(state)
        index = slice(step * BATCH, (step + 1) * BATCH)
        trainer.step(x[index], y[index])
    trainer.finish()
    resumed = trainer.weights()
    for key, value in straight.items():
        assert np.array_equal(resumed[key], value), key


@pytest.mark.parametrize(
    ("train", "message"),
    [
        (
            "loss: sparse_categorical_crossentropy\n  label_smoothing: 0.1",
            "sparse_categorical_crossentropy takes no label_smoothing",
        ),
        ("label_smoothing: 1.5", "train.label_smoothing"),
        ("optimizer: {type: adam, use_ema: true, ema_momentum: 1.2}", "ema_momentum"),
        ("class_weight: {circle: -1.0}", "train.class_weight.circle"),
        ("class_weight: {circle: 2.0, hexagon: 1.0}", "'hexagon', which is not one of"),
        ("class_weight: unbalanced", "train.class_weight"),
    ],
)
def test_bad_loss_options_are_one_located_error(
    cli, tmp_path: Any, train: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: t\ninput_shape: [16, 16, 3]\nlayers:\n  - {type: Flatten}\n"
        "  - {type: Dense, units: 3, activation: softmax}\n"
        "data: {source: synthetic, samples: 60}\n"
        f"train:\n  epochs: 1\n  {train}\n"
    )
    result = cli("train", str(spec), "--out", str(tmp_path / "run"))
    assert_refused(result, message, str(spec), tmp_path / "run")


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("kernel_regularizer: l3", "unknown regularizer 'l3'"),
        ("kernel_regularizer: {type: l2, l2: -0.1}", "kernel_regularizer.l2"),
        ("kernel_regularizer: {type: l1, l2: 0.1}", "unknown field `l2`"),
        ("depthwise_regularizer: l2", "unknown field `depthwise_regularizer`"),
    ],
)
def test_bad_regularizers_are_one_located_error(
    cli, tmp_path: Any, field: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: t\ninput_shape: [8, 8, 1]\nlayers:\n  - {type: Flatten}\n"
        f"  - {{type: Dense, units: 2, {field}}}\n"
    )
    assert_refused(cli("validate", str(spec)), message, f"{spec}:5:")


def test_a_run_with_every_option_reports_the_same_history_on_both_backends(tmp_path: Any) -> None:
    """``specnet train`` end to end with label smoothing, balanced class weights, regularizers
    and EMA: the two backends' epoch logs agree, and the reported losses include the penalty
    (the validation loss is at least the final weights' penalty)."""
    from specnet.train import train
    from specnet.weights import load_weights

    text = (
        SPEC
        % {
            "units": "3",
            "conv": ", kernel_regularizer: {type: l2, l2: 0.01}",
            "dense": ", bias_regularizer: l1",
            "loss": "categorical_crossentropy",
            "optimizer": json.dumps({**SGD, "use_ema": True, "ema_momentum": 0.5}),
            "smoothing": 0.1,
        }
        + "  epochs: 3\n  batch_size: 16\n  class_weight: balanced\n"
        + "data: {source: synthetic, samples: 90}\n"
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    runs = {b: train(spec, b, out=tmp_path / b) for b in ("keras", "torch")}
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_allclose(
            runs["torch"].history[key], runs["keras"].history[key], rtol=2e-4, atol=1e-6
        )
    plan = runs["keras"].plan
    final = load_weights(tmp_path / "keras" / "weights.safetensors", plan)
    assert runs["keras"].history["val_loss"][-1] > penalty(plan, final) > 0
