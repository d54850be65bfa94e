"""Dependency floors sit above versions with known advisories; the tested set respects them.

No vulnerability database can be reached offline here, so the audit itself is one documented
online command (``scripts/audit.sh``, README "Security"); this test keeps the floors honest.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import ROOT

# The lowest version specnet accepts of each package whose older releases have advisories
# about loading untrusted files (e.g. torch.load RCE CVE-2025-32434 < 2.6, Keras safe_mode
# bypass CVE-2025-1550 < 3.9, ONNX external-data path traversal CVE-2024-27318 < 1.16,
# PyYAML full_load RCE CVE-2020-14343 < 5.4, Pillow CVE-2024-28219 < 10.3); the floors are set
# above the newest such fix this project tracks.
FLOORS = {"torch": "2.10", "keras": "3.14", "onnx": "1.21", "pyyaml": "5.4", "pillow": "10.3"}


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        listed += [item for item in extra if not item.startswith("specnet")]
    return [Requirement(item) for item in listed]


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#;]+)", line)
        if match:
            pins[_canonical(match[1])] = Version(match[2])
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_floor_is_declared(name: str) -> None:
    found = [r for r in _requirements() if _canonical(r.name) == name]
    assert found, f"{name} is not a declared dependency"
    for requirement in found:
        lowest = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        assert lowest, f"{requirement}: no >= floor"
        assert min(lowest) >= Version(FLOORS[name]), f"{requirement}: floor below {FLOORS[name]}"


def test_tested_set_and_installed_set_satisfy_every_declared_range() -> None:
    pins = _pins()
    for requirement in _requirements():
        name = _canonical(requirement.name)
        if name in pins:
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"constraints.txt pins {name}=={pins[name]}, outside {requirement}"
            )
        try:
            installed = Version(metadata.version(requirement.name))
        except metadata.PackageNotFoundError:
            continue  # e.g. tensorflow-cpu where a GPU user installed tensorflow
        assert requirement.specifier.contains(installed, prereleases=True), (
            f"installed {name} {installed} is outside {requirement}"
        )
