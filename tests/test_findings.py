"""Wrong answers found by trying specnet as users would (issue "Wrong answers found…"): one test
per finding, each failing on the code that had it. References are independent of specnet: the
arrays a test writes, the files it puts in a folder, a strict JSON parser, the images' pixels.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from specnet import UsageError, loads_spec
from specnet.data import load_data, synthetic, synthetic_classes
from specnet.spec import FolderData, NpzData
from tests.conftest import ROOT

SMALL = """\
name: small
input_shape: [8, 8, 3]
layers:
  - {type: Conv2D, filters: 4, kernel_size: 3, activation: relu}
  - {type: Flatten}
  - {type: Dense, units: 3, activation: softmax}
train: {optimizer: {type: adam, learning_rate: 0.01}, epochs: 2, batch_size: 8,
        validation_split: 0.25}
"""


def _write(tmp_path: Path, text: str = SMALL, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _strict(text: str) -> object:
    """Parse JSON as a strict parser would: NaN, Infinity are not JSON."""

    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _npz(path: Path, **arrays: np.ndarray) -> NpzData:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return NpzData(source="npz", path=str(path))


# 1 ---------------------------------------------------------------- labels of shape (N, 1)


def test_labels_of_shape_n_1_are_class_indices_not_one_hot(tmp_path: Path) -> None:
    y = (np.arange(40) % 3).reshape(40, 1)  # as keras.datasets.cifar10 stores them
    x = np.zeros((40, 8, 8, 3), np.uint8)
    data = load_data(loads_spec(SMALL), 3, _npz(tmp_path / "d.npz", x=x, y=y))
    assert np.array_equal(np.concatenate([data.y_train, data.y_val]), y[:, 0])
    one_hot = np.eye(3, dtype=np.float32)[np.arange(40) % 3]
    data = load_data(loads_spec(SMALL), 3, _npz(tmp_path / "h.npz", x=x, y=one_hot))
    assert np.array_equal(np.concatenate([data.y_train, data.y_val]), np.arange(40) % 3)
    for bad in (
        np.full((40, 3), 0.5),
        np.ones((40, 3)),
        np.eye(4)[np.arange(40) % 4],
        np.zeros((40, 2)),
    ):
        with pytest.raises(UsageError, match=r"one-hot rows \(40, 3\) of 0/1 with a single 1"):
            load_data(loads_spec(SMALL), 3, _npz(tmp_path / "b.npz", x=x, y=bad))


# 2 ---------------------------------------------------------------- pixels that are not uint8


@pytest.mark.parametrize(
    ("pixels", "divisor"),
    [
        (np.arange(256, dtype=np.int64), 255.0),  # int64 images in 0‥255 (np.array of ints)
        (np.arange(0, 65536, 257, dtype=np.uint16), 65535.0),
        (np.arange(0, 60000, 235, dtype=np.int32), 65535.0),
    ],
)
def test_integer_pixels_are_scaled_by_their_range(
    pixels: np.ndarray, divisor: float, tmp_path: Path
) -> None:
    x = np.resize(pixels, (32, 8, 8, 3)).astype(pixels.dtype)
    data = load_data(loads_spec(SMALL), 3, _npz(tmp_path / "d.npz", x=x, y=np.arange(32) % 3))
    got = np.concatenate([data.x_train, data.x_val])
    np.testing.assert_allclose(got, x / divisor, rtol=1e-6)
    assert any("divided by" in note for note in data.notes)  # and it says so


def test_floats_outside_0_1_are_refused_unless_their_range_is_given(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    x = np.random.default_rng(0).uniform(0, 255, size=(32, 8, 8, 3)).astype(np.float32)
    source = _npz(tmp_path / "d.npz", x=x, y=np.arange(32) % 3)
    with pytest.raises(UsageError, match=r"outside \[0, 1\].*--pixel-range"):
        load_data(loads_spec(SMALL), 3, source)
    ranged = source.model_copy(update={"pixel_range": (0.0, 255.0)})
    data = load_data(loads_spec(SMALL), 3, ranged)
    np.testing.assert_allclose(np.concatenate([data.x_train, data.x_val]), x / 255, rtol=1e-6)
    spec = _write(tmp_path)
    run = tmp_path / "run"
    trained = cli("train", spec, "--backend", "torch", "--data", tmp_path / "d.npz",
                  "--pixel-range", "0,255", "-o", run, "--quiet")  # fmt: skip
    assert trained.code == 0, trained.err
    assert "pixel_range:\n  - 0.0\n  - 255.0" in (run / "spec.resolved.yaml").read_text()
    history = json.loads((run / "history.json").read_text())
    assert history["loss"][0] < 3  # unscaled 0‥255 inputs gave losses in the tens
    probe = tmp_path / "probe.npz"
    np.savez(probe, x=x[:2])
    refused = cli("predict", run, probe)
    assert refused.code == 2
    assert "--pixel-range" in refused.err
    served = cli("predict", run, probe, "--pixel-range", "0,255", "--json")
    assert served.code == 0, served.err
    assert all(r["probability"] < 0.999 for r in json.loads(served.out))


# 3 ---------------------------------------------------------------- fewer folders than outputs


def _folder(root: Path, names: list[str], per_class: int = 4) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                root / name / f"{i}.png"
            )
    return root


def test_fewer_class_folders_than_outputs_are_refused_at_train_time(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    root = _folder(tmp_path / "photos", ["cat", "dog"])
    result = cli(
        "train", _write(tmp_path), "--backend", "torch", "--data", root, "-o", tmp_path / "run"
    )
    assert result.code == 2
    assert "2 class folder(s) ['cat', 'dog']" in result.err
    assert "the network has 3 output(s)" in result.err
    assert not (tmp_path / "run").exists()


# 4 ---------------------------------------------------------------- --force replaces a run


def test_a_run_replaced_with_force_holds_only_the_new_runs_files(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    seed = ROOT / "specs" / "seed_cnn.yaml"
    assert cli("train", seed, "--backend", "torch", "--epochs", "1", "-o", run, "--quiet").code == 0
    assert cli("export", run, "--onnx", "--via", "direct", "--quiet").code == 0
    assert (run / "model.onnx").exists()
    again = cli("train", _write(tmp_path), "--backend", "keras", "-o", run, "--force", "--quiet")
    assert again.code == 0, again.err
    assert not (run / "model.onnx").exists()  # exported from the replaced spec
    assert not (run / "model.torch.safetensors").exists()  # the other backend's, replaced spec
    assert (run / "model.keras").exists()
    assert json.loads((run / "specnet.json").read_text())["spec"] == "small"


# 5 ---------------------------------------------------------------- every numeric option


def test_every_numeric_option_of_every_verb_is_validated(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from specnet.cli import NATURAL, POSITIVE, POSITIVE_REAL, _parser

    verbs = next(a for a in _parser()._actions if a.dest == "verb").choices  # type: ignore[union-attr]
    checked = 0
    for name, verb in verbs.items():
        for action in verb._actions:
            if action.type in (int, float):
                pytest.fail(f"{name} {action.option_strings}: a bare {action.type.__name__}")
            if action.type not in (POSITIVE, NATURAL, POSITIVE_REAL):
                continue
            bad = ["-3", "nan", "x"] + (["0"] if action.type is not NATURAL else [])
            for value in bad:
                result = cli(name, *(["x.yaml"] if name not in ("export",) else []),
                             action.option_strings[0], value)  # fmt: skip
                assert result.code == 2, (name, action.option_strings, value)
                assert "Traceback" not in result.err
                assert len(result.err.strip().splitlines()) == 1, result.err
                checked += 1
    assert checked >= 40
    batch = cli("parity", ROOT / "specs" / "seed_cnn.yaml", "--batch", "0")
    assert batch.code == 2
    assert "expected a positive integer, received '0'" in batch.err


# 6 ---------------------------------------------------------------- resume with another spec


def test_resume_refuses_another_spec_or_backend(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    spec = _write(tmp_path)
    run = tmp_path / "run"
    assert cli("train", spec, "--backend", "torch", "--epochs", "1", "-o", run, "--quiet").code == 0
    other = _write(tmp_path, SMALL.replace("filters: 4", "filters: 6"), "other.yaml")
    refused = cli("train", other, "--resume", run, "--epochs", "2")
    assert refused.code == 2
    assert "differs from the spec" in refused.err
    assert "layers" in refused.err
    backend = cli("train", "--resume", run, "--backend", "keras", "--epochs", "2")
    assert backend.code == 2
    assert "is a torch run" in backend.err
    same = cli("train", spec, "--resume", run, "--epochs", "2", "--quiet")
    assert same.code == 0, same.err  # the same spec is fine


# 7 ---------------------------------------------------------------- --epochs 0 and -1


@pytest.mark.parametrize("epochs", ["0", "-1"])
def test_non_positive_epochs_are_refused(epochs: str, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("train", _write(tmp_path), "--epochs", epochs, "-o", tmp_path / "run")
    assert result.code == 2
    assert not (tmp_path / "run").exists()
    from specnet.train import train

    with pytest.raises(UsageError, match="positive number of epochs"):
        train(_write(tmp_path), "torch", epochs=int(epochs), out=tmp_path / "api")


# 8, 9 ------------------------------------------------------------- nested and hidden entries


def test_nested_images_are_read_and_hidden_entries_skipped(tmp_path: Path) -> None:
    from PIL import Image

    root = _folder(tmp_path / "photos", ["a", "b", "c"], per_class=2)
    (root / "a" / "2019" / "deep").mkdir(parents=True)
    Image.new("RGB", (8, 8), (255, 0, 0)).save(root / "a" / "2019" / "deep" / "red.png")
    (root / ".ipynb_checkpoints").mkdir()
    (root / "a" / "._0.png").write_bytes(b"\x00\x05\x16\x07 macOS AppleDouble")
    (root / "b" / ".hidden").mkdir()
    (root / "b" / ".hidden" / "x.png").write_bytes(b"broken")
    data = load_data(loads_spec(SMALL), 3, FolderData(source="folder", path=str(root)))
    assert data.class_names == ["a", "b", "c"]
    x = np.concatenate([data.x_train, data.x_val])
    assert len(x) == 7
    assert any(np.allclose(image[..., 0], 1.0) and np.allclose(image[..., 1:], 0) for image in x)


def test_a_class_count_message_names_the_folders_found(tmp_path: Path) -> None:
    root = _folder(tmp_path / "photos", ["a", "b", "c", "d"])
    (root / ".ipynb_checkpoints").mkdir()
    with pytest.raises(UsageError, match=r"4 class folder\(s\) \['a', 'b', 'c', 'd'\]"):
        load_data(loads_spec(SMALL), 3, FolderData(source="folder", path=str(root)))


# 10 --------------------------------------------------------------- evaluate re-splits


def test_evaluate_refuses_a_folder_that_changed_since_training(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    root = _folder(tmp_path / "photos", ["a", "b", "c"], per_class=6)
    run = tmp_path / "run"
    trained = cli(
        "train", _write(tmp_path), "--backend", "torch", "--data", root, "-o", run, "--quiet"
    )
    assert trained.code == 0, trained.err
    assert cli("evaluate", run).code == 0
    Image.new("RGB", (8, 8)).save(root / "a" / "new.png")
    changed = cli("evaluate", run)
    assert changed.code == 2
    assert "changed since it was trained" in changed.err
    assert "13 + 5 samples then, 14 + 5 now" in changed.err
    explicit = cli("evaluate", run, "--data", root)
    assert explicit.code == 0, explicit.err  # on data given explicitly: all of it
    assert "given data: 19 samples" in explicit.out


# 11 --------------------------------------------------------------- export --opset


@pytest.mark.parametrize("opset", [13, 17])
def test_export_via_torch_honours_the_opset(opset: int, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    import onnx

    build = tmp_path / "b"
    assert (
        cli("build", ROOT / "specs" / "strides_same.yaml", "--backend", "torch", "-o", build).code
        == 0
    )
    result = cli("export", build, "--onnx", "--via", "torch", "--opset", str(opset), "--quiet")
    if result.code == 0:
        model = onnx.load(str(build / "model.onnx"))
        versions = {o.domain: o.version for o in model.opset_import}
        assert versions.get("", versions.get("ai.onnx")) == opset
        assert "Traceback" not in result.err
    else:  # a refusal must say so in one line, never a traceback
        assert result.code == 1
        assert "--via direct" in result.err
        assert "Traceback" not in result.err
        assert not (build / "model.onnx").exists()


# 12 --------------------------------------------------------------- distinct built-in classes


@pytest.mark.parametrize("by_colour", [False, True])
def test_no_two_built_in_classes_are_drawn_alike(by_colour: bool) -> None:
    """Each class drawn at one place and size (no noise), with the colour fixed for shapes and
    the shape fixed for colours: every pair must differ in a visible share of pixels."""
    names = synthetic_classes(by_colour)
    assert len(set(names)) == len(names)
    classes = 24 if not by_colour else 48
    x, y, got = synthetic(
        4000, (32, 32, 3), classes, "colour" if by_colour else "shape", seed=5, noise=0.0
    )
    assert got == names[:classes]
    # the mean image of each class: shapes average over random colours/places, colours over shapes
    means = np.stack([x[y == k].mean(0) for k in range(classes)])
    for i in range(classes):
        for j in range(i):
            gap = float(np.abs(means[i] - means[j]).mean())
            assert gap > 0.004, f"{got[i]} and {got[j]} look alike ({gap:.4f})"


def test_a_ten_class_spec_on_built_in_data_can_be_learnt_past_the_old_ceiling() -> None:
    from sklearn.linear_model import LogisticRegression

    x, y, names = synthetic(3000, (16, 16, 3), 10, "shape", seed=0, noise=0.05)
    assert names[6:] == ["circle_striped", "square_striped", "triangle_striped", "cross_striped"]
    # pixels of the drawn shape only (brighter than the background), as a cheap feature
    features = (x.max(-1) > 0.5).reshape(len(x), -1).astype(np.float32)
    probe = LogisticRegression(max_iter=400).fit(features[:2400], y[:2400])
    assert probe.score(features[2400:], y[2400:]) > 0.6  # identical pairs capped this at ~0.6


# 13 --------------------------------------------------------------- duplicate class names


def test_duplicate_class_names_are_refused(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("validate", ROOT / "tests" / "bad_specs" / "class_names_duplicate.yaml")
    assert result.code == 2
    assert "duplicate class name 'cat'" in result.err


# 14 --------------------------------------------------------------- NaN in JSON


def test_validation_split_zero_writes_strict_json(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    spec = _write(tmp_path, SMALL.replace("validation_split: 0.25", "validation_split: 0"))
    run = tmp_path / "run"
    result = cli("train", spec, "--backend", "torch", "-o", run, "--json")
    assert result.code == 0, result.err
    lines = [_strict(line) for line in result.out.splitlines()]
    assert lines[0]["val_loss"] is None  # type: ignore[index]
    history = _strict((run / "history.json").read_text())
    assert history["val_loss"] == [None, None]  # type: ignore[index]
    evaluation = cli("evaluate", run, "--json")
    assert evaluation.code == 0
    _strict(evaluation.out)


# 15 --------------------------------------------------------------- one runtime


def test_parity_with_one_runtime_says_two_are_needed(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("parity", ROOT / "specs" / "seed_cnn.yaml", "--backends", "torch")
    assert result.code == 2
    assert "give at least two" in result.err
    assert "PARITY FAILED" not in result.out + result.err


# 16 --------------------------------------------------------------- a single sigmoid output


BINARY = """\
name: binary
input_shape: [8, 8, 3]
class_names: [dark, light]
layers:
  - {type: Flatten}
  - {type: Dense, units: 4, activation: relu}
  - {type: Dense, units: 1, activation: sigmoid}
