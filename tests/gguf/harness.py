"""Export a tiny base with a random LoRA through the exporter, and compare both runtimes.

A LoRA with random (nonzero) B matrices changes every LM projection, so the
merged model differs from the base everywhere; llama.cpp's next-token
distributions along transformers' greedy answer about an image must then match
transformers' within a tolerance, if merge, conversion and preprocessing all
agree. llama.cpp runs in its child process (:mod:`dlm_export_gguf.isolated`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import attrs

from tests.conftest import REPO

QUESTION = "What is in this picture?"


@attrs.frozen
class Tiny:
    base: Any
    family: Any
    base_dir: Path


def tiny(key: str, home: Path) -> Tiny:
    from dlm.plugins import get_registry

    registry = get_registry()
    base = registry.base(key)
    family = registry.family_for(base)
    return Tiny(base, family, family.materialize(base, home))


def random_lora(t: Tiny, out_dir: Path, *, target_modules: Any = None, seed: int = 0) -> Path:
    """Save a LoRA adapter (random A and B) on the family's default target modules."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = t.family.load_model(t.base, t.base_dir, dtype=torch.float32, device="cpu")
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=target_modules or t.family.lora_target_modules,
        init_lora_weights=False,  # B != 0: the merge must matter
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                # the tiny bases' own answers are one repeated token; this makes them image-
                # dependent sequences without drowning the base
                param.mul_(2.0)
    peft_model.save_pretrained(out_dir)
    return out_dir


def figures(folder: Path) -> list[Path]:
    import sys

    sys.path.insert(0, str(REPO / "demo"))
    from figures import write_figures

    return [folder / file for file, *_ in write_figures(folder)]


def smoke_example(t: Tiny, image: Path, question: str = QUESTION) -> Any:
    import hashlib

    from dlm.records import ExampleKind, ImageRef, TrainingExample

    ref = ImageRef(hashlib.sha256(image.read_bytes()).hexdigest(), image, image.name)
    return TrainingExample("s", "test:1", ExampleKind.QA, question, "unknown", (ref,))


def request(
    t: Tiny,
    adapter_dir: Path,
    out_dir: Path,
    *,
    quant: str = "F16",
    smoke_image: Path | None = None,
    system_prompt: str | None = None,
) -> Any:
    from dlm.records import ExportRequest

    return ExportRequest(
        document=out_dir.parent / "test.dlm",
        dlm_id="01TESTTESTTESTTESTTESTTEST",
        base=t.base,
        family=t.family,
        base_dir=t.base_dir,
        adapter_dir=adapter_dir,
        adapter_version="v0001",
        training_run={},
        out_dir=out_dir,
        system_prompt=system_prompt,
        export_settings={
            "default_quant": "Q4_K_M",
            "default_temperature": 0.7,
            "default_top_p": 0.9,
        },
        options={"quant": quant, "smoke": smoke_image is not None},
        smoke_examples=(smoke_example(t, smoke_image),) if smoke_image else (),
    )


def prepared_png(t: Tiny, image: Path) -> bytes:
    from PIL import Image

    with Image.open(image) as img:
        img.load()
        prepared = t.family.bind(t.base).prepare_image(img)
        buf = io.BytesIO()
        prepared.save(buf, format="PNG")
    return buf.getvalue()


def special_ids(t: Tiny) -> list[int]:
    """Token ids banned on both sides while comparing.

    Special/added tokens, so answers run their full length; byte pieces that
    are not a whole character, since the two runtimes assemble cut multi-byte
    characters differently (transformers writes U+FFFD, llama.cpp holds the
    bytes back past ``max_tokens``); and ids that print nothing (the padding
    rows past the tokenizer), which would hide where two answers part. What is
    left compares as text exactly as it does as tokens.
    """
    processor = t.family.load_processor(t.base, t.base_dir)
    tokenizer = getattr(processor, "tokenizer", processor)
    banned = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    for token_id in range(max(len(tokenizer), t.base.text.vocab_size)):
        text = tokenizer.decode([token_id]) if token_id < len(tokenizer) else ""
        if not text or "\ufffd" in text:
            banned.add(token_id)
    return sorted(banned)


