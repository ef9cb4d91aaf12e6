"""What ``dlm train`` tells the user before it starts: what each section became, and the plan."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from dlm.engine.document.budget import Budget
from dlm.engine.document.examples import ExampleSet


def outcomes_table(example_set: ExampleSet) -> Table:
    table = Table(title="sections → training examples", title_justify="left")
    table.add_column("where")
    table.add_column("section")
    table.add_column("content", overflow="fold")
    table.add_column("examples", justify="right")
    table.add_column("became", overflow="fold")
    for outcome in example_set.outcomes:
        table.add_row(
            outcome.origin,
            outcome.kind,
            outcome.label,
            str(outcome.examples),
            outcome.detail,
            style="yellow" if outcome.skipped else None,
        )
    return table


def print_outcomes(example_set: ExampleSet, console: Console) -> None:
    console.print(outcomes_table(example_set))
    total = len(example_set.examples)
    skipped = len(example_set.skipped)
    line = f"{total} training example{'s' if total != 1 else ''}"
    if skipped:
        line += f"; {skipped} section{'s' if skipped != 1 else ''} not trained (see above)"
    console.print(line)


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


_STRATEGY = {"ddp": "data parallel (DDP)", "fsdp": "sharded with FSDP"}


def print_plan(plan: Any, budget: Budget, console: Console) -> None:
    host = plan.host
    parts = [
        f"[bold]plan[/bold] {host.backend} ({host.device_name})",
        f"precision {plan.precision}",
        f"micro-batch {plan.micro_batch} × accumulation {plan.grad_accum}"
        + (f" × {plan.processes} processes" if plan.processes > 1 else "")
        + f" = effective batch {plan.effective_batch}",
        f"sequence_len {budget.sequence_len}",
        "gradient checkpointing on" if plan.checkpointing else "no gradient checkpointing",
        f"attention {plan.attn_implementation}",
        f"expected peak {_gib(plan.expected_peak_bytes)}"
        + (" per process" if plan.processes > 1 else ""),
    ]
    if plan.processes > 1:
        parts.insert(1, _STRATEGY.get(plan.strategy, plan.strategy))
    console.print(" · ".join(parts))
    for note in plan.notes:
        console.print(f"  note: {note}")
    for warning in plan.warnings:
        console.print(f"  [yellow]warning:[/yellow] {warning}")
