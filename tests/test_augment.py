"""Augmentation: specnet's NumPy pipeline computes what Keras 3's own preprocessing layers
compute wherever their result is fixed by their parameters (a given flip, angle, zoom, shift,
contrast or brightness, under every fill mode and interpolation), draws the same batches on
both backends and after a resume, and never reaches a build or an export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from specnet import infer, loads_spec
from specnet.augment import Augmenter, apply, brightness, contrast, flip
from specnet.shapes import summary_text
from specnet.spec import RandomRotation, RandomTranslation, RandomZoom
from tests.helpers import assert_refused

RNG = np.random.default_rng(3)
IMAGES = RNG.random((3, 7, 9, 2), dtype=np.float32)  # odd, unequal sides: centres are x.5
FILLS = ["reflect", "wrap", "constant", "nearest"]


def _keras() -> Any:
    from specnet._frameworks import keras_module

    return keras_module()


def _theirs(layer: Any) -> np.ndarray:
    return np.asarray(layer(IMAGES, training=True))


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("fill_mode", FILLS)
@pytest.mark.parametrize("turn", [0.1, -0.3, 0.55])
def test_a_rotation_by_a_given_angle_is_kerass(
    fill_mode: str, interpolation: str, turn: float
) -> None:
    fields = {"fill_mode": fill_mode, "interpolation": interpolation, "fill_value": 0.25}
    theirs = _theirs(_keras().layers.RandomRotation(factor=(turn, turn), **fields))
    ours = apply(
        RandomRotation(type="RandomRotation", factor=(turn, turn), **fields),
        IMAGES,
        np.random.default_rng(0),
    )
    _close(ours, theirs, interpolation)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("fill_mode", FILLS)
@pytest.mark.parametrize(("height", "width"), [(0.4, -0.3), (-0.5, 0.25)])
def test_a_given_zoom_is_kerass(
    fill_mode: str, interpolation: str, height: float, width: float
) -> None:
    fields = {"fill_mode": fill_mode, "interpolation": interpolation, "fill_value": 0.5}
    theirs = _theirs(
        _keras().layers.RandomZoom(
            height_factor=(height, height), width_factor=(width, width), **fields
        )
    )
    layer = RandomZoom(
        type="RandomZoom", height_factor=(height, height), width_factor=(width, width), **fields
    )
    _close(apply(layer, IMAGES, np.random.default_rng(0)), theirs, interpolation)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("fill_mode", FILLS)
@pytest.mark.parametrize(("height", "width"), [(0.3, -0.45), (-0.9, 0.7)])
def test_a_given_translation_is_kerass(
    fill_mode: str, interpolation: str, height: float, width: float
) -> None:
    fields = {"fill_mode": fill_mode, "interpolation": interpolation, "fill_value": 0.75}
    theirs = _theirs(
        _keras().layers.RandomTranslation(
            height_factor=(height, height), width_factor=(width, width), **fields
        )
    )
    layer = RandomTranslation(
        type="RandomTranslation",
        height_factor=(height, height),
        width_factor=(width, width),
        **fields,
    )
    _close(apply(layer, IMAGES, np.random.default_rng(0)), theirs, interpolation)


def _close(ours: np.ndarray, theirs: np.ndarray, interpolation: str) -> None:
    """Bilinear: within the float32 rounding of another order of multiply-adds (≤ 5.4e-7
    measured). Nearest: the same pixels, exactly."""
    assert ours.shape == theirs.shape
    assert ours.dtype == np.float32
    if interpolation == "bilinear":
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    else:
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("mode", ["horizontal", "vertical", "horizontal_and_vertical"])
def test_a_given_flip_is_kerass(mode: str) -> None:
    flips = np.array([True, False, True]).reshape(3, 1, 1, 1)
    layer = _keras().layers.RandomFlip(mode=mode)
    theirs = np.asarray(layer.transform_images(IMAGES, {"flips": flips}, training=True))
    assert np.array_equal(flip(IMAGES, flips, mode), theirs)
    assert not np.array_equal(theirs, IMAGES)


def test_a_given_contrast_and_brightness_are_kerass() -> None:
    keras = _keras()
    factors = np.array([0.5, 1.0, 1.7], np.float32).reshape(3, 1, 1, 1)
    layer = keras.layers.RandomContrast(factor=0.9, value_range=(0, 1))
    theirs = np.asarray(layer.transform_images(IMAGES, {"contrast_factor": factors}, training=True))
    np.testing.assert_allclose(contrast(IMAGES, factors, (0, 1)), theirs, rtol=0, atol=2e-7)
    deltas = np.array([-0.3, 0.0, 0.45], np.float32).reshape(3, 1, 1, 1)
    layer = keras.layers.RandomBrightness(factor=0.5, value_range=(0, 1))
    theirs = np.asarray(layer.transform_images(IMAGES, {"rgb_delta": deltas}, training=True))
    assert np.array_equal(brightness(IMAGES, deltas, (0, 1)), theirs)
    # a fixed brightness through the layer itself: factor (b, b) draws b
    fixed = keras.layers.RandomBrightness(factor=(0.2, 0.2), value_range=(0, 1))
    ours = brightness(IMAGES, np.full(3, 0.2, np.float32), (0, 1))
    assert np.array_equal(ours, np.asarray(fixed(IMAGES, training=True)))


SPEC = """
name: augmented
input_shape: [12, 10, 3]
layers:
  - {type: RandomFlip, mode: horizontal}
  - {type: RandomRotation, factor: 0.05, fill_mode: constant}
  - {type: RandomZoom, height_factor: [-0.1, 0.2]}
  - {type: RandomTranslation, height_factor: 0.1, width_factor: 0.1, fill_mode: nearest}
  - {type: RandomContrast, factor: 0.2}
  - {type: RandomBrightness, factor: 0.1, seed: 7}
  - {type: Conv2D, filters: 4, kernel_size: 3, activation: relu}
  - {type: Flatten}
  - {type: Dense, units: 3, activation: softmax}
