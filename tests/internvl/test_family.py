"""Collation, token counts, tiling settings and prompting on the tiny InternVL's real processor."""

from __future__ import annotations

from pathlib import Path

import pytest
from dlm_vl_internvl.tiles import image_tokens

from dlm.records import ExampleKind, ImageRef, TrainingExample
from tests.internvl.conftest import TinyInternVL

IM_END = "<|im_end|>"
SQUARE, WIDE, TALL = (224, 224), (224, 112), (60, 200)


def _tokens(tiles: int) -> int:
    """<img> + 4 context tokens per tile + </img>."""
    return 2 + 4 * tiles


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from PIL import Image, ImageDraw

    folder = tmp_path_factory.mktemp("pictures")
    out = {}
    for name, size, colour in (
        ("square", SQUARE, (220, 20, 20)),
        ("wide", WIDE, (20, 200, 60)),
        ("tall", TALL, (20, 40, 220)),
        ("grey", (32, 32), (128, 128, 128)),
    ):
        image = Image.new("RGB", size, "white")
        ImageDraw.Draw(image).ellipse([4, 4, size[0] - 4, size[1] - 4], fill=colour)
        out[name] = folder / f"{name}.png"
        image.save(out[name])
    return out


def _ref(path: Path) -> ImageRef:
    return ImageRef(sha256=path.stem.ljust(64, "0"), blob_path=path, source=path.name)


def _load(tiny: TinyInternVL, path: Path):
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return tiny.family.bind(tiny.base).prepare_image(image)


@pytest.fixture(scope="module")
def mixed(tiny_internvl: TinyInternVL, pictures: dict[str, Path]):
    """A caption row, an image Q/A row (own system prompt), a text Q/A row, a prose row."""
    examples = [
        TrainingExample(
            "c",
            "doc.dlm:3",
            ExampleKind.CAPTION,
            "Describe this image.",
            "A red circle on a white page.",
            (_ref(pictures["square"]),),
        ),
        TrainingExample(
            "q",
            "doc.dlm:7",
            ExampleKind.QA,
            "Which component is this?",
            "the query encoder",
            (_ref(pictures["wide"]),),
            system_prompt="Answer briefly.",
        ),
        TrainingExample(
            "t", "doc.dlm:9", ExampleKind.TEXT_QA, "What does dlm train?", "An adapter.", ()
        ),
        TrainingExample(
            "p", "doc.dlm:12", ExampleKind.TEXT, "", "The quick brown fox jumps over the dog.", ()
        ),
    ]
    images = [
        [_load(tiny_internvl, pictures["square"])],
        [_load(tiny_internvl, pictures["wide"])],
        None,
        [],
    ]
    batch = tiny_internvl.family.bind(tiny_internvl.base, tiny_internvl.processor).collate(
        examples, images
    )
    return examples, images, batch


