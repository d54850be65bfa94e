"""Distributed PyTorch training: images/s with 1 and 2 workers, same global batch, same run.

    python benchmarks/bench_distributed.py [--rounds 2] [--samples 2560] [--epochs 2]

Runs `specnet train specs/keras/cifar10_cnn.yaml --backend torch` on the built-in data with
``--nproc 1`` and ``--nproc 2`` (gloo, CPU) in alternating rounds, reads the per-epoch seconds
that `--json` prints, and reports images/s of the last epoch (the first pays start-up) and the
scaling. On a 2-core machine two workers share the same cores, so expect little gain: the point
is the measured curve. Writes benchmarks/results/distributed.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import stats, write

ROOT = Path(__file__).resolve().parent.parent


def _epoch_rate(nproc: int, spec: Path, epochs: int, train_images: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        command = [
            sys.executable, "-m", "specnet", "train", str(spec), "--backend", "torch",
            "--epochs", str(epochs), "--out", str(Path(folder) / "run"), "--json",
            "--nproc", str(nproc),
        ]  # fmt: skip
        proc = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    epochs_seen = [json.loads(line) for line in proc.stdout.splitlines() if '"epoch"' in line]
    return train_images / float(epochs_seen[-1]["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=2560)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    text = (ROOT / "specs/keras/cifar10_cnn.yaml").read_text()
    text = text.replace("samples: 2000", f"samples: {args.samples}")
    text = text.replace("batch_size: 32", "batch_size: 64")
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / "cifar10_cnn.yaml"
        spec.write_text(text)
        train_images = int(args.samples * 0.9)
        rates: dict[int, list[float]] = {1: [], 2: []}
        for round_ in range(args.rounds):
            for nproc in (1, 2) if round_ % 2 == 0 else (2, 1):
                rates[nproc].append(_epoch_rate(nproc, spec, args.epochs, train_images))
    table = {n: stats(values) for n, values in rates.items()}
    print(f"cifar10_cnn, global batch 64, {train_images} training images per epoch, gloo on CPU")
    print(f"{'workers':>7} {'images/s':>9} {'min':>7} {'max':>7}")
    for n, row in table.items():
        print(f"{n:>7} {row['median']:>9,.0f} {row['min']:>7,.0f} {row['max']:>7,.0f}")
    scaling = table[2]["median"] / table[1]["median"]
    print(f"\n2 workers / 1 worker = {scaling:.2f}")
    path = write(
        "distributed", {"results": {str(k): v for k, v in table.items()}, "scaling": scaling}
    )
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
