"""Turn ``mutmut results --all true`` into the kill-rate table of docs/mutation.md.

    python scripts/mutation_report.py RESULTS.txt MODULE...

Killed counts what a test caught (a failing test, or a mutant that timed out), including the
survivors that the process tests killed afterwards (``killed by processes``, see
scripts/mutation_processes.py); every other mutant counts against the module: one that
survived, and one that no test reached at all.
"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path


def module_of(mutant: str) -> str:
    """``specnet.shapes.x_infer__mutmut_3`` → ``specnet/shapes.py``."""
    dotted = re.split(r"\.x[_ǁ]", mutant, maxsplit=1)[0]
    return dotted.replace(".", "/") + ".py"


def main(results: Path, modules: list[str]) -> None:
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    survivors: dict[str, list[str]] = collections.defaultdict(list)
    for line in results.read_text().splitlines():
        if ": " not in line:
            continue
        mutant, status = (part.strip() for part in line.rsplit(": ", 1))
        module = module_of(mutant)
        counts[module][status] += 1
        if status in ("survived", "no tests"):
            survivors[module].append(f"{mutant} ({status})")
    print(
        "| module | mutants | killed | timeout | killed by processes | survived | "
        "no test reached | kill rate |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for module in modules:
        c = counts.get(module, collections.Counter())
        total = sum(c.values())
        caught = c["killed"] + c["timeout"] + c["killed by processes"]
        rate = f"{caught / total:.1%}" if total else "—"
        print(
            f"| `{module}` | {total} | {c['killed']} | {c['timeout']} | "
            f"{c['killed by processes']} | {c['survived']} | "
            f"{c['no tests']} | {rate} |"
        )
    for module in modules:
        if survivors.get(module):
            print(f"\n<details><summary>{module}: {len(survivors[module])} not killed</summary>\n")
            print("\n".join(f"- `{name}`" for name in survivors[module]))
            print("\n</details>")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
