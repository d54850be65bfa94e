"""EarlyStopping and ReduceLROnPlateau: the decisions of Keras's own callbacks on the same
epoch logs, the same epochs on both backends, the best epoch's bytes restored, exact resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specnet.callbacks import Callbacks
from specnet.spec import Train
from specnet.train import train
from specnet.weights import read_safetensors


def _keras_decisions(config: dict[str, Any], losses: list[float], rate: float) -> dict[str, Any]:
    """Keras's callback on a real (tiny) Keras model, epoch by epoch."""
    from specnet._frameworks import keras_module

    keras = keras_module()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=rate), loss="mse")
    kind = getattr(keras.callbacks, config["type"])
    options = {k: v for k, v in config.items() if k != "type"}
    if "accuracy" in config["monitor"]:  # Keras infers "max" only from a compiled, built metric
        options["mode"] = "max"
    callback = kind(**options)
    callback.set_model(model)
    callback.on_train_begin()
    stopped, rates = None, []
    for epoch, loss in enumerate(losses):
        callback.on_epoch_end(
            epoch, {"val_loss": loss, "loss": loss, "val_accuracy": -loss, "accuracy": -loss}
        )
        rates.append(float(model.optimizer.learning_rate))
        if model.stop_training:
            stopped = epoch
            break
    best = getattr(callback, "best_epoch", None)
    return {"stopped": stopped, "rates": rates, "best_epoch": best if stopped is not None else None}


def _ours(config: dict[str, Any], losses: list[float], rate: float) -> dict[str, Any]:
    callbacks = Callbacks.of(Train.model_validate({"callbacks": [config]}).callbacks)
    stopped, rates = None, []
    for epoch, loss in enumerate(losses):
        logs = {"val_loss": loss, "loss": loss, "val_accuracy": -loss, "accuracy": -loss}
        decision = callbacks.on_epoch_end(epoch, logs, rate)
        if decision["learning_rate"] is not None:
            rate = decision["learning_rate"]
        rates.append(rate)
        if decision["stop"]:
            stopped = epoch
            break
    best = callbacks.stoppers[0].best_epoch if callbacks.stoppers and stopped is not None else None
    return {"stopped": stopped, "rates": rates, "best_epoch": best}


LOSSES = st.lists(
    st.sampled_from([1.0, 0.9, 0.8, 0.85, 0.8, 0.7995, 0.6, 1.2]), min_size=2, max_size=14
)


@settings(max_examples=40, deadline=None)
@given(
    LOSSES,
    st.fixed_dictionaries(
        {
            "type": st.just("EarlyStopping"),
            "monitor": st.sampled_from(["val_loss", "val_accuracy"]),
            "patience": st.integers(0, 3),
            "min_delta": st.sampled_from([0.0, 0.001, 0.05]),
            "baseline": st.sampled_from([None, 0.85, -0.85]),
            "start_from_epoch": st.integers(0, 2),
            "restore_best_weights": st.booleans(),
        }
    ),
)
def test_early_stopping_decides_as_keras(losses: list[float], config: dict[str, Any]) -> None:
    ours, keras = _ours(config, losses, 0.01), _keras_decisions(config, losses, 0.01)
    assert (ours["stopped"], ours["best_epoch"]) == (keras["stopped"], keras["best_epoch"])


@settings(max_examples=40, deadline=None)
@given(
    LOSSES,
    st.fixed_dictionaries(
        {
            "type": st.just("ReduceLROnPlateau"),
            "monitor": st.sampled_from(["val_loss", "accuracy"]),
            "patience": st.integers(0, 3),
            "factor": st.sampled_from([0.5, 0.1]),
            "min_delta": st.sampled_from([0.0, 1e-4, 0.05]),
            "cooldown": st.integers(0, 2),
            "min_lr": st.sampled_from([0.0, 0.004]),
        }
    ),
)
def test_reduce_on_plateau_decides_as_keras(losses: list[float], config: dict[str, Any]) -> None:
    ours, keras = _ours(config, losses, 0.01), _keras_decisions(config, losses, 0.01)
    np.testing.assert_allclose(ours["rates"], keras["rates"], rtol=1e-7)


