"""``specnet import`` of Keras files: every dialect, the layout traps, the real files.

References are independent of the importer: the library that wrote the file (Keras 3, tf.keras
2 through ``tf_keras``) where it runs here, and a NumPy forward pass written from the backends'
definitions (tests/legacy_reference.py) for channels-first and Theano models, which nothing
installed here runs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from specnet import infer
from specnet.backends import get_backend
from specnet.evaluate import open_run
from specnet.importers import import_model
from specnet.spec import load_spec
from specnet.weights import read_safetensors
from tests import legacy_reference as ref
from tests.conftest import REALWORLD, ROOT
from tests.helpers import assert_agree, busy_weights

REAL = REALWORLD
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realworld is not here")


def predict(folder: Path, x: np.ndarray) -> np.ndarray:
    """The imported build's outputs in ONNX Runtime (specnet's direct graph)."""
    run = open_run(folder)
    onnx = get_backend("onnx")
    model = onnx.build(run.plan)
    onnx.set_weights(model, run.plan, run.weights)
    return np.asarray(onnx.predict(model, x))


# ----------------------------------------------------------------------------- Keras 1, by hand


def _keras1_files(tmp: Path, *, backend_attr: str | None) -> tuple[Path, Path, dict[str, Any]]:
    """A Keras 1 'th' model as Keras 1 wrote it: JSON (nb_filter, border_mode, dim_ordering,
    output_dim, p) and save_weights HDF5 (layer_names, <layer>_W / _b, kernels (out, in, r, c))."""
    rng = np.random.default_rng(3)

    def conv(name: str, n: int, k: int, extra: dict[str, Any]) -> dict[str, Any]:
        config = {
            "name": name,
            "nb_filter": n,
            "nb_row": k,
            "nb_col": k,
            "border_mode": "same",
            "subsample": [1, 1],
            "dim_ordering": "th",
            "init": "glorot_uniform",
            "bias": True,
            "W_regularizer": None,
            "b_regularizer": None,
            "activity_regularizer": None,
            "W_constraint": None,
            "b_constraint": None,
            "trainable": True,
            **extra,
        }
        return {"class_name": "Convolution2D", "config": config}

    layers = [
        conv("convolution2d_1", 4, 3, {"activation": "relu", "batch_input_shape": [None, 3, 9, 7]}),
        {
            "class_name": "MaxPooling2D",
            "config": {
                "name": "maxpooling2d_1",
                "pool_size": [2, 2],
                "strides": [2, 2],
                "border_mode": "valid",
                "dim_ordering": "th",
            },
        },
        conv("convolution2d_2", 5, 2, {"activation": "linear"}),
        {"class_name": "Activation", "config": {"name": "activation_1", "activation": "tanh"}},
        {"class_name": "Dropout", "config": {"name": "dropout_1", "p": 0.5}},
        {"class_name": "Flatten", "config": {"name": "flatten_1"}},
        {
            "class_name": "Dense",
            "config": {
                "name": "dense_1",
                "output_dim": 6,
                "activation": "softmax",
                "init": "glorot_uniform",
                "bias": True,
                "input_dim": None,
            },
        },
    ]
    arrays = {
        "convolution2d_1": [rng.normal(0, 0.5, (4, 3, 3, 3)), rng.normal(0, 0.1, 4)],
        "convolution2d_2": [rng.normal(0, 0.5, (5, 4, 2, 2)), rng.normal(0, 0.1, 5)],
        "dense_1": [rng.normal(0, 0.3, (5 * 4 * 3, 6)), rng.normal(0, 0.1, 6)],
    }
    json_path = tmp / "model.json"
    json_path.write_text(json.dumps({"class_name": "Sequential", "config": layers}))
    weights_path = tmp / "weights.h5"
    with h5py.File(weights_path, "w") as f:
        names = [layer["config"]["name"] for layer in layers]
        f.attrs["layer_names"] = [n.encode() for n in names]
        if backend_attr:
            f.attrs["backend"] = backend_attr.encode()
        for name in names:
            group = f.create_group(name)
            values = arrays.get(name, [])
            weight_names = [f"{name}_{suffix}" for suffix in ("W", "b")[: len(values)]]
            group.attrs["weight_names"] = [w.encode() for w in weight_names]
            for weight, value in zip(weight_names, values, strict=True):
                group.create_dataset(weight, data=value.astype(np.float32))
    return (
        json_path,
        weights_path,
        {k: [v.astype(np.float32) for v in vs] for k, vs in arrays.items()},
    )


def _keras1_reference(x_chw: np.ndarray, arrays: dict[str, Any], theano: bool) -> np.ndarray:
    y = ref.relu(ref.conv_chw(x_chw, *arrays["convolution2d_1"], "same", theano=theano))
    y = ref.max_pool_chw(y, (2, 2), (2, 2))
    y = np.tanh(ref.conv_chw(y, *arrays["convolution2d_2"], "same", theano=theano))
    return ref.softmax(ref.dense(y.reshape(-1), *arrays["dense_1"]))


@pytest.mark.parametrize("theano", [True, False], ids=["theano", "tensorflow"])
def test_a_keras1_channels_first_model_computes_what_its_backend_computed(
    tmp_path: Path, theano: bool
) -> None:
    """Kernels (out, in, r, c) → HWIO, flipped for Theano; Theano's even-kernel 'same' written
    out as padding; the Dense rows after a 'th' Flatten reordered — each checked by value."""
    json_path, weights, arrays = _keras1_files(tmp_path, backend_attr="theano" if theano else None)
    result = import_model(
        json_path,
        weights=weights,
        out=tmp_path / "build",
        kernel_convention=None if theano else "tensorflow",
    )
    assert result.convention == ("theano" if theano else "tensorflow")
    x = np.random.default_rng(0).random((3, 3, 9, 7)).astype(np.float32)  # NCHW, as Keras 1 'th'
    got = predict(result.out, x.transpose(0, 2, 3, 1))
    want = np.stack(
        [_keras1_reference(example.astype(np.float64), arrays, theano) for example in x]
    )
    assert_agree(got, want, "imported Keras 1 vs NumPy")
    summary = (result.out / "summary.txt").read_text()
    assert f"kernel convention: {result.convention}" in summary
    assert "rows of dense_1 reordered from (c, h, w) to (h, w, c)" in summary
    pads = [layer for layer in result.plan.layers if layer.name.endswith("_theano_pad")]
    assert [p.name for p in pads] == (["convolution2d_2_theano_pad"] if theano else [])


def test_weights_that_do_not_say_their_backend_need_the_convention(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    json_path, weights, _ = _keras1_files(tmp_path, backend_attr=None)
    result = cli("import", json_path, "--weights", weights, "-o", tmp_path / "b")
    assert result.code == 2
    assert "--kernel-convention theano|tensorflow" in result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "b").exists()  # nothing written


@needs_real
@pytest.mark.parametrize(("convention", "argmax"), [("theano", 5), ("tensorflow", 3)])
def test_the_real_keras1_theano_model_reads_the_digit(
    tmp_path: Path, convention: str, argmax: int
) -> None:
    """keras2cpp's Keras 1 model saved under Theano: the sample digit is a 5 when its kernels
    are flipped as Theano ran them (the README's wrong answer without the flip: 3)."""
    base = REAL / "keras1" / "k1_th_mnist_cnn.keras2cpp"
    result = import_model(
        f"{base}.json",
        weights=f"{base}.weights.h5",
        out=tmp_path / "b",
        kernel_convention=convention,
    )
    text = Path(f"{base}.sample_mnist.dat").read_text()
    head, rest = text.split("\n", 1)
    digit = np.array(re.findall(r"[-+0-9.eE]+", rest), dtype=np.float32).reshape(
        [int(v) for v in head.split()]
    )
    got = predict(result.out, digit.transpose(1, 2, 0)[None])[0]
    assert int(got.argmax()) == argmax
    if convention == "theano":
        with h5py.File(f"{base}.weights.h5") as f:
            w = {
                name: [np.asarray(f[name][f"{name}_{s}"]) for s in "Wb"]
                for name in ("convolution2d_1", "convolution2d_2", "dense_1", "dense_2")
            }
        y = ref.relu(
            ref.conv_chw(digit.astype(np.float64), *w["convolution2d_1"], "same", theano=True)
        )
        y = ref.relu(ref.conv_chw(y, *w["convolution2d_2"], "same", theano=True))
        y = ref.max_pool_chw(y, (2, 2), (2, 2)).reshape(-1)
        want = ref.softmax(ref.dense(ref.relu(ref.dense(y, *w["dense_1"])), *w["dense_2"]))
        assert_agree(got, want, "keras2cpp digit")


# ----------------------------------------------------------------------------- Keras 3


ROUND_TRIP = [
    "bn_cnn.yaml",
    "graph_example.yaml",
    "mobile_cnn.yaml",
    "encoder_decoder.yaml",
    "modern_activations.yaml",
]
_SAME = {"linear": None, "hard_swish": "hard_silu", "swish": "silu"}


def _layers(plan: Any) -> dict[str, Any]:
    """Each layer's kind and fields, activation aliases made one."""
    out = {}
    for step in plan.layers:
        fields = step.layer.model_dump(exclude={"name", "inputs", "type"})
        if "activation" in fields and step.kind != "Activation":
            fields["activation"] = _SAME.get(fields["activation"], fields["activation"])
        out[step.name] = (step.kind, fields, step.inputs)
    return out


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_keras3_files_import_to_the_same_spec_and_the_same_bits(tmp_path: Path, name: str) -> None:
    """spec → Keras 3 model → to_json + .weights.h5, and .keras → import: the same layers,
    fields and connections, bit-identical weights, and Keras's own outputs."""
    keras = get_backend("keras")
    plan = infer(load_spec(ROOT / "specs" / name))
    weights = busy_weights(plan)
    model = keras.build(plan)
    keras.set_weights(model, plan, weights)
    (tmp_path / "m.json").write_text(model.to_json())
    model.save_weights(tmp_path / "m.weights.h5")
    model.save(tmp_path / "m.keras")
    x = np.random.default_rng(0).random((2, *plan.input_shape)).astype(np.float32)
    want = np.asarray(model.predict(x, verbose=0))
    for source, extra in (("m.json", tmp_path / "m.weights.h5"), ("m.keras", None)):
        result = import_model(
            tmp_path / source, weights=extra, out=tmp_path / source.replace(".", "_")
        )
        assert _layers(result.plan) == _layers(plan), source
        got = read_safetensors(result.out / "weights.safetensors")
        assert set(got) == set(weights)
        for key, value in weights.items():
            assert np.array_equal(got[key], value), f"{source}: {key}"
        assert_agree(predict(result.out, x), want, f"{name} {source}")


def test_keras3_weights_are_keyed_by_class_and_position_not_name(tmp_path: Path) -> None:
    """Keras 3 writes layers/<class key>/vars/<i> (conv2d, conv2d_1, … in model order); the
    layer's name appears only in newer versions' attributes. Without them, the class keys
    still find every layer — in a model whose names run against the class order."""
    keras = get_backend("keras")
    spec = load_spec(ROOT / "specs" / "graph_example.yaml")
    plan = infer(spec)
    weights = busy_weights(plan)
    model = keras.build(plan)
    keras.set_weights(model, plan, weights)
    (tmp_path / "m.json").write_text(model.to_json())
    model.save_weights(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "m.weights.h5", "a") as f:
        stripped = 0
        for key in f["layers"]:
            if "vars" in f["layers"][key] and "name" in f["layers"][key]["vars"].attrs:
                del f["layers"][key]["vars"].attrs["name"]
                stripped += 1
    assert stripped > 3
    result = import_model(
        tmp_path / "m.json", weights=tmp_path / "m.weights.h5", out=tmp_path / "b"
    )
    got = read_safetensors(result.out / "weights.safetensors")
    for key, value in weights.items():
        assert np.array_equal(got[key], value), key


# ----------------------------------------------------------------------------- tf.keras 2


def _tf_keras() -> Any:
    return pytest.importorskip("tf_keras")


def _randomise(model: Any) -> None:
    rng = np.random.default_rng(5)
    for layer in model.layers:
        values = layer.get_weights()
        fresh = [v + rng.normal(0, 0.3, v.shape).astype(np.float32) for v in values]
        if "BatchNormalization" in type(layer).__name__:  # a variance must be positive
            fresh[-1] = np.abs(fresh[-1]) + 0.5
        layer.set_weights(fresh)


def _keras2_models(tk: Any) -> dict[str, Any]:
    L = tk.layers
    seq = tk.Sequential(
        [
            L.Conv2D(6, 3, strides=2, padding="same", activation="relu", input_shape=(13, 11, 3)),
            L.BatchNormalization(),
            L.DepthwiseConv2D(3, padding="same", depth_multiplier=2),
            L.SeparableConv2D(5, 3, activation="elu"),
            L.MaxPooling2D(),
            L.LeakyReLU(alpha=0.1),
            L.Flatten(),
            L.Dropout(0.3),
            L.Dense(7, activation="softmax", kernel_initializer="he_normal"),
        ]
    )
    inp = tk.Input((12, 12, 2))
    a = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    b = L.Conv2D(4, 1)(inp)
    merged = L.Add()([a, b])
    c = L.Concatenate()([merged, L.ZeroPadding2D(1)(L.Conv2D(3, 3)(merged))])
    out = L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(c))
    functional = tk.Model(inp, out)
    return {"sequential": seq, "functional": functional}


