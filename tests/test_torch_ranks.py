"""The distributed paths of the PyTorch trainer, run in this process.

``tests/test_distributed.py`` runs real multi-process trainings (two gloo ranks against one
process), but what a child process runs is invisible to coverage and to the mutation campaign,
which picks its tests from what each test reaches in its own process. These tests join a
one-rank gloo group *here*, so the rank-aware code (the DistributedDataParallel wrapper, the
all-reduce of loss and hits, the per-rank RNG keys of a checkpoint) runs where it can be
checked; the reference is the same trainer outside any group, which a one-rank group must equal
step for step.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from specnet.backends import get_backend
from specnet.errors import RuntimeFailure
from specnet.shapes import infer
from specnet.spec import spec_from_dict
from specnet.train import training_plan
from specnet.weights import init_weights

torch = pytest.importorskip("torch")
dist = torch.distributed

SPEC = {
    "name": "ranks",
    "input_shape": [6, 6, 3],
    "layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "Dropout", "rate": 0.5},
        {"type": "Flatten"},
        {"type": "Dense", "units": 3, "activation": "softmax"},
    ],
    "train": {"optimizer": {"type": "adam", "learning_rate": 0.01}, "seed": 3},
}


@pytest.fixture
def group(tmp_path: Path) -> Iterator[None]:
    """A one-rank gloo process group for this test only."""
    dist.init_process_group(
        "gloo", init_method=(tmp_path / "rendezvous").as_uri(), rank=0, world_size=1
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def _trainer() -> Any:
    plan = training_plan(infer(spec_from_dict(SPEC)))
    return get_backend("torch").trainer(plan, plan.spec.train, init_weights(plan, seed=5))


def _batches() -> list[tuple[Any, Any]]:
    rng = np.random.default_rng(0)
    x = rng.random((24, 6, 6, 3), dtype=np.float32)
    y = rng.integers(0, 3, 24).astype(np.int64)
    # batches of 6: a mean times 6 is not always a float32 (a sum kept in float32 would round)
    return [(x[i : i + 6], y[i : i + 6]) for i in range(0, 24, 6)]


def _run(trainer: Any) -> list[tuple[float, int]]:
    return [trainer.step(x, y) for x, y in _batches()]


def test_a_one_rank_group_trains_exactly_as_one_process(group: None) -> None:
    ranked = _trainer()
    assert ranked.distributed
    # gradients are averaged over ranks by the DDP wrapper, which the forward goes through
    assert isinstance(ranked.forward, torch.nn.parallel.DistributedDataParallel)
    assert ranked.forward.module is ranked.model
    steps = _run(ranked)
    dist.destroy_process_group()
    try:
        alone = _trainer()
        assert not alone.distributed
        assert alone.forward is alone.model
        reference = _run(alone)
    finally:
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    for (loss, hits), (want_loss, want_hits) in zip(steps, reference, strict=True):
        assert loss == pytest.approx(want_loss, rel=1e-12)
        assert hits == want_hits
    assert 0 < sum(h for _, h in steps) < 24  # counts, not a constant
    for loss, _ in steps:  # the loss summed and divided again in float64, not rounded
        assert loss == float(np.float32(loss))
    for key, value in alone.weights().items():
        np.testing.assert_array_equal(ranked.weights()[key], value, err_msg=key)


def test_a_rank_reports_the_global_batch_mean(group: None) -> None:
    """A rank's loss is summed over the group (in float64) and divided by the *global* batch:
    with one rank holding 6 of a 12-sample batch, the reported mean is half the rank's own."""
    for x, y in _batches():
        own = _trainer()
        loss, hits = own.step(x, y)
        shared = _trainer()
        half, same_hits = shared.step(x, y, global_batch=12)
        assert half == loss * 6 / 12  # exact: the float64 sum of a float32 mean
        assert same_hits == hits
        assert isinstance(same_hits, int)
        assert isinstance(half, float)


def test_a_ranked_checkpoint_keeps_each_ranks_generator_and_resumes(group: None) -> None:
    batches = _batches()
    first = _trainer()
    first.step(*batches[0])
    state = first.state()
    assert "rng/torch/0" in state
    assert "rng/torch" not in state
    np.testing.assert_array_equal(state["rng/torch/0"], torch.get_rng_state().numpy())
    later = [first.step(*b) for b in batches[1:]]
    resumed = _trainer()
    torch.manual_seed(99)  # a different generator, which the checkpoint must replace
    resumed.load_state(state)
    assert [resumed.step(*b) for b in batches[1:]] == later  # same dropout masks, same steps
    for key, value in first.weights().items():
        np.testing.assert_array_equal(resumed.weights()[key], value, err_msg=key)


