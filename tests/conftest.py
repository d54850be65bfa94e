"""Shared helpers: the spec corpus and an in-process CLI runner."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from specnet.cli import main

ROOT = Path(__file__).resolve().parent.parent

# The mutation campaign (scripts/mutation.sh) forks one worker per mutant from a process that has
# collected the tests. Importing a framework costs seconds, so there it is imported once, before
# any fork: importing starts no thread pool (forking after one has run is what hangs), and each
# worker then pays only for its tests.
for _framework in filter(None, os.environ.get("SPECNET_PRELOAD", "").split(",")):
    importlib.import_module(_framework)
ALL_SPECS = sorted((ROOT / "specs").glob("**/*.yaml"))
#: the specs every runtime builds, trains and exports in the parametrised suites; the full-size
#: applications (ResNet50 at 224×224) have their own, once-per-run checks (test_applications.py)
SPECS = [path for path in ALL_SPECS if "applications" not in path.parts]
APPLICATIONS = [path for path in ALL_SPECS if "applications" in path.parts]
BAD_SPECS = sorted((ROOT / "tests" / "bad_specs").glob("*.yaml"))


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run ``specnet ARGS`` in-process; returns exit code, stdout and stderr."""

    def run(*args: str | Path) -> Result:
        code = main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def _realworld() -> Path:
    """``../shared/realworld`` beside the checkout (or above a worktree), or where
    ``SPECNET_REALWORLD`` says: real model files from public repositories, never copied here."""
    given = os.environ.get("SPECNET_REALWORLD")
    if given:
        return Path(given)
    for folder in (ROOT.parent, ROOT.parent.parent):
        if (folder / "shared" / "realworld").is_dir():
            return folder / "shared" / "realworld"
    return ROOT.parent / "shared" / "realworld"


REALWORLD = _realworld()
