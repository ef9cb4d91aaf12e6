"""The offline tiny PaliGemma base: built locally, deterministic, the real classes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.paligemma.conftest import TinyPaliGemma


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_materialize_is_idempotent_and_marked(tiny_paligemma: TinyPaliGemma) -> None:
    from dlm.family import TINY_MARKER

    marker = json.loads((tiny_paligemma.base_dir / TINY_MARKER).read_text())
    assert marker == {"key": "tiny-paligemma", "family": "paligemma", "revision": "local-v1"}
    before = _sha256(tiny_paligemma.base_dir / "model.safetensors")
    again = tiny_paligemma.family.materialize(
        tiny_paligemma.base, tiny_paligemma.base_dir.parent.parent
    )
    assert again == tiny_paligemma.base_dir
    assert _sha256(again / "model.safetensors") == before


def test_loads_through_the_auto_classes_as_the_real_classes(tiny_paligemma: TinyPaliGemma) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_paligemma.base_dir)
    assert type(processor).__name__ == "PaliGemmaProcessor"
    assert type(processor.tokenizer).__name__ == "GemmaTokenizer"
    assert type(processor.image_processor).__name__ == "SiglipImageProcessor"
    model = AutoModelForImageTextToText.from_pretrained(tiny_paligemma.base_dir)
    assert type(model).__name__ == "PaliGemmaForConditionalGeneration"
    assert model.config.text_config.model_type == "gemma"
    assert model.config.vision_config.model_type == "siglip_vision_model"


def test_tokenizer_has_gemma_and_paligemma_special_tokens(tiny_paligemma: TinyPaliGemma) -> None:
    tokenizer = tiny_paligemma.processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])
    assert ids == [0, 1, 2, 3, 4]  # Gemma's ids
    assert (tokenizer.eos_token, tokenizer.bos_token, tokenizer.pad_token) == (
        "<eos>",
        "<bos>",
        "<pad>",
    )
    # the real layout: <locNNNN>, <segNNN>, then <image> last
    loc0, seg127, image = tokenizer.convert_tokens_to_ids(["<loc0000>", "<seg127>", "<image>"])
    assert seg127 == loc0 + 1151 and image == seg127 + 1 == len(tokenizer) - 1
    assert tiny_paligemma.processor.image_token == "<image>"
    assert tiny_paligemma.processor.image_token_id == image


def test_tokenizer_is_a_bpe_with_merges_and_byte_fallback(tiny_paligemma: TinyPaliGemma) -> None:
    data = json.loads((tiny_paligemma.base_dir / "tokenizer.json").read_text())
    assert data["model"]["type"] == "BPE" and data["model"]["byte_fallback"] is True
    assert len(data["model"]["merges"]) > 500
    tokenizer = tiny_paligemma.processor.tokenizer
    for text in ("the cache layer", "Which component is this?", "naïve café ☕ 日本"):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    # words of the corpus are whole pieces; the prefix separator is its own token
    pieces = tokenizer.convert_ids_to_tokens(
        tokenizer("answer en Which component is this?\n", add_special_tokens=False)["input_ids"]
    )
    assert pieces[-1] == "\n" and "▁component" in pieces


def test_model_matches_its_registry_row(
    tiny_paligemma: TinyPaliGemma, tiny_paligemma_model: object
) -> None:
    base = tiny_paligemma.base
    model = tiny_paligemma_model
    config = model.config  # type: ignore[attr-defined]
    tokenizer = tiny_paligemma.processor.tokenizer
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<image>")
    assert len(tokenizer) <= config.text_config.vocab_size == base.text.vocab_size
    assert config.text_config.vocab_size % 64 == 0
    assert config.text_config.num_hidden_layers == base.text.num_layers
    assert config.text_config.hidden_size == base.text.hidden_size
    assert config.text_config.num_key_value_heads == base.text.num_kv_heads == 1
    assert config.vision_config.image_size == base.image.width == base.image.height == 56
    assert config.text_config.num_image_tokens == base.image.tokens_per_image == 16
    assert tiny_paligemma.processor.image_seq_length == 16
    seen: set[int] = set()
    vision = language = 0
    for name, param in model.named_parameters():  # type: ignore[attr-defined]
        if id(param) in seen:
            continue
        seen.add(id(param))
        if "vision_tower" in name or "multi_modal_projector" in name:
            vision += param.numel()
        else:
            language += param.numel()
    assert (vision, language) == (base.params.vision, base.params.language)
    assert base.params.total == vision + language


def test_processor_resolution_is_pinned_and_saved(tiny_paligemma: TinyPaliGemma) -> None:
    family, base, processor = tiny_paligemma.family, tiny_paligemma.base, tiny_paligemma.processor
    settings = family.bind(base, processor).image_settings_to_save()
    assert settings == {"size": {"height": 56, "width": 56}}
    reloaded = family.load_processor(base, tiny_paligemma.base_dir, settings)
    assert reloaded.image_processor.size.height == reloaded.image_processor.size.width == 56
