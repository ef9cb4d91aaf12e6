"""LoRA branches that recompute their input instead of keeping copies of it.

PEFT's LoRA ``Linear`` computes ``lora_B(lora_A(dropout(x.to(fp32)))) * s``.
For the backward of ``lora_A`` autograd keeps what went into it: with
dropout, a dropped-out copy of the input (and its mask, or on the CPU a
noise tensor as large as the input); with a bf16 base, the fp32 copy PEFT
casts the input to. That is one or two input-sized tensors per adapted
projection per layer, the largest share of a LoRA step's saved
activations (see :mod:`dlm.hardware.memory`), while the branch itself is a
rank-r sliver of the layer's work.

Under :func:`lora_inputs_recomputed` each ``lora_A`` runs inside a
non-reentrant :func:`torch.utils.checkpoint.checkpoint` that also takes in
the cast and the dropout: autograd keeps only the input tensor itself
(which the q/k/v projections, or gate/up, share) and the RNG state, and
backward recomputes cast, dropout and ``lora_A`` from them. The checkpoint
restores the RNG state, so the recomputed dropout mask is the one the
forward drew: the same loss and the same LoRA gradients as PEFT's own
forward, for a few rank-r matmuls and one dropout pass more per layer.

This is the ``lora_recompute`` speed lever (:mod:`dlm.engine.training.levers`).
Nothing is renamed: the adapter's state dict, saving and loading are
PEFT's own.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _branch(weight: Any, bias: Any, dropout: Any, x: Any) -> Any:
    import torch.nn.functional as F

    return F.linear(dropout(x.to(weight.dtype)), weight, bias)


def _recomputed_lora_a(linear: Any, dropout: Any, x: Any) -> Any:
    import torch
    from torch.utils.checkpoint import checkpoint

    if not torch.is_grad_enabled():
        return _branch(linear.weight, linear.bias, dropout, x)
    return checkpoint(_branch, linear.weight, linear.bias, dropout, x, use_reentrant=False)


def _vanilla_lora_linears(model: Any) -> Iterator[Any]:
    """PEFT LoRA ``Linear`` layers without a variant (DoRA and the like keep PEFT's path)."""
    from peft.tuners.lora.layer import Linear

    for module in model.modules():
        if isinstance(module, Linear) and not getattr(module, "lora_variant", None):
            yield module


@contextmanager
def lora_inputs_recomputed(model: Any) -> Iterator[int]:
    """Within the block, every vanilla LoRA branch of ``model`` recomputes its
    input in backward; yields how many branches were changed. On exit PEFT's
    own forward is back (graphs built inside keep their recomputation)."""
    import torch

    undo: list[tuple[Any, str, Any, bool]] = []
    try:
        for layer in _vanilla_lora_linears(model):
            for name, linear in layer.lora_A.items():
                dropout = layer.lora_dropout[name]
                linear.forward = functools.partial(_recomputed_lora_a, linear, dropout)
                layer.lora_dropout[name] = torch.nn.Identity()
                undo.append(
                    (layer, name, dropout, layer.__dict__.get("cast_input_dtype_enabled", True))
                )
                # the cast happens inside the checkpoint, so PEFT must not copy first
                layer.cast_input_dtype_enabled = False
        yield len(undo)
    finally:
        for layer, name, dropout, casting in undo:
            del layer.lora_A[name].forward
            layer.lora_dropout[name] = dropout
            layer.cast_input_dtype_enabled = casting


__all__ = ["lora_inputs_recomputed"]
