"""evaluate and predict on a build: every refusal names what was given, the probabilities are
the network's own (checked against another runtime), and the text and CSV forms are exact."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from specnet import UsageError, infer
from specnet.backends import get_backend
from specnet.evaluate import Evaluation, open_run, predict, predictions_csv, predictions_text
from specnet.spec import spec_from_dict
from specnet.weights import load_weights
from tests.conftest import ROOT


def _build(cli, tmp_path: Path, spec: dict | Path, name: str = "b") -> Path:  # type: ignore[no-untyped-def, type-arg]
    if isinstance(spec, dict):
        import yaml

        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec))
        spec = path
    out = tmp_path / name
    result = cli("build", spec, "--backend", "torch", "-o", out)
    assert result.code == 0, result.err
    return out


BINARY = {
    "name": "binary",
    "input_shape": [4, 4, 1],
    "class_names": ["no", "yes"],
    "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 1, "activation": "sigmoid"}],
    "train": {"loss": "binary_crossentropy"},
}


def test_predict_refuses_what_it_cannot_read(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    build = _build(cli, tmp_path, ROOT / "specs" / "seed_cnn.yaml")
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    np.savez(tmp_path / "y_only.npz", y=np.zeros(3))
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    suffixes = ".bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp"
    cases = [
        ([str(tmp_path / "missing.png")], f"{tmp_path / 'missing.png'}: no such file or folder"),
        ([str(tmp_path / "empty")], f"{tmp_path / 'empty'}: no images ({suffixes})"),
        ([str(tmp_path / "y_only.npz")], f"{tmp_path / 'y_only.npz'}: no array x; found ['y']"),
        ([str(tmp_path / "notes.txt")],
         f"{tmp_path / 'notes.txt'}: expected an image ({suffixes}), a folder of them, or .npz"),
    ]  # fmt: skip
    for inputs, message in cases:
        with pytest.raises(UsageError) as info:
            predict(build, inputs)
        assert str(info.value) == message
    with pytest.raises(UsageError) as info:
        predict(build, [str(tmp_path / "broken.npz")])
    assert str(info.value).startswith(f"{tmp_path / 'broken.npz'}: cannot read array x (")
    with pytest.raises(UsageError) as info:
        predict(build, [str(tmp_path / "y_only.npz")], top_k=0)
    assert str(info.value) == "--top-k 0: expected a positive number"
    with pytest.raises(UsageError) as info:
        open_run(tmp_path / "empty")
    assert str(info.value) == (
        f"{tmp_path / 'empty'}: not a specnet run or build (no specnet.json and weights)"
    )
    image = {"name": "image", "input_shape": [4, 4, 1],
             "layers": [{"type": "Conv2D", "filters": 2, "kernel_size": 1}]}  # fmt: skip
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 4, 4, 1), np.uint8))
    with pytest.raises(UsageError) as info:
        predict(_build(cli, tmp_path, image, "image"), [str(tmp_path / "x.npz")])
    assert str(info.value) == "predict needs a classifier (a network that outputs a vector)"


@pytest.mark.parametrize("backend", [None, "keras", "torch", "onnx"])
def test_one_sigmoid_unit_predicts_two_classes(tmp_path: Path, cli, backend: str | None) -> None:  # type: ignore[no-untyped-def]
    build = _build(cli, tmp_path, BINARY)
    x = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 1), dtype=np.uint8)
    np.savez(tmp_path / "x.npz", x=x)
    results = predict(build, [str(tmp_path / "x.npz")], backend=backend)
    # the reference: the network's own sigmoid output, from PyTorch
    plan = infer(spec_from_dict(BINARY))
    torch_backend = get_backend("torch")
    model = torch_backend.build(plan)
    torch_backend.set_weights(model, plan, load_weights(build / "weights.safetensors", plan))
    p_yes = torch_backend.predict(model, (x / 255).astype(np.float32))[:, 0]
    assert [r["input"] for r in results] == [f"{tmp_path / 'x.npz'}[{i}]" for i in range(5)]
    for result, p in zip(results, p_yes, strict=True):
        assert math.isclose(result["probabilities"]["yes"], p, rel_tol=1e-5, abs_tol=1e-6)
        assert math.isclose(result["probabilities"]["no"], 1 - p, rel_tol=1e-5, abs_tol=1e-6)
        assert result["class"] == ("yes" if p > 0.5 else "no")
        assert result["probability"] == max(result["probabilities"].values())
        assert [name for name, _ in result["top"]] == sorted(
            ["no", "yes"], key=lambda n: -result["probabilities"][n]
        )
    assert all(len(r["top"]) == 1 for r in predict(build, [str(tmp_path / "x.npz")], top_k=1))
    assert all(len(r["top"]) == 2 for r in predict(build, [str(tmp_path / "x.npz")], top_k=9))


RESULTS = [
    {"input": "a.png", "class": "cat", "probability": 0.75,
     "probabilities": {"cat": 0.75, "dog": 0.2, "bird": 0.05},
     "top": [["cat", 0.75], ["dog", 0.2], ["bird", 0.05]]},
    {"input": "b.png", "class": "bird", "probability": 0.5,
     "probabilities": {"cat": 0.25, "dog": 0.25, "bird": 0.5},
     "top": [["bird", 0.5], ["cat", 0.25]]},
]  # fmt: skip


def test_prediction_text_and_csv_are_exact() -> None:
    assert predictions_text(RESULTS) == (
        "a.png: cat (0.750)  dog 0.200  bird 0.050\nb.png: bird (0.500)  cat 0.250"
    )
    two = "a.png: cat (0.750)  dog 0.200\nb.png: bird (0.500)  cat 0.250"
    assert predictions_text(RESULTS, top_k=2) == two
    assert predictions_text(RESULTS, top_k=1) == "a.png: cat (0.750)\nb.png: bird (0.500)"
    assert predictions_csv(RESULTS) == (
        "input,class,probability,cat,dog,bird\n"
        "a.png,cat,0.75,0.75,0.2,0.05\n"
        "b.png,bird,0.5,0.25,0.25,0.5\n"
    )
    assert predictions_csv([]) == "input,class,probability\n"


def test_the_evaluation_report_is_laid_out_for_reading() -> None:
    rows = [
        {"class": "cat", "precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1},
        {
            "class": "a_rather_long_class_name",
            "precision": 0.0,
            "recall": 0.0,
            "f1": 0.0,
            "support": 1,
        },
    ]
    text = Evaluation("test", 2, 0.693147, 0.5, [[1, 0], [1, 0]], rows).text()
    assert text.splitlines() == [
        "test: 2 samples, loss 0.6931, accuracy 0.5000",
        "",
        "class            precision    recall        f1  support",
        "cat                 0.5000    1.0000    0.6667        1",
        "a_rather_long_class_name    0.0000    0.0000    0.0000        1",
        "",
        "confusion matrix (rows: true class, columns: predicted class)",
        " " * 17 + " " * 21 + "cat a_rather_long_class_name",  # columns as wide as the names
        "cat" + " " * 14 + " " * 23 + "1 " + " " * 23 + "0",  # row labels cut at 16
        "a_rather_long_cl " + " " * 23 + "1 " + " " * 23 + "0",
    ]


def test_probabilities_are_float64_softmaxes_stable_for_any_logits(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """Logits of ±thousands (row by row) still give finite probabilities that sum to 1 to float64
    precision: the softmax subtracts each row's own maximum."""
    from specnet.weights import read_metadata, save_weights

    spec = {"name": "wide", "input_shape": [1, 1, 2], "class_names": ["a", "b", "c"],
            "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 3}]}  # fmt: skip
    build = _build(cli, tmp_path, spec)
    weights = {"dense.kernel": np.array([[3000, 0, -3000], [-3000, 1, 3000]], np.float32),
               "dense.bias": np.zeros(3, np.float32)}  # fmt: skip
    path = build / "weights.safetensors"
    save_weights(path, weights, overwrite=True, metadata=read_metadata(path))
    x = np.array([[[[255, 0]]], [[[0, 255]]], [[[0, 0]]]], np.uint8)  # logits ±3000, ±3000, 0
    np.savez(tmp_path / "x.npz", x=x)
    results = predict(build, [str(tmp_path / "x.npz")])
    assert [r["class"] for r in results] == ["a", "c", "a"]
    for result in results:
        total = sum(result["probabilities"].values())
        assert abs(total - 1.0) < 1e-12, total
        assert all(math.isfinite(p) for p in result["probabilities"].values())
    assert math.isclose(results[0]["probability"], 1.0)
    # the third row's logits are all 0 (the others' are thousands): a third each
    assert all(math.isclose(p, 1 / 3, rel_tol=1e-9) for p in results[2]["probabilities"].values())


def _runtimes_used(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the backends evaluate.py builds models with, from now on."""
    import specnet.evaluate as evaluate_module

    used: list[str] = []
    real = evaluate_module.get_backend

    def spy(name: str) -> object:
        used.append(name)
        return real(name)

    monkeypatch.setattr(evaluate_module, "get_backend", spy)
    return used


def test_predict_uses_the_runtime_asked_for(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import importlib.util

    build = _build(cli, tmp_path, BINARY)
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 4, 4, 1), np.uint8))
    used = _runtimes_used(monkeypatch)
    for asked, served in ((None, "onnx"), ("torch", "torch"), ("keras", "keras")):
        predict(build, [str(tmp_path / "x.npz")], backend=asked)
        assert used.pop() == served
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # no onnxruntime
    predict(build, [str(tmp_path / "x.npz")])
    assert used.pop() == "torch"  # the run's own backend (built with torch)


def test_inputs_from_several_places_are_all_read(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    build = _build(cli, tmp_path, BINARY)
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        for i in range(2):
            Image.new("L", (4, 4), 40 * i).save(tmp_path / folder / f"{i}.png")
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 4, 4, 1), np.uint8))
    inputs = [str(tmp_path / "one"), str(tmp_path / "two"), str(tmp_path / "x.npz")]
    results = predict(build, inputs)
    assert len(results) == 7
    np.savez(tmp_path / "objects.npz", x=np.array([object(), 1], dtype=object))
    with pytest.raises(UsageError) as info:
        predict(build, [str(tmp_path / "objects.npz")])
    assert str(info.value).startswith(f"{tmp_path / 'objects.npz'}: ")
    assert "allow_pickle=False" in str(info.value)  # never unpickled
    np.savez(tmp_path / "flat.npz", x=np.zeros((3, 16)))
    with pytest.raises(UsageError) as info:
        predict(build, [str(tmp_path / "flat.npz")])
    assert str(info.value).startswith(f"{tmp_path / 'flat.npz'}: x has shape (3, 16)")


def test_evaluating_on_given_data_counts_every_split(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from specnet.evaluate import evaluate
    from specnet.spec import NpzData

    build = _build(cli, tmp_path, BINARY)
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 255, (6, 4, 4, 1), dtype=np.uint8),
             y=np.arange(6) % 2, x_test=rng.integers(0, 255, (4, 4, 4, 1), dtype=np.uint8),
             y_test=np.arange(4) % 2)  # fmt: skip
    report = evaluate(build, data=NpzData(source="npz", path=str(tmp_path / "d.npz")))
    assert (report.split, report.samples) == ("given data", 10)
    assert sum(map(sum, report.confusion)) == 10
    # per-class figures from the confusion matrix, computed here
    matrix = np.array(report.confusion, dtype=float)
    for i, row in enumerate(report.per_class):
        tp, predicted, actual = matrix[i, i], matrix[:, i].sum(), matrix[i].sum()
        p = tp / predicted if predicted else 0.0
        r = tp / actual if actual else 0.0
        assert math.isclose(row["precision"], p)
        assert math.isclose(row["recall"], r)
        assert math.isclose(row["f1"], 2 * p * r / (p + r) if p + r else 0.0)
    # a class that never occurs has recall 0 (not 1), and so f1 0
    only_no = tmp_path / "only_no.npz"
    np.savez(only_no, x=rng.integers(0, 255, (5, 4, 4, 1), dtype=np.uint8), y=np.zeros(5, int))
    report = evaluate(build, data=NpzData(source="npz", path=str(only_no)))
    assert (report.per_class[1]["recall"], report.per_class[1]["f1"]) == (0.0, 0.0)
    assert report.per_class[1]["support"] == 0


def test_short_class_names_get_columns_five_wide() -> None:
    rows = [
        {"class": "a", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2},
        {"class": "b", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
    ]
    lines = Evaluation("validation", 2, 0.0, 1.0, [[2, 0], [0, 0]], rows).text().splitlines()
    assert lines[-3:] == ["      a     b", "a     2     0", "b     0     0"]


def test_text_shows_four_classes_by_default_and_csv_takes_one_result() -> None:
    names = ["a", "b", "c", "d", "e", "f"]
    probabilities = dict(zip(names, [0.5, 0.2, 0.1, 0.1, 0.06, 0.04], strict=True))
    one = [{"input": "x.png", "class": "a", "probability": 0.5, "probabilities": probabilities,
            "top": [[n, p] for n, p in probabilities.items()]}]  # fmt: skip
    assert predictions_text(one) == "x.png: a (0.500)  b 0.200  c 0.100  d 0.100"
    assert predictions_csv(one).splitlines() == [
        "input,class,probability,a,b,c,d,e,f",
        "x.png,a,0.5,0.5,0.2,0.1,0.1,0.06,0.04",
    ]


def test_evaluate_names_its_split_and_uses_the_runtime_asked_for(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import specnet.evaluate as evaluate_module

    spec = {**BINARY, "data": {"source": "synthetic", "samples": 8},
            "train": {**BINARY["train"], "validation_split": 0.0}}  # fmt: skip
    build = _build(cli, tmp_path, spec)
    used = _runtimes_used(monkeypatch)
    report = evaluate_module.evaluate(build, backend="keras")
    assert (report.split, report.samples, used) == ("training", 8, ["keras"])
    split = {**spec, "name": "split", "train": {**spec["train"], "validation_split": 0.25}}
    assert evaluate_module.evaluate(_build(cli, tmp_path, split, "split")).split == "validation"
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "t.npz", x=rng.integers(0, 255, (6, 4, 4, 1), dtype=np.uint8),
             y=np.arange(6) % 2, x_test=rng.integers(0, 255, (3, 4, 4, 1), dtype=np.uint8),
             y_test=np.arange(3) % 2)  # fmt: skip
    data = {"source": "npz", "path": str(tmp_path / "t.npz")}
    tested = {**BINARY, "name": "tested", "data": data}
    report = evaluate_module.evaluate(_build(cli, tmp_path, tested, "tested"))
    assert (report.split, report.samples) == ("test", 3)
