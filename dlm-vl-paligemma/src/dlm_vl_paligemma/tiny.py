"""Build the offline tiny PaliGemma base: same classes as the real one, toy sizes.

Everything is made here, with no download: a Gemma-style BPE tokenizer
(SentencePiece conventions: ``▁`` for spaces, no dummy prefix, byte
fallback, Gemma's ``<pad>``/``<eos>``/``<bos>``/``<unk>``/``<mask>`` at ids
0-4) trained on :data:`dlm_vl_paligemma.corpus.CORPUS`, then PaliGemma's
``<locNNNN>``/``<segNNN>`` tokens and ``<image>`` after it, as in the real
vocabulary; a SigLIP image processor pinned to 56x56 (16 image tokens);
and a randomly initialised ``PaliGemmaForConditionalGeneration`` from a
fixed seed. Two builds write byte-identical files.

torch/transformers are imported inside functions: importing the plugin
stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlm.kit import tokenizer_from_bpe, train_bpe, write_tiny_base
from dlm.records import BaseSpec
from dlm_vl_paligemma.bases import (
    IMAGE_TOKEN,
    TINY_BPE_VOCAB,
    TINY_SEED,
    TINY_SIDE,
    TINY_TEXT_CONFIG,
    TINY_VISION_CONFIG,
    tiny_vocab_rows,
)
from dlm_vl_paligemma.corpus import CORPUS

PAD, EOS, BOS, UNK, MASK = "<pad>", "<eos>", "<bos>", "<unk>", "<mask>"
#: Gemma's special tokens, in the real vocabulary's order (ids 0-4).
SPECIAL_TOKENS = (PAD, EOS, BOS, UNK, MASK)
#: Byte-fallback pieces: any character the BPE lacks still round-trips.
BYTE_TOKENS = tuple(f"<0x{i:02X}>" for i in range(256))
#: PaliGemma's localisation and segmentation tokens (what its processor adds).
LOC_SEG = tuple(f"<loc{i:0>4}>" for i in range(1024)) + tuple(f"<seg{i:0>3}>" for i in range(128))


def build_tokenizer() -> Any:
    """A real BPE with merges, wrapped as transformers' ``GemmaTokenizer``.

    Trained with pieces split before each ``▁`` (SentencePiece keeps words
    apart) and ``\\n`` isolated, so the prefix separator the processor
    appends is always a token of its own.
    """
    from tokenizers import normalizers, pre_tokenizers
    from transformers import AddedToken, GemmaTokenizer

    bpe = train_bpe(
        CORPUS,
        TINY_BPE_VOCAB,
        normalizer=normalizers.Replace(" ", "▁"),
        pre_tokenizer=pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split("\n", behavior="isolated"),
                pre_tokenizers.Split("▁", behavior="merged_with_next"),
            ]
        ),
        special_tokens=[*SPECIAL_TOKENS, *BYTE_TOKENS],
        byte_fallback=True,
        unk_token=UNK,
    )
    tokenizer = tokenizer_from_bpe(
        GemmaTokenizer,
        bpe,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=BOS,
        unk_token=UNK,
        mask_token=MASK,
        model_max_length=TINY_TEXT_CONFIG["max_position_embeddings"],
        # the processor turns BOS/EOS insertion off and places them itself
        add_bos_token=False,
        add_eos_token=False,
    )
    # the real layout: loc/seg pieces, then <image> (257152 in the real vocabulary)
    tokenizer.add_tokens(list(LOC_SEG))
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(IMAGE_TOKEN, normalized=False, special=True)]}
    )
    return tokenizer


def build_processor(tokenizer: Any) -> Any:
    from transformers import PaliGemmaProcessor, SiglipImageProcessor

    patches = (TINY_SIDE // TINY_VISION_CONFIG["patch_size"]) ** 2
    # the real preprocessor_config.json: bicubic resize, [-1, 1] normalisation
    image_processor = SiglipImageProcessor(
        size={"height": TINY_SIDE, "width": TINY_SIDE},
        resample=3,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        image_seq_length=patches,
    )
    return PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)


def build_model(tokenizer: Any, seed: int) -> Any:
    import torch
    from transformers import GenerationConfig, PaliGemmaConfig, PaliGemmaForConditionalGeneration

    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in (*SPECIAL_TOKENS, IMAGE_TOKEN)}
    rows = tiny_vocab_rows(len(tokenizer))
    hidden = TINY_TEXT_CONFIG["hidden_size"]
    # as in the real config.json: on the text config and at the top level
    special_ids = {"pad_token_id": ids[PAD], "bos_token_id": ids[BOS], "eos_token_id": ids[EOS]}
    text_config = {"model_type": "gemma", **TINY_TEXT_CONFIG, "vocab_size": rows, **special_ids}
    vision_config = {"model_type": "siglip_vision_model", **TINY_VISION_CONFIG}
    config = PaliGemmaConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_index=ids[IMAGE_TOKEN],
        vocab_size=rows,
        projection_dim=hidden,
        hidden_size=hidden,
        **special_ids,
    )
    torch.manual_seed(seed)
    model = PaliGemmaForConditionalGeneration(config).float()
    model.generation_config = GenerationConfig(
        bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[PAD]
    )
    return model


def build(base: BaseSpec, out_dir: Path) -> None:
    """Write the tiny base (safetensors weights, config, processor, tokenizer) to ``out_dir``."""
    processor = build_processor(build_tokenizer())
    write_tiny_base(
        base, out_dir, processor, lambda seed: build_model(processor.tokenizer, seed), TINY_SEED
    )
