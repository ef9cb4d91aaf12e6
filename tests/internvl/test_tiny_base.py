"""The InternVL plugin's registry rows, the real bases' configs, and the offline tiny base."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.internvl.conftest import TinyInternVL

PLUGIN_SRC = Path(__file__).resolve().parents[2] / "dlm-vl-internvl" / "src" / "dlm_vl_internvl"
ALLOWED_CORE = {"dlm", "dlm.hookspecs", "dlm.records", "dlm.family"}
KEYS = ("internvl3-2b", "internvl2-2b", "tiny-internvl")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ the plugin


def test_plugin_registers_the_family_and_its_bases() -> None:
    from dlm.plugins import get_registry

    registry = get_registry()
    info = next(p for p in registry.plugins if p.name == "internvl")
    assert info.error is None
    assert info.distribution == "dlm-vl-internvl"
    assert info.hooks == ["register_bases", "register_families"]
    for key in KEYS:
        base = registry.base(key)
        assert base.family == "internvl"
        assert base.architecture == "InternVLForConditionalGeneration"
        assert registry.family_for(base).name == "internvl"
        assert registry.provider[f"base:{key}"] == "internvl"


def test_no_module_asks_for_remote_code() -> None:
    for module in PLUGIN_SRC.glob("*.py"):
        assert "trust_remote_code=True" not in module.read_text(), module.name


def test_dlm_plugins_lists_the_plugin_and_its_bases() -> None:
    from tests.conftest import run_dlm

    result = run_dlm("plugins", "--json")
    assert result.returncode == 0, result.stderr
    row = {row["name"]: row for row in json.loads(result.stdout)}["internvl"]
    assert row["error"] is None
    assert set(row["provides"]) == {f"base:{k}" for k in KEYS} | {"family:internvl"}


# ------------------------------------------------------------------ real bases


def test_real_bases_pin_their_original_checkpoints() -> None:
    from dlm_vl_internvl.bases import internvl2_base, internvl3_base

    v3, v2 = internvl3_base(), internvl2_base()
    assert (v3.hub_id, v3.revision) == (
        "OpenGVLab/InternVL3-2B",
        "899155015275a9b7338c7f4677e19c784e0e5a21",
    )
    assert (v2.hub_id, v2.revision) == (
        "OpenGVLab/InternVL2-2B",
        "e4f6747bd20f139e637642c6a058c6bd00b36919",
    )
    assert (v3.license, v2.license) == ("Apache-2.0", "MIT")
    for base in (v3, v2):
        assert base.image.image_token == "<IMG_CONTEXT>"
        assert (base.image.width, base.image.height) == (448, 448)
        assert base.image.tokens_per_image == 256
        assert (base.image.resize, base.image.max_tiles) == ("tiles", 12)
        assert base.image.max_image_tokens() == 13 * 256  # 12 tiles + thumbnail
        assert base.vision.patches_per_image == 1025  # 32 x 32 patches + CLS
        assert (base.vision.num_layers, base.vision.hidden_size) == (24, 1024)
        assert base.image_settings == {
            "size": {"height": 448, "width": 448},
            "min_patches": 1,
            "max_patches": 12,
        }
        assert not base.gated and base.redistributable and not base.tiny
    assert (v3.text.num_layers, v3.text.hidden_size, v3.text.num_heads, v3.text.num_kv_heads) == (
        28,
        1536,
        12,
        2,
    )
    assert (v3.text.intermediate_size, v3.text.vocab_size) == (8960, 151674)
    assert (v2.text.num_layers, v2.text.hidden_size, v2.text.num_heads, v2.text.num_kv_heads) == (
        24,
        2048,
        16,
        8,
    )
    assert (v2.text.intermediate_size, v2.text.vocab_size) == (8192, 92553)


@pytest.mark.parametrize("key", ["internvl3-2b", "internvl2-2b"])
def test_real_configs_map_to_native_models_with_the_registered_sizes(key: str) -> None:
    import torch
    from dlm_vl_internvl.bases import IMAGE_TOKEN_IDS, original_config
    from dlm_vl_internvl.convert import build_native_config
    from transformers import InternVLForConditionalGeneration

    from dlm.plugins import get_registry

    base = get_registry().base(key)
    config = build_native_config(original_config(key), IMAGE_TOKEN_IDS[key])
    expected_lm = {"internvl3-2b": "Qwen2Model", "internvl2-2b": "LlamaModel"}[key]
    with torch.device("meta"):
        model = InternVLForConditionalGeneration(config)
    assert type(model.model.language_model).__name__ == expected_lm
    assert config.image_seq_length == base.image.tokens_per_image
    assert config.text_config.vocab_size == base.text.vocab_size
    total = sum(p.numel() for p in model.parameters())
    vision = sum(
        p.numel()
        for n, p in model.named_parameters()
        if ".vision_tower." in n or ".multi_modal_projector." in n
    )
    assert base.params.total == total
    assert base.params.vision == vision
    assert base.params.language == total - vision
    assert model.lm_head.weight is not model.model.language_model.embed_tokens.weight


def test_a_real_base_offline_fails_with_a_clear_message(tmp_path: Path) -> None:
    from dlm.errors import DlmError
    from dlm.plugins import get_registry

    registry = get_registry()
    base = registry.base("internvl3-2b")
    with pytest.raises(DlmError, match="OpenGVLab/InternVL3-2B") as info:
        registry.family_for(base).materialize(base, tmp_path)
    assert info.value.hint
    assert not (tmp_path / "bases" / "internvl3-2b").exists()


def test_materialize_converts_once_and_caches(tmp_path: Path) -> None:
    """A converted base appears whole, with its marker; a second call neither downloads nor
    converts; a stale conversion is redone."""
    import attrs
    from dlm_vl_internvl.bases import internvl2_base
    from dlm_vl_internvl.materialize import MARKER, materialize_converted

    from tests.internvl import original as orig

    source = tmp_path / "hub-snapshot"
    orig.write_original_checkpoint(source, "internlm2", seed=3)
    base = attrs.evolve(internvl2_base(), hub_id="local/fake-internvl2")
    calls: list[int] = []

    def download() -> Path:
        calls.append(1)
        return source

    bases = tmp_path / "bases"
    target = materialize_converted(base, bases, download)
    assert target == bases / base.key and calls == [1]
    marker = json.loads((target / MARKER).read_text())
    assert marker["hub_id"] == "local/fake-internvl2" and marker["revision"] == base.revision
    assert (target / "model.safetensors").exists()
    assert sorted(p.name for p in bases.iterdir() if p.name.startswith(".internvl2-2b.")) == [
        ".internvl2-2b.lock"
    ]
    weights = _sha256(target / "model.safetensors")
    assert materialize_converted(base, bases, download) == target and calls == [1]
    newer = attrs.evolve(base, revision="0" * 40)
    materialize_converted(newer, bases, download)
    assert calls == [1, 1]
    assert json.loads((target / MARKER).read_text())["revision"] == "0" * 40
    assert _sha256(target / "model.safetensors") == weights  # same source, same bytes


def test_a_failed_conversion_leaves_nothing_behind(tmp_path: Path) -> None:
    import attrs
    from dlm_vl_internvl.bases import internvl3_base
    from dlm_vl_internvl.materialize import materialize_converted

    from tests.internvl import original as orig

    source = tmp_path / "hub-snapshot"
    config, _ = orig.write_original_checkpoint(source, "qwen2", seed=3)
    (source / "config.json").write_text(json.dumps({**config, "ps_version": "v1"}))
    base = attrs.evolve(internvl3_base(), hub_id="local/broken")
    with pytest.raises(RuntimeError, match=r"cannot convert local/broken .*pixel shuffle v1"):
        materialize_converted(base, tmp_path / "bases", lambda: source)
    leftovers = [p.name for p in (tmp_path / "bases").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


# ------------------------------------------------------------------ tiny base


def test_tiny_base_builds_offline_and_loads_through_the_auto_classes(
    tiny_internvl: TinyInternVL, tiny_internvl_model
) -> None:
    from transformers import GotOcr2ImageProcessor, InternVLProcessor

    t = tiny_internvl
    assert t.base_dir == Path(t.base_dir).parent / "tiny-internvl"
    assert isinstance(t.processor, InternVLProcessor)
    assert isinstance(t.processor.image_processor, GotOcr2ImageProcessor)
    assert type(tiny_internvl_model).__name__ == "InternVLForConditionalGeneration"
    assert type(tiny_internvl_model.model.language_model).__name__ == "Qwen2Model"
    config = tiny_internvl_model.config
    assert config.text_config.hidden_size == t.base.text.hidden_size == 64
    assert config.text_config.num_hidden_layers == t.base.text.num_layers == 2
    assert config.vision_config.hidden_size == t.base.vision.hidden_size
    assert config.image_token_id == t.processor.tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    assert config.image_seq_length == t.processor.image_seq_length == t.base.image.tokens_per_image
    assert t.base.image.tokens_per_image == 4
    assert len(t.processor.tokenizer) <= config.text_config.vocab_size == t.base.text.vocab_size
    # a real BPE with merges (GGUF conversion needs them)
    tok = json.loads((t.base_dir / "tokenizer.json").read_text())
    assert tok["model"]["type"] == "BPE" and len(tok["model"]["merges"]) > 500
    assert not list(t.base_dir.glob("*.py"))
    assert json.loads((t.base_dir / "config.json").read_text())["model_type"] == "internvl"


def test_tiny_tokenizer_carries_internvl_tokens_and_template(tiny_internvl: TinyInternVL) -> None:
    tokenizer = tiny_internvl.processor.tokenizer
    for token in ("<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"):
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1, token
    assert tokenizer.context_image_token == "<IMG_CONTEXT>"
    assert tokenizer.video_token == "<video>"
    assert tokenizer.eos_token == "<|im_end|>"
    template = tiny_internvl.processor.chat_template
    assert "<IMG_CONTEXT>" in template and "书生·万象" in template
    # the default system message is a handful of tokens, not hundreds of bytes
    messages = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    text = tiny_internvl.processor.apply_chat_template(messages, tokenize=False)
    assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) < 40


def test_tiny_base_is_reused_not_rebuilt(tiny_internvl: TinyInternVL) -> None:
    t = tiny_internvl
    stamp = (t.base_dir / "model.safetensors").stat().st_mtime_ns
    assert t.family.materialize(t.base, t.base_dir.parent.parent) == t.base_dir
    assert (t.base_dir / "model.safetensors").stat().st_mtime_ns == stamp


def test_lora_targets_only_the_language_model(
    tiny_internvl: TinyInternVL, tiny_internvl_model
) -> None:
    import re

    pattern = re.compile(tiny_internvl.family.lora_target_modules)
    linear = [
        name
        for name, module in tiny_internvl_model.named_modules()
        if type(module).__name__ == "Linear"
    ]
    hits = [name for name in linear if pattern.fullmatch(name)]
    assert hits and all(".language_model." in name for name in hits)
    # every attention and MLP projection of every LM layer
    assert len(hits) == 7 * tiny_internvl.base.text.num_layers
    assert not any("vision_tower" in n or "multi_modal_projector" in n for n in hits)


def test_tiny_param_counts_match_the_built_model(
    tiny_internvl: TinyInternVL, tiny_internvl_model: object
) -> None:
    model: Any = tiny_internvl_model
    total = sum(p.numel() for p in model.parameters())
    vision = sum(
        p.numel()
        for n, p in model.named_parameters()
        if "vision_tower" in n or "multi_modal_projector" in n
    )
    base = tiny_internvl.base
    assert (base.params.total, base.params.vision, base.params.language) == (
        total,
        vision,
        total - vision,
    )


def test_bases_declare_how_llama_cpp_converts_them() -> None:
    from dlm_vl_internvl.bases import internvl2_base, internvl3_base, tiny_base
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    lm = {"internvl3-2b": "Qwen2ForCausalLM", "internvl2-2b": "LlamaForCausalLM"}
    for base in (internvl3_base(), internvl2_base(), tiny_base()):
        hints = base.export_hints
        assert hints.text_architecture == lm.get(base.key, "Qwen2ForCausalLM")
        assert hints.mmproj_architecture == "InternVisionModel"
        assert hints.write_architectures  # the native config names neither half
        assert dict(hints.mmproj_renames) == {
            "vision_tower.": "model.vision_tower.",
            "multi_modal_projector.": "model.multi_modal_projector.",
        }
        if base.key == "internvl2-2b":  # InternLM2's SentencePiece: no byte-level split
            assert hints.pretokenizer is None
        else:
            assert hints.pretokenizer is not None
            assert hints.pretokenizer.split_pattern == PRETOKENIZE_REGEX
