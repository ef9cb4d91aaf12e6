"""Build the offline tiny Qwen2-VL base: same classes as the real one, toy sizes.

Everything is made here, with no download: a byte-level BPE tokenizer
trained on :data:`dlm_vl_qwen2.corpus.CORPUS` with Qwen2's normalizer,
split regex and special tokens; the real Qwen2-VL chat template; an image
processor pinned to 112x112; and a randomly initialised
``Qwen2VLForConditionalGeneration`` from a fixed seed. Two builds write
byte-identical files.

torch/transformers are imported inside functions: importing the plugin
stays cheap.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from dlm.kit import (
    QWEN2_SPLIT_PATTERN,
    tokenizer_from_bpe,
    train_byte_level_bpe,
    write_tiny_base,
)
from dlm.records import BaseSpec
from dlm_vl_qwen2.bases import (
    TINY_BPE_VOCAB,
    TINY_HEAD_SCALE,
    TINY_SEED,
    TINY_SIDE,
    TINY_TEXT_CONFIG,
    TINY_VISION_CONFIG,
)
from dlm_vl_qwen2.corpus import CORPUS

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
#: Qwen2-VL's special tokens after ``<|endoftext|>``, in the real vocabulary's order.
SPECIAL_TOKENS = (
    IM_START,
    IM_END,
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


def chat_template() -> str:
    """The Qwen2-VL instruct chat template (default system prompt, one pad per image)."""
    path = resources.files("dlm_vl_qwen2").joinpath("data/chat_template.jinja")
    return path.read_text(encoding="utf-8")


def build_tokenizer() -> Any:
    """A real byte-level BPE with merges, wrapped as transformers' ``Qwen2Tokenizer``.

    Merges matter: llama.cpp refuses a BPE vocabulary without them, and the
    GGUF export of the tiny base must work like a real one.
    """
    from transformers import Qwen2Tokenizer

    bpe = train_byte_level_bpe(CORPUS, TINY_BPE_VOCAB, QWEN2_SPLIT_PATTERN, nfc=True)
    # Qwen2Tokenizer adds <|endoftext|> (unk/bos-less eos/pad) right after the
    # BPE vocabulary, then the extra specials in order: the real layout.
    tokenizer = tokenizer_from_bpe(
        Qwen2Tokenizer,
        bpe,
        extra_special_tokens=list(SPECIAL_TOKENS),
        model_max_length=32768,
        errors="replace",
    )
    tokenizer.eos_token = IM_END  # as the instruct model's tokenizer_config.json
    tokenizer.chat_template = chat_template()
    return tokenizer


def build_processor(tokenizer: Any) -> Any:
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    pixels = TINY_SIDE * TINY_SIDE
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": pixels, "longest_edge": pixels},
        patch_size=TINY_VISION_CONFIG["patch_size"],
        temporal_patch_size=TINY_VISION_CONFIG["temporal_patch_size"],
        merge_size=TINY_VISION_CONFIG["spatial_merge_size"],
    )
    video_processor = Qwen2VLVideoProcessor(
        patch_size=TINY_VISION_CONFIG["patch_size"],
        temporal_patch_size=TINY_VISION_CONFIG["temporal_patch_size"],
        merge_size=TINY_VISION_CONFIG["spatial_merge_size"],
    )
    return Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=chat_template(),
    )


def build_model(tokenizer: Any, seed: int) -> Any:
    import torch
    from transformers import GenerationConfig, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in (ENDOFTEXT, *SPECIAL_TOKENS)}
    vocab = TINY_TEXT_CONFIG["vocab_size"]
    if len(tokenizer) > vocab:
        raise RuntimeError(f"tiny tokenizer has {len(tokenizer)} tokens, model rows {vocab}")
    text_config = dict(TINY_TEXT_CONFIG)
    text_config.update(bos_token_id=ids[ENDOFTEXT], eos_token_id=ids[IM_END])
    config = Qwen2VLConfig(
        text_config=text_config,
        vision_config=dict(TINY_VISION_CONFIG),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=TINY_TEXT_CONFIG["tie_word_embeddings"],
    )
    torch.manual_seed(seed)
    model: Any = Qwen2VLForConditionalGeneration(config)
    model = model.to(torch.float32)
    # The LM head stays frozen under LoRA. At the usual init (std 0.02) and
    # hidden size 64 it caps every logit near +-1.3, so a tiny model could
    # never grow confident in an answer; a real base has a trained head.
    # Scaling a *tied* head would also scale the input embeddings, which then
    # drown the layers' output in the residual stream and make "repeat the
    # current token" win every prediction (initial loss ~20). So the tiny
    # head is untied (as in Qwen2-VL-7B) and only it is scaled.
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(TINY_HEAD_SCALE)
    model.generation_config = GenerationConfig(
        bos_token_id=ids[ENDOFTEXT],
        eos_token_id=[ids[IM_END], ids[ENDOFTEXT]],
        pad_token_id=ids[ENDOFTEXT],
    )
    return model


def build(base: BaseSpec, out_dir: Path) -> None:
    """Write the tiny base (safetensors weights, config, processor, tokenizer) to ``out_dir``."""
    processor = build_processor(build_tokenizer())
    write_tiny_base(
        base, out_dir, processor, lambda seed: build_model(processor.tokenizer, seed), TINY_SEED
    )
