"""Atomic writes: all or nothing, and no silent overwrite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from specnet._io import atomic_write_text
from specnet.errors import RuntimeFailure, UsageError


def test_write_and_refuse_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "one", overwrite=False)
    with pytest.raises(UsageError, match="already exists"):
        atomic_write_text(target, "two", overwrite=False)
    assert target.read_text() == "one"
    atomic_write_text(target, "three", overwrite=True)
    assert target.read_text() == "three"
    assert os.listdir(target.parent) == ["a.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "a.txt"
    target.write_text("good")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(RuntimeFailure, match="No space left on device"):
        atomic_write_text(target, "half", overwrite=True)
    assert target.read_text() == "good"
    assert os.listdir(tmp_path) == ["a.txt"]
