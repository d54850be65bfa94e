"""`specnet train`, `evaluate`, `predict`: accuracy, run directories, determinism, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from specnet.weights import read_safetensors
from tests.conftest import ROOT
from tests.helpers import wait_for_epochs

SEED = ROOT / "specs" / "seed_cnn.yaml"
DIGITS = ROOT / "specs" / "digits_cnn.yaml"
SPECNET = [sys.executable, "-m", "specnet"]


def _same(a: Path, b: Path) -> bool:
    wa, wb = (
        read_safetensors(a / "weights.safetensors"),
        read_safetensors(b / "weights.safetensors"),
    )
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_seed_spec_learns_and_writes_a_run(backend: str, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    result = cli("train", SEED, "--backend", backend, "--out", run)
    assert result.code == 0, result.err
    history = json.loads((run / "history.json").read_text())
    assert history["val_accuracy"][-1] >= 0.9
    assert sorted(p.name for p in run.iterdir()) == sorted(
        [
            "specnet.json", "spec.resolved.yaml", "class_names.json", "weights.safetensors",
            "model.keras" if backend == "keras" else "model.torch.safetensors", "metrics.csv",
            "history.json", "training_curves.png", "confusion_matrix.png", "checkpoints",
            "best",
        ]
    )  # fmt: skip
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.safetensors"]
    assert sorted(p.name for p in (run / "best").iterdir()) == [
        "spec.resolved.yaml",
        "specnet.json",
        "weights.safetensors",
    ]
    best = json.loads((run / "best" / "specnet.json").read_text())
    assert best["kind"] == "best"
    assert best["epoch"] == int(np.argmin(history["val_loss"])) + 1
    assert best["value"] == min(history["val_loss"])
    assert cli("evaluate", run / "best", "--json").code == 0
    csv = (run / "metrics.csv").read_text().splitlines()
    assert csv[0] == "epoch,accuracy,learning_rate,loss,val_accuracy,val_loss"  # CSVLogger's
    assert [line.split(",")[0] for line in csv[1:]] == [str(i) for i in range(5)]
    marker = json.loads((run / "specnet.json").read_text())
    assert (marker["status"], marker["epochs_done"], marker["seed"]) == ("finished", 5, 0)
    assert json.loads((run / "class_names.json").read_text()) == ["red", "blue", "yellow"]
    assert (run / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    evaluation = cli("evaluate", run, "--json")
    report = json.loads(evaluation.out)
    assert report["split"] == "validation"
    assert sum(map(sum, report["confusion"])) == report["samples"] == 240
    # the report against an independent computation: the framework's own saved model file,
    # loaded by the framework, scored with NumPy against the labels the data was drawn with
    x, y = _validation_split(run)
    probabilities = _framework_predict(backend, run, x)
    assert report["accuracy"] == pytest.approx(float((probabilities.argmax(1) == y).mean()))
    picked = probabilities[np.arange(len(y)), y].astype(np.float64)
    assert report["loss"] == pytest.approx(float(-np.log(picked).mean()), rel=1e-3, abs=1e-5)


def _validation_split(run: Path) -> tuple[np.ndarray, np.ndarray]:
    from specnet.data import synthetic

    x, y, _ = synthetic(1200, (32, 32, 3), 3, "colour", seed=0)  # the seed spec's data section
    return x[960:], y[960:]  # Keras's validation split: the last 20%


def _framework_predict(backend: str, run: Path, x: np.ndarray) -> np.ndarray:
    if backend == "keras":
        import keras

        model = keras.saving.load_model(run / "model.keras", compile=False, safe_mode=True)
        return np.asarray(model.predict_on_batch(x))
    import torch
    from safetensors.torch import load_file

    state = load_file(run / "model.torch.safetensors")  # a hand-written seed net in PyTorch
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(7200, 3), torch.nn.Softmax(dim=1),
    )  # fmt: skip
    net.load_state_dict({
        "0.weight": state["conv2d.weight"], "0.bias": state["conv2d.bias"],
        "4.weight": state["dense.weight"], "4.bias": state["dense.bias"],
    })  # fmt: skip
    with torch.no_grad():
        return net(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()


def test_digits_reach_published_accuracy(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """scikit-learn's digits example reports 0.97 for an SVM on held-out data."""
    run = tmp_path / "digits"
    assert cli("train", DIGITS, "--backend", "torch", "--out", run, "--quiet").code == 0
    report = json.loads(cli("evaluate", run, "--json", "--backend", "keras").out)
    assert report["split"] == "test"
    assert report["samples"] == 360
    assert report["accuracy"] >= 0.96


