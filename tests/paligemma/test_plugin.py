"""The PaliGemma plugin: its registration, its registry rows and what it imports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PLUGIN_SRC = Path(__file__).resolve().parents[2] / "dlm-vl-paligemma" / "src" / "dlm_vl_paligemma"
ALLOWED_CORE = {"dlm", "dlm.records", "dlm.family"}


def test_plugin_registers_family_and_both_bases() -> None:
    from dlm.plugins import get_registry

    registry = get_registry()
    info = next(p for p in registry.plugins if p.name == "paligemma")
    assert info.error is None
    assert info.distribution == "dlm-vl-paligemma"
    assert info.hooks == ["register_bases", "register_families"]
    for key in ("paligemma-3b-mix-224", "tiny-paligemma"):
        base = registry.base(key)
        assert base.family == "paligemma"
        assert registry.family_for(base).name == "paligemma"
        assert registry.provider[f"base:{key}"] == "paligemma"


def test_dlm_plugins_lists_the_plugin_and_its_bases() -> None:
    from tests.conftest import run_dlm

    result = run_dlm("plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    row = rows["paligemma"]
    assert row["error"] is None
    assert set(row["provides"]) == {
        "base:paligemma-3b-mix-224",
        "base:tiny-paligemma",
        "family:paligemma",
    }


def test_package_depends_on_dlm_core_only_among_dlm_packages() -> None:
    from importlib import metadata

    requires = metadata.requires("dlm-vl-paligemma") or []
    dlm_deps = {r.split(">")[0].split("=")[0].split("<")[0].strip() for r in requires}
    assert {d for d in dlm_deps if d.startswith("dlm")} == {"dlm-core"}


# ------------------------------------------------------------------ the real base


def test_real_base_row() -> None:
    from dlm_vl_paligemma.bases import real_base

    base = real_base()
    assert base.key == "paligemma-3b-mix-224"
    assert base.hub_id == "google/paligemma-3b-mix-224"
    assert base.revision == "d1d8734c9c3ad0ccfeea4afc270faa356c2ba515"
    assert base.architecture == "PaliGemmaForConditionalGeneration"
    assert base.gated and not base.redistributable and not base.tiny
    assert base.license_url == "https://ai.google.dev/gemma/terms"
    assert (base.image.width, base.image.height, base.image.resize) == (224, 224, "pinned")
    assert (base.image.tokens_per_image, base.image.image_token) == (256, "<image>")
    assert base.image.max_image_tokens() == 256
    text = base.text
    assert (text.num_layers, text.hidden_size, text.intermediate_size) == (18, 2048, 16384)
    assert (text.num_heads, text.num_kv_heads, text.vocab_size) == (8, 1, 257216)
    assert text.max_position == base.context_length == 8192
    vision = base.vision
    assert (vision.num_layers, vision.hidden_size, vision.intermediate_size) == (27, 1152, 4304)
    assert (vision.num_heads, vision.patches_per_image) == (16, 256)
    assert base.params.total == base.params.vision + base.params.language
    assert base.image_settings == {"size": {"height": 224, "width": 224}}
    assert base.text.head_dim == 256


def test_real_parameter_counts_match_the_architecture_built_from_the_config() -> None:
    """The shipped config builds the real model (on the meta device): same numbers as the row."""
    import torch
    from dlm_vl_paligemma.bases import real_base, real_config
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

    base = real_base()
    config = PaliGemmaConfig(**real_config())
    assert config.text_config.head_dim == 256
    assert config.text_config.max_position_embeddings == base.context_length
    assert config.image_token_id == 257152 < config.text_config.vocab_size
    assert config.text_config.num_image_tokens == base.image.tokens_per_image
    with torch.device("meta"):
        model = PaliGemmaForConditionalGeneration(config)
    seen: set[int] = set()
    vision = language = 0
    for name, param in model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        if "vision_tower" in name or "multi_modal_projector" in name:
            vision += param.numel()
        else:
            language += param.numel()
    assert (vision, language) == (base.params.vision, base.params.language)


def test_real_base_cannot_be_materialized_offline_and_says_how_to_fetch_it(
    tmp_path: Path,
) -> None:
    from dlm_vl_paligemma.bases import real_base
    from dlm_vl_paligemma.family import PaliGemmaFamily

    from dlm.errors import DlmError

    with pytest.raises(DlmError) as caught:
        PaliGemmaFamily().materialize(real_base(), tmp_path)
    message = str(caught.value) + (caught.value.hint or "")
    assert "google/paligemma-3b-mix-224" in message
    assert "d1d8734c9c3a" in message


def test_family_attributes() -> None:
    from dlm_vl_paligemma.family import PaliGemmaFamily

    family = PaliGemmaFamily()
    assert family.name == "paligemma"
    assert family.supports_text_only is False
    assert family.caption_prompt == "caption en"
    assert family.lora_target_modules == (  # type: ignore[arg-type]
        r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    )
