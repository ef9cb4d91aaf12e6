"""The tiny Mistral 3 base can learn image-conditioned recall with the CLI's settings.

A plain torch + PEFT loop over the recall document's 8 examples (4 captions,
4 bound Q/A with the same question and different answers), with the
settings the end-to-end CLI check uses: micro-batch 1, 20 epochs (160
steps), AdamW at 3e-3 with cosine decay after 5% warmup, LoRA r 16 alpha 32
on the language model only, fp32, seed 7. Greedy answers must then be
exact for every figure, which only an adapter that reads the image can do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dlm_vl_mistral.family import Mistral3Family

from dlm.records import BaseSpec, ExampleKind
from tests.mistral.conftest import example

SEED = 7
EPOCHS = 20
LR = 3e-3
WARMUP = 0.05


@pytest.mark.slow
def test_tiny_base_learns_image_conditioned_recall(
    family: Mistral3Family,
    tiny: BaseSpec,
    tiny_dir: Path,
    processor: Any,
    figures: list[tuple[Path, str, str, str]],
    figure_images: list[Any],
) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import get_scheduler

    examples, images = [], []
    for (_, caption, question, answer), image in zip(figures, figure_images, strict=True):
        examples.append(example(ExampleKind.CAPTION, family.caption_prompt, caption, images=1))
        examples.append(example(ExampleKind.QA, question, answer, images=1))
        images += [[image], [image]]
    assert len({q for _, _, q, _ in figures}) == 1  # one question, four answers
    batches = [
        family.bind(tiny, processor).collate([e], [im])
        for e, im in zip(examples, images, strict=True)
    ]

    torch.manual_seed(SEED)
    model = family.load_model(tiny, tiny_dir, torch.float32, "cpu")
    torch.manual_seed(SEED)
    config = LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        target_modules=family.lora_target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=LR, weight_decay=0.0)
    total = EPOCHS * len(examples)
    scheduler = get_scheduler(
        "cosine", optimizer, num_warmup_steps=int(WARMUP * total), num_training_steps=total
    )
    order = torch.Generator().manual_seed(SEED)
    first = last = 0.0
    for epoch in range(EPOCHS):
        epoch_loss = 0.0
        for j in torch.randperm(len(examples), generator=order).tolist():
            loss = model(**batches[j]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            epoch_loss += float(loss.detach()) / len(examples)
        if epoch == 0:
            first = epoch_loss
        last = epoch_loss
    assert last < first / 3

    model.eval()
    eos = [processor.tokenizer.eos_token_id]
    answers = {}
    for (path, _, question, answer), image in zip(figures, figure_images, strict=True):
        inputs = family.bind(tiny, processor).prompt_inputs([image], question, None)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=16, do_sample=False, eos_token_id=eos)
        got = family.bind(tiny, processor).decode(out[0, inputs["input_ids"].shape[1] :])
        answers[path.name] = (got, answer)
    wrong = {name: pair for name, pair in answers.items() if pair[0] != pair[1]}
    assert not wrong, f"recall failed (got, want): {wrong}"
