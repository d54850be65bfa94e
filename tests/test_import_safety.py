"""Importing never runs code from a file, reads only the file it was given, and meets hostile
input with one located exit 2 — never a traceback."""

from __future__ import annotations

import base64
import json
import marshal
import os
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specnet.errors import SpecnetError
from specnet.importers.keras_config import read_json, translate
from specnet.shapes import infer
from specnet.spec import spec_from_dict
from tests.conftest import REALWORLD
from tests.test_import import _keras1_files

REAL = REALWORLD
MARKER = Path("/tmp/specnet-lambda-ran")


def _leak(x: Any) -> Any:
    MARKER.write_text("the Lambda's code ran")
    return x


def test_a_lambdas_bytecode_is_refused_and_never_run(tmp_path: Path, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A tf.keras Lambda serialises its function as marshalled bytecode: the import refuses
    it naming the layer, without unmarshalling anything (marshal.loads is made to fail loudly
    during the import) — and the code's side effect never happens."""
    tk = pytest.importorskip("tf_keras")
    model = tk.Sequential([tk.layers.Lambda(_leak, input_shape=(4, 4, 1)), tk.layers.Flatten()])
    MARKER.unlink(missing_ok=True)  # building the model called it once, here
    config = json.loads(model.to_json())
    assert config["config"]["layers"][1]["config"]["function"]  # the bytecode is in the file
    (tmp_path / "m.json").write_text(json.dumps(config))

    function = config["config"]["layers"][1]["config"]["function"]
    payload = base64.b64decode(function[0] if isinstance(function, list) else function)
    loads = marshal.loads

    def guarded(data: Any, *args: Any) -> Any:  # Python's own imports unmarshal .pyc files
        if bytes(data) == payload:
            raise AssertionError("import decoded the Lambda's bytecode")
        return loads(data, *args)

    monkeypatch.setattr(marshal, "loads", guarded)
    try:
        result = cli("import", tmp_path / "m.json", "-o", tmp_path / "b")
    finally:
        monkeypatch.undo()
    assert result.code == 2
    assert "Lambda" in result.err
    assert "never runs" in result.err
    assert not MARKER.exists()
    assert not (tmp_path / "b").exists()


def _weights(tmp_path: Path) -> tuple[Path, Path]:
    json_path, weights, _ = _keras1_files(tmp_path, backend_attr="tensorflow")
    return json_path, weights


@pytest.mark.parametrize("how", ["external link", "soft link", "external storage", "virtual"])
def test_hdf5_that_points_at_other_files_is_refused(tmp_path: Path, cli, how: str) -> None:  # type: ignore[no-untyped-def]
    json_path, weights = _weights(tmp_path)
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f.create_dataset("data", data=np.ones(4, np.float32))
    (tmp_path / "raw.bin").write_bytes(np.ones(4, np.float32).tobytes())
    with h5py.File(weights, "a") as f:
        group = f["dense_1"]
        if how == "external link":
            group["extra"] = h5py.ExternalLink(str(secret), "/data")
        elif how == "soft link":
            group["extra"] = h5py.SoftLink("/convolution2d_1")
        elif how == "external storage":
            group.create_dataset(
                "extra", shape=(4,), dtype="f4", external=[(str(tmp_path / "raw.bin"), 0, 16)]
            )
        else:
            layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
            layout[:] = h5py.VirtualSource(str(secret), "data", shape=(4,))
            group.create_virtual_dataset("extra", layout)
    result = cli("import", json_path, "--weights", weights, "-o", tmp_path / "b")
    assert result.code == 2, result.err
    words = {
        "external link": "external link",
        "soft link": "soft link",
        "external storage": "external files",
        "virtual": "virtual",
    }
    assert words[how] in result.err
    assert "Traceback" not in result.err


def test_a_weight_of_the_wrong_shape_is_refused_before_it_is_read(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    json_path, weights = _weights(tmp_path)
    with h5py.File(weights, "a") as f:
        del f["dense_1"]["dense_1_W"]
        f["dense_1"].create_dataset("dense_1_W", shape=(61, 6), dtype="f4")
    result = cli("import", json_path, "--weights", weights, "-o", tmp_path / "b")
    assert result.code == 2
    assert "dense_1_W: shape (61, 6), the model needs (60, 6)" in result.err


def test_a_network_over_the_parameter_limit_is_refused_before_weights(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    config = {
        "class_name": "Sequential",
        "config": [
            {
                "class_name": "Flatten",
                "config": {"name": "f", "batch_input_shape": [None, 64, 64, 3]},
            },
            {"class_name": "Dense", "config": {"name": "d", "units": 100_000}},
        ],
    }
    (tmp_path / "big.json").write_text(json.dumps(config))
    result = cli("import", tmp_path / "big.json", "-o", tmp_path / "b")
    assert result.code == 2
    assert "params" in result.err.lower() or "parameters" in result.err.lower()


@pytest.mark.parametrize(
    "what",
    ["huge", "deep", "not json", "a list", "no layers", "truncated h5", "truncated zip", "binary"],
)
def test_hostile_files_are_one_clear_error(tmp_path: Path, cli, what: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "model.json"
    if what == "huge":
        path.write_text('{"class_name": "Sequential", "config": [' + " " * (33 << 20) + "]}")
    elif what == "deep":
        path.write_text('{"a": ' * 5000 + "1" + "}" * 5000)
    elif what == "not json":
        path.write_text('{"class_name": "Sequential", "config": [}')
    elif what == "a list":
        path.write_text("[1, 2]")
    elif what == "no layers":
        path.write_text('{"class_name": "Sequential", "config": []}')
    elif what == "truncated h5":
        source = REAL / "keras2" / "tfk2.11_full_mnist_cnn_trained.h5"
        if not source.exists():
            pytest.skip("../shared/realworld is not here")
        path = tmp_path / "model.h5"
        path.write_bytes(source.read_bytes()[:400_000])
    elif what == "truncated zip":
        path = tmp_path / "model.keras"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", "{}")
            archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 5000)
        path.write_bytes(path.read_bytes()[:-30])
    else:
        path.write_bytes(bytes(range(256)) * 8)
    result = cli("import", path, "-o", tmp_path / "b")
    assert result.code == 2, (result.out, result.err)
    assert "Traceback" not in result.err
    assert str(path.name) in result.err


# ----------------------------------------------------------------------------- fuzzing

_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.integers(-3, 70), max_size=5),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _corpus() -> list[bytes]:
    texts = []
    for name in (
        "caiman/cnn_model.json",
        "keras1/k1.2.0_tf_nvidia_steering.json",
        "keras2/tfk2.4.0_dict_inputlayer_monster_energy.json",
    ):
        if (REAL / name).exists():
            texts.append((REAL / name).read_bytes())
    config = {
        "class_name": "Functional",
        "config": {
            "name": "m",
            "layers": [
                {
                    "class_name": "InputLayer",
                    "name": "in",
                    "config": {"batch_shape": [None, 8, 8, 3], "name": "in"},
                    "inbound_nodes": [],
                },
                {
                    "class_name": "Conv2D",
                    "name": "c",
                    "config": {"name": "c", "filters": 4, "kernel_size": [3, 3], "padding": "same"},
                    "inbound_nodes": [[["in", 0, 0, {}]]],
                },
                {
                    "class_name": "Conv2D",
                    "name": "d",
                    "config": {"name": "d", "filters": 4, "kernel_size": 1},
                    "inbound_nodes": [[["in", 0, 0, {}]]],
                },
                {
                    "class_name": "Add",
                    "name": "a",
                    "config": {"name": "a"},
                    "inbound_nodes": [[["c", 0, 0, {}], ["d", 0, 0, {}]]],
                },
                {
                    "class_name": "Flatten",
                    "name": "f",
                    "config": {"name": "f"},
                    "inbound_nodes": [[["a", 0, 0, {}]]],
                },
                {
                    "class_name": "Dense",
                    "name": "o",
                    "config": {"name": "o", "units": 3, "activation": "softmax"},
                    "inbound_nodes": [[["f", 0, 0, {}]]],
                },
            ],
            "input_layers": [["in", 0, 0]],
            "output_layers": [["o", 0, 0]],
        },
    }
    texts.append(json.dumps(config).encode())
    return texts


CORPUS = _corpus()


@settings(
    max_examples=int(os.environ.get("SPECNET_IMPORT_FUZZ", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.integers(0, len(CORPUS) - 1),
    st.lists(st.tuples(st.integers(0, 10**6), _JUNK, st.booleans()), min_size=1, max_size=4),
)
def test_mutated_keras_configs_import_or_fail_cleanly(
    which: int, edits: list[tuple[int, Any, bool]]
) -> None:
    """Every mutated config (a value replaced by junk or a key deleted, anywhere) is either
    imported or refused with a SpecnetError — nothing else escapes."""
    config = json.loads(CORPUS[which])
    if isinstance(config, str):
        config = json.loads(config)
    for position, junk, delete in edits:
        paths = _paths(config)[1:]
        if not paths:
            break
        path = paths[position % len(paths)]
        parent = config
        for key in path[:-1]:
            parent = parent[key]
        if delete and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = junk
    try:
        top, where = read_json(json.dumps(config).encode(), "fuzz.json")
        model = translate(top, where)
        infer(spec_from_dict(model.spec, "fuzz.json"))
    except SpecnetError:
        pass
