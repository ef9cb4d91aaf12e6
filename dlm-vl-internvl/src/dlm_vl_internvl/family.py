"""The InternVL family: the generic chat-template behaviour plus InternVL's specifics.

What differs from :class:`dlm.family.Family`:

- real bases are remote-code checkpoints, converted locally to the native
  layout on first use (:mod:`dlm_vl_internvl.materialize`);
- images are tiled (InternVL's dynamic 448² tiles plus a thumbnail), so an
  image's token count depends on its aspect ratio and size: counting opens
  the image and asks the image processor how many tiles it makes;
- every image also brings its ``<img>`` / ``</img>`` delimiters;
- the tile bounds (``min_patches`` / ``max_patches``) and tile size are the
  resolution settings saved with the adapter.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlm.family import Family
from dlm.kit import dlm_home, open_prepared
from dlm.records import BaseSpec, TokenCount, TrainingExample
from dlm_vl_internvl.bases import FAMILY
from dlm_vl_internvl.templates import IM_END

if TYPE_CHECKING:
    from PIL.Image import Image

#: ``<img>`` and ``</img>`` around every image's context tokens.
IMAGE_DELIMITERS = 2


class InternVLFamily(Family):
    name = FAMILY
    supports_text_only = True
    # the GotOcr2 image processor's tile size and tile bounds; InternVLProcessor
    # always crops to tiles, so these fix how many tokens an image becomes
    image_setting_keys = ("size", "min_patches", "max_patches")
    # <|im_start|>system\n + the default system message (Chinese, ~30 tokens in the
    # real vocabularies) + <|im_end|> and the user/assistant headers
    chat_overhead_tokens = 48

    # ------------------------------------------------------------- weights

    def materialize(self, base: BaseSpec, home: Path | None = None) -> Path:
        if base.tiny or not base.extra.get("converted"):
            return super().materialize(base, home)
        from dlm_vl_internvl.materialize import materialize_converted

        root = Path(home) if home is not None else dlm_home()
        return materialize_converted(
            base, root / "bases", lambda: super(InternVLFamily, self).materialize(base, root)
        )

    def build_tiny(self, base: BaseSpec, out_dir: Path) -> None:
        from dlm_vl_internvl.tiny import build

        build(base, out_dir)

    # ------------------------------------------------------------- tokens

    def image_tokens(self, processor: Any, image: Image) -> int:
        """Tokens ``image`` becomes: ``<img>`` + context tokens of every tile + ``</img>``.

        The tile count is the image processor's own (closest tile grid to
        the aspect ratio within the saved bounds, plus the thumbnail when
        there is more than one tile).
        """
        width, height = image.size
        # the processor's call-time defaults (crop_to_patches=True) override the
        # image processor's attribute, so count with them too
        kwargs = dict(getattr(processor, "images_kwargs", None) or {})
        tiles = processor.image_processor.get_number_of_image_patches(height, width, kwargs)
        return IMAGE_DELIMITERS + int(processor.image_seq_length) * int(tiles)

    def count_tokens(self, base: BaseSpec, processor: Any, example: TrainingExample) -> TokenCount:
        """Exact counts with a processor (each image opened for its size); an upper bound without."""
        counted = super().count_tokens(base, processor, example)
        if not example.kind.has_image or not example.images:
            return counted
        if processor is None:
            per_image = base.image.max_image_tokens() + IMAGE_DELIMITERS
            return TokenCount(
                image=per_image * len(example.images),
                prompt=counted.prompt,
                completion=counted.completion,
            )
        image = sum(
            self.image_tokens(processor, open_prepared(self, base, ref.blob_path))
            for ref in example.images
        )
        return TokenCount(image=image, prompt=counted.prompt, completion=counted.completion)

    # ------------------------------------------------------------- export

    def stop_tokens(self, base: BaseSpec, processor: Any) -> list[str]:
        # <|im_end|> ends a chat turn; the EOS (</s> for InternLM2, <|im_end|> or
        # <|endoftext|> for Qwen2) ends a document
        stops = [IM_END]
        tokenizer = getattr(processor, "tokenizer", processor)
        for token in (tokenizer.eos_token, "<|endoftext|>"):
            if token and token not in stops and token in tokenizer.get_vocab():
                stops.append(token)
        return stops


__all__ = ["InternVLFamily"]