SPEC = """
name: stopper
input_shape: [8, 8, 3]
layers:
  - {type: Conv2D, filters: 4, kernel_size: 3, activation: relu}
  - {type: Flatten}
  - {type: Dense, units: 3, activation: softmax}
data: {source: synthetic, samples: 90}
train:
  optimizer: {type: sgd, learning_rate: 0.8, momentum: 0.9}
  epochs: 12
  batch_size: 30
  callbacks: %s
"""


def _spec(tmp_path: Path, callbacks: list[dict[str, Any]]) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(SPEC % json.dumps(callbacks))
    return path


def test_early_stopping_stops_both_backends_at_the_same_epoch_with_the_best_bytes(
    tmp_path: Path,
) -> None:
    """A rate too high to settle: val_loss stops improving; both backends stop at the same
    epoch, and the run's weights are the bytes of its best epoch (restore_best_weights)."""
    callbacks = [{"type": "EarlyStopping", "patience": 1, "restore_best_weights": True}]
    stops = {}
    for backend in ("keras", "torch"):
        run = train(_spec(tmp_path, callbacks), backend, out=tmp_path / backend)
        marker = json.loads((run.out / "specnet.json").read_text())
        event = marker["stopped_early"]
        assert marker["epochs_done"] == event["epoch"] < 12
        assert len(run.history["loss"]) == event["epoch"]
        best = read_safetensors(run.out / "checkpoints" / "restore_best.safetensors")
        final = read_safetensors(run.out / "weights.safetensors")
        assert set(best) == set(final)
        assert all(np.array_equal(best[k], final[k]) for k in best)
        val = run.history["val_loss"]
        assert event["best_epoch"] == int(np.argmin(val)) + 1
        stops[backend] = event["epoch"], event["best_epoch"]
    assert stops["keras"] == stops["torch"]