def test_same_seed_same_weights(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    for name in ("a", "b"):
        result = cli("train", SEED, "--backend", "torch", "--epochs", "2", "--out", tmp_path / name)
        assert result.code == 0
    assert _same(tmp_path / "a", tmp_path / "b")


def test_runs_are_never_silently_overwritten(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    assert cli("train", SEED, "--backend", "torch", "--epochs", "1", "--out", run).code == 0
    again = cli("train", SEED, "--backend", "torch", "--epochs", "1", "--out", run)
    assert again.code == 2
    assert "choose another --out" in again.err or "pass --force" in again.err
    build = cli("build", SEED, "--backend", "torch", "--out", run)
    assert build.code == 2
    assert "holds a train of spec 'seed_cnn'" in build.err


def test_default_run_directories_count_up(tmp_path: Path, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert cli("train", SEED, "--backend", "torch", "--epochs", "1", "--quiet").code == 0
    assert sorted(p.name for p in (tmp_path / "runs" / "seed_cnn").iterdir()) == [
        "torch-1",
        "torch-2",
    ]


def test_any_spec_trains_with_no_data_section(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    spec = ROOT / "specs" / "strides_same.yaml"  # no data: section, 5 outputs
    result = cli(
        "train", spec, "--backend", "keras", "--epochs", "1", "--out", tmp_path / "r", "--json"
    )
    assert result.code == 0, result.err
    lines = [json.loads(line) for line in result.out.splitlines()]
    assert lines[0]["epoch"] == 1
    assert set(lines[0]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert lines[-1]["finished"]["run"] == str(tmp_path / "r")
    assert len(json.loads((tmp_path / "r" / "class_names.json").read_text())) == 5


def test_predict_images_and_npz(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from specnet.data import synthetic

    run = tmp_path / "run"
    assert cli("train", SEED, "--backend", "torch", "--out", run, "--quiet").code == 0
    x, y, names = synthetic(4, (32, 32, 3), 3, "colour", seed=99)
    files = []
    for i, image in enumerate(x):
        path = tmp_path / f"img{i}.png"
        Image.fromarray((image * 255).astype(np.uint8)).save(path)
        files.append(str(path))
    np.savez(tmp_path / "batch.npz", x=(x * 255).astype(np.uint8))
    out = json.loads(cli("predict", run, *files, tmp_path / "batch.npz", "--json").out)
    assert len(out) == 8
    assert [r["class"] for r in out] == [names[i] for i in y] * 2
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-6 for r in out)
    for backend in ("keras", "torch"):  # the default serves through ONNX Runtime; all agree
        other = json.loads(cli("predict", run, *files, "--json", "--backend", backend).out)
        assert len(other) == len(files)  # (the images only: out also holds the npz's)
        for mine, theirs in zip(out[: len(files)], other, strict=True):
            for name, p in mine["probabilities"].items():
                assert abs(p - theirs["probabilities"][name]) < 1e-5
    text = cli("predict", run, files[0], "--backend", "keras")
    assert text.out.startswith(f"{files[0]}: {names[y[0]]} (")


DIVERGING = """\
name: diverge
input_shape: [8, 8, 3]
layers: [{type: Flatten}, {type: Dense, units: 3, activation: softmax}]
train: {optimizer: {type: sgd, learning_rate: 1.0e+38}, epochs: 3, batch_size: 16}
data: {source: synthetic, samples: 200}
"""


def test_a_diverging_run_stops_with_a_clear_message(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "diverge.yaml"
    spec.write_text(DIVERGING)
    result = cli("train", spec, "--backend", "torch", "--out", tmp_path / "run", "--quiet")
    assert result.code == 1
    assert "training diverged: loss is" in result.err
    assert "at epoch 1, step" in result.err
    assert "no checkpoint was written yet" in result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "run" / "weights.safetensors").exists()  # no bad model published


def test_divergence_in_a_later_epoch_keeps_the_last_good_checkpoint(
    tmp_path: Path, cli, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A weight that overflows to inf in epoch 3 (PyTorch then computes a NaN loss): the run
    stops naming epoch 3 and the step, and its checkpoint is byte-for-byte the checkpoint of a
    clean 2-epoch run — from which it resumes."""
    import torch

    from specnet.backends.torch_train import TorchTrainer

    spec, steps_per_epoch = tmp_path / "s.yaml", 8  # 160 training samples, batches of 20
    spec.write_text(
        DIVERGING.replace("1.0e+38", "0.01").replace("batch_size: 16", "batch_size: 20")
    )
    assert (
        cli("train", spec, "--backend", "torch", "--epochs", "2", "--out", tmp_path / "clean").code
        == 0
    )
    real, calls = TorchTrainer.step, []

    def overflowing(self, x, y, global_batch=None, sample_weight=None):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2 * steps_per_epoch + 5:  # epoch 3, step 5
            with torch.no_grad():
                next(self.model.parameters()).view(-1)[0] = float("inf")
        return real(self, x, y, global_batch, sample_weight)

    monkeypatch.setattr(TorchTrainer, "step", overflowing)
    run = tmp_path / "run"
    result = cli("train", spec, "--backend", "torch", "--epochs", "4", "--out", run)
    assert result.code == 1
    assert "training diverged: loss is nan at epoch 3, step 5" in result.err
    assert f"the last good checkpoint is {run / 'checkpoints' / 'last.safetensors'}" in result.err
    last = "checkpoints/last.safetensors"
    assert (run / last).read_bytes() == (tmp_path / "clean" / last).read_bytes()
    assert not (run / "weights.safetensors").exists()
    monkeypatch.setattr(TorchTrainer, "step", real)
    assert cli("train", "--resume", run).code == 0
    assert (
        json.loads((run / "history.json").read_text())["loss"][:2]
        == json.loads((tmp_path / "clean" / "history.json").read_text())["loss"]
    )


def test_resume_refuses_another_thread_count(tmp_path: Path) -> None:
    # both thread counts set here, so the test holds on a machine of any size
    run = tmp_path / "run"
    subprocess.run(
        [
            *SPECNET,
            "train",
            str(SEED),
            "--backend",
            "torch",
            "--epochs",
            "1",
            "--out",
            str(run),
            "--quiet",
        ],
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    resumed = subprocess.run(
        [*SPECNET, "train", "--resume", str(run), "--epochs", "2", "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert resumed.returncode == 2
    assert "other versions or thread counts (threads 2 → 1)" in resumed.stderr


def test_ctrl_c_leaves_a_resumable_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", str(SEED), "--backend", "torch", "--epochs", "8", "--quiet"]
    subprocess.run([*SPECNET, *args, "--out", str(tmp_path / "whole")], check=True)
    process = subprocess.Popen(
        [*SPECNET, *args, "--out", str(run)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # a pytest started with SIGINT ignored (nohup, some CI shells) passes that on: Python
        # then installs no KeyboardInterrupt handler, and the signal would do nothing
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for_epochs(run, 2, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert f"continue with: specnet train --resume {run}" in err.decode()
    assert "Traceback" not in err.decode()
    resumed = subprocess.run([*SPECNET, "train", "--resume", str(run), "--quiet"], check=False)
    assert resumed.returncode == 0
    assert _same(tmp_path / "whole", run)


def test_resume_refuses_a_changed_seed_or_a_damaged_checkpoint(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    assert cli("train", SEED, "--backend", "torch", "--epochs", "1", "--out", run).code == 0
    resolved = run / "spec.resolved.yaml"
    text = resolved.read_text()
    resolved.write_text(text.replace("seed: 0", "seed: 7"))
    result = cli("train", "--resume", run, "--epochs", "2")
    assert result.code == 2
    assert (
        "checkpoint was trained with seed 0, but spec.resolved.yaml now says seed 7" in result.err
    )
    resolved.write_text(text.replace("rate: 0.5", "rate: 0.25"))  # the Dropout's
    result = cli("train", "--resume", run, "--epochs", "2")
    assert result.code == 2
    assert "spec.resolved.yaml was changed after the checkpoint was written" in result.err
    resolved.write_text(text)
    last = run / "checkpoints" / "last.safetensors"
    last.write_bytes(last.read_bytes()[:1000])
    result = cli("train", "--resume", run, "--epochs", "2")
    assert result.code == 2
    assert f"{last}: not a readable specnet checkpoint" in result.err
    assert "Traceback" not in result.err


def test_a_run_stopped_before_training_is_restarted_not_resumed(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from specnet.rundir import write_marker

    run = tmp_path / "run"
    write_marker(run, kind="train", spec="seed_cnn", spec_file=str(SEED), status="starting")
    (run / ".weights.safetensors.x1y2.specnet-tmp").write_bytes(b"half a file")
    result = cli("train", "--resume", run)
    assert result.code == 2
    assert f"start it again with: specnet train {SEED} --out {run}" in result.err
    assert cli("train", SEED, "--backend", "torch", "--epochs", "1", "--out", run).code == 0
    assert not list(run.glob(".*specnet-tmp*"))
