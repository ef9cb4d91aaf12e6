from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dlm.errors import ExportError, LockHeldError
from dlm.store.exports import (
    EXTERNAL_RECORD,
    read_external_record,
    recover_exports,
    stage_export,
)
from dlm.store.lock import StoreLock
from dlm.store.manifest import hash_tree, load_manifest
from dlm.store.paths import StorePaths
from dlm.store.verify import verify_store
from tests.core import store_crash_child as child

DLM_ID = "01J9Z6M8Q5X2V7K3T4R1N0PBCD"
NAME = "hf-snapshot"


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StorePaths:
    monkeypatch.setenv("DLM_HOME", str(tmp_path / "home"))
    return StorePaths.for_id(DLM_ID)


def export(paths: StorePaths, tag: str, out: Path | None = None) -> None:
    with (
        StoreLock(paths.lock_file, command="export", notice=lambda m: None),
        stage_export(paths, NAME, out=out) as staging,
    ):
        child.write_tree(staging, child.export_files(tag))


def hidden(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.startswith("."))


def test_export_into_store_and_replace(paths: StorePaths) -> None:
    export(paths, "a")
    target = paths.export_dir(NAME)
    assert child.read_tree(target) == child.export_files("a")
    entry = load_manifest(paths).exports[NAME]
    assert entry.files == hash_tree(target)
    assert entry.adapter_version is None  # nothing trained yet
    export(paths, "b")
    assert child.read_tree(target) == child.export_files("b")
    assert load_manifest(paths).exports[NAME].files == hash_tree(target)
    assert hidden(paths.exports) == []
    assert verify_store(paths) == []


def test_exception_keeps_previous_export(paths: StorePaths) -> None:
    export(paths, "a")
    with (
        StoreLock(paths.lock_file, command="export"),
        pytest.raises(RuntimeError, match="converter crashed"),
        stage_export(paths, NAME, adapter_version="v0001") as staging,
    ):
        child.write_tree(staging, child.export_files("b"))
        raise RuntimeError("converter crashed")
    assert child.read_tree(paths.export_dir(NAME)) == child.export_files("a")
    assert hidden(paths.exports) == []
    assert verify_store(paths) == []


def test_empty_export_is_refused(paths: StorePaths) -> None:
    with (
        StoreLock(paths.lock_file, command="export"),
        pytest.raises(ExportError, match="wrote no files"),
        stage_export(paths, NAME),
    ):
        pass
    assert os.listdir(paths.exports) == []


def test_store_export_needs_the_lock(paths: StorePaths) -> None:
    with pytest.raises(LockHeldError, match="needs the store lock"), stage_export(paths, NAME):
        pass


def test_external_out(paths: StorePaths, tmp_path: Path) -> None:
    out = tmp_path / "ship" / "snapshot"
    export(paths, "a", out=out)
    assert child.read_tree(out, skip=(EXTERNAL_RECORD,)) == child.export_files("a")
    record = read_external_record(out)
    assert record == {rel: entry for rel, entry in hash_tree(out).items() if rel != EXTERNAL_RECORD}
    assert json.loads((out / EXTERNAL_RECORD).read_text())["dlm_id"] == DLM_ID
    export(paths, "b", out=out)  # a dlm export may be replaced
    assert child.read_tree(out, skip=(EXTERNAL_RECORD,)) == child.export_files("b")
    assert hidden(out.parent) == []
    assert NAME not in load_manifest(paths).exports  # only store exports are recorded


def test_external_out_never_replaces_a_foreign_folder(paths: StorePaths, tmp_path: Path) -> None:
    out = tmp_path / "Documents"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(ExportError, match="not empty and was not written by `dlm export`"):
        export(paths, "a", out=out)
    assert (out / "thesis.tex").read_text() == "years of work"
    assert hidden(tmp_path) == []
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ExportError, match="not a directory"):
        export(paths, "a", out=afile)
    empty = tmp_path / "empty"
    empty.mkdir()
    export(paths, "a", out=empty)
    assert (empty / "README.md").is_file()


STORE_PHASES = [
    "export-staged",
    "export-pending",
    "export-aside",
    "export-renamed",
    "export-recorded",
]


@pytest.mark.parametrize("phase", STORE_PHASES)
def test_kill_during_store_export(paths: StorePaths, phase: str) -> None:
    export(paths, "old")
    target = paths.export_dir(NAME)
    child.kill_at("export", DLM_ID, "new", home=paths.root.parent.parent, phase=phase)

    # never a partial export at its name: absent (mid-swap), old or new
    if phase == "export-aside":
        assert not target.exists()
    else:
        tag = "new" if phase in ("export-renamed", "export-recorded") else "old"
        assert child.read_tree(target) == child.export_files(tag)
    # verify judges whichever export is in place against the right record
    problems = verify_store(paths)
    assert [p for p in problems if p.is_error] == [], problems

    # what the next export does first: finish or undo the interrupted one
    with StoreLock(paths.lock_file, command="export", notice=lambda m: None):
        recover_exports(paths)
    tag = "new" if phase in ("export-renamed", "export-recorded") else "old"
    assert child.read_tree(target) == child.export_files(tag)
    assert load_manifest(paths).exports[NAME].files == hash_tree(target)
    assert load_manifest(paths).pending_exports == {}
    assert hidden(paths.exports) == []
    assert verify_store(paths) == []

    export(paths, "newer")
    assert child.read_tree(target) == child.export_files("newer")
    assert verify_store(paths) == []


@pytest.mark.parametrize("phase", ["export-staged", "export-aside", "export-renamed"])
def test_kill_during_external_export(paths: StorePaths, tmp_path: Path, phase: str) -> None:
    out = tmp_path / "ship"
    export(paths, "old", out=out)
    child.kill_at("export-out", DLM_ID, "new", str(out), home=paths.root.parent.parent, phase=phase)
    if phase == "export-aside":
        assert not out.exists()
    else:
        tag = "new" if phase == "export-renamed" else "old"
        assert child.read_tree(out, skip=(EXTERNAL_RECORD,)) == child.export_files(tag)
    assert hidden(tmp_path)  # the dead export's work directory is still there
    export(paths, "newer", out=out)
    assert child.read_tree(out, skip=(EXTERNAL_RECORD,)) == child.export_files("newer")
    assert hidden(tmp_path) == []
