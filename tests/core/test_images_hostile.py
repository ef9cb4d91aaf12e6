"""Odd and hostile images (issue 13, items 7 and 11-13), and the store's own
integrity checks (items 14-16), on fakes: no model, no plugin, no network."""

from __future__ import annotations

import os
import stat
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from dlm.errors import StoreError, UsageError
from dlm.records import ImageGeometry
from dlm.store.adapters import commit_adapter
from dlm.store.blobs import BlobStore
from dlm.store.lock import StoreLock
from dlm.store.manifest import load_manifest, save_manifest
from dlm.store.paths import StorePaths
from dlm.store.verify import verify_store
from tests.core import store_crash_child as child
from tests.core.test_family_generic import FakeFamily, _base

DLM_ID = "01J9Z6M8Q5X2V7K3T4R1N0PBCE"
UNPINNED = _base(image=ImageGeometry(448, 448, 256, "<image>", resize="tiles", max_tiles=6))


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG claiming ``width``x``height`` with no real pixels (no allocation)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )
    return path


def hostile_images(folder: Path) -> dict[str, tuple[Path, str]]:
    """Files `dlm train` refuses, with the words of its refusal."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.png").write_text("just some text, not pixels\n")
    (folder / "empty.png").write_bytes(b"")
    Image.effect_noise((64, 64), 50).convert("RGB").save(folder / "full.png")
    data = (folder / "full.png").read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 2])
    (folder / "vector.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>\n'
    )
    return {
        "text": (folder / "notes.png", "not an image"),
        "empty": (folder / "empty.png", "not an image"),
        "truncated": (folder / "cut.png", "corrupt or truncated"),
        "svg": (folder / "vector.svg", "not an image"),
        "81 MP": (png_header_only(folder / "huge.png", 9000, 9000), "over the limit"),
        "bomb": (png_header_only(folder / "bomb.png", 20_000, 20_000), "too large to decode"),
    }


# ---------------------------------------------------------------- item 7


@pytest.mark.parametrize("kind", ["text", "empty", "truncated", "svg", "81 MP", "bomb"])
def test_prompt_checks_images_like_train_before_any_model(kind: str, tmp_path: Path) -> None:
    from dlm.engine.prompting import check_prompt_images
    from dlm.store.images import ImageError, verify_image

    path, words = hostile_images(tmp_path)[kind]
    with pytest.raises(ImageError) as trained:  # what `dlm train` says about it
        verify_image(path)
    with pytest.raises(UsageError) as prompted:
        check_prompt_images(_base(), [path])
    assert words in prompted.value.message
    assert prompted.value.message == f"{path}: {trained.value.reason}"
    assert prompted.value.hint == trained.value.hint
    assert prompted.value.exit_code == 2


# ---------------------------------------------------------------- item 11


def test_sixteen_bit_grey_stays_grey(tmp_path: Path) -> None:
    import numpy as np

    Image.fromarray(np.full((8, 8), 30000, dtype=np.uint16)).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as image:
        assert image.mode == "I;16"
        prepared = FakeFamily().bind(UNPINNED).prepare_image(image)
    # 30000 / 65535 of full scale is 116 / 255, not the clipped 255 (white)
    assert prepared.getpixel((0, 0)) == (116, 116, 116)


# ---------------------------------------------------------------- item 12


def portrait_photo(path: Path) -> Path:
    """Stored 40x20 landscape (left red, right blue) with EXIF orientation 6:
    a viewer rotates it 90° clockwise, so it shows 20x40, red on top."""
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, exif=exif, quality=95)
    return path


def test_exif_orientation_is_applied_and_reported(tmp_path: Path) -> None:
    from dlm.store.images import verify_image

    photo = portrait_photo(tmp_path / "phone.jpg")
    info = verify_image(photo)
    assert (info.width, info.height) == (20, 40)  # what `dlm show` reports
    with Image.open(photo) as image:
        prepared = FakeFamily().bind(UNPINNED).prepare_image(image)
    assert prepared.size == (20, 40)
    top, bottom = prepared.getpixel((10, 3)), prepared.getpixel((10, 36))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom
    # idempotent: preparing a prepared image changes nothing
    assert FakeFamily().bind(UNPINNED).prepare_image(prepared).tobytes() == prepared.tobytes()


def test_feature_cache_key_covers_image_preparation() -> None:
    from dlm.engine.training.feature_cache import feature_settings, settings_digest
    from dlm.store.images import PREPARATION_VERSION

    settings = feature_settings(
        _base(), {}, vision_dtype="float32", precision="fp32", device_type="cpu"
    )
    assert settings["image_preparation"] == PREPARATION_VERSION
    old = {k: v for k, v in settings.items() if k != "image_preparation"}
    assert settings_digest(settings) != settings_digest(old)


# ---------------------------------------------------------------- item 13


def test_animation_and_transparency_are_said_not_silent(tmp_path: Path) -> None:
    from dlm.store.images import verify_image

    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    animated = verify_image(tmp_path / "anim.gif")
    assert animated.frames == 3
    assert animated.notes == ("animated (3 frames): only the first frame is used",)

    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    clear = verify_image(tmp_path / "clear.png")
    assert clear.notes == ("transparent: flattened onto a white background",)
    # a transparent background becomes the white page, not black
    with Image.open(tmp_path / "clear.png") as image:
        assert FakeFamily().bind(UNPINNED).prepare_image(image).getpixel((0, 0)) == (255, 255, 255)
    Image.new("RGB", (10, 10)).save(tmp_path / "plain.png")
    assert verify_image(tmp_path / "plain.png").notes == ()


# ---------------------------------------------------------------- items 14-16


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StorePaths:
    """A store with one blob and one adapter version."""
    monkeypatch.setenv("DLM_HOME", str(tmp_path / "home"))
    paths = StorePaths.for_id(DLM_ID)
    Image.new("RGB", (8, 8), "green").save(tmp_path / "a.png")
    with StoreLock(paths.lock_file, command="train"):
        blobs = BlobStore(paths.blobs)
        sha = blobs.put_file(tmp_path / "a.png")
        manifest = load_manifest(paths)
        manifest.add_blob(sha, blobs.size(sha), "a.png")
        save_manifest(paths, manifest)
        with commit_adapter(paths, meta={}) as staging:
            child.write_tree(staging, child.adapter_files("one"))
    return paths


def test_an_empty_current_txt_is_a_problem(paths: StorePaths) -> None:
    from dlm.store.adapters import current_version

    paths.current_file.write_text("")
    problems = verify_store(paths)
    assert [(p.kind, p.is_error) for p in problems] == [("current", True)]
    assert "empty" in problems[0].message
    with pytest.raises(StoreError, match="is empty"):
        current_version(paths)


def test_a_blob_replaced_by_a_directory_is_a_problem_not_a_crash(
    paths: StorePaths, tmp_path: Path
) -> None:
    blobs = BlobStore(paths.blobs)
    (sha,) = blobs.list()
    blob = blobs.path_for(sha)
    blob.unlink()
    blob.mkdir()
    problems = verify_store(paths)
    assert [(p.kind, Path(p.path).name) for p in problems] == [("corrupt", sha)]
    assert "directory" in problems[0].message
    with pytest.raises(StoreError, match="is a directory") as refused:
        blobs.put_file(tmp_path / "a.png")
    assert "remove" in (refused.value.hint or "")
    assert blob.is_dir(), "what someone put there is not deleted"


def _flip_a_byte(path: Path) -> bytes:
    original = path.read_bytes()
    os.chmod(path, 0o644)
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 0x01]))
    return original


def test_verify_adapter_refuses_a_flipped_byte_and_caches_clean_hashes(
    paths: StorePaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dlm.store.integrity as integrity

    version = "v0001"
    directory = paths.version_dir(version)
    files = sorted(f for f in directory.rglob("*") if f.is_file())
    # Files younger than 2 s are not cached (same-tick writes); these were just written.
    monkeypatch.setattr(integrity, "_RACY_NS", -(10**12))
    calls: list[Path] = []
    real = integrity.hash_file
    monkeypatch.setattr(integrity, "hash_file", lambda p: calls.append(p) or real(p))
    assert integrity.verify_adapter(paths, version) == directory
    hashed = len(calls)
    assert hashed == len(files)
    assert integrity.verify_adapter(paths, version) == directory
    assert len(calls) == hashed, "a second check of unchanged files hashes nothing"

    target = directory / "adapter_model.safetensors"
    stamp = target.stat()
    _flip_a_byte(target)
    os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # size and mtime as before
    with pytest.raises(integrity.TamperedError, match="does not match the manifest") as refused:
        integrity.verify_adapter(paths, version)
    assert target.name in refused.value.message
    assert "--adapter-version" in (refused.value.hint or "")


def test_committed_adapter_files_are_readable_like_the_rest(
    paths: StorePaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = os.umask(0o022)
    try:
        with StoreLock(paths.lock_file, command="train"), commit_adapter(paths, meta={}) as st:
            child.write_tree(st, child.adapter_files("two"))
            os.chmod(st / "adapter_model.safetensors", 0o600)  # as safetensors writes it
        modes = {
            f.name: stat.S_IMODE(f.stat().st_mode)
            for f in paths.version_dir("v0002").rglob("*")
            if f.is_file()
        }
    finally:
        os.umask(previous)
    assert set(modes.values()) == {0o644}, modes


def test_odd_files_in_place_of_store_files_are_named_for_what_they_are(
    paths: StorePaths,
) -> None:
    from dlm.store.integrity import TamperedError, verify_adapter

    weights = paths.version_dir("v0001") / "adapter_model.safetensors"
    weights.unlink()
    weights.mkdir()
    problems = verify_store(paths)
    assert [(p.kind, Path(p.path).name) for p in problems] == [
        ("corrupt", "adapter_model.safetensors")
    ]
    assert "directory" in problems[0].message
    with pytest.raises(TamperedError, match=r"adapter_model\.safetensors is a directory"):
        verify_adapter(paths, "v0001")
    paths.manifest.unlink()
    paths.manifest.mkdir()
    with pytest.raises(StoreError, match=r"manifest.json cannot be read \(Is a directory\)"):
        load_manifest(paths)
    assert [p.kind for p in verify_store(paths)] == ["manifest"]


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_train_names_a_directory_or_pipe_for_what_it_is(kind: str, tmp_path: Path) -> None:
    from dlm.engine.document.ingest import check_images
    from dlm.errors import DocumentError
    from dlm.format import parse_file

    odd = tmp_path / "odd.png"
    odd.mkdir() if kind == "directory" else os.mkfifo(odd)
    doc = tmp_path / "d.dlm"
    doc.write_text(
        "---\ndlm_id: 01JZ8K2M3N4P5Q6R7S8T9V0W2A\ndlm_version: 10\nbase_model: tiny-fake\n---\n"
        '::image path="odd.png" alt="x"::\nA caption.\n'
    )
    with pytest.raises(DocumentError) as refused:
        check_images(parse_file(doc))
    assert refused.value.message.startswith("odd.png: is ")
    assert ("directory" if kind == "directory" else "not a regular file") in refused.value.message


def test_a_built_tiny_base_is_readable_like_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class SafetensorsLike(FakeFamily):
        def build_tiny(self, base, out_dir: Path) -> None:  # type: ignore[no-untyped-def]
            super().build_tiny(base, out_dir)
            os.chmod(out_dir / "model.safetensors", 0o600)  # as safetensors writes it

    monkeypatch.setenv("DLM_HOME", str(tmp_path))
    previous = os.umask(0o022)
    try:
        target = SafetensorsLike().materialize(_base())
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755  # not mkdtemp's 0700
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in target.iterdir()}
    assert set(modes.values()) == {0o644}, modes