def test_labels_cover_only_the_completion_and_end_of_turn(
    tiny_internvl: TinyInternVL, mixed
) -> None:
    _, _, batch = mixed
    tokenizer = tiny_internvl.processor.tokenizer
    expected = [
        "A red circle on a white page." + IM_END,
        "the query encoder" + IM_END,
        "An adapter." + IM_END,
        "The quick brown fox jumps over the dog." + IM_END,  # prose: all of it + eos
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
    # chat rows: system, user turn, image tokens and the assistant header are unlabelled
    unlabelled = batch["input_ids"][1][
        (batch["labels"][1] == -100) & (batch["attention_mask"][1] == 1)
    ]
    prompt_part = tokenizer.decode(unlabelled)
    assert prompt_part.startswith(
        "<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\n<img>"
    )
    assert prompt_part.endswith(
        "</img>\nWhich component is this?<|im_end|>\n<|im_start|>assistant\n"
    )
    default = tokenizer.decode(batch["input_ids"][0][batch["labels"][0] == -100])
    assert default.startswith("<|im_start|>system\n你是书生·万象")


def test_each_tile_brings_its_context_tokens(tiny_internvl: TinyInternVL, mixed) -> None:
    _, _, batch = mixed
    tokenizer = tiny_internvl.processor.tokenizer
    context = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    start, end = (tokenizer.convert_tokens_to_ids(t) for t in ("<img>", "</img>"))
    # square: 2 x 2 tiles + thumbnail; wide (2:1): 2 x 1 tiles + thumbnail
    assert (batch["input_ids"] == context).sum(dim=1).tolist() == [4 * 5, 4 * 3, 0, 0]
    assert (batch["input_ids"] == start).sum(dim=1).tolist() == [1, 1, 0, 0]
    assert (batch["input_ids"] == end).sum(dim=1).tolist() == [1, 1, 0, 0]
    assert tuple(batch["pixel_values"].shape) == (5 + 3, 3, 56, 56)
    for row in (0, 1):  # <img> <IMG_CONTEXT>… </img>, contiguous
        ids = batch["input_ids"][row].tolist()
        first = ids.index(start)
        n = ids.count(context)
        assert ids[first + 1 : first + 1 + n] == [context] * n and ids[first + 1 + n] == end


def test_count_tokens_matches_the_collated_rows(tiny_internvl: TinyInternVL, mixed) -> None:
    examples, _, batch = mixed
    family, base, processor = tiny_internvl.family, tiny_internvl.base, tiny_internvl.processor
    for row, example in enumerate(examples):
        count = family.bind(base, processor).count_tokens(example)
        labels = batch["labels"][row]
        assert count.total == int(batch["attention_mask"][row].sum())
        assert count.completion == int((labels != -100).sum())
        assert count.image + count.prompt == int((labels[: count.total] == -100).sum())
    assert [family.bind(base, processor).count_tokens(e).image for e in examples] == [
        _tokens(5),
        _tokens(3),
        0,
        0,
    ]


@pytest.mark.parametrize("name", ["square", "wide", "tall", "grey"])
def test_count_tokens_is_exact_for_every_aspect_ratio(
    tiny_internvl: TinyInternVL, pictures: dict[str, Path], name: str
) -> None:
    family, base, processor = tiny_internvl.family, tiny_internvl.base, tiny_internvl.processor
    example = TrainingExample(
        name, "d:1", ExampleKind.QA, "What is it?", "A shape.", (_ref(pictures[name]),)
    )
    batch = family.bind(base, processor).collate(
        [example], [[_load(tiny_internvl, pictures[name])]]
    )
    count = family.bind(base, processor).count_tokens(example)
    assert count.total == batch["input_ids"].shape[1]
    tiles = batch["pixel_values"].shape[0]
    assert count.image == _tokens(tiles)
    assert count.image <= base.image.max_image_tokens() + 2


def test_max_tiles_is_saved_with_the_adapter_and_restored(
    tiny_internvl: TinyInternVL, pictures: dict[str, Path]
) -> None:
    family, base = tiny_internvl.family, tiny_internvl.base
    settings = family.bind(base, tiny_internvl.processor).image_settings_to_save()
    assert settings == {"size": {"height": 56, "width": 56}, "min_patches": 1, "max_patches": 4}
    assert settings == base.image_settings
    # an adapter trained with at most 2 tiles prompts with at most 2 tiles
    narrow = family.load_processor(base, tiny_internvl.base_dir, {**settings, "max_patches": 2})
    assert family.bind(base, narrow).image_settings_to_save()["max_patches"] == 2
    square = _load(tiny_internvl, pictures["square"])
    wide = _load(tiny_internvl, pictures["wide"])
    assert image_tokens(narrow, square) == _tokens(1)  # 1 x 1: no thumbnail
    assert image_tokens(narrow, wide) == _tokens(3)  # 2 x 1 + thumbnail
    inputs = family.bind(base, narrow).prompt_inputs([square], "What is it?", None)
    assert inputs["pixel_values"].shape[0] == 1
    example = TrainingExample(
        "s", "d:1", ExampleKind.QA, "What is it?", "A shape.", (_ref(pictures["square"]),)
    )
    assert family.bind(base, narrow).count_tokens(example).image == _tokens(1)
    single = family.load_processor(base, tiny_internvl.base_dir, {**settings, "max_patches": 1})
    assert image_tokens(single, wide) == _tokens(1)
    with pytest.raises(Exception, match="does not apply"):
        family.load_processor(base, tiny_internvl.base_dir, {"max_pixels": 5})


def test_a_row_collates_the_same_alone_as_in_a_mixed_batch(
    tiny_internvl: TinyInternVL, mixed
) -> None:
    import torch

    examples, images, batch = mixed
    family, base, processor = tiny_internvl.family, tiny_internvl.base, tiny_internvl.processor
    offset = 0
    for row, example in enumerate(examples):
        alone = family.bind(base, processor).collate([example], [images[row]])
        length = alone["input_ids"].shape[1]
        for key in ("input_ids", "labels", "attention_mask"):
            assert torch.equal(alone[key][0], batch[key][row][:length]), (row, key)
        if example.images:
            n = alone["pixel_values"].shape[0]
            assert torch.equal(alone["pixel_values"], batch["pixel_values"][offset : offset + n])
            offset += n
        else:
            assert "pixel_values" not in alone


def test_the_model_trains_on_a_mixed_batch(
    tiny_internvl: TinyInternVL, tiny_internvl_model, mixed
) -> None:
    import torch
    import torch.nn.functional as F

    _, _, batch = mixed
    with torch.no_grad():
        out = tiny_internvl_model(**batch)
    assert torch.isfinite(out.loss)
    logits = out.logits[:, :-1].reshape(-1, out.logits.shape[-1])
    targets = batch["labels"][:, 1:].reshape(-1)
    assert torch.allclose(out.loss, F.cross_entropy(logits, targets, ignore_index=-100), atol=1e-5)


def test_prompt_inputs_carry_the_system_prompt_and_match_training(
    tiny_internvl: TinyInternVL, tiny_internvl_model, mixed
) -> None:
    import torch

    examples, images, batch = mixed
    family, base, processor = tiny_internvl.family, tiny_internvl.base, tiny_internvl.processor
    tokenizer = processor.tokenizer
    inputs = family.bind(base, processor).prompt_inputs(
        images[1], examples[1].prompt, examples[1].system_prompt
    )
    text = tokenizer.decode(inputs["input_ids"][0])
    assert text.startswith("<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\n<img>")
    assert text.endswith("<|im_start|>assistant\n")
    # inference sees exactly the prompt the model was trained on
    prompt_len = inputs["input_ids"].shape[1]
    assert torch.equal(inputs["input_ids"][0], batch["input_ids"][1][:prompt_len])
    assert int((batch["labels"][1][:prompt_len] != -100).sum()) == 0
    assert batch["labels"][1][prompt_len] != -100
    assert torch.equal(inputs["pixel_values"], batch["pixel_values"][5:])

    default = family.bind(base, processor).prompt_inputs([], "Hello?", None)
    assert "英文名是InternVL" in tokenizer.decode(default["input_ids"][0])
    assert "pixel_values" not in default

    stop_ids = [
        tokenizer.convert_tokens_to_ids(t) for t in family.bind(base, processor).stop_tokens()
    ]
    with torch.no_grad():
        out = tiny_internvl_model.generate(
            **inputs,
            max_new_tokens=6,
            do_sample=False,
            eos_token_id=stop_ids,
            pad_token_id=tokenizer.pad_token_id,
        )
    answer = family.bind(base, processor).decode(out[0, prompt_len:])
    assert isinstance(answer, str) and "<|" not in answer and "<img" not in answer


def test_stop_tokens_and_chat_template(tiny_internvl: TinyInternVL) -> None:
    family, base, processor = tiny_internvl.family, tiny_internvl.base, tiny_internvl.processor
    tokenizer = processor.tokenizer
    assert family.bind(base, processor).stop_tokens() == ["<|im_end|>", "<|endoftext|>"]
    for token in family.bind(base, processor).stop_tokens():
        assert len(tokenizer(token)["input_ids"]) == 1
    assert family.bind(base, processor).decode(
        tokenizer("  the reranker<|im_end|>")["input_ids"]
    ) == ("the reranker")
    assert family.bind(base, processor).chat_template() == processor.chat_template


def test_count_tokens_without_a_processor_is_an_upper_bound() -> None:
    from dlm_vl_internvl.bases import internvl3_base
    from dlm_vl_internvl.family import InternVLFamily

    family, base = InternVLFamily(), internvl3_base()
    example = TrainingExample(
        "q", "d:1", ExampleKind.QA, "x" * 35, "y" * 7, (_ref(Path("/nonexistent/a.png")),)
    )
    count = family.bind(base, None).count_tokens(example)
    assert count.image == 13 * 256 + 2  # 12 tiles + thumbnail, <img> and </img>
    assert count.prompt == 10 + family.chat_overhead_tokens
    assert count.completion == 2 + 1
