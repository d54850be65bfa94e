"""examples/ runs end to end (fast settings), and what each prints is checked against an
independent answer where there is one (the ONNX file served by onnxruntime alone must agree
with `specnet predict`)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

EXAMPLES = ROOT / "examples"
ENV = {**os.environ, "EPOCHS": "2", "BIN": str(Path(sys.executable).parent)}


def _run(*command: str | Path) -> str:
    proc = subprocess.run(
        [str(c) for c in command], cwd=ROOT, env=ENV, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_every_example_is_linked_from_the_readme_and_tested() -> None:
    readme = (ROOT / "README.md").read_text()
    here = Path(__file__).read_text()
    for path in sorted(EXAMPLES.iterdir()):
        assert f"examples/{path.name}" in readme, path.name
        assert path.name in here, f"{path.name} is not run by this file"


def test_blog_cnn_on_a_folder_then_onnx_served_alone(tmp_path: Path) -> None:
    out = _run("bash", EXAMPLES / "blog_cnn_folder.sh", tmp_path)  # uses make_squares.py
    assert "accuracy" in out
    assert "all runtimes agree" in out
    rows = list(csv.DictReader(io.StringIO((tmp_path / "predictions.csv").read_text())))
    assert len(rows) == 24  # photos/red, nested 2019/ included, .ipynb_checkpoints skipped
    images = [r["input"] for r in rows[:5]]
    served = _run(sys.executable, EXAMPLES / "serve_onnx.py", tmp_path / "blog_cnn.onnx", *images)
    classes = [line.rsplit(": ", 1)[1].split()[0] for line in served.splitlines()[1:]]
    assert classes == [r["class"] for r in rows[:5]]  # onnxruntime alone == specnet predict
    assert "'channels': 'RGB'" in served.splitlines()[0]


def test_python_api_whole_loop(tmp_path: Path) -> None:
    out = _run(sys.executable, EXAMPLES / "python_api.py", tmp_path)
    assert "parity holds" in out
    assert (tmp_path / "seed_cnn.onnx").exists()
    assert json.loads((tmp_path / "run" / "specnet.json").read_text())["status"] == "finished"


def test_keras_model_moved_to_pytorch(tmp_path: Path) -> None:
    out = _run(sys.executable, EXAMPLES / "keras_to_pytorch.py", tmp_path)
    assert "all runtimes agree" in out
    assert "standalone PyTorch file vs Keras" in out
    assert (tmp_path / "model_torch.py").exists()


def test_the_example_spec_is_valid() -> None:
    # blog_cnn.yaml is trained by blog_cnn_folder.sh above; here only its own promises
    _run(sys.executable, "-m", "specnet", "validate", EXAMPLES / "blog_cnn.yaml")
