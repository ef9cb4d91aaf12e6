"""Mistral 3 batches and prompts, asserted on the real Pixtral processor's output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dlm_vl_mistral.family import Mistral3Family

from dlm.records import BaseSpec, ExampleKind, TrainingExample
from tests.mistral.conftest import example

IMG, IMG_BREAK, IMG_END = 10, 12, 13


def _row(batch: dict[str, Any], i: int) -> tuple[list[int], list[int]]:
    keep = batch["attention_mask"][i].bool()
    return batch["input_ids"][i][keep].tolist(), batch["labels"][i][keep].tolist()


def _labelled(labels: list[int]) -> list[int]:
    return [t for t in labels if t != -100]


@pytest.fixture(scope="module")
def mixed(
    family: Mistral3Family,
    tiny: BaseSpec,
    processor: Any,
    figure_images: list[Any],
    figures: list[tuple[Path, str, str, str]],
) -> tuple[list[TrainingExample], dict[str, Any]]:
    """One batch of every example kind, with and without a system prompt."""
    _, caption, question, answer = figures[1]
    examples = [
        example(ExampleKind.CAPTION, family.caption_prompt, caption, images=1),
        example(ExampleKind.QA, question, answer, images=1, system_prompt="You are terse."),
        example(ExampleKind.TEXT_QA, "What does dlm train?", "A LoRA adapter."),
        example(ExampleKind.TEXT, "", "Plain prose about red circles and blue squares."),
        example(ExampleKind.QA, "Compare them.", "Two shapes.", images=2),
    ]
    images = [[figure_images[0]], [figure_images[1]], [], [], figure_images[2:4]]
    return examples, family.bind(tiny, processor).collate(examples, images)


def test_labels_cover_only_the_completion_and_eos(
    processor: Any, mixed: tuple[list[TrainingExample], dict[str, Any]]
) -> None:
    examples, batch = mixed
    tok = processor.tokenizer
    for i, ex in enumerate(examples):
        ids, labels = _row(batch, i)
        labelled = _labelled(labels)
        assert tok.decode(labelled) == ex.completion + "</s>", ex.kind
        # the labelled ids are the row's tail: nothing after, nothing labelled before
        n = len(labelled)
        assert ids[-n:] == labelled
        assert all(t == -100 for t in labels[:-n])
        assert labelled[-1] == tok.eos_token_id


def test_prompt_side_is_masked(
    processor: Any, mixed: tuple[list[TrainingExample], dict[str, Any]]
) -> None:
    examples, batch = mixed
    tok = processor.tokenizer
    ids, labels = _row(batch, 1)
    masked = tok.decode([t for t, lab in zip(ids, labels, strict=True) if lab == -100])
    assert masked.startswith("<s>[SYSTEM_PROMPT]You are terse.[/SYSTEM_PROMPT][INST]")
    assert masked.endswith(examples[1].prompt + "[/INST]")
    for special in (IMG, IMG_BREAK, IMG_END, tok.bos_token_id):
        positions = [k for k, t in enumerate(ids) if t == special]
        assert positions and all(labels[k] == -100 for k in positions)
    # padding never carries a label
    assert ((batch["labels"] != -100) <= batch["attention_mask"].bool()).all()


def test_images_expand_to_rows_with_breaks(
    mixed: tuple[list[TrainingExample], dict[str, Any]],
) -> None:
    _, batch = mixed
    ids, _ = _row(batch, 0)
    start = ids.index(IMG)
    block = ids[start : start + 20]
    # 4 rows of 4 [IMG]; rows end with [IMG_BREAK], the last with [IMG_END]
    expected = ([IMG] * 4 + [IMG_BREAK]) * 3 + [IMG] * 4 + [IMG_END]
    assert block == expected
    two, _ = _row(batch, 4)
    assert two.count(IMG) == 32 and two.count(IMG_END) == 2
    assert batch["pixel_values"].shape == (4, 3, 112, 112)
    assert batch["image_sizes"].tolist() == [[112, 112]] * 4
    assert set(batch) == {"input_ids", "attention_mask", "labels", "pixel_values", "image_sizes"}


def test_count_tokens_equals_collated_length(
    family: Mistral3Family,
    tiny: BaseSpec,
    processor: Any,
    mixed: tuple[list[TrainingExample], dict[str, Any]],
) -> None:
    examples, batch = mixed
    for i, ex in enumerate(examples):
        ids, labels = _row(batch, i)
        count = family.bind(tiny, processor).count_tokens(ex)
        assert count.total == len(ids), ex.kind
        assert count.completion == len(_labelled(labels))
        assert count.image == 20 * len(ex.images)


def test_estimate_without_tokenizer_errs_long(
    family: Mistral3Family,
    tiny: BaseSpec,
    processor: Any,
    mixed: tuple[list[TrainingExample], dict[str, Any]],
) -> None:
    examples, _ = mixed
    for ex in examples:
        exact = family.bind(tiny, processor).count_tokens(ex)
        guess = family.bind(tiny, None).count_tokens(ex)
        assert guess.image == exact.image
        if ex.kind is not ExampleKind.TEXT:
            # with the default system message rendered, the estimate still covers it
            assert guess.total >= exact.total * 0.8


def test_loss_is_finite_and_only_on_labels(
    family: Mistral3Family,
    tiny: BaseSpec,
    tiny_dir: Path,
    mixed: tuple[list[TrainingExample], dict[str, Any]],
) -> None:
    import torch

    _, batch = mixed
    model = family.load_model(tiny, tiny_dir, torch.float32, "cpu")
    with torch.no_grad():
        out = model(**batch)
    assert torch.isfinite(out.loss)
    # the model's loss is plain next-token cross-entropy over the labelled positions
    logits = out.logits[:, :-1].reshape(-1, out.logits.shape[-1])
    targets = batch["labels"][:, 1:].reshape(-1)
    manual = torch.nn.functional.cross_entropy(logits, targets, ignore_index=-100)
    assert torch.allclose(manual, out.loss, atol=1e-5)


def test_prompt_inputs_carry_the_system_prompt(
    family: Mistral3Family, tiny: BaseSpec, processor: Any, figure_images: list[Any]
) -> None:
    tok = processor.tokenizer
    inputs = family.bind(tiny, processor).prompt_inputs(
        [figure_images[0]], "Which component is this?", "Answer briefly."
    )
    text = tok.decode(inputs["input_ids"][0].tolist())
    assert text.startswith("<s>[SYSTEM_PROMPT]Answer briefly.[/SYSTEM_PROMPT][INST][IMG]")
    assert text.endswith("[IMG_END]Which component is this?[/INST]")
    assert text.count("<s>") == 1
    assert inputs["image_sizes"].tolist() == [[112, 112]]
    assert "pixel_values" in inputs


def test_no_system_prompt_renders_the_default_message(
    family: Mistral3Family, tiny: BaseSpec, processor: Any
) -> None:
    inputs = family.bind(tiny, processor).prompt_inputs([], "What does dlm train?", None)
    text = processor.tokenizer.decode(inputs["input_ids"][0].tolist())
    assert text.startswith("<s>[SYSTEM_PROMPT]You are Mistral Small 3,")
    # the published template stamps the render day (strftime_now); dlm pins it
    assert "The current date is 2025-03-17." in text
    assert text.endswith("[INST]What does dlm train?[/INST]")
    assert "pixel_values" not in inputs


def test_default_message_is_the_same_whatever_the_day(
    family: Mistral3Family, tiny: BaseSpec, processor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a document without system_prompt trains the same text on any day
    import datetime as dt

    import transformers.utils.chat_template_utils as templates

    def rendered() -> str:
        return family.prompt_format.render_prompt(
            family.bind(tiny, processor), None, "What does dlm train?", 0
        )

    today = rendered()

    class Later(dt.datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            return dt.datetime(2031, 1, 2)

    monkeypatch.setattr(templates, "datetime", Later)
    later = rendered()
    assert later == today
    assert "2031" not in later and "2025-03-17" in later
    # the unpinned template would have said 2031: the clock patch is real
    unpinned = processor.tokenizer.chat_template.replace('"2025-03-17"', 'strftime_now("%Y-%m-%d")')
    assert "2031-01-02" in processor.apply_chat_template(
        family.prompt_format.messages(None, "hi", 0), chat_template=unpinned, tokenize=False
    )


def test_generation_stops_at_eos_and_decodes_clean_text(
    family: Mistral3Family,
    tiny: BaseSpec,
    tiny_dir: Path,
    processor: Any,
    figure_images: list[Any],
) -> None:
    import torch

    tok = processor.tokenizer
    model = family.load_model(tiny, tiny_dir, torch.float32, "cpu")
    stops = family.bind(tiny, processor).stop_tokens()
    assert stops == ["</s>"]
    eos = [tok.convert_tokens_to_ids(s) for s in stops]
    inputs = family.bind(tiny, processor).prompt_inputs(
        [figure_images[0]], "Describe this image.", None
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=6, do_sample=False, eos_token_id=eos)
    new = out[0, inputs["input_ids"].shape[1] :]
    assert 1 <= len(new) <= 6
    answer = family.bind(tiny, processor).decode(new)
    assert "[IMG]" not in answer and "</s>" not in answer
    assert answer == tok.decode(new.tolist(), skip_special_tokens=True).strip()


def test_image_settings_round_trip(
    family: Mistral3Family, tiny: BaseSpec, tiny_dir: Path, processor: Any
) -> None:
    settings = family.bind(tiny, processor).image_settings_to_save()
    assert settings == {"size": {"longest_edge": 112}}
    reloaded = family.load_processor(tiny, tiny_dir, {"size": {"longest_edge": 56}})
    assert reloaded.image_processor.size.longest_edge == 56
    assert family.bind(tiny, reloaded).image_settings_to_save() == {"size": {"longest_edge": 56}}
    assert family.bind(tiny, processor).chat_template() == processor.chat_template


def test_prepare_image_pins_every_image(
    family: Mistral3Family, tiny: BaseSpec, processor: Any
) -> None:
    from PIL import Image

    for size, mode in (((640, 200), "RGB"), ((30, 90), "L"), ((112, 112), "RGBA")):
        prepared = family.bind(tiny).prepare_image(Image.new(mode, size))
        assert prepared.size == (112, 112) and prepared.mode == "RGB"
        encoded = processor.image_processor(prepared, return_tensors="pt")
        assert encoded["image_sizes"].tolist() == [[112, 112]]


def test_lora_targets_only_the_language_model(
    family: Mistral3Family, tiny: BaseSpec, tiny_dir: Path
) -> None:
    import re

    import torch

    model = family.load_model(tiny, tiny_dir, torch.float32, "cpu")
    pattern = family.lora_target_modules
    assert isinstance(pattern, str)
    hits = [n for n, _ in model.named_modules() if re.fullmatch(pattern, n)]
    assert len(hits) == 2 * 7  # q k v o gate up down, per layer
    assert all(".language_model." in n for n in hits)
    assert not any("vision_tower" in n or "multi_modal_projector" in n for n in hits)
