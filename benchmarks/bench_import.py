"""`specnet import` of real-size Keras models next to `python -c "import tensorflow"`, same run.

    python benchmarks/bench_import.py [--rounds 5]

Two imports, each a fresh `specnet import` process (start-up included, as a user runs it):

* CaImAn's 3.3 M-parameter Keras 2 classifier (the JSON from ../shared/realworld/caiman, its
  weights written here by tf_keras — Keras 2 — as `save_weights` HDF5: the file a CaImAn user
  has); target ≤ 0.25× the time of importing TensorFlow, which specnet's importer never does;
* ResNet50 as Keras 3 saves it (`keras.applications.ResNet50(weights=None)`, `model.save` to a
  `.keras` file, 25.6 M parameters, ~100 MB): target "a few seconds".

Rounds interleave the three commands (their order rotating), medians with their spread.
Writes benchmarks/results/import.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import stats, write

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SPECNET = [PYTHON, "-m", "specnet"]
CAIMAN = ROOT.parent / "shared" / "realworld" / "caiman" / "cnn_model.json"


def _caiman_weights(folder: Path) -> Path:
    """The CaImAn model's weights, randomised, as Keras 2's ``save_weights`` writes HDF5."""
    code = (
        "import sys, numpy as np, tf_keras\n"
        "model = tf_keras.models.model_from_json(open(sys.argv[1]).read())\n"
        "rng = np.random.default_rng(0)\n"
        "model.set_weights([rng.normal(0, 0.05, w.shape).astype('float32') "
        "for w in model.get_weights()])\n"
        "model.save_weights(sys.argv[2])\n"
    )
    path = folder / "caiman.weights.h5"
    subprocess.run([PYTHON, "-c", code, str(CAIMAN), str(path)], check=True, env=_quiet())
    return path


def _resnet50(folder: Path) -> Path:
    code = "import sys, keras\nkeras.applications.ResNet50(weights=None).save(sys.argv[1])\n"
    path = folder / "resnet50.keras"
    subprocess.run([PYTHON, "-c", code, str(path)], check=True, env=_quiet())
    return path


def _quiet() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _seconds(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, env=_quiet(), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="specnet-bench-import-") as scratch:
        folder = Path(scratch)
        weights, resnet = _caiman_weights(folder), _resnet50(folder)
        commands = {
            "import tensorflow": [PYTHON, "-c", "import tensorflow"],
            "specnet import caiman (JSON + HDF5)": [
                *SPECNET, "import", str(CAIMAN), "--weights", str(weights),
                "-o", str(folder / "caiman"), "--force",
            ],
            "specnet import resnet50.keras": [
                *SPECNET, "import", str(resnet), "-o", str(folder / "resnet"), "--force",
            ],
        }  # fmt: skip
        for command in commands.values():
            _seconds(command)  # warm-up: the page cache
        times: dict[str, list[float]] = {name: [] for name in commands}
        names = list(commands)
        for round_ in range(args.rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                times[name].append(_seconds(commands[name]))
        megabytes = {
            "caiman": (weights.stat().st_size + CAIMAN.stat().st_size) / 2**20,
            "resnet50": resnet.stat().st_size / 2**20,
        }
    table = {name: stats(values) for name, values in times.items()}
    baseline = statistics.median(times["import tensorflow"])
    print(f"{'command':<38} {'seconds':>8} {'spread':>8} {'× import tensorflow':>20}")
    for name, row in table.items():
        spread = (row["max"] - row["min"]) / 2
        ratio = row["median"] / baseline
        print(f"{name:<38} {row['median']:>8.2f} {spread:>8.2f} {ratio:>20.2f}")
    caiman = table["specnet import caiman (JSON + HDF5)"]["median"] / baseline
    print(
        f"\ncaiman: {megabytes['caiman']:.1f} MB in, {caiman:.2f}× import tensorflow "
        f"(target ≤ 0.25: {'met' if caiman <= 0.25 else 'NOT met'}); resnet50.keras: "
        f"{megabytes['resnet50']:.0f} MB in "
        f"{table['specnet import resnet50.keras']['median']:.1f} s"
    )
    path = write("import", {"results": table, "megabytes": megabytes, "caiman_ratio": caiman})
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
