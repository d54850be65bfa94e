"""Graphs: `inputs:`, merge layers and blocks, through validation, shapes and every runtime.

Every numeric claim is checked against an independent NumPy forward (tests/numpy_reference.py,
written from Keras's documented semantics, in float64), not against specnet's own output.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from specnet import infer, loads_spec
from specnet.backends import get_backend
from specnet.errors import SpecError
from specnet.shapes import flatten_folds, summary_text
from tests import numpy_reference as ref
from tests.conftest import ROOT
from tests.helpers import assert_agree, batch, busy_weights

#: the issue's example, exactly as written there
EXAMPLE = """\
name: example
input_shape: [20, 20, 3]
layers:
  - {name: stem, type: Conv2D, filters: 8, kernel_size: 3, padding: same, activation: relu}
  - {name: branch_a, type: Conv2D, filters: 8, kernel_size: 3, padding: same}
  - {name: branch_b, type: Conv2D, filters: 8, kernel_size: 1, inputs: [stem]}
  - {name: merged, type: Add, inputs: [branch_a, branch_b]}
  - {name: skip, type: Conv2D, filters: 4, kernel_size: 5, strides: 2, padding: same, inputs: [input]}
  - {name: pooled, type: MaxPooling2D, inputs: [merged]}
  - {name: joined, type: Concatenate, inputs: [pooled, skip]}
"""  # noqa: E501
RUNTIMES = ("keras", "torch", "onnx")


def _agree_with_numpy(text: str, atol: float = 1e-5) -> Any:
    plan = infer(loads_spec(text))
    weights = busy_weights(plan, seed=3)
    x = batch(plan.input_shape, n=5, seed=2)
    want = ref.network(plan.spec.resolved()["layers"], weights, x)
    for name in RUNTIMES:
        backend = get_backend(name)
        model = backend.build(plan)
        backend.set_weights(model, plan, weights)
        assert_agree(backend.predict(model, x), want, f"{plan.name} on {name}", atol=atol)
    return plan


def test_the_issue_example_computes_the_same_function_on_every_runtime() -> None:
    plan = _agree_with_numpy(EXAMPLE)
    assert plan.output_shape == (10, 10, 12)
    assert [s.inputs for s in plan.layers][2:4] == [("stem",), ("branch_a", "branch_b")]


def _two_branches(merge: str, extra: str = "", shape: str = "[6, 5, 3]") -> str:
    return f"""\
name: m
input_shape: {shape}
layers:
  - {{name: a, type: Conv2D, filters: 4, kernel_size: 1}}
  - {{name: b, type: Conv2D, filters: 4, kernel_size: 1, inputs: input, activation: tanh}}
  - {{name: c, type: Conv2D, filters: 4, kernel_size: 1, inputs: [input]}}
  - {{name: m, type: {merge}, inputs: [a, b, c]{extra}}}
"""


@pytest.mark.parametrize("merge", ["Add", "Multiply", "Average", "Maximum", "Concatenate"])
def test_each_merge_is_keras_s_on_every_runtime(merge: str) -> None:
    _agree_with_numpy(_two_branches(merge))


def test_subtract_keeps_its_order_and_takes_exactly_two() -> None:
    lines = _two_branches("Subtract").replace("[a, b, c]", "[c, a]").splitlines(keepends=True)
    text = "".join(line for line in lines if "name: b," not in line)
    _agree_with_numpy(text)
    with pytest.raises(SpecError) as info:
        loads_spec(_two_branches("Subtract"), "s.yaml")
    assert "layers[3].inputs: Subtract takes exactly 2 inputs, received 3" in str(info.value)


@pytest.mark.parametrize("axis", [1, 2, 3, -1, -2, -3])
def test_concatenate_along_every_image_axis(axis: int) -> None:
    """Keras's axis counts the batch (1 = rows); NCHW backends translate it (layout.py)."""
    text = f"""\
name: cat
input_shape: [6, 6, 3]
layers:
  - {{name: a, type: Conv2D, filters: 3, kernel_size: 1}}
  - {{name: b, type: Conv2D, filters: 3, kernel_size: 1, inputs: [input]}}
  - {{name: c, type: Concatenate, axis: {axis}, inputs: [a, b]}}
  - {{type: Flatten}}
  - {{type: Dense, units: 5}}
"""
    plan = _agree_with_numpy(text)
    joined = [6, 6, 3]
    joined[axis - 1 if axis > 0 else axis] *= 2
    assert plan.layers[2].output_shape == tuple(joined)