@pytest.mark.parametrize("which", ["sequential", "functional"])
def test_tf_keras2_json_weights_and_full_h5_give_keras2s_outputs(
    tmp_path: Path, which: str
) -> None:
    """Files written by a Keras 2 implementation (tf_keras): to_json + save_weights, and
    model.save as a legacy .h5. Weights bit-identical to Keras 2's, outputs Keras 2's."""
    tk = _tf_keras()
    model = _keras2_models(tk)[which]
    _randomise(model)
    (tmp_path / "m.json").write_text(model.to_json())
    model.save_weights(tmp_path / "w.h5")
    model.save(tmp_path / "full.h5")
    shape = model.input_shape[1:]
    x = np.random.default_rng(0).random((3, *shape)).astype(np.float32)
    want = model.predict(x, verbose=0)
    for source, weights in (("m.json", tmp_path / "w.h5"), ("full.h5", None)):
        result = import_model(tmp_path / source, weights=weights, out=tmp_path / f"b_{source}")
        assert result.convention == "tensorflow"
        assert_agree(predict(result.out, x), want, f"{which} {source}")
        got = read_safetensors(result.out / "weights.safetensors")
        for layer in model.layers:
            for variable, value in zip(layer.weights, layer.get_weights(), strict=True):
                suffix = variable.name.split("/")[-1].split(":")[0]
                assert np.array_equal(got[f"{layer.name}.{suffix}"], value), variable.name


