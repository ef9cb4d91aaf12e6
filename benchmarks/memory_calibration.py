"""Calibrate the planner's memory model against measured training steps.

For each family a random-weight model is built straight from its
transformers classes (real vocabulary size, real image-token counts, fewer
and narrower layers so one step runs on a couple of CPU cores in seconds),
wrapped with PEFT LoRA (r16, the language model's linear layers only) and
put through one training step: forward, backward, AdamW step. Each
measurement runs in a fresh subprocess, so nothing from a previous one
(allocations, allocator state, the high-water mark) leaks into it.

How memory is measured
    CPU: the kernel's resident-set high-water mark (``VmHWM``). After the
    model, adapter, optimizer and batch are built the child notes its
    current RSS and resets the mark (writing ``5`` to
    ``/proc/self/clear_refs``), runs the step, and reads the mark again:
    growth = peak - RSS before the step. glibc is started with a fixed
    ``MALLOC_MMAP_THRESHOLD_`` so every tensor-sized allocation is its own
    mapping, returned to the kernel the moment torch frees it, and RSS
    follows live tensor bytes instead of a heap that only grows.
    CUDA (``--device cuda``): ``torch.cuda.max_memory_allocated`` after
    ``reset_peak_memory_stats``, growth measured the same way.

What is compared
    The estimate's ``step_bytes`` (what the step allocates on top of the
    weights, adapter and optimizer states already resident) against the
    measured growth of a steady-state step. A warm-up step at batch 1 runs
    first (``--warmup``): the very first step also pays one-time costs
    (thread pools, kernel caches; ~50 MiB on the CPU) and allocates the AdamW
    states, which belong to the runtime overhead and the resident part.
    ``--step plain`` measures the transformers step (the LM head over every
    position); ``--step dlm`` measures dlm's (:func:`dlm.engine.training.step.training_loss`,
    logits at labelled positions only, LoRA inputs recomputed in backward)
    against the estimate the planner makes for ``dlm train``
    (``logit_positions`` = the labelled tokens, ``lora_recompute``).

Usage::

    python benchmarks/memory_calibration.py               # CPU, every family, batch 1 and 4
    python benchmarks/memory_calibration.py --json
    python benchmarks/memory_calibration.py --family paligemma --batch 1
    python benchmarks/memory_calibration.py --step dlm    # dlm train's label-position head
    python benchmarks/memory_calibration.py --device cuda --scale full --precision bf16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FAMILIES = ("qwen2-vl", "paligemma", "mistral3", "internvl")

LORA_REGEX = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
LORA_R = 16
LORA_DROPOUT = 0.05  # dlm's default training.lora_dropout
TEXT_TOKENS = 40  # prompt + completion tokens after the image in every example
ACCEPT = 0.25  # acceptance on the CPU: |error| <= 25%

# Mid-size language models: every family gets the same narrow, shallow LM so
# the families differ where they really do (vocabulary, image tokens, vision
# tower, MLP activation, attention mask).
MID_TEXT = {
    "layers": 6,
    "hidden": 512,
    "intermediate": 2048,
    "heads": 4,
    "kv_heads": 2,
    "head_dim": 128,
}
LM_TEXT = {
    "layers": 12,
    "hidden": 512,
    "intermediate": 2048,
    "heads": 4,
    "kv_heads": 2,
    "head_dim": 128,
}
MID_VISION = {"layers": 2, "hidden": 256, "intermediate": 1024, "heads": 4}


def case(family: str, scale: str = "mid", image_size: int | None = None) -> dict[str, Any]:
    """Hyperparameters of one calibration model (shared by parent and child).

    ``mid`` runs on the CPU with the real vocabulary, where the loss over the
    vocabulary is most of the step; ``lm`` swaps in an 8k vocabulary and a
    deeper LM so the saved activations dominate instead (together they check
    both big terms of the model); ``full`` is the real base's size (GPU only).
    Image sizes: 448² for Qwen2-VL (256 tokens, the H200 point's 448²
    geometry), 224² PaliGemma (256), 448² one-tile InternVL (256). Mistral's
    real 1540² makes a 12100² block mask per image in the Pixtral tower
    (and 3025 tokens x 131k vocabulary of logits per example), so the CPU
    case uses 448² (256 tokens); ``full`` uses 1540².
    """
    full_text = {
        "qwen2-vl": dict(
            layers=28, hidden=1536, intermediate=8960, heads=12, kv_heads=2, head_dim=128
        ),
        "paligemma": dict(
            layers=18, hidden=2048, intermediate=16384, heads=8, kv_heads=1, head_dim=256
        ),
        "mistral3": dict(
            layers=40, hidden=5120, intermediate=32768, heads=32, kv_heads=8, head_dim=128
        ),
        "internvl": dict(
            layers=28, hidden=1536, intermediate=8960, heads=12, kv_heads=2, head_dim=128
        ),
    }[family]
    full_vision = {
        "qwen2-vl": dict(layers=32, hidden=1280, intermediate=5120, heads=16),
        "paligemma": dict(layers=27, hidden=1152, intermediate=4304, heads=16),
        "mistral3": dict(layers=24, hidden=1024, intermediate=4096, heads=16),
        "internvl": dict(layers=24, hidden=1024, intermediate=4096, heads=16),
    }[family]
    vocab = {"qwen2-vl": 151936, "paligemma": 257216, "mistral3": 131072, "internvl": 151674}[
        family
    ]
    default_size = {"qwen2-vl": 448, "paligemma": 224, "mistral3": 448, "internvl": 448}[family]
    if scale == "full":
        default_size = {"qwen2-vl": 672, "paligemma": 224, "mistral3": 1540, "internvl": 448}[
            family
        ]
    size = image_size or default_size
    grid = size // 14
    if family == "paligemma":
        patches, image_tokens, extra_tokens = grid * grid, grid * grid, 1  # + <bos>
    elif family == "internvl":
        # pixel shuffle 0.5 merges 2x2 patches; the tower adds a class token
        patches, image_tokens, extra_tokens = grid * grid + 1, (grid // 2) ** 2, 2
    elif family == "qwen2-vl":
        patches, image_tokens, extra_tokens = grid * grid, (grid // 2) ** 2, 2
    else:  # mistral3: 2x2 merge, one [IMG_BREAK]/[IMG_END] per row of merged tokens
        patches, image_tokens, extra_tokens = grid * grid, (grid // 2) ** 2, grid // 2
    if scale == "lm":
        text = dict(LM_TEXT, vocab=8192)
    else:
        text = dict(full_text if scale == "full" else MID_TEXT, vocab=vocab)
    vision = dict(full_vision if scale == "full" else MID_VISION, patches=patches)
    # special token ids: the real ones, or the top of a reduced vocabulary
    real_ids = {
        "qwen2-vl": {"image": 151655, "start": 151652, "end": 151653},
        "paligemma": {"image": 256000, "bos": 2},
        "mistral3": {"image": 10, "break": 12, "end": 13},
        "internvl": {"image": 151667, "start": 151665, "end": 151666},
    }[family]
    if text["vocab"] <= max(real_ids.values()):
        top = text["vocab"]
        real_ids = {name: top - 1 - n for n, name in enumerate(real_ids)}
    return {
        "family": family,
        "scale": scale,
        "tokens": real_ids,
        "image_size": size,
        "image_tokens": image_tokens,
        "seq_len": image_tokens + extra_tokens + TEXT_TOKENS,
        "text": text,
        "vision": vision,
    }


# ---------------------------------------------------------------- the estimate


def base_spec(spec: dict[str, Any], params: int) -> Any:
    """The BaseSpec the planner would see for this calibration model."""
    from dlm.records import BaseSpec, ImageGeometry, ParamCounts, TextConfig, VisionConfig

    t, v = spec["text"], spec["vision"]
    architecture = {
        "qwen2-vl": "Qwen2VLForConditionalGeneration",
        "paligemma": "PaliGemmaForConditionalGeneration",
        "mistral3": "Mistral3ForConditionalGeneration",
        "internvl": "InternVLForConditionalGeneration",
    }[spec["family"]]
    return BaseSpec(
        key=f"calibration-{spec['family']}",
        family=spec["family"],
        hub_id="",
        revision="",
        architecture=architecture,
        license="",
        image=ImageGeometry(
            spec["image_size"], spec["image_size"], spec["image_tokens"], "<image>"
        ),
        text=TextConfig(
            num_layers=t["layers"],
            hidden_size=t["hidden"],
            intermediate_size=t["intermediate"],
            num_heads=t["heads"],
            num_kv_heads=t["kv_heads"],
            vocab_size=t["vocab"],
            max_position=32768,
            head_dim=t["head_dim"],
        ),
        vision=VisionConfig(
            num_layers=v["layers"],
            hidden_size=v["hidden"],
            intermediate_size=v["intermediate"],
            num_heads=v["heads"],
            patches_per_image=v["patches"],
            # transformers' Pixtral builds one dense mask over a batch's images
            block_mask=spec["family"] == "mistral3",
        ),
        params=ParamCounts(total=params, vision=0, language=params),
        context_length=32768,
    )


def predict(
    spec: dict[str, Any],
    batch: int,
    params: int,
    precision: str,
    device: str,
    logit_positions: int | None = None,
    lora_recompute: bool = False,
) -> Any:
    from dlm.hardware.memory import estimate_memory

    return estimate_memory(
        base_spec(spec, params),
        precision=precision,
        micro_batch=batch,
        seq_len=spec["seq_len"],
        images_per_example=1,
        lora_r=LORA_R,
        checkpointing=False,
        lora_dropout=LORA_DROPOUT,
        backend=device,
        logit_positions=logit_positions,
        lora_recompute=lora_recompute,
    )


def predict_measured(
    spec: dict[str, Any], batch: int, result: dict[str, Any], precision: str, device: str
) -> Any:
    """The estimate for the step a :func:`child` measured: for ``dlm``'s step the
    planner's (logits at the scored positions, LoRA inputs recomputed)."""
    dlm = result.get("step") == "dlm"
    positions = result["scored_positions"] if dlm else None
    return predict(spec, batch, result["params"], precision, device, positions, dlm)


