"""Weight decay, AdamW and gradient clipping, in Keras's order of operations (clip, decay the
weights at this step's rate, update), equal on both backends."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from specnet import infer, loads_spec
from specnet.data import synthetic
from specnet.weights import init_weights
from tests.helpers import assert_agree
from tests.test_schedules import BATCH, SCHEDULES, SPEC, STEPS, _train

CASES: dict[str, dict[str, Any]] = {
    "sgd_decay": {"type": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.05},
    "adam_decay": {"type": "adam", "epsilon": 1e-3, "weight_decay": 0.1},
    "rmsprop_decay": {"type": "rmsprop", "epsilon": 1e-3, "weight_decay": 0.1},
    "adamw": {"type": "adamw", "epsilon": 1e-3, "learning_rate": 0.05},  # Keras's decay 0.004
    "adamw_cosine": {
        "type": "AdamW",
        "epsilon": 1e-3,
        "weight_decay": 0.05,
        "learning_rate": SCHEDULES["cosine_warmup"],
    },
    "clipnorm": {"type": "sgd", "learning_rate": 0.5, "clipnorm": 0.05},
    "global_clipnorm": {
        "type": "sgd",
        "learning_rate": 0.5,
        "momentum": 0.5,
        "global_clipnorm": 0.1,
    },
    "clipvalue": {"type": "adam", "learning_rate": 0.01, "epsilon": 1e-3, "clipvalue": 0.001},
}


def _plan(optimizer: dict[str, Any]) -> Any:
    return infer(loads_spec(SPEC % json.dumps(optimizer)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_both_backends_decay_and_clip_alike(name: str) -> None:
    plan = _plan(CASES[name])
    x, y, _ = synthetic(STEPS * BATCH, plan.input_shape, 3, "shape", seed=1)
    keras_weights = _train("keras", plan, x, y)
    torch_weights = _train("torch", plan, x, y)
    for key in keras_weights:
        assert_agree(torch_weights[key], keras_weights[key], f"{name}: {key}")
    # the option acts: without it Keras ends elsewhere
    plain = {
        k: v
        for k, v in CASES[name].items()
        if k not in ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm")
    }
    if plain["type"].lower() == "adamw":
        plain = {**plain, "type": "adam"}
    without = _train("keras", _plan(plain), x, y)
    assert any(not np.allclose(without[k], keras_weights[k], atol=1e-4) for k in without), name
    start = init_weights(plan, seed=2)
    assert any(not np.array_equal(start[k], keras_weights[k]) for k in start)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            '{"type": "sgd", "clipnorm": 1.0, "clipvalue": 0.5}',
            "set one of clipnorm, clipvalue and global_clipnorm",
        ),
        ('{"type": "adam", "clipvalue": 1.0, "global_clipnorm": 0.5}', "here also clipvalue"),
        ('{"type": "adamw", "weight_decay": -0.1}', "weight_decay"),
        ('{"type": "adamx"}', "did you mean 'adam'"),
    ],
)
def test_bad_optimizer_options_are_one_located_error(
    tmp_path: Any, cli, options: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "s.yaml"
    path.write_text(SPEC % options)
    result = cli("validate", path)
    assert result.code == 2
    assert message in result.err, result.err
    assert "s.yaml:9:" in result.err
