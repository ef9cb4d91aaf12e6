"""The training plan: precision, batch and accumulation, checkpointing, overrides."""

from __future__ import annotations

import json
import math

import attrs
import pytest

from dlm.errors import PlanError, UsageError
from dlm.format.document import TrainingSettings
from dlm.hardware.host import GIB, assume_host
from dlm.hardware.memory import estimate_memory
from dlm.hardware.plan import (
    DEFAULT_EFFECTIVE_BATCH,
    lora_targets,
    native_precision,
    plan_training,
    usable_bytes,
)
from tests.hardware.bases import MISTRAL_SMALL_31_24B, PALIGEMMA_3B_224, QWEN2_VL_2B, REAL_BASES

DEFAULTS = TrainingSettings()


def plan(base, spec, tokens=None, images=None, settings=DEFAULTS, **kwargs):
    tokens = tokens or [base.image.max_image_tokens() + 60]
    images = images if images is not None else [1] * len(tokens)
    host = assume_host(spec) if isinstance(spec, str) else spec
    return plan_training(
        base, host, example_tokens=tokens, example_images=images, settings=settings, **kwargs
    )


def needs(base, precision, micro, checkpointing, seq, backend="cuda", images=1, labels=None):
    return estimate_memory(
        base,
        precision=precision,
        micro_batch=micro,
        seq_len=seq,
        images_per_example=images,
        lora_r=DEFAULTS.lora_r,
        checkpointing=checkpointing,
        lora_dropout=DEFAULTS.lora_dropout,
        backend=backend,
        logit_positions=labels,
    ).total


def cuda_host_holding(n_bytes: float):
    """An assumed GPU whose usable memory is just above ``n_bytes``."""
    return assume_host(f"cuda:{math.ceil(n_bytes / 0.95 / GIB * 100) / 100:.2f}")


# ------------------------------------------------------------------ precision


@pytest.mark.parametrize(
    ("spec", "precision"),
    [
        ("cuda:80", "bf16"),
        ("cuda:80:sm90", "bf16"),
        ("cuda:24:sm75", "fp16"),
        ("cuda:24:sm70", "fp16"),
        ("mps:64", "fp32"),
        ("mps:64:bf16", "bf16"),
        ("cpu:64", "fp32"),
    ],
)
def test_native_precision(spec, precision):
    assert native_precision(assume_host(spec)) == precision


def test_plan_uses_the_native_precision():
    assert plan(QWEN2_VL_2B, "cuda:80").precision == "bf16"
    assert plan(QWEN2_VL_2B, "cuda:40:sm75").precision == "fp16"
    assert plan(QWEN2_VL_2B, "mps:64").precision == "fp32"


def test_frontmatter_precision_overrides_with_a_warning_when_not_native():
    p = plan(QWEN2_VL_2B, "cuda:40:sm75", settings=TrainingSettings(precision="bf16"))
    assert p.precision == "bf16"
    assert any("bf16 is not native" in w for w in p.warnings)
    ok = plan(QWEN2_VL_2B, "cuda:80", settings=TrainingSettings(precision="fp32"))
    assert ok.precision == "fp32"
    assert ok.warnings == []
    assert ok.memory.weights == QWEN2_VL_2B.params.total * 4


def test_unknown_precision_is_refused():
    with pytest.raises(PlanError, match="int4"):
        plan(QWEN2_VL_2B, "cuda:80", settings=TrainingSettings(precision="int4"))


# ------------------------------------------------------------------ batching


def test_big_gpu_takes_the_whole_effective_batch_at_once():
    p = plan(QWEN2_VL_2B, "cuda:80", tokens=[640, 300, 500])
    assert (p.micro_batch, p.grad_accum, p.effective_batch) == (4, 1, DEFAULT_EFFECTIVE_BATCH)
    assert p.checkpointing is False
    assert p.seq_len == 640  # the longest example
    assert p.attn_implementation == "sdpa"
    assert p.fits


def test_largest_micro_batch_that_fits_then_accumulation():
    seq = 321
    # room for micro-batch 2 without checkpointing, not for 4
    host = cuda_host_holding(needs(PALIGEMMA_3B_224, "bf16", 2, False, seq))
    assert needs(PALIGEMMA_3B_224, "bf16", 4, False, seq) > usable_bytes(host)
    p = plan(PALIGEMMA_3B_224, host, tokens=[seq])
    assert (p.micro_batch, p.grad_accum, p.effective_batch) == (2, 2, 4)
    assert p.checkpointing is False
    assert p.expected_peak_bytes <= p.usable_bytes
    assert any("micro-batch 2 x accumulation 2" in n for n in p.notes)


