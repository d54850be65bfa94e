"""No silent wrong answers (issue "Trust"): labels follow class names, channel order is checked,
build folders keep every backend, and the rough edges a new user hits.

The independent reference for labels is the images themselves: a red square is red whatever a
spec or a folder listing says, so each test checks labels against the pixels.
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
from specnet.data import load_data
from specnet.spec import FolderData, NpzData
from specnet.weights import read_metadata
from tests.conftest import ROOT

COLOURS = {"red": (230, 20, 20), "blue": (20, 40, 230), "yellow": (240, 220, 20)}
BLOG = """\
name: blog
input_shape: [16, 16, 3]
class_names: [red, blue, yellow]
layers:
  - {type: Conv2D, filters: 4, kernel_size: 3, activation: relu}
  - {type: MaxPooling2D}
  - {type: Flatten}
  - {type: Dense, units: 3, activation: softmax}
train: {optimizer: {type: adam, learning_rate: 0.01}, epochs: 10, batch_size: 8,
        validation_split: 0.25, seed: 1}
"""


def _squares(root: Path, per_class: int = 8, size: int = 16) -> Path:
    """``root/{blue,red,yellow}/*.png``: noisy squares of one colour (sorted order ≠ spec's)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.normal(colour, 12, size=(size, size, 3)).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _colour_of(image: np.ndarray) -> str:
    """The independent label: the colour nearest the image's mean pixel."""
    mean = image.reshape(-1, image.shape[-1]).mean(0) * 255
    return min(COLOURS, key=lambda name: float(np.sum((mean - np.array(COLOURS[name])) ** 2)))


def _spec_file(tmp_path: Path, text: str = BLOG, name: str = "blog.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- class names


@pytest.mark.parametrize("order", [["red", "blue", "yellow"], ["yellow", "red", "blue"]])
def test_folder_labels_follow_the_class_names(order: list[str], tmp_path: Path) -> None:
    root = _squares(tmp_path / "photos")
    spec = loads_spec(BLOG.replace("[red, blue, yellow]", f"[{', '.join(order)}]"))
    data = load_data(spec, 3, FolderData(source="folder", path=str(root)))
    assert data.class_names == order
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val)):
        assert [_colour_of(image) for image in x] == [order[label] for label in y]


def test_class_names_that_are_not_the_folders_are_refused(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    root = _squares(tmp_path / "photos")
    spec = _spec_file(tmp_path, BLOG.replace("[red, blue, yellow]", "[cat, dog, bird]"))
    result = cli("train", spec, "--backend", "torch", "--data", root, "-o", tmp_path / "run")
    assert result.code == 2
    assert "['blue', 'red', 'yellow']" in result.err  # the folders
    assert "['cat', 'dog', 'bird']" in result.err  # the names
    assert "Traceback" not in result.err
    assert not (tmp_path / "run").exists()


def test_a_trained_run_predicts_by_name_and_records_the_order(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    root = _squares(tmp_path / "photos")
    spec = _spec_file(tmp_path)
    run = tmp_path / "run"
    result = cli("train", spec, "--backend", "torch", "--data", root, "-o", run, "--quiet")
    assert result.code == 0, result.err
    order = ["red", "blue", "yellow"]
    assert json.loads((run / "class_names.json").read_text()) == order
    assert json.loads((run / "specnet.json").read_text())["class_names"] == order
    assert "class_names:\n- red\n- blue\n- yellow" in (run / "spec.resolved.yaml").read_text()
    for file in ("weights.safetensors", "best/weights.safetensors"):
        assert json.loads(read_metadata(run / file)["class_names"]) == order, file
    progress = json.loads(read_metadata(run / "checkpoints/last.safetensors")["progress"])
    assert progress["class_names"] == order
    predicted = cli("predict", run, root / "red" / "0.png", root / "blue" / "0.png", "--json")
    assert predicted.code == 0, predicted.err
    assert [r["class"] for r in json.loads(predicted.out)] == ["red", "blue"]
    exported = cli("export", run, "--onnx", "--via", "direct", "--quiet")
    assert exported.code == 0, exported.err
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(run / "model.onnx")).metadata_props}
    assert json.loads(meta["class_names"]) == order
    preprocessing = json.loads(meta["preprocessing"])
    assert preprocessing["channels"] == "RGB"
    assert "bilinear" in preprocessing["resize"]
    assert "255" in preprocessing["scale"]
    # a build that reuses the weights records them too; one with another order is refused
    assert (
        cli("build", spec, "--backend", "torch", "--weights", run, "-o", tmp_path / "b").code == 0
    )
    assert json.loads((tmp_path / "b" / "specnet.json").read_text())["class_names"] == order
    swapped = _spec_file(
        tmp_path, BLOG.replace("[red, blue, yellow]", "[blue, red, yellow]"), "s.yaml"
    )
    refused = cli("build", swapped, "--backend", "torch", "--weights", run, "-o", tmp_path / "c")
    assert refused.code == 2
    assert "trained for classes ['red', 'blue', 'yellow']" in refused.err
    assert "another order would swap predictions" in refused.err
    assert not (tmp_path / "c").exists()
    again = cli("train", swapped, "--backend", "torch", "--data", root, "--weights", run,
                "-o", tmp_path / "r2")  # fmt: skip
    assert again.code == 2
    assert "trained for classes" in again.err


def test_synthetic_colours_follow_the_class_names() -> None:
    spec = loads_spec(
        BLOG.replace("[red, blue, yellow]", "[yellow, red, blue]")
        + "data: {source: synthetic, classes_by: colour}\n"
    )
    data = load_data(spec, 3)
    for image, label in zip(data.x_train[:60], data.y_train[:60], strict=True):
        shape = image[image.max(-1) > 0.7]  # the drawn shape; the background is below 0.45
        assert _colour_of(shape[None]) == data.class_names[label]


# ----------------------------------------------------------------------------- channel order


def test_channels_first_input_shape_is_warned_and_its_data_refused(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    text = BLOG.replace("[16, 16, 3]", "[3, 16, 16]").replace(
        "  - {type: Conv2D, filters: 4, kernel_size: 3, activation: relu}\n"
        "  - {type: MaxPooling2D}\n",
        "",
    )
    spec = _spec_file(tmp_path, text)
    checked = cli("validate", spec)
    assert checked.code == 0  # it can be right (3 rows × 16 columns × 16 channels) …
    assert "looks like a channels-first shape" in checked.err  # … but probably is not
    assert "[16, 16, 3]" in checked.err
    root = _squares(tmp_path / "photos")
    refused = cli("train", spec, "--backend", "torch", "--data", root, "-o", tmp_path / "run")
    assert refused.code == 2
    assert "16 channels" in refused.err
    assert "looks channels-first: write [16, 16, 3]" in refused.err
    assert not (tmp_path / "run").exists()


def test_the_blog_spec_written_channels_first_names_the_channel_order(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("validate", ROOT / "tests/bad_specs/channels_first_blog_cnn.yaml")
    assert result.code == 2
    assert "input_shape [3, 32, 32] looks channels-first" in result.err
    assert "[32, 32, 3]" in result.err


def test_npz_in_another_channel_layout_is_refused_with_the_transpose(tmp_path: Path) -> None:
    spec = loads_spec(BLOG)
    x = np.zeros((8, 3, 16, 16), np.uint8)  # (N, C, H, W), as PyTorch datasets store it
    np.savez(tmp_path / "nchw.npz", x=x, y=np.arange(8) % 3)
    with pytest.raises(
        UsageError, match=r"looks channels-first \(N, C, H, W\).*transpose\(0, 2, 3, 1\)"
    ):
        load_data(spec, 3, NpzData(source="npz", path=str(tmp_path / "nchw.npz")))
    np.savez(tmp_path / "grey.npz", x=np.zeros((8, 16, 16), np.uint8), y=np.arange(8) % 3)
    with pytest.raises(UsageError, match=r"1 channel\(s\).*has 3"):  # never repeated into 3
        load_data(spec, 3, NpzData(source="npz", path=str(tmp_path / "grey.npz")))


def test_keras_device_cuda_without_a_gpu_is_refused(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU: --device cuda is valid here")
    spec = _spec_file(tmp_path)
    result = cli("train", spec, "--backend", "keras", "--device", "cuda", "-o", tmp_path / "run")
    assert result.code == 1
    assert "--device cuda: TensorFlow sees no GPU here" in result.err
    assert not (tmp_path / "run").exists()  # refused before anything is written


# ----------------------------------------------------------------------------- build folders


def test_one_build_folder_keeps_both_native_models(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from specnet.backends import get_backend
    from specnet.evaluate import open_run
    from tests.helpers import assert_agree, batch

    out = tmp_path / "b"
    seed = ROOT / "specs" / "seed_cnn.yaml"
    assert cli("build", seed, "--backend", "keras", "-o", out).code == 0
    again = cli("build", seed, "--backend", "torch", "-o", out, "--weights", out)
    assert again.code == 0, again.err
    marker = json.loads((out / "specnet.json").read_text())
    assert marker["backends"] == ["keras", "torch"]
    opened = open_run(out)
    x = batch(opened.plan.input_shape)
    outputs = {}
    for name in ("keras", "torch"):
        backend = get_backend(name)
        model = backend.load_native(out / backend.native_file, opened.plan)
        outputs[name] = backend.predict(model, x)
    assert_agree(outputs["torch"], outputs["keras"], "the two native models of one build")


# ----------------------------------------------------------------------------- messages


@pytest.mark.parametrize(
    ("layer", "hint"),
    [
        ("{type: Dropout, rate: half}", "write a number such as 0.5"),
        ('{type: Dropout, rate: "0.5"}', "remove the quotes"),
        ("{type: Dense, units: three}", "write an integer such as 32"),
        ('{type: Dense, units: "3"}', "remove the quotes"),
    ],
)
def test_number_hints_say_remove_the_quotes_only_when_there_are_quotes(
    layer: str, hint: str, tmp_path: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    spec = _spec_file(
        tmp_path, f"name: t\ninput_shape: [4, 4, 1]\nlayers: [{{type: Flatten}}, {layer}]\n"
    )
    result = cli("validate", spec)
    assert result.code == 2
    assert f"hint: {hint}" in result.err
    if "quotes" not in hint:
        assert "quotes" not in result.err


def test_every_option_of_every_verb_is_described_with_its_default(cli) -> None:  # type: ignore[no-untyped-def]
    from specnet.cli import _parser

    parser = _parser()
    verbs = next(a for a in parser._actions if a.dest == "verb").choices  # type: ignore[union-attr]
    assert set(verbs) == {"validate", "summary", "schema", "init", "build", "train", "evaluate",
                          "predict", "export", "parity", "verify", "plot", "diff",
                          "bench", "import"}  # fmt: skip
    for name, verb in verbs.items():
        assert verb.description, name
        assert "example" in (verb.epilog or ""), name
        for action in verb._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings or action.dest}"
            if action.default not in (None, False) and action.option_strings:
                assert "default" in action.help, f"{name} {action.option_strings}"
        outs = [a for a in verb._actions if a.dest == "out"]
        if name in ("schema", "build", "train", "export", "plot"):
            assert outs
            assert outs[0].option_strings == ["-o", "--out"], name


def test_a_mistyped_verb_gets_a_suggestion(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("trian", "x.yaml")
    assert result.code == 2
    assert "did you mean 'train'?" in result.err


def test_train_overrides_are_validated_and_recorded(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    spec = _spec_file(tmp_path)
    run = tmp_path / "run"
    result = cli("train", spec, "--backend", "torch", "--epochs", "1", "--batch-size", "5",
                 "--learning-rate", "0.003", "--seed", "7", "-o", run, "--quiet")  # fmt: skip
    assert result.code == 0, result.err
    resolved = loads_spec((run / "spec.resolved.yaml").read_text())
    assert (resolved.train.batch_size, resolved.train.seed) == (5, 7)
    assert resolved.train.optimizer.learning_rate == 0.003
    assert resolved.train.epochs == 1
    for bad in (["--batch-size", "0"], ["--learning-rate", "-1"], ["--epochs", "0"],
                ["--seed", "-2"], ["--learning-rate", "nan"]):  # fmt: skip
        refused = cli("train", spec, *bad, "-o", tmp_path / "x")
        assert refused.code == 2, bad
        assert refused.err.startswith("specnet: error: ")
        assert len(refused.err.strip().splitlines()) == 1, refused.err


def test_parity_and_export_print_progress_unless_quiet(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    seed = ROOT / "specs" / "seed_cnn.yaml"
    loud = cli("parity", seed, "--backends", "torch,onnx")
    assert loud.code == 0, loud.err
    assert [line.split(":")[0] for line in loud.err.splitlines()] == [
        "parity [1/2] torch",
        "parity [2/2] onnx",
        "parity",  # the network's float32 rounding, measured (specnet.rounding)
    ]
    assert "rounding measured" in loud.err.splitlines()[-1]
    assert cli("parity", seed, "--backends", "torch,onnx", "--quiet").err == ""
    assert cli("build", seed, "--backend", "torch", "-o", tmp_path / "b").code == 0
    exported = cli("export", tmp_path / "b", "--onnx", "--via", "direct")
    assert exported.code == 0, exported.err
    steps = [line.split(" ", 2)[1] for line in exported.err.splitlines()]
    assert steps == ["[1/3]", "[2/3]", "[3/3]"]
    quiet = cli("export", tmp_path / "b", "--onnx", "--via", "direct", "--force", "--quiet",
                "-o", tmp_path / "m.onnx")  # fmt: skip
    assert quiet.code == 0
    assert quiet.err == ""


def test_evaluate_text_labels_the_confusion_matrix_with_class_names() -> None:
    from specnet.evaluate import Evaluation

    rows = [{"class": n, "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
            for n in ("red", "blue", "yellow")]  # fmt: skip
    text = Evaluation("validation", 3, 0.1, 1.0, [[1, 0, 0], [0, 1, 0], [0, 0, 1]], rows).text()
    matrix = text.split("confusion matrix")[1].splitlines()[1:]
    assert matrix[0].split() == ["red", "blue", "yellow"]
    assert [line.split()[0] for line in matrix[1:]] == ["red", "blue", "yellow"]


def test_training_curves_have_whole_epoch_ticks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from specnet import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: figures.append(figure))
    history = {k: [1.0, 0.5, 0.25] for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
    plots.training_curves(history, tmp_path / "c.png", "t")
    for ax in figures[0].axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks
        assert all(float(t).is_integer() for t in ticks), ticks


# ----------------------------------------------------------------------------- native files


def test_model_keras_is_compiled_and_continues_training(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    import keras

    out = tmp_path / "b"
    assert cli("build", ROOT / "specs" / "seed_cnn.yaml", "--backend", "keras", "-o", out).code == 0
    assert oct((out / "model.keras").stat().st_mode & 0o777) == oct(
        (out / "weights.safetensors").stat().st_mode & 0o777
    )
    model = keras.saving.load_model(out / "model.keras", safe_mode=True)
    assert type(model.optimizer).__name__ == "Adam"
    assert math.isclose(float(model.optimizer.learning_rate), 0.001, rel_tol=1e-6)
    assert type(model.loss).__name__ == "CategoricalCrossentropy"
    x = np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(8) % 3]
    history = model.fit(x, y, epochs=1, verbose=0)
    assert math.isfinite(history.history["loss"][0])


def test_emitted_sources_compile_and_expose_logits(tmp_path: Path) -> None:
    import torch

    from specnet.backends import get_backend
    from specnet.shapes import infer
    from specnet.spec import load_spec

    plan = infer(load_spec(ROOT / "specs" / "seed_cnn.yaml"))
    keras_source = get_backend("keras").emit_source(plan)
    assert "model.compile(" in keras_source
    namespace: dict[str, object] = {}
    exec(compile(keras_source, "keras_model.py", "exec"), namespace)  # noqa: S102 - generated by the test
    model = namespace["build_model"]()  # type: ignore[operator]
    assert type(model.optimizer).__name__ == "Adam"  # type: ignore[attr-defined]
    torch_source = get_backend("torch").emit_source(plan)
    assert "nn.CrossEntropyLoss" in torch_source
    namespace = {}
    exec(compile(torch_source, "torch_model.py", "exec"), namespace)  # noqa: S102
    net = namespace["SeedCnn"]().eval()  # type: ignore[operator]
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        logits, probabilities = net.logits(x), net(x)
    # the reference: softmax computed here, not by the module
    assert torch.allclose(torch.softmax(logits, dim=1), probabilities, atol=1e-6)
    assert not torch.allclose(logits.sum(1), torch.ones(4))  # logits are not probabilities


# ----------------------------------------------------------------------------- runs


def test_ctrl_c_marks_the_run_interrupted_and_a_finished_run_has_nothing_to_resume(
    tmp_path: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    import signal
    import time

    from tests.helpers import wait_for_epochs

    spec = _spec_file(tmp_path, BLOG.replace("epochs: 10", "epochs: 400"))
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "specnet", "train", str(spec), "--backend", "torch", "-o", str(run),
         "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    wait_for_epochs(run, 1, process)
    process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.returncode == 130
    marker = json.loads((run / "specnet.json").read_text())
    assert marker["status"] == "interrupted"
    done = marker["epochs_done"]
    assert cli("train", "--resume", run, "--epochs", str(done + 1), "--quiet").code == 0
    again = cli("train", "--resume", run, "--quiet")
    assert again.code == 0
    assert "nothing to resume" in again.err
    assert json.loads((run / "specnet.json").read_text())["status"] == "finished"


def test_init_from_folder_fills_shape_classes_and_data(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    root = _squares(tmp_path / "my photos", size=20)
    target = tmp_path / "specs dir" / "net.yaml"
    result = cli("init", target, "--from-folder", root)
    assert result.code == 0, result.err
    assert f"next: specnet summary '{target}'" in result.out
    spec = loads_spec(target.read_text())
    assert spec.input_shape == (20, 20, 3)
    assert spec.class_names == ["blue", "red", "yellow"]
    assert target.read_text().startswith(f"# Run: specnet train '{target}'")
    run = tmp_path / "run"
    trained = cli("train", target, "--backend", "torch", "--epochs", "1", "-o", run, "--quiet")
    assert trained.code == 0, trained.err  # data.path is relative to the spec, and found
    assert json.loads((run / "specnet.json").read_text())["data"]["train"] == 19


def test_predict_a_folder_recursively_as_csv_and_top_k(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    import csv
    import io

    root = _squares(tmp_path / "photos", per_class=2)
    (root / "red" / "nested").mkdir()
    (root / "red" / "0.png").rename(root / "red" / "nested" / "0.png")
    (root / "red" / ".ipynb_checkpoints").mkdir()
    (root / "red" / ".ipynb_checkpoints" / "x.png").write_bytes(b"not an image")
    (root / "red" / "._1.png").write_bytes(b"macOS metadata")
    assert (
        cli(
            "build", ROOT / "specs" / "seed_cnn.yaml", "--backend", "torch", "-o", tmp_path / "b"
        ).code
        == 0
    )
    result = cli("predict", tmp_path / "b", root / "red", "--format", "csv", "--top-k", "2")
    assert result.code == 0, result.err
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert [Path(r["input"]).name for r in rows] == ["1.png", "0.png"]  # sorted walk, nested too
    assert list(rows[0]) == ["input", "class", "probability", "red", "blue", "yellow"]
    assert math.isclose(
        sum(float(rows[0][n]) for n in ("red", "blue", "yellow")), 1.0, rel_tol=1e-6
    )
    shown = json.loads(cli("predict", tmp_path / "b", root, "--json", "--top-k", "2").out)
    assert len(shown) == 6
    assert all(len(r["top"]) == 2 for r in shown)
    assert all(r["top"][0][0] == r["class"] for r in shown)
    text = cli("predict", tmp_path / "b", root / "blue", "--top-k", "1").out.splitlines()
    assert len(text) == 2
    assert all(line.count("(") == 1 for line in text)  # only the best class


def test_specs_ship_in_the_wheel_and_help_examples_work_outside_a_checkout(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("specnet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(
        n.removeprefix("specnet/specs/") for n in names if n.startswith("specnet/specs/")
    )
    assert shipped == sorted(
        str(p.relative_to(ROOT / "specs")) for p in (ROOT / "specs").glob("**/*.yaml")
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli("init", "net.yaml", "--example", "seed_cnn").code == 0
    assert cli("validate", "net.yaml").code == 0
    assert cli("summary", "net.yaml", "--json").code == 0
    assert cli("build", "net.yaml", "--backend", "torch", "--emit-source", "model.py").code == 0


