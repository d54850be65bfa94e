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


@pytest.mark.parametrize("atomic", [True, False], ids=["renameat2", "two_renames"])
def test_staged_folder_replaces_whole_and_keeps_foreign_files(
    atomic: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from specnet import rundir

    if not atomic:  # a platform without renameat2: the fallback of two renames
        monkeypatch.setattr(rundir.ctypes, "CDLL", lambda *a, **k: object())
    folder = tmp_path / "build"
    (folder / "sub").mkdir(parents=True)
    (folder / "old.txt").write_text("old")
    (folder / "model.onnx").write_text("derived from the old weights")
    (folder / "sub" / "mine.txt").write_text("mine")
    with rundir.staged(folder, replaces={"model.onnx"}) as stage:
        assert stage.parent == tmp_path
        assert not (folder / "new.txt").exists()  # nothing visible until the block ends
        (stage / "new.txt").write_text("new")
        (stage / "old.txt").write_text("replaced")
    assert sorted(p.name for p in folder.rglob("*")) == ["mine.txt", "new.txt", "old.txt", "sub"]
    assert (folder / "old.txt").read_text() == "replaced"
    assert (folder / "sub" / "mine.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["build"]  # no staging left behind


def test_a_foreign_folder_is_written_in_place(tmp_path: Path) -> None:
    """--force into a folder specnet did not make: no tree of the user's is moved or linked."""
    from specnet import rundir

    folder = tmp_path / "mine"
    (folder / "photos").mkdir(parents=True)
    (folder / "photos" / "a.jpg").write_bytes(b"jpeg")
    (folder / "model.onnx").write_text("stale")
    inode = (folder / "photos").stat().st_ino
    with rundir.staged(folder, replaces={"model.onnx"}) as stage:
        assert stage == folder.resolve()
        (stage / "new.txt").write_text("new")
    assert sorted(p.name for p in folder.iterdir()) == ["new.txt", "photos"]
    assert (folder / "photos").stat().st_ino == inode


def test_sweeping_a_folder_that_does_not_exist_is_a_no_op(tmp_path: Path) -> None:
    from specnet._io import sweep_temporaries

    assert sweep_temporaries(tmp_path / "checkpoints") == []
