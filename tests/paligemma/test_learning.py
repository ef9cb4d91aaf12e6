"""The tiny base can learn image-conditioned answers: a plain torch + PEFT loop.

The same data and settings as the CLI recall check (4 figures, a caption
and the same question per figure with a different answer; micro-batch 1,
20 epochs = 160 steps, lr 3e-3, LoRA r 16 / alpha 32 / dropout 0 on the
language model, fp32, seed 7), driven through the family's own collate,
prompt_inputs and decode. Every answer must come back exactly, which only
an adapter that reads the image can do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.paligemma.conftest import TinyPaliGemma, make_examples

pytestmark = pytest.mark.slow

SEED = 7
EPOCHS = 20
LEARNING_RATE = 3e-3
WARMUP_RATIO = 0.05


def test_lora_learns_image_conditioned_recall(
    tiny_paligemma: TinyPaliGemma, figures: tuple[Path, list[tuple[str, str, str, str]]]
) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import get_scheduler

    family, base, processor = tiny_paligemma.family, tiny_paligemma.base, tiny_paligemma.processor
    folder, rows = figures
    examples, images = make_examples(tiny_paligemma, folder, rows, system_prompt="Ignored.")
    assert len(examples) == 8

    torch.manual_seed(SEED)
    model = family.load_model(base, tiny_paligemma.base_dir, torch.float32, "cpu")
    model = get_peft_model(
        model,
        LoraConfig(
            r=16,
            lora_alpha=32,
            lora_dropout=0.0,
            target_modules=family.lora_target_modules,
            bias="none",
            task_type="CAUSAL_LM",
        ),
    )
    adapted = [name for name, p in model.named_parameters() if p.requires_grad]
    assert adapted and all("language_model" in name for name in adapted)

    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=LEARNING_RATE, weight_decay=0.0)
    total = EPOCHS * len(examples)
    scheduler = get_scheduler(
        "cosine",
        optimizer,
        num_warmup_steps=int(WARMUP_RATIO * total),
        num_training_steps=total,
    )
    generator = torch.Generator().manual_seed(SEED)
    losses: list[float] = []
    for _epoch in range(EPOCHS):
        for i in torch.randperm(len(examples), generator=generator).tolist():
            batch = family.bind(base, processor).collate([examples[i]], [images[i]])
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
    assert len(losses) == 160
    assert sum(losses[-8:]) / 8 < 0.5 < sum(losses[:8]) / 8

    model.eval()
    answers: dict[str, tuple[str, str]] = {}
    for example, row_images in zip(examples, images, strict=True):
        answers[f"{example.section_id} {example.kind.value}"] = (
            _generate(family, base, processor, model, row_images, example.prompt),
            example.completion,
        )
    wrong = {key: got for key, got in answers.items() if got[0] != got[1]}
    assert not wrong, f"recall failed for {wrong}"


def _generate(
    family: Any, base: Any, processor: Any, model: Any, images: list[Any], question: str
) -> str:
    import torch

    inputs = family.bind(base, processor).prompt_inputs(images, question, None)
    tokenizer = processor.tokenizer
    stops = [tokenizer.convert_tokens_to_ids(t) for t in family.bind(base, processor).stop_tokens()]
    with torch.inference_mode():
        out = model.generate(
            **inputs,
            max_new_tokens=24,
            do_sample=False,
            eos_token_id=stops,
            pad_token_id=tokenizer.pad_token_id,
        )
    return family.bind(base, processor).decode(out[0, inputs["input_ids"].shape[1] :])
