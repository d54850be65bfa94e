"""Run the specnet CLI and SIGKILL it inside one of its atomic file writes (a test harness).

    SPECNET_CRASH_AT=<n>:<stage>[:<file name>] python tests/crashpoint.py train …

counts the calls of :func:`specnet._io.atomic_write_bytes` from the start of the process (only
those writing a file of that name, if one is given) and kills the process with SIGKILL during
the ``n``-th one, at ``stage``:

    mid-write      half of the bytes are in the temporary file
    before-fsync   all bytes written and flushed, not yet on disk
    before-rename  the temporary file is complete; the final name still holds the old file
    after-rename   the new file is in place; the caller has not seen the write return

Nothing in specnet is replaced: the harness wraps the ``os`` functions that ``specnet._io``
calls, so the code under test is the code users run. Without the variable it is the plain CLI.
"""

from __future__ import annotations

import os
import signal
import sys
import types
from typing import Any

STAGES = ("mid-write", "before-fsync", "before-rename", "after-rename")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _HalfWriter:
    """A file object that writes half of what it is given, then dies."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def __enter__(self) -> _HalfWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def write(self, data: bytes) -> int:
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        _die()
        raise AssertionError("unreachable")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def arm(n: int, stage: str, name: str = "") -> None:
    """Make the ``n``-th atomic write of this process (of a file called ``name``) die at
    ``stage``."""
    from specnet import _io

    if stage not in STAGES:
        raise SystemExit(f"crashpoint: unknown stage {stage!r}; one of {STAGES}")
    real = _io.atomic_write_bytes
    count = 0

    def hooked_os(live: bool) -> types.SimpleNamespace:
        def call(name: str, when: str) -> Any:
            def wrapped(*args: Any, **kwargs: Any) -> Any:
                if live and when == "before":
                    _die()
                result = getattr(os, name)(*args, **kwargs)
                if live and when == "after":
                    _die()
                return result

            return wrapped

        fake = types.SimpleNamespace(
            **{k: getattr(os, k) for k in dir(os) if not k.startswith("__")}
        )
        if stage == "mid-write":
            fake.fdopen = lambda *a, **k: (
                _HalfWriter(os.fdopen(*a, **k)) if live else os.fdopen(*a, **k)
            )
        elif stage == "before-fsync":
            fake.fsync = call("fsync", "before")
        elif stage == "before-rename":
            fake.replace, fake.link = call("replace", "before"), call("link", "before")
        else:
            fake.replace, fake.link = call("replace", "after"), call("link", "after")
        return fake

    def counted(path: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal count
        count += not name or os.path.basename(path) == name
        _io.os = hooked_os(count == n)  # type: ignore[assignment]
        try:
            return real(path, *args, **kwargs)
        finally:
            _io.os = os  # type: ignore[assignment]

    _io.atomic_write_bytes = counted  # type: ignore[assignment]
    # modules that imported the function by name before the harness ran
    for module in list(sys.modules.values()):
        if getattr(module, "atomic_write_bytes", None) is real and module is not _io:
            module.atomic_write_bytes = counted  # type: ignore[attr-defined]


def main() -> int:
    point = os.environ.get("SPECNET_CRASH_AT")
    # every module that writes files, imported first so arm() can rebind their imported name
    # (none of them imports a framework at module level)
    from specnet import build, cli, export, plots, train, weights  # noqa: F401
    from specnet.backends import onnx, torch  # noqa: F401

    if point:
        n, stage, *name = point.split(":")
        arm(int(n), stage, *name)
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