train: {loss: binary_crossentropy, optimizer: {type: adam, learning_rate: 0.05}, epochs: 8,
        batch_size: 16, validation_split: 0.25}
"""


def test_a_binary_head_through_train_evaluate_export_and_parity(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    y = np.arange(200) % 2
    x = (rng.uniform(0, 0.4, (200, 8, 8, 3)) + 0.5 * y[:, None, None, None]).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    spec = _write(tmp_path, BINARY + "data: {source: npz, path: d.npz}\n")
    run = tmp_path / "run"
    assert cli("train", spec, "--backend", "keras", "-o", run, "--quiet").code == 0
    report = json.loads(cli("evaluate", run, "--json").out)
    assert report["accuracy"] > 0.95
    assert [row["class"] for row in report["per_class"]] == ["dark", "light"]
    np.savez(tmp_path / "p.npz", x=x[:4])
    predicted = json.loads(cli("predict", run, tmp_path / "p.npz", "--json").out)
    assert [r["class"] for r in predicted] == ["dark", "light", "dark", "light"]
    assert cli("export", run, "--onnx", "--via", "direct", "--quiet").code == 0
    parity = cli("parity", run, "--backends", "keras,torch,onnx", "--json", "--quiet")
    assert parity.code == 0, parity.out
    assert all(pair["argmax_agree"] == 1.0 for pair in json.loads(parity.out)["pairs"])


def test_parity_compares_the_decision_of_a_single_sigmoid_unit() -> None:
    from specnet.parity import _compare

    logits = np.array([[0.3], [-0.2], [1.5]])
    flipped = np.array([[0.3], [0.2], [1.5]])  # example 2 crosses p = 0.5
    pair = _compare("a", "b", logits, flipped)
    assert math.isclose(pair.argmax_agree, 2 / 3)
    assert not pair.ok


# 17 --------------------------------------------------------------- NCHW npz and .NPZ


def test_a_channels_first_npz_gets_the_transpose_and_npz_matches_in_any_case(
    tmp_path: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    np.savez(tmp_path / "d.npz", x=np.zeros((8, 3, 16, 16), np.uint8), y=np.arange(8) % 3)
    spec = _write(tmp_path, SMALL.replace("[8, 8, 3]", "[16, 16, 3]"))
    result = cli(
        "train", spec, "--backend", "torch", "--data", tmp_path / "d.npz", "-o", tmp_path / "r"
    )
    assert result.code == 2
    assert "(N, C, H, W)" in result.err
    assert "x.transpose(0, 2, 3, 1)" in result.err
    (tmp_path / "d.npz").rename(tmp_path / "UPPER.NPZ")
    upper = cli(
        "train", spec, "--backend", "torch", "--data", tmp_path / "UPPER.NPZ", "-o", tmp_path / "r"
    )
    assert "expected 'synthetic', 'digits', a .npz file" not in upper.err
    assert "(N, C, H, W)" in upper.err  # read as an .npz, and refused for its layout


# 18 --------------------------------------------------------------- init paths with spaces


def test_init_quotes_paths_with_spaces(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import shlex

    monkeypatch.chdir(tmp_path)
    result = cli("init", "sub/dir/my spec.yaml")
    assert result.code == 0, result.err
    command = result.out.splitlines()[-1].removeprefix("next: ")
    assert shlex.split(command) == ["specnet", "summary", "sub/dir/my spec.yaml"]
    first = Path("sub/dir/my spec.yaml").read_text().splitlines()[0]
    assert shlex.split(first.removeprefix("# Run: ")) == [
        "specnet",
        "summary",
        "sub/dir/my spec.yaml",
    ]
    assert cli(*shlex.split(command)[1:]).code == 0


# 19 --------------------------------------------------------------- an emoji class name


def test_an_emoji_class_name_trains_quietly(tmp_path: Path) -> None:
    spec = _write(
        tmp_path, SMALL.replace("layers:", "class_names: [cat 🐱, dog 🐶, bird 🐦]\nlayers:")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "specnet", "train", str(spec), "--backend", "torch", "-o",
         str(tmp_path / "run"), "--quiet"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == ""
