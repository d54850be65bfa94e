"""One parity helper so each comparison is a line: shapes first, then values, then argmax."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

ATOL, RTOL = 1e-5, 1e-4  # float32 parity, as DESIGN.md states


def assert_agree(got: Any, want: Any, what: str, atol: float = ATOL, rtol: float = RTOL) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    np.testing.assert_allclose(got, want, atol=atol, rtol=rtol, err_msg=what)
    if got.ndim == 2 and got.shape[1] > 1:
        assert (got.argmax(1) == want.argmax(1)).all(), f"{what}: argmax differs"


def assert_refused(result: Any, message: str, where: str = "", out: Path | None = None) -> None:
    """A CLI result (tests.conftest's ``cli``) that is one user mistake: exit 2, ``message``
    (and ``where``, e.g. ``spec.yaml:5:``) said, no traceback, and ``out`` never written."""
    assert result.code == 2, result.err
    assert message in result.err, result.err
    assert where in result.err, result.err
    assert "Traceback" not in result.err
    assert out is None or not out.exists(), f"{out} was written"


def wait_for_epochs(run: Path, epochs: int, process: subprocess.Popen[bytes]) -> None:
    """Poll a running `specnet train` until its specnet.json says ``epochs`` are checkpointed."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if json.loads((run / "specnet.json").read_text())["epochs_done"] >= epochs:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    ended = process.poll() is not None
    said = process.stderr.read().decode(errors="replace") if ended and process.stderr else ""
    raise AssertionError(f"the run ended or stalled before it could be interrupted\n{said}")


def batch(shape: tuple[int, ...], n: int = 6, seed: int = 0) -> np.ndarray:
    """A float32 NHWC batch in [0, 1): what images look like after scaling."""
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def busy_weights(plan: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded initial weights with every bias and batch-norm statistic drawn too: the zero
    biases, unit scales and zero/one moving statistics Keras initialises with make a backend that
    drops or misplaces one compute the same numbers."""
    from specnet.weights import init_weights

    weights = init_weights(plan, seed=seed)
    rng = np.random.default_rng(seed + 1000)
    for key in sorted(weights):
        shape = weights[key].shape
        if key.endswith((".bias", ".beta", ".moving_mean")):
            weights[key] = rng.normal(0, 0.1, shape).astype(np.float32)
        elif key.endswith(".gamma"):
            weights[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif key.endswith(".moving_variance"):
            weights[key] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
    return weights