def test_a_keras2_channels_first_model_is_reordered_layer_by_layer(tmp_path: Path) -> None:
    """tf.keras 2 with data_format channels_first (TensorFlow's CPU kernels cannot run it,
    so the oracle is NumPy): the spec is channels last, the Dense rows reordered."""
    tk = _tf_keras()
    L = tk.layers
    model = tk.Sequential(
        [
            L.Conv2D(4, 3, padding="same", data_format="channels_first", input_shape=(2, 7, 6)),
            L.Activation("relu"),
            L.MaxPooling2D(data_format="channels_first"),
            L.Flatten(),
            L.Dense(5, activation="softmax"),
        ]
    )
    _randomise(model)
    (tmp_path / "m.json").write_text(model.to_json())
    model.save_weights(tmp_path / "w.h5")
    result = import_model(tmp_path / "m.json", weights=tmp_path / "w.h5", out=tmp_path / "b")
    assert result.plan.input_shape == (7, 6, 2)
    kernel, bias = model.layers[0].get_weights()
    dense_w, dense_b = model.layers[4].get_weights()
    x = np.random.default_rng(0).random((2, 2, 7, 6))
    want = []
    for example in x:
        y = ref.relu(ref.conv_chw(example, kernel.transpose(3, 2, 0, 1), bias, "same"))
        y = ref.max_pool_chw(y, (2, 2), (2, 2)).reshape(-1)
        want.append(ref.softmax(ref.dense(y, dense_w, dense_b)))
    assert_agree(
        predict(result.out, x.transpose(0, 2, 3, 1).astype(np.float32)), np.stack(want), "cf"
    )


