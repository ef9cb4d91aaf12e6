"""The loss of one micro-batch: the unit the training loop differentiates."""

from __future__ import annotations

from typing import Any


def training_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Mean cross-entropy over the batch's labelled (completion) tokens."""
    return model(**batch).loss