def test_a_stopped_run_is_not_resumed(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    callbacks = [{"type": "EarlyStopping", "patience": 0}]
    train(_spec(tmp_path, callbacks), "torch", out=tmp_path / "run")
    result = cli("train", "--resume", tmp_path / "run")
    assert result.code == 0
    assert "stopped early" in result.err + result.out


def test_reduce_on_plateau_resumes_exactly(tmp_path: Path) -> None:
    """Its wait, best and cooldown, and the reduced rate, are in the checkpoint: 4 epochs then a
    resume to 9 end with the bytes of 9 epochs in one go."""
    callbacks = [{"type": "ReduceLROnPlateau", "patience": 1, "factor": 0.5, "monitor": "val_loss"}]
    spec = _spec(tmp_path, callbacks)
    straight = train(spec, "torch", epochs=9, out=tmp_path / "straight")
    marker = json.loads((straight.out / "specnet.json").read_text())
    train(spec, "torch", epochs=4, out=tmp_path / "split")
    train(resume=tmp_path / "split", epochs=9)
    a = read_safetensors(straight.out / "weights.safetensors")
    b = read_safetensors(tmp_path / "split" / "weights.safetensors")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert marker["epochs_done"] == 9


@pytest.mark.parametrize(
    ("callbacks", "message"),
    [
        ('[{"type": "EarlyStoping"}]', "did you mean 'EarlyStopping'"),
        ('[{"type": "EarlyStopping", "monitor": "val_acc"}]', "val_accuracy"),
        ('[{"type": "ReduceLROnPlateau", "factor": 1.5}]', "factor"),
    ],
)
def test_bad_callbacks_are_one_located_error(
    tmp_path: Path, cli, callbacks: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "s.yaml"
    path.write_text(SPEC % callbacks)
    result = cli("validate", path)
    assert result.code == 2
    assert message in result.err, result.err
    assert "s.yaml:13:" in result.err
    assert "Traceback" not in result.err


def test_callbacks_that_cannot_act_are_refused(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "s.yaml"
    text = SPEC % '[{"type": "EarlyStopping"}]'
    path.write_text(text.replace("  epochs: 12\n", "  epochs: 12\n  validation_split: 0.0\n"))
    result = cli("validate", path)
    assert result.code == 2
    assert "there is no validation data" in result.err
    text = SPEC % '[{"type": "ReduceLROnPlateau"}]'
    schedule = (
        "{type: sgd, learning_rate: {type: ExponentialDecay, initial_learning_rate: 0.1, "
        "decay_steps: 2, decay_rate: 0.5}}"
    )
    path.write_text(text.replace("{type: sgd, learning_rate: 0.8, momentum: 0.9}", schedule))
    result = cli("validate", path)
    assert result.code == 2
    assert "needs a constant learning_rate" in result.err


def test_metrics_csv_has_kerass_columns_and_the_rate_of_each_epoch(tmp_path: Path) -> None:
    """Keras's own ``fit`` with ReduceLROnPlateau and CSVLogger writes the header specnet
    writes; and, as Keras logs it (before the callback acts), each row's ``learning_rate`` is
    the rate the epoch trained at: 0.8, halved after each epoch that reduced it (every one but
    the first, which sets the best)."""
    from specnet._frameworks import keras_module

    keras = keras_module()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", metrics=["accuracy"])
    x = np.zeros((8, 2), np.float32)
    logger = keras.callbacks.CSVLogger(str(tmp_path / "keras.csv"))
    plateau = keras.callbacks.ReduceLROnPlateau(patience=0)
    model.fit(x, x, validation_data=(x, x), epochs=1, verbose=0, callbacks=[plateau, logger])
    keras_header = (tmp_path / "keras.csv").read_text().splitlines()[0]

    callbacks = [{"type": "ReduceLROnPlateau", "patience": 0, "factor": 0.5, "min_delta": 0.5}]
    run = train(_spec(tmp_path, callbacks), "torch", epochs=4, out=tmp_path / "run")
    rows = (run.out / "metrics.csv").read_text().splitlines()
    assert rows[0] == keras_header
    column = rows[0].split(",").index("learning_rate")
    rates = [float(row.split(",")[column]) for row in rows[1:]]
    marker = json.loads((run.out / "specnet.json").read_text())
    assert "stopped_early" not in marker
    expected, rate = [], 0.8
    for epoch in range(1, 5):  # the first sets the best; then none improves by min_delta 0.5
        expected.append(rate)
        if epoch > 1:
            rate = float(np.float32(rate * 0.5))
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    assert run.history["learning_rate"] == rates


def test_tensorboard_events_hold_every_epoch_and_survive_a_resume(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """``--tensorboard``: the event files TensorFlow's own reader (``summary_iterator``, what
    ``tensorboard --logdir`` uses) reads back hold each epoch's metrics, Keras's tags, and
    after a resume every epoch exactly once."""
    from specnet._frameworks import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    spec = _spec(tmp_path, [])
    run = tmp_path / "run"
    assert (
        cli(
            "train",
            spec,
            "--backend",
            "torch",
            "--epochs",
            "2",
            "--tensorboard",
            "--out",
            run,
            "--quiet",
        ).code
        == 0
    )
    assert cli("train", "--resume", run, "--epochs", "3", "--quiet").code == 0
    history = json.loads((run / "history.json").read_text())
    for split, prefix in (("train", ""), ("validation", "val_")):
        files = list((run / "tensorboard" / split).iterdir())
        assert len(files) == 1
        found: dict[str, list[tuple[int, float]]] = {}
        for event in tf.compat.v1.train.summary_iterator(str(files[0])):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
        assert found["epoch_loss"] == [
            (i, pytest.approx(v, rel=1e-6)) for i, v in enumerate(history[prefix + "loss"])
        ]
        assert [s for s, _ in found["epoch_accuracy"]] == [0, 1, 2]
        assert ("epoch_learning_rate" in found) == (split == "train")
