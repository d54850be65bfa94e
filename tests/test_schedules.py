"""Learning-rate schedules: specnet's PyTorch backend steps at the rates
``keras.optimizers.schedules`` itself returns, and both backends train to the same weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from specnet import infer, loads_spec
from specnet.backends import get_backend
from specnet.data import synthetic
from specnet.schedules import learning_rate
from specnet.spec import Train
from specnet.train import training_plan
from specnet.weights import init_weights
from tests.helpers import assert_agree

SCHEDULES: dict[str, dict[str, Any]] = {
    "cosine": {"type": "CosineDecay", "initial_learning_rate": 0.1, "decay_steps": 7},
    "cosine_alpha": {
        "type": "CosineDecay",
        "initial_learning_rate": 0.05,
        "decay_steps": 5,
        "alpha": 0.2,
    },
    "cosine_warmup": {
        "type": "CosineDecay",
        "initial_learning_rate": 0.0,
        "decay_steps": 6,
        "warmup_target": 0.1,
        "warmup_steps": 4,
    },
    "exponential": {
        "type": "ExponentialDecay",
        "initial_learning_rate": 0.1,
        "decay_steps": 3,
        "decay_rate": 0.5,
    },
    "exponential_staircase": {
        "type": "ExponentialDecay",
        "initial_learning_rate": 0.1,
        "decay_steps": 3,
        "decay_rate": 0.5,
        "staircase": True,
    },
    "piecewise": {
        "type": "PiecewiseConstantDecay",
        "boundaries": [2, 5],
        "values": [0.1, 0.03, 0.01],
    },
    "polynomial": {
        "type": "PolynomialDecay",
        "initial_learning_rate": 0.1,
        "decay_steps": 6,
        "power": 2.0,
    },
    "polynomial_cycle": {
        "type": "PolynomialDecay",
        "initial_learning_rate": 0.1,
        "decay_steps": 3,
        "end_learning_rate": 0.01,
        "cycle": True,
    },
    "inverse_time": {
        "type": "InverseTimeDecay",
        "initial_learning_rate": 0.1,
        "decay_steps": 2,
        "decay_rate": 0.7,
    },
    "inverse_time_staircase": {
        "type": "InverseTimeDecay",
        "initial_learning_rate": 0.1,
        "decay_steps": 2,
        "decay_rate": 0.7,
        "staircase": True,
    },
}


def _schedule(fields: dict[str, Any]) -> Any:
    return Train.model_validate(
        {"optimizer": {"type": "sgd", "learning_rate": fields}}
    ).optimizer.learning_rate


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_every_schedule_gives_keras_rates_step_by_step(name: str) -> None:
    """40 steps, well past every decay: the same float32 value as Keras's schedule (to the last
    bit but one: Keras evaluates cos and pow with TensorFlow's kernels, specnet with NumPy's)."""
    from specnet._frameworks import keras_module

    keras = keras_module()
    fields = SCHEDULES[name]
    theirs = getattr(keras.optimizers.schedules, fields["type"])(
        **{k: v for k, v in fields.items() if k != "type"}
    )
    schedule = _schedule(fields)
    got = np.array([learning_rate(schedule, step) for step in range(40)], np.float32)
    want = np.array([float(theirs(step)) for step in range(40)], np.float32)
    np.testing.assert_allclose(got, want, rtol=3e-7, atol=0)
    assert len(set(got.tolist())) > 1  # it does change


SPEC = """
name: tiny
input_shape: [8, 8, 2]
layers:
  - {type: Conv2D, filters: 4, kernel_size: 3, activation: relu}
  - {type: Flatten}
  - {type: Dense, units: 3}
train:
  optimizer: %s
