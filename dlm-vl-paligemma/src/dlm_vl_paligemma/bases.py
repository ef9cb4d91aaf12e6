"""The PaliGemma registry rows: the real 3B mix checkpoint and the offline tiny base.

The real row's numbers come from its ``config.json`` (shipped as data in
this package, so planning never needs a download; transformers' config
defaults fill what the file leaves out: Gemma's head_dim 256, 8192
positions). Parameter counts are those of
``PaliGemmaForConditionalGeneration`` built from that config (embeddings
tied to the LM head). The tiny row is the same architecture at toy size
(see :mod:`dlm_vl_paligemma.tiny`).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from dlm.kit import TINY_TRAINING, text_config, vision_config
from dlm.records import BaseSpec, ImageGeometry, ParamCounts

FAMILY = "paligemma"
ARCHITECTURE = "PaliGemmaForConditionalGeneration"
IMAGE_TOKEN = "<image>"

REAL_KEY = "paligemma-3b-mix-224"
TINY_KEY = "tiny-paligemma"

REAL_SIDE = 224  # 16 x 16 patches of 14 px -> 256 image tokens (no merging)
TINY_SIDE = 56  # 4 x 4 patches of 14 px -> 16 image tokens

#: Gemma's defaults, which the published config.json leaves implicit.
GEMMA_HEAD_DIM = 256
GEMMA_MAX_POSITIONS = 8192

#: Tiny base recipe version: bump when the build (tokenizer corpus, sizes,
#: seed, processor settings) changes, so built copies are rebuilt.
TINY_REVISION = "local-v1"
TINY_SEED = 1234
#: Pieces the tiny BPE is trained to, counting the 5 specials and the 256
#: byte-fallback tokens; the 1152 ``<locNNNN>``/``<segNNN>`` tokens and
#: ``<image>`` follow, and the model's rows are padded to a multiple of 64
#: like the real 257152 -> 257216.
TINY_BPE_VOCAB = 1024
VOCAB_ROW_MULTIPLE = 64
#: ``<loc0000>``…``<loc1023>`` and ``<seg000>``…``<seg127>``: the processor
#: adds them to every tokenizer it wraps, so the tiny vocabulary holds them.
LOC_SEG_TOKENS = 1024 + 128

#: The tiny language model (GemmaConfig keyword arguments, minus the vocab
#: size and token ids, which the tokenizer decides at build time). Gemma's
#: shape at toy size: one key/value head (multi-query), as the real 2B.
TINY_TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "max_position_embeddings": GEMMA_MAX_POSITIONS,
    "rms_norm_eps": 1e-6,
    "hidden_act": "gelu_pytorch_tanh",
    # Random tied embeddings at the usual 0.02 bound the logits near +-1 (the
    # LM head is the embedding matrix), so a LoRA on the LM alone could only
    # tilt a near-uniform distribution; at 0.2 it can make answers certain.
    "initializer_range": 0.2,
}
#: The tiny SigLIP tower (SiglipVisionConfig keyword arguments).
TINY_VISION_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "patch_size": 14,
    "image_size": TINY_SIDE,
    "vision_use_head": False,
}


def _image_settings(side: int) -> dict[str, Any]:
    # SigLIP's position embeddings fix the resolution: it is pinned, not tuned
    return {"size": {"height": side, "width": side}}


@cache
def real_config() -> dict[str, Any]:
    """``config.json`` of google/paligemma-3b-mix-224 at the pinned revision."""
    text = resources.files("dlm_vl_paligemma").joinpath("data/paligemma-3b-mix-224.config.json")
    return json.loads(text.read_text(encoding="utf-8"))


def _patches(side: int, patch: int) -> int:
    return (side // patch) ** 2


def real_base() -> BaseSpec:
    cfg = real_config()
    text, vision = cfg["text_config"], cfg["vision_config"]
    patches = _patches(REAL_SIDE, vision["patch_size"])
    return BaseSpec(
        key=REAL_KEY,
        family=FAMILY,
        hub_id="google/paligemma-3b-mix-224",
        revision="d1d8734c9c3ad0ccfeea4afc270faa356c2ba515",
        architecture=ARCHITECTURE,
        license="Gemma Terms of Use",
        license_url="https://ai.google.dev/gemma/terms",
        gated=True,
        redistributable=False,
        image=ImageGeometry(
            width=REAL_SIDE,
            height=REAL_SIDE,
            tokens_per_image=patches,  # one LM token per SigLIP patch
            image_token=IMAGE_TOKEN,
        ),
        text=text_config(
            text,
            max_position=text.get("max_position_embeddings", GEMMA_MAX_POSITIONS),
            head_dim=text.get("head_dim", GEMMA_HEAD_DIM),
        ),
        vision=vision_config(vision, patches),
        # PaliGemmaForConditionalGeneration built from the config above:
        # vision = SigLIP-So400m (412,442,352) + projector (2,361,344).
        params=ParamCounts(total=2_923_466_480, vision=414_803_696, language=2_508_662_784),
        context_length=text.get("max_position_embeddings", GEMMA_MAX_POSITIONS),
        description=(
            "PaliGemma 3B mix (SigLIP + Gemma 2B), 224x224 images (256 tokens); "
            "prompts use task prefixes (caption en, answer en ...)"
        ),
        image_settings=_image_settings(REAL_SIDE),
        extra={"config": cfg},
    )


def tiny_base() -> BaseSpec:
    text, vision = TINY_TEXT_CONFIG, TINY_VISION_CONFIG
    patches = _patches(TINY_SIDE, vision["patch_size"])
    return BaseSpec(
        key=TINY_KEY,
        family=FAMILY,
        hub_id="local/tiny-paligemma",
        revision=TINY_REVISION,
        architecture=ARCHITECTURE,
        # random weights and a locally trained tokenizer: nothing of Gemma's
        license="Apache-2.0",
        image=ImageGeometry(
            width=TINY_SIDE,
            height=TINY_SIDE,
            tokens_per_image=patches,
            image_token=IMAGE_TOKEN,
        ),
        # the built tokenizer decides the exact rows; vocab_size is their bound
        text=text_config(text, vocab_size=tiny_vocab_rows(TINY_BPE_VOCAB + LOC_SEG_TOKENS + 1)),
        vision=vision_config(vision, patches),
        # counted from the built model (a test checks them against it)
        params=ParamCounts(total=372_416, vision=109_952, language=262_464),
        context_length=text["max_position_embeddings"],
        tiny=True,
        description="Offline toy PaliGemma (random weights, local tokenizer), for tests and demos",
        image_settings=_image_settings(TINY_SIDE),
        recommended_training=dict(TINY_TRAINING),
        extra={"seed": TINY_SEED},
    )


def tiny_vocab_rows(tokenizer_size: int) -> int:
    """Embedding rows for a tokenizer of ``tokenizer_size`` tokens (next multiple of 64)."""
    return -(-tokenizer_size // VOCAB_ROW_MULTIPLE) * VOCAB_ROW_MULTIPLE


def all_bases() -> list[BaseSpec]:
    return [real_base(), tiny_base()]
