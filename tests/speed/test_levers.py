"""Which levers a run pulls: defaults per backend, DLM_LEVERS, CUDA-only ones."""

from __future__ import annotations

import pytest

from dlm.engine.training.levers import NAMES, Levers, choose_levers, make_optimizer
from dlm.errors import UsageError


def test_defaults_per_backend() -> None:
    cpu = choose_levers("cpu", {})
    assert cpu.on() == ["label_head", "feature_cache", "length_batching", "lora_recompute"]
    cuda = choose_levers("cuda", {})
    assert cuda.on() == [
        "label_head",
        "feature_cache",
        "length_batching",
        "lora_recompute",
        "fused_optimizer",
    ]
    assert not cuda.compile, "compile is opt-in: not measured on a GPU"


@pytest.mark.parametrize(
    ("raw", "backend", "expected"),
    [
        ("none", "cpu", []),
        ("all", "cuda", list(NAMES)),
        ("all", "cpu", ["label_head", "feature_cache", "length_batching", "lora_recompute"]),
        ("label_head", "cpu", ["label_head"]),
        ("label_head, feature_cache", "cpu", ["label_head", "feature_cache"]),
        ("-feature_cache", "cpu", ["label_head", "length_batching", "lora_recompute"]),
        (
            "+compile,-length_batching,-lora_recompute",
            "cuda",
            ["label_head", "feature_cache", "fused_optimizer", "compile"],
        ),
        ("+compile", "mps", ["label_head", "feature_cache", "length_batching", "lora_recompute"]),
    ],
)
def test_dlm_levers(raw: str, backend: str, expected: list[str]) -> None:
    assert choose_levers(backend, {"DLM_LEVERS": raw}).on() == expected


@pytest.mark.parametrize("raw", ["fast", "label_head,-compile", "+turbo"])
def test_bad_dlm_levers_are_usage_errors(raw: str) -> None:
    with pytest.raises(UsageError) as info:
        choose_levers("cpu", {"DLM_LEVERS": raw})
    assert "DLM_LEVERS" in info.value.message and info.value.hint


def test_describe_names_each_lever() -> None:
    assert Levers.none().describe() == "none (plain step)"
    assert "LM head at labelled positions" in choose_levers("cpu", {}).describe()


def test_fused_adamw_only_for_cuda_tensors() -> None:
    import torch

    params = [torch.nn.Parameter(torch.zeros(3))]
    optimizer = make_optimizer(params, 1e-3, choose_levers("cuda", {}))
    assert not optimizer.defaults.get("fused")  # CPU tensors: the plain AdamW
