"""LoRA through PEFT: attach for training, load for prompting and export.

Loading verifies that every tensor in the adapter file landed on a module
of the model. Peers lost adapters silently when transformers renamed
modules (``model.*`` vs ``language_model.*``); here a mismatch is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlm.errors import DlmError
from dlm.family import Family
from dlm.format.document import TrainingSettings
from dlm.records import BaseSpec

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


class AdapterMismatchError(DlmError):
    subject = "adapter"


def target_modules(base: BaseSpec, family: Family, settings: TrainingSettings) -> str | list[str]:
    """``training.target_modules`` when given, else the family's language-model default."""
    if settings.target_modules is None:
        return family.lora_target_modules
    if isinstance(settings.target_modules, str):
        return settings.target_modules
    return list(settings.target_modules)


def attach_lora(model: Any, base: BaseSpec, family: Family, settings: TrainingSettings) -> Any:
    """Wrap ``model`` with fresh LoRA weights; only they are trainable."""
    from peft import LoraConfig, get_peft_model

    targets = target_modules(base, family, settings)
    config = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as exc:
        raise DlmError(
            f"training.target_modules {targets!r} matches no module of {base.key}: {exc}",
            hint="fix training.target_modules (a regex over module names, or a list of names)",
            subject="train",
        ) from exc
    # The saved config names the hub base, not this machine's cache path.
    cfg = peft_model.peft_config["default"]
    cfg.base_model_name_or_path = base.hub_id
    cfg.revision = base.revision
    return peft_model


def adapted_module_names(model: Any) -> list[str]:
    """Names of modules carrying LoRA weights (for reports and export checks)."""
    names = []
    for name, _ in model.named_modules():
        if name.endswith(".lora_A"):
            names.append(name[: -len(".lora_A")])
    return sorted(names)


def load_adapter(model: Any, adapter_dir: Path, *, is_trainable: bool = False) -> Any:
    """Load a committed adapter onto ``model`` and verify every weight attached."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    weights_path = adapter_dir / ADAPTER_WEIGHTS
    if not weights_path.is_file():
        raise AdapterMismatchError(
            f"{weights_path} is missing",
            hint="`dlm verify DOC` checks the store; retrain with `dlm train DOC`",
        )
    peft_model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=is_trainable)
    saved = load_file(str(weights_path))
    state = peft_model.state_dict()
    missing: list[str] = []
    differing: list[str] = []
    for key, tensor in saved.items():
        # PEFT stores "…lora_A.weight" and loads it as "…lora_A.default.weight".
        stem, _, leaf = key.rpartition(".")
        loaded_key = f"{stem}.default.{leaf}"
        loaded = state.get(loaded_key)
        if loaded is None:
            missing.append(key)
        elif not torch.equal(loaded.detach().to("cpu", tensor.dtype), tensor):
            differing.append(key)
    if missing or differing:
        sample = ", ".join((missing + differing)[:3])
        raise AdapterMismatchError(
            f"{len(missing)} adapter weights attached to no module and {len(differing)} did not "
            f"load intact (e.g. {sample}); the adapter would silently do nothing",
            hint="the base's module names changed since training (transformers upgrade?): "
            "pin the transformers version recorded in training_run.json, or retrain",
        )
    return peft_model
