"""Build the offline tiny InternVL base: the native classes at toy size.

Everything is made here, with no download: a byte-level BPE tokenizer
trained on :data:`dlm_vl_internvl.corpus.CORPUS` with Qwen2's normalizer and
split regex and InternVL3's special tokens, finished by the same code that
finishes a converted checkpoint's tokenizer (named image tokens, InternVL's
chat template); a ``GotOcr2ImageProcessor`` tiling into 56x56 tiles (up to
4 plus a thumbnail); and a randomly initialised
``InternVLForConditionalGeneration`` (Qwen2 language model) from a fixed
seed. Two builds write byte-identical files.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from dlm.kit import (
    QWEN2_SPLIT_PATTERN,
    tokenizer_from_bpe,
    train_byte_level_bpe,
    write_tiny_base,
)
from dlm.records import BaseSpec
from dlm_vl_internvl.bases import (
    TINY_BPE_VOCAB,
    TINY_DOWNSAMPLE,
    TINY_MAX_TILES,
    TINY_SEED,
    TINY_TEMPLATE,
    TINY_TEXT_CONFIG,
    TINY_TILE,
    TINY_VISION_CONFIG,
)
from dlm_vl_internvl.convert import ENDOFTEXT
from dlm_vl_internvl.corpus import CORPUS
from dlm_vl_internvl.templates import IM_END, IM_START, IMG_CONTEXT, IMG_END, IMG_START, VIDEO

#: InternVL3's specials after ``<|endoftext|>`` (Qwen2.5's chat tokens, then
#: InternVL's own), plus ``<video>`` for the native processor.
SPECIAL_TOKENS = (
    IM_START,
    IM_END,
    IMG_START,
    IMG_END,
    IMG_CONTEXT,
    "<quad>",
    "</quad>",
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
    VIDEO,
)


def build_plain_tokenizer() -> Any:
    """A Qwen2 byte-level BPE with merges and InternVL3's special tokens, not yet named.

    Merges matter: llama.cpp refuses a BPE vocabulary without them.
    """
    from transformers import Qwen2Tokenizer

    bpe = train_byte_level_bpe(CORPUS, TINY_BPE_VOCAB, QWEN2_SPLIT_PATTERN, nfc=True)
    tokenizer = tokenizer_from_bpe(
        Qwen2Tokenizer,
        bpe,
        extra_special_tokens=list(SPECIAL_TOKENS),
        model_max_length=TINY_TEXT_CONFIG["max_position_embeddings"],
        errors="replace",
    )
    tokenizer.eos_token = IM_END  # as InternVL3's tokenizer_config.json
    return tokenizer


def build_tokenizer() -> Any:
    """The tiny tokenizer as a converted base has it: named image tokens, chat template."""
    from dlm_vl_internvl.convert import finish_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        build_plain_tokenizer().save_pretrained(tmp)
        return finish_tokenizer(Path(tmp), TINY_TEMPLATE)


def tokens_per_tile() -> int:
    side = TINY_TILE // TINY_VISION_CONFIG["patch_size"]
    return int(side * side * TINY_DOWNSAMPLE**2)


def build_processor(tokenizer: Any) -> Any:
    from dlm_vl_internvl.convert import build_processor as internvl_processor

    return internvl_processor(
        tokenizer,
        tile_size=TINY_TILE,
        min_tiles=1,
        max_tiles=TINY_MAX_TILES,
        tokens_per_tile=tokens_per_tile(),
        template=TINY_TEMPLATE,
    )


def build_model(tokenizer: Any, seed: int) -> Any:
    import torch
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    from dlm_vl_internvl.convert import generation_config

    vocab = TINY_TEXT_CONFIG["vocab_size"]
    if len(tokenizer) > vocab:
        raise RuntimeError(f"tiny tokenizer has {len(tokenizer)} tokens, model rows {vocab}")
    text_config = dict(TINY_TEXT_CONFIG)
    text_config.update(
        bos_token_id=tokenizer.convert_tokens_to_ids(ENDOFTEXT),
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.convert_tokens_to_ids(ENDOFTEXT),
    )
    config = InternVLConfig(
        text_config=text_config,
        vision_config=dict(TINY_VISION_CONFIG),
        image_token_id=tokenizer.convert_tokens_to_ids(IMG_CONTEXT),
        image_seq_length=tokens_per_tile(),
        downsample_ratio=TINY_DOWNSAMPLE,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=TINY_TEXT_CONFIG["tie_word_embeddings"],
    )
    config.architectures = ["InternVLForConditionalGeneration"]
    torch.manual_seed(seed)
    model: Any = InternVLForConditionalGeneration(config)
    model = model.to(torch.float32)
    model.generation_config = generation_config(tokenizer)
    return model


def build(base: BaseSpec, out_dir: Path) -> None:
    """Write the tiny base (safetensors weights, config, processor, tokenizer) to ``out_dir``."""
    processor = build_processor(build_tokenizer())
    write_tiny_base(
        base, out_dir, processor, lambda seed: build_model(processor.tokenizer, seed), TINY_SEED
    )
