"""The generic collator, token counts and prompt inputs on the tiny Qwen2-VL's real processor."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlm.records import ExampleKind, ImageRef, TrainingExample
from tests.qwen2.conftest import TinyQwen2

IM_END = "<|im_end|>"


def _ref(name: str) -> ImageRef:
    return ImageRef(sha256=name * 64, blob_path=Path("/nonexistent") / name, source=f"{name}.png")


def _image(tiny: TinyQwen2, colour: tuple[int, int, int]):
    from PIL import Image

    # square and larger than the pinned 112²: prepared down to 112² (16 tokens) whether the
    # family stretches or keeps the aspect ratio (Qwen2-VL keeps it: tests/qwen2/test_tiny_base.py)
    return tiny.family.bind(tiny.base).prepare_image(Image.new("RGB", (168, 168), colour))


@pytest.fixture(scope="module")
def mixed(tiny_qwen2: TinyQwen2):
    """A caption row, an image Q/A row (own system prompt), a text Q/A row, a prose row."""
    examples = [
        TrainingExample(
            "c",
            "doc.dlm:3",
            ExampleKind.CAPTION,
            "Describe this image.",
            "A red square on white.",
            (_ref("a"),),
        ),
        TrainingExample(
            "q",
            "doc.dlm:7",
            ExampleKind.QA,
            "What colour is the circle?",
            "It is green.",
            (_ref("b"),),
            system_prompt="Answer briefly.",
        ),
        TrainingExample(
            "t", "doc.dlm:9", ExampleKind.TEXT_QA, "What does dlm train?", "An adapter.", ()
        ),
        TrainingExample(
            "p",
            "doc.dlm:12",
            ExampleKind.TEXT,
            "",
            "The quick brown fox jumps over the lazy dog.",
            (),
        ),
    ]
    images = [[_image(tiny_qwen2, (255, 0, 0))], [_image(tiny_qwen2, (0, 255, 0))], None, []]
    batch = tiny_qwen2.family.bind(tiny_qwen2.base, tiny_qwen2.processor).collate(examples, images)
    return examples, images, batch


def test_labels_cover_only_the_completion_and_end_of_turn(tiny_qwen2: TinyQwen2, mixed) -> None:
    _, _, batch = mixed
    tokenizer = tiny_qwen2.processor.tokenizer
    expected = [
        "A red square on white." + IM_END,
        "It is green." + IM_END,
        "An adapter." + IM_END,
        "The quick brown fox jumps over the lazy dog." + IM_END,  # prose: all of it + eos
    ]
    for row, want in enumerate(expected):
        ids, labels = batch["input_ids"][row], batch["labels"][row]
        mask = labels != -100
        assert tokenizer.decode(labels[mask]) == want
        assert (labels[mask] == ids[mask]).all()
        # the labelled span is one contiguous run that ends the row's real tokens
        where = mask.nonzero().flatten().tolist()
        length = int(batch["attention_mask"][row].sum())
        assert where == list(range(length - len(where), length))
    # chat rows: the prompt (system, user turn, image pads, assistant header) is unlabelled
    prompt_part = tokenizer.decode(batch["input_ids"][1][batch["labels"][1] == -100])
    assert prompt_part.startswith("<|im_start|>system\nAnswer briefly.<|im_end|>\n")
    assert prompt_part.rstrip(tokenizer.pad_token).endswith(
        "What colour is the circle?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_padding_is_on_the_right_and_never_labelled(tiny_qwen2: TinyQwen2, mixed) -> None:
    _, _, batch = mixed
    pad = tiny_qwen2.processor.tokenizer.pad_token_id
    for row in range(4):
        attention = batch["attention_mask"][row].tolist()
        length = sum(attention)
        assert attention == [1] * length + [0] * (len(attention) - length)
        assert (batch["input_ids"][row][length:] == pad).all()
        assert (batch["labels"][row][length:] == -100).all()
        assert (batch["mm_token_type_ids"][row][length:] == 0).all()
    assert int(batch["attention_mask"].sum(dim=1).max()) == batch["input_ids"].shape[1]


def test_image_tokens_pixels_and_mm_token_types(tiny_qwen2: TinyQwen2, mixed) -> None:
    _, _, batch = mixed
    tokenizer = tiny_qwen2.processor.tokenizer
    image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    per_row = (batch["input_ids"] == image_id).sum(dim=1).tolist()
    assert per_row == [16, 16, 0, 0]
    assert ((batch["input_ids"] == image_id) == (batch["mm_token_type_ids"] == 1)).all()
    assert batch["image_grid_thw"].tolist() == [[1, 8, 8], [1, 8, 8]]
    assert tuple(batch["pixel_values"].shape) == (2 * 64, 3 * 2 * 14 * 14)
    assert set(batch) == {
        "input_ids",
        "attention_mask",
        "mm_token_type_ids",
        "labels",
        "pixel_values",
        "image_grid_thw",
    }


def test_count_tokens_matches_the_collated_rows(tiny_qwen2: TinyQwen2, mixed) -> None:
    examples, _, batch = mixed
    family, base, processor = tiny_qwen2.family, tiny_qwen2.base, tiny_qwen2.processor
    for row, example in enumerate(examples):
        count = family.bind(base, processor).count_tokens(example)
        labels = batch["labels"][row]
        assert count.total == int(batch["attention_mask"][row].sum())
        assert count.completion == int((labels != -100).sum())
        assert count.image == 16 * len(example.images)
        assert count.image + count.prompt == int((labels[: count.total] == -100).sum())


def test_two_images_in_one_row(tiny_qwen2: TinyQwen2) -> None:
    family, base, processor = tiny_qwen2.family, tiny_qwen2.base, tiny_qwen2.processor
    example = TrainingExample(
        "two", "doc.dlm:1", ExampleKind.QA, "Same colour?", "No.", (_ref("a"), _ref("b"))
    )
    images = [[_image(tiny_qwen2, (255, 0, 0)), _image(tiny_qwen2, (0, 0, 255))]]
    batch = family.bind(base, processor).collate([example], images)
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((batch["input_ids"] == image_id).sum()) == 32
    count = family.bind(base, processor).count_tokens(example)
    assert count.image == 32 and count.total == batch["input_ids"].shape[1]
    with pytest.raises(ValueError, match="2 images but 1"):
        family.bind(base, processor).collate([example], [images[0][:1]])


def test_a_row_collates_the_same_alone_as_in_a_mixed_batch(tiny_qwen2: TinyQwen2, mixed) -> None:
    import torch

    examples, images, batch = mixed
    family, base, processor = tiny_qwen2.family, tiny_qwen2.base, tiny_qwen2.processor
    offset = 0
    for row, example in enumerate(examples):
        alone = family.bind(base, processor).collate([example], [images[row]])
        length = alone["input_ids"].shape[1]
        for key in ("input_ids", "labels", "mm_token_type_ids"):
            if key not in alone:  # a prose-only batch has no multimodal token types
                assert key == "mm_token_type_ids" and example.kind is ExampleKind.TEXT
                assert (batch[key][row] == 0).all()
                continue
            assert torch.equal(alone[key][0], batch[key][row][:length]), (row, key)
        if example.images:
            n = alone["pixel_values"].shape[0]
            assert torch.equal(alone["pixel_values"], batch["pixel_values"][offset : offset + n])
            offset += n
        else:
            assert "pixel_values" not in alone


def test_the_model_trains_on_a_mixed_batch(tiny_qwen2: TinyQwen2, tiny_qwen2_model, mixed) -> None:
    import torch
    import torch.nn.functional as F

    _, _, batch = mixed
    with torch.no_grad():
        out = tiny_qwen2_model(**batch)
    assert torch.isfinite(out.loss)
    # the loss is the mean over exactly the labelled tokens
    logits = out.logits[:, :-1].reshape(-1, out.logits.shape[-1])
    targets = batch["labels"][:, 1:].reshape(-1)
    assert torch.allclose(out.loss, F.cross_entropy(logits, targets, ignore_index=-100), atol=1e-5)


def test_prompt_inputs_carry_the_system_prompt_and_match_training(
    tiny_qwen2: TinyQwen2, tiny_qwen2_model, mixed
) -> None:
    import torch

    examples, images, batch = mixed
    family, base, processor = tiny_qwen2.family, tiny_qwen2.base, tiny_qwen2.processor
    tokenizer = processor.tokenizer
    inputs = family.bind(base, processor).prompt_inputs(
        images[1], examples[1].prompt, examples[1].system_prompt
    )
    text = tokenizer.decode(inputs["input_ids"][0])
    assert text.startswith("<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\n")
    assert text.endswith("<|im_start|>assistant\n")
    # inference sees exactly the prompt the model was trained on
    prompt_len = inputs["input_ids"].shape[1]
    assert torch.equal(inputs["input_ids"][0], batch["input_ids"][1][:prompt_len])
    assert int((batch["labels"][1][:prompt_len] != -100).sum()) == 0
    assert batch["labels"][1][prompt_len] != -100
    assert torch.equal(inputs["pixel_values"], batch["pixel_values"][64:])

    default = family.bind(base, processor).prompt_inputs([], "Hello?", None)
    assert "You are a helpful assistant." in tokenizer.decode(default["input_ids"][0])
    assert "pixel_values" not in default

    stop_ids = [
        tokenizer.convert_tokens_to_ids(t) for t in family.bind(base, processor).stop_tokens()
    ]
    with torch.no_grad():
        out = tiny_qwen2_model.generate(
            **inputs,
            max_new_tokens=6,
            do_sample=False,
            eos_token_id=stop_ids,
            pad_token_id=tokenizer.pad_token_id,
        )
    answer = family.bind(base, processor).decode(out[0, prompt_len:])
    assert isinstance(answer, str)
    assert "<|" not in answer


def test_stop_tokens_decode_and_text_only_batches(tiny_qwen2: TinyQwen2) -> None:
    family, base, processor = tiny_qwen2.family, tiny_qwen2.base, tiny_qwen2.processor
    tokenizer = processor.tokenizer
    assert family.bind(base, processor).stop_tokens() == ["<|im_end|>", "<|endoftext|>"]
    for token in family.bind(base, processor).stop_tokens():
        assert len(tokenizer(token)["input_ids"]) == 1
    ids = tokenizer("  It is green.<|im_end|>")["input_ids"]
    assert family.bind(base, processor).decode(ids) == "It is green."

    examples = [
        TrainingExample("t", "d:1", ExampleKind.TEXT_QA, "Why?", "Because."),
        TrainingExample("p", "d:2", ExampleKind.TEXT, "", "Prose only."),
    ]
    batch = family.bind(base, processor).collate(examples, [None, None])
    assert "pixel_values" not in batch
    assert (
        tokenizer.decode(batch["labels"][1][batch["labels"][1] != -100]) == "Prose only." + IM_END
    )
    prose = family.bind(base, processor).collate(examples[1:], [None])
    assert set(prose) == {"input_ids", "attention_mask", "labels"}


def test_count_tokens_without_a_processor_estimates() -> None:
    from dlm_vl_qwen2.bases import real_base
    from dlm_vl_qwen2.family import Qwen2VLFamily

    family, base = Qwen2VLFamily(), real_base()
    example = TrainingExample("q", "d:1", ExampleKind.QA, "x" * 35, "y" * 7, (_ref("a"),))
    count = family.bind(base, None).count_tokens(example)
    assert count.image == 576
    assert count.prompt == 10 + family.chat_overhead_tokens
    assert count.completion == 2 + 1
