"""InternVL's prompt format: the chat template, with images counted tile by tile.

InternVL crops an image into dynamic 448² tiles (the grid closest to its
aspect ratio, plus a thumbnail when there is more than one tile), so an
image's token count depends on its size: counting opens the image and asks
the image processor how many tiles it makes. Every image also brings its
``<img>`` / ``</img>`` delimiters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dlm.family import BoundBase, ChatTemplate
from dlm.records import TokenCount, TrainingExample

if TYPE_CHECKING:
    from PIL.Image import Image

#: ``<img>`` and ``</img>`` around every image's context tokens.
IMAGE_DELIMITERS = 2


def image_tokens(processor: Any, image: Image) -> int:
    """Tokens ``image`` becomes: ``<img>`` + context tokens of every tile + ``</img>``."""
    width, height = image.size
    # the processor's call-time defaults (crop_to_patches=True) override the
    # image processor's attribute, so count with them too
    kwargs = dict(getattr(processor, "images_kwargs", None) or {})
    tiles = processor.image_processor.get_number_of_image_patches(height, width, kwargs)
    return IMAGE_DELIMITERS + int(processor.image_seq_length) * int(tiles)


class TiledChatTemplate(ChatTemplate):
    def count_tokens(self, bound: BoundBase, example: TrainingExample) -> TokenCount:
        """Exact counts with a processor (each image opened for its size); an upper bound without."""
        counted = super().count_tokens(bound, example)
        if not example.kind.has_image or not example.images:
            return counted
        if bound.processor is None:
            image = (bound.base.image.max_image_tokens() + IMAGE_DELIMITERS) * len(example.images)
        else:
            image = sum(
                image_tokens(bound.processor, bound.open_image(ref.blob_path))
                for ref in example.images
            )
        return TokenCount(image=image, prompt=counted.prompt, completion=counted.completion)
