"""Random valid networks (tests/random_networks.py) on every runtime: Keras, PyTorch and the
direct ONNX graph in ONNX Runtime in both layouts must each compute the network's logits as
PyTorch computes them in float64 (:func:`check_runtimes`); a share also goes through both
framework export paths, and a share trains on both backends.

Sizes per CI run: ``SPECNET_PARITY_SPECS`` networks (default 200), ``SPECNET_PARITY_EXPORTED``
of them through the exporters (default 8), ``SPECNET_PARITY_TRAINED`` trained two steps on
each backend (default 20). ``scripts/fuzz-parity.sh N`` runs a long campaign and writes a
report (``SPECNET_PARITY_REPORT``): specs tried, kinds and fields covered, failures.

Hypothesis shrinks a failure to a minimal network; each one found is kept under
``tests/regressions/`` (run by :func:`test_regression`) once fixed. The tolerance is the
parity one (atol 1e-5, rtol 1e-4) on logits scaled to their largest value: a random network's
logits can be in the thousands, where float32 carries about 1e-4 absolute. A network that
amplifies rounding gets, on top, the room its own float32 arithmetic needs, measured in float64
(:func:`_exact`).
"""

from __future__ import annotations

import atexit
import collections
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from specnet import infer
from specnet._frameworks import require
from specnet.backends import get_backend
from specnet.backends.onnx import build_graph, ort_session, run_session
from specnet.rounding import rounding
from specnet.shapes import logits_plan
from specnet.spec import spec_from_dict
from tests.conftest import ROOT
from tests.helpers import ATOL, RTOL, busy_weights
from tests.random_networks import networks

SPECS = int(os.environ.get("SPECNET_PARITY_SPECS", "200"))
EXPORTED = int(os.environ.get("SPECNET_PARITY_EXPORTED", "6"))
TRAINED = int(os.environ.get("SPECNET_PARITY_TRAINED", "20"))
REPORT = os.environ.get("SPECNET_PARITY_REPORT")
REGRESSIONS = sorted((ROOT / "tests" / "regressions").glob("*.json"))

COVERED: dict[str, collections.Counter[str]] = {
    "kinds": collections.Counter(),
    "fields": collections.Counter(),
    "runs": collections.Counter(),
}


def _record(spec: dict[str, Any], what: str) -> None:
    COVERED["runs"][what] += 1
    for layer in spec["layers"]:
        kind = layer.get("type") or f"block {layer['block']}"
        COVERED["kinds"][kind] += 1
        for field, value in layer.items():
            if field not in ("type", "name", "block"):
                COVERED["fields"][f"{kind}.{field}={value}"[:60]] += 1


#: the first networks TensorFlow aborted on, kept for the report
ABORTED: list[dict[str, Any]] = []


def _write_report() -> None:
    if REPORT:
        data: dict[str, Any] = {
            key: dict(counter.most_common()) for key, counter in COVERED.items()
        }
        data["aborted"] = ABORTED[:5]
        Path(REPORT).write_text(json.dumps(data, indent=1) + "\n")


atexit.register(_write_report)


def _agree(got: np.ndarray, want: np.ndarray, what: str, rounding: float = 0.0) -> None:
    """``got`` within the parity tolerance of ``want``, widened by ``rounding`` (how far
    float32 rounding alone moves this network's output, :func:`_exact`)."""
    scale = max(1.0, float(np.abs(want).max()))
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    np.testing.assert_allclose(got, want, atol=ATOL * scale + rounding, rtol=RTOL, err_msg=what)


