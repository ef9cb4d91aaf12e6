"""Images: checked at the door of the blob store, and read the one way a model sees them.

Every image is fully decoded once before it is stored, so a corrupt,
truncated or hostile file fails here, naming the file, instead of halfway
through a training run. :func:`open_image` is the only way dlm reads an
image for a model (training, prompting, the export smoke tests): the same
checks, then :func:`normalize_image`, so an image means the same pixels
wherever it is read.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from dlm.errors import StoreError

if TYPE_CHECKING:
    from PIL.Image import Image

# 64 megapixels (8000 x 8000). The largest geometry any registered base uses is
# Mistral's 1540² (2.4 MP); everything above that is only resized down, so
# bigger sources buy nothing. The bound keeps one decoded image under
# ~256 MB (RGBA) and sits below Pillow's own decompression-bomb threshold
# (~89 MP warning, ~179 MP error), which stays armed as a second line.
MAX_IMAGE_PIXELS = 64_000_000

#: What :func:`normalize_image` does to pixels, versioned: cached vision
#: features (``engine.training.feature_cache``) computed under another version are misses.
#: 2: EXIF orientation applied, 16-bit depth scaled, transparency flattened on white.
PREPARATION_VERSION = 2

# Transparent pixels often hold black (or garbage) colour; dropping alpha would
# show a transparent-background diagram as black lines on black. White is the
# page most figures were drawn for.
BACKGROUND = (255, 255, 255)

_DEFAULT_HINT = "replace it with a readable PNG, JPEG or WebP image"
_DOWNSCALE_HINT = "downscale the image (bases resize it to at most a few megapixels anyway)"


@attrs.frozen
class ImageInfo:
    """What a checked image is. ``width`` × ``height`` is the size a model sees
    (after the EXIF orientation); ``frames`` > 1 is an animation, of which only
    the first frame is used; ``alpha``: transparency, flattened onto white."""

    width: int
    height: int
    format: str
    mode: str
    frames: int = 1
    alpha: bool = False

    @property
    def notes(self) -> tuple[str, ...]:
        """What is lost when the image is used, said rather than done silently."""
        notes = []
        if self.frames > 1:
            notes.append(f"animated ({self.frames} frames): only the first frame is used")
        if self.alpha:
            notes.append("transparent: flattened onto a white background")
        return tuple(notes)


class ImageError(StoreError):
    """An image file that cannot be used: the path says which."""

    subject = "image"

    def __init__(self, path: Path | str, reason: str, *, hint: str | None = None):
        super().__init__(f"{path}: {reason}", hint=hint or _DEFAULT_HINT)
        self.path = str(path)
        self.reason = reason


def verify_image(path: Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> ImageInfo:
    """Open, bound and fully decode ``path``; raise :class:`ImageError` if it fails."""
    with _decoded(Path(path), max_pixels) as (_image, info):
        return info


def open_image(path: Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Image:
    """``path`` as a model sees it: checked like :func:`verify_image`, then
    :func:`normalize_image` (upright, first frame, 8-bit RGB). Raises
    :class:`ImageError`."""
    with _decoded(Path(path), max_pixels) as (image, _info):
        return image


def normalize_image(image: Image) -> Image:
    """A decoded image as 8-bit RGB, the way its viewer would show it.

    - EXIF orientation applied: phone photos store pixels sideways plus a tag;
    - an animation's current (first) frame;
    - 16- and 32-bit integer depths scaled to 8 bits (``convert("RGB")`` clips
      them, so a mid-grey 16-bit scan turns white); float images read as 0..1;
    - transparency flattened onto white.

    Idempotent: a normalized image has no orientation tag and is plain RGB.
    """
    from PIL import Image as PILImage
    from PIL import ImageOps

    upright = ImageOps.exif_transpose(image) or image
    if upright.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit sources (PNG, TIFF) arrive as I;16 or I; 257 maps 65535 to 255.
        upright = upright.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    elif upright.mode == "F":
        upright = upright.point(lambda v: v * 255).convert("L")
    if _has_alpha(upright):
        rgba = upright.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return PILImage.alpha_composite(background, rgba).convert("RGB")
    return upright if upright.mode == "RGB" else upright.convert("RGB")


def _has_alpha(image: Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )


@contextmanager
def _decoded(path: Path, max_pixels: int) -> Iterator[tuple[Image, ImageInfo]]:
    """The one checking path: bounds before decoding, a full decode, then
    normalization, every failure an :class:`ImageError` naming ``path``."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if not path.exists():
        raise ImageError(path, "image not found", hint="check the path, relative to the document")
    if path.is_dir():
        raise ImageError(path, "is a directory, not an image file")
    if not path.is_file():
        raise ImageError(path, "is not a regular file (a device, pipe or socket)")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its two thresholds; for us it is a refusal.
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as im:
                _check_size(path, *im.size, max_pixels)
                im.verify()
            # verify() leaves the image unusable and skips pixel data for some
            # formats; a real decode is what catches truncated files.
            with PILImage.open(path) as im:
                frames = getattr(im, "n_frames", 1)
                im.seek(0)
                im.load()
                fmt, mode, alpha = im.format or "unknown", im.mode, _has_alpha(im)
                image = normalize_image(im)
                image.load()
    except ImageError:
        raise
    except PermissionError:
        raise ImageError(path, "permission denied", hint="make the file readable") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image (Pillow cannot identify its format)") from None
    except (PILImage.DecompressionBombWarning, PILImage.DecompressionBombError) as exc:
        raise ImageError(
            path, f"too large to decode safely ({exc})", hint=_DOWNSCALE_HINT
        ) from None
    except Exception as exc:  # Pillow decoders raise many types for bad data
        raise ImageError(
            path, f"corrupt or truncated image ({type(exc).__name__}: {exc})"
        ) from None
    width, height = image.size
    yield (
        image,
        ImageInfo(width=width, height=height, format=fmt, mode=mode, frames=frames, alpha=alpha),
    )


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(path, f"has an empty size {width}x{height}")
    pixels = width * height
    if pixels > max_pixels:
        raise ImageError(
            path,
            f"{width}x{height} is {pixels:,} pixels, over the limit of {max_pixels:,}",
            hint=_DOWNSCALE_HINT,
        )
