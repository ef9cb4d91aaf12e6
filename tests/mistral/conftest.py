"""Fixtures for the Mistral 3 family: the tiny base built once per session, its processor."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from dlm_vl_mistral.bases import real_base, tiny_base
from dlm_vl_mistral.family import Mistral3Family

from dlm.records import BaseSpec, ExampleKind, TrainingExample
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "demo"))
from figures import write_figures


@pytest.fixture(scope="session")
def family() -> Mistral3Family:
    return Mistral3Family()


@pytest.fixture(scope="session")
def tiny() -> BaseSpec:
    return tiny_base()


@pytest.fixture(scope="session")
def real() -> BaseSpec:
    return real_base()


@pytest.fixture(scope="session")
def tiny_dir(family: Mistral3Family, tiny: BaseSpec, session_home: Path) -> Path:
    return family.materialize(tiny, session_home)


@pytest.fixture(scope="session")
def processor(family: Mistral3Family, tiny: BaseSpec, tiny_dir: Path) -> Any:
    return family.load_processor(tiny, tiny_dir)


@pytest.fixture(scope="session")
def figures(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str, str, str]]:
    """The demo figures on disk: (path, caption, question, answer)."""
    folder = tmp_path_factory.mktemp("figures")
    return [(folder / f, c, q, a) for f, c, q, a in write_figures(folder)]


@pytest.fixture(scope="session")
def figure_images(
    family: Mistral3Family, tiny: BaseSpec, figures: list[tuple[Path, str, str, str]]
) -> list[Any]:
    """The figures decoded and prepared as the engine does (RGB, pinned size)."""
    from PIL import Image

    images = []
    for path, *_ in figures:
        with Image.open(path) as image:
            images.append(family.bind(tiny).prepare_image(image.convert("RGB")))
    return images


def example(
    kind: ExampleKind,
    prompt: str,
    completion: str,
    *,
    images: int = 0,
    system_prompt: str | None = None,
) -> TrainingExample:
    """A training example; image refs are placeholders (collate takes the images themselves)."""
    from dlm.records import ImageRef

    refs = tuple(
        ImageRef(sha256=f"{i:064x}", blob_path=Path(f"/nonexistent/{i}"), source=f"fig{i}.png")
        for i in range(images)
    )
    return TrainingExample(
        section_id=f"{kind.value}-{prompt}-{completion}"[:40],
        origin="doc.dlm:1",
        kind=kind,
        prompt=prompt,
        completion=completion,
        images=refs,
        system_prompt=system_prompt,
    )
