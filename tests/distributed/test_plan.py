"""The planner with several processes: DDP or FSDP, per-process memory, effective batch."""

from __future__ import annotations

import math

import attrs
import pytest

from dlm.errors import PlanError, UsageError
from dlm.format.document import TrainingSettings
from dlm.hardware.host import assume_host
from dlm.hardware.memory import estimate_memory
from dlm.hardware.plan import plan_training, usable_bytes
from dlm.hardware.sharding import (
    GATHERED_LAYERS,
    lm_layer_params,
    root_params,
    sharded_estimate,
    vision_layer_params,
)
from tests.hardware.bases import MISTRAL_SMALL_31_24B, QWEN2_VL_2B, REAL_BASES

DEFAULTS = TrainingSettings()


def plan(base, spec, settings=DEFAULTS, **kwargs):
    tokens = [base.image.max_image_tokens() + 60]
    return plan_training(
        base,
        assume_host(spec),
        example_tokens=tokens,
        example_images=[1],
        settings=settings,
        **kwargs,
    )


def test_one_process_is_single():
    p = plan(QWEN2_VL_2B, "cuda:80")
    assert p.strategy == "single" and p.processes == p.local_processes == 1
    assert p.to_dict()["strategy"] == "single"


def test_cpu_processes_share_the_ram():
    one = plan(QWEN2_VL_2B, "cpu:64", force=True)
    two = plan(QWEN2_VL_2B, "cpu:64", force=True, processes=2)
    assert two.strategy == "ddp" and two.local_processes == 2
    assert two.usable_bytes == usable_bytes(assume_host("cpu:64")) // 2 == one.usable_bytes // 2


def test_a_base_that_fits_one_gpu_trains_data_parallel():
    p = plan(QWEN2_VL_2B, "cuda:24x4", processes=4)
    assert p.strategy == "ddp"
    assert p.memory.weights == QWEN2_VL_2B.params.total * 2


def test_mistral_small_is_sharded_where_one_gpu_cannot_hold_it():
    # One 40 GB GPU cannot train it: refused, with the way out through FSDP.
    with pytest.raises(PlanError) as refused:
        plan(MISTRAL_SMALL_31_24B, "cuda:40x8")
    assert "--processes 8" in refused.value.hint and "FSDP" in refused.value.hint
    p = plan(MISTRAL_SMALL_31_24B, "cuda:40x8", processes=8)
    assert p.strategy == "fsdp" and p.fits
    assert p.memory.weights < MISTRAL_SMALL_31_24B.params.total * 2 / 4
    assert any(n.startswith("FSDP:") for n in p.notes)
    # On an 80 GB GPU it fits whole: plain data parallel.
    assert plan(MISTRAL_SMALL_31_24B, "cuda:80x8", processes=8).strategy == "ddp"


def test_too_few_gpus_even_sharded_is_refused_with_numbers():
    with pytest.raises(PlanError) as refused:
        plan(MISTRAL_SMALL_31_24B, "cuda:16x2", processes=2)
    assert "sharded with FSDP across 2 processes" in refused.value.message
    assert "more GPUs" in refused.value.hint


def test_sharding_can_be_asked_for():
    p = plan(QWEN2_VL_2B, "cuda:80x2", processes=2, sharding="fsdp")
    assert p.strategy == "fsdp"
    assert any("as asked" in n for n in p.notes)
    assert plan(QWEN2_VL_2B, "cuda:80x2", processes=2, sharding="ddp").strategy == "ddp"
    with pytest.raises(UsageError):
        plan(QWEN2_VL_2B, "cuda:80x2", processes=2, sharding="zero3")


@pytest.mark.parametrize(
    ("micro", "accum", "processes", "expect"),
    [
        (4, 1, 2, (2, 1, 4)),  # the recall document: 4 = 2 x 1 x 2
        (1, 8, 2, (1, 4, 8)),  # accumulation halves
        (2, 4, 4, (2, 1, 8)),
        (2, 3, 4, (2, 1, 8)),  # 6 rounded up to 8 (noted)
        (4, 1, 1, (4, 1, 4)),  # one process: exactly the document
    ],
)
def test_the_documents_effective_batch_stays(micro, accum, processes, expect):
    settings = attrs.evolve(DEFAULTS, micro_batch_size=micro, grad_accum=accum)
    p = plan(QWEN2_VL_2B, "cuda:80x4", settings=settings, processes=processes)
    assert (p.micro_batch, p.grad_accum, p.effective_batch) == expect
    if micro * accum % processes:
        assert any("rounded up" in n for n in p.notes)


def test_accumulation_only_document_is_divided_between_processes():
    settings = attrs.evolve(DEFAULTS, grad_accum=2)
    single = plan(QWEN2_VL_2B, "cuda:80", settings=settings)
    assert single.effective_batch == 4
    two = plan(QWEN2_VL_2B, "cuda:80x2", settings=settings, processes=2)
    assert two.effective_batch == 4 and two.micro_batch * two.grad_accum == 2


def test_multi_host_checks_devices_per_host():
    p = plan(QWEN2_VL_2B, "cuda:80x8", processes=16, local_processes=8)
    assert p.processes == 16 and p.local_processes == 8
    assert p.effective_batch % 16 == 0
    with pytest.raises(UsageError):
        plan(QWEN2_VL_2B, "cuda:80x4", processes=16, local_processes=8)
    with pytest.raises(UsageError):
        plan(QWEN2_VL_2B, "cuda:80x8", processes=16, local_processes=5)


def test_apple_silicon_has_one_device():
    with pytest.raises(UsageError, match="Apple Silicon"):
        plan(QWEN2_VL_2B, "mps:64", processes=2)


@pytest.mark.parametrize("base", REAL_BASES, ids=lambda b: b.key)
def test_sharded_estimate_parts(base):
    one = estimate_memory(
        base,
        precision="bf16",
        micro_batch=1,
        seq_len=base.image.max_image_tokens() + 60,
        images_per_example=1,
        lora_r=16,
        checkpointing=True,
    )
    world = 4
    shard = sharded_estimate(one, base, world)
    root = root_params(base)
    assert 0 < root < base.params.total
    assert root > base.vision.num_layers * vision_layer_params(base)  # the tower stays whole
    biggest = lm_layer_params(base)
    layered = base.params.total - root
    assert shard.weights == (math.ceil(layered / world) + root + GATHERED_LAYERS * biggest) * 2
    assert shard.optimizer == math.ceil(one.optimizer / world)
    assert shard.lora_weights == math.ceil(one.lora_weights / world)
    # activations, logits and LoRA gradients are a whole micro-batch's in every process
    assert shard.activations == one.activations and shard.logits == one.logits
    assert shard.lora_grads == one.lora_grads
    assert shard.total < one.total
    assert sharded_estimate(one, base, 1) == one