def test_label_position_head_lets_a_larger_micro_batch_fit():
    # PaliGemma's 257k-row head over every position is the step's largest
    # part; planned for dlm's label-position head the same GPU takes more
    seq, completion = 321, 30
    host = cuda_host_holding(needs(PALIGEMMA_3B_224, "bf16", 4, False, seq, labels=completion))
    plain = plan(PALIGEMMA_3B_224, host, tokens=[seq])
    labelled = plan(PALIGEMMA_3B_224, host, tokens=[seq], example_labels=[completion])
    assert plain.micro_batch == 2
    assert labelled.micro_batch == 4
    assert labelled.memory.logit_positions == completion
    assert labelled.memory.logits == 4 * completion * 257216 * 12
    assert labelled.expected_peak_bytes <= labelled.usable_bytes


def test_label_positions_are_the_longest_completion():
    p = plan(QWEN2_VL_2B, "cuda:80", tokens=[640, 300, 500], example_labels=[12, 40, 7])
    assert p.memory.logit_positions == 40
    assert plan(QWEN2_VL_2B, "cuda:80", tokens=[640]).memory.logit_positions == 640
    with pytest.raises(ValueError, match="example_labels"):
        plan(QWEN2_VL_2B, "cuda:80", tokens=[640, 300], example_labels=[12])


def test_recomputed_lora_inputs_are_planned_when_asked():
    plain = plan(QWEN2_VL_2B, "cuda:80", tokens=[640])
    recomputed = plan(QWEN2_VL_2B, "cuda:80", tokens=[640], lora_recompute=True)
    assert recomputed.memory.lora_recompute and not plain.memory.lora_recompute
    assert recomputed.memory.activations < plain.memory.activations
    assert recomputed.memory.weights == plain.memory.weights


def test_checkpointing_only_when_nothing_fits_without_it():
    seq = 642
    without = needs(QWEN2_VL_2B, "bf16", 1, False, seq)
    with_ckpt = needs(QWEN2_VL_2B, "bf16", 1, True, seq)
    host = cuda_host_holding((without + with_ckpt) / 2)
    p = plan(QWEN2_VL_2B, host, tokens=[seq])
    assert p.checkpointing is True
    assert p.micro_batch * p.grad_accum == 4
    assert any("gradient checkpointing on" in n for n in p.notes)
    roomy = plan(QWEN2_VL_2B, cuda_host_holding(without), tokens=[seq])
    assert roomy.checkpointing is False
    assert roomy.micro_batch == 1 and roomy.grad_accum == 4


def test_document_batch_settings_are_kept():
    both = plan(QWEN2_VL_2B, "cuda:80", settings=TrainingSettings(micro_batch_size=2, grad_accum=8))
    assert (both.micro_batch, both.grad_accum, both.effective_batch) == (2, 8, 16)
    micro_only = plan(QWEN2_VL_2B, "cuda:80", settings=TrainingSettings(micro_batch_size=3))
    assert (micro_only.micro_batch, micro_only.grad_accum) == (3, 2)
    accum_only = plan(QWEN2_VL_2B, "cuda:80", settings=TrainingSettings(grad_accum=2))
    assert (accum_only.micro_batch, accum_only.grad_accum, accum_only.effective_batch) == (2, 2, 4)


def test_override_that_does_not_fit_is_kept_with_a_warning():
    settings = TrainingSettings(micro_batch_size=64)
    p = plan(QWEN2_VL_2B, "cuda:24", tokens=[642], settings=settings)
    assert p.micro_batch == 64
    assert p.checkpointing is True
    assert not p.fits
    (warning,) = [w for w in p.warnings if "micro_batch_size 64" in w]
    assert "GiB" in warning and "micro-batch" in warning


def test_override_that_needs_checkpointing_turns_it_on():
    seq = 642
    host = cuda_host_holding(needs(QWEN2_VL_2B, "bf16", 8, True, seq))
    assert needs(QWEN2_VL_2B, "bf16", 8, False, seq) > usable_bytes(host)
    p = plan(QWEN2_VL_2B, host, tokens=[seq], settings=TrainingSettings(micro_batch_size=8))
    assert p.checkpointing is True and p.fits
    assert p.warnings == []


