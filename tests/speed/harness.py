"""Tiny bases loaded the way ``dlm train`` loads them, batches of mixed examples, gradients.

Shared by the speed tests: every lever is checked against the plain step on
the same model, the same batch and the same random draws.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import attrs

from dlm.records import ExampleKind, ImageRef, TrainingExample

TINY = ("tiny-qwen2-vl", "tiny-paligemma", "tiny-mistral3", "tiny-internvl")

COLOURS = [
    ((220, 20, 20), "white"),
    ((20, 40, 220), (245, 245, 200)),
    ((20, 200, 60), (40, 40, 40)),
]


@attrs.define
class Loaded:
    family: Any
    base: Any
    processor: Any
    model: Any  # PEFT-wrapped, LoRA B randomised so every LoRA tensor gets a gradient


def draw(path: Path, index: int, size: tuple[int, int] = (96, 96)) -> ImageRef:
    from PIL import Image, ImageDraw

    fill, background = COLOURS[index % len(COLOURS)]
    image = Image.new("RGB", size, background)  # type: ignore[arg-type]
    ImageDraw.Draw(image).ellipse([8, 8, size[0] - 8 - 4 * index, size[1] - 8], fill=fill)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return ImageRef(sha, path, path.name)


def load(key: str, home: Path, *, target_modules: Any = None, lora_dropout: float = 0.0) -> Loaded:
    import torch

    from dlm.engine.lora import attach_lora
    from dlm.format.document import TrainingSettings
    from dlm.plugins import get_registry

    registry = get_registry()
    base = registry.base(key)
    family = registry.family_for(base)
    base_dir = family.materialize(base, home)
    processor = family.load_processor(base, base_dir)
    model = family.load_model(base, base_dir, torch.float32, "cpu")
    settings = TrainingSettings(lora_dropout=lora_dropout, target_modules=target_modules)
    torch.manual_seed(0)
    model = attach_lora(model, base, family, settings)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)
    model.train()
    return Loaded(family, base, processor, model)


def qa(ref: ImageRef | None, question: str, answer: str, *extra: ImageRef) -> TrainingExample:
    images = ((ref,) if ref is not None else ()) + tuple(extra)
    kind = ExampleKind.QA if images else ExampleKind.TEXT_QA
    return TrainingExample(
        section_id=hashlib.sha256(question.encode()).hexdigest()[:16],
        origin="test.dlm:1",
        kind=kind,
        prompt=question,
        completion=answer,
        images=images,
    )


def collate(loaded: Loaded, examples: list[TrainingExample]) -> dict[str, Any]:
    from PIL import Image

    images = []
    for example in examples:
        row = []
        for ref in example.images:
            with Image.open(ref.blob_path) as img:
                img.load()
                row.append(loaded.family.bind(loaded.base).prepare_image(img))
        images.append(row)
    return loaded.family.bind(loaded.base, loaded.processor).collate(examples, images)


def keys(examples: list[TrainingExample]) -> list[str]:
    return [ref.sha256 for e in examples for ref in e.images]


def loss_and_grads(model: Any, compute: Any, seed: int = 1234) -> tuple[float, dict[str, Any]]:
    import torch

    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same dropout draws for every path
    loss = compute()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


def assert_same(
    reference: tuple[float, dict[str, Any]], other: tuple[float, dict[str, Any]]
) -> None:
    import torch

    ref_loss, ref_grads = reference
    loss, grads = other
    assert abs(loss - ref_loss) <= 1e-5 * max(1.0, abs(ref_loss)), (loss, ref_loss)
    assert set(grads) == set(ref_grads)
    assert ref_grads, "no LoRA gradient at all"
    for name, ref in ref_grads.items():
        scale = float(ref.abs().max()) + 1e-12
        diff = float((grads[name] - ref).abs().max())
        assert diff <= 1e-4 * scale, f"{name}: max diff {diff} vs scale {scale}"
        assert torch.isfinite(grads[name]).all()
