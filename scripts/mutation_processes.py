"""Run the process tests on the mutants a campaign left alive.

    python scripts/mutation_processes.py WORK TEST...

mutmut decides which tests to run for a mutant from the functions each test reached *in its own
process*, so the code only a child process runs (the ranks of a distributed run) is never tested
by the tests that spawn those children (tests/test_distributed.py): its mutants survive untested.
This pass gives each survivor of the campaign in ``WORK`` (``.mutation/<module>``) those tests
too. The children import the trampolined copy of specnet in ``WORK/mutants`` (``PYTHONPATH``,
and the working directory for ``-m``) and inherit ``MUTANT_UNDER_TEST``, which the trampolines
read in every process.

Before any mutant it proves the setup both ways: the tests pass with no mutant active, and fail
with mutmut's ``fail`` mutant (every trampolined call raises), so a child that somehow imported
the unmutated checkout cannot pass for a kill. A survivor whose tests then fail is rewritten in
``WORK/results.txt`` as ``killed by processes``; the rest stay ``survived``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TIMEOUT_S = 600


def run_tests(work: Path, tests: list[str], mutant: str) -> int:
    mutants = work / "mutants"
    env = {**os.environ, "MUTANT_UNDER_TEST": mutant, "PYTHONPATH": str(mutants)}
    env.pop("SPECNET_PRELOAD", None)
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    try:
        done = subprocess.run(
            command, cwd=mutants, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return -1  # a hang counts as caught, as mutmut counts a timeout
    return done.returncode


def main(work: Path, tests: list[str]) -> None:
    results = work / "results.txt"
    lines = results.read_text().splitlines()
    if run_tests(work, tests, "") != 0:
        raise SystemExit(f"{' '.join(tests)} fail with no mutant active in {work}/mutants")
    if run_tests(work, tests, "fail") == 0:
        raise SystemExit(f"{' '.join(tests)} pass with every mutated call failing: not tested")
    survivors = [i for i, line in enumerate(lines) if line.rstrip().endswith(": survived")]
    killed = 0
    for number, i in enumerate(survivors, 1):
        name = lines[i].rsplit(": ", 1)[0].strip()
        caught = run_tests(work, tests, name) != 0
        killed += caught
        if caught:
            lines[i] = lines[i].replace(": survived", ": killed by processes")
        print(
            f"[{number}/{len(survivors)}] {name}: {'killed' if caught else 'survived'}", flush=True
        )
        results.write_text("\n".join(lines) + "\n")  # resumable by hand: progress is kept
    print(f"process tests killed {killed} of {len(survivors)} survivors", file=sys.stderr)


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), sys.argv[2:])
