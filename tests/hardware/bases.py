"""Real bases as BaseSpec fixtures, from their shipped ``config.json`` values.

Built here (not taken from the family plugins) so the planner's tests pin
the hyperparameters they were calibrated with. Parameter counts are the
published totals; the vision part includes the projector.
"""

from __future__ import annotations

from dlm.records import BaseSpec, ImageGeometry, ParamCounts, TextConfig, VisionConfig

QWEN2_VL_2B = BaseSpec(
    key="qwen2-vl-2b-instruct",
    family="qwen2-vl",
    hub_id="Qwen/Qwen2-VL-2B-Instruct",
    revision="895c3a49bc3fa70a340399125c650a463535e71c",
    architecture="Qwen2VLForConditionalGeneration",
    license="Apache-2.0",
    # 672² pinned: 48x48 patches of 14 px, merged 2x2 into 576 LM tokens
    image=ImageGeometry(672, 672, 576, "<|image_pad|>"),
    text=TextConfig(
        num_layers=28,
        hidden_size=1536,
        intermediate_size=8960,
        num_heads=12,
        num_kv_heads=2,
        vocab_size=151936,
        max_position=32768,
    ),
    vision=VisionConfig(
        num_layers=32,
        hidden_size=1280,
        intermediate_size=5120,
        num_heads=16,
        patches_per_image=2304,
    ),
    params=ParamCounts(total=2_208_985_600, vision=665_000_000, language=1_543_714_304),
    context_length=32768,
)

PALIGEMMA_3B_224 = BaseSpec(
    key="paligemma-3b-mix-224",
    family="paligemma",
    hub_id="google/paligemma-3b-mix-224",
    revision="d1d8734c9c3ad0ccfeea4afc270faa356c2ba515",
    architecture="PaliGemmaForConditionalGeneration",
    license="gemma",
    image=ImageGeometry(224, 224, 256, "<image>"),
    # Gemma-2B: 8 heads of 256, one KV head (multi-query attention)
    text=TextConfig(
        num_layers=18,
        hidden_size=2048,
        intermediate_size=16384,
        num_heads=8,
        num_kv_heads=1,
        vocab_size=257216,
        max_position=8192,
    ),
    # SigLIP-So400m/14 at 224²: 16x16 patches
    vision=VisionConfig(
        num_layers=27, hidden_size=1152, intermediate_size=4304, num_heads=16, patches_per_image=256
    ),
    params=ParamCounts(total=2_923_466_480, vision=416_866_032, language=2_506_600_448),
    context_length=8192,
    gated=True,
    redistributable=False,
)

MISTRAL_SMALL_31_24B = BaseSpec(
    key="mistral-small-3.1-24b-instruct",
    family="mistral3",
    hub_id="mistralai/Mistral-Small-3.1-24B-Instruct-2503",
    revision="68faf511d618ef198fef186659617cfd2eb8e33a",
    architecture="Mistral3ForConditionalGeneration",
    license="Apache-2.0",
    # 1540² pinned: 110x110 patches of 14 px, merged 2x2 into 55x55 = 3025 [IMG] tokens
    image=ImageGeometry(1540, 1540, 3025, "[IMG]"),
    text=TextConfig(
        num_layers=40,
        hidden_size=5120,
        intermediate_size=32768,
        num_heads=32,
        num_kv_heads=8,
        vocab_size=131072,
        max_position=131072,
        head_dim=128,  # q is 32 heads of 128 = 4096, narrower than the 5120 hidden size
    ),
    vision=VisionConfig(
        num_layers=24,
        hidden_size=1024,
        intermediate_size=4096,
        num_heads=16,
        patches_per_image=12100,
        block_mask=True,  # transformers' Pixtral: one dense mask over a batch's images
    ),
    params=ParamCounts(total=24_011_361_280, vision=439_279_616, language=23_572_081_664),
    context_length=131072,
    cuda_first=True,
)

INTERNVL3_2B = BaseSpec(
    key="internvl3-2b",
    family="internvl",
    hub_id="OpenGVLab/InternVL3-2B",
    revision="899155015275a9b7338c7f4677e19c784e0e5a21",
    architecture="InternVLForConditionalGeneration",
    license="Apache-2.0",
    # 448² tiles, pixel shuffle 0.5: 1024 patches -> 256 tokens per tile; up to 12 tiles + thumbnail
    image=ImageGeometry(448, 448, 256, "<IMG_CONTEXT>", resize="tiles", max_tiles=12),
    text=TextConfig(
        num_layers=28,
        hidden_size=1536,
        intermediate_size=8960,
        num_heads=12,
        num_kv_heads=2,
        vocab_size=151674,
        max_position=32768,
    ),
    # InternViT-300M: 1024 patches + the class token per tile
    vision=VisionConfig(
        num_layers=24,
        hidden_size=1024,
        intermediate_size=4096,
        num_heads=16,
        patches_per_image=1025,
    ),
    params=ParamCounts(total=2_088_957_952, vision=312_778_752, language=1_776_179_200),
    context_length=32768,
)

REAL_BASES = (QWEN2_VL_2B, PALIGEMMA_3B_224, MISTRAL_SMALL_31_24B, INTERNVL3_2B)
