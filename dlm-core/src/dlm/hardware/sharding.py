"""Per-process memory of a run sharded with FSDP across ``world`` processes.

dlm shards with FSDP2 (``torch.distributed.fsdp.fully_shard``) in units of
one transformer layer (LM decoder layers and vision blocks: the model's
``_no_split_modules``) plus the root, which holds everything else
(embeddings, LM head, final norm, patch embedding, projector). At the peak
of a step each process holds:

- its ``1/world`` share of every layer's weights at rest;
- the root's weights whole: FSDP2 does not reshard the root after the
  forward pass, because the backward pass gathers it again at once;
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
    """Weights outside the layers: embeddings, LM head, projector, patch embedding."""
    in_layers = base.text.num_layers * lm_layer_params(base)
    in_layers += base.vision.num_layers * vision_layer_params(base)
    return max(0, base.params.total - in_layers)


def sharded_estimate(estimate: MemoryEstimate, base: BaseSpec, world: int) -> MemoryEstimate:
    """``estimate`` (one unsharded process) as one of ``world`` FSDP processes."""
    if world <= 1:
        return estimate
    d = precision_bytes(estimate.precision)
    root = min(root_params(base), base.params.total)
    layered = base.params.total - root
    gathered = GATHERED_LAYERS * max(lm_layer_params(base), vision_layer_params(base))
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
