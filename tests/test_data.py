"""Data sources: the built-in set, .npz files, image folders, digits; splits and bad data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from specnet import UsageError, load_spec, loads_spec
from specnet.data import batch_order, load_data, synthetic
from specnet.spec import FolderData, NpzData
from tests.conftest import ROOT

SPEC = """\
name: t
input_shape: [12, 10, 3]
layers: [{type: Flatten}, {type: Dense, units: 3, activation: softmax}]
train: {validation_split: 0.25}
"""


def _spec(extra: str = "") -> object:
    return loads_spec(SPEC + extra)


def test_synthetic_is_seeded_scaled_and_balanced() -> None:
    x, y, names = synthetic(600, (16, 20, 3), 4, "shape", seed=3)
    assert x.shape == (600, 16, 20, 3)
    assert x.dtype == np.float32
    assert 0.0 <= x.min() <= x.max() <= 1.0
    assert names == ["circle", "square", "triangle", "cross"]
    assert np.bincount(y).min() > 100
    again, _, _ = synthetic(600, (16, 20, 3), 4, "shape", seed=3)
    assert np.array_equal(x, again)
    other, _, _ = synthetic(600, (16, 20, 3), 4, "shape", seed=4)
    assert not np.array_equal(x, other)
    grey, _, _ = synthetic(10, (8, 8, 1), 2, "colour", seed=0)
    assert grey.shape == (10, 8, 8, 1)


def test_a_linear_model_does_not_solve_the_shapes() -> None:
    from sklearn.linear_model import LogisticRegression

    x, y, _ = synthetic(1500, (32, 32, 3), 3, "shape", seed=0)
    flat = x.reshape(len(x), -1)
    model = LogisticRegression(max_iter=300).fit(flat[:1200], y[:1200])
    assert model.score(flat[1200:], y[1200:]) < 0.8


def test_validation_split_is_keras_last_fraction() -> None:
    data = load_data(_spec(), classes=3)
    x, y, _ = synthetic(1200, (12, 10, 3), 3, "shape", seed=0)
    assert len(data.x_train) == 900
    assert len(data.x_val) == 300
    assert np.array_equal(data.x_val, x[900:])
    assert np.array_equal(data.y_train, y[:900])


def test_batch_order_depends_on_seed_and_epoch_only() -> None:
    a, b = batch_order(50, seed=1, epoch=0), batch_order(50, seed=1, epoch=1)
    assert sorted(a) == list(range(50))
    assert not np.array_equal(a, b)
    assert np.array_equal(a, batch_order(50, seed=1, epoch=0))
    assert np.array_equal(batch_order(5, 1, 0, shuffle=False), np.arange(5))


def test_npz(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, size=(40, 12, 10), dtype=np.uint8)
    y = np.eye(3)[np.arange(40) % 3]  # one-hot
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x[:5], y_test=np.arange(5) % 3)
    data = load_data(_spec(), 3, NpzData(source="npz", path=str(tmp_path / "d.npz")))
    assert data.x_train.shape == (30, 12, 10, 3)  # grey → 3 channels
    assert np.allclose(data.x_train[0, ..., 0], x[0] / 255)
    assert list(data.y_train[:4]) == [0, 1, 2, 0]
    assert data.x_test is not None
    assert len(data.x_test) == 5


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((4, 12, 10, 3))}, r"missing array\(s\) \['y'\]"),
        ({"x": np.zeros((4, 12)), "y": np.zeros(4, int)}, "expected \\(N, H, W\\[, C\\]\\)"),
        ({"x": np.zeros((4, 12, 10, 3)), "y": np.array([0, 1, 2, 7])}, "labels run from 0 to 7"),
        ({"x": np.full((4, 12, 10, 3), np.nan), "y": np.zeros(4, int)}, "NaN or infinite"),
        ({"x": np.zeros((4, 12, 10, 3)), "y": np.zeros(5, int)}, "expected \\(4,\\) class indices"),
        ({"x": np.zeros((4, 12, 10, 3)), "y": np.array([0.5, 1, 0, 1])}, "integer class indices"),
        ({"x": np.array([{"a": 1}] * 4, dtype=object), "y": np.zeros(4, int)}, "not a readable"),
    ],
)
def test_bad_npz(arrays: dict[str, np.ndarray], message: str, tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=message):
        load_data(_spec(), 3, NpzData(source="npz", path=str(tmp_path / "bad.npz")))


def _folder(root: Path, counts: dict[str, int]) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_image_folder(tmp_path: Path) -> None:
    _folder(tmp_path / "imgs", {"zebra": 4, "apple": 4, "mango": 4})
    data = load_data(_spec(), 3, FolderData(source="folder", path=str(tmp_path / "imgs")))
    assert data.class_names == ["apple", "mango", "zebra"]  # sorted, as Keras reads folders
    assert data.x_train.shape == (9, 12, 10, 3)
    assert len(data.x_val) == 3


@pytest.mark.parametrize("case", ["empty", "no_classes", "corrupt", "zero_bytes", "truncated"])
def test_bad_image_folder(case: str, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    if case == "no_classes":
        root.mkdir()
        message = "no class folders"
    elif case == "empty":
        (root / "a").mkdir(parents=True)
        message = "no images"
    else:
        _folder(root, {"a": 2})
        bad = root / "a" / "bad.png"
        good = (root / "a" / "0.png").read_bytes()
        bad.write_bytes(
            {"corrupt": b"not a png at all", "zero_bytes": b"", "truncated": good[:60]}[case]
        )
        message = "bad.png: cannot read this image"
    with pytest.raises(UsageError, match=message):
        load_data(_spec(), 3, FolderData(source="folder", path=str(root)))


def test_digits_fitted_to_the_input_shape() -> None:
    data = load_data(load_spec(ROOT / "specs" / "keras" / "mnist_convnet.yaml"), 10)
    assert data.x_train.shape[1:] == (28, 28, 1)
    assert data.x_test is not None
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 1797
    assert 0.0 <= data.x_train.min() <= data.x_train.max() <= 1.0001
