"""SIGKILL `specnet train` at random moments and resume each time: the end is byte-identical.

Half the kills are timed (a random moment inside the epoch after the one the run resumed from,
so every kill also lands at a new place), half land inside an atomic file write at a random
stage (tests/crashpoint.py): with half the bytes written, before fsync, before and after the
rename — during checkpoints, metrics and the run marker. Two more are aimed at publishing the
trained model (the final weights, the last plot) after the last epoch's checkpoint. After every
kill, each file under its final name must be whole; at the end the run directory must hold
exactly what an uninterrupted run holds, with the same bytes.

The moments are drawn from a fresh seed each run (printed when a check fails); replay one with
``SPECNET_CRASH_SEED=<seed> pytest tests/test_crashes.py``. Each kill is a process start
(TensorFlow's import alone is ~4 s), so a CI run makes 4 per backend and the two publishing
kills (~45 s for Keras); the longer campaign is
``SPECNET_CRASH_KILLS=40 pytest tests/test_crashes.py -k kills``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.crashpoint import STAGES
from tests.helpers import wait_for_epochs

KILLS = int(os.environ.get("SPECNET_CRASH_KILLS", "4"))
EPOCHS = max(48, 3 * KILLS)  # more than the kills can use up: at most ~2 epochs per kill
HARNESS = [sys.executable, str(ROOT / "tests" / "crashpoint.py")]
COMPARED = (  # every file whose bytes must not depend on the kills (PNGs and model.keras
    # embed no training state beyond these; specnet.json records times)
    "weights.safetensors",
    "checkpoints/last.safetensors",
    "best/weights.safetensors",
    "best/specnet.json",
    "checkpoints/restore_best.safetensors",
    "history.json",
    "metrics.csv",
    "class_names.json",
    "spec.resolved.yaml",
)


#: every training feature that keeps state across epochs, at once: augmentation (its draws),
#: a warm-up + cosine schedule (the step count), EMA (the averages), EarlyStopping with
#: restore_best_weights (its wait, best and best weights; patience beyond the run, so the
#: kills have epochs to land in), and the loss options and regularizers
EVERYTHING = """
  optimizer:
    type: adam
    use_ema: true
    ema_momentum: 0.9
    learning_rate: {type: CosineDecay, initial_learning_rate: 0.0, warmup_target: 0.002,
                    warmup_steps: 20, decay_steps: 200, alpha: 0.1}
  callbacks: [{type: EarlyStopping, patience: 1000, restore_best_weights: true}]
  label_smoothing: 0.05
  class_weight: balanced
