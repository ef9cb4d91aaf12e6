from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from dlm.store.adapters import commit_adapter
from dlm.store.blobs import BlobStore
from dlm.store.exports import stage_export
from dlm.store.lock import StoreLock
from dlm.store.manifest import load_manifest, save_manifest
from dlm.store.paths import StorePaths
from dlm.store.verify import Problem, verify_store
from tests.core import store_crash_child as child

DLM_ID = "01J9Z6M8Q5X2V7K3T4R1N0PBCD"


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StorePaths:
    """A store with one blob, two adapter versions and one export."""
    monkeypatch.setenv("DLM_HOME", str(tmp_path / "home"))
    paths = StorePaths.for_id(DLM_ID)
    Image.new("RGB", (8, 8), "green").save(tmp_path / "a.png")
    with StoreLock(paths.lock_file, command="train"):
        blobs = BlobStore(paths.blobs)
        sha = blobs.put_file(tmp_path / "a.png")
        manifest = load_manifest(paths)
        manifest.add_blob(sha, blobs.size(sha), "a.png")
        save_manifest(paths, manifest)
        for tag in ("one", "two"):
            with commit_adapter(paths, meta={}) as staging:
                child.write_tree(staging, child.adapter_files(tag))
        with stage_export(paths, "hf-snapshot") as staging:
            child.write_tree(staging, child.export_files("x"))
    return paths


def kinds(problems: list[Problem]) -> list[tuple[str, str]]:
    return [(p.kind, Path(p.path).name) for p in problems]


def test_clean_store(paths: StorePaths) -> None:
    assert verify_store(paths) == []


def test_empty_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DLM_HOME", str(tmp_path))
    assert verify_store(StorePaths.for_id(DLM_ID)) == []


def test_corrupt_blob(paths: StorePaths) -> None:
    (sha,) = BlobStore(paths.blobs).list()
    blob = paths.blobs / sha
    blob.chmod(0o644)
    blob.write_bytes(b"rot")
    assert kinds(verify_store(paths)) == [("corrupt", sha)]
    blob.unlink()
    assert kinds(verify_store(paths)) == [("missing", sha)]


def test_stray_and_unrecorded_blobs(paths: StorePaths) -> None:
    (paths.blobs / "notes.txt").write_text("hi")
    unrecorded = "0" * 64
    (paths.blobs / unrecorded).write_bytes(b"")  # the empty string's hash is not 0…0
    problems = verify_store(paths)
    assert kinds(problems) == [("extra", "notes.txt"), ("corrupt", unrecorded)]


def test_adapter_file_tampered(paths: StorePaths) -> None:
    weights = paths.version_dir("v0001") / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[100] ^= 1
    weights.write_bytes(bytes(data))
    assert kinds(verify_store(paths)) == [("corrupt", "adapter_model.safetensors")]
    weights.write_bytes(bytes(data[:-1]))
    [problem] = verify_store(paths)
    assert problem.kind == "size" and problem.is_error
    assert "the manifest says 300000" in problem.message


def test_adapter_missing_and_extra_files(paths: StorePaths) -> None:
    (paths.version_dir("v0002") / "processor" / "tokenizer.json").unlink()
    (paths.version_dir("v0002") / "surprise.bin").write_bytes(b"!")
    assert kinds(verify_store(paths)) == [("missing", "tokenizer.json"), ("extra", "surprise.bin")]


def test_current_points_at_missing_version(paths: StorePaths) -> None:
    paths.current_file.write_text("v0007\n")
    assert kinds(verify_store(paths)) == [("current", "current.txt")]
    assert "missing version v0007" in verify_store(paths)[0].message


def test_recorded_version_missing(paths: StorePaths) -> None:
    import shutil

    shutil.rmtree(paths.version_dir("v0001"))
    assert kinds(verify_store(paths)) == [("missing", "v0001")]


def test_export_problems(paths: StorePaths) -> None:
    export = paths.export_dir("hf-snapshot")
    (export / "README.md").write_text("edited by hand\n")
    (export / "extra.txt").write_text("x")
    assert kinds(verify_store(paths)) == [("size", "README.md"), ("extra", "extra.txt")]
    (paths.exports / "unknown-target").mkdir()
    assert ("unrecorded", "unknown-target") in kinds(verify_store(paths))


def test_unreadable_manifest_is_one_problem(paths: StorePaths) -> None:
    paths.manifest.write_text("{")
    [problem] = verify_store(paths)
    assert problem.kind == "manifest" and "not valid JSON" in problem.message


def test_warnings_are_not_errors(paths: StorePaths) -> None:
    leftover = paths.versions / ".staging-v0009-999999999"
    leftover.mkdir()
    [problem] = verify_store(paths)
    assert (problem.kind, problem.severity, problem.is_error) == ("leftover", "warning", False)
