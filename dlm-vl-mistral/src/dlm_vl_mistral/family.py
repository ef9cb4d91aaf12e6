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

#: Mistral Small 3.1's template dates its default system message with the
#: day it renders (``strftime_now``): a document without ``system_prompt``
#: would train on different text every day and be prompted with yet another
#: date. dlm pins the date to the base's release (2503 = 2025-03-17), so a
#: retrain gives the same adapter and prompts match training; the pinned
#: template travels with the processor into HF snapshots and Modelfiles.
TEMPLATE_DATE = "2025-03-17"
_TODAY = 'strftime_now("%Y-%m-%d")'


def pin_template_date(template: str, date: str = TEMPLATE_DATE) -> str:
    """The chat template with its render-time date replaced by ``date``."""
    return template.replace(_TODAY, f'"{date}"')


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
    # An assistant turn ends with </s> (the template appends eos_token).
    stop_strings = ("</s>",)
    # The repo also ships consolidated.safetensors (Mistral's own format, ~48 GB):
    # fetch only the transformers shards.
    download_patterns = ("*.json", "model-*.safetensors", "*.jinja", "*.txt")

    def build_tiny(self, base: BaseSpec, out_dir: Path) -> None:
        from dlm_vl_mistral.tiny import build

        build(base, out_dir)

    def processor_load_kwargs(self, base: BaseSpec) -> dict[str, Any]:
        """The published Mistral Small 3.1 ``tokenizer.json`` carries a wrong
        pre-tokenizer regex; transformers repairs it only when asked with
        ``fix_mistral_regex=True``. The tiny base is built with the corrected
        pattern, so it loads as is."""
        return {} if base.tiny else {"fix_mistral_regex": True}

    def load_processor(
        self, base: BaseSpec, base_dir: Path, image_settings: dict[str, Any] | None = None
    ) -> Any:
        processor = super().load_processor(base, base_dir, image_settings)
        holders = [processor, getattr(processor, "tokenizer", None)]
        for holder in (h for h in holders if h is not None):
            template = getattr(holder, "chat_template", None)
            if isinstance(template, str):
                holder.chat_template = pin_template_date(template)
        return processor