def test_a_flattened_vector_that_is_merged_keeps_keras_order() -> None:
    """No row permutation of a Dense repairs Add([flatten, dense]) or a concatenation of flat
    vectors: NCHW backends flatten those in (h, w, c) order; a Flatten only Denses read keeps
    the folded rows (and the graph a chain has)."""
    text = """\
name: flat
input_shape: [3, 4, 2]
layers:
  - {name: conv, type: Conv2D, filters: 2, kernel_size: 1}
  - {name: flat, type: Flatten}
  - {name: dense, type: Dense, units: 24}
  - {name: sum, type: Add, inputs: [flat, dense]}
  - {name: flat2, type: Flatten, inputs: [conv]}
  - {name: drop, type: Dropout, rate: 0.5}
  - {name: head, type: Dense, units: 24, activation: relu}
  - {name: both, type: Concatenate, inputs: [sum, head]}
  - {name: out, type: Dense, units: 3, activation: softmax}
"""
    plan = _agree_with_numpy(text)
    folds, in_order = flatten_folds(plan)
    assert in_order == {"flat"}
    assert folds == {"head": (3, 4, 2)}  # through the Dropout: still only a Dense reads it


def _problems(text: str) -> str:
    with pytest.raises(SpecError) as info:
        infer(loads_spec(text, "g.yaml"))
    return str(info.value)


BASE = "name: g\ninput_shape: [8, 8, 3]\nlayers:\n"


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        # a forward reference: the only way a cycle can be written
        ("  - {name: a, type: Conv2D, filters: 2, kernel_size: 1, inputs: [b]}\n"
         "  - {name: b, type: Conv2D, filters: 2, kernel_size: 1, inputs: [a]}\n",
         "g.yaml:4:66: layers[0].inputs[0]: 'b' is layers[1], below this layer; a layer reads "
         "only the layers above it"),
        ("  - {name: a, type: Conv2D, filters: 2, kernel_size: 1, inputs: [a]}\n",
         "g.yaml:4:66: layers[0].inputs[0]: layer 'a' cannot read its own output"),
        ("  - {name: stem, type: Conv2D, filters: 2, kernel_size: 1}\n"
         "  - {type: Add, inputs: [stem, stme]}\n",
         "g.yaml:5:32: layers[1].inputs[1]: no layer named 'stme' above this one\n"
         "    hint: did you mean 'stem'?"),
        ("  - {type: Conv2D, filters: 2, kernel_size: 1}\n"
         "  - {type: Add, inputs: [conv2d, input]}\n",
         "layers[1].inputs[0]: 'conv2d' is an automatic name; refer only to layers named in the "
         "spec"),
        # the shape mismatch, located at the merge's inputs
        ("  - {name: a, type: Conv2D, filters: 8, kernel_size: 3, padding: same}\n"
         "  - {name: b, type: MaxPool}\n"
         "  - {name: c, type: Add, inputs: [a, b]}\n",
         "g.yaml:6:34: layers[2].inputs: layer 'c': Add needs equal shapes, got (8, 8, 8) and "
         "(4, 4, 8)"),
        ("  - {name: a, type: Conv2D, filters: 2, kernel_size: 1}\n"
         "  - {name: b, type: Conv2D, filters: 2, kernel_size: 1, inputs: [input]}\n"
         "  - {type: Flatten}\n",
         "g.yaml:4:5: layers[0]: layer 'a' is not read by any later layer; only the last layer "
         "is the network's output"),
        ("  - {name: a, type: Conv2D, filters: 2, kernel_size: 1}\n"
         "  - {name: a, type: Conv2D, filters: 2, kernel_size: 1}\n",
         "layers[1].name: duplicate layer name 'a' (also layers[0])"),
        ("  - {name: input, type: Conv2D, filters: 2, kernel_size: 1}\n",
         "layers[0].name: `input` is the model's input, not a layer name"),
        ("  - {type: Conv2D, filters: 2, kernel_size: 1}\n  - {type: Add}\n",
         "g.yaml:5:5: layers[1]: Add takes at least 2 inputs, received 1"),
        ("  - {name: a, type: Flatten}\n  - {type: Concatenate, inputs: [a, input]}\n",
         "layers[1].inputs: layer 'concatenate': Concatenate needs inputs of one rank"),
        ("  - {name: a, type: Conv2D, filters: 2, kernel_size: 1}\n"
         "  - {type: Concatenate, axis: 0, inputs: [a, input]}\n",
         "layers[1].axis: layer 'concatenate' (Concatenate): axis 0 is not an axis of its 3-D "
         "inputs (0 is the batch)"),
        ("  - {name: a, type: MaxPool}\n  - {type: Concatenate, axis: 3, inputs: [a, input]}\n",
         "layers[1].inputs: layer 'concatenate': Concatenate on axis 3 needs the other axes "
         "equal, got (4, 4, 3) and (8, 8, 3)"),
    ],
)  # fmt: skip
def test_bad_graphs_are_located(layers: str, expected: str) -> None:
    assert expected in _problems(BASE + layers)