# ----------------------------------------------------------------------------- the real files

#: file → (kernel convention to give, parameters) for an import, or the words of the refusal
VERDICTS: dict[str, tuple[str | None, int] | str] = {
    "caiman/cnn_model.json": (None, 3_343_330),
    "caiman/cnn_model_online.json": (None, 3_343_330),
    "keras1/k0_pre1.0_format_th_bangla.json": "a Keras 0.x config",
    "keras1/k1.0.3_th_celebrity_faces.json": (None, 762_259),
    "keras1/k1.0_th_even_kernel_same.json": ("theano", 324_781),
    "keras1/k1.1.2_mixed_th_tf_dim_ordering.json": (None, 746_538),  # not 600,810
    "keras2/k2.0.5_mixed_channels_first_last.json": (None, 746_538),
    "keras1/k1.2.0_tf_nvidia_steering.json": (None, 2_395_907),
    "keras1/k1.2.1_tf_lambda_double_encoded.json": "a Lambda layer holds Python code",
    "keras2/k2.0.6_list_small_convnet_150.json": (None, 1_212_513),
    "keras2/k2.0.6_mnist_cnn_no_bias.dl4j.json": (None, 1_199_786),
    "keras2/k2.1.0_functional_4_heads_captcha.json": "the model has 4 outputs",
    "keras2/k2.2.4_batchnorm_fer2013.json": (None, 5_905_863),
    "keras2/k2.2.4_dict_mnist_cnn.json": (None, 607_394),
    "keras2/k2.2.4_full_lambda_nvidia_trained.h5": "layer 'lambda_1' (Lambda)",
    "keras2/tfk2.11_full_mlp_28x28_trained.h5": (None, 101_770),
    "keras2/tfk2.11_full_mnist_cnn_trained.h5": (None, 81_066),
    "keras2/tfk2.4.0_dict_inputlayer_monster_energy.json": (None, 5_604_391),
}


