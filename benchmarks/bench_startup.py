"""Start-up cost of the static verbs, next to Python itself and the framework imports.

    python benchmarks/bench_startup.py [--rounds 7]

Each round runs every command once, in a rotated order (interleaved, so drift on a shared machine
hits all of them alike); the table shows medians, spread, and ratios against `python -c pass` and
`python -c "import tensorflow"` measured in the same run. Results also go to
benchmarks/results/startup.json. Target (issue 6): `specnet validate` ≤ 0.1× `import tensorflow`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from _common import stats, write

ROOT = Path(__file__).resolve().parent.parent
SPEC = "specs/keras/cifar10_cnn.yaml"
SPECNET = str(Path(sys.executable).with_name("specnet"))

COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    f"specnet validate {SPEC}": [SPECNET, "validate", SPEC],
    f"specnet summary {SPEC}": [SPECNET, "summary", SPEC],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "python -c 'import tensorflow'": [sys.executable, "-c", "import tensorflow"],
}


def _time(command: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr.decode()[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    names = list(COMMANDS)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # one warm-up each: page cache, .pyc files
        _time(COMMANDS[name])
    for round_ in range(args.rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            samples[name].append(_time(COMMANDS[name]))
    summary = {name: stats(values) for name, values in samples.items()}
    base = summary["python -c pass"]["median"]
    tf = summary["python -c 'import tensorflow'"]["median"]
    print(
        f"{'command':<48} {'median s':>9} {'min':>7} {'max':>7} {'×python':>8} {'×import tf':>10}"
    )
    for name, row in summary.items():
        print(
            f"{name:<48} {row['median']:>9.3f} {row['min']:>7.3f} {row['max']:>7.3f} "
            f"{row['median'] / base:>8.1f} {row['median'] / tf:>10.3f}"
        )
    ratio = summary[f"specnet validate {SPEC}"]["median"] / tf
    verdict = "met" if ratio <= 0.1 else "NOT met"
    print(f"\nspecnet validate / import tensorflow = {ratio:.3f} (target ≤ 0.1: {verdict})")
    path = write("startup", {"rounds": args.rounds, "results": summary, "validate_over_tf": ratio})
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
