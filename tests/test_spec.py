"""Loading: good specs, Keras aliases, automatic names, strict fields, the YAML 1.2 reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from specnet import SpecError, load_spec, loads_spec, spec_from_dict
from specnet.spec import LAYER_KINDS, Conv2D, MaxPool
from tests.conftest import ALL_SPECS, ROOT

MINIMAL = """\
name: t
input_shape: [8, 8, 1]
layers:
"""


def _load(layers: str, extra: str = "") -> object:
    return loads_spec(MINIMAL + layers + extra, "t.yaml")


def _problem(text: str) -> str:
    with pytest.raises(SpecError) as info:
        loads_spec(text, "t.yaml")
    return str(info.value)


@pytest.mark.parametrize("path", ALL_SPECS, ids=lambda p: p.stem)
def test_bundled_specs_load(path: Path) -> None:
    spec = load_spec(path)
    names = [layer.name for layer in spec.layers]
    assert all(names)
    assert len(set(names)) == len(names)


def test_keras_aliases_map_to_one_kind() -> None:
    spec = loads_spec(
        MINIMAL + "  - {type: Convolution2D, filters: 2, kernel_size: 3}\n"
        "  - {type: Conv2D, filters: 2, kernel_size: 1}\n"
        "  - {type: MaxPooling2D}\n  - {type: MaxPool2D, pool_size: 1}\n"
        "  - {type: MaxPool, pool_size: 1}\n"
    )
    kinds = [type(layer) for layer in spec.layers]
    assert kinds == [Conv2D, Conv2D, MaxPool, MaxPool, MaxPool]


def test_automatic_names_follow_keras_and_avoid_user_names() -> None:
    spec = loads_spec(
        MINIMAL + "  - {type: Conv2D, filters: 2, kernel_size: 1, name: conv2d_1}\n"
        "  - {type: Conv2D, filters: 2, kernel_size: 1}\n"
        "  - {type: Conv2D, filters: 2, kernel_size: 1}\n"
        "  - {type: MaxPooling2D}\n  - {type: Flatten}\n  - {type: Dense, units: 2}\n"
        "  - {type: Dense, units: 2}\n  - {type: Activation, activation: softmax}\n"
    )
    assert [layer.name for layer in spec.layers] == [
        "conv2d_1",
        "conv2d",
        "conv2d_2",
        "max_pooling2d",
        "flatten",
        "dense",
        "dense_1",
        "activation",
    ]


def test_defaults_follow_keras() -> None:
    spec = loads_spec(
        MINIMAL + "  - {type: Conv2D, filters: 4, kernel_size: 3}\n  - {type: MaxPool}\n"
    )
    conv, pool = spec.layers
    assert isinstance(conv, Conv2D)
    assert isinstance(pool, MaxPool)
    assert conv.kernel_size == (3, 3)
    assert (conv.strides, conv.padding, conv.dilation_rate) == ((1, 1), "valid", (1, 1))
    assert (conv.activation, conv.use_bias) == (None, True)
    assert (conv.kernel_initializer, conv.bias_initializer) == ("glorot_uniform", "zeros")
    assert (pool.pool_size, pool.strides, pool.padding) == ((2, 2), None, "valid")
    optimizer = spec.train.optimizer
    assert (optimizer.type, optimizer.learning_rate) == ("adam", 0.001)
    assert spec.train.batch_size == 32


def test_optimizer_shorthand_and_mapping() -> None:
    short = _load("  - {type: Flatten}\n", "train:\n  optimizer: sgd\n")
    assert short.train.optimizer.learning_rate == 0.01  # type: ignore[attr-defined]
    full = _load(
        "  - {type: Flatten}\n", "train:\n  optimizer: {type: RMSprop, learning_rate: 1e-4}\n"
    )
    assert full.train.optimizer.learning_rate == 1e-4  # type: ignore[attr-defined]


def test_resolved_spec_round_trips() -> None:
    spec = load_spec(ALL_SPECS[0])
    resolved = spec.resolved()
    again = spec_from_dict(resolved)
    assert again.resolved() == resolved
    assert resolved["layers"][0]["name"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"8"', "expected an integer, received the string '8'"),
        ("8.0", "expected an integer, received 8.0"),
        ("true", "expected an integer, received true"),
        ("08", "leading zero"),
        ("0", "expected a value greater than 0"),
    ],
)
def test_integers_are_strict(value: str, message: str) -> None:
    assert message in _problem(
        MINIMAL + f"  - {{type: Conv2D, filters: {value}, kernel_size: 1}}\n"
    )


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "Yes", "NO"])
def test_yaml_11_booleans_are_refused_with_a_hint(word: str) -> None:
    text = _problem(
        MINIMAL + f"  - {{type: Conv2D, filters: 2, kernel_size: 1, use_bias: {word}}}\n"
    )
    assert "write true or false" in text


def test_yaml_12_scalars() -> None:
    spec = _load(
        "  - {type: Flatten}\n", "train:\n  optimizer: {type: adam, learning_rate: 1e-3}\n"
    )
    assert spec.train.optimizer.learning_rate == 0.001  # type: ignore[attr-defined]
    named = loads_spec("name: 'no'\ninput_shape: [0x8, 0o10, 1]\nlayers: [{type: Flatten}]\n")
    assert named.name == "no"
    assert named.input_shape == (8, 8, 1)


def test_anchors_and_merge_keys() -> None:
    spec = loads_spec(
        MINIMAL + "  - &conv {type: Conv2D, filters: 2, kernel_size: 3, padding: same}\n"
        "  - {<<: *conv, filters: 5}\n"
    )
    first, second = spec.layers
    assert isinstance(second, Conv2D)
    assert (second.filters, second.padding) == (5, "same")
    assert first.name != second.name


def test_all_errors_are_collected_and_sorted() -> None:
    text = _problem(
        "name: t\ninput_shape: [8, 8, 0]\nlayers:\n"
        "  - {type: Dense, units: -1, activaton: relu}\n"
        "train: {epochs: 0}\n"
    )
    lines = [line for line in text.splitlines() if line.startswith("t.yaml:")]
    assert [line.split(": ")[1] for line in lines] == [
        "input_shape[2]",
        "layers[0].units",
        "layers[0].activaton",
        "train.epochs",
    ]
    assert "did you mean `activation`?" in text
    assert "4 problems found" in text


def test_received_values_are_truncated() -> None:
    text = _problem(MINIMAL + "  - {type: Dense, units: '" + "x" * 5000 + "'}\n")
    assert len(text) < 400


def test_every_layer_kind_has_a_distinct_type() -> None:
    spellings = [
        literal
        for kind in LAYER_KINDS
        for literal in kind.model_fields["type"].annotation.__args__  # type: ignore[union-attr]
    ]
    assert len({kind.KIND for kind in LAYER_KINDS}) == len(LAYER_KINDS)
    assert len(set(spellings)) == len(spellings), "a `type` spelling names two layer kinds"
    assert all(kind.KIND in kind.model_fields["type"].annotation.__args__ for kind in LAYER_KINDS)  # type: ignore[union-attr]


def test_spec_from_dict_reports_field_paths_without_lines() -> None:
    with pytest.raises(SpecError) as info:
        spec_from_dict({"name": "t", "input_shape": [8, 8, 1], "layers": [{"type": "Dense"}]})
    assert "layers[0].units: missing required field" in str(info.value)


def test_a_validator_panic_is_a_located_exit_2(tmp_path: Path, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """pydantic-core reports a Rust panic as pyo3_runtime.PanicException, a BaseException: it
    must end as the same one-line exit 2 as any spec error. No public input triggers one today,
    so the validator is made to raise the exception pyo3 raises (same name, module and base)."""
    from specnet.spec import Spec

    panic = type("PanicException", (BaseException,), {"__module__": "pyo3_runtime"})

    def crash(*args: object, **kwargs: object) -> None:
        raise panic("Python API call failed\nnote: run with RUST_BACKTRACE=1")

    monkeypatch.setattr(Spec, "model_validate", crash)
    spec = tmp_path / "s.yaml"
    spec.write_text("name: t\ninput_shape: [8, 8, 1]\nlayers: [{type: Flatten}]\n")
    result = cli("validate", spec)
    assert result.code == 2
    assert result.err.startswith(
        f"{spec}:1:1: the validator crashed on this spec (pydantic-core: Python API call failed)"
    )
    assert "Traceback" not in result.err
    assert "RUST_BACKTRACE" not in result.err
    assert "hint: please report it with the spec attached" in result.err
    for message, shown in (("", "no detail"), ("x" * 300, "x" * 200)):
        monkeypatch.setattr(Spec, "model_validate", lambda *a, m=message, **k: _raise(panic(m)))
        with pytest.raises(SpecError) as info:
            load_spec(spec)
        assert info.value.issues[0].message == (  # type: ignore[attr-defined]
            f"the validator crashed on this spec (pydantic-core: {shown})"
        )

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Spec, "model_validate", interrupted)
    with pytest.raises(KeyboardInterrupt):  # only the panic is translated
        load_spec(spec)


_BASE = {
    "name": "t",
    "input_shape": [8, 8, 1],
    "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 2}],
}


@pytest.mark.parametrize(
    ("change", "field", "message", "hint"),
    [
        (
            {"layers": [{"type": "MaxPool", "pool_size": "(2", "2)": None}]},
            "layers[0].pool_size",
            "expected a positive integer or a pair [height, width] of them, received the "
            "string '(2'",
            "write the pair in square brackets, e.g. [2, 2]: YAML reads parentheses as text",
        ),
        (
            {"layers": [{"type": "MaxPool", "pool_size": "two"}]},
            "layers[0].pool_size",
            "expected a positive integer or a pair [height, width] of them, received the "
            "string 'two'",
            "write an integer such as 3, or [3, 3]",
        ),
        (
            {"input_shape": [8, 8, 1, 1]},
            "input_shape",
            "expected 3 values [height, width, channels], received a list of 4 items",
            "e.g. [32, 32, 3]; a grey image has 1 channel: [28, 28, 1]",
        ),
        (
            {"layers": [{"type": "MaxPool", "padding": 5}]},
            "layers[0].padding",
            "expected 'valid' or 'same', received 5",
            "",
        ),
        (
            {"layers": [{"type": "Dense", "units": False}]},
            "layers[0].units",
            "expected an integer, received false",
            "",
        ),
        (
            {"layers": [{"type": "Dense", "units": -(2**70)}]},
            "layers[0].units",
            "expected a value greater than 0, received a negative integer of 71 bits",
            "",
        ),
        (
            {"layers": [{"type": "Dense", "units": 2**64}]},
            "layers[0].units",
            "expected a value at most 9223372036854775807, received an integer of 65 bits",
            "",
        ),
        (
            {"layers": [{"type": "Dense", "units": 2**63}]},
            "layers[0].units",
            "expected a value at most 9223372036854775807, received 9223372036854775808",
            "",
        ),
        (
            {"data": 5},
            "data",
            "expected a mapping of fields, received 5",
            "e.g. {source: folder, path: photos}",
        ),
        ({"train": {"epoch": 5}}, "train.epoch", "unknown field `epoch`", "did you mean `epochs`?"),
        (
            {"train": {"optimizer": {"type": "sgd", "momentun": 0.9}}},
            "train.optimizer.momentun",
            "unknown field `momentun`",
            "did you mean `momentum`?",
        ),
        (
            {"train": {"optimizer": {"type": "Adam", "beta1": 0.9}}},
            "train.optimizer.beta1",
            "unknown field `beta1`",
            "did you mean `beta_1`?",
        ),
        (
            {"train": {"optimizer": {"type": "rmsprop", "centred": True}}},
            "train.optimizer.centred",
            "unknown field `centred`",
            "did you mean `centered`?",
        ),
        (
            {"data": {"source": "synthetic", "sample": 10}},
            "data.sample",
            "unknown field `sample`",
            "did you mean `samples`?",
        ),
        (
            {"data": {"source": "npz", "path": "x.npz", "pth": 1}},
            "data.pth",
            "unknown field `pth`",
            "did you mean `path`?",
        ),
        (
            {"data": {"source": "folder", "path": "x", "paths": 1}},
            "data.paths",
            "unknown field `paths`",
            "did you mean `path`?",
        ),
        (
            {"data": {"source": "digits", "zzz": 1}},
            "data.zzz",
            "unknown field `zzz`",
            "valid fields here: source",
        ),
        (
            {"layers": [{"type": "MaxPool", "pool": 2}]},
            "layers[0].pool",
            "unknown field `pool`",
            "did you mean `pool_size`?",
        ),
        ({"layer": []}, "layer", "unknown field `layer`", "did you mean `layers`?"),
        (
            {"train": [1, 2]},
            "train",
            "expected a mapping of fields, received a list of 2 items",
            "e.g. `optimizer: adam`",
        ),
        (
            {"layers": [[1]]},
            "layers[0]",
            "expected a mapping of fields, received a list of 1 items",
            "e.g. {type: Dense, units: 10}",
        ),
        (
            {"layers": [{"units": 3}]},
            "layers[0]",
            "expected a mapping with a `type` field, received a mapping with 1 keys",
            "write {type: Dense, units: 10}",
        ),
        (
            {"input_shape": 32},
            "input_shape",
            "expected 3 values [height, width, channels], received 32",
            "e.g. [32, 32, 3]; a grey image has 1 channel: [28, 28, 1]",
        ),
        ({"class_names": "abc"}, "class_names", "expected a list, received the string 'abc'", ""),
        (
            {"layers": [{"type": "Flatten", "name": "my-layer"}, {"type": "Dense", "units": 2}]},
            "layers[0].name",
            "expected a name of letters, digits or '_' (at most 64)",
            "start with a letter or '_'",
        ),
        (
            {"name": "9t"},
            "name",
            "expected a name of letters, digits or '_' or '-' (at most 64)",
            "start with a letter or '_'",
        ),
        (
            {"train": {"loss": "categorical"}},
            "train.loss",
            "expected 'categorical_crossentropy', "
            "'sparse_categorical_crossentropy' or 'binary_crossentropy', received the string "
            "'categorical'",
            "did you mean 'categorical_crossentropy'?",
        ),
        (
            {"layers": [{"type": "MaxPool", "padding": "Same"}]},
            "layers[0].padding",
            "expected 'valid' or 'same', received the string 'Same'",
            "did you mean 'same'?",
        ),
        (
            {"layers": [{"type": "Dense", "units": 32.0}]},
            "layers[0].units",
            "expected an integer, received 32.0",
            "write 32",
        ),
        (
            {"layers": [{"type": "Dense", "units": 3.5}]},
            "layers[0].units",
            "expected an integer, received 3.5",
            "",
        ),
        (
            {"layers": [{"type": "Dense", "units": True}]},
            "layers[0].units",
            "expected an integer, received true",
            "",
        ),
        (
            {"layers": [{"type": "Dense", "units": 0}]},
            "layers[0].units",
            "expected a value greater than 0, received 0",
            "",
        ),
        (
            {"train": {"validation_split": 1.5}},
            "train.validation_split",
            "expected a value less than 1.0, received 1.5",
            "",
        ),
        (
            {"data": {"source": "npz", "path": "x", "pixel_range": [255, 0]}},
            "data.pixel_range",
            "expected [low, high] with low < high",
            "",
        ),
        (
            {"train": {"optimizer": "adamx"}},
            "train.optimizer.type",
            "unknown `type` 'adamx'",
            "did you mean 'adam'?",
        ),
        (
            {"data": {"source": "web"}},
            "data.source",
            "unknown `source` 'web'",
            "expected one of: synthetic, npz, folder, digits",
        ),
        (
            {"layers": [{"type": "Conv3D"}]},
            "layers[0].type",
            "unknown layer type 'Conv3D'",
            "did you mean 'Conv2D'?",
        ),
        (
            {"layers": [{"type": "Dense"}]},
            "layers[0].units",
            "missing required field `units`",
            "add `units:` to this mapping",
        ),
        ({"layers": []}, "layers", "expected at least one layer, received an empty list", ""),
        ({"description": 5}, "description", "expected a string, received 5", "quote it"),
        (
            {"train": {"shuffle": "no"}},
            "train.shuffle",
            "expected true or false, received the string 'no'",
            "YAML 1.2 reads yes/no/on/off as text; write true or false",
        ),
        ({"train": {"shuffle": 1}}, "train.shuffle", "expected true or false, received 1", ""),
        *[
            ({"train": {"shuffle": word}}, "train.shuffle",
             f"expected true or false, received the string {word!r}",
             "YAML 1.2 reads yes/no/on/off as text; write true or false")
            for word in ("y", "N", "Off")
        ],
        ({"train": {"shuffle": "maybe"}}, "train.shuffle",
         "expected true or false, received the string 'maybe'", ""),
        ({"description": None}, "description", "expected a string, received null", "quote it"),
        ({"train": {"seed": -1}}, "train.seed", "expected a value at least 0, received -1", ""),
        ({"data": {"source": "synthetic", "noise": 1.5}}, "data.noise",
         "expected a value at most 1.0, received 1.5", ""),
        ({"train": {"validation_split": 1.0}}, "train.validation_split",
         "expected a value less than 1.0, received 1.0", ""),
        ({"data": {"source": "npz", "path": ""}}, "data.path",
         "string should have at least 1 character, received the string ''", ""),
        ({"data": {"source": "npz", "path": "x", "pixel_range": [0, 1, 2]}}, "data.pixel_range",
         "tuple should have at most 2 items after validation, not 3, received a list of 3 items",
         ""),
        ({"data": {"source": "npz", "path": "x", "pixel_range": "0-255"}}, "data.pixel_range",
         "expected a list, received the string '0-255'", ""),
        ({"class_names": "cat dog"}, "class_names",
         "expected a list, received the string 'cat dog'", ""),
        ({"train": 5}, "train", "expected a mapping of fields, received 5",
         "e.g. `optimizer: adam`"),
        ({"layers": [5]}, "layers[0]", "expected a mapping of fields, received 5",
         "e.g. {type: Dense, units: 10}"),
        ({"data": {"path": "x"}}, "data",
         "expected a mapping with a `source` field, received a mapping with 1 keys",
         "write `source: ...`"),
        ({"data": {"source": "folders", "path": "x"}}, "data.source",
         "unknown `source` 'folders'", "did you mean 'folder'?"),
        ({"layers": [{"type": "Dense", "units": 3.0}]}, "layers[0].units",
         "expected an integer, received 3.0", "write 3"),
        ({"layers": [{"type": "Dense", "units": 2.5}]}, "layers[0].units",
         "expected an integer, received 2.5", ""),
        ({"layers": [{"type": "Dense", "units": 2.0**63}]}, "layers[0].units",
         "expected an integer, received 9.223372036854776e+18", ""),  # past int64: no "write"
        ({"layers": [{"type": "Dense", "units": 2.0**62}]}, "layers[0].units",
         "expected an integer, received 4.611686018427388e+18", "write 4611686018427387904"),
        ({"layers": [{"type": "Dense", "units": "3"}]}, "layers[0].units",
         "expected an integer, received the string '3'", "write an integer such as 32"),
        ({"layers": [{"type": "Dropout", "rate": [0.5]}]}, "layers[0].rate",
         "expected a number, received a list of 1 items", ""),
        ({"layers": [{"type": "Dense", "units": 2, "zzz": 1}]}, "layers[0].zzz",
         "unknown field `zzz`",
         "valid fields here: name, type, units, activation, use_bias, kernel_initializer, "
         "bias_initializer, kernel_regularizer, bias_regularizer, inputs"),
        ({"layers": [{"type": "MaxPool", "pool_size": "(3, 5)"}]}, "layers[0].pool_size",
         "expected a positive integer or a pair [height, width] of them, received the string "
         "'(3, 5)'", "write [3, 5]: YAML reads parentheses as text"),
        ({"layers": [{"type": "MaxPool", "pool_size": " (3, x)"}]}, "layers[0].pool_size",
         "expected a positive integer or a pair [height, width] of them, received the string "
         "' (3, x)'",
         "write the pair in square brackets, e.g. [2, 2]: YAML reads parentheses as text"),
    ],
)  # fmt: skip
def test_each_kind_of_mistake_gets_its_message_and_hint(
    change: dict[str, object], field: str, message: str, hint: str
) -> None:
    from specnet.errors import SpecValidationError

    document = {**_BASE, **change}
    if "layer" in change:
        document.pop("layers")
    with pytest.raises(SpecValidationError) as info:
        spec_from_dict(document, "t.py")
    found = {issue.field: issue for issue in info.value.issues}
    assert field in found, [str(i) for i in info.value.issues]
    assert found[field].message.startswith(message), found[field].message
    assert found[field].hint == hint


K1 = "Keras 1's"
KERAS1_CASES = [
    ("layer", "nb_filter", 32, f"`nb_filter` is {K1} `filters`", "write `filters: 32`"),
    ("layer", "subsample", [2, 2], f"`subsample` is {K1} `strides`", "write `strides: [2, 2]`"),
    ("layer", "border_mode", "same", f"`border_mode` is {K1} `padding`", "write `padding: same`"),
    ("layer", "output_dim", 10, f"`output_dim` is {K1} `units`", "write `units: 10`"),
    ("layer", "init", "he_normal", f"`init` is {K1} `kernel_initializer`",
     "write `kernel_initializer: he_normal`"),
    ("layer", "p", 0.5, f"`p` is {K1} `rate`", "write `rate: 0.5`"),
    ("layer", "pool_length", 2, f"`pool_length` is {K1} `pool_size`", "write `pool_size: 2`"),
    ("layer", "dim_ordering", "th",
     f"`dim_ordering` is {K1} data layout; specnet is always channels last",
     "remove it; write input_shape as [height, width, channels] "
     "(`specnet import` converts channels-first models)"),
    ("layer", "nb_epoch", 3, f"`nb_epoch` is {K1} `epochs`", "write `epochs: 3` under `train:`"),
    ("train", "nb_epoch", 3, f"`nb_epoch` is {K1} `epochs`", "write `epochs: 3`"),
    ("train", "lr", 0.01, f"`lr` is {K1} `learning_rate`, an option of the optimizer",
     "write `optimizer: {type: adam, learning_rate: 0.01}`"),
    ("optimizer", "lr", 0.01, f"`lr` is {K1} `learning_rate`", "write `learning_rate: 0.01`"),
    ("layer", "nb_row", 3, f"`nb_row`/`nb_col` are {K1} `kernel_size`",
     "write `kernel_size: [3, 5]`"),
    ("layer", "nb_col", 5, f"`nb_row`/`nb_col` are {K1} `kernel_size`",
     "write `kernel_size: [?, 5]`"),
    ("layer alone", "nb_row", 3, f"`nb_row`/`nb_col` are {K1} `kernel_size`",
     "write `kernel_size: [3, ?]`"),
    ("layer", "init", "HeNormal", f"`init` is {K1} `kernel_initializer`",
     "write `kernel_initializer: HeNormal`"),
    ("layer", "init", {"class_name": "he"}, f"`init` is {K1} `kernel_initializer`",
     "write `kernel_initializer: …`"),
    ("layer", "border_mode", "same valid", f"`border_mode` is {K1} `padding`",
     'write `padding: "same valid"`'),
    ("optimizer", "nb_epoch", 3, f"`nb_epoch` is {K1} `epochs`",
     "write `epochs: 3` under `train:`"),
]  # fmt: skip


@pytest.mark.parametrize(("where", "key", "value", "message", "hint"), KERAS1_CASES)
def test_keras_1_field_names_get_one_message_each(
    where: str, key: str, value: object, message: str, hint: str
) -> None:
    from specnet.errors import SpecValidationError

    layer: dict[str, object] = {"type": "Dense", "units": 2}
    document: dict[str, object] = {**_BASE, "layers": [{"type": "Flatten"}, layer]}
    if where.startswith("layer"):
        layer[key] = value
        if key == "nb_row" and where == "layer":
            layer["nb_col"] = 5
    elif where == "train":
        document["train"] = {key: value}
    else:
        document["train"] = {"optimizer": {"type": "sgd", key: value}}
    with pytest.raises(SpecValidationError) as info:
        spec_from_dict(document)
    (issue,) = info.value.issues  # one message, not "unknown" + "missing"
    assert (issue.message, issue.hint) == (message, hint)
    assert issue.file == "<dict>"


def test_where_api_specs_and_strings_say_they_come_from() -> None:
    from specnet.errors import SpecValidationError
    from specnet.spec import Spec, as_spec

    with pytest.raises(SpecValidationError) as info:
        loads_spec("name: t\n")
    assert all(issue.file == "<string>" for issue in info.value.issues)
    made = spec_from_dict(dict(_BASE))
    assert made.source_file == "<dict>"
    assert made.issue(("name",), "m", "h") == made.issue(("name",), "m", "h")
    assert str(made.issue(("name",), "m")) == "<dict>: name: m"
    spec, source, base = as_spec(made)
    assert (spec, source, base) == (made, "<dict>", Path.cwd())
    spec, source, base = as_spec(ROOT / "specs" / "seed_cnn.yaml")
    assert isinstance(spec, Spec)
    assert (source, base) == (str(ROOT / "specs" / "seed_cnn.yaml"), ROOT / "specs")
    again, source, base = as_spec(spec)
    assert (again, source, base) == (spec, str(ROOT / "specs" / "seed_cnn.yaml"), ROOT / "specs")
    assert Spec.model_construct().source_file == "<spec>"
    assert str(Spec.model_construct().issue(("name",), "m")) == "<spec>: name: m"


def test_resolved_is_plain_json_data_without_the_schema_line() -> None:
    import json

    spec = load_spec(ROOT / "specs" / "seed_cnn.yaml")
    resolved = spec.resolved()
    assert "$schema" not in resolved
    assert "schema_" not in resolved
    assert json.loads(json.dumps(resolved)) == resolved  # lists, not tuples: JSON and YAML alike
    assert resolved["layers"][0]["kernel_size"] == [3, 3]
    assert resolved["train"]["optimizer"] == {
        "weight_decay": None, "clipnorm": None, "clipvalue": None, "global_clipnorm": None,
        "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None, "type": "adam",
        "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False,
    }  # fmt: skip
    assert resolved["train"]["callbacks"] == []
    assert spec_from_dict(resolved).resolved() == resolved


NUMBER_TEXTS = [
    ('"1e-3"', "remove the quotes"),
    ('".5"', "remove the quotes"),
    ('"-2.5"', "remove the quotes"),
    ('"1E-3"', "remove the quotes"),
    ('"1,5"', "write a number such as 0.5"),
    ("'0.5.1'", "write a number such as 0.5"),
]


@pytest.mark.parametrize(("text", "hint"), NUMBER_TEXTS)
def test_remove_the_quotes_only_from_a_number(text: str, hint: str) -> None:
    from specnet.errors import SpecValidationError

    with pytest.raises(SpecValidationError) as info:
        loads_spec(f"name: t\ninput_shape: [2, 2, 1]\nlayers: [{{type: Dropout, rate: {text}}}]\n")
    assert info.value.issues[0].hint == hint


def test_a_pixel_range_must_increase() -> None:
    from specnet.errors import SpecValidationError

    for bad in ([5, 5], [6, 5]):
        with pytest.raises(SpecValidationError, match=r"expected \[low, high\] with low < high"):
            spec_from_dict({**_BASE, "data": {"source": "npz", "path": "x", "pixel_range": bad}})
    ok = spec_from_dict({**_BASE, "data": {"source": "npz", "path": "x", "pixel_range": [0, 255]}})
    assert ok.data.pixel_range == (0.0, 255.0)  # type: ignore[union-attr]


def _raise(exc: BaseException) -> None:
    raise exc


KERAS1_LOCATED = [
    ("layers:\n  - {type: Flatten}\n  - {type: Dense, units: 2, dim_ordering: th}\n",
     "dim_ordering"),
    ("layers:\n  - {type: Flatten}\n  - {type: Dense, units: 2}\ntrain:\n  lr: 0.01\n", "lr"),
    ("layers:\n  - {type: Flatten}\n  - {type: Dense, output_dim: 2}\n", "output_dim"),
    ("layers:\n  - {type: Conv2D, filters: 2, nb_row: 3, nb_col: 3}\n  - {type: Flatten}\n",
     "nb_row"),
]  # fmt: skip


@pytest.mark.parametrize(("layers", "key"), KERAS1_LOCATED)
def test_keras_1_messages_point_at_the_key(layers: str, key: str) -> None:
    from specnet.errors import SpecValidationError

    text = "name: t\ninput_shape: [8, 8, 1]\n" + layers
    with pytest.raises(SpecValidationError) as info:
        loads_spec(text, "k.yaml")
    (issue,) = info.value.issues
    line = next(n for n, row in enumerate(text.splitlines(), 1) if f"{key}:" in row)
    assert (issue.line, issue.column) == (line, text.splitlines()[line - 1].index(key) + 1)


def test_a_parenthesised_pair_in_a_flow_mapping_is_one_message() -> None:
    """`{type: MaxPool, pool_size: (2, 2)}` is read as `pool_size: "(2"` and a key `2)`: one
    message about the pair, not a second about an unknown field `2)`."""
    from specnet.errors import SpecValidationError

    for layer in ("{type: MaxPool, pool_size: (2, 2)}", "{type: MaxPool, pool_size: ( 2 , 2 )}"):
        text = f"name: t\ninput_shape: [8, 8, 1]\nlayers:\n  - {layer}\n  - {{type: Flatten}}\n"
        with pytest.raises(SpecValidationError) as info:
            loads_spec(text)
        (issue,) = info.value.issues
        assert issue.field == "layers[0].pool_size"
        assert issue.hint.startswith("write the pair in square brackets")
    # a key that merely looks like the pair's tail, beside no parenthesis, is still reported
    with pytest.raises(SpecValidationError) as info:
        spec_from_dict({**_BASE, "layers": [{"type": "MaxPool", "2)": None}, {"type": "Flatten"}]})
    assert [issue.field for issue in info.value.issues] == ["layers[0].2)"]


def test_unnamed_layers_avoid_the_names_given_later() -> None:
    spec = spec_from_dict(
        {**_BASE, "layers": [{"type": "Flatten"}, {"type": "Flatten", "name": "flatten"},
                             {"type": "Dense", "units": 2}]}
    )  # fmt: skip
    assert [layer.name for layer in spec.layers] == ["flatten_1", "flatten", "dense"]


def test_files_that_cannot_be_read_are_named(tmp_path: Path) -> None:
    from specnet.errors import UsageError

    (tmp_path / "file.yaml").write_text("name: t\n")
    cases = [
        (tmp_path / "missing.yaml", "no such file"),
        (tmp_path, "is a directory, not a spec file"),
        (tmp_path / "file.yaml" / "x.yaml", "cannot read (Not a directory)"),
    ]
    for path, message in cases:
        with pytest.raises(UsageError) as info:
            load_spec(path)
        assert str(info.value) == f"{path}: {message}"
