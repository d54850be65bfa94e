"""Training parity: from the same weights, on the same batches, dropout off, K optimizer steps in
Keras and in PyTorch end with the same weights — for every spec in specs/.

Adam and RMSprop divide by ``sqrt(v) + ε``: for a weight whose gradient is within float32
rounding of zero (common in the first conv of a deep net), the two frameworks' gradients differ
in their last bits, the ratio can flip sign, and the step differs by up to 2·lr — a property of
the optimizer, not of either framework. The tests therefore use ε = 1e-3, the same on both sides
(ε "matched"), which keeps that ratio well conditioned, and Keras's default learning rate 1e-3;
the tolerance stays atol 1e-5, rtol 1e-4. (At lr 1e-2 one bias of cifar10_cnn's third conv,
whose gradient is a sum of nearly cancelling terms, ends 1.2e-5 apart: channels-last and NCHW
convolutions round that sum differently, and Adam scales the difference by lr / ε.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from specnet import infer, load_spec
from specnet.backends import get_backend
from specnet.data import batch_order, synthetic
from specnet.spec import Dropout
from specnet.train import training_plan
from specnet.weights import init_weights
from tests.conftest import SPECS
from tests.helpers import assert_agree

STEPS, BATCH = 3, 8
OPTIMIZERS = {
    "sgd": {"type": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True},
    "adam": {"type": "adam", "learning_rate": 0.001, "epsilon": 1e-3},
    "rmsprop": {"type": "rmsprop", "learning_rate": 0.001, "momentum": 0.5, "epsilon": 1e-3},
}


def _without_dropout(path: Path, optimizer: dict[str, Any]) -> Any:
    spec = load_spec(path)
    layers = [
        layer.model_copy(update={"rate": 0.0}) if isinstance(layer, Dropout) else layer
        for layer in spec.layers
    ]
    train = spec.train.model_validate({**spec.train.model_dump(), "optimizer": optimizer})
    return infer(spec.model_copy(update={"layers": layers, "train": train}))


def _run(backend: str, plan: Any, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    tplan = training_plan(plan)
    trainer = get_backend(backend).trainer(tplan, plan.spec.train, init_weights(plan, seed=4))
    order = batch_order(len(x), seed=4, epoch=0)
    losses = []
    for step in range(STEPS):
        index = order[step * BATCH : (step + 1) * BATCH]
        losses.append(trainer.step(x[index], y[index])[0])
    return {**trainer.weights(), "losses": np.array(losses)}


CASES = [(path, "sgd") for path in SPECS] + [(path, "adam") for path in SPECS]
CASES += [(SPECS[0], "rmsprop")]


@pytest.mark.parametrize(("path", "optimizer"), CASES, ids=lambda v: getattr(v, "stem", v))
def test_training_parity(path: Path, optimizer: str) -> None:
    plan = _without_dropout(path, OPTIMIZERS[optimizer])
    classes = plan.output_shape[0]
    x, y, _ = synthetic(STEPS * BATCH, plan.input_shape, classes, "shape", seed=1)
    keras_result = _run("keras", plan, x, y)
    torch_result = _run("torch", plan, x, y)
    start = init_weights(plan, seed=4)
    moved = [key for key in start if not np.array_equal(start[key], keras_result[key])]
    assert moved, "the steps must change the weights, or the comparison proves nothing"
    assert_agree(torch_result["losses"], keras_result["losses"], "losses", rtol=1e-4, atol=1e-5)
    for key in start:
        assert_agree(
            torch_result[key], keras_result[key], f"{plan.name}:{key}", rtol=1e-4, atol=1e-5
        )


def test_binary_training_parity() -> None:
    """One sigmoid unit trained with binary cross-entropy: the same losses, accuracy counts and
    weights in both frameworks (the softmax specs above never take this path)."""
    from specnet.spec import spec_from_dict

    spec = spec_from_dict({
        "name": "binary", "input_shape": [6, 6, 3], "class_names": ["no", "yes"],
        "layers": [{"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
                   {"type": "Flatten"}, {"type": "Dense", "units": 1, "activation": "sigmoid"}],
        "train": {"loss": "binary_crossentropy", "optimizer": OPTIMIZERS["sgd"]},
    })  # fmt: skip
    plan = infer(spec)
    x, y, _ = synthetic(STEPS * BATCH, plan.input_shape, 2, "colour", seed=2)
    results, correct = {}, {}
    for backend in ("keras", "torch"):
        start = init_weights(plan, seed=4)
        trainer = get_backend(backend).trainer(training_plan(plan), spec.train, start)
        batches = [slice(i * BATCH, (i + 1) * BATCH) for i in range(STEPS)]
        steps = [trainer.step(x[part], y[part]) for part in batches]
        results[backend] = {**trainer.weights(), "losses": np.array([s[0] for s in steps])}
        correct[backend] = [int(s[1]) for s in steps]
    assert correct["torch"] == correct["keras"]
    assert 0 < sum(correct["torch"]) < STEPS * BATCH  # counted, not all or nothing
    for key, value in results["keras"].items():
        assert_agree(results["torch"][key], value, f"binary:{key}", rtol=1e-4, atol=1e-5)
