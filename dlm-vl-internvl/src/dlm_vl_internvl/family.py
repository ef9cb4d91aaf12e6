"""The InternVL family: the generic chat-template behaviour plus InternVL's specifics.

What differs from :class:`dlm.family.Family`:

- real bases are remote-code checkpoints, converted locally to the native
  layout on first use (:mod:`dlm_vl_internvl.materialize`);
- images are tiled (InternVL's dynamic 448² tiles plus a thumbnail), so an
  image's token count depends on its aspect ratio and size: the prompt
  format, :class:`~dlm_vl_internvl.tiles.TiledChatTemplate`, counts them;
- the tile bounds (``min_patches`` / ``max_patches``) and tile size are the
  resolution settings saved with the adapter.
"""

from __future__ import annotations

from pathlib import Path

from dlm.family import BoundBase, Family
from dlm.kit import dlm_home
from dlm.records import BaseSpec
from dlm_vl_internvl.bases import FAMILY
from dlm_vl_internvl.templates import IM_END
from dlm_vl_internvl.tiles import TiledChatTemplate


class InternVLFamily(Family):
    name = FAMILY
    supports_text_only = True
    # the GotOcr2 image processor's tile size and tile bounds; InternVLProcessor
    # always crops to tiles, so these fix how many tokens an image becomes
    image_setting_keys = ("size", "min_patches", "max_patches")
    # <|im_start|>system\n + the default system message (Chinese, ~30 tokens in the
    # real vocabularies) + <|im_end|> and the user/assistant headers
    chat_overhead_tokens = 48
    prompt_format = TiledChatTemplate()

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

    # ------------------------------------------------------------- export

    def stop_tokens(self, bound: BoundBase) -> list[str]:
        # <|im_end|> ends a chat turn; the EOS (</s> for InternLM2, <|im_end|> or
        # <|endoftext|> for Qwen2) ends a document
        stops = [IM_END]
        tokenizer = bound.tokenizer
        for token in (tokenizer.eos_token, "<|endoftext|>"):
            if token and token not in stops and token in tokenizer.get_vocab():
                stops.append(token)
        return stops


__all__ = ["InternVLFamily"]
