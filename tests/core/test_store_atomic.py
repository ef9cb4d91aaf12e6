from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dlm.store import atomic
from dlm.store.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    dumps_json,
    fsync_tree,
)


def test_write_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"one")
    assert target.read_bytes() == b"one"
    atomic_write_bytes(target, b"two-longer")
    assert target.read_bytes() == b"two-longer"
    atomic_write_text(target, "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    assert os.listdir(tmp_path) == ["f.bin"]  # no temporary file left


def test_failed_replace_keeps_old_content_and_removes_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_failed_write_removes_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(fd: int) -> None:
        raise OSError("I/O error")

    monkeypatch.setattr(atomic.os, "fsync", boom)
    with pytest.raises(OSError, match="I/O error"):
        atomic_write_bytes(tmp_path / "g", b"data")
    assert os.listdir(tmp_path) == []


def test_json_is_stable_and_sorted(tmp_path: Path) -> None:
    a = {"b": 1, "a": {"z": [1, 2], "y": "é"}}
    b = {"a": {"y": "é", "z": [1, 2]}, "b": 1}
    assert dumps_json(a) == dumps_json(b)
    atomic_write_json(tmp_path / "m.json", a)
    text = (tmp_path / "m.json").read_text(encoding="utf-8")
    assert json.loads(text) == a
    assert text.index('"a"') < text.index('"b"')
    assert "é" in text and text.endswith("\n")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name fds")
def test_fsync_tree_syncs_every_file_and_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "t" / "d1" / "d2").mkdir(parents=True)
    (tmp_path / "t" / "a").write_text("a")
    (tmp_path / "t" / "d1" / "b").write_text("b")
    (tmp_path / "t" / "d1" / "d2" / "c").write_text("c")
    (tmp_path / "outside").write_text("x")
    (tmp_path / "t" / "link").symlink_to(tmp_path / "outside")
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", spy)
    fsync_tree(tmp_path / "t")
    t = tmp_path / "t"
    expected = {t, t / "a", t / "d1", t / "d1" / "b", t / "d1" / "d2", t / "d1" / "d2" / "c"}
    assert {Path(p) for p in synced} == expected
    # children before their directory: a directory is synced after its entries
    assert synced.index(str(t / "d1" / "d2" / "c")) < synced.index(str(t / "d1" / "d2"))
    assert synced[-1] == str(t)
