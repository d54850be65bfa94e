"""What augmentation and a learning-rate schedule change, honestly: test accuracy on
scikit-learn's digits with and without them, same epochs, several seeds.

    python benchmarks/bench_accuracy.py [--seeds 3] [--epochs 15] [--backend torch]

specs/digits_cnn.yaml as it is (Adam at a constant 0.001), then with augmentation first in its
layers (a small rotation, shift and zoom: digits are not flip-symmetric), with a cosine decay
of the rate (warm-up over the first epoch, to 1% of the peak by the last step), and with both.
Each is trained once per seed (the seed also shuffles the split), and scored on the held-out
20% test split. Prints a table (mean ± spread over the seeds, each seed's accuracy) and writes
benchmarks/results/accuracy.json.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import write

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from specnet.evaluate import evaluate  # noqa: E402
from specnet.train import train  # noqa: E402

AUGMENTATION = """layers:
  - {type: RandomRotation, factor: 0.03, fill_mode: constant}
  - {type: RandomTranslation, height_factor: 0.1, width_factor: 0.1, fill_mode: constant}
  - {type: RandomZoom, height_factor: 0.1, fill_mode: constant}
"""


def _variant(text: str, augment: bool, schedule: bool, epochs: int, seed: int) -> str:
    text = text.replace("epochs: 15", f"epochs: {epochs}").replace("seed: 0", f"seed: {seed}")
    if augment:
        text = text.replace("layers:\n", AUGMENTATION, 1)
    if schedule:
        # 1,797 digits: 80% kept from the test split, 90% of those train; batches of 32
        steps = math.ceil(math.floor(1797 * 0.8 * 0.9) / 32) * epochs
        rate = (
            "{type: adam, learning_rate: {type: CosineDecay, initial_learning_rate: 0.0, "
            f"warmup_target: 0.003, warmup_steps: {steps // epochs}, decay_steps: "
            f"{steps - steps // epochs}, alpha: 0.01}}}}"
        )
        text = text.replace("optimizer: adam", f"optimizer: {rate}")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--backend", default="torch", choices=["torch", "keras"])
    args = parser.parse_args()
    base = (ROOT / "specs" / "digits_cnn.yaml").read_text()
    variants = {
        "as written (constant rate)": (False, False),
        "+ augmentation": (True, False),
        "+ cosine schedule": (False, True),
        "+ both": (True, True),
    }
    results: dict[str, list[float]] = {}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="specnet-accuracy-") as scratch:
        for name, (augment, schedule) in variants.items():
            results[name] = []
            for seed in range(args.seeds):
                spec = Path(scratch) / f"{len(results)}-{seed}.yaml"
                spec.write_text(_variant(base, augment, schedule, args.epochs, seed))
                run = train(spec, args.backend, out=Path(scratch) / spec.stem)
                report = evaluate(run.out)
                assert report.split == "test", report.split
                results[name].append(report.accuracy)
    print(
        f"digits_cnn, {args.epochs} epochs, {args.backend}, seeds 0–{args.seeds - 1}, "
        f"test split (360 images): {time.perf_counter() - began:.0f} s"
    )
    print(f"{'variant':<28} {'mean':>7} {'± spread':>9}  per seed")
    for name, values in results.items():
        spread = (max(values) - min(values)) / 2
        each = " ".join(f"{v:.3f}" for v in values)
        print(f"{name:<28} {statistics.mean(values):>7.4f} {spread:>9.4f}  {each}")
    path = write(
        "accuracy",
        {"epochs": args.epochs, "backend": args.backend, "accuracy": results},
    )
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
