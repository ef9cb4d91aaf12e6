"""``dlm doctor DOC``: the plan for a document, computed before anything loads.

Tiny bases are built (seconds, offline) so their processor counts tokens
exactly; real bases are planned from their shipped hyperparameters
without a download, with text tokens estimated by the family.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from dlm.engine.document.budget import check_budget
from dlm.engine.document.prepare import prepare_document
from dlm.engine.training.levers import choose_levers
from dlm.family import BoundBase
from dlm.hardware.doctor_report import ExampleBudget, document_report
from dlm.hardware.host import HostFacts
from dlm.records import TokenCount, TrainingExample
from dlm.store.paths import dlm_home


def plan_for_document(
    doc: Path,
    host: HostFacts,
    force: bool,
    processes: int,
    *,
    local_processes: int | None = None,
    sharding: str = "auto",
) -> dict[str, Any]:
    # A new document names images not dropped in yet: plan it anyway, and say so.
    prepared = prepare_document(doc, missing_ok=True)
    levers = choose_levers(host.backend)  # plan the step dlm train takes here
    base, family = prepared.base, prepared.family
    examples = prepared.example_set.examples
    missing = {image.path for image in prepared.images if image.missing}
    processor = None
    if base.tiny:
        from dlm.engine.quiet import quiet_transformers

        quiet_transformers()
        processor = family.load_processor(base, family.materialize(base, dlm_home()))
    notes: list[str] = []
    if processor is None:
        notes.append(f"text tokens estimated: {base.key} is planned without downloading it")
    budgets: list[ExampleBudget] = []
    if examples:
        bound = family.bind(base, processor)
        counter = _MissingAtTheBound(bound, missing) if missing else bound
        budget = check_budget(prepared.doc, cast(BoundBase, counter), examples)
        budgets = [
            ExampleBudget.from_count(e, c, missing)
            for e, c in zip(examples, budget.counts, strict=True)
        ]
        if budget.note:
            notes.append(budget.note)
    missing_images = [
        {
            "path": image.source,
            "origin": f"{prepared.doc.display_path}:{prepared.doc.sections[image.section_index].line}",
        }
        for image in prepared.images
        if image.missing
    ]
    images = [
        {
            "path": image.source,
            "pixels": None if image.missing else [image.width, image.height],
            "becomes": None
            if image.missing
            else family.bind(base).describe_image(image.width, image.height),
        }
        for image in prepared.images
    ]
    report = document_report(
        document=str(doc),
        base=base,
        examples=budgets,
        settings=prepared.doc.frontmatter.training,
        host=host,
        force=force,
        processes=processes,
        notes=notes,
        local_processes=local_processes,
        sharding=sharding,
        label_head=levers.label_head,
        lora_recompute=levers.lora_recompute,
        missing_images=missing_images,
    )
    report["images"] = images  # what each image becomes for the model
    return report


class _MissingAtTheBound:
    """Counts an example whose image does not exist yet as a family does before
    a download: image tokens at the base's upper bound, text estimated. (A
    family may open the image to count it: InternVL's tiles follow its size.)"""

    def __init__(self, bound: BoundBase, missing: set[Path]):
        self.base = bound.base
        self.bound = bound
        self.unloaded = bound.family.bind(bound.base)
        self.missing = missing

    def count_tokens(self, example: TrainingExample) -> TokenCount:
        if any(ref.blob_path in self.missing for ref in example.images):
            return self.unloaded.count_tokens(example)
        return self.bound.count_tokens(example)
