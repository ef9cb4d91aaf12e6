from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from dlm.errors import StoreError
from dlm.store.blobs import BlobStore
from dlm.store.images import ImageError


def png(path: Path, color: str = "red", size: tuple[int, int] = (16, 16)) -> Path:
    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "store" / "blobs")


def test_put_returns_sha_and_stores_bytes(blobs: BlobStore, tmp_path: Path) -> None:
    src = png(tmp_path / "a.png")
    sha = blobs.put_file(src)
    assert sha == hashlib.sha256(src.read_bytes()).hexdigest()
    assert blobs.path_for(sha).read_bytes() == src.read_bytes()
    assert blobs.has(sha) and blobs.verify(sha)
    assert blobs.size(sha) == src.stat().st_size
    assert blobs.list() == [sha]


def test_same_bytes_are_stored_once(blobs: BlobStore, tmp_path: Path) -> None:
    a = png(tmp_path / "a.png")
    b = tmp_path / "copy-with-another-name.png"
    shutil.copy(a, b)
    c = png(tmp_path / "c.png", color="blue")
    sha_a, sha_b, sha_c = blobs.put_file(a), blobs.put_file(b), blobs.put_file(a)
    assert sha_a == sha_b == sha_c
    other = blobs.put_file(c)
    assert other != sha_a
    assert sorted(os.listdir(blobs.root)) == sorted([sha_a, other])


def test_damaged_blob_is_detected_and_repaired_by_put(blobs: BlobStore, tmp_path: Path) -> None:
    src = png(tmp_path / "a.png")
    sha = blobs.put_file(src)
    stored = blobs.path_for(sha)
    stored.chmod(0o644)
    stored.write_bytes(b"bit rot")
    assert not blobs.verify(sha)
    assert blobs.put_file(src) == sha
    assert blobs.verify(sha)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_text("not an image"), "not an image"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40), "not an image"),
        (lambda p: None, "image not found"),
    ],
)
def test_bad_sources_name_the_file_and_leave_nothing(
    blobs: BlobStore, tmp_path: Path, make, reason: str
) -> None:
    src = tmp_path / "bad.png"
    make(src)
    with pytest.raises(ImageError, match=reason) as info:
        blobs.put_file(src)
    assert info.value.path == str(src)
    assert str(src) in info.value.render()
    assert os.listdir(blobs.root) == []


def test_truncated_source_leaves_no_partial_blob(blobs: BlobStore, tmp_path: Path) -> None:
    Image.effect_noise((64, 64), 40).convert("RGB").save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:-200])
    with pytest.raises(ImageError, match="corrupt or truncated") as info:
        blobs.put_file(tmp_path / "cut.png")
    assert info.value.path == str(tmp_path / "cut.png")
    assert os.listdir(blobs.root) == []


def test_leftover_temp_of_dead_writer_is_swept(blobs: BlobStore, tmp_path: Path) -> None:
    blobs.root.mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    leftover = blobs.root / f".tmp-{dead.stdout.strip()}-abcd1234-blob"
    leftover.write_bytes(b"half a cop")
    mine = blobs.root / f".tmp-{os.getpid()}-abcd1234-blob"  # a live writer's: kept
    mine.write_bytes(b"in progress")
    assert blobs.leftovers() == [leftover]
    sha = blobs.put_file(png(tmp_path / "a.png"))
    assert sorted(os.listdir(blobs.root)) == sorted([sha, mine.name])
    assert blobs.list() == [sha]


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ABC", "0" * 63, "G" * 64])
def test_bad_sha_is_refused(blobs: BlobStore, bad: str) -> None:
    with pytest.raises(StoreError, match="invalid blob name"):
        blobs.path_for(bad)


def test_size_of_missing_blob(blobs: BlobStore) -> None:
    with pytest.raises(StoreError, match="missing"):
        blobs.size("0" * 64)
    assert not blobs.has("0" * 64)
    assert not blobs.verify("0" * 64)
    assert blobs.list() == []
