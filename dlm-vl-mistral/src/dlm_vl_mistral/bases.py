"""The Mistral 3 registry rows: Mistral Small 3.1 24B Instruct and the offline tiny base.

The real row's numbers come from its ``config.json`` (shipped as data in
this package, so planning never needs a download). Parameter counts are
those of ``Mistral3ForConditionalGeneration`` built from that config with
the checkpoint's separate ``lm_head`` (the weights are not tied).

How an image becomes tokens (``PixtralProcessor``): the image is pinned to
``side x side`` pixels, the vision tower cuts it into ``side / 14`` patches
a side, and the projector merges each 2 x 2 block into one LM token, so a
row of the image is ``side / 28`` ``[IMG]`` tokens. The processor closes
every row with ``[IMG_BREAK]`` and replaces the last one with
``[IMG_END]``: an image is ``(side / 28) * (side / 28 + 1)`` tokens in the
LM sequence. At 1540 px that is 55 rows of 55 ``[IMG]`` + 1 break/end
token = 3025 image-feature tokens + 55 delimiters = **3080** tokens, which
is what ``ImageGeometry.tokens_per_image`` holds so that token budgets are
exact.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from dlm.kit import TINY_TRAINING, text_config, vision_config
from dlm.records import (
    BaseSpec,
    ExportHints,
    ImageGeometry,
    ParamCounts,
    Pretokenizer,
    TextConfig,
    VisionConfig,
)

FAMILY = "mistral3"
ARCHITECTURE = "Mistral3ForConditionalGeneration"
IMAGE_TOKEN = "[IMG]"
IMAGE_BREAK_TOKEN = "[IMG_BREAK]"
IMAGE_END_TOKEN = "[IMG_END]"

REAL_KEY = "mistral-small-3.1-24b-instruct"
TINY_KEY = "tiny-mistral3"

REAL_HUB_ID = "mistralai/Mistral-Small-3.1-24B-Instruct-2503"
REAL_REVISION = "68faf511d618ef198fef186659617cfd2eb8e33a"

PATCH_SIZE = 14
SPATIAL_MERGE = 2
REAL_SIDE = 1540  # 110 x 110 patches -> 55 x 55 merged tokens
TINY_SIDE = 112  # 8 x 8 patches -> 4 x 4 merged tokens; a multiple of 28 (patch x merge)

#: Tiny base recipe version: bump when the build (corpus, sizes, seed,
#: template, processor settings) changes, so built copies are rebuilt.
TINY_REVISION = "local-v2"
TINY_SEED = 2503
#: The tiny model's embedding rows and the most tokens the tiny BPE may
#: learn (specials + byte alphabet + merges; the corpus yields a few less).
#: The real vocabulary is 131072 = 2**17.
TINY_VOCAB = 1024

#: The tiny language model (``MistralConfig`` keyword arguments). Like the
#: real one, heads x head_dim (4 x 32) differs from the hidden size (64),
#: and the LM head is not tied to the embeddings.
TINY_TEXT_CONFIG: dict[str, Any] = {
    "model_type": "mistral",
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "hidden_act": "silu",
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 1000000000.0,
    "sliding_window": None,
    "vocab_size": TINY_VOCAB,
    # ~1/sqrt(hidden): the real 0.02 suits a 5120-wide model; at width 64 it
    # leaves logits so flat that a LoRA on the LM barely moves them
    "initializer_range": 0.125,
    "tie_word_embeddings": False,
}
#: The tiny Pixtral vision tower (``PixtralVisionConfig`` keyword arguments).
TINY_VISION_CONFIG: dict[str, Any] = {
    "model_type": "pixtral",
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 3,  # llama.cpp's mmproj converter maps projector tensors past block 2
    "num_attention_heads": 4,
    "num_channels": 3,
    "image_size": TINY_SIDE,
    "patch_size": PATCH_SIZE,
    "hidden_act": "silu",
    "rope_theta": 10000.0,
    "initializer_range": 0.125,
}
#: Parameter counts of the tiny model built from the configs above (a test
#: builds it and checks these).
TINY_PARAMS = ParamCounts(total=538_176, vision=259_328, language=278_848)

# The real model, counted from Mistral3ForConditionalGeneration on the
# config below with an untied lm_head (131072 x 5120 = 671,088,640 more than
# the tied count): Pixtral tower 403,305,472 + projector 35,652,608.
REAL_PARAMS = ParamCounts(total=24_011_361_280, vision=438_958_080, language=23_572_403_200)


#: Tekken's split pattern (the corrected one transformers applies with
#: ``fix_mistral_regex``), which llama.cpp implements as ``tekken``; the tiny
#: tokenizer is trained with it.
TEKKEN_SPLIT_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
#: llama.cpp converts both halves as Mistral3ForConditionalGeneration. The Pixtral
#: mmproj stores the [IMG_BREAK] embedding, which it reads from a tensor the HF
#: layout keeps under ``language_model.`` (skipped on the mmproj side): the exporter
#: stages those rows for it.
EXPORT_HINTS = ExportHints(
    mmproj_token_embedding=IMAGE_BREAK_TOKEN,
    pretokenizer=Pretokenizer("tekken", TEKKEN_SPLIT_PATTERN),
)


def image_tokens(side: int) -> int:
    """LM tokens one ``side x side`` image becomes: rows of ``[IMG]`` plus a break/end each."""
    per_row = side // (PATCH_SIZE * SPATIAL_MERGE)
    return per_row * (per_row + 1)


def _pinned(side: int) -> dict[str, Any]:
    # The Pixtral image processor only ever shrinks an image to fit
    # ``longest_edge`` and rounds up to whole 28 px cells; prepare_image
    # hands it exactly side x side, so every image keeps this geometry.
    return {"size": {"longest_edge": side}}


@cache
def real_config() -> dict[str, Any]:
    """``config.json`` of Mistral-Small-3.1-24B-Instruct-2503 at the pinned revision."""
    text = resources.files("dlm_vl_mistral").joinpath(
        "data/mistral-small-3.1-24b-instruct.config.json"
    )
    data: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return data


def _text(cfg: dict[str, Any]) -> TextConfig:
    # head_dim from the config: 32 heads of 128 in the real 5120-wide model, not hidden / heads
    return text_config(cfg, head_dim=cfg["head_dim"])


def _vision(cfg: dict[str, Any], side: int) -> VisionConfig:
    # transformers' Pixtral attends over all of a batch's images under one dense mask
    return vision_config(cfg, (side // cfg["patch_size"]) ** 2, block_mask=True)


def _geometry(side: int) -> ImageGeometry:
    return ImageGeometry(
        width=side,
        height=side,
        tokens_per_image=image_tokens(side),
        image_token=IMAGE_TOKEN,
    )


def real_base() -> BaseSpec:
    cfg = real_config()
    text = cfg["text_config"]
    return BaseSpec(
        key=REAL_KEY,
        family=FAMILY,
        hub_id=REAL_HUB_ID,
        revision=REAL_REVISION,
        architecture=ARCHITECTURE,
        license="Apache-2.0",
        license_url=f"https://huggingface.co/{REAL_HUB_ID}",
        image=_geometry(REAL_SIDE),
        text=_text(text),
        vision=_vision(cfg["vision_config"], REAL_SIDE),
        params=REAL_PARAMS,
        context_length=text["max_position_embeddings"],
        cuda_first=True,
        description=(
            "Mistral Small 3.1 24B Instruct, images pinned to 1540x1540 "
            f"({image_tokens(REAL_SIDE)} tokens: 3025 [IMG] + 55 row breaks); CUDA-first"
        ),
        image_settings=_pinned(REAL_SIDE),
        export_hints=EXPORT_HINTS,
        extra={
            "config": cfg,
            "image_feature_tokens": (REAL_SIDE // (PATCH_SIZE * SPATIAL_MERGE)) ** 2,
            "torch_dtype": cfg["torch_dtype"],
        },
    )


def tiny_base() -> BaseSpec:
    text, vision = TINY_TEXT_CONFIG, TINY_VISION_CONFIG
    return BaseSpec(
        key=TINY_KEY,
        family=FAMILY,
        hub_id="local/tiny-mistral3",
        revision=TINY_REVISION,
        architecture=ARCHITECTURE,
        license="Apache-2.0",
        image=_geometry(TINY_SIDE),
        text=_text(text),
        vision=_vision(vision, TINY_SIDE),
        params=TINY_PARAMS,
        context_length=text["max_position_embeddings"],
        tiny=True,
        description=(
            "Offline toy Mistral 3 (Pixtral vision, random weights, local tokenizer), "
            "for tests and demos"
        ),
        image_settings=_pinned(TINY_SIDE),
        recommended_training=dict(TINY_TRAINING),
        export_hints=EXPORT_HINTS,
        extra={
            "seed": TINY_SEED,
            "image_feature_tokens": (TINY_SIDE // (PATCH_SIZE * SPATIAL_MERGE)) ** 2,
        },
    )


def all_bases() -> list[BaseSpec]:
    return [real_base(), tiny_base()]