# ---------------------------------------------------------------- the child


def _build_model(spec: dict[str, Any]) -> Any:
    import transformers as tf

    t, v, family = spec["text"], spec["vision"], spec["family"]
    size, tok = spec["image_size"], spec["tokens"]
    common = dict(
        vocab_size=t["vocab"],
        hidden_size=t["hidden"],
        intermediate_size=t["intermediate"],
        num_hidden_layers=t["layers"],
        num_attention_heads=t["heads"],
        num_key_value_heads=t["kv_heads"],
        head_dim=t["head_dim"],
        max_position_embeddings=32768,
    )
    if family == "qwen2-vl":
        config: Any = tf.Qwen2VLConfig(
            text_config=dict(common, rms_norm_eps=1e-6),
            vision_config=dict(
                depth=v["layers"],
                embed_dim=v["hidden"],
                hidden_size=t["hidden"],
                mlp_ratio=v["intermediate"] // v["hidden"],
                num_heads=v["heads"],
            ),
            image_token_id=tok["image"],
            vision_start_token_id=tok["start"],
            vision_end_token_id=tok["end"],
            tie_word_embeddings=True,
        )
        return tf.Qwen2VLForConditionalGeneration(config)
    if family == "paligemma":
        config = tf.PaliGemmaConfig(
            vision_config=dict(
                model_type="siglip_vision_model",
                hidden_size=v["hidden"],
                intermediate_size=v["intermediate"],
                num_hidden_layers=v["layers"],
                num_attention_heads=v["heads"],
                image_size=size,
                patch_size=14,
                projection_dim=t["hidden"],
            ),
            text_config=dict(common, model_type="gemma"),
            projection_dim=t["hidden"],
            hidden_size=t["hidden"],
            vocab_size=t["vocab"],
            image_token_index=tok["image"],
        )
        return tf.PaliGemmaForConditionalGeneration(config)
    if family == "mistral3":
        config = tf.Mistral3Config(
            vision_config=dict(
                model_type="pixtral",
                hidden_size=v["hidden"],
                intermediate_size=v["intermediate"],
                num_hidden_layers=v["layers"],
                num_attention_heads=v["heads"],
                image_size=size,
                patch_size=14,
            ),
            text_config=dict(common, model_type="mistral"),
            image_token_index=tok["image"],
            spatial_merge_size=2,
            tie_word_embeddings=True,
        )
        return tf.Mistral3ForConditionalGeneration(config)
    config = tf.InternVLConfig(
        vision_config=dict(
            hidden_size=v["hidden"],
            intermediate_size=v["intermediate"],
            num_hidden_layers=v["layers"],
            num_attention_heads=v["heads"],
            image_size=[size, size],
            patch_size=[14, 14],
        ),
        text_config=dict(common, model_type="qwen2"),
        image_token_id=tok["image"],
        image_seq_length=spec["image_tokens"],
        downsample_ratio=0.5,
        tie_word_embeddings=True,
    )
    return tf.InternVLForConditionalGeneration(config)


