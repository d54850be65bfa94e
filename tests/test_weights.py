"""Canonical weights: initializers drawn as Keras draws them, checks on keys and shapes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from specnet import UsageError, infer, loads_spec
from specnet.spec import INITIALIZERS
from specnet.weights import check_weights, init_weights

SHAPE = (3, 3, 16, 32)  # a conv kernel: fans include the 3×3 receptive field


def _ours(initializer: str) -> np.ndarray:
    spec = (
        "name: t\ninput_shape: [8, 8, 16]\nlayers:\n"
        f"  - {{type: Conv2D, filters: 32, kernel_size: 3, kernel_initializer: {initializer}}}\n"
    )
    return init_weights(infer(loads_spec(spec)), seed=0)["conv2d.kernel"]


@pytest.mark.parametrize("initializer", INITIALIZERS)
def test_initializers_match_keras(initializer: str) -> None:
    import keras

    config = {} if initializer in ("zeros", "ones") else {"seed": 1}
    theirs = np.asarray(
        keras.initializers.get({"class_name": initializer, "config": config})(SHAPE)
    )
    ours = _ours(initializer)
    assert ours.shape == theirs.shape == SHAPE
    assert ours.dtype == np.float32
    if initializer in ("zeros", "ones"):
        assert np.array_equal(ours, theirs)
        return
    # the same distribution: same spread and the same bounds (±limit or ±2σ truncation)
    assert math.isclose(ours.std(), theirs.std(), rel_tol=0.05)
    assert math.isclose(np.abs(ours).max(), np.abs(theirs).max(), rel_tol=0.05)
    assert abs(ours.mean()) < 0.1 * ours.std()


def test_draws_depend_on_seed_and_key_only() -> None:
    base = "name: t\ninput_shape: [8, 8, 1]\nlayers:\n  - {type: Flatten}\n"
    one = infer(loads_spec(base + "  - {type: Dense, units: 4, name: head}\n"))
    two = infer(
        loads_spec(base + "  - {type: Dense, units: 9}\n  - {type: Dense, units: 4, name: head}\n")
    )
    assert np.array_equal(init_weights(one, 5)["head.bias"], init_weights(two, 5)["head.bias"])
    assert not np.array_equal(
        init_weights(one, 5)["head.kernel"], init_weights(one, 6)["head.kernel"]
    )
    assert np.array_equal(init_weights(one, 5)["head.kernel"], init_weights(one, 5)["head.kernel"])


def test_check_weights_names_what_is_wrong() -> None:
    plan = infer(
        loads_spec(
            "name: t\ninput_shape: [4, 4, 1]\nlayers:\n"
            "  - {type: Flatten}\n  - {type: Dense, units: 2}\n"
        )
    )
    weights = init_weights(plan)
    with pytest.raises(UsageError, match=r"missing dense.bias"):
        check_weights(plan, {"dense.kernel": weights["dense.kernel"]})
    with pytest.raises(UsageError, match=r"dense.kernel is \(3, 2\), expected \(16, 2\)"):
        check_weights(plan, {**weights, "dense.kernel": np.zeros((3, 2), np.float32)})
    with pytest.raises(UsageError, match=r"unexpected conv.kernel"):
        check_weights(plan, {**weights, "conv.kernel": np.zeros(1, np.float32)})


def test_safetensors_bytes_depend_on_content_only(tmp_path: Path) -> None:
    """specnet's encoder is read back exactly by the safetensors library, and the same content
    gives the same bytes whatever the order of tensors and metadata keys (the library writes
    metadata in hash order, which made two identical builds differ)."""
    from safetensors import safe_open

    from specnet.weights import encode_safetensors

    rng = np.random.default_rng(0)
    tensors = {
        "dense.kernel": rng.random((5, 3), dtype=np.float32),
        "dense.bias": np.zeros(3, np.float32),
        "rng": np.arange(9, dtype=np.uint8),
        "step": np.array(7, np.int64),  # 0-d, as optimizer iteration counters are
        "flags": np.array([True, False]),
        "empty": np.zeros((0, 4), np.float16),
    }
    metadata = {"spec": "t", "origin": "initializers, seed 2", "specnet": "0.1.0"}
    data = encode_safetensors(tensors, metadata)
    shuffled = dict(reversed(list(tensors.items())))
    assert encode_safetensors(shuffled, dict(reversed(list(metadata.items())))) == data
    (tmp_path / "w.safetensors").write_bytes(data)
    with safe_open(tmp_path / "w.safetensors", framework="np") as f:
        assert f.metadata() == metadata
        assert sorted(f.keys()) == sorted(tensors)
        for key, value in tensors.items():
            got = f.get_tensor(key)
            assert got.dtype == value.dtype
            assert np.array_equal(got, value)


def test_recorded_class_orders_are_read_and_checked(tmp_path: Path) -> None:
    from specnet.weights import (
        check_classes,
        encode_safetensors,
        read_metadata,
        weights_classes,
    )

    path = tmp_path / "w.safetensors"
    path.write_bytes(encode_safetensors({"a": np.zeros(2, np.float32)},
                                        {"class_names": '["red", "blue"]', "x": "1"}))  # fmt: skip
    assert read_metadata(path) == {"class_names": '["red", "blue"]', "x": "1"}
    assert weights_classes(path) == ["red", "blue"]
    assert check_classes(path, ["red", "blue"]) == ["red", "blue"]
    assert check_classes(path, None) == ["red", "blue"]  # a spec without names adopts them
    with pytest.raises(UsageError, match=r"trained for classes \['red', 'blue'\], but the spec "
                       r"names \['blue', 'red'\]; the same classes in another order"):  # fmt: skip
        check_classes(path, ["blue", "red"])
    with pytest.raises(UsageError, match="were they trained for another spec"):
        check_classes(path, ["cat", "dog"])
    bare = tmp_path / "bare.safetensors"
    bare.write_bytes(encode_safetensors({"a": np.zeros(2, np.float32)}))
    assert read_metadata(bare) == {}
    assert weights_classes(bare) is None
    assert check_classes(bare, ["cat"]) is None  # nothing recorded: nothing to refuse
    odd = tmp_path / "odd.safetensors"
    odd.write_bytes(
        encode_safetensors({"a": np.zeros(1, np.float32)}, {"class_names": "{not json"})
    )
    assert weights_classes(odd) is None
    (tmp_path / "short").write_bytes(b"\x01")
    assert read_metadata(tmp_path / "short") == {}
    assert read_metadata(tmp_path / "missing") == {}
