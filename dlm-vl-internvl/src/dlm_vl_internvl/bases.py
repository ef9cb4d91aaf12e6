"""The InternVL registry rows: InternVL3-2B, InternVL2-2B and the offline tiny base.

The real rows carry the ORIGINAL checkpoints' ``config.json`` (remote-code
``InternVLChatModel`` layout, shipped as data in this package so planning
never needs a download); :mod:`dlm_vl_internvl.convert` maps it to the
native ``InternVLConfig`` the converted base is saved with. Parameter counts
are those of ``InternVLForConditionalGeneration`` built from the mapped
configs (a test rebuilds them on the meta device and compares).

The config values were written from the published checkpoints' configs
without network access here; the ones most worth re-checking against the
pinned revisions are InternVL3-2B's ``tie_word_embeddings`` (false: it
ships its own ``lm_head``) and both ``rope_scaling`` entries (dynamic NTK,
factor 2, which only acts beyond 32768 positions).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from dlm.kit import QWEN2_SPLIT_PATTERN, TINY_TRAINING, text_config, vision_config
from dlm.records import (
    BaseSpec,
    ExportHints,
    ImageGeometry,
    ParamCounts,
    Pretokenizer,
)
from dlm_vl_internvl.templates import IMG_CONTEXT

FAMILY = "internvl"
ARCHITECTURE = "InternVLForConditionalGeneration"
IMAGE_TOKEN = IMG_CONTEXT

INTERNVL3_KEY = "internvl3-2b"
INTERNVL2_KEY = "internvl2-2b"
TINY_KEY = "tiny-internvl"

#: ``<IMG_CONTEXT>`` in each original tokenizer (after the LM's own specials).
IMAGE_TOKEN_IDS = {INTERNVL3_KEY: 151667, INTERNVL2_KEY: 92546}

# ------------------------------------------------------------------ tiny base

#: Tiny base recipe version: bump when the build (tokenizer corpus, sizes,
#: seed, processor settings) changes, so built copies are rebuilt.
TINY_REVISION = "local-v3"
TINY_SEED = 4321
TINY_TILE = 56  # 4 x 4 patches of 14 px, pixel-shuffled to 2 x 2 = 4 LM tokens per tile
TINY_MAX_TILES = 4  # a square figure becomes 2 x 2 tiles + the thumbnail = 5 tiles
TINY_TEMPLATE = "internvl2_5"  # InternVL3's conversation template
#: BPE vocabulary the tiny tokenizer is trained to (before its specials);
#: the embedding rows are padded to a multiple of 64.
TINY_BPE_VOCAB = 2048
TINY_MODEL_VOCAB = 2112

#: The tiny model's configuration (``InternVLConfig`` keyword arguments,
#: minus the token ids, which the tokenizer decides at build time). The
#: language model is Qwen2, like InternVL3's.
TINY_TEXT_CONFIG: dict[str, Any] = {
    "model_type": "qwen2",
    "hidden_size": 64,
    "intermediate_size": 176,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    # wider than the default 0.02: at hidden 64 the output rows would be so short
    # (norm ~0.16) that after the final RMSNorm no token's logit can stand far above
    # the other 2000 and an LM-only LoRA plateaus near uniform; at 0.3 (rows ~2.4,
    # like tiny-qwen2-vl's) the recall settings reach ~0.99 per answer token
    "initializer_range": 0.3,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    "vocab_size": TINY_MODEL_VOCAB,
    "tie_word_embeddings": False,
    "use_sliding_window": False,
}
TINY_VISION_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "num_hidden_layers": 4,  # llama.cpp's mmproj converter maps mlp1.3 by block index
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-6,
    "norm_type": "layer_norm",
    "image_size": TINY_TILE,
    "patch_size": 14,
    "attention_bias": True,
    "use_qk_norm": False,
    "use_absolute_position_embeddings": True,
    "use_mean_pooling": True,
    "layer_scale_init_value": 0.1,
}
TINY_DOWNSAMPLE = 0.5


def image_settings(tile: int, min_tiles: int, max_tiles: int) -> dict[str, Any]:
    """The processor settings saved with an adapter: tile size and tile bounds."""
    return {
        "size": {"height": tile, "width": tile},
        "min_patches": min_tiles,
        "max_patches": max_tiles,
    }


# ------------------------------------------------------------------ export hints

#: Qwen2's pre-tokenizer, which llama.cpp implements as ``qwen2``: the tokenizer of
#: InternVL3's Qwen2.5 LM and of the tiny base (retrained, so its hash is unknown).
QWEN2_PRETOKENIZER = Pretokenizer("qwen2", QWEN2_SPLIT_PATTERN, normalizer="NFC")


def export_hints(text_architecture: str, pretokenizer: Pretokenizer | None) -> ExportHints:
    """How llama.cpp converts a native InternVL base.

    The converter has no InternVLForConditionalGeneration: it converts the LM by
    its own architecture (Qwen2 for InternVL3 and the tiny base, Llama for
    InternVL2's converted InternLM2) and the mmproj as InternVisionModel. The
    native config names neither, so the exporter writes both in. InternVisionModel
    keeps only the native ``model.``-prefixed vision tensors (it learnt them from
    Intern-S1) and drops the bare names transformers saves, so they are renamed.
    """
    return ExportHints(
        text_architecture=text_architecture,
        mmproj_architecture="InternVisionModel",
        write_architectures=True,
        mmproj_renames=(
            ("vision_tower.", "model.vision_tower."),
            ("multi_modal_projector.", "model.multi_modal_projector."),
        ),
        pretokenizer=pretokenizer,
    )


# ------------------------------------------------------------------ real bases


@cache
def original_config(key: str) -> dict[str, Any]:
    """The original checkpoint's ``config.json`` at the pinned revision."""
    text = resources.files("dlm_vl_internvl").joinpath(f"data/{key}.config.json")
    return json.loads(text.read_text(encoding="utf-8"))


def _tiles_per_side(cfg: dict[str, Any]) -> int:
    return int(cfg["force_image_size"]) // int(cfg["vision_config"]["patch_size"])


def _real_base(
    key: str,
    *,
    hub_id: str,
    revision: str,
    license: str,
    license_url: str,
    params: ParamCounts,
    description: str,
    hints: ExportHints,
) -> BaseSpec:
    from dlm_vl_internvl.convert import tokens_per_tile

    cfg = original_config(key)
    llm, vision = cfg["llm_config"], cfg["vision_config"]
    tile = int(cfg["force_image_size"])
    max_tiles = int(cfg["max_dynamic_patch"]) if cfg.get("dynamic_image_size") else 1
    min_tiles = int(cfg.get("min_dynamic_patch", 1)) if cfg.get("dynamic_image_size") else 1
    return BaseSpec(
        key=key,
        family=FAMILY,
        hub_id=hub_id,
        revision=revision,
        architecture=ARCHITECTURE,
        license=license,
        license_url=license_url,
        image=ImageGeometry(
            width=tile,
            height=tile,
            tokens_per_image=tokens_per_tile(cfg),
            image_token=IMAGE_TOKEN,
            resize="tiles",
            max_tiles=max_tiles,
        ),
        text=text_config(llm),
        # patches of one tile plus the CLS token
        vision=vision_config(vision, _tiles_per_side(cfg) ** 2 + 1),
        params=params,
        context_length=llm["max_position_embeddings"],
        description=description,
        image_settings=image_settings(tile, min_tiles, max_tiles),
        export_hints=hints,
        extra={
            "original_config": cfg,
            "image_token_id": IMAGE_TOKEN_IDS[key],
            "template": cfg["template"],
            # materialize converts the remote-code checkpoint to the native layout
            "converted": True,
        },
    )


def internvl3_base() -> BaseSpec:
    return _real_base(
        INTERNVL3_KEY,
        hub_id="OpenGVLab/InternVL3-2B",
        revision="899155015275a9b7338c7f4677e19c784e0e5a21",
        license="Apache-2.0",
        license_url="https://huggingface.co/OpenGVLab/InternVL3-2B",
        # InternViT-300M-448px-V2.5 + mlp1 projector, Qwen2.5-1.5B with its own lm_head
        params=ParamCounts(total=2_088_957_440, vision=312_674_304, language=1_776_283_136),
        description=(
            "InternVL3 2B (InternViT-300M + Qwen2.5-1.5B), converted locally to the native "
            "layout; dynamic 448x448 tiles (up to 12 + thumbnail), 256 tokens per tile"
        ),
        hints=export_hints("Qwen2ForCausalLM", QWEN2_PRETOKENIZER),
    )


def internvl2_base() -> BaseSpec:
    return _real_base(
        INTERNVL2_KEY,
        hub_id="OpenGVLab/InternVL2-2B",
        revision="e4f6747bd20f139e637642c6a058c6bd00b36919",
        license="MIT",
        license_url="https://huggingface.co/OpenGVLab/InternVL2-2B",
        # InternViT-300M-448px + mlp1 projector, InternLM2-chat-1.8B (untied output)
        params=ParamCounts(total=2_205_754_368, vision=316_607_488, language=1_889_146_880),
        description=(
            "InternVL2 2B (InternViT-300M + InternLM2-chat-1.8B), converted locally to the "
            "native layout (packed wqkv split); dynamic 448x448 tiles, 256 tokens per tile"
        ),
        # InternLM2's tokenizer is SentencePiece, not a byte-level BPE: no pre-tokenizer
        hints=export_hints("LlamaForCausalLM", None),
    )


def tiny_base() -> BaseSpec:
    text, vision = TINY_TEXT_CONFIG, TINY_VISION_CONFIG
    side = TINY_TILE // vision["patch_size"]
    return BaseSpec(
        key=TINY_KEY,
        family=FAMILY,
        hub_id="local/tiny-internvl",
        revision=TINY_REVISION,
        architecture=ARCHITECTURE,
        license="Apache-2.0",
        image=ImageGeometry(
            width=TINY_TILE,
            height=TINY_TILE,
            tokens_per_image=int(side * side * TINY_DOWNSAMPLE**2),
            image_token=IMAGE_TOKEN,
            resize="tiles",
            max_tiles=TINY_MAX_TILES,
        ),
        text=text_config(text),
        vision=vision_config(vision, side * side + 1),
        # counted from the built model (tests check these against it)
        params=ParamCounts(total=557_440, vision=194_368, language=363_072),
        context_length=text["max_position_embeddings"],
        tiny=True,
        description=(
            "Offline toy InternVL (native layout, Qwen2 LM, random weights, local tokenizer): "
            "56x56 tiles, up to 4 + thumbnail, 4 tokens per tile"
        ),
        image_settings=image_settings(TINY_TILE, 1, TINY_MAX_TILES),
        recommended_training=dict(TINY_TRAINING),
        export_hints=export_hints("Qwen2ForCausalLM", QWEN2_PRETOKENIZER),
        extra={
            "seed": TINY_SEED,
            "template": TINY_TEMPLATE,
        },
    )


def all_bases() -> list[BaseSpec]:
    return [internvl3_base(), internvl2_base(), tiny_base()]
