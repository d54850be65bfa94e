"""Builds that explain themselves: the model card, `specnet plot`, `specnet diff`, `specnet bench`.

References are outside specnet's own tables where one exists: parameter counts from the PyTorch
model's tensors, weight differences from NumPy on the two weight files, the picture parsed as XML.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from specnet.diagram import BOX_W, block_uses, layout
from specnet.shapes import infer
from specnet.spec import load_spec
from specnet.weights import read_safetensors
from tests.conftest import ROOT

GRAPH = ROOT / "specs" / "graph_example.yaml"
RESIDUAL = ROOT / "specs" / "residual_cnn.yaml"
RESNET50 = ROOT / "specs" / "applications" / "resnet50.yaml"
MOBILENET = ROOT / "specs" / "applications" / "mobilenet_v2.yaml"
SVG = "{http://www.w3.org/2000/svg}"

TWO_CONV = """\
name: small
input_shape: [12, 12, 1]
layers:
  - {name: c1, type: Conv2D, filters: 4, kernel_size: 3}
  - {name: c2, type: Conv2D, filters: 6, kernel_size: 3, activation: relu}
  - {name: flat, type: Flatten}
  - {name: out, type: Dense, units: 3, activation: softmax}
"""


def _boxes(svg: Path) -> list[str]:
    """The layer names drawn: the bold line of every box."""
    root = ET.parse(svg).getroot()
    return [g.find(f"{SVG}text").text or "" for g in root.iter(f"{SVG}g")]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from specnet.build import build

    folder = tmp_path_factory.mktemp("card") / "residual"
    build(RESIDUAL, "torch", out=folder)
    return folder


def test_the_model_card_says_what_the_model_is(built: Path) -> None:
    import torch

    card = (built / "README.md").read_text()
    state = __import__("safetensors.torch", fromlist=["load_file"]).load_file(
        str(built / "model.torch.safetensors")
    )
    count = sum(t.numel() for t in state.values())
    assert count == 13_828
    assert isinstance(next(iter(state.values())), torch.Tensor)
    assert card.startswith("# residual_cnn\n")
    assert f"| {count:,} | {count:,} |" in card  # parameters, trainable
    assert "input: float32 `[batch, 32, 32, 3]`" in card
    assert "pixel / 255" in card
    assert "classes (4): `red`, `blue`, `yellow`, `green`" in card
    assert "| torch vs onnx |" in card
    assert "Verdict: all runtimes agree." in card
    assert "![residual_cnn](model.svg)" in card
    assert "res2_conv_b (Conv2D)" in card
    assert _boxes(built / "model.svg")[0] == "input"


def test_a_card_from_a_run_has_its_training(tmp_path: Path) -> None:
    from specnet.build import build
    from specnet.train import train

    spec = tmp_path / "small.yaml"
    spec.write_text(
        TWO_CONV + "train: {epochs: 2, batch_size: 16}\ndata: {source: synthetic, samples: 64}\n"
    )
    run = train(spec, "torch", out=tmp_path / "run")
    history = run.history
    folder = tmp_path / "from_run"
    build(spec, "keras", out=folder, weights=run.out)
    card = (folder / "README.md").read_text()
    assert "## Training" in card
    assert "- epochs: 2" in card
    assert f"| 2 | {history['loss'][1]:.4f} |" in card
    assert "training_curves.png" in card


def test_every_layer_is_one_box_and_no_boxes_overlap() -> None:
    for spec in (GRAPH, RESNET50, MOBILENET):
        plan = infer(load_spec(spec))
        scene = layout(plan, block_uses(spec))
        assert list(scene.boxes) == ["input", *(s.name for s in plan.layers)]
        cells = [(b.row, b.col) for b in scene.boxes.values()]
        assert len(set(cells)) == len(cells), f"{spec.name}: two boxes in one place"
        for box in scene.boxes.values():  # every edge runs down the page
            assert all(scene.boxes[i].row < box.row for i in box.inputs), box.name
        edges = {(a, b) for a, b, _ in scene.edges()}
        assert edges == {(i, s.name) for s in plan.layers for i in s.inputs}


def test_residual_skips_go_around_the_boxes_they_pass() -> None:
    plan = infer(load_spec(RESNET50))
    scene = layout(plan, block_uses(RESNET50))
    routed = 0
    for source, target, points in scene.edges():
        a, b = scene.boxes[source], scene.boxes[target]
        passed = [
            box for box in scene.boxes.values()
            if a.row < box.row < b.row and box.col in (a.col, b.col)
        ]  # fmt: skip
        if len(points) == 2:  # straight: nothing in its columns between its ends
            assert not passed, f"{source} → {target} crosses {passed[0].name}"
            continue
        routed += 1  # in the gutter, right of every box it passes
        gutter = points[1][0]
        assert all(gutter > scene.at(box)[0] + BOX_W for box in passed)
    assert routed == 16 - 4  # every identity block's skip (a projection's is a branch)


def test_blocks_are_framed_and_collapse(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    full, small = tmp_path / "resnet50.svg", tmp_path / "resnet50.png"
    assert cli("plot", RESNET50, "-o", full).code == 0
    root = ET.parse(full).getroot()
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("font-size") == "10"]
    assert len(labels) == 16
    assert labels[0] == "conv2_block1 (projection)"
    assert len(_boxes(full)) == 1 + len(infer(load_spec(RESNET50)).layers)
    collapsed = tmp_path / "collapsed.svg"
    assert cli("plot", RESNET50, "-o", collapsed, "--collapse-blocks").code == 0
    names = _boxes(collapsed)
    assert len(names) == 1 + 6 + 16 + 2
    assert "conv4_block6" in names
    assert cli("plot", RESNET50, "-o", small, "--collapse-blocks").code == 0
    assert small.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_refuses_bad_input_in_one_line(tmp_path: Path, built: Path, cli) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ninput_shape: [8, 8, 1]\nlayers:\n  - {type: Conv2D, filters: -1}\n")
    cases = {
        "bad spec": (["plot", bad, "-o", tmp_path / "x.svg"], 2, "bad.yaml:4"),
        "suffix": (["plot", GRAPH, "-o", tmp_path / "x.pdf"], 2, ".svg or .png"),
        "missing": (["plot", tmp_path / "nope.yaml"], 2, "no such file"),
    }
    existing = tmp_path / "there.svg"
    existing.write_text("mine")
    cases["exists"] = (["plot", GRAPH, "-o", existing], 2, "pass --force")
    truncated = tmp_path / "truncated"
    shutil.copytree(built, truncated)
    (truncated / "spec.resolved.yaml").unlink()
    cases["truncated build"] = (
        ["plot", truncated, "-o", tmp_path / "t.svg"],
        2,
        "not a specnet build",
    )
    for what, (args, code, said) in cases.items():
        result = cli(*args)
        assert result.code == code, what
        assert said in result.err, (what, result.err)
        assert "Traceback" not in result.err
    assert existing.read_text() == "mine"


def test_diff_of_two_specs_names_each_change(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(TWO_CONV)
    b.write_text(
        TWO_CONV.replace("filters: 6", "filters: 8").replace(
            "  - {name: flat", "  - {name: drop, type: Dropout, rate: 0.3}\n  - {name: flat"
        )
    )
    result = cli("diff", a, b)
    assert result.code == 1
    out = result.out
    assert "+ drop (Dropout) (8, 8, 8), 0 params" in out
    assert "~ c2 (Conv2D)\n    filters: 6 → 8\n    output shape: [8, 8, 6] → [8, 8, 8]" in out
    # Dense reads 8·8·8 values instead of 8·8·6: (512 + 1)·3 vs (384 + 1)·3 parameters
    assert "    params: 1155 → 1539" in out
    assert "    inputs: ['c2'] → ['drop']" in out
    assert cli("diff", a, a).code == 0


def test_diff_of_two_builds_gives_each_tensors_difference(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from specnet.build import build

    spec = tmp_path / "small.yaml"
    spec.write_text(TWO_CONV)
    build(spec, "torch", out=tmp_path / "one", seed=1)
    build(spec, "torch", out=tmp_path / "two", seed=2)
    u = read_safetensors(tmp_path / "one" / "weights.safetensors")
    v = read_safetensors(tmp_path / "two" / "weights.safetensors")
    result = cli("diff", tmp_path / "one", tmp_path / "two", "--json")
    assert result.code == 1
    import json

    report = json.loads(result.out)
    assert not report["added"]
    assert not report["removed"]
    assert not report["changed"]
    rows = {row["tensor"]: row for row in report["weights"]}
    kernels = [k for k in u if k.endswith("kernel")]
    for key in kernels:
        assert rows[key]["max_abs"] == pytest.approx(float(np.abs(u[key] - v[key]).max()))
    assert rows["c1.bias"]["max_abs"] == 0.0  # zeros either way
    same = cli("diff", tmp_path / "one", tmp_path / "one")
    assert same.code == 0
    assert "same network and weights" in same.out
    for args, said in (
        ((tmp_path / "one", tmp_path / "nope.yaml"), "no such file"),
        ((tmp_path, tmp_path / "one"), "not a specnet build"),
    ):
        bad = cli("diff", *args)
        assert bad.code == 2
        assert said in bad.err
        assert "Traceback" not in bad.err


def test_bench_measures_every_runtime_and_names_the_fastest(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "small.yaml"
    spec.write_text(TWO_CONV)
    runtimes = "keras,torch,ort:direct,ort:torch,train:keras,train:torch"
    result = cli("bench", spec, "--runtimes", runtimes, "--rounds", "3", "--batch", "8", "--json")
    assert result.code == 0, result.err
    import json

    report = json.loads(result.out)
    rows = {row["runtime"]: row for row in report["rows"]}
    assert list(rows) == runtimes.split(",")
    for name, row in rows.items():
        assert len(row["images_per_s"]["rounds"]) == 3
        assert row["images_per_s"]["median"] > 0
        if not name.startswith("train:"):
            assert len(row["latency_ms"]["rounds"]) == 3
            assert row["latency_ms"]["median"] > 0
    fastest = report["fastest"]
    medians = {
        n: r["images_per_s"]["median"]
        for n, r in rows.items()
        if ":" not in n or n.startswith("ort")
    }
    assert fastest["throughput"] == max(medians, key=medians.__getitem__)
    assert fastest["training"] in ("train:keras", "train:torch")
    text = cli("bench", spec, "--runtimes", "torch,ort:direct", "--rounds", "1", "--quiet")
    assert text.code == 0
    assert "fastest at batch 1:" in text.out
    assert "vs slowest" in text.out


def test_bench_refuses_bad_input(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "small.yaml"
    spec.write_text(TWO_CONV)
    for args, said in (
        (("bench", spec, "--runtimes", "tpu"), "unknown runtime"),
        (("bench", tmp_path / "nope.yaml"), "no such file"),
        (("bench", spec, "--rounds", "0"), "positive integer"),
        (("bench", tmp_path), "not a specnet run or build"),
    ):
        result = cli(*args)
        assert result.code == 2, args
        assert said in result.err, args
        assert "Traceback" not in result.err


def test_a_readme_of_yours_is_never_replaced_by_the_card(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "README.md").write_text("my notes")
    result = cli("build", RESIDUAL, "--backend", "torch", "-o", folder, "--force")
    assert result.code == 0, result.err
    assert (folder / "README.md").read_text() == "my notes"
    assert "kept your" in result.err
    assert (folder / "model.svg").exists()
    again = cli("build", RESIDUAL, "--backend", "torch", "-o", folder, "--force", "--seed", "4")
    assert again.code == 0
    assert (folder / "README.md").read_text() == "my notes"