def test_a_checkpoint_without_this_ranks_generator_is_refused(group: None) -> None:
    trainer = _trainer()
    trainer.step(*_batches()[0])
    state = {k: v for k, v in trainer.state().items() if not k.startswith("rng/")}
    state["rng/torch/1"] = torch.get_rng_state().numpy()  # another rank's only
    with pytest.raises(RuntimeFailure) as refused:
        _trainer().load_state(state)
    assert str(refused.value) == "the checkpoint holds no RNG state for rank 0"


def test_a_single_process_checkpoint_resumes_on_one_rank(group: None) -> None:
    """A run checkpointed alone (key ``rng/torch``) resumes under a group of one."""
    trainer = _trainer()
    trainer.step(*_batches()[0])
    state = {k: v for k, v in trainer.state().items() if k != "rng/torch/0"}
    state["rng/torch"] = torch.get_rng_state().numpy()
    expected = trainer.step(*_batches()[1])
    resumed = _trainer()
    resumed.load_state(state)
    assert resumed.step(*_batches()[1]) == expected


def test_a_steps_correct_count_is_the_argmax_of_its_logits() -> None:
    """The hits a step reports are those of the logits it trained on (no dropout here, so the
    weights before the step give them), counted independently with NumPy."""
    spec = {**SPEC, "layers": [layer for layer in SPEC["layers"] if layer["type"] != "Dropout"]}
    plan = training_plan(infer(spec_from_dict(spec)))
    trainer = get_backend("torch").trainer(plan, plan.spec.train, init_weights(plan, seed=5))
    counts = []
    for x, y in _batches():
        logits = np.asarray(trainer.logits(x))
        want = int((logits.argmax(axis=1) == y).sum())
        _, hits = trainer.step(x, y)
        assert hits == want
        counts.append(hits)
    assert len(set(counts)) > 1 or 0 < counts[0] < 6  # not a constant


def test_a_binary_logit_of_exactly_zero_is_a_no_as_keras_counts_it() -> None:
    """Keras's binary accuracy says yes when p > 0.5: a logit of exactly 0 (p = 0.5, here from
    zero weights) is a no on both backends."""
    spec = {
        "name": "binary", "input_shape": [2, 2, 1], "class_names": ["no", "yes"],
        "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 1, "activation": "sigmoid"}],
        "train": {"loss": "binary_crossentropy", "optimizer": {"type": "sgd"}},
    }  # fmt: skip
    plan = training_plan(infer(spec_from_dict(spec)))
    zeros = {key: np.zeros_like(value) for key, value in init_weights(plan).items()}
    x = np.random.default_rng(1).random((8, 2, 2, 1), dtype=np.float32)
    y = np.array([0, 1, 1, 0, 1, 1, 1, 0], np.int64)
    counts = {}
    for backend in ("keras", "torch"):
        trainer = get_backend(backend).trainer(plan, plan.spec.train, dict(zeros))
        counts[backend] = int(trainer.step(x, y)[1])
    assert counts == {"keras": 3, "torch": 3}  # the three zeros


def test_the_device_is_cuda_when_asked_for_or_seen() -> None:
    from specnet.backends.torch_train import device_for

    assert device_for("auto", True) == "cuda"
    assert device_for("auto", False) == "cpu"
    assert device_for("cuda", True) == "cuda"
    assert device_for("cpu", True) == "cpu"
    assert device_for("cpu", False) == "cpu"
    with pytest.raises(RuntimeFailure) as refused:
        device_for("cuda", False)
    assert str(refused.value) == "--device cuda: PyTorch sees no CUDA device here"


def test_compile_wraps_the_forward_around_the_model() -> None:
    """``--compile`` trains through ``torch.compile`` of the model (compiled at the first step,
    measured in benchmarks/README.md); the model itself stays the one saved."""
    from specnet.backends import TrainOptions

    plan = training_plan(infer(spec_from_dict(SPEC)))
    trainer = get_backend("torch").trainer(
        plan, plan.spec.train, init_weights(plan, seed=5), TrainOptions(compile=True)
    )
    assert isinstance(trainer.forward, torch._dynamo.eval_frame.OptimizedModule)
    assert trainer.forward._orig_mod is trainer.model
