"""The tiny PaliGemma base, built once per session into the shared DLM_HOME."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest


@attrs.frozen
class TinyPaliGemma:
    base: Any
    family: Any
    base_dir: Path
    processor: Any


@pytest.fixture(scope="session")
def tiny_paligemma(session_home: Path) -> TinyPaliGemma:
    from dlm.plugins import get_registry, reset

    reset()
    registry = get_registry()
    base = registry.base("tiny-paligemma")
    family = registry.family_for(base)
    base_dir = family.materialize(base, session_home)
    return TinyPaliGemma(base, family, base_dir, family.load_processor(base, base_dir))


@pytest.fixture(scope="session")
def tiny_paligemma_model(tiny_paligemma: TinyPaliGemma) -> Any:
    """The tiny model, fp32 on CPU, eval mode. Shared: tests must not train it."""
    import torch

    model = tiny_paligemma.family.load_model(
        tiny_paligemma.base, tiny_paligemma.base_dir, torch.float32, "cpu"
    )
    return model.eval()


@pytest.fixture(scope="session")
def figures(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, list[tuple[str, str, str, str]]]:
    """The recall figures (demo/figures.py) drawn once: (folder, rows)."""
    import sys

    from tests.conftest import REPO

    sys.path.insert(0, str(REPO / "demo"))
    from figures import write_figures

    folder = tmp_path_factory.mktemp("paligemma-figures")
    return folder, write_figures(folder)


def make_examples(
    tiny: TinyPaliGemma,
    folder: Path,
    rows: list[tuple[str, str, str, str]],
    system_prompt: str | None = None,
) -> tuple[list[Any], list[list[Any]]]:
    """One caption and one bound Q/A per figure, as the engine builds them; with their images."""
    from PIL import Image

    from dlm.records import ExampleKind, ImageRef, TrainingExample

    examples, images = [], []
    for file, caption, question, answer in rows:
        path = folder / file
        ref = ImageRef(sha256=file, blob_path=path, source=f"figures/{file}")
        with Image.open(path) as img:
            prepared = tiny.family.bind(tiny.base).prepare_image(img)
        for kind, prompt, completion in (
            (ExampleKind.CAPTION, tiny.family.caption_prompt, caption),
            (ExampleKind.QA, question, answer),
        ):
            examples.append(
                TrainingExample(
                    section_id=file,
                    origin=f"doc.dlm:{len(examples) + 1}",
                    kind=kind,
                    prompt=prompt,
                    completion=completion,
                    images=(ref,),
                    system_prompt=system_prompt,
                )
            )
            images.append([prepared])
    return examples, images
