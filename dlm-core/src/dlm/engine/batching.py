"""Which examples go into which micro-batch, epoch by epoch.

Deterministic from the run's seeded generator, so the same document and
seed give the same batches (and a bit-identical adapter on CPU).
"""

from __future__ import annotations

from typing import Any


def epoch_micro_batches(n_examples: int, micro_batch: int, generator: Any) -> list[list[int]]:
    """A fresh random order each epoch, cut into micro-batches of example indices."""
    import torch

    order = torch.randperm(n_examples, generator=generator).tolist()
    return [order[i : i + micro_batch] for i in range(0, len(order), micro_batch)]
