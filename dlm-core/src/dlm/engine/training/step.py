"""The loss of one micro-batch: the unit the training loop differentiates.

Two ways to the same number. :func:`plain_loss` is what a transformers +
PEFT (TRL ``SFTTrainer``) step computes: logits over the whole vocabulary at
every position, then cross-entropy on the labelled ones. :func:`training_loss`
is dlm's: the model's own forward with ``logits_to_keep`` set to the
positions whose next token is labelled, so the LM head (152k-257k rows in
the real bases) runs on a few dozen completion tokens instead of every
image and prompt token; cross-entropy in fp32, averaged over the labelled
tokens exactly as transformers' ``ForCausalLMLoss`` does. Going through the
model's forward (not its submodules) keeps what the forward does after the
head, such as Gemma 2's final-logit softcapping, and keeps wrappers (PEFT,
DDP) in charge of their own hooks.

Frozen vision features come from a :class:`~dlm.engine.training.feature_cache.VisionFeatures`
when one is passed: computed once per image, then fed back through the
model's ``mm_encoder_outputs`` input instead of ``pixel_values``.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dlm.engine.training.feature_cache import VisionFeatures

IGNORE_INDEX = -100


def plain_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Mean cross-entropy over the labelled tokens, the way transformers computes it."""
    return model(**batch).loss


def label_positions(labels: Any) -> tuple[Any, Any]:
    """``(keep, targets)``: where a next-token prediction is scored, and its target.

    Position ``t`` predicts ``labels[t + 1]``; ``keep`` is a ``(batch, seq)``
    bool mask (the last column is never kept) and ``targets`` the labelled ids
    in the row-major order boolean indexing gives.
    """
    import torch

    shifted = labels[:, 1:]
    scored = shifted != IGNORE_INDEX
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = scored
    return keep, shifted[scored]


def training_loss(
    model: Any,
    batch: dict[str, Any],
    *,
    label_head: bool = True,
    features: VisionFeatures | None = None,
    image_keys: list[str] | None = None,
) -> Any:
    """Mean cross-entropy over the batch's labelled (completion) tokens.

    ``label_head`` computes logits at labelled positions only;
    ``features`` with ``image_keys`` (one key per image, in the order the
    collator flattened them) reuses frozen vision features. Either off gives
    the plain computation for that part; all off is :func:`plain_loss`.
    """
    use_features = features is not None and image_keys and "pixel_values" in batch
    if not label_head and not use_features:
        return plain_loss(model, batch)
    attach = (
        features.attach(model, batch, list(image_keys or []))
        if use_features and features is not None
        else nullcontext(batch)
    )
    with attach as inputs:
        if not label_head:
            return model(**inputs).loss
        return _label_head_loss(model, inputs)


def _label_head_loss(model: Any, inputs: dict[str, Any], reduction: str = "mean") -> Any:
    import torch.nn.functional as F

    labels = inputs["labels"]
    keep, targets = label_positions(labels)
    rest = {k: v for k, v in inputs.items() if k != "labels"}
    out = model(**rest, logits_to_keep=keep, use_cache=False)
    logits = out.logits
    if logits.dim() != 2 or logits.shape[0] != targets.shape[0]:
        # a forward that ignores logits_to_keep returns every position: pick ours
        logits = logits[keep]
    return F.cross_entropy(logits.float(), targets.to(logits.device), reduction=reduction)


def summed_loss(model: Any, batch: dict[str, Any]) -> tuple[float, int]:
    """``(summed cross-entropy, labelled tokens)`` of a batch, logits at labels only:
    the held-out check adds these up over batches for a token-weighted mean."""
    _keep, targets = label_positions(batch["labels"])
    if targets.numel() == 0:
        return 0.0, 0
    return float(_label_head_loss(model, batch, reduction="sum")), int(targets.numel())


__all__ = ["IGNORE_INDEX", "label_positions", "plain_loss", "summed_loss", "training_loss"]
