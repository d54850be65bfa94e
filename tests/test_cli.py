"""The CLI verbs, their exit codes and outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import specnet
from tests.conftest import ALL_SPECS, ROOT

SEED = ROOT / "specs" / "seed_cnn.yaml"


def test_version(cli) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [sys.executable, "-m", "specnet", "--version"], capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == f"specnet {specnet.__version__}"


def test_help_has_examples(cli) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [sys.executable, "-m", "specnet", "--help"], capture_output=True, text=True, check=True
    )
    assert "examples (they work anywhere" in proc.stdout
    assert "specnet init net.yaml --example seed_cnn" in proc.stdout
    assert "exit codes" in proc.stdout


def test_no_verb_prints_help_and_exits_2(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli()
    assert result.code == 2
    assert "usage: specnet" in result.out


def test_bad_usage_is_one_line_exit_2(cli) -> None:  # type: ignore[no-untyped-def]
    for args in (["frobnicate"], ["summary"], ["validate", str(SEED), "--max-params", "many"]):
        result = cli(*args)
        assert result.code == 2
        assert result.err.startswith("specnet: error: ")
        assert len(result.err.strip().splitlines()) == 1
        assert "Traceback" not in result.err


def test_validate_many(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("validate", *ALL_SPECS, "--max-params", "140000000")  # VGG16's 138 M
    assert result.code == 0
    assert result.out.count(": ok (") == len(ALL_SPECS)
    mixed = cli("validate", SEED, ROOT / "tests/bad_specs/zero_filters.yaml")
    assert mixed.code == 2
    assert "seed_cnn.yaml: ok" in mixed.out
    assert "1 of 2 specs are invalid" in mixed.err


def test_summary_table(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("summary", SEED)
    assert result.code == 0
    assert 'Model: "seed_cnn"' in result.out
    assert " conv2d (Conv2D)" in result.out
    assert "(None, 30, 30, 32)" in result.out
    assert "Total params: 22,499" in result.out


def test_summary_json(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("summary", ROOT / "specs/keras/mnist_convnet.yaml", "--json")
    doc = json.loads(result.out)
    assert doc["name"] == "mnist_convnet"
    assert doc["input_shape"] == [28, 28, 1]
    assert doc["total_params"] == 34_826
    assert [layer["type"] for layer in doc["layers"]][:2] == ["Conv2D", "MaxPool"]
    assert set(doc["layers"][0]) == {"name", "type", "inputs", "output_shape", "params", "flops"}


def test_limit_flags(cli) -> None:  # type: ignore[no-untyped-def]
    small = cli("summary", ROOT / "specs/keras/cifar10_cnn.yaml", "--max-params", "1000")
    assert small.code == 2
    assert "over the limit of 1,000" in small.err
    tight = cli("validate", SEED, "--max-activation-mb", "0.5")
    assert tight.code == 2
    assert "activations for one batch of 32" in tight.err


def test_init_writes_a_valid_spec_and_never_overwrites(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "my-net.yaml"
    result = cli("init", target)
    assert result.code == 0
    assert (tmp_path / "specnet.schema.json").exists()
    assert cli("validate", target).code == 0
    target.write_text("# my own work\n")
    again = cli("init", target)
    assert again.code == 2
    assert "already exists; pass --force" in again.err
    assert target.read_text() == "# my own work\n"
    assert cli("init", target, "--force").code == 0
    assert "name: my-net" in target.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_schema_verb(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    printed = cli("schema")
    assert json.loads(printed.out)["$schema"] == "http://json-schema.org/draft-07/schema#"
    out = tmp_path / "s.json"
    assert cli("schema", "-o", out).code == 0
    assert out.read_text() == printed.out
    assert cli("schema", "-o", out).code == 2


MNIST_SUMMARY = """\
Model: "mnist_convnet"   input (None, 28, 28, 1)
_________________________________________________________________________
 Layer (type)                  Output Shape            Param #     FLOPs
=========================================================================
 conv2d (Conv2D)               (None, 26, 26, 32)          320  411.01 K
 max_pooling2d (MaxPool)       (None, 13, 13, 32)            0   21.63 K
 conv2d_1 (Conv2D)             (None, 11, 11, 64)       18,496    4.47 M
 max_pooling2d_1 (MaxPool)     (None, 5, 5, 64)              0    6.40 K
 flatten (Flatten)             (None, 1600)                  0         0
 dropout (Dropout)             (None, 1600)                  0         0
 dense (Dense)                 (None, 10)               16,010   32.01 K
=========================================================================
 Total params: 34,826 (136.04 KB)
 Forward FLOPs per example: 4.94 M
 Activation memory per batch of 128: 19.72 MB
_________________________________________________________________________
"""


def test_summary_table_is_keras_like(cli) -> None:  # type: ignore[no-untyped-def]
    """The whole table, as a Keras user reads it. Its parameter counts are keras.io's published
    summary of the "Simple MNIST convnet" (320, 18,496, 16,010; 34,826 in all); FLOPs are
    2 per multiply-add (conv2d: 26·26·32·(2·9 + 1) = 411,008), memory float32 at batch 128."""
    result = cli("summary", ROOT / "specs" / "keras" / "mnist_convnet.yaml")
    assert result.code == 0
    assert result.out == MNIST_SUMMARY


def test_summary_figures_switch_units() -> None:
    from specnet.shapes import _si

    assert [_si(v) for v in (0, 999, 1_000, 1_000_000, 1_500_000, 10**9, 2 * 10**9)] == [
        "0", "999", "1.00 K", "1.00 M", "1.50 M", "1.00 G", "2.00 G"
    ]  # fmt: skip