def test_sequence_len_raised_note():
    tokens = [3025 + 55 + 40]
    settings = TrainingSettings(sequence_len=2048)
    p = plan(MISTRAL_SMALL_31_24B, "cuda:141", tokens=tokens, settings=settings)
    (note,) = [n for n in p.notes if "sequence_len" in n]
    assert "2048" in note and "3120" in note and "3025 image tokens" in note
    assert p.seq_len == 3120


def test_caller_notes_are_kept():
    p = plan(QWEN2_VL_2B, "cuda:80", notes=["sequence_len set to 642 to fit the longest example"])
    assert p.notes[0] == "sequence_len set to 642 to fit the longest example"


def test_longer_than_context_warns():
    p = plan(PALIGEMMA_3B_224, "cuda:141", tokens=[9000], force=True)
    assert any("context length of 8192" in w for w in p.warnings)


def test_processes_split_the_effective_batch():
    p = plan(QWEN2_VL_2B, "cuda:80x8", processes=2)
    assert p.processes == 2
    assert p.micro_batch * p.grad_accum == 2
    assert p.effective_batch == 4
    odd = plan(QWEN2_VL_2B, "cuda:80x8", processes=3)
    assert odd.effective_batch == 6
    assert any("rounded up" in n for n in odd.notes)


@pytest.mark.parametrize(("spec", "processes"), [("cuda:24", 2), ("cuda:80x2", 3), ("mps:64", 2)])
def test_more_processes_than_devices_is_misuse(spec, processes):
    with pytest.raises(UsageError):
        plan(QWEN2_VL_2B, spec, processes=processes, force=True)


def test_no_examples_is_refused():
    with pytest.raises(PlanError, match="no training examples"):
        plan_training(
            QWEN2_VL_2B,
            assume_host("cuda:80"),
            example_tokens=[],
            example_images=[],
            settings=DEFAULTS,
        )


def test_worst_example_sets_images_and_length():
    p = plan(QWEN2_VL_2B, "cuda:80", tokens=[700, 1300], images=[1, 2])
    assert p.seq_len == 1300
    assert p.images_per_example == 2
    assert p.memory.vision_output == p.micro_batch * 2 * 576 * 1536 * 2


@pytest.mark.parametrize(
    ("targets", "modules", "on_vision"),
    [
        (None, 7, False),
        (r".*language_model.*\.(q_proj|v_proj)", 2, False),
        (r".*\.(q_proj|v_proj)", 2, True),
        (("q_proj", "v_proj"), 2, True),
        ("all-linear", 7, True),
    ],
)
def test_lora_targets(targets, modules, on_vision):
    chosen, vision = lora_targets(targets)
    assert len(chosen) == modules
    assert vision is on_vision


def test_plan_is_json_and_records_force():
    p = plan(QWEN2_VL_2B, "cpu:64", force=True)
    data = json.loads(json.dumps(p.to_dict()))
    assert data["forced"] is True
    assert data["host"]["backend"] == "cpu"
    assert data["memory"]["total"] == p.expected_peak_bytes
    for key in (
        "precision",
        "micro_batch",
        "grad_accum",
        "effective_batch",
        "checkpointing",
        "attn_implementation",
        "seq_len",
        "warnings",
        "notes",
        "processes",
    ):
        assert key in data
    assert plan(QWEN2_VL_2B, "cuda:80").forced is False


@pytest.mark.parametrize("base", REAL_BASES, ids=lambda b: b.key)
def test_every_real_base_plans_on_a_big_gpu(base):
    tokens = [base.image.max_image_tokens() + 100]
    p = plan(base, "cuda:141:sm90", tokens=tokens)
    assert p.fits
    assert p.precision == "bf16"
    assert p.memory.weights == base.params.total * 2


def test_tiny_base_runs_anywhere():
    tiny = attrs.evolve(
        QWEN2_VL_2B,
        key="tiny-qwen2-vl",
        tiny=True,
        params=attrs.evolve(QWEN2_VL_2B.params, total=2_000_000),
        text=attrs.evolve(
            QWEN2_VL_2B.text,
            num_layers=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            num_kv_heads=1,
            vocab_size=1000,
        ),
        vision=attrs.evolve(
            QWEN2_VL_2B.vision,
            num_layers=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            patches_per_image=64,
        ),
        image=attrs.evolve(QWEN2_VL_2B.image, tokens_per_image=16),
    )
    for spec in ("cpu:2", "mps:8", "cuda:2:sm61"):
        p = plan(tiny, spec, tokens=[60])
        assert p.fits and not p.warnings
        assert p.micro_batch == 4
