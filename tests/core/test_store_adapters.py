from __future__ import annotations

import os
from pathlib import Path

import pytest

from dlm.errors import LockHeldError, StoreError
from dlm.store.adapters import (
    commit_adapter,
    current_version,
    gc_staging,
    list_versions,
    next_version,
    set_current,
)
from dlm.store.lock import StoreLock
from dlm.store.manifest import hash_tree, load_manifest, save_manifest
from dlm.store.paths import StorePaths
from dlm.store.verify import verify_store
from tests.core import store_crash_child as child

DLM_ID = "01J9Z6M8Q5X2V7K3T4R1N0PBCD"


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StorePaths:
    monkeypatch.setenv("DLM_HOME", str(tmp_path))
    return StorePaths.for_id(DLM_ID)


def commit(paths: StorePaths, tag: str) -> str:
    with (
        StoreLock(paths.lock_file, command="train", notice=lambda m: None),
        commit_adapter(paths, meta={"tag": tag}) as staging,
    ):
        child.write_tree(staging, child.adapter_files(tag))
    version = current_version(paths)
    assert version is not None
    return version


def test_first_commits(paths: StorePaths) -> None:
    assert current_version(paths) is None
    assert list_versions(paths) == []
    assert next_version(paths) == "v0001"
    assert commit(paths, "a") == "v0001"
    assert commit(paths, "b") == "v0002"
    assert list_versions(paths) == ["v0001", "v0002"]
    assert paths.current_file.read_text() == "v0002\n"
    assert child.read_tree(paths.version_dir("v0001")) == child.adapter_files("a")
    assert child.read_tree(paths.version_dir("v0002")) == child.adapter_files("b")
    entry = load_manifest(paths).adapters["v0002"]
    assert entry.meta == {"tag": "b"}
    assert entry.files == hash_tree(paths.version_dir("v0002"))
    assert [p.name for p in paths.versions.iterdir() if p.name.startswith(".")] == []
    assert verify_store(paths) == []


def test_versions_sort_numerically(paths: StorePaths) -> None:
    paths.ensure()
    for name in ("v0009", "v10000", "v0010"):
        (paths.versions / name).mkdir()
    assert list_versions(paths) == ["v0009", "v0010", "v10000"]
    assert next_version(paths) == "v10001"


def test_exception_rolls_back(paths: StorePaths) -> None:
    commit(paths, "a")
    with (
        StoreLock(paths.lock_file, command="train"),
        pytest.raises(RuntimeError, match="out of memory"),
        commit_adapter(paths, meta={}) as staging,
    ):
        child.write_tree(staging, child.adapter_files("b"))
        raise RuntimeError("out of memory")
    assert current_version(paths) == "v0001"
    assert list_versions(paths) == ["v0001"]
    assert sorted(os.listdir(paths.versions)) == ["v0001"]
    assert verify_store(paths) == []


def test_empty_commit_is_refused(paths: StorePaths) -> None:
    with (
        StoreLock(paths.lock_file, command="train"),
        pytest.raises(StoreError, match="wrote no files"),
        commit_adapter(paths, meta={}),
    ):
        pass
    assert current_version(paths) is None
    assert os.listdir(paths.versions) == []


def test_commit_needs_the_lock(paths: StorePaths) -> None:
    with pytest.raises(LockHeldError, match="needs the store lock"), commit_adapter(paths, meta={}):
        pass


def test_meta_must_be_json(paths: StorePaths) -> None:
    with (
        StoreLock(paths.lock_file, command="train"),
        pytest.raises(StoreError, match="not plain JSON"),
        commit_adapter(paths, meta={"path": Path("/x")}),
    ):
        pass


def test_corrupt_current_file(paths: StorePaths) -> None:
    paths.adapter.mkdir(parents=True)
    paths.current_file.write_text("../../etc\n")
    with pytest.raises(StoreError, match="not an adapter version"):
        current_version(paths)


def test_set_current_rolls_back_to_a_recorded_version(paths: StorePaths) -> None:
    commit(paths, "a")
    commit(paths, "b")
    with StoreLock(paths.lock_file, command="rollback"):
        set_current(paths, "v0001")
        with pytest.raises(StoreError, match="missing"):
            set_current(paths, "v0007")
    assert current_version(paths) == "v0001"
    # rollback never makes a newer version look like crash debris
    assert commit(paths, "c") == "v0003"
    assert list_versions(paths) == ["v0001", "v0002", "v0003"]


def test_gc_removes_dead_staging_and_unrecorded_versions(paths: StorePaths) -> None:
    commit(paths, "a")
    dead = paths.versions / ".staging-v0002-999999999"
    dead.mkdir()
    (dead / "half").write_bytes(b"x")
    orphan = paths.versions / "v0003"
    orphan.mkdir()
    # without the lock only dead processes' staging directories can be judged
    assert gc_staging(paths) == [dead]
    assert orphan.is_dir()
    assert next_version(paths) == "v0004"
    with StoreLock(paths.lock_file, command="train"):
        assert gc_staging(paths) == [orphan]
    assert list_versions(paths) == ["v0001"]


PHASES = ["staged", "renamed", "manifest", "flipped"]


@pytest.mark.parametrize("phase", PHASES)
def test_kill_during_commit_leaves_old_or_new(paths: StorePaths, phase: str) -> None:
    assert commit(paths, "one") == "v0001"
    pid = child.kill_at("commit", DLM_ID, "two", home=paths.root.parent.parent, phase=phase)

    current = current_version(paths)
    assert current == ("v0002" if phase == "flipped" else "v0001")
    tag = {"v0001": "one", "v0002": "two"}[current]
    assert child.read_tree(paths.version_dir(current)) == child.adapter_files(tag)
    manifest = load_manifest(paths)
    assert manifest.adapters[current].files == hash_tree(paths.version_dir(current))
    problems = verify_store(paths)
    assert [p for p in problems if p.is_error] == []
    assert [p for p in problems if str(paths.version_dir(current)) in p.path] == []
    assert [p.kind for p in problems] == {
        "staged": ["leftover"],  # the staging directory
        "renamed": ["unrecorded"],  # v0002 renamed, never recorded nor current
        "manifest": [],  # v0002 recorded and complete, just not current
        "flipped": [],
    }[phase]

    notices: list[str] = []
    with (
        StoreLock(paths.lock_file, command="train", notice=notices.append),
        commit_adapter(paths, meta={"tag": "three"}) as staging,
    ):
        child.write_tree(staging, child.adapter_files("three"))
    assert notices and f"dead pid {pid}" in notices[0]
    new = current_version(paths)
    assert new == "v0003"  # the crashed commit's number is never handed out again
    assert child.read_tree(paths.version_dir(new)) == child.adapter_files("three")
    assert verify_store(paths) == []
    assert not [name for name in os.listdir(paths.versions) if name.startswith(".")]


def test_gc_keeps_older_unrecorded_versions(paths: StorePaths) -> None:
    commit(paths, "a")
    commit(paths, "b")
    commit(paths, "c")
    manifest = load_manifest(paths)
    del manifest.adapters["v0001"]  # e.g. a manifest restored from an old backup
    save_manifest(paths, manifest)
    with StoreLock(paths.lock_file, command="train"):
        assert gc_staging(paths) == []
    assert list_versions(paths) == ["v0001", "v0002", "v0003"]
    assert [(p.kind, p.severity) for p in verify_store(paths)] == [("unrecorded", "warning")]
