"""A family bound to one base: what the engine calls while it trains and prompts.

``family.bind(base, processor, image_settings)`` gives a :class:`BoundBase`.
It holds what every call used to thread through (the base, its processor,
the adapter's image settings), owns the image sizing every family shares,
and hands prompt layout to the family's
:class:`~dlm.family.PromptFormat`. Core machinery, not an override point:
a family changes behaviour through its declarations, its prompt format and
the hooks on :class:`~dlm.family.Family`.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from dlm.records import BaseSpec, TokenCount, TrainingExample

if TYPE_CHECKING:
    from PIL.Image import Image

    from dlm.family.contract import Family

#: The image setting (saved with the adapter beside the processor's own) that
#: says how a pinned image is sized; an adapter saved without it stretched.
FIT_KEY = "fit"
#: Resize to the pinned ``width``×``height`` whatever the aspect ratio.
FIT_STRETCH = "stretch"
#: Keep the aspect ratio: sides multiples of ``ImageGeometry.token_side`` within
#: the pinned pixel budget (bases whose processor takes other shapes).
FIT_KEEP_ASPECT = "keep-aspect"


@attrs.frozen
class BoundBase:
    """One base, its family, its processor and the adapter's image settings."""

    family: Family
    base: BaseSpec
    #: The loaded processor; ``None`` while planning a real base before its
    #: download (token counts are then estimates).
    processor: Any = None
    #: An adapter's saved image settings; ``None``: the base's defaults (a fresh run).
    image_settings: dict[str, Any] | None = None

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def settings(self) -> dict[str, Any]:
        """The image settings in force: the adapter's, else the base's defaults."""
        if self.image_settings is not None:
            return self.image_settings
        return dict(self.base.image_settings)

    # ------------------------------------------------------------- rows (prompt format)

    def count_tokens(self, example: TrainingExample) -> TokenCount:
        """An example's tokens without the model: exact with a processor
        (they equal the collated row's length), estimated without one."""
        return self.family.prompt_format.count_tokens(self, example)

    def collate(
        self,
        examples: list[TrainingExample],
        images: list[list[Image]] | list[list[Image] | None],
    ) -> dict[str, Any]:
        """A training batch: model inputs plus ``labels`` (-100 off the completion)."""
        if len(examples) != len(images):
            raise ValueError(f"{len(examples)} examples but {len(images)} image lists")
        return self.family.prompt_format.collate(self, examples, images)

    def prompt_inputs(
        self, images: list[Image], question: str, system_prompt: str | None = None
    ) -> dict[str, Any]:
        """Model inputs for generating an answer to ``question`` about ``images``."""
        return self.family.prompt_format.prompt_inputs(self, images, question, system_prompt)

    def decode(self, token_ids: Any) -> str:
        """Generated token ids (the new ones only) as the answer text."""
        return self.family.prompt_format.decode(self, token_ids)

    def chat_template(self) -> str | None:
        """The Jinja chat template, for exporters that restate it (None: none)."""
        return self.family.prompt_format.chat_template(self)

    def usage_snippet(self, question: str) -> str:
        """Python for an export README: ``processor``, ``image``, ``question`` → ``inputs``."""
        return self.family.prompt_format.usage_snippet(self, question)

    def stop_tokens(self) -> list[str]:
        """Strings that end a turn."""
        return self.family.stop_tokens(self)

    # ------------------------------------------------------------- images

    def image_settings_to_save(self) -> dict[str, Any]:
        """The processor's resolution settings (and the fit), saved with the adapter.

        Prompting and export pass them back to ``Family.load_processor`` and
        ``bind`` so they preprocess exactly as training did.
        """
        image_processor = getattr(self.processor, "image_processor", None)
        saved: dict[str, Any] = {}
        if image_processor is not None:
            saved = {
                key: _jsonable(getattr(image_processor, key))
                for key in self.family.image_setting_keys
                if getattr(image_processor, key, None) is not None
            }
        fit = self.settings.get(FIT_KEY)
        if fit is not None:
            saved[FIT_KEY] = fit
        return saved

    def image_fit(self) -> str:
        """How a pinned image is sized: :data:`FIT_STRETCH` or :data:`FIT_KEEP_ASPECT`.

        An adapter saved before the setting existed stretched, and still does.
        """
        fit = str(self.settings.get(FIT_KEY, FIT_STRETCH))
        if fit == FIT_KEEP_ASPECT and not self.base.image.token_side:
            return FIT_STRETCH
        return fit

    def prepared_size(self, width: int, height: int) -> tuple[int, int]:
        """The size :meth:`prepare_image` gives a ``width``×``height`` image."""
        geometry = self.base.image
        if geometry.resize != "pinned":
            return width, height
        if self.image_fit() == FIT_KEEP_ASPECT:
            return fit_within(width, height, geometry.width * geometry.height, geometry.token_side)
        return geometry.width, geometry.height

    def describe_image(self, width: int, height: int) -> str:
        """What a ``width``×``height`` image becomes for the model, in words
        (``dlm show`` and ``dlm doctor`` print it for every image)."""
        geometry = self.base.image
        if geometry.resize == "tiles":
            return (
                f"tiled: {geometry.width}×{geometry.height} tiles in the grid closest to its "
                f"aspect {_aspect(width, height)} (up to {geometry.max_tiles}, plus a thumbnail)"
            )
        new_w, new_h = self.prepared_size(width, height)
        if self.image_fit() == FIT_KEEP_ASPECT:
            side = geometry.token_side
            tokens = (new_w // side) * (new_h // side)
            return (
                f"{new_w}×{new_h}, aspect kept ({_aspect(width, height)} → "
                f"{_aspect(new_w, new_h)}), {tokens} image tokens"
            )
        if (new_w, new_h) == (width, height):
            return f"{new_w}×{new_h} as is"
        if width * new_h == height * new_w:
            return f"resized to {new_w}×{new_h}"
        return (
            f"stretched to {new_w}×{new_h} (aspect {_aspect(width, height)} → "
            f"{_aspect(new_w, new_h)})"
        )

    def prepare_image(self, image: Image) -> Image:
        """A decoded image as the base expects it: RGB, :meth:`prepared_size`.

        ``normalize_image`` first (EXIF orientation, 16-bit depth, alpha), so an
        image opened by any caller becomes the same pixels. The resize happens
        here, not in the processor, so llama.cpp (which resizes its own way)
        is given the same pixels.
        """
        from PIL import Image as PILImage

        from dlm.store.images import normalize_image

        rgb = normalize_image(image)
        size = self.prepared_size(*rgb.size)
        if rgb.size != size:
            rgb = rgb.resize(size, PILImage.Resampling.BICUBIC)
        return rgb

    def open_image(self, path: Path) -> Image:
        """The image at ``path`` as the model sees it: checked and decoded like
        every image dlm reads (``ImageError`` names a bad file), then prepared."""
        from dlm.store.images import open_image

        return self.prepare_image(open_image(Path(path)))


# ------------------------------------------------------------------ helpers


def fit_within(width: int, height: int, pixels: int, side: int) -> tuple[int, int]:
    """``width``×``height`` scaled to at most ``pixels`` pixels, aspect kept, each
    side rounded down to a multiple of ``side`` (at least one ``side``)."""
    scale = math.sqrt(pixels / (width * height))
    # 1e-9: a square at the budget is 112.0, not 111.999… (the area check below holds)
    new_w = max(side, math.floor(width * scale / side + 1e-9) * side)
    new_h = max(side, math.floor(height * scale / side + 1e-9) * side)
    # a very long image: its short side held at ``side``, the long one shortened
    if new_w * new_h > pixels:
        if new_w >= new_h:
            new_w = max(side, pixels // new_h // side * side)
        else:
            new_h = max(side, pixels // new_w // side * side)
    return new_w, new_h


def restore_setting(current: Any, value: Any) -> Any:
    """A saved setting in the type the processor holds (``SizeDict`` stays ``SizeDict``)."""
    if isinstance(value, dict) and current is not None and not isinstance(current, dict):
        with contextlib.suppress(TypeError):
            return type(current)(**value)
    return value


def _jsonable(value: Any) -> Any:
    """Processor attributes as plain JSON values (``SizeDict`` → dict, tuples → lists)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if v is not None}
    if hasattr(value, "items") and callable(value.items):
        return {str(k): _jsonable(v) for k, v in value.items() if v is not None}
    if hasattr(value, "__dataclass_fields__"):
        return {
            name: _jsonable(getattr(value, name))
            for name in value.__dataclass_fields__
            if getattr(value, name) is not None
        }
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "value"):  # enums (resampling modes)
        return _jsonable(value.value)
    raise TypeError(f"image setting of type {type(value).__name__} is not JSON-serialisable")


def _aspect(width: int, height: int) -> str:
    ratio = width / height if height else 0.0
    return f"{ratio:.2f}".rstrip("0").rstrip(".")
