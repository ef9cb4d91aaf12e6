"""What ``dlm doctor`` reports: the plan for a document, and per-base verdicts.

The functions here take already-computed inputs (the base, each example's
token budget, the settings, the host) and return plain JSON-ready dicts;
``dlm doctor`` renders them as tables or prints them with ``--json``. The
engine's ``plan_for_document`` builds the inputs from a ``.dlm`` file and
calls :func:`document_report`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from dlm.errors import PlanError
from dlm.format.document import TrainingSettings
from dlm.hardware.host import HostFacts
from dlm.hardware.plan import (
    MINIMAL_COMPLETION_TOKENS,
    MINIMAL_TEXT_TOKENS,
    TrainingPlan,
    plan_training,
)
from dlm.records import BaseSpec, TokenCount, TrainingExample

VERDICT_OK = "ok"  # the plan fits
VERDICT_FORCED = "forced"  # it runs only because of --force
VERDICT_REFUSED = "refused"


@attrs.frozen
class ExampleBudget:
    """One training example's token budget and where it came from."""

    origin: str  # path:line of its section
    kind: str  # ExampleKind value: caption, qa, text-qa, text
    images: int
    image_tokens: int
    prompt_tokens: int
    completion_tokens: int
    missing_images: int = 0  # of ``images``, how many are not there yet (planned at the bound)

    @property
    def total(self) -> int:
        return self.image_tokens + self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_count(
        cls, example: TrainingExample, count: TokenCount, missing: Collection[Path] = ()
    ) -> ExampleBudget:
        """``missing``: the paths of the document's images that do not exist yet."""
        return cls(
            origin=example.origin,
            kind=str(example.kind.value),
            images=len(example.images),
            image_tokens=count.image,
            prompt_tokens=count.prompt,
            completion_tokens=count.completion,
            missing_images=sum(1 for ref in example.images if ref.blob_path in missing),
        )

    def to_dict(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "total": self.total}


def base_summary(base: BaseSpec) -> dict[str, Any]:
    return {
        "key": base.key,
        "family": base.family,
        "architecture": base.architecture,
        "params": base.params.total,
        "tiny": base.tiny,
        "cuda_first": base.cuda_first,
        "context_length": base.context_length,
        "image": attrs.asdict(base.image),
        "text": attrs.asdict(base.text),
        "vision": attrs.asdict(base.vision),
    }


def _verdict(plan: TrainingPlan) -> str:
    forced = any(w.startswith("FORCED") for w in plan.warnings)
    return VERDICT_FORCED if forced else VERDICT_OK


def document_report(
    *,
    document: str,
    base: BaseSpec,
    examples: Sequence[ExampleBudget],
    settings: TrainingSettings,
    host: HostFacts,
    force: bool = False,
    processes: int = 1,
    notes: Sequence[str] = (),
    local_processes: int | None = None,
    sharding: str = "auto",
    label_head: bool = False,
    lora_recompute: bool = False,
    missing_images: Sequence[dict[str, str]] = (),
) -> dict[str, Any]:
    """The doctor's view of one document: examples, longest, plan, verdict.

    ``missing_images`` (``{"path", "origin"}`` each) are images the document
    names that do not exist yet: planned anyway, listed so the doctor can say
    that ``dlm train`` needs them first.

    ``label_head`` and ``lora_recompute`` plan the step ``dlm train`` runs
    with those speed levers on (logits at completion tokens only; LoRA
    inputs recomputed in backward).

    With several ``processes`` (``local_processes`` of them on this host) the
    plan is per process, and says whether the base is sharded (FSDP).

    A refusal does not raise: it becomes ``verdict: "refused"`` with the
    message and the way out under ``refusal`` (``plan`` is then ``None``),
    so the report still shows the token counts that led to it. An empty
    ``examples`` is reported as a refusal too.
    """
    rows = [e.to_dict() for e in examples]
    longest: dict[str, Any] | None = None
    if examples:
        index = max(range(len(examples)), key=lambda i: examples[i].total)
        longest = {"index": index, **rows[index]}
    report: dict[str, Any] = {
        "document": document,
        "base": base_summary(base),
        "settings": {
            "lora_r": settings.lora_r,
            "lora_dropout": settings.lora_dropout,
            "sequence_len": settings.sequence_len,
            "micro_batch_size": settings.micro_batch_size,
            "grad_accum": settings.grad_accum,
            "precision": settings.precision,
        },
        "examples": rows,
        "missing_images": [dict(image) for image in missing_images],
        "longest": longest,
        "plan": None,
        "verdict": VERDICT_REFUSED,
        "refusal": None,
        "forced": force,
    }
    try:
        plan = plan_training(
            base,
            host,
            example_tokens=[e.total for e in examples],
            example_images=[e.images for e in examples],
            settings=settings,
            force=force,
            processes=processes,
            notes=notes,
            local_processes=local_processes,
            sharding=sharding,
            example_labels=[e.completion_tokens for e in examples] if label_head else None,
            lora_recompute=lora_recompute,
        )
    except PlanError as exc:
        report["refusal"] = {"message": exc.message, "hint": exc.hint}
        return report
    report["plan"] = plan.to_dict()
    report["verdict"] = _verdict(plan)
    return report


def base_verdicts(
    bases: Iterable[BaseSpec],
    host: HostFacts,
    *,
    force: bool = False,
    label_head: bool = False,
    lora_recompute: bool = False,
) -> list[dict[str, Any]]:
    """Can this host train each base? Planned on a minimal example (one image
    and a short text) with default settings; ``label_head`` as in
    :func:`document_report`."""
    settings = TrainingSettings()
    rows = []
    for base in sorted(bases, key=lambda b: b.key):
        tokens = base.image.tokens_per_image + MINIMAL_TEXT_TOKENS
        row: dict[str, Any] = {
            "key": base.key,
            "family": base.family,
            "params": base.params.total,
            "tiny": base.tiny,
            "cuda_first": base.cuda_first,
        }
        try:
            plan = plan_training(
                base,
                host,
                example_tokens=[tokens],
                example_images=[1],
                settings=settings,
                force=force,
                example_labels=[MINIMAL_COMPLETION_TOKENS] if label_head else None,
                lora_recompute=lora_recompute,
            )
        except PlanError as exc:
            row.update(verdict=VERDICT_REFUSED, reason=exc.message, expected_peak_bytes=None)
        else:
            row.update(
                verdict=_verdict(plan),
                reason="",
                expected_peak_bytes=plan.expected_peak_bytes,
                precision=plan.precision,
                micro_batch=plan.micro_batch,
                checkpointing=plan.checkpointing,
            )
        rows.append(row)
    return rows
