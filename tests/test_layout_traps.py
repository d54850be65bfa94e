"""The layout traps, each checked against the NumPy reference (a third, independent opinion).

`same` padding with stride 2 on odd and even sizes (Keras pads bottom/right), dilation,
non-square kernels and strides, HWIO ↔ OIHW kernels, and the Dense after a Flatten, whose rows
PyTorch reads in (c, h, w) order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from specnet import infer, loads_spec
from specnet.backends import get_backend
from specnet.weights import init_weights
from tests import numpy_reference as ref
from tests.helpers import assert_agree, batch

BACKENDS = [get_backend("keras"), get_backend("torch")]


def _random_weights(plan: object, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        key: rng.standard_normal(value.shape).astype(np.float32)
        for key, value in init_weights(plan).items()  # type: ignore[arg-type]
    }


def _check(spec: str, reference: Callable[[np.ndarray, dict[str, np.ndarray]], np.ndarray]) -> None:
    plan = infer(loads_spec(spec, "trap.yaml"))
    weights = _random_weights(plan, seed=11)
    x = batch(plan.input_shape, n=3, seed=5)
    want = reference(x.astype(np.float64), {k: v.astype(np.float64) for k, v in weights.items()})
    for backend in BACKENDS:
        model = backend.build(plan)
        backend.set_weights(model, plan, weights)
        assert_agree(backend.predict(model, x), want, f"{backend.name} vs NumPy")


CONV_CASES = [
    # (height, width, kernel, strides, padding, dilation)
    (7, 8, (3, 3), (2, 2), "same", (1, 1)),  # odd height, even width, stride 2
    (8, 7, (4, 4), (2, 2), "same", (1, 1)),  # even kernel: padding split unevenly
    (9, 9, (3, 2), (2, 1), "same", (1, 1)),  # non-square kernel and strides
    (10, 9, (3, 3), (1, 1), "same", (2, 2)),  # dilation with same padding
    (10, 9, (3, 3), (1, 1), "valid", (3, 2)),  # dilation, valid
    (11, 6, (5, 3), (3, 2), "valid", (1, 1)),  # strides larger than 2, valid
]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv2d_against_numpy(case: tuple) -> None:  # type: ignore[type-arg]
    h, w, kernel, strides, padding, dilation = case
    spec = (
        f"name: trap\ninput_shape: [{h}, {w}, 3]\nlayers:\n"
        f"  - {{type: Conv2D, filters: 4, kernel_size: {list(kernel)}, strides: {list(strides)},"
        f" padding: {padding}, dilation_rate: {list(dilation)}}}\n"
    )
    _check(
        spec,
        lambda x, wt: ref.conv2d(
            x, wt["conv2d.kernel"], wt["conv2d.bias"], strides, padding, dilation
        ),
    )


@pytest.mark.parametrize(
    ("h", "w", "pool", "strides", "padding"),
    [(7, 8, 2, 2, "same"), (9, 6, 3, 2, "same"), (8, 8, 3, 1, "same"), (9, 7, 3, 2, "valid")],
)
def test_max_pool_against_numpy(h: int, w: int, pool: int, strides: int, padding: str) -> None:
    spec = (
        f"name: trap\ninput_shape: [{h}, {w}, 2]\nlayers:\n"
        f"  - {{type: MaxPool, pool_size: {pool}, strides: {strides}, padding: {padding}}}\n"
    )
    _check(spec, lambda x, wt: ref.max_pool(x, (pool, pool), (strides, strides), padding))


def test_negative_inputs_are_not_padded_with_zeros_in_max_pool() -> None:
    """Keras's same max-pool ignores the padding; zero-padding would win over negatives."""
    spec = "name: trap\ninput_shape: [5, 5, 1]\nlayers:\n  - {type: MaxPool, padding: same}\n"
    plan = infer(loads_spec(spec))
    x = -1.0 - batch(plan.input_shape, n=2)
    want = ref.max_pool(x.astype(np.float64), (2, 2), (2, 2), "same")
    assert (want < 0).all()
    for backend in BACKENDS:
        assert_agree(backend.predict(backend.build(plan), x), want, backend.name)


def test_dense_after_flatten_against_numpy() -> None:
    spec = (
        "name: trap\ninput_shape: [5, 4, 3]\nlayers:\n"
        "  - {type: Conv2D, filters: 6, kernel_size: 2}\n"
        "  - {type: Flatten}\n  - {type: Dropout, rate: 0.3}\n"
        "  - {type: Dense, units: 7}\n  - {type: Dense, units: 3}\n"
    )

    def reference(x: np.ndarray, wt: dict[str, np.ndarray]) -> np.ndarray:
        y = ref.conv2d(x, wt["conv2d.kernel"], wt["conv2d.bias"])
        y = ref.dense(ref.flatten(y), wt["dense.kernel"], wt["dense.bias"])
        return ref.dense(y, wt["dense_1.kernel"], wt["dense_1.bias"])

    _check(spec, reference)


def test_a_naive_transpose_would_be_caught() -> None:
    """The reference is sensitive to the trap: loading the Dense rows unpermuted changes outputs."""
    spec = "name: trap\ninput_shape: [3, 4, 2]\nlayers:\n  - {type: Flatten}\n"
    spec += "  - {type: Dense, units: 2}\n"
    plan = infer(loads_spec(spec))
    weights = _random_weights(plan, seed=2)
    x = batch(plan.input_shape, n=2).astype(np.float64)
    right = ref.dense(ref.flatten(x), weights["dense.kernel"], weights["dense.bias"])
    chw = x.transpose(0, 3, 1, 2).reshape(2, -1)  # what a naive converter feeds the same rows
    wrong = ref.dense(chw, weights["dense.kernel"], weights["dense.bias"])
    assert not np.allclose(right, wrong, atol=1e-3)
