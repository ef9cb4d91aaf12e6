"""Build the offline tiny Mistral 3 base: the real classes at toy size.

Everything is made here, with no download: a byte-level BPE (with merges)
trained on :data:`dlm_vl_mistral.corpus.CORPUS`, laid out like Mistral's
Tekken vocabulary (the same special tokens at the same ids, then the byte
alphabet and merges; Tekken's split regex; ``<s>`` prepended); the real
Mistral Small 3.1 chat template; a ``PixtralProcessor`` pinned to 112x112;
and a randomly initialised ``Mistral3ForConditionalGeneration`` from a
fixed seed. Two builds write byte-identical files.

torch/transformers are imported inside functions: importing the plugin
stays cheap.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from dlm.kit import train_byte_level_bpe, write_tiny_base
from dlm.records import BaseSpec
from dlm_vl_mistral.bases import (
    PATCH_SIZE,
    SPATIAL_MERGE,
    TEKKEN_SPLIT_PATTERN,
    TINY_SEED,
    TINY_SIDE,
    TINY_TEXT_CONFIG,
    TINY_VISION_CONFIG,
    TINY_VOCAB,
)
from dlm_vl_mistral.corpus import CORPUS

BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"
#: Mistral's control tokens, in the real vocabulary's order: ``[IMG]`` is id
#: 10 (``image_token_index``), ``<pad>`` 11, ``[IMG_BREAK]`` 12, ``[IMG_END]``
#: 13, ``[SYSTEM_PROMPT]`` 17. The real vocabulary reserves 1000 control ids;
#: the tiny one keeps the 20 named ones.
SPECIAL_TOKENS = (
    UNK,
    BOS,
    EOS,
    "[INST]",
    "[/INST]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    "[TOOL_CALLS]",
    "[IMG]",
    PAD,
    "[IMG_BREAK]",
    "[IMG_END]",
    "[PREFIX]",
    "[MIDDLE]",
    "[SUFFIX]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[TOOL_CONTENT]",
)


def chat_template() -> str:
    """The Mistral Small 3.1 Instruct chat template (default system message with today's date)."""
    path = resources.files("dlm_vl_mistral").joinpath("data/chat_template.jinja")
    return path.read_text(encoding="utf-8")


def build_tokenizer() -> Any:
    """A byte-level BPE with merges, wrapped as a transformers fast tokenizer."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok = train_byte_level_bpe(
        CORPUS, TINY_VOCAB, TEKKEN_SPLIT_PATTERN, special_tokens=SPECIAL_TOKENS
    )
    bos_id = tok.token_to_id(BOS)
    # like the real tokenizer: a plain encode starts with <s>
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        # the control tokens are special: never split, dropped by decode(skip_special_tokens)
        extra_special_tokens=[t for t in SPECIAL_TOKENS if t not in (BOS, EOS, UNK, PAD)],
        model_max_length=TINY_TEXT_CONFIG["max_position_embeddings"],
        padding_side="right",
    )
    tokenizer.chat_template = chat_template()
    for position, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.convert_tokens_to_ids(token) != position:
            raise RuntimeError(f"tiny tokenizer put {token} at the wrong id")
    return tokenizer


def build_processor(tokenizer: Any) -> Any:
    from transformers import PixtralImageProcessor, PixtralProcessor

    image_processor = PixtralImageProcessor(
        size={"longest_edge": TINY_SIDE},
        patch_size={"height": PATCH_SIZE, "width": PATCH_SIZE},
    )
    return PixtralProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        spatial_merge_size=SPATIAL_MERGE,
        chat_template=chat_template(),
    )


def build_model(tokenizer: Any, seed: int) -> Any:
    import torch
    from transformers import GenerationConfig, Mistral3Config, Mistral3ForConditionalGeneration

    if len(tokenizer) > TINY_VOCAB:
        raise RuntimeError(f"tiny tokenizer has {len(tokenizer)} tokens, model rows {TINY_VOCAB}")
    bos, eos, pad = (tokenizer.convert_tokens_to_ids(t) for t in (BOS, EOS, PAD))
    text_config = dict(TINY_TEXT_CONFIG)
    text_config.update(bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    config = Mistral3Config(
        text_config=text_config,
        vision_config=dict(TINY_VISION_CONFIG),
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        spatial_merge_size=SPATIAL_MERGE,
        projector_hidden_act="gelu",
        multimodal_projector_bias=False,
        vision_feature_layer=-1,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Mistral3ForConditionalGeneration(config).float()
    model.generation_config = GenerationConfig(bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    return model


def build(base: BaseSpec, out_dir: Path) -> None:
    """Write the tiny base (safetensors weights, config, processor, tokenizer) to ``out_dir``."""
    processor = build_processor(build_tokenizer())
    write_tiny_base(
        base, out_dir, processor, lambda seed: build_model(processor.tokenizer, seed), TINY_SEED
    )
