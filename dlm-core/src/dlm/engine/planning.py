"""``dlm doctor DOC``: the plan for a document, computed before anything loads.

Tiny bases are built (seconds, offline) so their processor counts tokens
exactly; real bases are planned from their shipped hyperparameters
without a download, with text tokens estimated by the family.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlm.engine.budget import check_budget
from dlm.engine.levers import choose_levers
from dlm.engine.prepare import prepare_document
from dlm.hardware.host import HostFacts
from dlm.hardware.report import ExampleBudget, document_report
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
    prepared = prepare_document(doc)
    levers = choose_levers(host.backend)  # plan the step dlm train takes here
    base, family = prepared.base, prepared.family
    examples = prepared.example_set.examples
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
        budget = check_budget(prepared.doc, base, family, processor, examples)
        budgets = [
            ExampleBudget.from_count(e, c) for e, c in zip(examples, budget.counts, strict=True)
        ]
        if budget.note:
            notes.append(budget.note)
    return document_report(
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
    )
