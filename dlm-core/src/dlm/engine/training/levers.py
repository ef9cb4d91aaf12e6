"""Which speed levers a training run pulls, and the CUDA-only ones themselves.

Every lever trains the same model as the plain transformers + PEFT step
(same loss, same LoRA gradients within floating-point tolerance); they
only skip work the plain step wastes:

- ``label_head``: the LM head and the loss at labelled positions only
  (:func:`dlm.engine.training.step.training_loss`);
- ``feature_cache``: frozen vision features computed once per image
  (:mod:`dlm.engine.training.feature_cache`);
- ``length_batching``: similar lengths share a micro-batch when that saves
  padding (:mod:`dlm.engine.training.batching`);
- ``lora_recompute``: each LoRA branch recomputes its cast and dropped-out
  input in backward instead of keeping copies of it
  (:mod:`dlm.engine.training.lora_recompute`): the largest share of saved
  activations, for a rank-r sliver of recomputation;
- ``fused_optimizer`` (CUDA): ``torch.optim.AdamW(fused=True)``, one kernel
  for all LoRA tensors instead of a launch per tensor;
- ``compile`` (CUDA, opt-in): ``torch.compile`` on each language-model
  decoder layer. Off unless asked for: it was not measured on a GPU here,
  and compiling costs start-up time that a short LoRA run may never win back.

``DLM_LEVERS`` overrides the defaults: ``none``, ``all``, a comma list that
names exactly the levers to use (``label_head,feature_cache``), or changes
to the defaults (``-feature_cache``, ``+compile``). CUDA-only levers stay
off on other backends whatever it says.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from dlm.errors import UsageError

ENV = "DLM_LEVERS"
NAMES = (
    "label_head",
    "feature_cache",
    "length_batching",
    "lora_recompute",
    "fused_optimizer",
    "compile",
)
CUDA_ONLY = frozenset({"fused_optimizer", "compile"})
_DESCRIPTIONS = {
    "label_head": "LM head at labelled positions",
    "feature_cache": "vision features reused",
    "length_batching": "length-aware batches",
    "lora_recompute": "LoRA inputs recomputed",
    "fused_optimizer": "fused AdamW",
    "compile": "compiled decoder layers",
}


@attrs.frozen
class Levers:
    label_head: bool = True
    feature_cache: bool = True
    length_batching: bool = True
    lora_recompute: bool = True
    fused_optimizer: bool = False
    compile: bool = False

    def on(self) -> list[str]:
        return [name for name in NAMES if getattr(self, name)]

    def describe(self) -> str:
        names = self.on()
        return " · ".join(_DESCRIPTIONS[n] for n in names) if names else "none (plain step)"

    @classmethod
    def none(cls) -> Levers:
        return cls(**dict.fromkeys(NAMES, False))


def default_levers(backend: str) -> Levers:
    return Levers(fused_optimizer=backend == "cuda")


def choose_levers(backend: str, env: Mapping[str, str] | None = None) -> Levers:
    """The defaults for ``backend``, adjusted by ``DLM_LEVERS``."""
    raw = (os.environ if env is None else env).get(ENV, "").strip()
    levers = default_levers(backend)
    if raw:
        levers = _parse(raw, levers)
    if backend != "cuda":
        levers = attrs.evolve(levers, **dict.fromkeys(CUDA_ONLY, False))
    return levers


def _parse(raw: str, defaults: Levers) -> Levers:
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if items == ["none"]:
        return Levers.none()
    if items == ["all"]:
        return Levers(**dict.fromkeys(NAMES, True))
    names = [item.lstrip("+-") for item in items]
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise UsageError(
            f"{ENV}={raw!r} names unknown levers: {', '.join(unknown)}",
            hint=f"use none, all, or names from {', '.join(NAMES)} (prefix - or + to change one)",
        )
    relative = [item[0] in "+-" for item in items]
    if any(relative) and not all(relative):
        raise UsageError(
            f"{ENV}={raw!r} mixes a list of levers with +/- changes",
            hint="either name exactly the levers to use, or only +name/-name changes",
        )
    if all(relative):
        changes = {item[1:]: item[0] == "+" for item in items}
        return attrs.evolve(defaults, **changes)
    return Levers(**{name: name in names for name in NAMES})


def make_optimizer(params: Iterable[Any], lr: float, levers: Levers) -> Any:
    """AdamW over the trainable (LoRA) parameters; fused on CUDA when the lever is on."""
    import torch

    params = list(params)
    if levers.fused_optimizer and params and params[0].device.type == "cuda":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def compile_decoder_layers(model: Any) -> int:
    """``torch.compile`` each language-model decoder layer in place; returns how many.

    Layer by layer (not the whole model): the vision tower, the variable
    image layout and the PEFT wrapper stay eager, and one compiled graph
    serves every layer of the same shape. ``dynamic=True`` because batch
    widths change from step to step.
    """
    from dlm.engine.training.feature_cache import encoder_host

    host = encoder_host(model)
    language_model = getattr(host, "language_model", None)
    layers = getattr(language_model, "layers", None)
    if layers is None:
        return 0
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


__all__ = [
    "CUDA_ONLY",
    "ENV",
    "NAMES",
    "Levers",
    "choose_levers",
    "compile_decoder_layers",
    "default_levers",
    "make_optimizer",
]
