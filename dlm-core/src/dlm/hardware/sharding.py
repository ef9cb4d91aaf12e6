"""Per-process memory of a run sharded with FSDP across ``world`` processes.

dlm shards with FSDP2 (``torch.distributed.fsdp.fully_shard``) in units of
one LM decoder layer plus the root, which holds everything else
(embeddings, LM head, final norm, the vision tower and projector). The
vision tower stays in the root on purpose: a unit is gathered by a
collective every time it runs, and a process whose micro-batch has no
image (or whose features come from a cache) does not run the tower, so
per-block units would leave the processes waiting on each other. At the
peak of a step each process holds:

- its ``1/world`` share of every layer's weights at rest;
- the root's weights whole (the vision tower among them): FSDP2 does not
  reshard the root after the forward pass, because the backward pass
  gathers it again at once;
- two gathered layers: the one computing and the one prefetched;
- its ``1/world`` share of the LoRA weights and AdamW states (LoRA lives
  in the layers, so it is sharded with them);
- LoRA gradients whole: during accumulation they build up unsharded and
  are only reduce-scattered on the last micro-batch;
- activations, logits and vision features of its own micro-batch, as in an
  unsharded run (data parallel inside FSDP).
"""

from __future__ import annotations

import math

import attrs

from dlm.hardware.memory import MemoryEstimate, head_dim, precision_bytes
from dlm.records import BaseSpec

#: Layers gathered at once: the one computing and the one prefetched.
GATHERED_LAYERS = 2


def lm_layer_params(base: BaseSpec) -> int:
    """Weights of one LM decoder layer (attention, gated MLP, two norms)."""
    t = base.text
    q = t.num_heads * head_dim(base)
    kv = t.num_kv_heads * head_dim(base)
    return (
        t.hidden_size * (q + 2 * kv)
        + q * t.hidden_size
        + 3 * t.hidden_size * (t.intermediate_size)
        + 2 * t.hidden_size
    )


def vision_layer_params(base: BaseSpec) -> int:
    """Weights of one vision block (square q/k/v/out, two MLP matrices, two norms)."""
    v = base.vision
    return (
        4 * v.hidden_size * v.hidden_size
        + 2 * v.hidden_size * v.intermediate_size
        + (2 * v.hidden_size)
    )


def root_params(base: BaseSpec) -> int:
    """Weights outside the LM decoder layers: embeddings, LM head, vision tower, projector."""
    return max(0, base.params.total - base.text.num_layers * lm_layer_params(base))


def sharded_estimate(estimate: MemoryEstimate, base: BaseSpec, world: int) -> MemoryEstimate:
    """``estimate`` (one unsharded process) as one of ``world`` FSDP processes."""
    if world <= 1:
        return estimate
    d = precision_bytes(estimate.precision)
    root = min(root_params(base), base.params.total)
    layered = base.params.total - root
    gathered = GATHERED_LAYERS * lm_layer_params(base)
    weights = (math.ceil(layered / world) + root + min(gathered, layered)) * d
    return attrs.evolve(
        estimate,
        weights=weights,
        lora_weights=math.ceil(estimate.lora_weights / world),
        optimizer=math.ceil(estimate.optimizer / world),
    )


__all__ = [
    "GATHERED_LAYERS",
    "lm_layer_params",
    "root_params",
    "sharded_estimate",
    "vision_layer_params",
]