def test_a_ten_thousand_way_fan_in_is_refused_quickly(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    names = [f"c{i}" for i in range(10_000)]
    convs = "".join(
        f"  - {{name: {n}, type: Conv2D, filters: 1, kernel_size: 1, inputs: [input]}}\n"
        for n in names[:300]
    )
    spec = tmp_path / "fan.yaml"
    spec.write_text(BASE + convs + f"  - {{type: Add, inputs: [{', '.join(names)}]}}\n")
    began = time.perf_counter()
    result = cli("validate", str(spec))
    assert time.perf_counter() - began < 10
    assert result.code == 2
    assert (
        "fan.yaml:304:25: layers[300].inputs: expected at most 256 inputs, received 10,000"
        in result.err
    ), result.err
    assert "Traceback" not in result.err


def test_summary_connects_a_graph_and_leaves_a_chain_as_keras_prints_it() -> None:
    text = summary_text(infer(loads_spec(EXAMPLE)))
    header = next(line for line in text.splitlines() if "Layer (type)" in line)
    assert header.split()[-2:] == ["Connected", "to"]
    rows = text.splitlines()
    merged = next(i for i, line in enumerate(rows) if line.startswith(" merged (Add)"))
    assert rows[merged].endswith("branch_a[0][0]")
    assert rows[merged + 1].strip() == "branch_b[0][0]"
    chain = summary_text(infer(loads_spec((ROOT / "specs/seed_cnn.yaml").read_text())))
    assert "Connected to" not in chain


def test_generated_sources_write_the_graph_as_a_person_would(tmp_path: Path) -> None:
    """The PyTorch source names a value only when a later layer reads it again; the Keras source
    is functional for a graph and a Sequential for a chain. Both compute the NumPy function."""
    import importlib.util

    plan = infer(loads_spec(EXAMPLE))
    weights = busy_weights(plan, seed=5)
    x = batch(plan.input_shape, n=3)
    want = ref.network(plan.spec.resolved()["layers"], weights, x)
    torch_source = get_backend("torch").emit_source(plan)
    assert "        merged = branch_a + x  # merged (N, 8, 20, 20)\n" in torch_source
    assert "        x = torch.cat([x, skip], dim=1)  # joined (N, 12, 10, 10)\n" in torch_source
    keras_source = get_backend("keras").emit_source(plan)
    assert '    merged = layers.Add(name="merged")([branch_a, x])' in keras_source
    assert "keras.Sequential" not in keras_source
    chain = get_backend("keras").emit_source(
        infer(loads_spec((ROOT / "specs/seed_cnn.yaml").read_text()))
    )
    assert "keras.Sequential(" in chain
    from specnet.weights import save_weights

    save_weights(tmp_path / "w.safetensors", weights, overwrite=True)
    for name, source in (("torch_model", torch_source), ("keras_model", keras_source)):
        (tmp_path / f"{name}.py").write_text(source)
        spec = importlib.util.spec_from_file_location(name, tmp_path / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if name == "torch_model":
            import torch

            model = next(v for k, v in vars(module).items() if k == "Example")()
            module.load_canonical_weights(model, tmp_path / "w.safetensors")
            with torch.no_grad():
                got = model(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
        else:
            model = module.build_model()
            module.load_canonical_weights(model, tmp_path / "w.safetensors")
            got = model.predict_on_batch(x)
        assert_agree(got, want, name, atol=1e-5)


def test_torch_keeps_every_image_in_the_networks_memory_format() -> None:
    """A pad, cat or merge that quietly returns another memory format costs a full copy each
    step: every image stays channels-last, or contiguous NCHW in a network with a depthwise
    convolution (``specnet.backends.torch.memory_format``; MobileNetV2 among the specs)."""
    import torch

    from specnet.backends.torch import memory_format
    from tests.conftest import SPECS

    formats = set()
    for path in [*SPECS, None]:
        plan = infer(loads_spec(path.read_text() if path else EXAMPLE))
        model = get_backend("torch").build(plan)
        fmt = memory_format(plan)
        formats.add(fmt)
        seen: list[str] = []

        def check(
            module: Any, args: Any, out: Any, name: str = "", seen: list[str] = seen, fmt: Any = fmt
        ) -> None:
            if out.dim() == 4 and not out.is_contiguous(memory_format=fmt):
                seen.append(name)

        for name, child in model.named_children():
            child.register_forward_hook(lambda m, a, o, name=name: check(m, a, o, name))
        x = torch.from_numpy(batch(plan.input_shape, n=2)).permute(0, 3, 1, 2)
        with torch.no_grad():
            out = model(x)
        assert not seen, f"{plan.name}: {seen} return another memory format than {fmt}"
        if out.dim() == 4:
            assert out.is_contiguous(memory_format=fmt), plan.name
    assert formats == {torch.channels_last, torch.contiguous_format}


def test_a_graph_exports_through_every_converter(tmp_path: Path) -> None:
    """torch.onnx (dynamo) traces the dict-walking forward; tf2onnx the functional model."""
    from specnet.backends.onnx import DEFAULT_OPSET, ort_session, run_session
    from specnet.export import _keras_onnx, _torch_onnx

    plan = infer(loads_spec((ROOT / "specs/graph_example.yaml").read_text()))
    weights = busy_weights(plan, seed=1)
    x = batch(plan.input_shape, n=4)
    want = ref.network(plan.spec.resolved()["layers"], weights, x)
    for convert in (_torch_onnx, _keras_onnx):
        proto, layout = convert(plan, weights, DEFAULT_OPSET)
        got = run_session(ort_session(proto), x, layout)
        assert_agree(got, want, convert.__name__, atol=1e-5)


# ----------------------------------------------------------------------------- blocks

BLOCKY = (ROOT / "specs/residual_cnn.yaml").read_text()


def test_blocks_expand_to_keras_names_and_the_resolved_spec_forgets_them() -> None:
    spec = loads_spec(BLOCKY, "r.yaml")
    names = [layer.name for layer in spec.layers]
    assert names[:6] == ["stem", "res1_conv_a", "res1_conv_b", "res1_add", "res1_out", "pool1"]
    assert spec.layers[3].inputs == ("stem", "res1_conv_b")
    assert spec.layers[6].inputs == ("pool1",)  # the block's first layer reads the layer above
    written_out = {key: value for key, value in spec.resolved().items() if key != "description"}
    # every top-level key is a Spec field (the blocks are gone), every layer a plain kind
    from specnet.spec import Spec

    assert set(written_out) == set(Spec.model_fields) - {"schema_", "description"}
    assert "blocks:" in BLOCKY
    assert all("block" not in layer and "type" in layer for layer in written_out["layers"])
    assert len(written_out["layers"]) == len(spec.layers) > BLOCKY.count("- {block:")
    # the same network written without blocks resolves to the same document
    flat = loads_spec(json.dumps({**spec.resolved()}), "flat.yaml")
    assert flat.resolved() == spec.resolved()
    _agree_with_numpy(BLOCKY.replace("rate: 0.25", "rate: 0.0"))


def test_a_block_error_says_where_it_came_from() -> None:
    bad_param = BLOCKY.replace("name: res2, filters: 16}", "name: res2, filters: -16}")
    message = _problems(bad_param)
    assert "r.yaml" not in message  # (named g.yaml by _problems)
    assert (
        "g.yaml:20:44: layers[3].filters: expected a value greater than 0, received -16\n"
        "    the value of parameter `filters` of block `residual`" in message
    )
    assert message.count("received -16") == 1  # once, though two layers take it
    in_definition = BLOCKY.replace(
        "kernel_size: 3, padding: same}", "kernel_size: 0, padding: same}"
    )
    message = _problems(in_definition)
    assert message.count("kernel_size: expected a value greater than 0") == 1, message
    assert "blocks.residual.layers[1].kernel_size" in message
    assert "in block `residual`, reaching 2 uses (res1, res2)" in message
    # a layer outside blocks is named by its index as written, not as expanded
    shape = BLOCKY.replace(
        "- {name: pool1, type: MaxPooling2D}", "- {name: pool1, type: MaxPooling2D, pool_size: 40}"
    )
    assert (
        "g.yaml:19:5: layers[2]: layer 'pool1' (MaxPool): input 32×32×16 is smaller"
        in _problems(shape)
    )
    # a problem of one use (here a shape) names the use and the layer it became
    narrow = BLOCKY.replace("name: res2, filters: 16}", "name: res2, filters: 8}")
    message = _problems(narrow)
    assert (
        "layers[8].inputs: layer 'res2_add': Add needs equal shapes, got (16, 16, 16) and "
        "(16, 16, 8)" in message
    )
    assert "in block `residual` as res2_add (blocks.residual.layers[2] at g.yaml:14:9)" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("{block: residual, name: res2", "{block: residul, name: res2"),
         "layers[3].block: no block named 'residul'\n    hint: did you mean 'residual'?"),
        (("name: res2, filters: 16}", "name: res2, filter: 16}"),
         "layers[3].filter: block `residual` has no parameter 'filter'\n"
         "    hint: did you mean 'filters'?"),
        (("name: res2, filters: 16}", "name: res2}"), "layers[3]: block `residual` needs filters"),
        (("name: res2,", "name: res1,"), "layers[3].name: duplicate name 'res1' (also layers[1])"),
        (("inputs: [input, conv_b]", "inputs: [inptu, conv_b]"),
         "blocks.residual.layers[2].inputs[0]: no layer 'inptu' above this one in the block\n"
         "    hint: did you mean 'input'?"),
        (("filters: $filters, kernel_size: 3, padding: same}",
          "filters: $filter, kernel_size: 3, padding: same}"),
         "`$filter` is not a parameter of this block\n    hint: did you mean `$filters`?"),
        (("- {name: conv_b, type", "- {type"),
         "blocks.residual.layers[1]: every layer in a block needs a `name:`"),
    ],
)  # fmt: skip
def test_bad_blocks_are_located(change: tuple[str, str], expected: str) -> None:
    assert change[0] in BLOCKY
    message = _problems(BLOCKY.replace(*change))
    assert expected in message, message
    assert "no block named 'residual'" not in message or "residul" in change[1]


