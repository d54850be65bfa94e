"""The Keras trainer's paths that only distributed or resumed runs take, run in this process.

``tests/test_distributed.py`` trains under MirroredStrategy and multi-worker in child processes,
which the mutation campaign cannot see into. Here a one-replica MirroredStrategy trains in this
process against the same trainer without a strategy (which it must equal step for step), and
the trainer's refusals and its logits are checked against the Keras backend's own predict.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from specnet.backends import TrainOptions, get_backend
from specnet.errors import RuntimeFailure, UsageError
from specnet.shapes import infer
from specnet.spec import spec_from_dict
from specnet.train import training_plan
from specnet.weights import init_weights

SPEC = {
    "name": "mirrored",
    "input_shape": [6, 6, 3],
    "layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "Flatten"},
        {"type": "Dense", "units": 3, "activation": "softmax"},
    ],
    "train": {"optimizer": {"type": "adam", "learning_rate": 0.01}, "seed": 3},
}
KERAS = get_backend("keras")


def _trainer(options: TrainOptions | None = None, spec: dict[str, Any] = SPEC) -> Any:
    plan = training_plan(infer(spec_from_dict(spec)))
    weights = init_weights(plan, seed=5)
    return KERAS.trainer(plan, plan.spec.train, weights, options or TrainOptions())


def _batches() -> list[tuple[Any, Any]]:
    rng = np.random.default_rng(0)
    x = rng.random((18, 6, 6, 3), dtype=np.float32)
    y = rng.integers(0, 3, 18).astype(np.int64)
    return [(x[i : i + 6], y[i : i + 6]) for i in range(0, 18, 6)]


def test_a_one_replica_mirrored_strategy_trains_as_one_device() -> None:
    mirrored = _trainer(TrainOptions(strategy="mirrored", replicas=1))
    assert mirrored.strategy is not None
    assert mirrored.strategy.num_replicas_in_sync == 1
    alone = _trainer()
    assert alone.strategy is None
    for x, y in _batches():
        loss, hits = mirrored.step(x, y)
        want_loss, want_hits = alone.step(x, y)
        assert loss == pytest.approx(want_loss, rel=1e-6)
        assert hits == want_hits
        assert isinstance(hits, int)
        # the logits, outside predict_on_batch, are the model's
        np.testing.assert_allclose(mirrored.logits(x), alone.logits(x), rtol=1e-5, atol=1e-6)
    for key, value in alone.weights().items():
        np.testing.assert_allclose(mirrored.weights()[key], value, rtol=1e-5, atol=1e-6)


def test_a_replica_divides_by_the_global_batch() -> None:
    """A replica's summed loss is divided by the global batch: holding 6 of 12 samples, the
    reported mean is half the one-device mean (and the step takes half the gradient)."""
    x, y = _batches()[0]
    loss, hits = _trainer().step(x, y)
    half, same = _trainer(TrainOptions(strategy="mirrored", replicas=1)).step(x, y, 12)
    assert half == pytest.approx(loss / 2, rel=1e-6)
    assert same == hits


def test_strategies_are_refused_when_they_cannot_be_had() -> None:
    import tensorflow as tf

    from specnet.backends.keras_train import _strategy

    with pytest.raises(UsageError) as unknown:
        _strategy(tf, "parameter-server", 1)
    assert str(unknown.value) == (
        "unknown strategy 'parameter-server'; choose mirrored or multi-worker"
    )
    tf.config.list_logical_devices("CPU")  # TensorFlow has started: its devices are fixed
    there = len(tf.config.list_logical_devices("CPU"))
    with pytest.raises(UsageError) as late:
        _strategy(tf, "mirrored", there + 3)
    assert str(late.value) == (
        f"--replicas {there + 3}: TensorFlow already started with {there} CPU device(s); "
        "start a fresh process"
    )
    assert _strategy(tf, "mirrored", there).num_replicas_in_sync == there


def test_the_trainers_logits_are_the_backends_prediction() -> None:
    trainer = _trainer()
    x, y = _batches()[0]
    trainer.step(x, y)
    model = KERAS.build(trainer.plan)
    KERAS.set_weights(model, trainer.plan, trainer.weights())
    np.testing.assert_array_equal(trainer.logits(x), KERAS.predict(model, x))


def test_a_checkpoint_missing_variables_names_them() -> None:
    trainer = _trainer()
    trainer.step(*_batches()[0])
    state = trainer.state()
    keys = sorted(state)
    kept = {k: v for k, v in state.items() if k not in keys[:5]}
    with pytest.raises(RuntimeFailure) as refused:
        _trainer().load_state(kept)
    missing = [k for k in trainer._variables() if k not in kept]
    assert len(missing) == 5
    assert str(refused.value) == f"the checkpoint lacks {', '.join(missing[:3])} and 2 more"
    for count in (3, 4):  # "and N more" only past three
        fewer = {k: v for k, v in state.items() if k not in keys[:count]}
        with pytest.raises(RuntimeFailure) as some:
            _trainer().load_state(fewer)
        lacking = [k for k in trainer._variables() if k not in fewer]
        more = " and 1 more" if count == 4 else ""
        assert str(some.value) == f"the checkpoint lacks {', '.join(lacking[:3])}{more}"
    one = {k: v for k, v in state.items() if k != keys[0]}
    with pytest.raises(RuntimeFailure) as single:
        _trainer().load_state(one)
    assert str(single.value) == f"the checkpoint lacks {keys[0]}"
    resumed = _trainer()
    resumed.load_state(state)
    for key, value in resumed.state().items():
        np.testing.assert_array_equal(value, state[key], err_msg=key)


def test_the_device_is_honoured_or_refused() -> None:
    """``--device cuda`` where TensorFlow sees no GPU is refused with one line; ``auto`` and
    ``cpu`` train here."""
    import tensorflow as tf

    for device in ("auto", "cpu"):
        assert _trainer(TrainOptions(device=device)).step(*_batches()[0])[1] >= 0
    if not tf.config.list_physical_devices("GPU"):
        with pytest.raises(RuntimeFailure) as refused:
            _trainer(TrainOptions(device="cuda"))
        assert str(refused.value) == "--device cuda: TensorFlow sees no GPU here"