def _build_batch(spec: dict[str, Any], batch: int, device: str, dtype: Any) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(0)
    family, n_img, size = spec["family"], spec["image_tokens"], spec["image_size"]
    tok = spec["tokens"]
    text = torch.randint(100, spec["text"]["vocab"] - 16, (TEXT_TOKENS,), generator=g).tolist()
    grid = size // 14
    if family == "qwen2-vl":
        ids = [tok["start"]] + [tok["image"]] * n_img + [tok["end"]] + text
        types = [0] + [1] * n_img + [0] + [0] * len(text)
        pixels = torch.randn(batch * grid * grid, 3 * 2 * 14 * 14, generator=g)
        extra = {
            "pixel_values": pixels,
            "image_grid_thw": torch.tensor([[1, grid, grid]] * batch),
            "mm_token_type_ids": torch.tensor([types] * batch),
        }
        prompt_len = n_img + 2 + TEXT_TOKENS // 2
    elif family == "paligemma":
        ids = [tok["image"]] * n_img + [tok["bos"]] + text
        prompt_len = n_img + 1 + TEXT_TOKENS // 2
        types = [0] * prompt_len + [1] * (len(ids) - prompt_len)
        extra = {
            "pixel_values": torch.randn(batch, 3, size, size, generator=g),
            "token_type_ids": torch.tensor([types] * batch),
        }
    elif family == "mistral3":
        rows = grid // 2
        ids = []
        for row in range(rows):
            ids += [tok["image"]] * rows + [tok["break"] if row < rows - 1 else tok["end"]]
        ids += text
        prompt_len = len(ids) - TEXT_TOKENS // 2
        extra = {
            "pixel_values": torch.randn(batch, 3, size, size, generator=g),
            "image_sizes": torch.tensor([[size, size]] * batch),
        }
    else:
        ids = [tok["start"]] + [tok["image"]] * n_img + [tok["end"]] + text
        prompt_len = n_img + 2 + TEXT_TOKENS // 2
        extra = {"pixel_values": torch.randn(batch, 3, size, size, generator=g)}
    assert len(ids) == spec["seq_len"], (len(ids), spec["seq_len"])
    input_ids = torch.tensor([ids] * batch)
    labels = input_ids.clone()
    labels[:, :prompt_len] = -100
    out = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    out.update(extra)
    return {
        k: (t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device))
        for k, t in out.items()
    }


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(
    spec: dict[str, Any],
    batch: int,
    device: str,
    precision: str,
    warmup: str = "b1",
    step: str = "plain",
) -> dict[str, Any]:
    """Build, then measure one training step; runs in its own process.

    ``step`` is ``plain`` (``model(**batch).loss``, the LM head over every
    position) or ``dlm`` (:func:`dlm.engine.training.step.training_loss` with the
    label-position head and recomputed LoRA inputs, as ``dlm train`` runs it).
    """
    import gc

    import torch
    from peft import LoraConfig, get_peft_model

    from dlm.engine.training.lora_recompute import lora_inputs_recomputed
    from dlm.engine.training.step import label_positions, plain_loss, training_loss

    def loss_of(inputs: dict[str, Any]) -> Any:
        if step == "dlm":
            with lora_inputs_recomputed(model):
                return training_loss(model, inputs, label_head=True)
        return plain_loss(model, inputs)

    torch.manual_seed(0)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    built = time.perf_counter()
    # build straight on the device at the training dtype: a full-size base
    # built in fp32 on the host first would need four bytes per parameter there
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = _build_model(spec)
    torch.set_default_dtype(torch.float32)
    params = sum(p.numel() for p in model.parameters())
    model.config.use_cache = False
    model.set_attn_implementation("sdpa")
    model = get_peft_model(
        model,
        LoraConfig(
            r=LORA_R, lora_alpha=2 * LORA_R, lora_dropout=LORA_DROPOUT, target_modules=LORA_REGEX
        ),
    )
    model.to(device)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    batch_inputs = _build_batch(spec, batch, device, dtype)
    if warmup != "none":
        # a first step pays one-time costs (thread pools, kernel caches, the
        # AdamW states): measure a steady-state step instead
        warm = _build_batch(spec, 1, device, dtype) if warmup == "b1" else batch_inputs
        loss_of(warm).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        del warm
    build_s = time.perf_counter() - built
    gc.collect()

    started = time.perf_counter()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_kib("VmRSS") * 1024
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the high-water mark to the current RSS
    try:
        loss = loss_of(batch_inputs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    except torch.cuda.OutOfMemoryError:
        return {"family": spec["family"], "batch": batch, "params": params, "oom": True}
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _rss_kib("VmHWM") * 1024
    return {
        "family": spec["family"],
        "batch": batch,
        "params": params,
        "lora_params": sum(p.numel() for p in trainable),
        "step": step,
        # labelled positions per example: where dlm's head computes logits
        "scored_positions": int(label_positions(batch_inputs["labels"][:1])[1].numel()),
        "before_bytes": before,
        "peak_bytes": peak,
        "growth_bytes": peak - before,
        "loss": float(loss.detach()),
        "build_s": round(build_s, 2),
        "step_s": round(time.perf_counter() - started, 2),
    }


# ---------------------------------------------------------------- the parent


def measure(
    spec: dict[str, Any],
    batch: int,
    *,
    device: str = "cpu",
    precision: str = "fp32",
    threads: int = 2,
    timeout: float = 900,
    warmup: str = "b1",
    step: str = "plain",
) -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter and return its measurement."""
    env = dict(os.environ)
    # fixed threshold: no dynamic raise, so freed tensors go back to the kernel
    env.update(
        MALLOC_MMAP_THRESHOLD_="65536",
        MALLOC_TRIM_THRESHOLD_="65536",
        MALLOC_ARENA_MAX="2",
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        TOKENIZERS_PARALLELISM="false",
        TRANSFORMERS_VERBOSITY="error",
        HF_HUB_OFFLINE="1",
    )
    args = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    args += ["--batch", str(batch), "--device", device, "--precision", precision]
    args += ["--warmup", warmup, "--step", step]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(
            f"measurement of {spec['family']} batch {batch} failed:\n{proc.stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def calibrate(
    families: list[str],
    batches: list[int],
    *,
    device: str = "cpu",
    precision: str = "fp32",
    scale: str = "mid",
    threads: int = 2,
    warmup: str = "b1",
    step: str = "plain",
) -> list[dict[str, Any]]:
    rows = []
    for family in families:
        spec = case(family, scale)
        for batch in batches:
            result = measure(
                spec,
                batch,
                device=device,
                precision=precision,
                threads=threads,
                warmup=warmup,
                step=step,
            )
            estimate = predict_measured(spec, batch, result, precision, device)
            if result.get("oom"):
                print(
                    f"{family:9} b{batch}: out of memory (predicted total "
                    f"{estimate.total / 2**30:.1f} GiB); skipped",
                    file=sys.stderr,
                )
                continue
            predicted = estimate.step_bytes
            measured = result["growth_bytes"]
            rows.append(
                {
                    "family": family,
                    "step": step,
                    "scale": scale,
                    "device": device,
                    "precision": precision,
                    "batch": batch,
                    "seq_len": spec["seq_len"],
                    "image_tokens": spec["image_tokens"],
                    "vocab": spec["text"]["vocab"],
                    "params": result["params"],
                    "measured_bytes": measured,
                    "predicted_bytes": predicted,
                    # whole-process peak; on CUDA comparable with predicted tensors
                    "measured_peak_bytes": result["peak_bytes"],
                    "predicted_tensor_bytes": estimate.total - estimate.overhead,
                    "error_pct": round(100.0 * (predicted - measured) / measured, 1),
                    "parts": {
                        "activations": estimate.activations,
                        "logits": estimate.logits,
                        "lora_grads": estimate.lora_grads,
                        "vision_peak": estimate.vision_peak,
                        "vision_output": estimate.vision_output,
                    },
                    "step_s": result["step_s"],
                }
            )
            print(
                f"{family:9} b{batch} seq {spec['seq_len']}: measured {measured / 2**20:8.1f} MiB, "
                f"predicted {predicted / 2**20:8.1f} MiB ({rows[-1]['error_pct']:+.1f}%), "
                f"step {result['step_s']} s",
                file=sys.stderr,
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", action="append", choices=FAMILIES)
    parser.add_argument("--batch", type=int, action="append")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=None)
    parser.add_argument("--scale", choices=("mid", "lm", "full"), default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--warmup", choices=("none", "b1", "same"), default="b1")
    parser.add_argument(
        "--step",
        choices=("plain", "dlm"),
        default="plain",
        help="plain: the LM head over every position; dlm: dlm train's label-position head",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    precision = args.precision or ("bf16" if args.device == "cuda" else "fp32")

    if args.child:
        result = child(
            json.loads(args.child), args.batch[0], args.device, precision, args.warmup, args.step
        )
        print(json.dumps(result))
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dlm-core" / "src"))
    scale = args.scale or ("full" if args.device == "cuda" else "mid")
    if scale == "full" and args.device == "cpu":
        parser.error("--scale full builds the real bases' sizes: use it with --device cuda")
    rows = calibrate(
        args.family or list(FAMILIES),
        args.batch or [1, 4],
        device=args.device,
        precision=precision,
        scale=scale,
        threads=args.threads,
        warmup=args.warmup,
        step=args.step,
    )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(
            f"{'family':10} {'batch':>5} {'seq':>5} {'measured MiB':>13} {'predicted MiB':>14} {'error':>7}"
        )
        for row in rows:
            print(
                f"{row['family']:10} {row['batch']:>5} {row['seq_len']:>5} "
                f"{row['measured_bytes'] / 2**20:>13.1f} {row['predicted_bytes'] / 2**20:>14.1f} "
                f"{row['error_pct']:>+6.1f}%"
            )
    tolerance = ACCEPT * 100 if args.device == "cpu" else 15.0
    return 0 if all(abs(r["error_pct"]) <= tolerance for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
