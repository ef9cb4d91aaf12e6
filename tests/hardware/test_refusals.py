"""The refusal matrix, one row at a time, on assumed hosts.

Every refusal must give the numbers (needed vs available GiB) and the way
out; ``force`` lifts the rows it may lift and is recorded in the plan.
"""

from __future__ import annotations

import re

import attrs
import pytest

from dlm.errors import PlanError
from dlm.format.document import TrainingSettings
from dlm.hardware.host import assume_host
from dlm.hardware.plan import plan_training
from tests.hardware.bases import INTERNVL3_2B, MISTRAL_SMALL_31_24B, PALIGEMMA_3B_224, QWEN2_VL_2B

SETTINGS = TrainingSettings()
GIB_NUMBER = re.compile(r"\d+\.\d GiB")


def plan(base, spec, tokens=None, images=None, force=False):
    tokens = tokens or [base.image.tokens_per_image + 60]
    images = images if images is not None else [1] * len(tokens)
    return plan_training(
        base,
        assume_host(spec),
        example_tokens=tokens,
        example_images=images,
        settings=SETTINGS,
        force=force,
    )


def refusal(base, spec, **kwargs) -> PlanError:
    with pytest.raises(PlanError) as info:
        plan(base, spec, **kwargs)
    err = info.value
    assert err.exit_code == 1
    assert err.hint, "every refusal names the way out"
    # the numbers: at least what is needed and what the host has
    assert len(GIB_NUMBER.findall(err.message)) >= 2, err.message
    return err


def tiny(base):
    return attrs.evolve(
        base,
        key=f"tiny-{base.family}",
        tiny=True,
        params=attrs.evolve(base.params, total=3_000_000),
        text=attrs.evolve(
            base.text,
            num_layers=2,
            hidden_size=64,
            intermediate_size=128,
            num_heads=2,
            num_kv_heads=1,
            vocab_size=4000,
        ),
        vision=attrs.evolve(
            base.vision,
            num_layers=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            patches_per_image=64,
        ),
        image=attrs.evolve(base.image, tokens_per_image=16, max_tiles=1),
        extra={},
    )


# 1. a real base on the CPU ----------------------------------------------------


@pytest.mark.parametrize("base", [QWEN2_VL_2B, PALIGEMMA_3B_224, INTERNVL3_2B], ids=lambda b: b.key)
def test_real_base_on_cpu_is_refused(base):
    err = refusal(base, "cpu:64")
    assert base.key in err.message
    assert "no GPU" in err.message
    assert "64.0 GiB RAM" in err.message
    assert "--force" in err.hint and "tiny" in err.hint and "--assume" in err.hint


def test_real_base_on_cpu_with_force_runs_with_a_warning():
    p = plan(QWEN2_VL_2B, "cpu:64", force=True)
    assert p.forced is True
    assert p.precision == "fp32"
    assert p.fits
    assert any(w.startswith("FORCED: training qwen2-vl-2b-instruct on the CPU") for w in p.warnings)


@pytest.mark.parametrize(
    "base", [QWEN2_VL_2B, PALIGEMMA_3B_224, MISTRAL_SMALL_31_24B, INTERNVL3_2B]
)
def test_tiny_bases_always_train_on_cpu(base):
    p = plan(tiny(base), "cpu:4")
    assert p.precision == "fp32" and p.fits and p.forced is False
    assert p.warnings == []


# 2. CUDA below the base's need -------------------------------------------------


def test_gpu_smaller_than_the_base_is_refused():
    err = refusal(QWEN2_VL_2B, "cuda:4")
    assert "needs at least" in err.message and "one CUDA device" in err.message
    assert "4.0 GiB" in err.message
    assert "smaller base" in err.hint and "--assume" in err.hint


def test_gpu_smaller_than_the_base_is_refused_even_with_force():
    # forcing cannot make 48 GB of weights fit in 24 GB
    err = refusal(MISTRAL_SMALL_31_24B, "cuda:24", force=True)
    assert "weights 44.7 GiB in bf16" in err.message
    assert "24.0 GiB" in err.message


def test_old_gpu_plans_fp16_and_fits_a_2b_base():
    p = plan(QWEN2_VL_2B, "cuda:16:sm75")
    assert p.precision == "fp16" and p.fits


# 3. Apple Silicon below 16 GB --------------------------------------------------


@pytest.mark.parametrize("spec", ["mps:8", "mps:15.9", "mps:8:bf16"])
def test_small_mac_is_refused(spec):
    err = refusal(QWEN2_VL_2B, spec)
    assert "16.0 GiB" in err.message and "unified memory" in err.message
    assert "16 GB" in err.hint and "CUDA" in err.hint


def test_small_mac_is_refused_even_with_force():
    refusal(PALIGEMMA_3B_224, "mps:8", force=True)


def test_16gb_mac_trains_paligemma_in_fp32():
    p = plan(PALIGEMMA_3B_224, "mps:16", tokens=[321])
    assert p.precision == "fp32" and p.fits


def test_tiny_base_on_a_small_mac():
    assert plan(tiny(QWEN2_VL_2B), "mps:8").fits


# 4. a CUDA-first base on Apple Silicon ----------------------------------------


def test_cuda_first_base_on_a_mac_is_refused():
    err = refusal(MISTRAL_SMALL_31_24B, "mps:192:bf16", tokens=[3120])
    assert "CUDA-first" in err.message and "192.0 GiB" in err.message
    assert "--force" in err.hint


def test_cuda_first_base_forced_on_a_large_memory_mac():
    p = plan(MISTRAL_SMALL_31_24B, "mps:192:bf16", tokens=[3120], force=True)
    assert p.forced is True and p.fits
    assert any("FORCED" in w and "CUDA-first" in w for w in p.warnings)


def test_cuda_first_base_forced_on_a_mac_too_small_for_it():
    # fp32 on a Mac without bf16: ~90 GiB of weights alone
    err = refusal(MISTRAL_SMALL_31_24B, "mps:64", tokens=[3120], force=True)
    assert "even with --force" in err.message
    assert "CUDA GPU" in err.hint


def test_cuda_first_hint_without_force_says_when_force_cannot_help():
    err = refusal(MISTRAL_SMALL_31_24B, "mps:64", tokens=[3120])
    assert "even --force needs" in err.hint


# 5. a document that does not fit even at micro-batch 1 with checkpointing ----


def test_document_too_big_for_the_host_is_refused():
    # 24 images of 672² in one example
    err = refusal(QWEN2_VL_2B, "cuda:12", tokens=[24 * 576 + 100], images=[24])
    assert "does not fit" in err.message
    assert "13924 tokens" in err.message and "24 image(s)" in err.message
    assert "12.0 GiB" in err.message
    for way_out in ("shorten", "smaller base", "--assume", "--force"):
        assert way_out in err.hint


def test_document_too_big_forced_proceeds_loudly():
    p = plan(QWEN2_VL_2B, "cuda:12", tokens=[24 * 576 + 100], images=[24], force=True)
    assert p.forced is True
    assert not p.fits
    assert (p.micro_batch, p.checkpointing) == (1, True)
    assert any(w.startswith("FORCED") and "out-of-memory" in w for w in p.warnings)


def test_document_too_big_on_a_mac():
    err = refusal(PALIGEMMA_3B_224, "mps:16", tokens=[8000], images=[1])
    assert "unified memory" in err.message


def test_base_fits_but_document_does_not_is_row_5_not_row_2():
    # the base alone fits a 24 GiB GPU; this document does not
    err = refusal(QWEN2_VL_2B, "cuda:24", tokens=[60 * 576], images=[60])
    assert "this document does not fit" in err.message
