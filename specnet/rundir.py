"""Build and run directories: claimed before anything is written, never silently overwritten.

Every directory specnet writes holds ``specnet.json``, which says what made it (``kind``: build
or train), from which spec, when, and with which versions. A directory may be reused only by
the same kind of job for the same spec (rebuilding is normal); anything else — another spec's
directory, a trained run, or a folder specnet did not make — needs ``--force``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from specnet import __version__
from specnet._io import TEMP_SUFFIX, atomic_write_text
from specnet.errors import UsageError

__all__ = ["MARKER", "claim", "read_marker", "versions", "write_marker"]

MARKER = "specnet.json"
_DISTRIBUTIONS = ("tensorflow-cpu", "tensorflow", "keras", "torch", "numpy", "onnx", "onnxruntime")


def versions() -> dict[str, str]:
    """Versions of Python, specnet and the installed frameworks."""
    found = {"python": platform.python_version(), "specnet": __version__}
    for name in _DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def claim(folder: Path, *, kind: str, spec: str, force: bool, reuse: bool = True) -> Path:
    """Make sure ``folder`` may receive a ``kind`` job for ``spec``; create it if needed.

    ``reuse``: whether the same kind of job for the same spec may write there again (a rebuild
    may; a second training run may not overwrite the first — it resumes it or goes elsewhere —
    unless the first was stopped before it began training: its marker still says ``starting``).
    """
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder}: exists and is not a directory")
    ours = f".*{TEMP_SUFFIX}*"  # temporaries a killed specnet process left behind
    if folder.is_dir() and any(not p.match(ours) for p in folder.iterdir()) and not force:
        marker = read_marker(folder)
        if marker is None:
            raise UsageError(
                f"{folder}: exists and was not made by specnet; "
                "choose another --out or pass --force"
            )
        if not reuse and marker.get("kind") == kind and marker.get("status") != "starting":
            raise UsageError(
                f"{folder}: holds a {kind} run of spec {marker.get('spec')!r}; continue it with "
                "--resume, choose another --out, or pass --force to replace it"
            )
        if marker.get("kind") != kind or marker.get("spec") != spec:
            made = f"a {marker.get('kind')} of spec {marker.get('spec')!r}"
            raise UsageError(
                f"{folder}: holds {made}; choose another --out, or pass --force to replace it"
            )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_marker(folder: Path, **fields: Any) -> Path:
    document = {
        **fields,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
        },
    }
    return atomic_write_text(folder / MARKER, json.dumps(document, indent=2) + "\n", overwrite=True)