def _inference(spec: dict[str, Any], n: int, seed: int) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """The network's logits in Keras (the reference), or a discarded draw when they overflow."""
    import tensorflow as tf

    plan = logits_plan(infer(spec_from_dict(spec)))
    weights = busy_weights(plan, seed=seed)
    x = np.random.default_rng(seed).random((n, *plan.input_shape), dtype=np.float32)
    # each network meets TensorFlow as a fresh process would: the graph remapper on, unless
    # the backend turns it off for this network (keras._needs_no_remapping)
    tf.config.optimizer.set_experimental_options({"remapping": True})
    if COVERED["runs"]["runtimes"] % 500 == 499:  # a long campaign: shed the old models
        require("keras").backend.clear_session()  # (not each time: it costs ~0.3 s a network)
    keras = get_backend("keras")
    model = keras.build(plan)
    keras.set_weights(model, plan, weights)
    try:
        want = np.asarray(keras.predict(model, x))
    except tf.errors.AbortedError as exc:
        # TensorFlow 2.21's oneDNN: "could not create a primitive descriptor for the reorder
        # primitive" — a crash, not a wrong answer. The case the campaigns found (a one-channel
        # 1×1 SeparableConv2D fused by the remapper) is worked around in the backend
        # (keras._one_channel_pointwise). A long campaign still meets it now and then after
        # thousands of models in one process (a 5,000-network run: 11, none of which aborts
        # alone in a fresh process): the network is counted in the report and dropped
        if "primitive descriptor" not in str(exc):
            raise
        COVERED["runs"]["dropped: TensorFlow's oneDNN aborted"] += 1
        ABORTED.append(spec)
        assume(False)
    assume(np.isfinite(want).all() and np.abs(want).max() < 1e6)  # exponential, deep products
    return plan, weights, x, want