@pytest.mark.parametrize(
    ("shape", "guess"),
    [
        ((3, 32, 32), (32, 32, 3)),
        ((1, 28, 28), (28, 28, 1)),
        ((4, 64, 48), (64, 48, 4)),
        ((3, 5, 5), (5, 5, 3)),
        ((32, 32, 3), None),  # channels last: nothing to say
        ((3, 32, 3), None),  # ends in a channel count: could be either, so no guess
        ((3, 4, 32), None),  # 4 rows: too small to be an image's height
        ((3, 32, 4), None),
        ((2, 32, 32), None),  # 2 channels is no image format
        ((1, 1, 1), None),
    ],
)
def test_which_shapes_look_channels_first(shape: tuple[int, int, int], guess: object) -> None:
    from specnet.shapes import advice, channels_last_guess

    assert channels_last_guess(shape) == guess
    layers = "[{type: Flatten}, {type: Dense, units: 2}]"
    text = f"name: t\ninput_shape: {list(shape)}\nlayers: {layers}\n"
    warnings = advice(loads_spec(text))
    assert len(warnings) == (guess is not None)
    if guess is not None:
        assert warnings[0].field == "input_shape"
        c, h, w = shape
        assert warnings[0].message == (
            f"warning: {list(shape)} reads as {c} rows × {h} columns × {w} channels, which looks "
            "like a channels-first shape (C, H, W)"
        )
        assert f"write {list(guess)}" in warnings[0].hint


def test_class_names_of_a_network() -> None:
    from specnet.shapes import class_names_of

    def names(units: int, extra: str = "") -> list[str]:
        layers = f"[{{type: Flatten}}, {{type: Dense, units: {units}}}]"
        text = f"name: t\ninput_shape: [2, 2, 1]\n{extra}layers: {layers}\n"
        return class_names_of(infer(loads_spec(text)))

    from specnet.shapes import infer

    assert names(3) == ["0", "1", "2"]
    assert names(1) == ["0", "1"]  # one sigmoid unit: two classes
    assert names(2, "class_names: [no, yes]\n") == ["no", "yes"]
    conv = "name: t\ninput_shape: [4, 4, 1]\nlayers: [{type: Conv2D, filters: 2, kernel_size: 1}]\n"
    assert class_names_of(infer(loads_spec(conv))) == []  # not a classifier
