"""The Qwen2-VL registry rows: the real 2B instruct base and the offline tiny base.

The real row's numbers come from its ``config.json`` (shipped as data in
this package, so planning never needs a download); parameter counts are
those of ``Qwen2VLForConditionalGeneration`` built from that config. The
tiny row is the same architecture at toy size (see :mod:`dlm_vl_qwen2.tiny`).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from dlm.family import FIT_KEEP_ASPECT, FIT_KEY
from dlm.kit import QWEN2_SPLIT_PATTERN, TINY_TRAINING, text_config, vision_config
from dlm.records import (
    BaseSpec,
    ExportHints,
    ImageGeometry,
    ParamCounts,
    Pretokenizer,
    VisionConfig,
)

FAMILY = "qwen2-vl"
ARCHITECTURE = "Qwen2VLForConditionalGeneration"
IMAGE_TOKEN = "<|image_pad|>"

REAL_KEY = "qwen2-vl-2b-instruct"
TINY_KEY = "tiny-qwen2-vl"

REAL_SIDE = 672  # pinned: 48 x 48 patches of 14 px, merged 2 x 2 -> 576 LM tokens
TINY_SIDE = 112  # 8 x 8 patches -> 16 LM tokens; a multiple of 28 (patch x merge)

#: Tiny base recipe version: bump when the build (tokenizer corpus, sizes,
#: seed, processor settings) changes, so built copies are rebuilt.
TINY_REVISION = "local-v4"
TINY_SEED = 1234
#: Factor on the untied LM head's init, std 0.02 -> 0.32 (see
#: :func:`dlm_vl_qwen2.tiny.build_model`).
TINY_HEAD_SCALE = 16.0
#: BPE vocabulary the tiny tokenizer is trained to (before the 14 specials);
#: the model's embedding rows are padded to a multiple of 64 like the real one.
TINY_BPE_VOCAB = 2048
TINY_MODEL_VOCAB = 2112

#: The tiny model's configuration (Qwen2VLConfig keyword arguments, minus
#: the token ids, which the tokenizer decides at build time).
TINY_TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 176,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,  # the real value; llama.cpp ignores it, so keep it tiny
    "rope_theta": 1000000.0,
    # head_dim 16 -> 8 rotary pairs split over (time, height, width)
    "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
    "vocab_size": TINY_MODEL_VOCAB,
    "tie_word_embeddings": False,  # see TINY_HEAD_SCALE
    "use_sliding_window": False,
}
TINY_VISION_CONFIG: dict[str, Any] = {
    "depth": 3,  # the GGUF mmproj converter needs at least 3 blocks
    "embed_dim": 64,
    "mlp_ratio": 4,
    "num_heads": 4,
    "in_channels": 3,
    "hidden_size": 64,  # merger output = the LM's hidden size
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}


#: Pixels per LM-token side: 14-px patches merged 2 x 2. The processor takes any
#: sides that are multiples of it, so images keep their aspect ratio.
TOKEN_SIDE = 28
# Qwen2-VL's own lower bound (4 tokens); a prepared image is far above it.
MIN_PIXELS = 56 * 56


#: llama.cpp registers Qwen2VLForConditionalGeneration for both halves, so only the
#: pre-tokenizer is declared (Qwen2's split, which llama.cpp implements as ``qwen2``):
#: the tiny tokenizer is retrained, its hash unknown.
EXPORT_HINTS = ExportHints(
    pretokenizer=Pretokenizer("qwen2", QWEN2_SPLIT_PATTERN, normalizer="NFC"),
)


def _pixels(side: int) -> dict[str, Any]:
    # Images keep their aspect ratio within side x side pixels (BoundBase.prepare_image
    # sizes them, sides multiples of 28, so the processor never rescales them).
    # Measured on tiny-qwen2-vl with 2:1 figures (issue 20): recall 4/4 as with the
    # stretch; GGUF teacher-forced gap 0.215/0.176 (seeds 0/1) vs 0.169/0.178 stretched.
    return {
        "size": {"shortest_edge": MIN_PIXELS, "longest_edge": side * side},
        FIT_KEY: FIT_KEEP_ASPECT,
    }


@cache
def real_config() -> dict[str, Any]:
    """``config.json`` of Qwen/Qwen2-VL-2B-Instruct at the pinned revision."""
    text = resources.files("dlm_vl_qwen2").joinpath("data/qwen2-vl-2b-instruct.config.json")
    return json.loads(text.read_text(encoding="utf-8"))


def _patches(side: int, patch: int) -> int:
    return (side // patch) ** 2


def _vision(vision: dict[str, Any], patches: int) -> VisionConfig:
    # Qwen2-VL's tower names its sizes depth / embed_dim / mlp_ratio / num_heads
    return vision_config(
        vision,
        patches,
        num_layers=vision["depth"],
        hidden_size=vision["embed_dim"],
        intermediate_size=vision["embed_dim"] * vision["mlp_ratio"],
        num_heads=vision["num_heads"],
    )


def real_base() -> BaseSpec:
    cfg = real_config()
    vision = cfg["vision_config"]
    patches = _patches(REAL_SIDE, vision["patch_size"])
    return BaseSpec(
        key=REAL_KEY,
        family=FAMILY,
        hub_id="Qwen/Qwen2-VL-2B-Instruct",
        revision="895c3a49bc3fa70a340399125c650a463535e71c",
        architecture=ARCHITECTURE,
        license="Apache-2.0",
        license_url="https://huggingface.co/Qwen/Qwen2-VL-2B-Instruct/blob/main/LICENSE",
        image=ImageGeometry(
            width=REAL_SIDE,
            height=REAL_SIDE,
            tokens_per_image=patches // vision["spatial_merge_size"] ** 2,
            image_token=IMAGE_TOKEN,
            token_side=TOKEN_SIDE,
        ),
        text=text_config(cfg),
        vision=_vision(vision, patches),
        # Qwen2VLForConditionalGeneration built from the config above
        # (embeddings tied): vision = ViT blocks + patch embed + merger.
        params=ParamCounts(total=2_208_985_600, vision=665_271_296, language=1_543_714_304),
        context_length=cfg["max_position_embeddings"],
        description="Qwen2-VL 2B Instruct, images fit in 672x672 keeping their aspect (<= 576 tokens)",
        image_settings=_pixels(REAL_SIDE),
        export_hints=EXPORT_HINTS,
        extra={"config": cfg},
    )


def tiny_base() -> BaseSpec:
    text, vision = TINY_TEXT_CONFIG, TINY_VISION_CONFIG
    patches = _patches(TINY_SIDE, vision["patch_size"])
    return BaseSpec(
        key=TINY_KEY,
        family=FAMILY,
        hub_id="local/tiny-qwen2-vl",
        revision=TINY_REVISION,
        architecture=ARCHITECTURE,
        license="Apache-2.0",
        image=ImageGeometry(
            width=TINY_SIDE,
            height=TINY_SIDE,
            tokens_per_image=patches // vision["spatial_merge_size"] ** 2,
            image_token=IMAGE_TOKEN,
            token_side=TOKEN_SIDE,
        ),
        text=text_config(text),
        vision=_vision(vision, patches),
        # counted on the built model (tests check them)
        params=ParamCounts(total=670_656, vision=307_584, language=363_072),
        context_length=text["max_position_embeddings"],
        tiny=True,
        description="Offline toy Qwen2-VL (random weights, local tokenizer), for tests and demos",
        image_settings=_pixels(TINY_SIDE),
        recommended_training=dict(TINY_TRAINING),
        export_hints=EXPORT_HINTS,
        extra={"seed": TINY_SEED},
    )


def all_bases() -> list[BaseSpec]:
    return [real_base(), tiny_base()]
