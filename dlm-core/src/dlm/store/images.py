"""Image checks at the door of the blob store.

Every image is fully decoded once before it is stored, so a corrupt,
truncated or hostile file fails here, naming the file, instead of halfway
through a training run.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import attrs

from dlm.errors import StoreError

# 64 megapixels (8000 x 8000). The largest geometry any registered base uses is
# Mistral's 1540² (2.4 MP); everything above that is only resized down, so
# bigger sources buy nothing. The bound keeps one decoded image under
# ~256 MB (RGBA) and sits below Pillow's own decompression-bomb threshold
# (~89 MP warning, ~179 MP error), which stays armed as a second line.
MAX_IMAGE_PIXELS = 64_000_000


@attrs.frozen
class ImageInfo:
    width: int
    height: int
    format: str
    mode: str


class ImageError(StoreError):
    """An image file that cannot go into the store: the path says which."""

    subject = "image"

    def __init__(self, path: Path | str, reason: str, *, hint: str | None = None):
        super().__init__(
            f"{path}: {reason}",
            hint=hint or "replace the file with a valid image, or remove it from the document",
        )
        self.path = str(path)
        self.reason = reason


def verify_image(path: Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> ImageInfo:
    """Open, bound and fully decode ``path``; raise :class:`ImageError` if it fails."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise ImageError(path, "image not found", hint="check the path, relative to the document")
    if path.is_dir():
        raise ImageError(path, "is a directory, not an image file")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its two thresholds; for us it is a refusal.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                fmt = im.format or "unknown"
                mode = im.mode
                _check_size(path, width, height, max_pixels)
                im.verify()
            # verify() leaves the image unusable and skips pixel data for some
            # formats; a real decode is what catches truncated files.
            with Image.open(path) as im:
                im.load()
    except ImageError:
        raise
    except PermissionError:
        raise ImageError(path, "permission denied", hint="make the file readable") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image (Pillow cannot identify its format)") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageError(
            path,
            f"too large to decode safely ({exc})",
            hint="downscale the image (bases resize it to at most a few megapixels anyway)",
        ) from None
    except Exception as exc:  # Pillow decoders raise many types for bad data
        raise ImageError(
            path, f"corrupt or truncated image ({type(exc).__name__}: {exc})"
        ) from None
    return ImageInfo(width=width, height=height, format=fmt, mode=mode)


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(path, f"has an empty size {width}x{height}")
    pixels = width * height
    if pixels > max_pixels:
        raise ImageError(
            path,
            f"{width}x{height} is {pixels:,} pixels, over the limit of {max_pixels:,}",
            hint="downscale the image (bases resize it to at most a few megapixels anyway)",
        )
