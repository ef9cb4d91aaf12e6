"""The Qwen2-VL plugin's registry rows and the offline tiny base it builds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.qwen2.conftest import TinyQwen2

PLUGIN_SRC = Path(__file__).resolve().parents[2] / "dlm-vl-qwen2" / "src" / "dlm_vl_qwen2"
ALLOWED_CORE = {"dlm", "dlm.hookspecs", "dlm.records", "dlm.family"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ the plugin


def test_plugin_registers_family_and_both_bases() -> None:
    from dlm.plugins import get_registry

    registry = get_registry()
    info = next(p for p in registry.plugins if p.name == "qwen2")
    assert info.error is None
    assert info.distribution == "dlm-vl-qwen2"
    assert info.hooks == ["register_bases", "register_families"]
    for key in ("qwen2-vl-2b-instruct", "tiny-qwen2-vl"):
        base = registry.base(key)
        assert base.family == "qwen2-vl"
        assert registry.family_for(base).name == "qwen2-vl"
        assert registry.provider[f"base:{key}"] == "qwen2"


def test_dlm_plugins_lists_the_plugin_and_its_bases() -> None:
    from tests.conftest import run_dlm

    result = run_dlm("plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    row = rows["qwen2"]
    assert row["error"] is None
    assert row["hooks"] == ["register_bases", "register_families"]
    assert set(row["provides"]) == {
        "base:qwen2-vl-2b-instruct",
        "base:tiny-qwen2-vl",
        "family:qwen2-vl",
    }


# ------------------------------------------------------------------ the real row


def test_real_base_row_matches_its_pinned_config() -> None:
    from dlm_vl_qwen2.bases import real_base

    base = real_base()
    assert base.hub_id == "Qwen/Qwen2-VL-2B-Instruct"
    assert base.revision == "895c3a49bc3fa70a340399125c650a463535e71c"
    assert base.architecture == "Qwen2VLForConditionalGeneration"
    assert base.license == "Apache-2.0" and not base.gated and not base.tiny
    assert (base.image.width, base.image.height) == (672, 672)
    assert base.image.tokens_per_image == 576
    assert base.image.image_token == "<|image_pad|>"
    assert base.text.num_layers == 28
    assert base.text.hidden_size == 1536
    assert base.text.intermediate_size == 8960
    assert (base.text.num_heads, base.text.num_kv_heads) == (12, 2)
    assert base.text.vocab_size == 151936
    assert base.text.max_position == 32768 == base.context_length
    assert base.vision.num_layers == 32
    assert base.vision.hidden_size == 1280
    assert base.vision.intermediate_size == 5120
    assert base.vision.num_heads == 16
    assert base.vision.patches_per_image == 2304
    assert base.image_settings == {
        "size": {"shortest_edge": 56 * 56, "longest_edge": 672 * 672},
        "fit": "keep-aspect",
    }
    assert base.image.token_side == 28


def test_real_base_parameter_counts_are_those_of_its_config() -> None:
    import torch
    from dlm_vl_qwen2.bases import real_base, real_config
    from transformers import AutoConfig, AutoModelForImageTextToText

    base = real_base()
    config = AutoConfig.for_model(**real_config())
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    assert type(model).__name__ == base.architecture
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for p in model.model.visual.parameters())
    assert (total, vision, total - vision) == (
        base.params.total,
        base.params.vision,
        base.params.language,
    )
    assert round(total / 1e9, 2) == 2.21


# ------------------------------------------------------------------ the tiny base


def test_tiny_base_loads_through_the_auto_classes(tiny_qwen2: TinyQwen2) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    base_dir = tiny_qwen2.base_dir
    assert sorted(p.name for p in base_dir.glob("*.safetensors")) == ["model.safetensors"]
    assert not list(base_dir.glob("*.bin")) and not list(base_dir.glob("*.pt"))
    processor = AutoProcessor.from_pretrained(base_dir)
    assert type(processor).__name__ == "Qwen2VLProcessor"
    assert type(processor.tokenizer).__name__ == "Qwen2Tokenizer"
    assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessor"
    model = AutoModelForImageTextToText.from_pretrained(base_dir)
    assert type(model).__name__ == tiny_qwen2.base.architecture


def test_tiny_model_matches_its_registry_row(tiny_qwen2: TinyQwen2, tiny_qwen2_model) -> None:
    base, model = tiny_qwen2.base, tiny_qwen2_model
    text, vision = model.config.text_config, model.config.vision_config
    assert text.num_hidden_layers == base.text.num_layers
    assert text.hidden_size == base.text.hidden_size
    assert text.intermediate_size == base.text.intermediate_size
    assert text.num_attention_heads == base.text.num_heads
    assert text.num_key_value_heads == base.text.num_kv_heads
    assert text.vocab_size == base.text.vocab_size
    assert text.rms_norm_eps == 1e-6
    assert vision.depth == base.vision.num_layers >= 3
    assert vision.embed_dim == base.vision.hidden_size
    total = sum(p.numel() for p in model.parameters())
    visual = sum(p.numel() for p in model.model.visual.parameters())
    assert (total, visual) == (base.params.total, base.params.vision)
    assert base.params.language == total - visual
    tokenizer = tiny_qwen2.processor.tokenizer
    assert len(tokenizer) <= text.vocab_size
    for name, token in (
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    ):
        assert getattr(model.config, name) == tokenizer.convert_tokens_to_ids(token)
    assert text.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_tiny_tokenizer_is_a_qwen2_byte_level_bpe_with_merges(tiny_qwen2: TinyQwen2) -> None:
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    spec = json.loads((tiny_qwen2.base_dir / "tokenizer.json").read_text())
    assert spec["model"]["type"] == "BPE"
    assert len(spec["model"]["merges"]) > 500
    assert len(spec["model"]["vocab"]) > 1000
    assert spec["normalizer"]["type"] == "NFC"
    split, byte_level = spec["pre_tokenizer"]["pretokenizers"]
    assert split["type"] == "Split" and split["pattern"]["Regex"] == PRETOKENIZE_REGEX
    assert byte_level["type"] == "ByteLevel"
    assert spec["decoder"]["type"] == "ByteLevel"

    tokenizer = tiny_qwen2.processor.tokenizer
    specials = [t["content"] for t in spec["added_tokens"] if t["special"]]
    assert specials == [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|object_ref_start|>",
        "<|object_ref_end|>",
        "<|box_start|>",
        "<|box_end|>",
        "<|quad_start|>",
        "<|quad_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|vision_pad|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ]
    # specials follow the BPE vocabulary, as in the real tokenizer
    assert tokenizer.convert_tokens_to_ids("<|endoftext|>") == len(spec["model"]["vocab"])
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    text = "The picture shows a red square. Ünïcödé, 🙂 and 123!"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text  # byte-level: no unknowns
    sentence = "The picture shows a red square."
    # merges at work: each corpus word is one token
    assert len(tokenizer(sentence)["input_ids"]) == 7
    assert tokenizer.convert_ids_to_tokens(tokenizer("red")["input_ids"]) == ["red"]


def test_tiny_chat_template_is_qwen2_vls(tiny_qwen2: TinyQwen2) -> None:
    processor = tiny_qwen2.processor
    user = {
        "role": "user",
        "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Same?"}],
    }
    rendered = processor.apply_chat_template([user], tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|>"
        "Same?<|im_end|>\n<|im_start|>assistant\n"
    )
    system = {"role": "system", "content": [{"type": "text", "text": "Be terse."}]}
    rendered = processor.apply_chat_template([system, user], tokenize=False)
    assert rendered.startswith("<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\n")
    assert "helpful assistant" not in rendered
    assert (tiny_qwen2.base_dir / "chat_template.jinja").is_file()


def test_tiny_images_keep_their_aspect_within_sixteen_tokens(tiny_qwen2: TinyQwen2) -> None:
    from PIL import Image

    base, family, processor = tiny_qwen2.base, tiny_qwen2.family, tiny_qwen2.processor
    image = family.bind(base).prepare_image(Image.new("RGBA", (300, 200), (255, 0, 0, 128)))
    assert image.mode == "RGB" and image.size == (112, 84)  # 4 x 3 tokens of 28 px
    square = family.bind(base).prepare_image(Image.new("RGB", (300, 300), "red"))
    assert square.size == (112, 112)
    # the processor keeps the prepared sizes: it does not rescale them again
    out = processor.image_processor([image, square], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[1, 6, 8], [1, 8, 8]]
    assert base.image.tokens_per_image == 16
    assert base.vision.patches_per_image == 64
    assert family.bind(base).describe_image(300, 200) == (
        "112×84, aspect kept (1.5 → 1.33), 12 image tokens"
    )


def test_an_adapter_saved_before_the_fit_setting_keeps_stretching(tiny_qwen2: TinyQwen2) -> None:
    """Old adapters recorded min = max pixels and no ``fit``: their images stay stretched."""
    from PIL import Image

    base, family = tiny_qwen2.base, tiny_qwen2.family
    old = {"size": {"shortest_edge": 12544, "longest_edge": 12544}}
    image = family.bind(base, image_settings=old).prepare_image(Image.new("RGB", (300, 200), "red"))
    assert image.size == (112, 112)
    assert family.bind(base, image_settings=old).image_fit() == "stretch"
    assert family.bind(base, image_settings=old).describe_image(300, 200) == (
        "stretched to 112×112 (aspect 1.5 → 1)"
    )
    processor = family.load_processor(base, tiny_qwen2.base_dir, old)
    assert "fit" not in vars(processor.image_processor)


def test_the_image_reaches_the_language_model(tiny_qwen2: TinyQwen2, tiny_qwen2_model) -> None:
    import torch
    from PIL import Image

    base, family, processor = tiny_qwen2.base, tiny_qwen2.family, tiny_qwen2.processor

    def last_logits(colour: tuple[int, int, int]) -> torch.Tensor:
        image = family.bind(base).prepare_image(Image.new("RGB", (112, 112), colour))
        inputs = family.bind(base, processor).prompt_inputs([image], "What colour is it?", None)
        with torch.no_grad():
            return tiny_qwen2_model(**inputs).logits[0, -1]

    red, red_again, blue = (
        last_logits((255, 0, 0)),
        last_logits((255, 0, 0)),
        last_logits((0, 0, 255)),
    )
    assert torch.equal(red, red_again)
    assert (red - blue).abs().max() > 1e-3


def test_tiny_build_is_deterministic(tiny_qwen2: TinyQwen2, tmp_path: Path, monkeypatch) -> None:
    """A second build, through DLM_HOME, writes byte-identical files."""
    monkeypatch.setenv("DLM_HOME", str(tmp_path))
    again = tiny_qwen2.family.materialize(tiny_qwen2.base)
    assert again == tmp_path / "bases" / "tiny-qwen2-vl"
    first = sorted(p.name for p in tiny_qwen2.base_dir.iterdir())
    assert sorted(p.name for p in again.iterdir()) == first
    for name in first:
        assert _sha256(again / name) == _sha256(tiny_qwen2.base_dir / name), name
    leftovers = [p for p in (tmp_path / "bases").iterdir() if p.is_dir() and p != again]
    assert not leftovers  # no staging directory left behind


@pytest.mark.parametrize(
    "settings", [None, {"size": {"shortest_edge": 3136, "longest_edge": 3136}}]
)
def test_image_settings_round_trip(tiny_qwen2: TinyQwen2, settings) -> None:
    base, family = tiny_qwen2.base, tiny_qwen2.family
    processor = family.load_processor(base, tiny_qwen2.base_dir, settings)
    saved = family.bind(base, processor).image_settings_to_save()
    json.dumps(saved)
    expected = settings["size"] if settings else {"shortest_edge": 3136, "longest_edge": 12544}
    assert saved["size"] == expected
    assert saved["fit"] == "keep-aspect"  # a fresh run records its fit with the adapter
    assert (saved["patch_size"], saved["merge_size"], saved["temporal_patch_size"]) == (14, 2, 2)
    reloaded = family.load_processor(base, tiny_qwen2.base_dir, saved)
    assert family.bind(base, reloaded).image_settings_to_save() == saved


def test_bases_declare_the_qwen2_pretokenizer() -> None:
    from dlm_vl_qwen2.bases import real_base, tiny_base
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    for base in (real_base(), tiny_base()):
        hints = base.export_hints
        assert hints.pretokenizer is not None
        assert (hints.pretokenizer.name, hints.pretokenizer.normalizer) == ("qwen2", "NFC")
        assert hints.pretokenizer.split_pattern == PRETOKENIZE_REGEX
        # llama.cpp converts both halves under the base's own architecture
        assert (hints.text_architecture, hints.mmproj_architecture) == ("", "")
