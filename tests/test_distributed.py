"""Distributed PyTorch training through torch.distributed.run (gloo on CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from specnet.weights import read_safetensors
from tests.helpers import wait_for_epochs

SPECNET = [sys.executable, "-m", "specnet"]
SMALL = """\
name: small
input_shape: [12, 12, 3]
layers:
  - {type: Conv2D, filters: 8, kernel_size: 3, activation: relu}
  - {type: MaxPool}
  - {type: Flatten}
  - {type: Dense, units: 3, activation: softmax}
train:
  optimizer: {type: sgd, learning_rate: 0.05, momentum: 0.9}
  batch_size: 16
  epochs: EPOCHS
data: {source: synthetic, samples: 160}
"""


def _spec(folder: Path, epochs: int) -> Path:
    path = folder / f"small{epochs}.yaml"
    path.write_text(SMALL.replace("EPOCHS", str(epochs)))
    return path


def _weights(run: Path) -> dict[str, np.ndarray]:
    return read_safetensors(run / "weights.safetensors")


def test_two_gloo_workers_match_one_process(tmp_path: Path) -> None:
    """Same global batch, same initial weights, no dropout, SGD: the same weights (rtol 1e-5)."""
    spec = _spec(tmp_path, 2)
    for out, extra in (("one", []), ("two", ["--nproc", "2"])):
        command = [*SPECNET, "train", str(spec), "--backend", "torch", "--out", str(tmp_path / out)]
        proc = subprocess.run([*command, "--quiet", *extra], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-6, err_msg=key)
    marker = json.loads((tmp_path / "two" / "specnet.json").read_text())
    assert (marker["workers"], marker["device"]) == (2, "cpu")
    history = json.loads((tmp_path / "two" / "history.json").read_text())
    assert len(history["loss"]) == 2  # rank 0 alone wrote the run


def test_a_dead_worker_fails_the_whole_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    command = [*SPECNET, "train", str(_spec(tmp_path, 500)), "--backend", "torch"]
    process = subprocess.Popen(
        [*command, "--out", str(run), "--nproc", "2", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for_epochs(run, 1, process)

    def children(pid: int) -> list[str]:
        found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
        return found.stdout.split()

    (launcher,) = children(process.pid)  # specnet → torch.distributed.run → the workers
    workers = children(int(launcher))
    assert len(workers) == 2, workers
    os.kill(int(workers[1]), signal.SIGKILL)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert b"specnet: error: a distributed worker failed" in err


def test_a_distributed_run_resumes(tmp_path: Path) -> None:
    spec = _spec(tmp_path, 30)  # long enough that a loaded CI machine cannot finish it unseen
    base = [*SPECNET, "train", str(spec), "--backend", "torch", "--nproc", "2", "--quiet"]
    whole = subprocess.run([*base, "--out", str(tmp_path / "whole")], capture_output=True)
    assert whole.returncode == 0, whole.stderr
    run = tmp_path / "killed"
    process = subprocess.Popen(
        [*base, "--out", str(run)], start_new_session=True, stderr=subprocess.DEVNULL
    )
    wait_for_epochs(run, 2, process)
    os.killpg(process.pid, signal.SIGKILL)  # the launcher and both workers
    process.wait()
    resumed = subprocess.run(
        [*SPECNET, "train", "--resume", str(run), "--nproc", "2", "--quiet"], capture_output=True
    )
    assert resumed.returncode == 0, resumed.stderr
    a, b = _weights(tmp_path / "whole"), _weights(run)
    different = [key for key in a if not np.array_equal(a[key], b[key])]
    assert different == [], "resumed distributed run differs"


def _train(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*SPECNET, "train", *args, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


def _finished(process: subprocess.Popen[bytes]) -> None:
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()[-2000:]


def _close(a: Path, b: Path) -> None:
    one, two = _weights(a), _weights(b)
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_keras_mirrored_strategy_matches_one_device(tmp_path: Path) -> None:
    spec = str(_spec(tmp_path, 2))
    _finished(_train([spec, "--backend", "keras", "--out", str(tmp_path / "one")]))
    two = [spec, "--backend", "keras", "--out", str(tmp_path / "two"), "--strategy", "mirrored"]
    _finished(_train([*two, "--replicas", "2"]))  # two logical CPU devices
    _close(tmp_path / "one", tmp_path / "two")
    marker = json.loads((tmp_path / "two" / "specnet.json").read_text())
    assert (marker["strategy"], marker["replicas"]) == ("mirrored", 2)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_keras_multi_worker_reads_tf_config(tmp_path: Path) -> None:
    spec = str(_spec(tmp_path, 2))
    _finished(_train([spec, "--backend", "keras", "--out", str(tmp_path / "one")]))
    cluster = [f"localhost:{_free_port()}", f"localhost:{_free_port()}"]
    args = [
        spec,
        "--backend",
        "keras",
        "--out",
        str(tmp_path / "multi"),
        "--strategy",
        "multi-worker",
    ]
    workers = [
        _train(
            args,
            {
                "TF_CONFIG": json.dumps(
                    {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": i}}
                )
            },
        )
        for i in range(2)
    ]
    for worker in workers:
        _finished(worker)
    _close(tmp_path / "one", tmp_path / "multi")
    marker = json.loads((tmp_path / "multi" / "specnet.json").read_text())
    assert (marker["strategy"], marker["workers"]) == ("multi-worker", 2)