def _exact(plan: Any, weights: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, float]:
    """The network in float64 (PyTorch's model of it, every weight and the input in double):
    the function every float32 runtime approximates; and how far float32 rounding moves it.

    That second figure is :func:`specnet.rounding.rounding` (Monte Carlo arithmetic in
    float64: a float32 rounding at every layer, the largest deviation it makes, 4×). For most
    networks it is a small part of the parity tolerance (150 random ones on 2026-12-03: median
    3% of it, 9 in 10 under 8%), which stays as it was; a network that amplifies rounding (a
    LayerNormalization of an almost constant vector: a spread of 3.3e-5 on logits of 0.3) gets
    the room its own float32 arithmetic needs."""
    import torch

    from specnet.backends.torch import apply_steps, conversions

    model = get_backend("torch").build(plan).double()
    peak = [0.0]

    def record(module: Any, args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.numel():
            peak[0] = max(peak[0], float(output.abs().max()))

    for module in model.modules():
        module.register_forward_hook(record)
    state = {
        key: torch.from_numpy(apply_steps(weights[canonical].astype(np.float64), steps))
        for canonical, key, steps, _ in conversions(plan)
    }
    state |= {k: v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")}
    model.load_state_dict(state)
    inputs = torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2)

    def logits() -> np.ndarray:
        with torch.no_grad():
            out = model(inputs)
        return (out.permute(0, 2, 3, 1) if out.ndim == 4 else out).numpy()

    out = logits()
    # a value beyond float32's range anywhere inside (an exponential of an exponential) makes
    # every float32 runtime compute inf or nan there, whatever the output is: not a parity
    # question, so the draw is discarded (a 5,000-network campaign met two)
    assume(peak[0] < 1e30)
    return out, rounding(plan, weights, x)[1][plan.layers[-1].name]


def check_runtimes(spec: dict[str, Any], n: int = 3, seed: int = 0) -> None:
    """Keras, PyTorch and ONNX Runtime (both layouts) each within the parity tolerance of the
    network in float64, widened by what float32 rounding alone does to it (:func:`_exact`).
    (Pairwise, two float32 runtimes on either side of the exact value can be twice the
    tolerance apart: a 5,000-network campaign met one, 1.25e-5 apart, Keras 7.8e-6 above and
    ONNX Runtime 4.7e-6 below the float64 value.)"""
    plan, weights, x, want = _inference(spec, n, seed)
    exact, rounding = _exact(plan, weights, x)
    _agree(want, exact, "keras", rounding)
    torch = get_backend("torch")
    model = torch.build(plan)
    torch.set_weights(model, plan, weights)
    _agree(torch.predict(model, x), exact, "torch", rounding)
    for layout in ("nhwc", "nchw"):
        session = ort_session(build_graph(plan, weights, layout))
        _agree(run_session(session, x, layout), exact, f"onnx/{layout}", rounding)


FAST = settings(
    max_examples=SPECS,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FAST
@given(networks(), st.sampled_from([1, 3]))
def test_random_networks_agree_on_every_runtime(spec: dict[str, Any], n: int) -> None:
    _record(spec, "runtimes")
    check_runtimes(spec, n)


@settings(FAST, max_examples=EXPORTED)
@given(networks(max_layers=5))
def test_random_networks_agree_through_every_export(spec: dict[str, Any]) -> None:
    from specnet.export import native_onnx

    _record(spec, "exports")
    plan, weights, x, want = _inference(spec, 2, 1)
    # two float32 runtimes (Keras and the exported file), each up to the rounding from the
    # float64 value: twice that apart
    rounding = 2 * _exact(plan, weights, x)[1]
    # the one documented refusal: tf2onnx 1.17 cannot convert Erfc, which Keras's exact gelu uses
    gelu = any(getattr(step.layer, "activation", None) == "gelu" for step in plan.layers)
    for via in ("torch", "direct") if gelu else ("keras", "torch", "direct"):
        for layout in ("nhwc", "nchw"):
            try:
                model = native_onnx(plan, weights, via, layout, 18)
            except Exception as exc:  # a converter's own refusal is a finding too: say which
                raise AssertionError(f"export via {via}/{layout}: {exc}") from None
            _agree(run_session(ort_session(model), x, layout), want, f"{via}/{layout}", rounding)


@settings(FAST, max_examples=TRAINED)
@given(networks(max_layers=5, head=True))
def test_random_networks_train_alike(spec: dict[str, Any]) -> None:
    """Two SGD steps with momentum on each backend, dropout off: the same losses and weights."""
    from specnet.data import synthetic
    from specnet.spec import Dropout
    from specnet.train import training_plan

    _record(spec, "trained")
    spec = {**spec, "train": {"optimizer": {"type": "sgd", "learning_rate": 0.05, "momentum": 0.9}}}
    plan = infer(spec_from_dict(spec))
    layers = [
        layer.model_copy(update={"rate": 0.0}) if isinstance(layer, Dropout) else layer
        for layer in plan.spec.layers
    ]
    plan = infer(plan.spec.model_copy(update={"layers": layers}))
    x, y, _ = synthetic(8, plan.input_shape, plan.output_shape[0], "shape", seed=2)
    results = {}
    for backend in ("keras", "torch"):
        # biases and BatchNorm's beta drawn too: with Keras's zeros, a BatchNorm of a constant
        # (a LayerNorm of one channel before it) outputs its beta, 0, then after one step
        # ±1e-10 — the rounding of a gradient summed to nothing, positive in one framework and
        # negative in the other — and a leaky_relu after it takes slope 1 in one and 0.2 in
        # the other: a tie broken by rounding, not a difference in the function
        trainer = get_backend(backend).trainer(
            training_plan(plan), plan.spec.train, busy_weights(plan, seed=3)
        )
        losses = [trainer.step(x[:4], y[:4])[0], trainer.step(x[4:], y[4:])[0]]
        results[backend] = (np.asarray(losses), trainer.weights())
    assume(np.isfinite(results["keras"][0]).all())
    _agree(results["torch"][0], results["keras"][0], "losses")
    for key, value in results["keras"][1].items():
        _agree(results["torch"][1][key], value, key)


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda p: p.stem)
def test_regression(path: Path) -> None:
    """Networks the random campaign found a disagreement on, kept after the fix."""
    check_runtimes(json.loads(path.read_text()))


def test_rounding_is_a_small_part_of_the_tolerance_unless_the_network_amplifies_it() -> None:
    """specnet.rounding (what parity adds to its atol): for the seed network a sliver of the
    fixed atol; for the LayerNormalization of an almost constant vector enough to cover what
    Keras computes there, which the fixed tolerance did not."""
    from specnet import check_parity, load_spec

    plain = logits_plan(infer(load_spec(ROOT / "specs" / "seed_cnn.yaml")))
    x = np.random.default_rng(0).random((4, *plain.input_shape), dtype=np.float32)
    assert rounding(plain, busy_weights(plain, seed=0), x)[1][plain.layers[-1].name] < ATOL / 10
    spec = json.loads(
        (ROOT / "tests/regressions/layer_norm_of_a_near_constant_vector.json").read_text()
    )
    plan, weights, x, keras = _inference(spec, 3, 0)
    exact, slack = _exact(plan, weights, x)
    gap = np.abs(keras - exact) - (ATOL + RTOL * np.abs(exact))
    assert gap.max() > 0  # over the fixed tolerance
    assert gap.max() < slack < 100 * ATOL  # within the measured room, which is not unbounded
    report = check_parity(ROOT / "specs" / "seed_cnn.yaml", ["keras", "onnx"]).to_dict()
    assert 0 < report["tolerance"]["rounding"] < ATOL / 10
