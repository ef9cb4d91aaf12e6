"""The PaliGemma family: a prefix-LM with task prefixes, not a chat model.

What differs from the generic chat-template family:

- **Its prompt format** is :class:`~dlm_vl_paligemma.task_prefix.TaskPrefix`:
  captions train and prompt as ``caption en``, questions as
  ``answer en <question>`` (see :mod:`dlm_vl_paligemma.prompts`), laid out
  by the processor's ``suffix=`` path.
- **No text-only training** (``supports_text_only = False``): the model is
  always conditioned on an image; the engine skips unbound text sections
  and reports them, and the format refuses an example without an image.
- **The frontmatter's ``system_prompt`` is ignored.** PaliGemma has no
  system turn, and the mix checkpoints were fine-tuned on bare task
  prefixes: text in front of the prefix puts the model off the
  distribution it was trained on, for no gain, since a document's system
  prompt is the same for every example (a LoRA learns whatever it would
  have conveyed from the examples themselves). Training and prompting both
  drop it, so they stay consistent.
"""

from __future__ import annotations

from pathlib import Path

from dlm.family import Family
from dlm.records import BaseSpec
from dlm_vl_paligemma.bases import FAMILY
from dlm_vl_paligemma.prompts import CAPTION_PROMPT
from dlm_vl_paligemma.task_prefix import TaskPrefix

# Planning a real base before its download: <bos>, the "answer en" words,
# the "\n" separator and <eos>, roughly.
_PREFIX_OVERHEAD_TOKENS = 5


class PaliGemmaFamily(Family):
    name = FAMILY
    prompt_format = TaskPrefix()
    supports_text_only = False
    # no system turn: the mix checkpoints know bare task prefixes only
    uses_system_prompt = False
    caption_prompt = CAPTION_PROMPT
    # SigLIP's learned position embeddings fix the input size
    image_setting_keys = ("size",)
    chat_overhead_tokens = _PREFIX_OVERHEAD_TOKENS
    # Gemma's <eos> ends the suffix; PaliGemma never emits <end_of_turn>
    stop_strings = ("<eos>",)

    def build_tiny(self, base: BaseSpec, out_dir: Path) -> None:
        from dlm_vl_paligemma.tiny import build

        build(base, out_dir)
