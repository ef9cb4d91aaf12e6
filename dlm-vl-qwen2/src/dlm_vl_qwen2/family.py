"""The Qwen2-VL family: the generic chat-template behaviour plus Qwen2's specifics."""

from __future__ import annotations

from pathlib import Path

from dlm.family import Family
from dlm.records import BaseSpec
from dlm_vl_qwen2.bases import FAMILY


class Qwen2VLFamily(Family):
    name = FAMILY
    supports_text_only = True
    # ``size`` holds min/max pixels ({shortest,longest}_edge in transformers 5);
    # patch and merge sizes decide how many tokens an image becomes.
    image_setting_keys = ("size", "patch_size", "temporal_patch_size", "merge_size")
    # <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n
    # <|vision_start|>…<|vision_end|>…<|im_end|>\n<|im_start|>assistant\n
    chat_overhead_tokens = 20

    # <|im_end|> ends a chat turn; <|endoftext|> ends a document
    stop_strings = ("<|im_end|>", "<|endoftext|>")

    def build_tiny(self, base: BaseSpec, out_dir: Path) -> None:
        from dlm_vl_qwen2.tiny import build

        build(base, out_dir)