@needs_real
@pytest.mark.parametrize("name", sorted(VERDICTS))
def test_every_real_keras_file_is_imported_or_refused_as_its_readme_says(
    tmp_path: Path, cli, name: str
) -> None:  # type: ignore[no-untyped-def]
    verdict = VERDICTS[name]
    args = ["import", REAL / name, "-o", tmp_path / "b"]
    if isinstance(verdict, str):
        result = cli(*args)
        assert result.code == 2, result.err
        assert verdict in result.err
        assert "Traceback" not in result.err
        return
    convention, params = verdict
    result = cli(*args, *(["--kernel-convention", convention] if convention else []))
    assert result.code == 0, result.err
    assert f"{params:,} params" in result.out
    assert (tmp_path / "b" / "spec.yaml").exists()
    assert infer(load_spec(tmp_path / "b" / "spec.yaml")).total_params == params  # readable spec


@needs_real
def test_a_real_files_l2_regularizer_is_kept(tmp_path: Path) -> None:
    """The FER2013 model (Keras 2.2.4) regularizes a kernel with ``L1L2(l2=0.01)`` (stored as
    the float32 0.009999999776482582): the imported spec trains with it, as Keras would."""
    name = "keras2/k2.2.4_batchnorm_fer2013.json"
    config = json.loads((REAL / name).read_text())
    wanted = [
        layer["config"]["name"]
        for layer in config["config"]["layers"]
        if (layer["config"].get("kernel_regularizer") or {}).get("class_name") == "L1L2"
    ]
    result = import_model(REAL / name, out=tmp_path / "b")
    spec = load_spec(tmp_path / "b" / "spec.yaml")
    kept = {
        layer.name: layer.kernel_regularizer
        for layer in spec.layers
        if getattr(layer, "kernel_regularizer", None)
    }
    assert sorted(kept) == sorted(wanted)
    assert wanted
    for chosen in kept.values():
        assert chosen.type == "l1_l2"
        assert chosen.l1 == 0.0
        assert chosen.l2 == pytest.approx(0.01, rel=1e-7)
    assert not any("kernel_regularizer" in note for note in result.notes)


