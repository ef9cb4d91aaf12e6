"""Training throughput: the plain transformers + PEFT step against dlm's, side by side.

One model, one batch, one process: the plain step (``model(**batch).loss``,
backward, gradient clipping, fused AdamW: what a transformers ``Trainer``
step does) and dlm's step (:func:`dlm.engine.training.step.training_loss` with the
levers ``dlm train`` pulls on this device, then the same backward, clipping
and dlm's optimizer) alternate, ABBA, after warm-up, so a busy machine
slows both alike. Everything goes through the engine's real code: the
family's processor loading, image preparation and collator, LoRA through
:func:`dlm.engine.lora.attach_lora`, and dlm's step and optimizer.

``--trl`` adds a third path, TRL 1.16's ``SFTTrainer`` loss: its
``add_fused_lm_head`` patch, which scores only labelled positions in tiles
when Triton is available (CUDA) and every position in tiles elsewhere.

Configurations (``--config``):
    tiny   the family's offline tiny base, loaded as ``dlm train`` loads it.
    wide   like mid, but with a language model deep and wide enough (16 layers
           x 1024) that its layers, not the LM head, are most of a token's
           work (~243M multiply-adds in the layers against ~155M in a 152k
           head): the levers measured where the head does not flatter them.
    mid    tens of millions of parameters with the real vocabulary and the
           real image-token count (Qwen2-VL 672² = 576 tokens, PaliGemma 224²
           = 256, InternVL one 448² tile = 256, Mistral 1540² = 3080): narrow,
           shallow towers and LM, random weights. Runs on 2 CPU cores
           (Mistral's 1540² Pixtral mask needs ~10 GB per image batch: use
           ``--image-side`` to shrink it there).
    full   the real architecture. ``--random-weights`` builds it from the
           shipped config with random weights (no download; a GPU is the
           place for it); without, the real weights are materialised.

Memory (``*_peak_mib``)
    CUDA: ``torch.cuda.max_memory_allocated`` over each path's measured
    steps, in the same process (the allocator's counters are exact).
    CPU: each path runs again in its own fresh subprocess (``--memory``,
    on by default): the child builds the same model and batch, notes its
    RSS, resets the kernel's high-water mark (``5`` into
    ``/proc/self/clear_refs``), runs warm-up and measured steps of that path
    only, and reports the mark's growth over the resident model. glibc runs
    with a fixed ``MALLOC_MMAP_THRESHOLD_`` so tensor-sized buffers are their
    own mappings, returned to the kernel when freed: RSS follows live
    tensors. The growth includes everything the path keeps: activations,
    logits, gradients, AdamW states and dlm's in-memory vision features.

Threads: one torch thread on the CPU unless ``--threads`` says otherwise.
On a shared 2-core host, two OpenMP threads spin-waiting for a descheduled
sibling made small-op steps 2-5x slower and erratic; both paths always run
under the same setting. Load is printed (``load_avg_1m``) with the figures.

Usage::

    python benchmarks/train_throughput.py --family qwen2 --config mid --batch 4 --steps 6
    python benchmarks/train_throughput.py --family paligemma --config mid --json
    python benchmarks/train_throughput.py --family qwen2 --config full --random-weights --batch 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

#: --family → (tiny base key, real base key)
FAMILIES = {
    "qwen2": ("tiny-qwen2-vl", "qwen2-vl-2b-instruct"),
    "paligemma": ("tiny-paligemma", "paligemma-3b-mix-224"),
    "mistral": ("tiny-mistral3", "mistral-small-3.1-24b-instruct"),
    "internvl": ("tiny-internvl", "internvl3-2b"),
}

#: The mid-size towers: narrow and shallow, so a step fits 2 CPU cores.
MID_TEXT = {"layers": 4, "hidden": 128, "intermediate": 512, "heads": 4, "kv_heads": 2}
MID_VISION = {"layers": 4, "hidden": 128, "intermediate": 512, "heads": 4}
#: The wide shape: an LM whose layers outweigh its head, the vision tower as mid.
WIDE_TEXT = {"layers": 16, "hidden": 1024, "intermediate": 4096, "heads": 16, "kv_heads": 4}

#: Completions of realistic length (a caption sentence or two, ~25-35 tokens)
#: on the recall figures; the prompt asks about the image.
_DETAIL = " It stands for {answer} in the diagram of our retrieval system, drawn by hand."

MMAP_THRESHOLD = 65536


# ----------------------------------------------------------------- setup


def _dims(real: Any, config: str) -> dict[str, Any]:
    """Text and vision dimensions: the real base's (``full``) or the mid-size ones."""
    if config == "full":
        t, v = real.text, real.vision
        return {
            "text": {
                "layers": t.num_layers,
                "hidden": t.hidden_size,
                "intermediate": t.intermediate_size,
                "heads": t.num_heads,
                "kv_heads": t.num_kv_heads,
                "head_dim": t.head_dim or t.hidden_size // t.num_heads,
                "vocab": t.vocab_size,
            },
            "vision": {
                "layers": v.num_layers,
                "hidden": v.hidden_size,
                "intermediate": v.intermediate_size,
                "heads": v.num_heads,
            },
        }
    text = dict(WIDE_TEXT if config == "wide" else MID_TEXT, vocab=real.text.vocab_size)
    if real.family == "paligemma":
        text["kv_heads"] = 1  # Gemma 2B is multi-query
    text["head_dim"] = text["hidden"] // text["heads"]
    return {"text": text, "vision": dict(MID_VISION)}