@attrs.frozen
class Greedy:
    """One greedy answer in transformers: its token ids, text and raw log-softmax rows."""

    ids: tuple[int, ...]
    text: str
    rows: Any  # numpy (n, vocab): the distribution each id was chosen from


def transformers_greedy(
    t: Tiny, adapter_dir: Path, images: list[Path], question: str, system: str | None, n: int
) -> list[Greedy]:
    """Greedy answers from the base + adapter in transformers, per image, with their logits."""
    import torch
    from peft import PeftModel
    from PIL import Image

    model = t.family.load_model(t.base, t.base_dir, dtype=torch.float32, device="cpu")
    model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    processor = t.family.load_processor(t.base, t.base_dir)
    tokenizer = getattr(processor, "tokenizer", processor)
    stops = [
        tokenizer.convert_tokens_to_ids(s) for s in t.family.bind(t.base, processor).stop_tokens()
    ]
    banned = special_ids(t)
    out = []
    for image in images:
        with Image.open(image) as img:
            img.load()
            prepared = t.family.bind(t.base).prepare_image(img)
        inputs = t.family.bind(t.base, processor).prompt_inputs([prepared], question, system)
        with torch.inference_mode():
            generated = model.generate(
                **inputs,
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                suppress_tokens=banned,
                eos_token_id=stops,
                pad_token_id=stops[0],
                output_logits=True,
                return_dict_in_generate=True,
            )
        new = generated.sequences[0, inputs["input_ids"].shape[1] :]
        rows = torch.log_softmax(torch.stack([s[0] for s in generated.logits]).double(), dim=-1)
        out.append(
            Greedy(
                tuple(int(i) for i in new),
                tokenizer.decode(new, skip_special_tokens=True),
                rows.numpy(),
            )
        )
    return out


def llama_session(
    model: Path,
    mmproj: Path,
    image_tokens: tuple[int, int] | None,
    image_token: str | None = None,
) -> Any:
    from dlm_export_gguf.isolated import Session

    return Session(model, mmproj, image_tokens=image_tokens, image_token=image_token, n_ctx=2048)


def llama_forced(
    session: Any, pngs: list[bytes], question: str, system: str | None, forced: list[Greedy]
) -> list[Any]:
    """llama.cpp's log-softmax rows along each of transformers' answers (teacher forcing)."""
    import numpy as np
    from dlm_export_gguf.isolated import Question, scores

    questions = [
        Question(question, (png,), system=system, forced=g.ids)
        for png, g in zip(pngs, forced, strict=True)
    ]
    return [np.asarray(rows, dtype=np.float64) for rows in scores(session, questions)]


@attrs.frozen
class Parity:
    """How far llama.cpp's next-token distributions are from transformers', along one path.

    ``gap``: the largest |Δ log-probability| over transformers' ``top`` most
    likely tokens at any step. ``tie``: the largest amount by which llama.cpp
    preferred another (allowed) token over the one transformers chose; 0 when
    llama.cpp's greedy pick is the same at every step.
    """

    gap: float
    tie: float
    steps: int

    def __str__(self) -> str:
        return f"gap {self.gap:.4f}, tie {self.tie:.4f} over {self.steps} steps"


def parity(expected: list[Greedy], got: list[Any], banned: list[int], top: int = 10) -> Parity:
    import numpy as np

    gap = tie = 0.0
    steps = 0
    for greedy, rows in zip(expected, got, strict=True):
        assert rows.shape == greedy.rows.shape, (rows.shape, greedy.rows.shape)
        for step, token in enumerate(greedy.ids):
            hf, ll = greedy.rows[step], rows[step]
            best = np.argsort(hf)[-top:]
            gap = max(gap, float(np.abs(hf[best] - ll[best]).max()))
            allowed = ll.copy()
            allowed[banned] = -np.inf
            tie = max(tie, float(allowed.max() - ll[token]))
            steps += 1
    return Parity(gap, tie, steps)
