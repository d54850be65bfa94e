"""Data splits: a folder's ``train/ val/ test/``, ``--val-data`` / ``--test-data`` (or the
spec's ``validation_data`` / ``test_data``), a stratified validation split, and ``evaluate``
scoring the test split when a run has one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from specnet import loads_spec
from specnet.data import load_data
from tests.helpers import assert_refused
from tests.test_data import _folder

SPEC = """
name: split
input_shape: [8, 8, 3]
layers:
  - {type: Flatten}
  - {type: Dense, units: 3, activation: softmax}
train: {epochs: 1, batch_size: 8}
data: {source: folder, path: images}
"""


def _splits(root: Path) -> None:
    _folder(root / "train", {"cat": 6, "dog": 5, "eel": 4})
    _folder(root / "val", {"cat": 2, "dog": 3})  # a split may lack a class
    _folder(root / "test", {"cat": 1, "dog": 1, "eel": 2})


def test_train_val_test_subfolders_are_the_splits(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    _splits(tmp_path / "images")
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    data = load_data(loads_spec(SPEC), 3, base=tmp_path)
    assert data.x_test is not None
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (15, 5, 4)
    assert data.class_names == ["cat", "dog", "eel"]
    assert sorted(data.y_val.tolist()) == [0, 0, 1, 1, 1]
    assert sorted(data.y_test.tolist()) == [0, 1, 2, 2]
    run = tmp_path / "run"
    assert cli("train", spec, "--backend", "torch", "--out", run, "--quiet").code == 0
    marker = json.loads((run / "specnet.json").read_text())
    assert (marker["data"]["train"], marker["data"]["validation"], marker["data"]["test"]) == (
        15,
        5,
        4,
    )
    report = json.loads(cli("evaluate", run, "--json").out)
    assert (report["split"], report["samples"]) == ("test", 4)


def test_val_and_test_data_of_their_own(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    for name, n in (("train", 30), ("val", 7), ("test", 5)):
        np.savez(
            tmp_path / f"{name}.npz",
            x=rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
            y=rng.integers(0, 3, n),
        )
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.replace("data: {source: folder, path: images}\n", ""))
    run = tmp_path / "run"
    result = cli(
        "train", spec, "--backend", "torch", "--data", tmp_path / "train.npz",
        "--val-data", tmp_path / "val.npz", "--test-data", tmp_path / "test.npz",
        "--out", run, "--quiet",
    )  # fmt: skip
    assert result.code == 0, result.err
    marker = json.loads((run / "specnet.json").read_text())
    # Keras's validation_data: validation_split takes nothing from the training data then
    assert (marker["data"]["train"], marker["data"]["validation"], marker["data"]["test"]) == (
        30,
        7,
        5,
    )
    resolved = (run / "spec.resolved.yaml").read_text()
    assert str(tmp_path / "val.npz") in resolved
    assert str(tmp_path / "test.npz") in resolved
    assert json.loads(cli("evaluate", run, "--json").out)["samples"] == 5
    refused = cli("train", "--resume", run, "--val-data", tmp_path / "val.npz")
    assert refused.code == 2
    assert "--val-data" in refused.err


def test_a_stratified_split_keeps_the_class_proportions(tmp_path: Path) -> None:
    """Labels sorted by class: Keras's split (the last 20%) is all one class; a stratified one
    holds 20% of each, the samples' order kept."""
    y = np.repeat([0, 1, 2], [20, 10, 10])
    x = np.zeros((40, 8, 8, 3), np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    text = SPEC.replace("{source: folder, path: images}", "{source: npz, path: d.npz}")
    plain = load_data(loads_spec(text), 3, base=tmp_path)
    assert set(plain.y_val.tolist()) == {2}
    stratified = load_data(
        loads_spec(text.replace("batch_size: 8}", "batch_size: 8, stratify: true}")),
        3,
        base=tmp_path,
    )
    assert np.bincount(stratified.y_val).tolist() == [4, 2, 2]
    assert np.bincount(stratified.y_train).tolist() == [16, 8, 8]
    assert stratified.y_val.tolist() == sorted(stratified.y_val.tolist())  # order kept


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("val", "class folders ['fox'] are not in the training folder's classes"),
        ("test", "class folders ['fox'] are not in the training folder's classes"),
    ],
)
def test_a_split_with_an_unknown_class_is_refused(
    tmp_path: Path, cli, where: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    _splits(tmp_path / "images")
    _folder(tmp_path / "images" / where, {"fox": 1})
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    result = cli("train", spec, "--backend", "torch", "--out", tmp_path / "run")
    assert_refused(result, message, out=tmp_path / "run")


def test_a_val_monitor_needs_validation_data_of_some_kind(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """validation_split 0 with EarlyStopping on val_loss: refused by validate (no other
    validation data) and by train when a folder turns out to hold no val/; accepted with
    validation data of its own."""
    _folder(tmp_path / "plain", {"cat": 4, "dog": 4, "eel": 4})
    text = SPEC.replace("batch_size: 8}", "batch_size: 8, validation_split: 0.0, callbacks: "
                        "[{type: EarlyStopping, monitor: val_loss}]}")  # fmt: skip
    spec = tmp_path / "s.yaml"
    spec.write_text(text.replace("{source: folder, path: images}", "{source: synthetic}"))
    result = cli("validate", spec)
    assert result.code == 2
    assert "there is no validation data" in result.err
    assert f"{spec}:7:" in result.err
    spec.write_text(text.replace("path: images", "path: plain"))
    result = cli("train", spec, "--backend", "torch", "--out", tmp_path / "run")
    assert result.code == 2, result.err
    assert "there is no validation data" in result.err
    assert not (tmp_path / "run").exists()
    _splits(tmp_path / "images")
    spec.write_text(text)
    result = cli("train", spec, "--backend", "torch", "--out", tmp_path / "run", "--quiet")
    assert result.code == 0, result.err
