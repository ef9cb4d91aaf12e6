"""The Mistral 3 registry rows, the plugin registration and the token budget at 1540 px."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dlm_vl_mistral.bases import REAL_PARAMS, image_tokens, real_config
from dlm_vl_mistral.family import Mistral3Family

from dlm.engine.document.budget import check_budget
from dlm.errors import DocumentError
from dlm.format import Document, Frontmatter, TrainingSettings
from dlm.records import BaseSpec, ExampleKind
from tests.mistral.conftest import example


def test_real_row_is_the_pinned_checkpoint(real: BaseSpec) -> None:
    assert real.key == "mistral-small-3.1-24b-instruct"
    assert real.family == "mistral3"
    assert real.hub_id == "mistralai/Mistral-Small-3.1-24B-Instruct-2503"
    assert real.revision == "68faf511d618ef198fef186659617cfd2eb8e33a"
    assert real.architecture == "Mistral3ForConditionalGeneration"
    assert real.license == "Apache-2.0"
    assert real.cuda_first and not real.gated and real.redistributable and not real.tiny


def test_real_row_carries_the_config_hyperparameters(real: BaseSpec) -> None:
    t, v = real.text, real.vision
    assert (t.num_layers, t.hidden_size, t.intermediate_size) == (40, 5120, 32768)
    assert (t.num_heads, t.num_kv_heads, t.vocab_size, t.max_position) == (32, 8, 131072, 131072)
    assert real.context_length == 131072
    assert (v.num_layers, v.hidden_size, v.intermediate_size, v.num_heads) == (24, 1024, 4096, 16)
    assert v.patches_per_image == 110 * 110
    cfg = real_config()
    assert cfg["text_config"]["head_dim"] == 128
    assert cfg["image_token_index"] == 10 and cfg["spatial_merge_size"] == 2


def test_real_image_geometry_counts_breaks_and_end(real: BaseSpec) -> None:
    # 55 rows of 55 [IMG], each row closed by [IMG_BREAK] (the last by [IMG_END])
    assert (real.image.width, real.image.height, real.image.resize) == (1540, 1540, "pinned")
    assert real.image.image_token == "[IMG]"
    assert real.image.tokens_per_image == 55 * 55 + 55 == 3080 == image_tokens(1540)
    assert real.extra["image_feature_tokens"] == 3025
    assert real.image_settings == {"size": {"longest_edge": 1540}}


def test_real_param_counts_match_the_architecture(real: BaseSpec) -> None:
    import torch
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    cfg = {
        k: v
        for k, v in real_config().items()
        if k not in ("architectures", "model_type", "torch_dtype", "transformers_version")
    }
    # the checkpoint ships its own lm_head (from_pretrained keeps them apart)
    config = Mistral3Config(**cfg, tie_word_embeddings=False)
    with torch.device("meta"):
        model = Mistral3ForConditionalGeneration(config)

    def count(module: Any) -> int:
        return sum(p.numel() for p in module.parameters())

    vision = count(model.model.vision_tower) + count(model.model.multi_modal_projector)
    language = count(model.model.language_model) + count(model.lm_head)
    assert (count(model), vision, language) == (
        REAL_PARAMS.total,
        REAL_PARAMS.vision,
        REAL_PARAMS.language,
    )
    assert real.params == REAL_PARAMS
    assert 23.9e9 < real.params.total < 24.1e9


def test_plugin_registers_family_and_bases() -> None:
    from dlm.plugins import get_registry

    registry = get_registry()
    for key in ("mistral-small-3.1-24b-instruct", "tiny-mistral3"):
        base = registry.base(key)
        assert isinstance(registry.family_for(base), Mistral3Family)
    assert registry.provider["base:tiny-mistral3"] == "mistral"


def test_planner_reads_the_narrow_heads(real: BaseSpec, tiny: BaseSpec) -> None:
    from dlm.hardware.memory import head_dim, lora_param_count

    assert (head_dim(real), head_dim(tiny)) == (128, 32)
    # LoRA r16 on the seven LM projections of 40 layers (counted on the meta model)
    assert lora_param_count(real, 16) == 92_405_760


def test_tiny_row(tiny: BaseSpec) -> None:
    assert tiny.tiny and not tiny.cuda_first
    assert tiny.family == "mistral3" and tiny.architecture == "Mistral3ForConditionalGeneration"
    assert tiny.image.tokens_per_image == 4 * 4 + 4 == 20
    assert tiny.image_settings == {"size": {"longest_edge": 112}}


def _doc(sequence_len: int | None) -> Document:
    settings = TrainingSettings(sequence_len=sequence_len)
    return Document(
        Frontmatter(
            dlm_id="01JQ0000000000000000000000",
            base_model="mistral-small-3.1-24b-instruct",
            training=settings,
        )
    )


def test_budget_without_tokenizer_raises_sequence_len_past_the_old_default(
    family: Mistral3Family, real: BaseSpec
) -> None:
    # planning before the download: image tokens exact, text estimated
    examples = (example(ExampleKind.QA, "Which component is this?", "the reranker", images=1),)
    count = family.bind(real).count_tokens(examples[0])
    assert count.image == 3080
    budget = check_budget(_doc(None), family.bind(real), examples)
    assert budget.sequence_len == count.total > 2048
    assert budget.note is not None and "3080 image tokens" in budget.note
    with pytest.raises(DocumentError, match="image tokens are never truncated"):
        check_budget(_doc(2048), family.bind(real), examples)


@pytest.fixture(scope="module")
def processor_at_1540(family: Mistral3Family, real: BaseSpec, tiny_dir: Path) -> Any:
    """The Pixtral processor class pinned as the real base pins it (tiny tokenizer)."""
    return family.load_processor(real, tiny_dir)


def test_real_load_processor_pins_1540(
    processor_at_1540: Any, family: Mistral3Family, real: BaseSpec
) -> None:
    assert processor_at_1540.image_processor.size.longest_edge == 1540
    assert family.bind(real, processor_at_1540).image_settings_to_save() == {
        "size": {"longest_edge": 1540}
    }


def test_one_pinned_image_is_3080_tokens_and_counts_are_exact(
    family: Mistral3Family, real: BaseSpec, processor_at_1540: Any
) -> None:
    from PIL import Image

    # an odd, non-square photo: prepare_image pins it, the processor keeps it
    photo = family.bind(real).prepare_image(Image.new("RGB", (2000, 900), (10, 120, 200)))
    assert photo.size == (1540, 1540)
    ex = example(ExampleKind.QA, "Which component is this?", "the reranker", images=1)
    batch = family.bind(real, processor_at_1540).collate([ex], [[photo]])
    tok = processor_at_1540.tokenizer
    ids = batch["input_ids"][0].tolist()
    assert batch["image_sizes"].tolist() == [[1540, 1540]]
    assert ids.count(tok.convert_tokens_to_ids("[IMG]")) == 3025
    assert ids.count(tok.convert_tokens_to_ids("[IMG_BREAK]")) == 54
    assert ids.count(tok.convert_tokens_to_ids("[IMG_END]")) == 1
    count = family.bind(real, processor_at_1540).count_tokens(ex)
    assert count.image == 3080
    assert count.total == len(ids) == int(batch["attention_mask"].sum())
    budget = check_budget(_doc(None), family.bind(real, processor_at_1540), (ex,))
    assert budget.sequence_len == len(ids)
    with pytest.raises(DocumentError, match=f"needs {len(ids)} tokens"):
        check_budget(_doc(len(ids) - 1), family.bind(real, processor_at_1540), (ex,))


def test_shipped_config_is_valid_json_for_transformers() -> None:
    from transformers import AutoConfig

    text = json.dumps(real_config())
    assert json.loads(text)["model_type"] == "mistral3"
    cfg = {k: v for k, v in real_config().items() if k != "architectures"}
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    assert type(config).__name__ == "Mistral3Config"
    assert config.text_config.num_hidden_layers == 40
    assert config.vision_config.patch_size == 14


PACKAGE = Path(__file__).resolve().parents[2] / "dlm-vl-mistral"


def test_package_depends_only_on_dlm_core() -> None:
    import tomllib

    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    dlm_deps = [d for d in project["dependencies"] if d.startswith("dlm")]
    assert dlm_deps == ["dlm-core>=0.1.0"]
    assert project["entry-points"]["dlm"] == {"mistral": "dlm_vl_mistral.plugin"}


def test_rows_declare_head_dim_block_mask_and_export_hints(real: BaseSpec, tiny: BaseSpec) -> None:
    assert real.text.head_dim == 128 and tiny.text.head_dim == 32  # not hidden / heads
    assert real.vision.block_mask and tiny.vision.block_mask
    for base in (real, tiny):
        hints = base.export_hints
        assert hints.mmproj_token_embedding == "[IMG_BREAK]"
        assert hints.pretokenizer is not None and hints.pretokenizer.name == "tekken"
        # (test_tiny: the declared split is the one the tiny tokenizer is trained with)
        assert hints.pretokenizer.normalizer == ""