def _set(obj: Any, **values: Any) -> None:
    for key, value in values.items():
        setattr(obj, key, value)


def _model_config(family: str, tiny_dir: Path, real: Any, dims: dict[str, Any], side: int) -> Any:
    """The tiny base's config (its classes and token ids) at the requested dimensions."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_dir)
    t, v = dims["text"], dims["vision"]
    tc, vc = config.text_config, config.vision_config
    _set(
        tc,
        hidden_size=t["hidden"],
        intermediate_size=t["intermediate"],
        num_hidden_layers=t["layers"],
        num_attention_heads=t["heads"],
        num_key_value_heads=t["kv_heads"],
        vocab_size=t["vocab"],
    )
    if getattr(tc, "layer_types", None):
        tc.layer_types = [tc.layer_types[0]] * t["layers"]
    if hasattr(tc, "head_dim"):
        tc.head_dim = t["head_dim"]
    real_cfg = real.extra.get("config") or {}
    tied = bool(real_cfg.get("tie_word_embeddings", family in ("qwen2", "paligemma")))
    if family == "qwen2":
        pairs = t["head_dim"] // 2  # mrope splits rotary pairs over (t, h, w) as 1/4, 3/8, 3/8
        rope = dict(tc.rope_parameters)
        rope["mrope_section"] = [pairs // 4, 3 * pairs // 8, pairs - pairs // 4 - 3 * pairs // 8]
        tc.rope_parameters = rope
        _set(
            vc,
            depth=v["layers"],
            embed_dim=v["hidden"],
            num_heads=v["heads"],
            mlp_ratio=v["intermediate"] // v["hidden"],
            hidden_size=t["hidden"],
        )
    elif family == "paligemma":
        tokens = (side // 14) ** 2
        _set(
            vc,
            hidden_size=v["hidden"],
            intermediate_size=v["intermediate"],
            num_hidden_layers=v["layers"],
            num_attention_heads=v["heads"],
            image_size=side,
            projection_dim=t["hidden"],
        )
        _set(config, projection_dim=t["hidden"], hidden_size=t["hidden"])
        tc.num_image_tokens = tokens
        if hasattr(config, "vocab_size"):
            config.vocab_size = t["vocab"]
    elif family == "mistral":
        _set(
            vc,
            hidden_size=v["hidden"],
            intermediate_size=v["intermediate"],
            num_hidden_layers=v["layers"],
            num_attention_heads=v["heads"],
            head_dim=v["hidden"] // v["heads"],
            image_size=side,
        )
    else:  # internvl
        _set(
            vc,
            hidden_size=v["hidden"],
            intermediate_size=v["intermediate"],
            num_hidden_layers=v["layers"],
            num_attention_heads=v["heads"],
            image_size=[side, side],
        )
        config.image_seq_length = (side // 14 // 2) ** 2
    config.tie_word_embeddings = tied
    tc.tie_word_embeddings = tied
    return config


def _processor(family: str, fam: Any, tiny: Any, real: Any, tiny_dir: Path, side: int) -> Any:
    """The tiny base's processor pinned to the real image settings (real token counts)."""
    settings = dict(real.image_settings)
    if family == "mistral" and side != real.image.width:
        settings = {"size": {"longest_edge": side}}
    if family in ("paligemma", "internvl") and side != real.image.width:
        settings = dict(settings, size={"height": side, "width": side})
    processor = fam.load_processor(tiny, tiny_dir, settings)
    if family == "paligemma":
        processor.image_seq_length = (side // 14) ** 2
    elif family == "internvl":
        processor.image_seq_length = (side // 14 // 2) ** 2
    return processor


def _examples(base: Any, fam: Any, folder: Path, side: int) -> tuple[list[Any], list[Any]]:
    """The recall figures as Q/A examples with realistic completions."""
    import hashlib

    from PIL import Image

    from dlm.records import ExampleKind, ImageRef, TrainingExample

    sys.path.insert(0, str(REPO / "demo"))
    from figures import FIGURES, draw_figure

    folder.mkdir(parents=True, exist_ok=True)
    examples, images = [], []
    for stem, background, shape, fill, caption, question, answer in FIGURES:
        path = folder / f"{stem}-{side}.png"
        if not path.exists():
            draw_figure(path, background, shape, fill, size=side)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        completion = caption + _DETAIL.format(answer=answer)
        example = TrainingExample(
            section_id=sha[:16],
            origin=f"{path}:1",
            kind=ExampleKind.QA,
            prompt=question,
            completion=completion,
            images=(ImageRef(sha, path, path.name),),
        )
        with Image.open(path) as img:
            img.load()
            prepared = fam.bind(base).prepare_image(img)
        examples.append(example)
        images.append([prepared])
    return examples, images


def build(args: argparse.Namespace) -> dict[str, Any]:
    """Model (LoRA attached), batch and everything both paths share."""
    import attrs
    import torch

    from dlm.engine.lora import attach_lora
    from dlm.format.document import TrainingSettings
    from dlm.plugins import get_registry

    torch.manual_seed(0)
    registry = get_registry()
    tiny_key, real_key = FAMILIES[args.family]
    tiny = registry.base(tiny_key)
    real = registry.base(real_key)
    fam = registry.family_for(tiny)
    device = args.device
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tiny_dir = fam.materialize(tiny)
    if args.config == "tiny":
        base, side = tiny, tiny.image.width
        processor = fam.load_processor(tiny, tiny_dir)
        model = fam.load_model(tiny, tiny_dir, dtype, device)
    elif args.config == "full" and not args.random_weights:
        base, side = real, real.image.width
        real_dir = fam.materialize(real)
        processor = fam.load_processor(real, real_dir)
        model = fam.load_model(real, real_dir, dtype, device)
    else:
        from transformers import AutoModelForImageTextToText

        side = args.image_side or real.image.width
        dims = _dims(real, args.config)
        config = _model_config(args.family, tiny_dir, real, dims, side)
        processor = _processor(args.family, fam, tiny, real, tiny_dir, side)
        image = attrs.evolve(real.image, width=side, height=side)
        base = attrs.evolve(
            tiny, key=f"bench-{args.config}-{args.family}", revision="random", image=image
        )
        # built on the device at the training dtype: a full-size model built in
        # fp32 on the host first would need four bytes a parameter there
        torch.set_default_dtype(dtype)
        try:
            with torch.device(device):
                model = AutoModelForImageTextToText.from_config(config)
        finally:
            torch.set_default_dtype(torch.float32)
    model.config.use_cache = False
    settings = TrainingSettings()  # r16, alpha 32, dropout 0.05: dlm's defaults
    model = attach_lora(model, base, fam, settings)
    model.to(device)
    model.train()
    examples, images = _examples(base, fam, Path(args.work) / "figures", max(side, 224))
    picked = [i % len(examples) for i in range(args.batch)]
    batch = fam.bind(base, processor).collate(
        [examples[i] for i in picked], [images[i] for i in picked]
    )
    batch = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}
    keys = [ref.sha256 for i in picked for ref in examples[i].images]
    params = sum(p.numel() for p in model.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    labels = batch["labels"]
    return {
        "family": fam,
        "base": base,
        "processor": processor,
        "model": model,
        "batch": batch,
        "image_keys": keys,
        "trainable": trainable,
        "settings": settings,
        "side": side,
        "info": {
            "params": params,
            "trainable_params": sum(p.numel() for p in trainable),
            "vocab": int(model.get_output_embeddings().weight.shape[0]),
            "seq_len": int(batch["input_ids"].shape[1]),
            "image_tokens_per_image": int(
                (batch["input_ids"][0] == _image_token_id(model)).sum().item()
            ),
            "labelled_tokens": int((labels[:, 1:] != -100).sum().item()),
            "image_side": side,
        },
    }


def _image_token_id(model: Any) -> int:
    from dlm.engine.training.feature_cache import unwrap

    config = unwrap(model).config
    token = getattr(config, "image_token_id", None)
    return int(token if token is not None else config.image_token_index)


# ----------------------------------------------------------------- the paths


class StepPath:
    """One way of taking a training step on the shared model.

    ``kind`` is ``plain``, ``dlm`` (with ``levers``) or ``trl``; ``name`` is
    what the results call it (``dlm``, or a single lever's name with ``--each``).
    """

    def __init__(self, name: str, kind: str, setup: dict[str, Any], levers: Any = None):
        import torch

        from dlm.engine.training.levers import make_optimizer

        self.name = name
        self.kind = kind
        self.setup = setup
        self.levers = levers
        trainable = setup["trainable"]
        lr = setup["settings"].learning_rate
        if kind == "dlm":
            self.optimizer = make_optimizer(trainable, lr, levers)
        else:
            # transformers' default optim for torch >= 2.8 is adamw_torch_fused
            self.optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0, fused=True)
        self.features = None
        if kind == "dlm" and levers.feature_cache:
            from dlm.engine.training.feature_cache import VisionFeatures

            fam, base = setup["family"], setup["base"]
            self.features, why = VisionFeatures.for_run(
                setup["model"],
                fam,
                base,
                fam.bind(base, setup["processor"]).image_settings_to_save(),
                precision="bf16" if setup["batch"]["input_ids"].is_cuda else "fp32",
                device_type=setup["batch"]["input_ids"].device.type,
                paths=None,
            )
            if why:
                raise SystemExit(f"vision features cannot be reused here: {why}")
        if kind == "trl":
            from trl.trainer.utils import add_fused_lm_head

            from dlm.engine.training.feature_cache import unwrap

            add_fused_lm_head(unwrap(setup["model"]), outputs=("log_probs", "entropy", "is_top1"))

    def loss(self) -> Any:
        from dlm.engine.training.lora_recompute import lora_inputs_recomputed
        from dlm.engine.training.step import plain_loss, training_loss

        model, batch = self.setup["model"], self.setup["batch"]
        if self.kind == "plain":
            return plain_loss(model, batch)
        if self.kind == "trl":
            out = model(**batch, use_cache=False, fused_lm_head=True)
            return -out.log_probs.sum() / out.label_mask.sum().clamp(min=1)
        recompute = lora_inputs_recomputed(model) if self.levers.lora_recompute else _null()
        with recompute:
            return training_loss(
                model,
                batch,
                label_head=self.levers.label_head,
                features=self.features,
                image_keys=self.setup["image_keys"],
            )

    def step(self) -> float:
        import torch

        cuda = self.setup["batch"]["input_ids"].is_cuda
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else _null()
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            loss = self.loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.setup["trainable"], 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _levers(args: argparse.Namespace) -> Any:
    from dlm.engine.training.levers import choose_levers

    env = dict(os.environ)
    if args.levers:
        env["DLM_LEVERS"] = args.levers
    return choose_levers(args.device, env)


#: ``--each``: dlm's step with one lever alone, to see what each is worth.
SINGLE_LEVERS = ("label_head", "feature_cache", "lora_recompute")


def _paths(args: argparse.Namespace) -> list[str]:
    names = ["plain", "dlm"] + (["trl"] if args.trl else [])
    return names + (list(SINGLE_LEVERS) if args.each else [])


def make_path(name: str, setup: dict[str, Any], args: argparse.Namespace) -> StepPath:
    import attrs

    from dlm.engine.training.levers import Levers

    if name in ("plain", "trl"):
        return StepPath(name, name, setup)
    levers = _levers(args)
    if name in SINGLE_LEVERS:
        levers = attrs.evolve(Levers.none(), **{name: True})
    return StepPath(name, "dlm", setup, levers)


# ----------------------------------------------------------------- measuring


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def memory_child(args: argparse.Namespace) -> dict[str, Any]:
    """One path alone in this fresh process: its peak RSS growth over the built model."""
    import gc

    setup = build(args)
    path = make_path(args.memory_child, setup, args)
    gc.collect()
    baseline = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current RSS
    for _ in range(args.warmup + args.memory_steps):
        path.step()
    peak = _status_kib("VmHWM")
    return {
        "path": args.memory_child,
        "baseline_mib": round(baseline / 1024, 1),
        "peak_growth_mib": round((peak - baseline) / 1024, 1),
    }


def _memory_in_subprocesses(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out = {}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD), PYTHONUNBUFFERED="1")
    for name in _paths(args):
        cmd = [sys.executable, __file__, *_forwarded(args), "--memory-child", name]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
        if proc.returncode != 0:
            raise SystemExit(f"memory child {name} failed:\n{proc.stderr[-4000:]}")
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _forwarded(args: argparse.Namespace) -> list[str]:
    argv = [
        "--family", args.family, "--config", args.config, "--batch", str(args.batch),
        "--warmup", str(args.warmup), "--memory-steps", str(args.memory_steps),
        "--device", args.device, "--work", args.work, "--threads", str(args.threads),
    ]  # fmt: skip
    if args.random_weights:
        argv.append("--random-weights")
    if args.image_side:
        argv += ["--image-side", str(args.image_side)]
    if args.levers:
        argv += ["--levers", args.levers]
    if args.trl:
        argv.append("--trl")
    if args.each:
        argv.append("--each")
    return argv


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    setup = build(args)
    levers = _levers(args)
    names = _paths(args)
    paths = {name: make_path(name, setup, args) for name in names}
    cuda = args.device == "cuda"
    first_dlm = None
    for _ in range(args.warmup):
        for name in names:
            took = paths[name].step()
            if name == "dlm" and first_dlm is None:
                first_dlm = took  # computes the vision features: the cache's cold step
    times: dict[str, list[float]] = {name: [] for name in names}
    peaks: dict[str, int] = dict.fromkeys(names, 0)
    load_before = os.getloadavg()
    for i in range(args.steps):
        order = names if i % 2 == 0 else list(reversed(names))  # ABBA: drift hits both
        for name in order:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            times[name].append(paths[name].step())
            if cuda:
                peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated())
    load_after = os.getloadavg()
    batch = args.batch
    result: dict[str, Any] = {
        "family": args.family,
        "config": args.config,
        "base": setup["base"].key,
        "device": _device_name(args.device),
        "threads": torch.get_num_threads(),
        "batch": batch,
        "steps": args.steps,
        "warmup": args.warmup,
        "levers": levers.on(),
        **setup["info"],
    }
    # ratios from the unrounded rates: a full-size CPU step runs at ~0.02 samples/s
    rate = {name: batch * args.steps / sum(times[name]) for name in names}
    for name in names:
        result[f"{name}_samples_per_s"] = float(f"{rate[name]:.4g}")
        result[f"{name}_step_s_median"] = round(statistics.median(times[name]), 4)
    result["ratio"] = round(rate["dlm"] / rate["plain"], 3)
    if args.trl:
        result["ratio_vs_trl"] = round(rate["dlm"] / rate["trl"], 3)
    if args.each:
        result["lever_ratios"] = {
            name: round(rate[name] / rate["plain"], 3) for name in SINGLE_LEVERS
        }
    result["dlm_cold_step_s"] = round(first_dlm, 4) if first_dlm is not None else None
    if paths["dlm"].features is not None:
        result["vision_features"] = paths["dlm"].features.note()
    result["load_avg_1m"] = [round(load_before[0], 2), round(load_after[0], 2)]
    if cuda:
        for name in names:
            result[f"{name}_peak_mib"] = round(peaks[name] / 2**20, 1)
        result["peak_memory_method"] = "torch.cuda.max_memory_allocated (absolute, same process)"
    elif args.memory:
        measured = _memory_in_subprocesses(args)
        for name in names:
            result[f"{name}_peak_mib"] = measured[name]["peak_growth_mib"]
        result["model_resident_mib"] = measured["plain"]["baseline_mib"]
        result["peak_memory_method"] = (
            "CPU: VmHWM growth over the built model, each path alone in a fresh subprocess "
            f"({args.warmup} warm-up + {args.memory_steps} steps, MALLOC_MMAP_THRESHOLD_="
            f"{MMAP_THRESHOLD})"
        )
    return result


