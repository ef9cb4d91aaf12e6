"""The Mistral 3 family: the generic chat-template behaviour plus Mistral's specifics.

The generic collator fits Mistral Small 3.1's template as it is: the
generation prompt ends with ``[/INST]`` (no assistant header), and the
assistant turn the template renders is exactly ``completion + </s>``, so
the labelled ids are the completion and ``</s>``; ``<s>``, the system
prompt, ``[INST]…[/INST]`` and every ``[IMG]``/``[IMG_BREAK]``/``[IMG_END]``
stay at -100. The Pixtral processor expands each ``[IMG]`` placeholder to
``rows x (cols + 1)`` tokens and returns ``pixel_values`` and
``image_sizes``, which pass through to the model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dlm.family import Family
from dlm.records import BaseSpec
from dlm_vl_mistral.bases import FAMILY

# The template's default system message when the document sets none
# (~560 characters), plus <s>, [SYSTEM_PROMPT]…[/SYSTEM_PROMPT], [INST]…[/INST].
_DEFAULT_SYSTEM_CHARS = 560
_TEMPLATE_TOKENS = 7


class Mistral3Family(Family):
    name = FAMILY
    supports_text_only = True
    # The Pixtral image processor's only resolution knob: the longest edge
    # an image may keep (patch and merge sizes belong to the processor's
    # config and are fixed per base).
    image_setting_keys = ("size",)
    # Without a tokenizer (planning before a download), assume the default
    # system message is rendered: an estimate that errs long.
    chat_overhead_tokens = math.ceil(_DEFAULT_SYSTEM_CHARS / 3.5) + _TEMPLATE_TOKENS

    def build_tiny(self, base: BaseSpec, out_dir: Path) -> None:
        from dlm_vl_mistral.tiny import build

        build(base, out_dir)

    def load_processor(
        self, base: BaseSpec, base_dir: Path, image_settings: dict[str, Any] | None = None
    ) -> Any:
        """Load the Pixtral processor, pinned to the saved (or default) image settings.

        The published Mistral Small 3.1 ``tokenizer.json`` carries a wrong
        pre-tokenizer regex; transformers repairs it only when asked with
        ``fix_mistral_regex=True`` (and warns otherwise). The tiny base is
        built with the corrected pattern, so it loads as is.
        """
        if base.tiny:
            return super().load_processor(base, base_dir, image_settings)
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(
            base_dir, trust_remote_code=False, fix_mistral_regex=True
        )
        settings = (
            image_settings if image_settings is not None else self.default_image_settings(base)
        )
        _pin(processor, settings, base.key)
        return processor

    def stop_tokens(self, base: BaseSpec, processor: Any) -> list[str]:
        # An assistant turn ends with </s> (the template appends eos_token).
        return ["</s>"]


def _pin(processor: Any, settings: dict[str, Any], key: str) -> None:
    """Apply saved resolution settings to the Pixtral image processor."""
    from transformers.image_utils import SizeDict

    image_processor = processor.image_processor
    for name, value in settings.items():
        if not hasattr(image_processor, name):
            raise RuntimeError(
                f"image setting {name!r} does not apply to {key}'s image processor; "
                "the adapter was trained with another processor: retrain it on this base"
            )
        if name == "size" and isinstance(value, dict):
            value = SizeDict(**value)
        setattr(image_processor, name, value)
