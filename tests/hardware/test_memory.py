"""The memory model: its formulas, and the four peaks measured on an H200."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

from dlm.hardware.memory import (
    GIB,
    LOGIT_BYTES,
    MemoryEstimate,
    estimate_memory,
    layer_bytes_per_token,
    lora_param_count,
)
from dlm.records import BaseSpec, ImageGeometry, ParamCounts, TextConfig, VisionConfig
from tests.hardware.bases import (
    INTERNVL3_2B,
    MISTRAL_SMALL_31_24B,
    PALIGEMMA_3B_224,
    QWEN2_VL_2B,
    REAL_BASES,
)

REPO = Path(__file__).resolve().parents[2]

QWEN2_VL_2B_448 = attrs.evolve(
    QWEN2_VL_2B,
    image=attrs.evolve(QWEN2_VL_2B.image, width=448, height=448, tokens_per_image=256),
    vision=attrs.evolve(QWEN2_VL_2B.vision, patches_per_image=1024),
)

# Measured on an H200 (benchmarks/results/2026-11-28-h200-baseline.jsonl, its README
# says how): bf16, SDPA, LoRA r16 on all LM linear layers, no checkpointing, random
# weights, transformers 5.17. The peak is torch's allocated bytes.
H200_RESULTS = REPO / "benchmarks" / "results" / "2026-11-28-h200-baseline.jsonl"
_H200_BASES = {
    ("paligemma", 256): PALIGEMMA_3B_224,
    ("qwen2vl", 2304): QWEN2_VL_2B,  # 672²: 2304 patches, 576 image tokens
    ("qwen2vl", 1024): QWEN2_VL_2B_448,
}


def _h200_points() -> list[tuple[str, BaseSpec, int, int, float]]:
    points = []
    for line in H200_RESULTS.read_text().splitlines():
        row = json.loads(line)
        base = _H200_BASES[(row["family"], row["vis_tokens"])]
        side = base.image.width
        label = f"{row['family']} {side}² b{row['batch']}"
        points.append((label, base, row["batch"], row["seq"], row["peak_gib"]))
    return points


H200_POINTS = _h200_points()


def test_the_h200_file_is_the_one_the_docs_cite() -> None:
    assert len(H200_POINTS) == 5
    assert ("qwen2vl 672² b4", 18.6) in [(p[0], p[4]) for p in H200_POINTS]


def h200(base: BaseSpec, batch: int, seq: int, **levers: Any) -> MemoryEstimate:
    return estimate_memory(
        base,
        precision="bf16",
        micro_batch=batch,
        seq_len=seq,
        images_per_example=1,
        lora_r=16,
        checkpointing=False,
        lora_dropout=0.0,  # PEFT's default, as measured
        backend="cuda",
        **levers,
    )


@pytest.mark.parametrize(("label", "base", "batch", "seq", "measured_gib"), H200_POINTS)
def test_h200_peaks_within_15_percent(label, base, batch, seq, measured_gib):
    estimate = h200(base, batch, seq)
    error = estimate.total / GIB / measured_gib - 1
    assert abs(error) <= 0.15, f"{label}: {estimate.total / GIB:.2f} GiB ({error:+.1%})"


@pytest.mark.parametrize(("label", "base", "batch", "seq", "measured_gib"), H200_POINTS)
def test_h200_tensor_bytes_within_3_percent(label, base, batch, seq, measured_gib):
    # the measured peak is torch's allocated bytes: the tensors alone, without the
    # runtime/allocator overhead the planner adds on top
    estimate = h200(base, batch, seq)
    tensors = estimate.total - estimate.overhead
    error = tensors / GIB / measured_gib - 1
    assert abs(error) <= 0.03, f"{label}: {tensors / GIB:.2f} GiB ({error:+.1%})"


def toy(**text_changes) -> BaseSpec:
    text = TextConfig(
        num_layers=2,
        hidden_size=8,
        intermediate_size=16,
        num_heads=2,
        num_kv_heads=1,
        vocab_size=100,
        max_position=512,
    )
    return BaseSpec(
        key="toy",
        family="toy",
        hub_id="",
        revision="",
        architecture="ToyForConditionalGeneration",
        license="",
        image=ImageGeometry(28, 28, 4, "<image>"),
        text=attrs.evolve(text, **text_changes),
        vision=VisionConfig(
            num_layers=1, hidden_size=4, intermediate_size=8, num_heads=1, patches_per_image=16
        ),
        params=ParamCounts(total=1000, vision=100, language=900),
        context_length=512,
    )


def test_toy_estimate_by_hand():
    # h=8, q=8 (2 heads of 4), i=16, 2 layers, V=100; bf16 (d=2); LoRA r=2, no dropout
    base = toy()
    e = estimate_memory(
        base,
        precision="bf16",
        micro_batch=3,
        seq_len=10,
        images_per_example=1,
        lora_r=2,
        checkpointing=False,
        backend="cuda",
    )
    tokens = 30
    # LoRA params per layer: r*(in+out) for q(8->8) k(8->4) v(8->4) o(8->8) gate/up(8->16) down(16->8)
    lora = 2 * (16 + 12 + 12 + 16 + 24 + 24 + 24)
    assert e.lora_params == 2 * lora
    assert e.weights == 1000 * 2
    assert e.lora_weights == 2 * lora * 4
    assert e.optimizer == 2 * lora * 8
    assert e.lora_grads == 2 * lora * 4
    # per layer, per token: norms 2*4h + attention d*4q + mlp 3*d*i
    #   + LoRA inputs cast to fp32 per module (a=4): q,k,v,gate,up read h; o reads q; down reads i
    #   + the LoRA A outputs: 7 * a * r
    per_layer = 2 * 4 * 8 + 2 * 4 * 8 + 3 * 2 * 16 + 4 * (5 * 8 + 8 + 16) + 7 * 4 * 2
    assert (
        layer_bytes_per_token(
            hidden=8,
            q=8,
            intermediate=16,
            d=2,
            lora_r=2,
            lora_dropout=0.0,
            modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
            gated=True,
        )
        == per_layer
    )
    mask = 3 * 10 * 10 * (1 + 2)
    assert e.activations == tokens * (2 * per_layer + 4 * 8) + mask
    assert e.logits == tokens * 100 * LOGIT_BYTES
    # vision: 3 images x 16 patches; one layer's peak; 4 tokens per image into the LM
    assert e.vision_peak == 48 * 2 * (6 * 4 + 2 * 8)
    assert e.vision_output == 3 * 4 * 8 * 2
    assert e.step_bytes == e.vision_output + e.activations + e.logits + e.lora_grads
    assert e.total == e.resident + e.step_bytes + e.overhead
    assert e.overhead == GIB // 2 + int(0.05 * e.step_bytes)


def test_fp32_saves_shared_lora_inputs_once():
    # at fp32 the adapter dtype equals the model's: q/k/v read the same normed
    # tensor, gate/up too, and nothing is copied
    per_layer = layer_bytes_per_token(
        hidden=8,
        q=8,
        intermediate=16,
        d=4,
        lora_r=2,
        lora_dropout=0.0,
        modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        gated=True,
    )
    assert per_layer == 2 * 4 * 8 + 4 * 4 * 8 + 3 * 4 * 16 + 4 * (8 + 8 + 8 + 16) + 7 * 4 * 2


def test_dropout_mask_is_bool_on_cuda_and_a_noise_tensor_elsewhere():
    kwargs = dict(
        precision="fp32",
        micro_batch=1,
        seq_len=10,
        images_per_example=1,
        lora_r=2,
        checkpointing=False,
        lora_dropout=0.1,
    )
    cuda = estimate_memory(toy(), backend="cuda", **kwargs)
    cpu = estimate_memory(toy(), backend="cpu", **kwargs)
    lora_inputs = 5 * 8 + 8 + 16  # elements per token per layer
    assert cpu.activations - cuda.activations == 10 * 2 * lora_inputs * (4 - 1)


def test_checkpointing_keeps_layer_inputs_plus_one_layer():
    base = QWEN2_VL_2B
    kwargs = dict(precision="bf16", micro_batch=2, seq_len=700, images_per_example=1, lora_r=16)
    full = estimate_memory(base, checkpointing=False, **kwargs)
    ckpt = estimate_memory(base, checkpointing=True, **kwargs)
    assert ckpt.activations < full.activations / 10
    assert ckpt.logits == full.logits  # the loss is not checkpointed
    assert ckpt.weights == full.weights
    per_layer = (full.activations - 2 * 700 * 700 * 3) / (1400 * 28) - 4 * 1536 / 28
    expected = 1400 * (28 * 2 * 1536 + per_layer + 4 * 1536) + 2 * 700 * 700 * 3
    assert ckpt.activations == pytest.approx(expected, rel=1e-9)


def test_activations_and_logits_scale_with_tokens():
    one = h200(QWEN2_VL_2B, 1, 642)
    four = h200(QWEN2_VL_2B, 4, 642)
    assert four.logits == 4 * one.logits
    assert four.activations == pytest.approx(4 * one.activations, rel=1e-9)
    assert four.weights == one.weights
    assert four.resident == one.resident


def test_paligemma_vocabulary_makes_the_logits_large():
    pali = h200(PALIGEMMA_3B_224, 4, 321)
    qwen = h200(QWEN2_VL_2B_448, 4, 321)
    assert pali.logits / qwen.logits == pytest.approx(257216 / 151936)
    assert pali.logits == 4 * 321 * 257216 * 12
    assert pali.logits > 3.5 * GIB


def test_label_position_head_counts_logits_only_where_labelled():
    # dlm's step runs the LM head at the completion tokens only (the
    # label_head lever): 30 positions of 321, not all of them
    plain = h200(PALIGEMMA_3B_224, 4, 321)
    labelled = h200(PALIGEMMA_3B_224, 4, 321, logit_positions=30)
    assert plain.logit_positions == 321
    assert labelled.logit_positions == 30
    assert labelled.logits == 4 * 30 * 257216 * LOGIT_BYTES
    assert plain.total - labelled.total == pytest.approx(
        (plain.logits - labelled.logits) * 1.05, rel=1e-6
    )  # the rest of the step is unchanged; the allocator slack shrinks with it
    assert labelled.activations == plain.activations
    # never more positions than the sequence has
    clamped = h200(PALIGEMMA_3B_224, 4, 321, logit_positions=10_000)
    assert clamped.logits == plain.logits


def test_recomputed_lora_inputs_keep_one_copy_per_distinct_input():
    # dlm's lora_recompute lever: no fp32 cast copies, no dropout outputs or
    # masks; each distinct input (q/k/v share one, gate/up another) kept once
    h, q, i, r = 1536, 1536, 8960, 16
    common = dict(hidden=h, q=q, intermediate=i, lora_r=r, gated=True)
    modules = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    plain = layer_bytes_per_token(d=2, lora_dropout=0.05, modules=modules, **common)
    recomputed = layer_bytes_per_token(
        d=2, lora_dropout=0.05, modules=modules, lora_recompute=True, **common
    )
    # plain: (fp32 copy + bool mask) per projection; recomputed: bf16, once per input
    assert plain - recomputed == (4 + 1) * (6 * h + i) - 2 * (h + q + h + i)
    bf16 = dict(precision="bf16", images_per_example=1, lora_r=16, checkpointing=False)
    kw = dict(micro_batch=4, seq_len=642, lora_dropout=0.05, backend="cuda", **bf16)
    assert (
        estimate_memory(QWEN2_VL_2B, lora_recompute=True, **kw).activations
        < 0.75 * estimate_memory(QWEN2_VL_2B, **kw).activations
    )


def test_precision_sets_weight_bytes():
    bf16 = h200(QWEN2_VL_2B, 1, 642)
    fp32 = estimate_memory(
        QWEN2_VL_2B,
        precision="fp32",
        micro_batch=1,
        seq_len=642,
        images_per_example=1,
        lora_r=16,
        checkpointing=False,
    )
    assert fp32.weights == 2 * bf16.weights == QWEN2_VL_2B.params.total * 4
    assert fp32.logits == bf16.logits  # the loss runs in fp32 either way


def test_frozen_vision_tower_is_transient():
    # the vision forward peak comes and goes before the LM runs: only the larger
    # of it and the LM's peak counts
    e = h200(QWEN2_VL_2B, 4, 642)
    assert 0 < e.vision_peak < e.lm_peak
    assert e.step_bytes == e.lm_peak
    assert e.vision_activations == 0


def test_pixtral_block_mask_over_all_images():
    # 4 images at 1540²: 48400 patches in one sequence and a dense 48400² mask
    e = estimate_memory(
        MISTRAL_SMALL_31_24B,
        precision="bf16",
        micro_batch=4,
        seq_len=3100,
        images_per_example=1,
        lora_r=16,
        checkpointing=True,
    )
    patches = 4 * 12100
    assert e.vision_peak >= patches * patches * 2
    no_mask = attrs.evolve(
        MISTRAL_SMALL_31_24B,
        vision=attrs.evolve(MISTRAL_SMALL_31_24B.vision, block_mask=False),
    )
    e2 = estimate_memory(
        no_mask,
        precision="bf16",
        micro_batch=4,
        seq_len=3100,
        images_per_example=1,
        lora_r=16,
        checkpointing=True,
    )
    assert e.vision_peak - e2.vision_peak == patches * patches * 2


def test_tiles_multiply_the_vision_work():
    e = estimate_memory(
        INTERNVL3_2B,
        precision="bf16",
        micro_batch=1,
        seq_len=3400,
        images_per_example=1,
        lora_r=16,
        checkpointing=False,
    )
    # 12 tiles + thumbnail, 256 tokens each
    assert e.vision_output == 13 * 256 * 1536 * 2
    assert e.vision_peak == 13 * 1025 * 2 * (6 * 1024 + 2 * 4096)


def test_mistral_head_dim_narrows_q():
    with_head_dim = lora_param_count(MISTRAL_SMALL_31_24B, 16)
    wide = lora_param_count(
        attrs.evolve(
            MISTRAL_SMALL_31_24B, text=attrs.evolve(MISTRAL_SMALL_31_24B.text, head_dim=None)
        ),
        16,
    )
    # q_proj and o_proj: 5120->4096 instead of 5120->5120; k/v: 8x128 instead of 8x160
    assert wide - with_head_dim == 40 * 16 * (2 * 1024 + 2 * 256)


def test_lora_on_vision_adds_tower_activations_and_params():
    base = PALIGEMMA_3B_224
    kwargs = dict(precision="bf16", micro_batch=2, seq_len=300, images_per_example=1, lora_r=16)
    lm_only = estimate_memory(base, checkpointing=False, **kwargs)
    both = estimate_memory(base, checkpointing=False, lora_on_vision=True, **kwargs)
    assert lm_only.vision_activations == 0
    assert both.vision_activations > 0
    assert both.lora_params > lm_only.lora_params
    assert both.total > lm_only.total


def test_fewer_lora_modules_fewer_params_and_bytes():
    kwargs = dict(
        precision="bf16",
        micro_batch=2,
        seq_len=300,
        images_per_example=1,
        lora_r=16,
        checkpointing=False,
    )
    qv = estimate_memory(QWEN2_VL_2B, lora_modules=("q_proj", "v_proj"), **kwargs)
    full = estimate_memory(QWEN2_VL_2B, **kwargs)
    assert qv.lora_params == 28 * 16 * ((1536 + 1536) + (1536 + 256))
    assert qv.activations < full.activations


def test_bad_inputs():
    with pytest.raises(ValueError, match="precision"):
        estimate_memory(
            QWEN2_VL_2B,
            precision="int8",
            micro_batch=1,
            seq_len=10,
            images_per_example=1,
            lora_r=16,
            checkpointing=False,
        )
    with pytest.raises(ValueError):
        estimate_memory(
            QWEN2_VL_2B,
            precision="bf16",
            micro_batch=0,
            seq_len=10,
            images_per_example=1,
            lora_r=16,
            checkpointing=False,
        )


@pytest.mark.parametrize("base", REAL_BASES, ids=lambda b: b.key)
def test_to_dict_is_json_ready(base):
    import json

    e = h200(base, 1, base.image.max_image_tokens() + 64)
    data = e.to_dict()
    json.dumps(data)
    assert data["total"] == e.total
    assert data["step_bytes"] == e.step_bytes


def test_head_dim_is_the_declared_one_else_hidden_over_heads():
    from dlm.hardware.memory import head_dim

    assert head_dim(MISTRAL_SMALL_31_24B) == 128
    undeclared = attrs.evolve(MISTRAL_SMALL_31_24B.text, head_dim=None)
    assert head_dim(attrs.evolve(MISTRAL_SMALL_31_24B, text=undeclared)) == 160
    assert head_dim(QWEN2_VL_2B) == 128
