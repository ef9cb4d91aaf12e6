"""The tiny InternVL base, built once per session into the shared DLM_HOME."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest


@attrs.frozen
class TinyInternVL:
    base: Any
    family: Any
    base_dir: Path
    processor: Any


@pytest.fixture(scope="session")
def tiny_internvl(session_home: Path) -> TinyInternVL:
    from dlm.plugins import get_registry, reset

    reset()
    registry = get_registry()
    base = registry.base("tiny-internvl")
    family = registry.family_for(base)
    base_dir = family.materialize(base, session_home)
    return TinyInternVL(base, family, base_dir, family.load_processor(base, base_dir))


@pytest.fixture(scope="session")
def tiny_internvl_model(tiny_internvl: TinyInternVL) -> Any:
    """The tiny model, fp32 on CPU. Shared: tests must not train it (copy it instead)."""
    import torch

    t = tiny_internvl
    return t.family.load_model(t.base, t.base_dir, torch.float32, "cpu").eval()
