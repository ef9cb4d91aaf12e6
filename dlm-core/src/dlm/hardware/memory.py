"""Peak memory of one LoRA training step on a vision-language base.

The model counts the tensors alive at the moment of the peak, which for a
LoRA step on a frozen base is the start of the backward pass: every tensor
the forward pass saved for backward is still alive, and the loss has just
materialised its gradients over the whole vocabulary. All sizes are bytes.
Symbols (per decoder layer unless said otherwise)::

    B   micro-batch            S   sequence length (image + text tokens)
    T   = B * S, LM positions  L   LM layers        V   vocabulary
    h   hidden size            q   heads * head_dim  i   intermediate size
    d   bytes per element at the training precision (2 for bf16/fp16, 4 for fp32)
    a   bytes per LoRA element (4: PEFT keeps adapters in fp32)
    p   LoRA dropout           r   LoRA rank

**Resident** (alive before the step and after it)::

    weights      = params.total * d
    lora_weights = lora_params * 4
    optimizer    = lora_params * 8          (AdamW exp_avg + exp_avg_sq, fp32)

**Saved LM activations** (per token, per layer)::

    norms        = 2 * 4h        RMSNorm upcasts its input to fp32 and keeps it
    attention    = d * 4q        q, k, v, output kept by SDPA; with a padding
                                 mask transformers repeats k/v to every head
    mlp          = 3 * d * i     gate output (for the activation's backward),
                                 activation output and up output (for the product)
    lora inputs  = for each adapted projection with input width w:
                     p > 0:   (a + m) * w   dropout output + its mask (m = 1: a bool
                                            mask on CUDA; m = d: elsewhere dropout
                                            multiplies by a noise tensor of the input's dtype)
                     d != a:  a * w         PEFT casts the input to fp32 per module
                     else:    d * w, once per distinct input tensor
                   with dlm's recomputed LoRA inputs (the ``lora_recompute``
                   lever) always the last: backward redoes cast and dropout
    activations  = T * L * (norms + attention + mlp + lora inputs + 7*a*r)
                   + T * 4h  (final norm)  + B * S^2 * (1 + d)  (attention mask)

With gradient checkpointing each layer keeps only its input (``d * h`` per
token) and one layer's full set is recomputed during backward::

    activations  = T * (L * d * h + one layer) + final norm + mask

**Logits**: ``B * P * V * 12``, where ``P`` is the positions the LM head
runs on: every one (``P = S``) in the plain transformers step, only the
labelled ones (``P`` = the longest completion) with dlm's label-position
head (the ``label_head`` lever, :mod:`dlm.engine.training.step`). The loss upcasts
the logits to fp32; cross entropy keeps its fp32 log-softmax for backward,
and backward allocates the fp32 gradient of that output and of its input
before freeing either: three fp32 copies of vocabulary x positions at the
peak (the model-dtype logits themselves are dropped with the model output
before backward). For PaliGemma's 257k vocabulary over every position this
is the largest single part; at labelled positions it is a few percent.

**Frozen vision tower**: nothing is saved for backward (no parameter or
input needs a gradient), so only its forward peak counts, and that peak
happens before the language model runs::

    vision_peak   = N * d * (6 * hv + 2 * iv)  (one layer: input, q/k/v, output,
                                                MLP hidden and activation)
                    + N^2 * d                  (only for towers that build a
                                                block-diagonal mask, Pixtral)
    vision_output = B * image_tokens * h * d   (features scattered into the LM input)

where ``N = B * images * patches_per_image`` (times tiles). With LoRA on the
vision tower its layers save activations like the LM's (same formulas with
``hv``, ``iv`` and an ungated MLP), alive at the LM's peak.

**Total**::

    dynamic  = max(vision_peak, vision_output + activations + logits + lora_grads
                                + vision_activations)
    overhead = runtime + 5% of dynamic   (CUDA context / MPS driver / the
                                          Python runtime; allocator slack)
    total    = weights + lora_weights + optimizer + dynamic + overhead

Calibration: against four peaks measured on an H200 (bf16, SDPA, LoRA r16 on
all LM linear layers, no dropout, no checkpointing; see
``reference-notes.md`` §4) ``total - overhead`` lands within 1% of each
measured ``max_memory_allocated``. On CPU at fp32 (``benchmarks/memory_calibration.py``)
``step_bytes`` is checked against the measured peak RSS growth of one
training step. Under bf16 *autocast* (Accelerate's mixed precision) the LoRA
inputs are saved at bf16 rather than fp32, so the estimate errs ~10% high
there: on the safe side.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from dlm.hardware.host import GIB
from dlm.records import BaseSpec

#: The LM projections LoRA can adapt, with the width of each one's input.
LM_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

PRECISION_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}

#: Bytes of one LoRA element: PEFT upcasts adapters of half-precision models to fp32.
ADAPTER_BYTES = 4

#: The loss keeps three fp32 vocabulary-wide tensors at the peak (see module docstring).
LOGIT_BYTES = 12

#: Memory the runtime needs beyond tensors: CUDA context and cuBLAS workspaces
#: (not counted by ``max_memory_allocated``), the Metal driver, or the Python
#: process with torch and transformers imported.
RUNTIME_BYTES = {"cuda": GIB // 2, "mps": GIB, "cpu": GIB // 2}

#: Caching-allocator slack on top of the tensors alive at the peak.
FRAGMENTATION = 0.05


@attrs.frozen
class MemoryEstimate:
    """Predicted peak memory of one training step, by part, in bytes."""

    weights: int
    lora_weights: int
    optimizer: int
    lora_grads: int
    activations: int
    logits: int
    vision_peak: int
    vision_output: int
    vision_activations: int
    overhead: int
    # the inputs the estimate was made for
    precision: str
    micro_batch: int
    seq_len: int
    images_per_example: int
    lora_r: int
    lora_params: int
    checkpointing: bool
    lora_on_vision: bool
    lora_dropout: float
    backend: str
    logit_positions: int  # per example: seq_len for the plain head
    lora_recompute: bool

    @property
    def resident(self) -> int:
        """What lives before and after the step: weights, adapter, optimizer states."""
        return self.weights + self.lora_weights + self.optimizer

    @property
    def lm_peak(self) -> int:
        return (
            self.vision_output
            + self.activations
            + self.logits
            + self.lora_grads
            + self.vision_activations
        )

    @property
    def step_bytes(self) -> int:
        """What the step allocates on top of the resident part (its peak growth)."""
        return max(self.vision_peak, self.lm_peak)

    @property
    def total(self) -> int:
        return self.resident + self.step_bytes + self.overhead

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data.update(
            resident=self.resident,
            step_bytes=self.step_bytes,
            total=self.total,
        )
        return data


def precision_bytes(precision: str) -> int:
    try:
        return PRECISION_BYTES[precision]
    except KeyError:
        raise ValueError(
            f"unknown precision {precision!r}; expected one of {', '.join(PRECISION_BYTES)}"
        ) from None


def head_dim(base: BaseSpec) -> int:
    """Attention head size of the LM: the base's ``TextConfig.head_dim``, else hidden / heads.

    Some bases' heads are narrower than hidden / heads (Mistral Small 3.1:
    32 heads of 128 with hidden 5120); their family declares it.
    """
    return base.text.head_dim or base.text.hidden_size // base.text.num_heads


def lora_param_count(
    base: BaseSpec,
    lora_r: int,
    *,
    lora_modules: Iterable[str] | None = None,
    lora_on_vision: bool = False,
) -> int:
    """Trainable LoRA parameters: ``r * (in + out)`` per adapted projection."""
    t = base.text
    q = t.num_heads * head_dim(base)
    kv = t.num_kv_heads * head_dim(base)
    shapes = {
        "q_proj": (t.hidden_size, q),
        "k_proj": (t.hidden_size, kv),
        "v_proj": (t.hidden_size, kv),
        "o_proj": (q, t.hidden_size),
        "gate_proj": (t.hidden_size, t.intermediate_size),
        "up_proj": (t.hidden_size, t.intermediate_size),
        "down_proj": (t.intermediate_size, t.hidden_size),
    }
    modules = _modules(lora_modules)
    per_layer = sum(lora_r * (shapes[m][0] + shapes[m][1]) for m in modules)
    count = per_layer * t.num_layers
    if lora_on_vision:
        v = base.vision
        # q, k, v, out (square) and the two MLP matrices of every vision layer
        per_vision_layer = lora_r * (
            4 * 2 * v.hidden_size + 2 * (v.hidden_size + v.intermediate_size)
        )
        count += per_vision_layer * v.num_layers
    return count


def _modules(lora_modules: Iterable[str] | None) -> tuple[str, ...]:
    if lora_modules is None:
        return LM_PROJECTIONS
    chosen = tuple(m for m in LM_PROJECTIONS if m in set(lora_modules))
    return chosen


def _lora_input_bytes(
    widths: list[tuple[int, int]], d: int, p: float, mask_bytes: int, recompute: bool = False
) -> int:
    """Bytes LoRA saves per token for its adapted projections.

    ``widths`` holds ``(input_width, input_group)``: projections in the same
    group read the same tensor (q/k/v read the normed hidden state), which
    is saved once when nothing copies it. ``recompute``: the branches keep
    only that shared input and redo cast and dropout in backward
    (:mod:`dlm.engine.training.lora_recompute`).
    """
    if p > 0 and not recompute:
        return sum((ADAPTER_BYTES + mask_bytes) * w for w, _ in widths)
    if d != ADAPTER_BYTES and not recompute:
        return sum(ADAPTER_BYTES * w for w, _ in widths)
    seen: dict[int, int] = {}
    for w, group in widths:
        seen[group] = w
    return sum(d * w for w in seen.values())


def layer_bytes_per_token(
    *,
    hidden: int,
    q: int,
    intermediate: int,
    d: int,
    lora_r: int,
    lora_dropout: float,
    modules: tuple[str, ...],
    gated: bool,
    dropout_mask_bytes: int = 1,
    lora_recompute: bool = False,
) -> int:
    """Bytes one transformer layer saves for backward, per token (no checkpointing).

    ``dropout_mask_bytes``: 1 where dropout keeps a bool mask (CUDA's fused
    kernel), else the element size (CPU and MPS keep a noise tensor).
    ``lora_recompute``: dlm's recomputed LoRA inputs (the ``lora_recompute`` lever).
    """
    norms = 2 * 4 * hidden
    attention = d * 4 * q
    mlp = (3 if gated else 1) * d * intermediate
    inputs = {
        "q_proj": (hidden, 0),
        "k_proj": (hidden, 0),
        "v_proj": (hidden, 0),
        "o_proj": (q, 1),
        "gate_proj": (hidden, 2),
        "up_proj": (hidden, 2),
        "down_proj": (intermediate, 3),
    }
    widths = [inputs[m] for m in modules]
    lora = _lora_input_bytes(widths, d, lora_dropout, dropout_mask_bytes, lora_recompute)
    lora += len(modules) * ADAPTER_BYTES * lora_r
    return norms + attention + mlp + lora


def estimate_memory(
    base: BaseSpec,
    *,
    precision: str,
    micro_batch: int,
    seq_len: int,
    images_per_example: int,
    lora_r: int,
    checkpointing: bool,
    lora_on_vision: bool = False,
    lora_dropout: float = 0.0,
    lora_modules: Iterable[str] | None = None,
    backend: str = "cuda",
    logit_positions: int | None = None,
    lora_recompute: bool = False,
) -> MemoryEstimate:
    """Estimate the peak memory of one training step (see the module docstring).

    ``lora_modules`` names the adapted LM projections (default: all seven);
    ``backend`` picks the runtime overhead. ``logit_positions`` is how many
    positions per example the LM head runs on: ``None`` for every position
    (the plain step), the longest completion for dlm's label-position head.
    ``lora_recompute`` counts dlm's recomputed LoRA inputs (one saved copy
    per distinct input, whatever the dropout and precision).
    """
    if micro_batch < 1 or seq_len < 1:
        raise ValueError("micro_batch and seq_len must be positive")
    d = precision_bytes(precision)
    t, v = base.text, base.vision
    q = t.num_heads * head_dim(base)
    modules = _modules(lora_modules)
    tokens = micro_batch * seq_len
    mask_bytes = 1 if backend == "cuda" else d

    lora_params = lora_param_count(
        base, lora_r, lora_modules=modules, lora_on_vision=lora_on_vision
    )
    weights = base.params.total * d
    lora_weights = lora_params * ADAPTER_BYTES
    optimizer = lora_params * 2 * ADAPTER_BYTES
    lora_grads = lora_params * ADAPTER_BYTES

    per_layer = layer_bytes_per_token(
        hidden=t.hidden_size,
        q=q,
        intermediate=t.intermediate_size,
        d=d,
        lora_r=lora_r,
        lora_dropout=lora_dropout,
        modules=modules,
        gated=True,
        dropout_mask_bytes=mask_bytes,
        lora_recompute=lora_recompute,
    )
    if checkpointing:
        per_token = t.num_layers * d * t.hidden_size + per_layer
    else:
        per_token = t.num_layers * per_layer
    final_norm = 4 * t.hidden_size
    mask = micro_batch * seq_len * seq_len * (1 + d)
    activations = tokens * (per_token + final_norm) + mask

    positions = seq_len if logit_positions is None else max(0, min(seq_len, logit_positions))
    logits = micro_batch * positions * t.vocab_size * LOGIT_BYTES

    # vision: images are the same for every example in the worst micro-batch
    images = micro_batch * images_per_example
    geometry = base.image
    tiles = max(1, geometry.max_image_tokens() // max(1, geometry.tokens_per_image))
    patches = images * tiles * v.patches_per_image
    vision_peak = patches * d * (6 * v.hidden_size + 2 * v.intermediate_size)
    if v.block_mask:  # one dense patches x patches mask over the batch's images
        vision_peak += patches * patches * d
    vision_output = images * geometry.max_image_tokens() * t.hidden_size * d
    vision_activations = 0
    if lora_on_vision and patches:
        per_vision_layer = layer_bytes_per_token(
            hidden=v.hidden_size,
            q=v.hidden_size,
            intermediate=v.intermediate_size,
            d=d,
            lora_r=lora_r,
            lora_dropout=lora_dropout,
            modules=("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"),
            gated=False,
            dropout_mask_bytes=mask_bytes,
            lora_recompute=lora_recompute,
        )
        if checkpointing:
            vision_activations = patches * (v.num_layers * d * v.hidden_size + per_vision_layer)
        else:
            vision_activations = patches * v.num_layers * per_vision_layer

    dynamic = max(
        vision_peak, vision_output + activations + logits + lora_grads + vision_activations
    )
    overhead = RUNTIME_BYTES.get(backend, GIB // 2) + int(FRAGMENTATION * dynamic)
    return MemoryEstimate(
        weights=weights,
        lora_weights=lora_weights,
        optimizer=optimizer,
        lora_grads=lora_grads,
        activations=activations,
        logits=logits,
        vision_peak=vision_peak,
        vision_output=vision_output,
        vision_activations=vision_activations,
        overhead=overhead,
        precision=precision,
        micro_batch=micro_batch,
        seq_len=seq_len,
        images_per_example=images_per_example,
        lora_r=lora_r,
        lora_params=lora_params,
        checkpointing=checkpointing,
        lora_on_vision=lora_on_vision,
        lora_dropout=lora_dropout,
        backend=backend,
        logit_positions=positions,
        lora_recompute=lora_recompute,
    )
