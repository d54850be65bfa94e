"""Build and run directories: claimed before anything is written, never silently overwritten.

Every directory specnet writes holds ``specnet.json``, which says what made it (``kind``: build
or train), from which spec, when, and with which versions. A directory may be reused only by
the same kind of job for the same spec (rebuilding is normal); anything else — another spec's
directory, a trained run, or a folder specnet did not make — needs ``--force``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Collection, Iterator
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specnet import __version__
from specnet._io import TEMP_SUFFIX, atomic_write_text, current_umask, is_temporary
from specnet.errors import RuntimeFailure, UsageError

if TYPE_CHECKING:
    from specnet.spec import Spec
    from specnet.weights import Weights

__all__ = [
    "ARTIFACTS",
    "MARKER",
    "SPEC_FILE",
    "WEIGHTS_FILE",
    "claim",
    "empty_for_replacement",
    "read_marker",
    "spec_fingerprint",
    "staged",
    "versions",
    "weights_digest",
    "write_marker",
]

MARKER = "specnet.json"
WEIGHTS_FILE = "weights.safetensors"
SPEC_FILE = "spec.resolved.yaml"
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


def spec_fingerprint(spec: Spec) -> str:
    """What a model depends on: the whole resolved spec but ``train.epochs`` (which a resume's
    ``--epochs`` may raise), as a short SHA-256."""
    document = spec.model_dump(mode="json", exclude={"train": {"epochs"}})
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def weights_digest(weights: Weights) -> str:
    """A SHA-256 of canonical weights (keys, shapes and bytes), to tell two sets apart."""
    digest = hashlib.sha256()
    for key in sorted(weights):
        array = weights[key]
        digest.update(f"{key}:{tuple(array.shape)}:{array.dtype.str}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


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
    # (temporaries a killed specnet process left behind do not count as content)
    if folder.is_dir() and _has_content(folder) and not force:
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


#: every name specnet writes in a build or run directory
ARTIFACTS = frozenset(
    {
        MARKER,
        "spec.resolved.yaml",
        "class_names.json",
        "weights.safetensors",
        "model.keras",
        "model.torch.safetensors",
        "model.onnx",
        "parity.json",
        "metrics.csv",
        "history.json",
        "training_curves.png",
        "confusion_matrix.png",
        "summary.txt",
        "checkpoints",
    }
)


def empty_for_replacement(folder: Path) -> list[str]:
    """Before ``--force`` writes a new run into ``folder``: remove what the old one left, so the
    folder holds only the new run's files (a ``model.onnx`` or the other backend's native model
    from the replaced spec would otherwise be deployed as if they were the new one's).

    A training run's folder is specnet's through and through: everything goes but the marker
    (overwritten next, so a kill in between still leaves a folder specnet recognises). In a
    build folder or one specnet did not make, only specnet's own file names go; yours stay.
    Returns the names removed."""
    if not folder.is_dir():
        return []
    marker = read_marker(folder)
    whole = marker is not None and marker.get("kind") == "train"
    removed = []
    for entry in sorted(folder.iterdir()):
        if entry.name == MARKER or not (whole or entry.name in ARTIFACTS):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as exc:
            raise RuntimeFailure(f"{entry}: cannot remove ({exc.strerror or exc})") from None
        removed.append(entry.name)
    return removed


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


@contextlib.contextmanager
def staged(folder: Path, replaces: Collection[str]) -> Iterator[Path]:
    """Write a whole directory elsewhere, then put it in place of ``folder`` in one step.

    Yields a hidden sibling (``.<name>.<random>.specnet-tmp``) to write into. When the block
    ends normally, whatever ``folder`` held that the new contents do not replace — and that is
    not named in ``replaces`` (files derived from the old contents) — is hard-linked across,
    and the two directories are exchanged atomically (Linux ``renameat2(RENAME_EXCHANGE)``), so
    a process killed at any moment leaves either the whole old directory or the whole new one.
    Elsewhere the swap is two renames and a kill between them leaves the old contents in a
    hidden sibling. Stale siblings from killed processes are removed on the next call. A folder
    specnet did not make (``--force``) and the working directory are written in place instead.
    """
    folder = folder.resolve()
    foreign = folder.is_dir() and read_marker(folder) is None and _has_content(folder)
    if foreign or Path.cwd().resolve().is_relative_to(folder):
        # a folder specnet did not make (reached with --force) is written in place, as is the
        # one we stand in: neither is moved, nor its whole tree linked across
        for name in replaces:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                (folder / name).unlink()
        yield folder
        return
    for stale in folder.parent.glob(f".{glob.escape(folder.name)}.*"):
        if is_temporary(stale) and stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=TEMP_SUFFIX, dir=folder.parent))
    try:
        yield stage
        stage.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700; act like mkdir
        if folder.is_dir():
            for entry in folder.iterdir():
                kept = stage / entry.name
                if entry.name in replaces or kept.exists() or is_temporary(entry):
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.copytree(entry, kept, symlinks=True, copy_function=os.link)
                else:
                    os.link(entry, kept, follow_symlinks=False)
            _exchange(stage, folder)
        else:
            os.rename(stage, folder)
        _fsync_dir(folder.parent)
    except OSError as exc:
        raise RuntimeFailure(f"{folder}: cannot write ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # after the exchange: the old contents


def _has_content(folder: Path) -> bool:
    return any(not is_temporary(entry) for entry in folder.iterdir())


def _exchange(new: Path, old: Path) -> None:
    """Swap two directories: atomically where the kernel can, else with two renames."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is not None:
        at_fdcwd, rename_exchange = -100, 2
        if renameat2(at_fdcwd, os.fsencode(new), at_fdcwd, os.fsencode(old), rename_exchange) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), str(old))
    aside = Path(tempfile.mkdtemp(prefix=f".{old.name}.", suffix=TEMP_SUFFIX, dir=old.parent))
    os.rename(old, aside / "old")
    os.rename(new, old)
    os.rename(aside, new)  # so the caller's cleanup removes the old contents


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
