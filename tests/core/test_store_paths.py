from __future__ import annotations

from pathlib import Path

import pytest

from dlm.errors import StoreError
from dlm.store.paths import StorePaths, bases_dir, cache_dir, dlm_home, stores_dir

DLM_ID = "01J9Z6M8Q5X2V7K3T4R1N0PBCD"


def test_dlm_home_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DLM_HOME", str(tmp_path / "h"))
    assert dlm_home() == tmp_path / "h"
    assert bases_dir() == tmp_path / "h" / "bases"
    assert cache_dir() == tmp_path / "h" / "cache"
    assert stores_dir() == tmp_path / "h" / "store"


def test_dlm_home_default_is_dot_dlm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DLM_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert dlm_home() == tmp_path / ".dlm"
    monkeypatch.setenv("DLM_HOME", "")  # empty means unset
    assert dlm_home() == tmp_path / ".dlm"


def test_relative_dlm_home_is_made_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLM_HOME", "rel")
    assert dlm_home() == tmp_path / "rel"
    assert dlm_home().is_absolute()


def test_layout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DLM_HOME", str(tmp_path))
    p = StorePaths.for_id(DLM_ID)
    root = tmp_path / "store" / DLM_ID
    assert p.root == root
    assert p.blobs == root / "blobs"
    assert p.manifest == root / "manifest.json"
    assert p.adapter == root / "adapter"
    assert p.versions == root / "adapter" / "versions"
    assert p.current_file == root / "adapter" / "current.txt"
    assert p.exports == root / "exports"
    assert p.logs == root / "logs"
    assert p.lock_file == root / "lock"
    assert p.version_dir("v0002") == root / "adapter" / "versions" / "v0002"
    assert p.export_dir("hf-snapshot") == root / "exports" / "hf-snapshot"
    assert not p.exists()
    p.ensure()
    assert all(d.is_dir() for d in (p.blobs, p.versions, p.exports, p.logs))


def test_lowercase_ulid_maps_to_the_same_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DLM_HOME", str(tmp_path))
    assert StorePaths.for_id(DLM_ID.lower()) == StorePaths.for_id(DLM_ID)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../../../../etc/passwd",
        "01J9Z6M8Q5X2V7K3T4R1N0PBC",  # 25 chars
        "01J9Z6M8Q5X2V7K3T4R1N0PBCDE",  # 27 chars
        "81J9Z6M8Q5X2V7K3T4R1N0PBCD",  # first char > 7 overflows 128 bits
        "01J9Z6M8Q5X2V7K3T4R1N0PBCU",  # U is not Crockford base32
        "01J9Z6M8Q5X2V7K3T4R1N0/BCD",
        "01J9Z6M8Q5X2V7K3T4R1N0..CD",
    ],
)
def test_invalid_dlm_id_is_refused(bad: str) -> None:
    with pytest.raises(StoreError, match="invalid dlm_id") as info:
        StorePaths.for_id(bad)
    assert "dlm_id" in (info.value.hint or "")


@pytest.mark.parametrize("bad", ["v1", "0001", "v0001/..", "../v0001", "v00a1", ""])
def test_invalid_version_is_refused(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    p = StorePaths.for_id(DLM_ID)
    with pytest.raises(StoreError, match="invalid adapter version"):
        p.version_dir(bad)


@pytest.mark.parametrize("bad", ["", ".staging-x", "..", "a/b", "../x", ".hidden", "x" * 65])
def test_invalid_export_name_is_refused(bad: str) -> None:
    p = StorePaths.for_id(DLM_ID)
    with pytest.raises(StoreError, match="invalid export name"):
        p.export_dir(bad)
