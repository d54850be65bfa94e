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
    x = np.random.default_rng(0).integers(0, 256, size=(40, 12, 10, 3), dtype=np.uint8)
    y = np.eye(3)[np.arange(40) % 3]  # one-hot
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x[:5], y_test=np.arange(5) % 3)
    data = load_data(_spec(), 3, NpzData(source="npz", path=str(tmp_path / "d.npz")))
    assert data.x_train.shape == (30, 12, 10, 3)
    assert np.allclose(data.x_train[0], x[0] / 255)
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
        ({"x": np.full((4, 12, 10, 3), -np.inf), "y": np.zeros(4, int)}, "NaN or infinite"),
        ({"x": np.zeros((4, 12, 10, 3)), "y": np.zeros(5, int)}, "expected \\(4,\\) class indices"),
        ({"x": np.zeros((4, 12, 10, 3)), "y": np.array([0.5, 1, 0, 1])}, "integer class indices"),
        ({"x": np.array([{"a": 1}] * 4, dtype=object), "y": np.zeros(4, int)}, "not a readable"),
        ({"x": np.zeros((4, 12, 10, 3)), "y": np.array([0, 1, -1, 0])}, "indices from 0; found -1"),
        ({"x": np.zeros((4, 12, 10, 3)), "y": np.array([0, np.nan, 1, 0])}, "NaN or infinite lab"),
        ({"x": np.zeros((4, 12, 10, 3)), "y": np.array(["a"] * 4)}, "integer class indices"),
        ({"x": np.zeros((4, 12, 10, 3), bool), "y": np.zeros(4, int)}, "dtype bool; expected num"),
        ({"x": np.array(["a"] * 4), "y": np.zeros(4, int)}, "dtype <U1; expected numbers"),
        ({"x": np.zeros((4, 12, 10, 3), complex), "y": np.zeros(4, int)}, "expected numbers"),
        ({"x": np.zeros((4, 12, 10, 3, 1)), "y": np.zeros(4, int)}, "expected \\(N, H, W"),
        ({"x": np.zeros((4, 0, 10, 3)), "y": np.zeros(4, int)}, "expected \\(N, H, W"),
        ({"x": np.zeros((4, 12, 10, 2)), "y": np.zeros(4, int)}, "2 channel.*input_shape .* has 3"),
        ({"x": np.zeros((1, 12, 10, 3)), "y": np.zeros(1, int)}, "no training samples left"),
        (
            {"x": np.zeros((4, 12, 10, 3)), "y": np.zeros(4, int), "x_test": np.zeros((2, 12, 10))},
            r"missing array\(s\) \['y_test'\]",
        ),
    ],
)
def test_bad_npz(arrays: dict[str, np.ndarray], message: str, tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=message):
        load_data(_spec(), 3, NpzData(source="npz", path=str(tmp_path / "bad.npz")))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b"", "not a readable .npz file \\(No data left in file\\)"),
        (lambda b: b[: len(b) // 3], "not a readable .npz file \\(File is not a zip file\\)"),
        (lambda b: b"PK\x03\x04" + b"x" * 100, "not a readable .npz file"),
        (lambda b: b[: len(b) // 2] + bytes(64) + b[len(b) // 2 + 64 :], "array 'x': Bad CRC-32"),
    ],
    ids=["zero_bytes", "truncated", "not_a_zip", "corrupt_member"],
)
def test_damaged_npz_files(damage, message: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "d.npz"
    x = np.random.default_rng(0).random((8, 12, 10, 3)).astype(np.float32)
    np.savez_compressed(path, x=x, y=np.arange(8) % 3)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UsageError, match=message):
        load_data(_spec(), 3, NpzData(source="npz", path=str(path)))


def test_bad_data_is_exit_2_naming_the_file(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    np.savez(tmp_path / "d.npz", x=np.full((8, 12, 10, 3), np.nan), y=np.arange(8) % 3)
    (tmp_path / "s.yaml").write_text(SPEC + "data: {source: npz, path: d.npz}\n")
    result = cli("train", tmp_path / "s.yaml", "--backend", "torch", "--out", tmp_path / "run")
    assert result.code == 2
    assert result.err.strip().endswith(
        f"{tmp_path / 'd.npz'}[x]: x contains NaN or infinite values"
    )
    assert "Traceback" not in result.err
    assert not (tmp_path / "run").exists()  # nothing written for a run that cannot start


def _folder(root: Path, counts: dict[str, int]) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def _other_classes(root: Path) -> None:
    """Two more good class folders, so a 3-output spec accepts the folder's class count."""
    _folder(root, {"zz_b": 1, "zz_c": 1})


def test_image_folder(tmp_path: Path) -> None:
    _folder(tmp_path / "imgs", {"zebra": 4, "apple": 4, "mango": 4})
    data = load_data(_spec(), 3, FolderData(source="folder", path=str(tmp_path / "imgs")))
    assert data.class_names == ["apple", "mango", "zebra"]  # sorted, as Keras reads folders
    assert data.x_train.shape == (9, 12, 10, 3)
    assert len(data.x_val) == 3


def _image(path: Path, pixels: np.ndarray, mode: str | None = None) -> None:
    from PIL import Image

    Image.fromarray(pixels, mode=mode).save(path)


def test_image_modes_beyond_8_bit_rgb(tmp_path: Path) -> None:
    """Each mode Pillow opens, scaled to [0, 1] without clipping: 16-bit grey is not squeezed
    into 8 bits (Pillow's convert("L") would make every value above 255 white)."""
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    grey16 = np.arange(120, dtype=np.uint16).reshape(12, 10) * 500
    _image(root / "a" / "grey16.png", grey16)
    _image(root / "a" / "float.tiff", (grey16 / 65535.0).astype(np.float32))
    rgba = np.zeros((12, 10, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 7  # alpha is dropped, as Keras's load_img does
    _image(root / "a" / "rgba.png", rgba)
    _image(root / "a" / "bits.png", np.eye(12, 10, dtype=bool))
    _other_classes(root)
    from PIL import Image

    Image.fromarray(np.full((12, 10, 3), 40, np.uint8)).convert(
        "P", palette=Image.Palette.ADAPTIVE
    ).save(root / "a" / "pal.gif")
    data = load_data(_spec(), 3, FolderData(source="folder", path=str(root)))
    x = np.concatenate([data.x_train, data.x_val])
    x = x[np.concatenate([data.y_train, data.y_val]) == data.class_names.index("a")]
    by_max = sorted(x.reshape(len(x), -1).max(1).round(4))
    want = sorted([round(59500 / 65535, 4)] * 2 + [round(200 / 255, 4), 1.0, round(40 / 255, 4)])
    assert by_max == pytest.approx(want, abs=2e-3)
    rgba_image = next(s for s in x if np.isclose(s.max(), 200 / 255))
    assert np.allclose(rgba_image[..., 1:], 0)  # red only: alpha did not leak into G or B


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (np.full((6, 6), 3.5, np.float32), "mode F has values from 3.5 to 3.5; floating-point"),
        (np.full((6, 6), np.nan, np.float32), "holds NaN or infinite values"),
        (np.full((6, 6), 1 << 20, np.int32), "integer pixels must lie in 0‥65535"),
    ],
)
def test_deep_images_out_of_range(pixels: np.ndarray, message: str, tmp_path: Path) -> None:
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    _image(tmp_path / "imgs" / "a" / "x.tiff", pixels)
    _other_classes(tmp_path / "imgs")
    with pytest.raises(UsageError, match=f"x.tiff: .*{message}"):
        load_data(_spec(), 3, FolderData(source="folder", path=str(tmp_path / "imgs")))


@pytest.mark.parametrize("case", ["empty", "no_classes", "corrupt", "zero_bytes", "truncated"])
def test_bad_image_folder(case: str, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    if case == "no_classes":
        root.mkdir()
        message = "no class folders"
    elif case == "empty":
        (root / "a").mkdir(parents=True)
        _other_classes(root)
        message = "no images"
    else:
        _folder(root, {"a": 2})
        _other_classes(root)
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
