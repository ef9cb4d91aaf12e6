"""The tiny InternVL learns image-conditioned answers with the engine's recall settings.

A plain torch + PEFT loop over the demo figures (4 captions + 4 bound Q/A,
the same question with a different answer per figure), with what the CLI
recall check uses: micro batch 1, 20 epochs = 160 steps, lr 3e-3, LoRA r 16
alpha 32 dropout 0 on the family's default targets, fp32, seed 7, cosine
schedule. Greedy answers must be exact, which needs the image.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from dlm.records import ExampleKind, ImageRef, TrainingExample
from tests.conftest import REPO
from tests.internvl.conftest import TinyInternVL

sys.path.insert(0, str(REPO / "demo"))
from figures import write_figures

SEED = 7
EPOCHS = 20
LR = 3e-3
WARMUP = 0.05


@pytest.mark.slow
def test_tiny_internvl_recalls_an_answer_per_image(
    tiny_internvl: TinyInternVL, tmp_path: Path
) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from PIL import Image
    from transformers import get_scheduler

    family, base, processor = tiny_internvl.family, tiny_internvl.base, tiny_internvl.processor
    rows = write_figures(tmp_path)
    examples: list[TrainingExample] = []
    images = []
    for file, caption, question, answer in rows:
        path = tmp_path / file
        ref = ImageRef(sha256=file.ljust(64, "0"), blob_path=path, source=file)
        with Image.open(path) as img:
            img.load()
            prepared = family.bind(base).prepare_image(img)
        examples.append(
            TrainingExample(
                file, f"{file}:1", ExampleKind.CAPTION, family.caption_prompt, caption, (ref,)
            )
        )
        examples.append(
            TrainingExample(file, f"{file}:2", ExampleKind.QA, question, answer, (ref,))
        )
        images += [[prepared], [prepared]]

    torch.manual_seed(SEED)
    model = family.load_model(base, tiny_internvl.base_dir, torch.float32, "cpu")
    config = LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        target_modules=family.lora_target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=LR, weight_decay=0.0)
    total = EPOCHS * len(examples)
    scheduler = get_scheduler(
        "cosine", optimizer, num_warmup_steps=int(WARMUP * total), num_training_steps=total
    )
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    losses = []
    threads = torch.get_num_threads()
    # a toy model on shared CPUs: one thread is ~30x faster than oversubscribed ones
    torch.set_num_threads(1)
    try:
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
    finally:
        torch.set_num_threads(threads)
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-8:]) / 8 < 0.05, losses[-8:]

    model.eval()
    tokenizer = processor.tokenizer
    stops = [tokenizer.convert_tokens_to_ids(t) for t in family.bind(base, processor).stop_tokens()]
    answers = {}
    for (file, _caption, question, answer), prepared in zip(rows, images[::2], strict=True):
        inputs = family.bind(base, processor).prompt_inputs(prepared, question, None)
        with torch.no_grad():
            out = model.generate(
                **inputs,
                max_new_tokens=16,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=tokenizer.pad_token_id,
            )
        got = family.bind(base, processor).decode(out[0, inputs["input_ids"].shape[1] :])
        answers[file] = (got, answer)
    wrong = {f: pair for f, pair in answers.items() if pair[0] != pair[1]}
    assert not wrong, f"recall failed: {wrong}"
