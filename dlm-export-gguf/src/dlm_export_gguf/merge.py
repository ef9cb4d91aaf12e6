"""Merge the LoRA adapter into the base and save an HF directory the converter reads.

GGUF has no place for a LoRA on the vision tower or the projector (the mmproj
is converted from the base's own vision weights, the LM from the merged
weights), so an adapter that touches anything outside the language model is
refused before any work is done.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from dlm.records import ExportRequest
from dlm_export_gguf.errors import GGUFExportError

# Above this many parameters the merge runs in bfloat16: an fp32 copy of a
# 24B model does not fit a workstation's memory.
MERGE_FP32_MAX_PARAMS = 8_000_000_000


@attrs.frozen
class Merged:
    model_dir: Path
    processor: Any
    merge_dtype: str
    lora_modules: int


def adapter_modules(adapter_dir: Path) -> tuple[set[str], set[str]]:
    """Module paths the adapter file holds weights for: (LoRA modules, fully saved modules)."""
    from safetensors import safe_open

    path = adapter_dir / "adapter_model.safetensors"
    if not path.is_file():
        raise GGUFExportError(
            f"{adapter_dir} has no adapter_model.safetensors",
            hint="export a committed adapter version (run `dlm train` first)",
        )
    lora: set[str] = set()
    full: set[str] = set()
    with safe_open(str(path), framework="pt") as fh:
        for key in fh.keys():  # noqa: SIM118 - safe_open has no __iter__
            name = key.removeprefix("base_model.model.")
            for marker in (".lora_A.", ".lora_B.", ".lora_embedding_A", ".lora_embedding_B"):
                if marker in name:
                    lora.add(name.split(marker)[0])
                    break
            else:  # modules_to_save and other full-weight entries
                full.add(name.rsplit(".", 1)[0])
    return lora, full


def language_model_prefixes(model: Any) -> list[str]:
    """Dotted names of the language model and its output head inside ``model``."""
    lm = model.get_decoder()
    head = model.get_output_embeddings()
    prefixes = [name for name, module in model.named_modules() if module is lm or module is head]
    if not prefixes or lm is model:
        raise GGUFExportError(
            f"cannot tell the language model from the vision tower in {type(model).__name__}",
            hint="the family's model must expose its language model (get_decoder())",
        )
    return prefixes


def outside_language_model(modules: set[str], prefixes: list[str]) -> list[str]:
    def inside(name: str) -> bool:
        # PEFT saves some keys with and some without the top "model." wrapper
        candidates = {name, f"model.{name}"}
        return any(c == p or c.startswith(p + ".") for c in candidates for p in prefixes)

    return sorted(name for name in modules if not inside(name))


def _saved_dtype(base_dir: Path) -> str:
    try:
        config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "float32"
    text = config.get("text_config") or {}
    return str(config.get("dtype") or config.get("torch_dtype") or text.get("dtype") or "float32")


def merge_adapter(request: ExportRequest, out_dir: Path) -> Merged:
    """Load base + adapter, refuse vision LoRA, merge, save model + processor to ``out_dir``."""
    import torch
    from peft import PeftModel

    base, family = request.base, request.family
    big = base.params.total > MERGE_FP32_MAX_PARAMS
    merge_dtype = torch.bfloat16 if big else torch.float32
    model = family.load_model(base, request.base_dir, dtype=merge_dtype, device="cpu")
    processor = family.load_processor(
        base, request.base_dir, image_settings=request.training_run.get("image_settings")
    )

    prefixes = language_model_prefixes(model)
    lora, full = adapter_modules(request.adapter_dir)
    vision = outside_language_model(lora | full, prefixes)
    if vision:
        shown = ", ".join(vision[:4]) + (f" and {len(vision) - 4} more" if len(vision) > 4 else "")
        raise GGUFExportError(
            f"adapter {request.adapter_version} changes modules outside the language model "
            f"({shown}); GGUF keeps the vision tower and projector in the mmproj, "
            "converted from the base's own weights, so these changes cannot be exported",
            hint="train with LoRA on the language model only (the family's default "
            "target_modules), or export with --target hf-snapshot",
        )

    peft_model = PeftModel.from_pretrained(model, str(request.adapter_dir), is_trainable=False)
    attached = {
        name.removeprefix("base_model.model.")
        for name, module in peft_model.named_modules()
        if len(getattr(module, "lora_A", None) or {}) > 0
    }
    missing = sorted(n for n in lora if n not in attached and f"model.{n}" not in attached)
    if missing:
        raise GGUFExportError(
            f"{len(missing)} of the adapter's {len(lora)} LoRA modules did not attach to the "
            f"base (e.g. {missing[0]}); merging would silently drop them",
            hint="the adapter was trained on a different base or transformers version",
        )
    merged = peft_model.merge_and_unload()
    saved_dtype = getattr(torch, _saved_dtype(request.base_dir), torch.float32)
    if isinstance(saved_dtype, torch.dtype) and saved_dtype != merge_dtype:
        merged = merged.to(saved_dtype)
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    del merged, peft_model, model
    return Merged(
        model_dir=out_dir,
        processor=processor,
        merge_dtype=str(merge_dtype).removeprefix("torch."),
        lora_modules=len(attached),
    )
