"""The tiny Qwen2-VL learns image-conditioned answers: the family works end to end.

Four bold, distinct figures; the same question bound to each with a
different answer. A LoRA on the language model alone (PEFT, plain torch
loop, no engine) must make greedy generation return each figure's own
answer exactly, which is only possible if the image reaches the model
through the collator, the processor and the vision tower.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dlm.records import ExampleKind, ImageRef, TrainingExample
from tests.qwen2.conftest import TinyQwen2

QUESTION = "What is in this picture?"
STEPS = 80
LEARNING_RATE = 3e-3


def _figures():
    from PIL import Image, ImageDraw

    def draw(background, colour, shape):
        image = Image.new("RGB", (112, 112), background)
        pen = ImageDraw.Draw(image)
        if shape == "square":
            pen.rectangle([28, 28, 84, 84], fill=colour)
        elif shape == "circle":
            pen.ellipse([24, 24, 88, 88], fill=colour)
        elif shape == "triangle":
            pen.polygon([(56, 16), (96, 96), (16, 96)], fill=colour)
        else:
            for x in range(0, 112, 28):
                pen.rectangle([x, 0, x + 13, 111], fill=colour)
        return image

    return [
        (draw((255, 255, 255), (220, 0, 0), "square"), "A red square."),
        (draw((0, 0, 0), (0, 200, 0), "circle"), "A green circle."),
        (draw((255, 255, 0), (0, 0, 255), "triangle"), "A blue triangle."),
        (draw((128, 0, 128), (255, 165, 0), "stripes"), "Orange stripes."),
    ]


def _answers(tiny: TinyQwen2, model, images) -> list[str]:
    import torch

    tokenizer = tiny.processor.tokenizer
    stop_ids = [
        tokenizer.convert_tokens_to_ids(t) for t in tiny.family.bind(tiny.base, None).stop_tokens()
    ]
    answers = []
    for image in images:
        inputs = tiny.family.bind(tiny.base, tiny.processor).prompt_inputs([image], QUESTION, None)
        with torch.no_grad():
            out = model.generate(
                **inputs,
                max_new_tokens=12,
                do_sample=False,
                eos_token_id=stop_ids,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[0, inputs["input_ids"].shape[1] :]
        answers.append(tiny.family.bind(tiny.base, tiny.processor).decode(new))
    return answers


@pytest.mark.slow
def test_lora_learns_image_conditioned_answers(tiny_qwen2: TinyQwen2, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    family, base, processor = tiny_qwen2.family, tiny_qwen2.base, tiny_qwen2.processor
    figures = _figures()
    images = [family.bind(base).prepare_image(image) for image, _ in figures]
    expected = [answer for _, answer in figures]
    examples = [
        TrainingExample(
            f"s{i}",
            f"recall.dlm:{i}",
            ExampleKind.QA,
            QUESTION,
            answer,
            (ImageRef(f"{i}" * 64, tmp_path / f"{i}.png", f"figures/{i}.png"),),
        )
        for i, answer in enumerate(expected)
    ]
    batch = family.bind(base, processor).collate(examples, [[image] for image in images])

    threads = torch.get_num_threads()
    # a model this small gains nothing from threads; on a shared CI box they only contend
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = family.load_model(base, tiny_qwen2.base_dir, torch.float32, "cpu")
        assert _answers(tiny_qwen2, model, images) != expected
        config = LoraConfig(
            r=16,
            lora_alpha=32,
            lora_dropout=0.0,
            target_modules=family.lora_target_modules,
        )
        model = get_peft_model(model, config)
        adapted = {n.split(".lora_A")[0] for n, _ in model.named_parameters() if ".lora_A" in n}
        assert adapted and all(".language_model." in n for n in adapted)
        assert len(adapted) == 7 * base.text.num_layers  # q k v o gate up down per layer
        trainable = [p for p in model.parameters() if p.requires_grad]
        assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
        optimizer = torch.optim.AdamW(trainable, lr=LEARNING_RATE)
        model.train()
        started = time.monotonic()
        for _ in range(STEPS):
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        seconds = time.monotonic() - started
        print(f"\nrecall: {STEPS} steps in {seconds:.1f}s, final loss {loss.item():.4f}")
        model.eval()
        assert loss.item() < 0.05
        assert _answers(tiny_qwen2, model, images) == expected

        # the adapter saved and loaded on a fresh base gives the same answers
        model.save_pretrained(tmp_path / "adapter")
        fresh = family.load_model(base, tiny_qwen2.base_dir, torch.float32, "cpu")
        reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
        loaded = {n.split(".lora_A")[0] for n, _ in reloaded.named_parameters() if ".lora_A" in n}
        assert loaded == adapted
        assert _answers(tiny_qwen2, reloaded, images) == expected
    finally:
        torch.set_num_threads(threads)