@pytest.mark.parametrize(
    ("config", "want"),
    [
        ({"class_name": "L2", "config": {"l2": 0.001}}, {"type": "l2", "l2": 0.001}),
        (
            {"module": "keras.regularizers", "class_name": "L1", "config": {"l1": 0.5}},
            {"type": "l1", "l1": 0.5},
        ),
        (
            {"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.01}},
            {"type": "l1_l2", "l1": 0.0, "l2": 0.01},
        ),
        (
            {"name": "WeightRegularizer", "l1": 0.0, "l2": 0.0005},
            {"type": "l1_l2", "l1": 0.0, "l2": 0.0005},
        ),
        ("l2", {"type": "l2"}),
        ({"class_name": "OrthogonalRegularizer", "config": {"factor": 0.01}}, None),
        ({"class_name": "L2", "config": {"l2": -1.0}}, None),
    ],
)
def test_keras_regularizer_configs_map_to_the_spec(config: Any, want: Any) -> None:
    from specnet.importers.keras_config import regularizer

    assert regularizer(config) == want


@needs_real
@pytest.mark.parametrize(
    "name", ["tfk2.11_full_mnist_cnn_trained.h5", "tfk2.11_full_mlp_28x28_trained.h5"]
)
def test_real_trained_keras2_models_give_their_writers_outputs(tmp_path: Path, name: str) -> None:
    """Two trained tf.keras 2.11 models from GitHub, imported with no weights file: tf.keras's
    own outputs, and both read the real MNIST digit as a 5."""
    tk = _tf_keras()
    base = REAL / "keras1" / "k1_th_mnist_cnn.keras2cpp.sample_mnist.dat"
    rest = base.read_text().split("\n", 1)[1]
    digit = np.array(re.findall(r"[-+0-9.eE]+", rest), dtype=np.float32).reshape(28, 28)
    original = tk.models.load_model(REAL / "keras2" / name, compile=False)
    shape = original.input_shape[1:]
    want = original.predict(digit.reshape(1, *shape), verbose=0)
    result = import_model(REAL / "keras2" / name, out=tmp_path / "b")
    got = predict(result.out, digit.reshape(1, 28, 28, 1))
    assert_agree(got, want, name)
    assert int(got.argmax()) == 5


def test_an_import_is_a_build_every_verb_takes(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    json_path, weights, _ = _keras1_files(tmp_path, backend_attr="tensorflow")
    out = tmp_path / "imported"
    assert cli("import", json_path, "--weights", weights, "-o", out).code == 0
    marker = json.loads((out / "specnet.json").read_text())
    assert marker["imported"]["kernel_convention"] == "tensorflow"
    assert marker["imported"]["format"].startswith("Keras 1")
    exported = cli("export", out, "--onnx", "--quiet")
    assert exported.code == 0, exported.err
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).random((2, 9, 7, 3)).astype(np.float32))
    predicted = cli("predict", out, tmp_path / "x.npz", "--format", "json")
    assert predicted.code == 0, predicted.err
    rng = np.random.default_rng(1)
    x = rng.random((12, 9, 7, 3)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=rng.integers(0, 6, 12))
    evaluated = cli("evaluate", out, "--data", tmp_path / "d.npz", "--json")
    assert evaluated.code == 0, evaluated.err
    assert json.loads(evaluated.out)["samples"] > 0
    rebuilt = cli(
        "build", out / "spec.yaml", "--backend", "torch", "--weights", out, "-o", tmp_path / "t"
    )
    assert rebuilt.code == 0, rebuilt.err
    assert cli("verify", tmp_path / "t").code == 0
    assert cli("parity", out, "--backends", "torch,onnx", "--quiet").code == 0