train: {epochs: 2, batch_size: 16, optimizer: {type: sgd, learning_rate: 0.05}}
data: {source: synthetic, samples: 80}
"""


def test_draws_are_a_function_of_where_the_batch_is() -> None:
    plan = infer(loads_spec(SPEC))
    augment = Augmenter(plan.augmentation, seed=0)
    images = RNG.random((5, 12, 10, 3), dtype=np.float32)
    first = augment(images, epoch=1, step=2)
    assert np.array_equal(first, Augmenter(plan.augmentation, seed=0)(images, 1, 2))
    assert not np.array_equal(first, augment(images, 1, 3))
    assert not np.array_equal(first, Augmenter(plan.augmentation, seed=1)(images, 1, 2))
    assert not np.array_equal(first, images)
    assert first.dtype == np.float32
    assert first.min() >= 0
    assert first.max() <= 1


def test_augmentation_is_shown_but_never_built_or_exported(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    plan = infer(loads_spec(SPEC))
    assert [s.kind for s in plan.augmentation][:2] == ["RandomFlip", "RandomRotation"]
    assert plan.layers[0].inputs == ("input",)  # the network reads the (augmented) input
    assert plan.total_params == infer(loads_spec(_without_augmentation())).total_params
    text = summary_text(plan)
    assert "random_flip (RandomFlip)" in text
    assert text.index("random_flip") < text.index("conv2d")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    assert cli("build", spec, "--backend", "keras", "-o", tmp_path / "b").code == 0
    result = cli("export", tmp_path / "b", "--onnx", "--quiet", "-o", tmp_path / "m.onnx")
    assert result.code == 0, result.err
    import onnx

    ops = {node.op_type for node in onnx.load(tmp_path / "m.onnx").graph.node}
    assert not {"Resize", "GridSample", "RandomUniform", "RandomUniformLike"} & ops


def _without_augmentation() -> str:
    return "\n".join(line for line in SPEC.splitlines() if "Random" not in line)


def test_both_backends_train_on_the_same_augmented_batches(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Every batch either trainer receives, recorded: the same bytes on both backends, not the
    raw images; and the two runs' histories agree."""
    from specnet.backends.keras_train import KerasTrainer
    from specnet.backends.torch_train import TorchTrainer
    from specnet.data import batch_order, load_data
    from specnet.train import train

    seen: dict[str, list[bytes]] = {"keras": [], "torch": []}
    for name, cls in (("keras", KerasTrainer), ("torch", TorchTrainer)):
        real = cls.step

        def record(self, x, y, global_batch=None, sample_weight=None, _real=real, _name=name):  # type: ignore[no-untyped-def]
            seen[_name].append(x.tobytes())
            return _real(self, x, y, global_batch, sample_weight)

        monkeypatch.setattr(cls, "step", record)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    runs = {b: train(spec, b, out=tmp_path / b) for b in ("keras", "torch")}
    assert seen["keras"] == seen["torch"]
    assert len(seen["keras"]) == 2 * 4  # 64 training images, batches of 16, two epochs
    plan = runs["keras"].plan
    data = load_data(plan.spec, 3)
    first = data.x_train[batch_order(len(data.x_train), 0, 0, True)[:16]]
    assert seen["keras"][0] != first.tobytes()  # augmented: not the images as loaded
    assert seen["keras"][0] == Augmenter(plan.augmentation, 0)(first, 0, 0).tobytes()
    assert len(set(seen["keras"])) == len(seen["keras"])
    for key in ("loss", "val_loss", "accuracy"):
        np.testing.assert_allclose(
            runs["torch"].history[key], runs["keras"].history[key], rtol=2e-4, atol=1e-6
        )
    resolved = (tmp_path / "keras" / "spec.resolved.yaml").read_text()
    assert "RandomRotation" in resolved