"""
STEPS, BATCH = 8, 6
OPTIMIZERS = {
    "sgd_momentum": {"type": "sgd", "momentum": 0.9},
    "sgd_nesterov": {"type": "sgd", "momentum": 0.8, "nesterov": True},
    "sgd": {"type": "sgd"},
    "adam": {"type": "adam", "epsilon": 1e-3},
    "rmsprop": {"type": "rmsprop", "momentum": 0.5, "epsilon": 1e-3},
}


def _train(
    backend: str, plan: Any, x: np.ndarray, y: np.ndarray, resume_at: int | None = None
) -> dict[str, Any]:
    tplan = training_plan(plan)
    chosen = get_backend(backend)
    trainer = chosen.trainer(tplan, plan.spec.train, init_weights(plan, seed=2))
    for step in range(STEPS):
        if step == resume_at:  # a fresh trainer from the checkpointed state
            state = trainer.state()
            trainer = chosen.trainer(tplan, plan.spec.train, init_weights(plan, seed=9))
            trainer.load_state(state)
        index = slice(step * BATCH, (step + 1) * BATCH)
        trainer.step(x[index], y[index])
    return trainer.weights()  # type: ignore[no-any-return]


def _plan(optimizer: dict[str, Any], schedule: dict[str, Any]) -> Any:
    import json

    return infer(loads_spec(SPEC % json.dumps({**optimizer, "learning_rate": schedule})))


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize(
    "name", ["cosine_warmup", "exponential_staircase", "piecewise", "polynomial_cycle"]
)
def test_both_backends_train_alike_under_a_schedule(optimizer: str, name: str) -> None:
    plan = _plan(OPTIMIZERS[optimizer], SCHEDULES[name])
    x, y, _ = synthetic(STEPS * BATCH, plan.input_shape, 3, "shape", seed=1)
    keras_weights = _train("keras", plan, x, y)
    torch_weights = _train("torch", plan, x, y)
    start = init_weights(plan, seed=2)
    assert any(not np.array_equal(start[k], keras_weights[k]) for k in start)
    for key in start:
        assert_agree(torch_weights[key], keras_weights[key], f"{optimizer}/{name}: {key}")


def test_the_rest_of_the_schedules_on_one_optimizer() -> None:
    for name in (
        "cosine",
        "cosine_alpha",
        "exponential",
        "polynomial",
        "inverse_time",
        "inverse_time_staircase",
    ):
        plan = _plan(OPTIMIZERS["sgd_momentum"], SCHEDULES[name])
        x, y, _ = synthetic(STEPS * BATCH, plan.input_shape, 3, "shape", seed=1)
        keras_weights, torch_weights = _train("keras", plan, x, y), _train("torch", plan, x, y)
        for key in keras_weights:
            assert_agree(torch_weights[key], keras_weights[key], f"{name}: {key}")


def test_a_resumed_trainer_continues_the_schedule_where_it_was() -> None:
    """The step count is part of the checkpoint: stopping after 3 steps and resuming gives the
    bytes of an uninterrupted run (a schedule restarted at step 0 would not)."""
    plan = _plan(OPTIMIZERS["sgd_momentum"], SCHEDULES["exponential"])
    x, y, _ = synthetic(STEPS * BATCH, plan.input_shape, 3, "shape", seed=1)
    straight = _train("torch", plan, x, y)
    resumed = _train("torch", plan, x, y, resume_at=3)
    for key, value in straight.items():
        assert np.array_equal(resumed[key], value), key


def test_pytorchs_own_sgd_would_part_from_keras_under_a_schedule() -> None:
    """One weight, gradient 1, rates 1.0 then 0.1, momentum 0.9. Keras: v = −1, w = −1; then
    v = 0.9·(−1) − 0.1 = −1, w = −2. torch.optim.SGD: b = 1, w = −1; then b = 1.9,
    w = −1 − 0.1·1.9 = −1.19. specnet's KerasSGD gives Keras's −2."""
    import torch

    from specnet.backends.torch_train import KerasSGD

    results = {}
    for name, make in {
        "keras": lambda p: KerasSGD([p], lr=1.0, momentum=0.9, nesterov=False),
        "torch": lambda p: torch.optim.SGD([p], lr=1.0, momentum=0.9),
    }.items():
        weight = torch.zeros(1, requires_grad=True)
        opt = make(weight)
        for rate in (1.0, 0.1):
            for group in opt.param_groups:
                group["lr"] = rate
            weight.grad = torch.ones(1)
            opt.step()
        results[name] = float(weight.detach()[0])
    assert results["keras"] == pytest.approx(-2.0)
    assert results["torch"] == pytest.approx(-1.19)


@pytest.mark.parametrize(
    ("rate", "message"),
    [
        (
            "{type: CosineDecy, initial_learning_rate: 0.1, decay_steps: 3}",
            "did you mean 'CosineDecay'?",
        ),
        (
            "{type: PiecewiseConstantDecay, boundaries: [3], values: [0.1]}",
            "expected 2 values, one more than boundaries",
        ),
        (
            "{type: PiecewiseConstantDecay, boundaries: [5, 3], values: [1, 2, 3]}",
            "expected steps in increasing order",
        ),
        (
            "{type: ExponentialDecay, initial_learning_rate: 0.1, decay_rate: 0.5}",
            "missing required field `decay_steps`",
        ),
        ("{type: CosineDecay, initial_learning_rate: 0.1, decay_steps: 0}", "decay_steps"),
    ],
)
def test_a_bad_schedule_is_one_located_error(tmp_path: Any, cli, rate: str, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "s.yaml"
    path.write_text(SPEC % f"{{type: adam, learning_rate: {rate}}}")
    result = cli("validate", path)
    assert result.code == 2
    assert message in result.err
    assert "s.yaml:9:" in result.err  # the line of the optimizer
    assert "Traceback" not in result.err
