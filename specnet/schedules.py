"""Learning-rate schedules, as ``keras.optimizers.schedules`` computes them, for the PyTorch
backend (the Keras backend hands the same fields to Keras's own classes).

Keras evaluates a schedule at ``optimizer.iterations`` — the number of steps already taken,
so the first step uses ``schedule(0)`` — in float32, the dtype of ``initial_learning_rate``.
:func:`learning_rate` follows each class's ``__call__`` (Keras 3.15,
``keras/src/optimizers/schedules/learning_rate_schedule.py``) operation by operation in NumPy
float32, so the two backends step with the same rates; ``tests/test_schedules.py`` compares
every schedule with Keras's own, step by step.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from specnet._frameworks import require
from specnet.spec import (
    CosineDecay,
    ExponentialDecay,
    InverseTimeDecay,
    PiecewiseConstantDecay,
    PolynomialDecay,
)

if TYPE_CHECKING:
    from specnet.spec import Schedule

__all__ = ["learning_rate"]


def learning_rate(schedule: float | Schedule, step: int) -> float:
    """The learning rate of optimizer step ``step`` (0 for the first)."""
    if isinstance(schedule, int | float):
        return float(schedule)
    np = require("numpy")
    f = np.float32
    t = f(step)
    if isinstance(schedule, ExponentialDecay):
        p = t / f(schedule.decay_steps)
        if schedule.staircase:
            p = np.floor(p)
        return float(f(schedule.initial_learning_rate) * np.power(f(schedule.decay_rate), p))
    if isinstance(schedule, InverseTimeDecay):
        p = t / f(schedule.decay_steps)
        if schedule.staircase:
            p = np.floor(p)
        denominator = f(1.0) + f(schedule.decay_rate) * p
        return float(f(schedule.initial_learning_rate) / denominator)
    if isinstance(schedule, PiecewiseConstantDecay):
        for boundary, value in zip(schedule.boundaries, schedule.values, strict=False):
            if step <= boundary:
                return float(f(value))
        return float(f(schedule.values[-1]))
    if isinstance(schedule, PolynomialDecay):
        initial, end = f(schedule.initial_learning_rate), f(schedule.end_learning_rate)
        decay_steps = f(schedule.decay_steps)
        if schedule.cycle:
            multiplier = f(1.0) if step == 0 else np.ceil(t / decay_steps)
            decay_steps = decay_steps * multiplier
        else:
            t = np.minimum(t, decay_steps)
        p = t / decay_steps
        return float((initial - end) * np.power(f(1.0) - p, f(schedule.power)) + end)
    if isinstance(schedule, CosineDecay):
        initial = f(schedule.initial_learning_rate)
        decay_steps = f(schedule.decay_steps)

        def decay(at: float, start: float) -> float:
            fraction = at / decay_steps
            cosine = f(0.5) * (f(1.0) + np.cos(f(math.pi) * fraction))
            alpha = f(schedule.alpha)
            return float(f(start) * ((f(1.0) - alpha) * cosine + alpha))

        if schedule.warmup_target is None:
            return decay(np.minimum(t, decay_steps), initial)
        target, warmup = f(schedule.warmup_target), f(schedule.warmup_steps)
        t = np.minimum(t, decay_steps + warmup)
        if t < warmup:
            return float((target - initial) * (t / warmup) + initial)
        return decay(t - warmup, target)
    raise AssertionError(f"unknown schedule {schedule.type}")
