"""Atomic file writes: a crash never leaves a half-written file under its final name."""

from __future__ import annotations

import contextlib
import glob
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from specnet.errors import RuntimeFailure, UsageError

__all__ = [
    "TEMP_SUFFIX",
    "atomic_write_bytes",
    "atomic_write_text",
    "current_umask",
    "is_temporary",
    "json_safe",
    "sweep_temporaries",
]

#: every temporary file specnet writes is ``.<final name>.<random><TEMP_SUFFIX>[.ext]`` beside
#: its final name, so one left by a killed process is recognisable and never mistaken for output
TEMP_SUFFIX = ".specnet-tmp"


def current_umask() -> int:
    """The process umask (reading it means setting it; it is put straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, overwrite: bool) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then move it into place.

    Without ``overwrite`` an existing ``path`` is never replaced (checked atomically with a hard
    link, so two writers cannot both win) and :class:`UsageError` names the flag to pass.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(f".{glob.escape(target.name)}.????????{TEMP_SUFFIX}"):
            with contextlib.suppress(OSError):  # what a killed writer of this file left
                stale.unlink()
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=folder)
    except OSError as exc:
        raise RuntimeFailure(f"{target}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            mode = 0o666 & ~current_umask()  # mkstemp makes 0600; act like open()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise UsageError(f"{target}: already exists; pass --force to replace it") from None
    except OSError as exc:
        raise RuntimeFailure(f"{target}: cannot write ({exc.strerror})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is named as specnet names its temporaries (file or staging folder)."""
    return path.name.startswith(".") and TEMP_SUFFIX in path.name


def sweep_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files a killed specnet process left in ``folder`` (not below it).

    Only names specnet itself makes (``.<name>.<random>.specnet-tmp[.ext]``) are touched.
    """
    removed: list[Path] = []
    if not Path(folder).is_dir():  # e.g. checkpoints/ of a run killed before its first one
        return removed
    for path in Path(folder).iterdir():
        if is_temporary(path) and path.is_file() and not path.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed.append(path)
    return removed


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None``: what strict JSON parsers accept (Python's
    ``json`` writes a bare ``NaN``, which is not JSON). A metric with no value — the validation
    loss when ``validation_split`` is 0 — is then ``null``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value
