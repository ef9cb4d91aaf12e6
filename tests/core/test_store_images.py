from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from dlm.errors import StoreError
from dlm.store.images import MAX_IMAGE_PIXELS, ImageError, ImageInfo, verify_image


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width``x``height`` (no real pixel data), so
    size checks can be tested without allocating the pixels."""

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


def test_valid_images(tmp_path: Path) -> None:
    Image.new("RGB", (32, 16), "red").save(tmp_path / "a.png")
    Image.new("L", (7, 9)).save(tmp_path / "b.jpg")
    assert verify_image(tmp_path / "a.png") == ImageInfo(32, 16, "PNG", "RGB")
    assert verify_image(tmp_path / "b.jpg") == ImageInfo(7, 9, "JPEG", "L")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="image not found") as info:
        verify_image(tmp_path / "nope.png")
    assert info.value.path == str(tmp_path / "nope.png")
    assert str(tmp_path / "nope.png") in info.value.render()
    assert isinstance(info.value, StoreError)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="is a directory"):
        verify_image(tmp_path)


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("just some text, not pixels\n")
    with pytest.raises(ImageError, match="not an image") as info:
        verify_image(tmp_path / "notes.png")
    assert str(tmp_path / "notes.png") in info.value.message


def test_truncated_png(tmp_path: Path) -> None:
    Image.effect_noise((64, 64), 50).convert("RGB").save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated") as info:
        verify_image(tmp_path / "cut.png")
    assert info.value.path == str(tmp_path / "cut.png")


def test_truncated_jpeg(tmp_path: Path) -> None:
    Image.effect_noise((64, 64), 50).convert("RGB").save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        verify_image(tmp_path / "cut.jpg")


def test_corrupt_png_data(tmp_path: Path) -> None:
    Image.effect_noise((64, 64), 50).convert("RGB").save(tmp_path / "ok.png")
    data = bytearray((tmp_path / "ok.png").read_bytes())
    idat = data.index(b"IDAT")
    for i in range(idat + 8, idat + 40):  # scribble over the compressed pixels
        data[i] ^= 0xFF
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(ImageError, match="corrupt or truncated"):
        verify_image(tmp_path / "bad.png")


def test_over_the_pixel_limit(tmp_path: Path) -> None:
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match="100x100 is 10,000 pixels, over the limit of 9,999"):
        verify_image(tmp_path / "big.png", max_pixels=9_999)
    assert verify_image(tmp_path / "big.png", max_pixels=10_000).width == 100


def test_default_limit_refuses_before_decoding(tmp_path: Path) -> None:
    # 9000x9000 = 81 MP: above our 64 MP, below Pillow's own 89 MP warning.
    path = png_header_only(tmp_path / "huge.png", 9000, 9000)
    with pytest.raises(ImageError, match=f"over the limit of {MAX_IMAGE_PIXELS:,}"):
        verify_image(path)


@pytest.mark.parametrize("side", [10_000, 20_000])  # Pillow warning / Pillow error band
def test_pillow_decompression_bomb_is_an_image_error(tmp_path: Path, side: int) -> None:
    path = png_header_only(tmp_path / "bomb.png", side, side)
    with pytest.raises(ImageError, match="too large to decode safely") as info:
        verify_image(path, max_pixels=10**12)
    assert "downscale" in (info.value.hint or "")