@pytest.mark.parametrize(
    ("layers", "where", "message"),
    [
        (
            "  - {type: Flatten}\n  - {type: RandomFlip}\n  - {type: Dense, units: 2}\n",
            "5:",
            "RandomFlip comes after Flatten (layers[0]); augmentation layers come first",
        ),
        ("  - {type: RandomFlip}\n", "4:", "the spec has only augmentation layers"),
        (
            "  - {type: RandomRotation, factor: 1.5}\n  - {type: Flatten}\n",
            "4:",
            "layers[0].factor",
        ),
        (
            "  - {type: RandomZoom, height_factor: [-1.0, 0.2]}\n  - {type: Flatten}\n",
            "4:",
            "a zoom factor must be above -1",
        ),
        (
            "  - {type: RandomContrast, factor: -0.2}\n  - {type: Flatten}\n",
            "4:",
            "layers[0].factor",
        ),
        (
            "  - {type: RandomBrightness, factor: 0.2, value_range: [1, 0]}\n  - {type: Flatten}\n",
            "4:",
            "low < high",
        ),
        (
            "  - {type: RandomFlip, mode: diagonal}\n  - {type: Flatten}\n",
            "4:",
            "layers[0].mode",
        ),
        ("  - {type: RandomCrop, height: 4, width: 4}\n  - {type: Flatten}\n", "4:", "RandomCrop"),
        (
            "  - {type: RandomFlip, name: a}\n  - {type: RandomFlip, name: b, inputs: input}\n"
            "  - {type: Add, inputs: [a, b]}\n  - {type: Flatten}\n",
            "5:",
            "augmentation layers read the layer above",
        ),
    ],
)
def test_bad_augmentation_is_one_located_error(
    tmp_path: Path, cli, layers: str, where: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: t\ninput_shape: [8, 8, 1]\nlayers:\n{layers}")
    assert_refused(cli("validate", spec), message, f"{spec}:{where}")


def test_the_json_summary_lists_the_augmentation(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    result = cli("summary", spec, "--json")
    document = json.loads(result.out)
    assert [a["type"] for a in document["augmentation"]][-1] == "RandomBrightness"
    assert document["layers"][0]["inputs"] == ["input"]
