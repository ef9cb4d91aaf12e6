from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from dlm.errors import StoreError
from dlm.store.manifest import (
    AdapterEntry,
    ExportEntry,
    FileEntry,
    Manifest,
    hash_tree,
    load_manifest,
    save_manifest,
)
from dlm.store.paths import StorePaths

DLM_ID = "01J9Z6M8Q5X2V7K3T4R1N0PBCD"
SHA = "a" * 64


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StorePaths:
    monkeypatch.setenv("DLM_HOME", str(tmp_path))
    return StorePaths.for_id(DLM_ID)


def test_missing_manifest_is_fresh(paths: StorePaths) -> None:
    m = load_manifest(paths)
    assert m.dlm_id == DLM_ID
    assert m.blobs == {} and m.adapters == {} and m.exports == {}
    assert not paths.manifest.exists()  # loading writes nothing


def test_round_trip(paths: StorePaths) -> None:
    m = load_manifest(paths)
    m.document = "/home/u/notes.dlm"
    m.base_model = "qwen2-vl-2b-instruct"
    m.add_blob(SHA, 10, "figs/a.png")
    m.add_blob(SHA, 10, "figs/copy.png")
    m.add_blob(SHA, 10, "figs/a.png")  # a source is listed once
    m.adapters["v0001"] = AdapterEntry(
        created="2024-01-01T00:00:00+00:00",
        files={"adapter_model.safetensors": FileEntry(sha256=SHA, size=3)},
        meta={"steps": 12, "loss": 0.5, "nested": {"a": [1, 2]}},
    )
    m.exports["hf-snapshot"] = ExportEntry(
        created="2024-01-02T00:00:00+00:00",
        adapter_version="v0001",
        files={"README.md": FileEntry(sha256=SHA, size=5)},
    )
    acceptance = m.record_license("paligemma-3b-mix-224", "gemma", by="dlm init")
    save_manifest(paths, m)
    loaded = load_manifest(paths)
    assert loaded == m
    assert loaded.blobs[SHA].sources == ["figs/a.png", "figs/copy.png"]
    assert loaded.license_acceptances["paligemma-3b-mix-224"] == acceptance
    assert set(acceptance) == {"license", "accepted_at", "by"}


def test_file_is_stable_json(paths: StorePaths) -> None:
    m = load_manifest(paths)
    m.add_blob("b" * 64, 1, "x.png")
    m.add_blob("a" * 64, 1, "y.png")
    save_manifest(paths, m)
    first = paths.manifest.read_text()
    data = json.loads(first)
    assert list(data) == sorted(data)
    assert list(data["blobs"]) == ["a" * 64, "b" * 64]
    # saving the same content again changes only the "updated" stamp
    m2 = load_manifest(paths)
    save_manifest(paths, m2)
    again = json.loads(paths.manifest.read_text())
    again["updated"] = data["updated"]
    assert again == data


def test_unreadable_manifest(paths: StorePaths) -> None:
    paths.root.mkdir(parents=True)
    paths.manifest.write_text("{not json")
    with pytest.raises(StoreError, match="not valid JSON") as info:
        load_manifest(paths)
    assert str(paths.manifest) in info.value.message
    assert "dlm verify" in (info.value.hint or "")
    paths.manifest.write_text('{"dlm_id": "' + DLM_ID + '", "blobs": {"x": {"size": "big"}}}')
    with pytest.raises(StoreError, match="does not match the manifest schema"):
        load_manifest(paths)
    paths.manifest.write_text("[]")
    with pytest.raises(StoreError, match="not a JSON object"):
        load_manifest(paths)


def test_manifest_of_another_document(paths: StorePaths) -> None:
    save_manifest(paths, Manifest(dlm_id="01ARZ3NDEKTSV4RRFFQ69G5FAV"))
    with pytest.raises(StoreError, match="belongs to dlm_id 01ARZ3NDEKTSV4RRFFQ69G5FAV"):
        load_manifest(paths)


def test_newer_manifest_is_refused(paths: StorePaths) -> None:
    paths.root.mkdir(parents=True)
    paths.manifest.write_text(json.dumps({"dlm_id": DLM_ID, "manifest_version": 99}))
    with pytest.raises(StoreError, match="newer than this dlm reads") as info:
        load_manifest(paths)
    assert info.value.hint == "upgrade dlm-core"


def test_unknown_keys_are_tolerated(paths: StorePaths) -> None:
    paths.root.mkdir(parents=True)
    paths.manifest.write_text(json.dumps({"dlm_id": DLM_ID, "future_field": 1}))
    assert load_manifest(paths).dlm_id == DLM_ID


def test_hash_tree(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.txt").write_bytes(b"bee")
    (tmp_path / "d" / "sub" / "a.bin").write_bytes(b"")
    tree = hash_tree(tmp_path / "d")
    assert list(tree) == ["b.txt", "sub/a.bin"]
    assert tree["b.txt"] == FileEntry(sha256=hashlib.sha256(b"bee").hexdigest(), size=3)
    assert tree["sub/a.bin"].size == 0
