"""Canonical weights: initializers drawn as Keras draws them, checks on keys and shapes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from specnet import UsageError, infer, loads_spec
from specnet.spec import INITIALIZERS
from specnet.weights import check_weights, init_weights

SHAPES = [
    (3, 3, 16, 32),
    (512, 100),
]  # a conv kernel (the 3×3 receptive field is in its fans), a Dense


def _ours(initializer: str, shape: tuple[int, ...]) -> np.ndarray:
    if len(shape) == 4:
        layer = f"{{type: Conv2D, filters: 32, kernel_size: 3, kernel_initializer: {initializer}}}"
        spec = f"name: t\ninput_shape: [8, 8, 16]\nlayers:\n  - {layer}\n"
        return init_weights(infer(loads_spec(spec)), seed=0)["conv2d.kernel"]
    layer = f"{{type: Dense, units: 100, kernel_initializer: {initializer}}}"
    spec = f"name: t\ninput_shape: [8, 8, 8]\nlayers:\n  - {{type: Flatten}}\n  - {layer}\n"
    return init_weights(infer(loads_spec(spec)), seed=0)["dense.kernel"]


@pytest.mark.parametrize("shape", SHAPES, ids=["conv", "dense"])
@pytest.mark.parametrize("initializer", INITIALIZERS)
def test_initializers_match_keras(initializer: str, shape: tuple[int, ...]) -> None:
    import keras

    config = {} if initializer in ("zeros", "ones") else {"seed": 1}
    theirs = np.asarray(
        keras.initializers.get({"class_name": initializer, "config": config})(shape)
    )
    ours = _ours(initializer, shape)
    assert ours.shape == theirs.shape == shape
    assert ours.dtype == np.float32
    if initializer in ("zeros", "ones"):
        assert np.array_equal(ours, theirs)
        return
    # the same distribution: same spread and the same bounds (±limit or ±2σ truncation)
    assert math.isclose(ours.std(), theirs.std(), rel_tol=0.05)
    assert math.isclose(np.abs(ours).max(), np.abs(theirs).max(), rel_tol=0.05)
    assert abs(ours.mean()) < 0.1 * ours.std()


def test_a_fan_below_one_counts_as_one() -> None:
    """Keras divides the scale by max(1, fan): a 1×1 Dense's glorot_uniform limit is √3 (fan 1),
    and its he_normal draws spread with σ = √2 / 0.8796 and stop at 2σ."""
    from specnet.weights import draw

    uniform = [draw("glorot_uniform", np.random.default_rng(i), (1, 1))[0, 0] for i in range(300)]
    assert 1.6 < max(np.abs(uniform)) <= math.sqrt(3)
    normal = draw("he_normal", np.random.default_rng(0), (1, 100_000))  # fan_in 1
    sigma = math.sqrt(2) / 0.87962566103423978
    assert math.isclose(np.abs(normal).max(), 2 * sigma, rel_tol=1e-3)
    assert not (np.abs(normal) > 2 * sigma).any()


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
    assert np.array_equal(init_weights(one)["head.kernel"], init_weights(one, 0)["head.kernel"])


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
    everything = {"dense.kernel": np.zeros((3, 2)), "a.kernel": np.zeros(1), "b.bias": np.zeros(1)}
    with pytest.raises(UsageError) as info:
        check_weights(plan, everything)
    assert str(info.value) == (
        "weights do not fit spec 't': missing dense.bias; unexpected a.kernel, b.bias; "
        "dense.kernel is (3, 2), expected (16, 2) (were they saved from another spec?)"
    )
    two = infer(loads_spec("name: u\ninput_shape: [2, 2, 1]\nlayers:\n  - {type: Conv2D, "
                           "filters: 1, kernel_size: 1}\n  - {type: Flatten}\n"))  # fmt: skip
    with pytest.raises(UsageError, match=r"missing conv2d.kernel, conv2d.bias \(were"):
        check_weights(two, {}, "w.safetensors")
    # what comes back is float32 and C-ordered, whatever came in
    given = {"dense.kernel": np.asfortranarray(np.ones((16, 2))), "dense.bias": np.ones(2, ">f8")}
    for key, value in check_weights(plan, given).items():
        assert value.dtype == np.float32, key
        assert value.flags.c_contiguous, key
        assert np.array_equal(value, given[key])


def test_weights_files_are_named_in_every_refusal(tmp_path: Path) -> None:
    from specnet.weights import load_weights, save_weights

    plan = infer(loads_spec("name: t\ninput_shape: [4, 4, 1]\nlayers:\n  - {type: Flatten}\n"
                            "  - {type: Dense, units: 2}\n"))  # fmt: skip
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(UsageError) as info:
        load_weights(missing, plan)
    assert str(info.value) == f"{missing}: no such weights file"
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    with pytest.raises(UsageError) as info:
        load_weights(junk, plan)
    assert str(info.value).startswith(f"{junk}: not a safetensors weights file (")
    other = tmp_path / "other.safetensors"
    save_weights(other, {"x.kernel": np.zeros(1, np.float32)}, overwrite=False)
    assert set(load_weights(other)) == {"x.kernel"}  # no plan: read as it is
    with pytest.raises(UsageError, match=f"^{other}: do not fit spec 't'|^{other} do not fit"):
        load_weights(other, plan)
    # save_weights: refuses to replace unless asked, and keeps the metadata it is given
    with pytest.raises(UsageError):
        save_weights(other, init_weights(plan), overwrite=False)
    save_weights(other, init_weights(plan), overwrite=True, metadata={"class_names": '["a"]'})
    assert set(load_weights(other, plan)) == {"dense.kernel", "dense.bias"}
    from specnet.weights import read_metadata

    assert read_metadata(other) == {"class_names": '["a"]'}


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
    with pytest.raises(UsageError) as info:
        check_classes(path, ["blue", "red"])
    assert str(info.value).endswith(
        "; the same classes in another order would swap predictions: write class_names in the "
        "weights' order"
    )
    with pytest.raises(UsageError) as info:
        check_classes(path, ["cat", "dog"])
    assert str(info.value) == (
        f"{path}: these weights were trained for classes ['red', 'blue'], but the spec names "
        "['cat', 'dog']; were they trained for another spec?"
    )
    listed = tmp_path / "listed.safetensors"
    listed.write_bytes(b"\x03\x00\x00\x00\x00\x00\x00\x00[1]")  # a header that is no mapping
    assert read_metadata(listed) == {}
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


def test_safetensors_bytes_are_the_librarys_own(tmp_path: Path) -> None:
    """For one metadata key (the library writes several in hash order), the bytes are exactly
    those ``safetensors.numpy.save`` writes: non-ASCII names in UTF-8, the header padded the
    same way, the data little-endian and C-ordered whatever the array's layout."""
    from safetensors.numpy import save

    from specnet.weights import encode_safetensors

    tensors = {
        "dense.kernel": np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),
        "café.bias": np.arange(3, dtype=">f4"),
        "steps": np.array(7, np.float32),  # one dtype: the library orders by dtype, then name
    }
    metadata = {"class_names": '["café", "thé"]'}
    native = {k: v.astype(v.dtype.newbyteorder("="), order="C") for k, v in tensors.items()}
    assert encode_safetensors(tensors, metadata) == save(native, metadata=metadata)
    with pytest.raises(TypeError) as info:
        encode_safetensors({"z": np.zeros(2, np.complex64)})
    assert str(info.value) == "z: safetensors has no dtype complex64"