def _device_name(device: str) -> str:
    import platform

    import torch

    if device == "cuda":
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def _print_table(result: dict[str, Any]) -> None:
    names = [n for n in ("plain", "dlm", "trl", *SINGLE_LEVERS) if f"{n}_samples_per_s" in result]
    print(
        f"{result['family']} {result['config']} on {result['device']} · batch {result['batch']} · "
        f"seq {result['seq_len']} ({result['image_tokens_per_image']} image tokens/image, "
        f"{result['labelled_tokens']} labelled) · vocab {result['vocab']} · "
        f"{result['params'] / 1e6:.1f}M params"
    )
    print(f"levers: {', '.join(result['levers']) or 'none'}")
    for name in names:
        peak = result.get(f"{name}_peak_mib")
        print(
            f"  {name:13s} {result[f'{name}_samples_per_s']:8.3f} samples/s  "
            f"median step {result[f'{name}_step_s_median']:.3f} s"
            + (f"  peak {peak:.1f} MiB" if peak is not None else "")
        )
    print(f"ratio (dlm / plain): {result['ratio']}")
    if "ratio_vs_trl" in result:
        print(f"ratio (dlm / trl):   {result['ratio_vs_trl']}")
    print(f"load average (1 min) before/after: {result['load_avg_1m']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), default="qwen2")
    parser.add_argument("--config", choices=("tiny", "mid", "wide", "full"), default="mid")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6, help="measured steps per path")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up steps per path")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--random-weights", action="store_true", help="full: no download")
    parser.add_argument("--image-side", type=int, default=None, help="override the image side")
    parser.add_argument(
        "--levers", default=None, help="DLM_LEVERS for dlm's path (default: dlm train's)"
    )
    parser.add_argument("--trl", action="store_true", help="also time TRL 1.16's fused LM head")
    parser.add_argument("--each", action="store_true", help="also time each lever alone")
    parser.add_argument(
        "--no-memory", dest="memory", action="store_false", help="CPU: skip the memory children"
    )
    parser.add_argument("--memory-steps", type=int, default=2)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (default: 1 on CPU, see below)"
    )
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "dlm-bench"))
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.config == "full" and not args.random_weights and args.family == "paligemma":
        print(
            "note: paligemma weights are gated; --random-weights needs no licence", file=sys.stderr
        )

    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    # One thread on the CPU by default: on a shared 2-core host, OpenMP threads
    # spin-waiting for a descheduled sibling made small-op steps 2-5x slower and
    # erratic (measured); both paths run under the same setting either way.
    if args.threads or args.device == "cpu":
        torch.set_num_threads(args.threads or 1)
    args.threads = torch.get_num_threads()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from dlm.engine.quiet import quiet_transformers

    quiet_transformers()
    if args.memory_child:
        print(json.dumps(memory_child(args)))
        return 0
    result = measure(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
