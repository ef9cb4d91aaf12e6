"""The tiny Qwen2-VL base, built once per session into the shared DLM_HOME."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest


@attrs.frozen
class TinyQwen2:
    base: Any
    family: Any
    base_dir: Path
    processor: Any


@pytest.fixture(scope="session")
def tiny_qwen2(session_home: Path) -> TinyQwen2:
    from dlm.plugins import get_registry, reset

    reset()
    registry = get_registry()
    base = registry.base("tiny-qwen2-vl")
    family = registry.family_for(base)
    base_dir = family.materialize(base, session_home)
    return TinyQwen2(base, family, base_dir, family.load_processor(base, base_dir))


@pytest.fixture(scope="session")
def tiny_qwen2_model(tiny_qwen2: TinyQwen2) -> Any:
    """The tiny model, fp32 on CPU. Shared: tests must not train it (copy it instead)."""
    import torch

    model = tiny_qwen2.family.load_model(tiny_qwen2.base, tiny_qwen2.base_dir, torch.float32, "cpu")
    return model.eval()