def test_an_expansion_over_the_layer_limit_stops_before_validation(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    uses = "".join(f"  - {{block: big, name: b{i}}}\n" for i in range(1_001))
    layers = "".join(f"      - {{name: d{k}, type: Dropout, rate: 0.1}}\n" for k in range(10))
    spec = tmp_path / "big.yaml"
    spec.write_text(f"name: big\ninput_shape: [4, 4, 1]\nblocks:\n  big:\n    layers:\n{layers}"
                    f"layers:\n{uses}")  # fmt: skip
    began = time.perf_counter()
    result = cli("validate", str(spec))
    assert time.perf_counter() - began < 10
    assert result.code == 2
    assert "the blocks expand to 10,010 layers, over the limit of 10,000" in result.err


def test_specnet_parity_passes_on_the_issue_example(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "example.yaml"
    spec.write_text(EXAMPLE)
    result = cli("parity", str(spec))
    assert result.code == 0, result.err
    assert "all runtimes agree: 10 runtimes, 45 pairs, 0 over tolerance" in result.out


# ----------------------------------------------------------------------------- checkpoints


def _legacy(state: dict[str, Any], trainer: Any, backend: str) -> dict[str, Any]:
    """``state`` in the positional keys checkpoints had before graphs (``model/0``, …; the
    torch optimizer's ``optimizer/0/exp_avg``), as the previous release wrote them."""
    if backend == "keras":
        model = {id(v): k for k, v in trainer._variables().items()}
        out = {f"model/{i}": state[model[id(v)]] for i, v in enumerate(trainer.model.variables)}
        out.update(
            {
                f"optimizer/{i}": state[model[id(v)]]
                for i, v in enumerate(trainer.optimizer.variables)
            }
        )
        return out
    out = {k: v for k, v in state.items() if not k.startswith("optimizer/")}
    for i, (name, _) in enumerate(trainer.model.named_parameters()):
        for key, value in state.items():
            if key.startswith(f"optimizer/{name}/"):
                out[f"optimizer/{i}/{key.rsplit('/', 1)[1]}"] = value
    return out


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_checkpoints_are_keyed_by_name_and_old_ones_still_resume(backend: str) -> None:
    """A graph's variables are keyed by layer and variable name (a functional model orders
    them by Keras's traversal, not the spec's); a checkpoint of the previous release, keyed by
    position, still resumes to the same weights."""
    from specnet.data import synthetic
    from specnet.train import training_plan
    from specnet.weights import init_weights

    text = BLOCKY.replace("rate: 0.25", "rate: 0.0").replace("[32, 32, 3]", "[8, 8, 3]")
    plan = training_plan(infer(loads_spec(text)))
    x, y, _ = synthetic(16, plan.input_shape, 4, "colour", seed=1)

    def trainer() -> Any:
        return get_backend(backend).trainer(plan, plan.spec.train, init_weights(plan, seed=2))

    first = trainer()
    first.step(x[:8], y[:8])
    state = first.state()
    if backend == "torch":
        assert "model/res1_conv_a.weight" in state
        assert any(key.startswith("optimizer/res1_conv_a.weight/") for key in state)
    else:
        assert "model/res1_conv_a/kernel" in state
        assert "optimizer/res1_conv_a_kernel_momentum" in state
    first.step(x[8:], y[8:])
    for saved in (state, _legacy(state, first, backend)):
        resumed = trainer()
        resumed.load_state(saved)
        resumed.step(x[8:], y[8:])
        for key, value in first.weights().items():
            np.testing.assert_array_equal(resumed.weights()[key], value, err_msg=key)
