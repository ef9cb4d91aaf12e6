"""Length-aware micro-batches: deterministic, complete, used only when they save padding."""

from __future__ import annotations

import pytest

from dlm.engine.training.batching import MIN_SAVING, epoch_micro_batches, padded_tokens


def _gen(seed: int = 7):
    import torch

    return torch.Generator().manual_seed(seed)


def _epochs(n, micro, lengths, seed=7, epochs=3):
    generator = _gen(seed)
    return [epoch_micro_batches(n, micro, generator, lengths) for _ in range(epochs)]


def test_without_lengths_the_batches_are_the_seeded_random_order() -> None:
    import torch

    batches = epoch_micro_batches(10, 4, _gen())
    order = torch.randperm(10, generator=_gen()).tolist()
    assert batches == [order[0:4], order[4:8], order[8:10]]


def test_mixed_lengths_are_grouped_deterministically_and_completely() -> None:
    # prose sections of ~600 tokens among image captions of ~80
    lengths = [80 + (i % 5) for i in range(24)] + [600 + i for i in range(8)]
    n, micro = len(lengths), 4
    first = _epochs(n, micro, lengths)
    assert first == _epochs(n, micro, lengths), "same seed, same batches"
    assert first != _epochs(n, micro, lengths, seed=8)
    for epoch in first:
        flat = sorted(i for chunk in epoch for i in chunk)
        assert flat == list(range(n)), "every example exactly once per epoch"
        assert all(len(chunk) <= micro for chunk in epoch)
    import torch

    order = torch.randperm(n, generator=_gen()).tolist()  # the first epoch's random order
    plain = [order[i : i + micro] for i in range(0, n, micro)]
    assert padded_tokens(first[0], lengths) < (1 - MIN_SAVING) * padded_tokens(plain, lengths)


def test_similar_lengths_keep_the_random_batches() -> None:
    import torch

    lengths = [100 + (i % 3) for i in range(16)]
    generator = _gen()
    batches = epoch_micro_batches(16, 4, generator, lengths)
    order = torch.randperm(16, generator=_gen()).tolist()
    assert batches == [order[i : i + 4] for i in range(0, 16, 4)]


@pytest.mark.parametrize("micro", [1, 40])
def test_nothing_to_group_with_one_row_batches_or_one_batch(micro: int) -> None:
    import torch

    lengths = [10 * (i + 1) for i in range(20)]
    batches = epoch_micro_batches(20, micro, _gen(), lengths)
    order = torch.randperm(20, generator=_gen()).tolist()
    assert batches == [order[i : i + micro] for i in range(0, 20, micro)]


def test_lengths_must_match_the_examples() -> None:
    with pytest.raises(ValueError):
        epoch_micro_batches(5, 2, _gen(), [1, 2, 3])
