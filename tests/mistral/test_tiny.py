"""The tiny Mistral 3 base: built offline, deterministic, loaded like a real base."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dlm_vl_mistral import tiny as tiny_build
from dlm_vl_mistral.bases import TINY_PARAMS, TINY_VOCAB
from dlm_vl_mistral.family import Mistral3Family, pin_template_date

from dlm.family import TINY_MARKER
from dlm.records import BaseSpec


def test_materialize_builds_once_with_a_marker(
    family: Mistral3Family, tiny: BaseSpec, tiny_dir: Path, session_home: Path
) -> None:
    assert tiny_dir == session_home / "bases" / "tiny-mistral3"
    marker = json.loads((tiny_dir / TINY_MARKER).read_text())
    assert marker == {"key": "tiny-mistral3", "family": "mistral3", "revision": tiny.revision}
    stamp = (tiny_dir / "model.safetensors").stat().st_mtime_ns
    assert family.materialize(tiny, session_home) == tiny_dir
    assert (tiny_dir / "model.safetensors").stat().st_mtime_ns == stamp
    assert not list(tiny_dir.glob("*.bin")) and not list(tiny_dir.glob("*.pt"))


def test_loads_through_the_auto_classes(
    family: Mistral3Family, tiny: BaseSpec, tiny_dir: Path
) -> None:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_dir)
    assert type(processor).__name__ == "PixtralProcessor"
    assert type(processor.image_processor).__name__ == "PixtralImageProcessor"
    assert (processor.patch_size, processor.spatial_merge_size) == (14, 2)
    model = AutoModelForImageTextToText.from_pretrained(tiny_dir)
    assert type(model).__name__ == "Mistral3ForConditionalGeneration"
    assert model.lm_head.weight is not model.model.language_model.embed_tokens.weight
    loaded = family.load_model(tiny, tiny_dir, torch.float32, "cpu")
    assert type(loaded) is type(model)

    def count(module: Any) -> int:
        return sum(p.numel() for p in module.parameters())

    vision = count(model.model.vision_tower) + count(model.model.multi_modal_projector)
    language = count(model.model.language_model) + count(model.lm_head)
    assert (count(model), vision, language) == (
        TINY_PARAMS.total,
        TINY_PARAMS.vision,
        TINY_PARAMS.language,
    )
    assert tiny.params == TINY_PARAMS


def test_tokenizer_has_mistral_layout(processor: Any) -> None:
    tok = processor.tokenizer
    for position, token in enumerate(tiny_build.SPECIAL_TOKENS):
        assert tok.convert_tokens_to_ids(token) == position
    assert tok.convert_tokens_to_ids("[IMG]") == 10  # the real image_token_index
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<pad>")
    assert len(tok) <= TINY_VOCAB
    # a plain encode starts with <s>, as the real tokenizer's does
    assert tok("a red circle")["input_ids"][0] == tok.bos_token_id
    # control tokens are atomic and dropped when decoding for the user
    ids = tok("[INST]hi[/INST]", add_special_tokens=False)["input_ids"]
    assert ids[0] == 3 and ids[-1] == 4
    assert tok.decode(ids, skip_special_tokens=True) == "hi"


def test_tokenizer_is_a_byte_level_bpe_with_merges(tiny: BaseSpec, tiny_dir: Path) -> None:
    data = json.loads((tiny_dir / "tokenizer.json").read_text())
    assert data["model"]["type"] == "BPE"
    assert len(data["model"]["merges"]) > 100
    kinds = [p["type"] for p in data["pre_tokenizer"]["pretokenizers"]]
    assert kinds == ["Split", "ByteLevel"]
    # trained with the split the base declares to llama.cpp
    assert tiny.export_hints.pretokenizer is not None
    assert data["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] == (
        tiny.export_hints.pretokenizer.split_pattern
    )


def test_round_trips_unicode_text(processor: Any) -> None:
    tok = processor.tokenizer
    text = "Zoë's café — 24°C, naïve 🙂"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text


def test_ships_the_real_chat_template(processor: Any, tiny_dir: Path) -> None:
    # the base ships the published template (dated when it renders); the
    # family's processor pins that date (see test_collate)
    template = tiny_build.chat_template()
    assert "[SYSTEM_PROMPT]" in template and "strftime_now" in template
    assert (tiny_dir / "chat_template.jinja").read_text() == template
    assert processor.chat_template == pin_template_date(template) != template


def test_generation_config_stops_at_eos(tiny_dir: Path) -> None:
    data = json.loads((tiny_dir / "generation_config.json").read_text())
    assert (data["bos_token_id"], data["eos_token_id"], data["pad_token_id"]) == (1, 2, 11)
