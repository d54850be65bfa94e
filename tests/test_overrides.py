"""``specnet train --set FIELD=VALUE``: any spec field for one run, validated as the file is,
recorded in the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from specnet import loads_spec
from specnet.errors import UsageError
from specnet.spec import with_overrides
from tests.helpers import assert_refused

SPEC = """
name: small
input_shape: [8, 8, 3]
layers:
  - {type: Conv2D, filters: 4, kernel_size: 3, activation: relu}
  - {type: Dropout, rate: 0.1}
  - {type: Flatten}
  - {type: Dense, units: 3, activation: softmax}
data: {source: synthetic, samples: 60}
train:
  epochs: 1
  callbacks: [{type: EarlyStopping, patience: 5}]
"""


def test_assignments_reach_any_field() -> None:
    spec = with_overrides(
        loads_spec(SPEC),
        [
            "train.callbacks[0].patience=3",
            "layers[1].rate=0.3",
            "train.optimizer={type: sgd, momentum: 0.9}",
            "train.label_smoothing=0.1",
            "train.callbacks[1]={type: ReduceLROnPlateau, factor: 0.5}",
        ],
    )
    assert spec.train.callbacks[0].patience == 3
    assert spec.layers[1].rate == 0.3
    assert (spec.train.optimizer.type, spec.train.optimizer.momentum) == ("sgd", 0.9)
    assert spec.train.label_smoothing == 0.1
    assert spec.train.callbacks[1].type == "ReduceLROnPlateau"
    assert with_overrides(loads_spec(SPEC), []).resolved() == loads_spec(SPEC).resolved()


def test_a_run_records_its_assignments(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    run = tmp_path / "run"
    result = cli(
        "train", spec, "--backend", "torch", "--set", "train.callbacks[0].patience=2",
        "--set", "layers[1].rate=0.25", "--out", run, "--quiet",
    )  # fmt: skip
    assert result.code == 0, result.err
    resolved = yaml.safe_load((run / "spec.resolved.yaml").read_text())
    assert resolved["train"]["callbacks"][0]["patience"] == 2
    assert resolved["layers"][1]["rate"] == 0.25
    marker = json.loads((run / "specnet.json").read_text())
    assert marker["overrides"] == ["train.callbacks[0].patience=2", "layers[1].rate=0.25"]
    refused = cli("train", "--resume", run, "--set", "train.epochs=3")
    assert refused.code == 2
    assert "--set cannot change them" in refused.err


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        (
            "train.callbacks[0].patience=-1",
            "train.callbacks[0].patience: expected a value at least 0",
        ),
        ("train.optimizer.learning_rat=0.1", "unknown field `learning_rat`"),
        ("layers[9].rate=0.1", "layers[9] does not exist (4 items)"),
        ("train.epochs", "expected FIELD=VALUE"),
        ("train..epochs=2", "cannot read the field path"),
        ("train.label_smoothing=yes please", "train.label_smoothing"),
    ],
)
def test_a_bad_assignment_is_one_error_naming_it(
    tmp_path: Path, cli, assignment: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    result = cli("train", spec, "--set", assignment, "--out", tmp_path / "run")
    assert_refused(result, message, out=tmp_path / "run")


def test_a_path_is_read_strictly() -> None:
    with pytest.raises(UsageError, match="starts with a name"):
        with_overrides(loads_spec(SPEC), ["[0].rate=1"])
