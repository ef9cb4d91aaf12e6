"""PaliGemma's collator and prompt builder, on real processor output and the real model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest

from dlm.records import ExampleKind, TrainingExample
from tests.paligemma.conftest import TinyPaliGemma, make_examples

Figures = tuple[Path, list[tuple[str, str, str, str]]]


@pytest.fixture(scope="module")
def rows(
    tiny_paligemma: TinyPaliGemma, figures: Figures
) -> tuple[list[TrainingExample], list[list[Any]]]:
    folder, figure_rows = figures
    return make_examples(tiny_paligemma, folder, figure_rows)


def _row(batch: dict[str, Any], i: int, key: str) -> list[int]:
    keep = batch["attention_mask"][i].bool()
    return batch[key][i][keep].tolist()


# ------------------------------------------------------------------ prompts


@pytest.mark.parametrize(
    ("question", "prompt"),
    [
        ("Which component is this?", "answer en Which component is this?"),
        ("  Which\ncomponent   is this? ", "answer en Which component is this?"),
        ("caption en", "caption en"),
        ("caption es", "caption es"),
        ("describe en", "describe en"),
        ("answer en What colour?", "answer en What colour?"),
        ("detect cat ; dog", "detect cat ; dog"),
        ("segment the circle", "segment the circle"),
        ("ocr", "ocr"),
        ("question en the reranker", "question en the reranker"),
        # a task word only counts as the first word, in lower case
        ("Describe this image.", "answer en Describe this image."),
        ("captions are hard?", "answer en captions are hard?"),
    ],
)
def test_task_prompt(question: str, prompt: str) -> None:
    from dlm_vl_paligemma.prompts import task_prompt

    assert task_prompt(question) == prompt


# ------------------------------------------------------------------ labels


def test_labels_cover_only_the_completion_and_eos(
    tiny_paligemma: TinyPaliGemma, rows: tuple[list[TrainingExample], list[list[Any]]]
) -> None:
    examples, images = rows
    family, base, processor = tiny_paligemma.family, tiny_paligemma.base, tiny_paligemma.processor
    tokenizer = processor.tokenizer
    batch = family.bind(base, processor).collate(examples[:4], images[:4])
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "pixel_values", "labels"}
    assert tuple(batch["pixel_values"].shape) == (4, 3, 56, 56)
    for i, example in enumerate(examples[:4]):
        ids = _row(batch, i, "input_ids")
        labels = _row(batch, i, "labels")
        types = _row(batch, i, "token_type_ids")
        labelled = [tid for tid in labels if tid != -100]
        # the labelled ids, decoded, are exactly the completion and <eos>
        assert tokenizer.decode(labelled, skip_special_tokens=False) == example.completion + "<eos>"
        start = labels.index(labelled[0])
        assert all(tid == -100 for tid in labels[:start])
        assert labels[start:] == ids[start:]
        # the prefix: 16 image tokens, <bos>, the task prompt, the separator
        prefix = tokenizer.decode(ids[:start], skip_special_tokens=False)
        prompt = (
            "caption en" if example.kind is ExampleKind.CAPTION else f"answer en {example.prompt}"
        )
        assert prefix == "<image>" * 16 + "<bos>" + prompt + "\n"
        # token types: 0 on the prefix (bidirectional), 1 on the completion (causal)
        assert types == [0] * start + [1] * (len(ids) - start)


def test_count_tokens_matches_the_collated_row(
    tiny_paligemma: TinyPaliGemma, rows: tuple[list[TrainingExample], list[list[Any]]]
) -> None:
    examples, images = rows
    family, base, processor = tiny_paligemma.family, tiny_paligemma.base, tiny_paligemma.processor
    batch = family.bind(base, processor).collate(examples, images)
    for i, example in enumerate(examples):
        count = family.bind(base, processor).count_tokens(example)
        assert count.image == 16
        assert count.total == len(_row(batch, i, "input_ids"))
        assert count.completion == sum(1 for tid in _row(batch, i, "labels") if tid != -100)
        estimate = family.bind(base, None).count_tokens(example)
        assert estimate.image == 16 and estimate.prompt > 0 and estimate.completion > 0


def test_system_prompt_is_ignored_in_training_and_prompting(
    tiny_paligemma: TinyPaliGemma, rows: tuple[list[TrainingExample], list[list[Any]]]
) -> None:
    examples, images = rows
    family, base, processor = tiny_paligemma.family, tiny_paligemma.base, tiny_paligemma.processor
    with_system = [attrs.evolve(e, system_prompt="You answer about figures.") for e in examples]
    plain = family.bind(base, processor).collate(examples[:2], images[:2])
    other = family.bind(base, processor).collate(with_system[:2], images[:2])
    for key in ("input_ids", "token_type_ids", "labels"):
        assert plain[key].equal(other[key])
    assert family.bind(base, processor).count_tokens(with_system[1]) == family.bind(
        base, processor
    ).count_tokens(examples[1])
    asked = family.bind(base, processor).prompt_inputs(images[1], examples[1].prompt, "Be brief.")
    bare = family.bind(base, processor).prompt_inputs(images[1], examples[1].prompt, None)
    assert asked["input_ids"].equal(bare["input_ids"])


def test_prompt_inputs_are_the_training_prefix(
    tiny_paligemma: TinyPaliGemma, rows: tuple[list[TrainingExample], list[list[Any]]]
) -> None:
    examples, images = rows
    family, base, processor = tiny_paligemma.family, tiny_paligemma.base, tiny_paligemma.processor
    for i in (0, 1):  # a caption and a question
        batch = family.bind(base, processor).collate([examples[i]], [images[i]])
        inputs = family.bind(base, processor).prompt_inputs(images[i], examples[i].prompt, None)
        assert "labels" not in inputs
        prefix_len = int((batch["token_type_ids"][0] == 0).sum())
        assert inputs["input_ids"][0].tolist() == batch["input_ids"][0, :prefix_len].tolist()
        assert inputs["token_type_ids"].eq(0).all()
        assert inputs["pixel_values"].equal(batch["pixel_values"])


# ------------------------------------------------------------------ refusals


def test_collate_refuses_examples_without_an_image(
    tiny_paligemma: TinyPaliGemma, rows: tuple[list[TrainingExample], list[list[Any]]]
) -> None:
    examples, images = rows
    family, base, processor = tiny_paligemma.family, tiny_paligemma.base, tiny_paligemma.processor
    text_qa = TrainingExample(
        section_id="t",
        origin="doc.dlm:40",
        kind=ExampleKind.TEXT_QA,
        prompt="Why?",
        completion="So.",
    )
    prose = TrainingExample(
        section_id="p", origin="doc.dlm:50", kind=ExampleKind.TEXT, prompt="", completion="Prose."
    )
    for example in (text_qa, prose):
        with pytest.raises(ValueError, match=r"doc\.dlm:\d+: family paligemma cannot train"):
            family.bind(base, processor).collate([examples[0], example], [images[0], []])
        with pytest.raises(ValueError, match="without an image"):
            family.bind(base, processor).count_tokens(example)
    # an image example whose image was not passed
    with pytest.raises(ValueError, match="1 images but 0 were given"):
        family.bind(base, processor).collate([examples[0]], [[]])
    with pytest.raises(ValueError, match="at least one"):
        family.bind(base, processor).prompt_inputs([], "Which component is this?", None)


# ------------------------------------------------------------------ the prefix-LM mask


def _logits(model: Any, batch: dict[str, Any]) -> Any:
    import torch

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        return model(**inputs).logits[0]


def test_changing_a_completion_token_never_reaches_the_prefix(
    tiny_paligemma: TinyPaliGemma,
    tiny_paligemma_model: Any,
    rows: tuple[list[TrainingExample], list[list[Any]]],
) -> None:
    """No leak: the completion is invisible to every prefix position (and to earlier completion
    positions); it does change every position from the changed token on."""
    import torch

    examples, images = rows
    family, base, processor = tiny_paligemma.family, tiny_paligemma.base, tiny_paligemma.processor
    batch = family.bind(base, processor).collate([examples[1]], [images[1]])
    types = batch["token_type_ids"][0]
    first = int((types == 0).sum())  # first completion position
    changed = first + 1
    assert int(types[changed]) == 1 and changed < types.numel() - 1
    altered = {k: v.clone() for k, v in batch.items()}
    old = int(altered["input_ids"][0, changed])
    altered["input_ids"][0, changed] = processor.tokenizer.convert_tokens_to_ids("▁reranker")
    assert int(altered["input_ids"][0, changed]) != old

    before, after = _logits(tiny_paligemma_model, batch), _logits(tiny_paligemma_model, altered)
    assert torch.allclose(before[:changed], after[:changed], atol=1e-6, rtol=0)
    assert torch.equal(before[:first], after[:first])  # every prefix position, bit for bit
    for position in range(changed, types.numel()):
        assert not torch.allclose(before[position], after[position], atol=1e-4), position


def test_the_model_builds_the_prefix_lm_mask_from_token_type_ids(
    tiny_paligemma: TinyPaliGemma,
    tiny_paligemma_model: Any,
    rows: tuple[list[TrainingExample], list[list[Any]]],
) -> None:
    """With token_type_ids a late prefix token reaches earlier prefix positions (full attention
    over the prefix). Without them transformers 5 attends bidirectionally over the whole row
    (PaliGemma's Gemma config sets ``use_bidirectional_attention``): the completion leaks into
    the prefix, which is why the collator must always pass them."""
    import torch

    examples, images = rows
    family, base, processor = tiny_paligemma.family, tiny_paligemma.base, tiny_paligemma.processor
    batch = family.bind(base, processor).collate([examples[1]], [images[1]])
    first = int((batch["token_type_ids"][0] == 0).sum())
    late = first - 2  # the "?" of the question, before the "\n" separator
    altered = {k: v.clone() for k, v in batch.items()}
    altered["input_ids"][0, late] = processor.tokenizer.convert_tokens_to_ids("▁cache")

    model = tiny_paligemma_model
    before, after = _logits(model, batch), _logits(model, altered)
    for position in range(late):
        assert not torch.allclose(before[position], after[position], atol=1e-5), position

    # without token_type_ids: a completion token reaches the prefix
    untyped = {k: v for k, v in batch.items() if k != "token_type_ids"}
    leaked = {k: v.clone() for k, v in untyped.items()}
    leaked["input_ids"][0, first + 1] = processor.tokenizer.convert_tokens_to_ids("▁reranker")
    assert not torch.allclose(_logits(model, untyped)[:first], _logits(model, leaked)[:first])


def test_padding_does_not_change_a_row(
    tiny_paligemma: TinyPaliGemma,
    tiny_paligemma_model: Any,
    rows: tuple[list[TrainingExample], list[list[Any]]],
) -> None:
    import torch

    examples, images = rows
    family, base, processor = tiny_paligemma.family, tiny_paligemma.base, tiny_paligemma.processor
    batch = family.bind(base, processor).collate(examples[:2], images[:2])
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        together = tiny_paligemma_model(**inputs).logits
    for i in (0, 1):
        alone = _logits(
            tiny_paligemma_model, family.bind(base, processor).collate([examples[i]], [images[i]])
        )
        length = alone.shape[0]
        assert torch.allclose(together[i, :length], alone, atol=1e-5, rtol=0)


def test_training_loss_is_the_completion_cross_entropy(
    tiny_paligemma: TinyPaliGemma,
    tiny_paligemma_model: Any,
    rows: tuple[list[TrainingExample], list[list[Any]]],
) -> None:
    import torch

    examples, images = rows
    family, base, processor = tiny_paligemma.family, tiny_paligemma.base, tiny_paligemma.processor
    batch = family.bind(base, processor).collate(examples[:2], images[:2])
    with torch.no_grad():
        out = tiny_paligemma_model(**batch)
    logits, labels = out.logits[:, :-1], batch["labels"][:, 1:]
    keep = labels != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    assert torch.allclose(out.loss, expected, atol=1e-5)


# ------------------------------------------------------------------ decoding and stops


def test_decode_and_stop_tokens(tiny_paligemma: TinyPaliGemma) -> None:
    family, base, processor = tiny_paligemma.family, tiny_paligemma.base, tiny_paligemma.processor
    tokenizer = processor.tokenizer
    answer = tokenizer("the cache layer<eos>", add_special_tokens=False)["input_ids"]
    assert family.bind(base, processor).decode(answer) == "the cache layer"
    prompt = tokenizer(
        "<image>" * 16 + "<bos>answer en Which component is this?\n", add_special_tokens=False
    )["input_ids"]
    assert family.bind(base, processor).decode(prompt + answer) == "the cache layer"
    assert family.bind(base, processor).stop_tokens() == ["<eos>"]
    assert tokenizer.convert_tokens_to_ids("<eos>") == tokenizer.eos_token_id
    assert family.bind(base, processor).chat_template() is None


def test_an_example_with_two_images_trains_and_prompts(
    tiny_paligemma: TinyPaliGemma,
    tiny_paligemma_model: Any,
    rows: tuple[list[TrainingExample], list[list[Any]]],
) -> None:
    examples, images = rows
    family, base, processor = tiny_paligemma.family, tiny_paligemma.base, tiny_paligemma.processor
    pair = attrs.evolve(examples[1], images=examples[1].images + examples[3].images)
    batch = family.bind(base, processor).collate(
        [pair, examples[0]], [images[1] + images[3], images[0]]
    )
    assert tuple(batch["pixel_values"].shape) == (3, 3, 56, 56)
    assert family.bind(base, processor).count_tokens(pair).total == int(
        batch["attention_mask"][0].sum()
    )
    assert int((batch["input_ids"][0] == processor.image_token_id).sum()) == 32
    out = tiny_paligemma_model(**batch)
    assert out.loss.isfinite()
    inputs = family.bind(base, processor).prompt_inputs(images[1] + images[3], pair.prompt, None)
    assert (
        inputs["input_ids"][0].tolist()
        == batch["input_ids"][0, : inputs["input_ids"].shape[1]].tolist()
    )