def test_an_import_with_a_backend_certifies_it_against_the_direct_graph(
    tmp_path: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    json_path, weights, _ = _keras1_files(tmp_path, backend_attr="theano")
    result = cli(
        "import", json_path, "--weights", weights, "--backend", "torch", "-o", tmp_path / "b"
    )
    assert result.code == 0, result.err
    certificate = json.loads((tmp_path / "b" / "parity.json").read_text())
    assert set(certificate["runtimes"]) == {"torch", "onnx"}
    assert certificate["ok"]
    assert (tmp_path / "b" / "model.torch.safetensors").exists()
    assert cli("verify", tmp_path / "b").code == 0


def test_import_needs_neither_tensorflow_nor_keras(tmp_path: Path) -> None:
    """Keras files are read with h5py and NumPy alone: with TensorFlow, Keras and tf_keras
    made unimportable, an import of a Keras 1 JSON + HDF5 still succeeds."""
    json_path, weights, _ = _keras1_files(tmp_path, backend_attr="theano")
    code = (
        "import sys\n"
        "for name in ('tensorflow', 'keras', 'tf_keras'):\n"
        "    sys.modules[name] = None\n"
        "from specnet.cli import main\n"
        f"argv = ['import', {str(json_path)!r}, '--weights', {str(weights)!r}]\n"
        f"code = main([*argv, '-o', {str(tmp_path / 'b')!r}])\n"
        "assert 'tensorflow' not in sys.modules or sys.modules['tensorflow'] is None\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "b" / "weights.safetensors").exists()


def test_an_import_too_big_to_train_at_batch_32_gets_a_batch_that_fits(tmp_path: Path) -> None:
    """Two 64-filter convolutions on 512×512 images keep 4.1 GiB of activations for a batch of
    32 (over the 4 GiB limit; ResNet50 at 224×224 keeps 4.4 GiB): the import writes
    ``train: {batch_size: 16}`` and says why, instead of refusing the model."""
    from specnet._frameworks import keras_module

    keras = keras_module()
    model = keras.Sequential(
        [
            keras.Input((512, 512, 3)),
            keras.layers.Conv2D(64, 3, padding="same"),
            keras.layers.Conv2D(64, 3, padding="same"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    model.save(tmp_path / "big.keras")
    result = import_model(tmp_path / "big.keras", out=tmp_path / "b")
    spec = load_spec(tmp_path / "b" / "spec.yaml")
    assert spec.train.batch_size == 16
    plan = infer(spec)
    assert plan.activation_bytes(32) > 4 << 30 >= plan.activation_bytes(16)
    assert any("train.batch_size 16" in note for note in result.notes)
