"""Which examples go into which micro-batch, epoch by epoch.

Deterministic from the run's seeded generator, so the same document and
seed give the same batches (and a bit-identical adapter on CPU).

A micro-batch is padded to its longest row, so a document that mixes a
long prose section with short image captions pays for the prose's length
on every row that shares its batch. Given the examples' token counts,
each epoch's random order is cut into windows of
:data:`WINDOW_MICRO_BATCHES` micro-batches, each window sorted by length
and cut again (similar lengths share a batch), and the micro-batches are
shuffled. That order is used only when it saves at least
:data:`MIN_SAVING` of the tokens the random order would compute; examples
of (nearly) equal length keep the plain random batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

#: How many micro-batches of a random order are regrouped by length together:
#: wide enough to find similar lengths, narrow enough to keep epochs random.
WINDOW_MICRO_BATCHES = 16
#: The least share of computed (padded) tokens length grouping must save.
MIN_SAVING = 0.10


@attrs.define
class BatchingStats:
    """What length-aware batching did over a run (recorded in ``training_run.json``)."""

    epochs: int = 0
    grouped: int = 0  # epochs that used length-grouped batches
    tokens: int = 0  # tokens the chosen batches compute, padding included
    random_tokens: int = 0  # what the random batches would have computed

    def note(self) -> str:
        saved = 1 - self.tokens / self.random_tokens if self.random_tokens else 0.0
        return (
            f"length-aware batches in {self.grouped}/{self.epochs} epochs; "
            f"{self.tokens} padded tokens instead of {self.random_tokens} ({saved:.0%} fewer)"
        )


def _cut(order: list[int], micro_batch: int) -> list[list[int]]:
    return [order[i : i + micro_batch] for i in range(0, len(order), micro_batch)]


def padded_tokens(chunks: list[list[int]], lengths: Sequence[int]) -> int:
    """Tokens the model computes for ``chunks``: every row padded to its batch's longest."""
    return sum(len(chunk) * max(lengths[i] for i in chunk) for chunk in chunks if chunk)


def length_grouped(
    order: list[int], lengths: Sequence[int], micro_batch: int, generator: Any
) -> list[list[int]]:
    """``order`` regrouped so each micro-batch holds examples of similar length."""
    import torch

    window = micro_batch * WINDOW_MICRO_BATCHES
    chunks: list[list[int]] = []
    for start in range(0, len(order), window):
        part = sorted(order[start : start + window], key=lambda i: -lengths[i])
        chunks.extend(_cut(part, micro_batch))
    shuffle = torch.randperm(len(chunks), generator=generator).tolist()
    return [chunks[i] for i in shuffle]


def epoch_micro_batches(
    n_examples: int,
    micro_batch: int,
    generator: Any,
    lengths: Sequence[int] | None = None,
    stats: BatchingStats | None = None,
) -> list[list[int]]:
    """A fresh random order each epoch, cut into micro-batches of example indices.

    With ``lengths`` (token counts per example), examples of similar length
    are batched together when that saves enough padding (see the module
    docstring); ``stats``, when given, adds up what that saved.
    """
    import torch

    order = torch.randperm(n_examples, generator=generator).tolist()
    plain = _cut(order, micro_batch)
    if lengths is None or micro_batch <= 1 or n_examples <= micro_batch:
        return plain
    if len(lengths) != n_examples:
        raise ValueError(f"{n_examples} examples but {len(lengths)} lengths")
    grouped = length_grouped(order, lengths, micro_batch, generator)
    grouped_tokens, plain_tokens = padded_tokens(grouped, lengths), padded_tokens(plain, lengths)
    use = grouped_tokens <= (1 - MIN_SAVING) * plain_tokens
    if stats is not None:
        stats.epochs += 1
        stats.grouped += int(use)
        stats.tokens += grouped_tokens if use else plain_tokens
        stats.random_tokens += plain_tokens
    return grouped if use else plain