"""


def _spec(folder: Path) -> Path:
    """A graph (two residual blocks: Adds, each block's input read twice, dropout) shrunk to
    12×12 inputs and 8 filters, on 160 samples: ~0.1 s an epoch, so EPOCHS leave room for
    the kills; with :data:`EVERYTHING` on, and augmentation first."""
    text = (ROOT / "specs" / "residual_cnn.yaml").read_text()
    text = text.replace("input_shape: [32, 32, 3]", "input_shape: [12, 12, 3]")
    text = text.replace("filters: 16", "filters: 8")
    text = text.replace("epochs: 5", f"epochs: {EPOCHS}")
    text = text.replace("classes_by: colour", "classes_by: colour\n  samples: 160")
    text = text.replace(
        "layers:\n  - {name: stem",
        "layers:\n  - {type: RandomFlip, mode: horizontal}\n"
        "  - {type: RandomTranslation, height_factor: 0.1, width_factor: 0.1}\n"
        "  - {name: stem, kernel_regularizer: {type: l2, l2: 0.001}",
    )
    text = text.replace("\n  optimizer: {type: adam, learning_rate: 0.001}\n", EVERYTHING)
    assert "RandomFlip" in text
    assert "CosineDecay" in text
    path = folder / "crash.yaml"
    path.write_text(text)
    return path


def _files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


def _whole_files_only(run: Path, why: str) -> None:
    """Every file under a final name opens as what it claims to be (no torn writes)."""
    from safetensors import safe_open

    for path in run.rglob("*"):
        name = path.name
        if not path.is_file() or ".specnet-tmp" in name:
            continue
        if name.endswith(".json"):
            json.loads(path.read_text())
        elif name.endswith(".safetensors"):
            with safe_open(path, framework="np") as f:
                for key in f.keys():  # noqa: SIM118
                    f.get_tensor(key)
        elif name.endswith(".csv"):
            lines = path.read_text().splitlines()
            assert all(line.count(",") == 5 for line in lines), f"{why}: torn {path}"
        elif name.endswith(".png"):
            assert path.read_bytes().endswith(b"IEND\xaeB`\x82"), f"{why}: torn {path}"


def _epochs_done(run: Path) -> int:
    try:
        return int(json.loads((run / "specnet.json").read_text()).get("epochs_done", 0))
    except (OSError, ValueError):
        return 0


def _start(run: Path, spec: Path, backend: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    marker = run / "specnet.json"
    started = marker.exists() and json.loads(marker.read_text()).get("status") == "running"
    args = (
        ["train", "--resume", str(run)]
        if started
        else ["train", str(spec), "--backend", backend, "--out", str(run), "--tensorboard"]
    )
    return subprocess.Popen(
        [*HARNESS, *args, "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_kills_then_byte_identical(backend: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("SPECNET_CRASH_SEED", secrets.randbelow(2**32)))
    rng = np.random.default_rng(seed)
    spec = _spec(tmp_path)
    whole = tmp_path / "whole"
    began = time.perf_counter()
    subprocess.run(
        [
            *HARNESS,
            "train",
            str(spec),
            "--backend",
            backend,
            "--out",
            str(whole),
            "--quiet",
            "--tensorboard",
        ],
        check=True,
    )
    # an upper bound on one epoch, start-up included; timed kills sleep up to a third of it
    epoch = (time.perf_counter() - began) / EPOCHS

    run, landed = tmp_path / "killed", []
    while len(landed) < KILLS:
        why = f"{backend}, seed {seed}, kill {len(landed) + 1} after {landed}"
        env = dict(os.environ)
        if rng.random() < 0.5:
            point = f"{rng.integers(1, 12)}:{rng.choice(STAGES)}"
            env["SPECNET_CRASH_AT"] = point
            process = _start(run, spec, backend, env)
            _, err = process.communicate(timeout=300)
        else:
            point = f"{rng.uniform(0, 1 / 3):.2f} epoch"
            process = _start(run, spec, backend, env)
            try:
                wait_for_epochs(run, _epochs_done(run) + 1, process)
            except AssertionError as exc:
                raise AssertionError(f"{why}: {exc}") from None
            time.sleep(float(point.split()[0]) * epoch)
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
            _, err = process.communicate(timeout=300)
        assert process.returncode in (0, -signal.SIGKILL), f"{why}: {err.decode()}"
        assert process.returncode != 0, f"{why}: the run finished before kill {point}"
        landed.append(f"{point}@{_epochs_done(run)}")
        _whole_files_only(run, why)

    # and two aimed at publishing the trained model, after the last epoch's checkpoint
    for name in ("weights.safetensors", "confusion_matrix.png"):
        point = f"1:{rng.choice(STAGES)}:{name}"
        process = _start(run, spec, backend, {**os.environ, "SPECNET_CRASH_AT": point})
        _, err = process.communicate(timeout=300)
        assert process.returncode == -signal.SIGKILL, f"{backend}, seed {seed}: {point}: {err!r}"
        landed.append(f"{point}@{_epochs_done(run)}")
        _whole_files_only(run, f"{backend}, seed {seed}, {point}")

    final = _start(run, spec, backend, dict(os.environ))
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, f"{backend}, seed {seed}: {err.decode()}"
    assert json.loads((run / "specnet.json").read_text())["status"] == "finished"
    assert _files(run) == _files(whole), f"{backend}, seed {seed}: leftover or missing files"
    for name in COMPARED:
        assert (run / name).read_bytes() == (whole / name).read_bytes(), (
            f"{backend}, seed {seed}, kills {landed}: {name} differs"
        )
    print(f"{backend}: seed {seed}, {len(landed)} kills (point@epochs done): {landed}")
    assert len(landed) == KILLS + 2


def _snapshot(folder: Path) -> dict[str, bytes]:
    """The files under their final names (a killed writer's temporary is not one)."""
    return {n: (folder / n).read_bytes() for n in _files(folder) if ".specnet-tmp" not in n}


def _killed(args: list[str], point: str) -> None:
    process = subprocess.run(
        [*HARNESS, *args], env={**os.environ, "SPECNET_CRASH_AT": point}, capture_output=True
    )
    assert process.returncode == -signal.SIGKILL, f"{point}: {process.stderr.decode()}"


@pytest.mark.parametrize(("backend", "writes"), [("torch", 5), ("keras", 4)])
def test_a_killed_rebuild_leaves_the_previous_build(
    backend: str, writes: int, tmp_path: Path
) -> None:
    """Kill a rebuild in each of its atomic writes (at a random stage): the folder is still
    exactly the old build; the next rebuild completes and keeps the user's own files."""
    seed = int(os.environ.get("SPECNET_CRASH_SEED", secrets.randbelow(2**32)))
    rng = np.random.default_rng(seed)
    spec, folder = str(ROOT / "specs" / "seed_cnn.yaml"), tmp_path / "build"
    args = ["build", spec, "--backend", backend, "--out", str(folder)]
    subprocess.run([*HARNESS, *args, "--seed", "1"], check=True, capture_output=True)
    (folder / "notes.txt").write_text("mine\n")
    before = _snapshot(folder)
    kills = range(1, writes + 1) if backend == "torch" else sorted(rng.choice(writes, 2) + 1)
    for write in kills:
        _killed([*args, "--seed", "2"], f"{write}:{rng.choice(STAGES)}")
        assert _snapshot(folder) == before, f"kill in write {write} changed the build (seed {seed})"
    subprocess.run([*HARNESS, *args, "--seed", "2"], check=True, capture_output=True)
    fresh = tmp_path / "fresh"
    subprocess.run(
        [*HARNESS, "build", spec, "--backend", backend, "--out", str(fresh), "--seed", "2"],
        check=True,
        capture_output=True,
    )
    after = _snapshot(folder)
    assert after.pop("notes.txt") == b"mine\n"
    assert after["weights.safetensors"] == (fresh / "weights.safetensors").read_bytes()
    assert after["weights.safetensors"] != before["weights.safetensors"]
    assert sorted(after) == _files(fresh)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "fresh"], "stale staging"


def test_a_killed_export_leaves_the_previous_model(tmp_path: Path) -> None:
    folder = tmp_path / "build"
    spec = str(ROOT / "specs" / "seed_cnn.yaml")
    subprocess.run(
        [*HARNESS, "build", spec, "--backend", "torch", "--out", str(folder)],
        check=True,
        capture_output=True,
    )
    export = ["export", str(folder), "--onnx", "--via", "direct"]
    subprocess.run([*HARNESS, *export], check=True, capture_output=True)
    before = _snapshot(folder)
    for stage in ("mid-write", "before-rename"):
        _killed([*export, "--layout", "nchw"], f"1:{stage}")
        assert _snapshot(folder) == before, f"a kill at {stage} changed the build"
    subprocess.run([*HARNESS, *export, "--layout", "nchw"], check=True, capture_output=True)
    assert _files(folder) == sorted(before), "a killed export's temporary survived"
    assert _snapshot(folder)["model.onnx"] != before["model.onnx"]
