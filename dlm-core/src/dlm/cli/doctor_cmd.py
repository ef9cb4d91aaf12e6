"""``dlm doctor``: the host, the plugins, and the training plan for a document.

Without a document it shows what this host is (backend, device, memory,
precisions, library versions), which plugins loaded (and why one did not),
and whether each installed base could train here. With a document it leads
with the document's plan: every example's token count, the longest one,
the images not there yet, the precision / batch / checkpointing the planner
picks, the expected peak memory by part, and the verdict; the host is then
one line, and the inventory (plugins, every base) comes with ``--all``
(``--json`` always has everything). A refusal exits 1 with the numbers and
the way out. ``--assume`` plans for another machine; ``--processes`` and
``--accelerate-config`` plan a multi-process run (per process: its memory,
whether the base is sharded with FSDP, and the effective batch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dlm.cli.output import console, err_console, json_option, print_json
from dlm.errors import PlanError
from dlm.hardware.host import GIB


def _gib(n: int | None) -> str:
    return "—" if n is None else f"{n / GIB:.1f} GiB"


def _size(n: int) -> str:
    """GiB for big parts, MiB for the small ones a GiB column would show as 0.0."""
    if n >= GIB // 10:
        return _gib(n)
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


# ----------------------------------------------------------------- gathering


def plugin_rows() -> list[dict[str, Any]]:
    from dlm.cli.app import load_plugin_commands
    from dlm.plugins import get_registry

    load_plugin_commands()  # so a command that collides is reported too
    registry = get_registry()
    return [
        {
            "name": info.name,
            "distribution": info.distribution,
            "version": info.version,
            "builtin": info.builtin,
            "hooks": list(info.hooks),
            "error": info.error,
            "conflicts": list(info.conflicts),  # names another plugin (or core) also claims
        }
        for info in registry.plugins
    ]


def _plan_document(
    doc: Path, host: Any, force: bool, processes: int, **parallel: Any
) -> dict[str, Any]:
    """Parse, build examples, count tokens, plan: see :mod:`dlm.engine.training.document_plan`."""
    from dlm.engine.training.document_plan import plan_for_document

    return plan_for_document(doc, host, force, processes, **parallel)


def gather(
    doc: Path | None,
    *,
    assume: str | None,
    force: bool,
    processes: int | None,
    accelerate_config: str | None = None,
) -> dict[str, Any]:
    from dlm.engine.distributed.topology import resolve_topology
    from dlm.engine.training.levers import choose_levers
    from dlm.hardware.doctor_report import base_verdicts
    from dlm.hardware.host import assume_host, library_versions, probe_host
    from dlm.hardware.plan import usable_bytes
    from dlm.plugins import get_registry

    topology = resolve_topology(processes, accelerate_config)
    host = assume_host(assume) if assume else probe_host()
    # plan the step dlm train runs on this host: with its speed levers
    levers = choose_levers(host.backend)
    data: dict[str, Any] = {
        "host": {**host.to_dict(), "usable_bytes": usable_bytes(host)},
        "versions": library_versions(),
        "plugins": plugin_rows(),
        "levers": levers.on(),
        "bases": base_verdicts(
            get_registry().bases.values(),
            host,
            force=force,
            label_head=levers.label_head,
            lora_recompute=levers.lora_recompute,
        ),
        "export_verdicts": export_verdicts(),
    }
    if topology.distributed:
        data["topology"] = topology.to_dict()
    if doc is not None:
        data["document"] = _plan_document(
            doc,
            host,
            force,
            topology.processes,
            local_processes=topology.local_processes,
            sharding=topology.sharding,
        )
    return data


# ----------------------------------------------------------------- rendering


def _host_table(data: dict[str, Any]) -> Any:
    from rich.table import Table

    host = data["host"]
    table = Table(title="host" + (" (assumed)" if host["assumed"] else ""), show_header=False)
    table.add_column("fact", style="bold")
    table.add_column("value")
    capability = host["compute_capability"]
    rows = [
        ("backend", host["backend"]),
        ("device", host["device_name"]),
        ("memory", f"{_gib(host['memory_bytes'])} ({_gib(host['usable_bytes'])} usable)"),
        ("bf16", "yes" if host["bf16"] else "no"),
        ("fp16", "yes" if host["fp16"] else "no"),
    ]
    if capability:
        rows.append(("compute capability", f"{capability[0]}.{capability[1]}"))
    if host["backend"] == "cuda":
        rows.append(("devices", str(host["device_count"])))
    rows += [
        ("CPU cores", str(host["cpu_count"])),
        ("system memory", _gib(host["system_memory_bytes"])),
        (
            "versions",
            ", ".join(f"{k} {v or 'missing'}" for k, v in data["versions"].items()),
        ),
        ("speed levers", ", ".join(data["levers"]) or "none (plain step)"),
    ]
    for fact, value in rows:
        table.add_row(fact, value)
    return table


def _host_line(data: dict[str, Any]) -> str:
    """The host in one line, under a document's plan (the table is ``--all``'s)."""
    host = data["host"]
    return (
        f"host{' (assumed)' if host['assumed'] else ''}: {host['backend']}, "
        f"{host['device_name']}, {_gib(host['memory_bytes'])} "
        f"({_gib(host['usable_bytes'])} usable); "
        "`--all` adds the host's details, the plugins and every installed base"
    )


def _plugins_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="plugins")
    for column in ("plugin", "distribution", "version", "hooks", "error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["name"] + (" (built-in)" if row["builtin"] else ""),
            row["distribution"],
            row["version"],
            ", ".join(row["hooks"]),
            "\n".join(([row["error"]] if row["error"] else []) + row["conflicts"]),
            style="red" if row["error"] or row["conflicts"] else None,
        )
    return table


def export_verdicts() -> dict[str, dict[str, str]]:
    """Each export target's probe verdict for each base (offline, cheap)."""
    from dlm.plugins import get_registry

    registry = get_registry()
    return {
        base.key: {
            name: exporter.probe(base).verdict.value
            for name, exporter in sorted(registry.exporters.items())
        }
        for base in sorted(registry.bases.values(), key=lambda b: b.key)
    }


def _bases_table(rows: list[dict[str, Any]], exports: dict[str, dict[str, str]]) -> Any:
    from rich.table import Table

    table = Table(title="bases on this host (one image, a short answer)")
    for column in ("base", "params", "verdict", "plan / reason", "export targets"):
        table.add_column(column, overflow="fold")
    for row in rows:
        if row["verdict"] == "refused":
            detail = row["reason"]
        else:
            detail = (
                f"{row['precision']}, micro-batch {row['micro_batch']}"
                f"{', checkpointing' if row['checkpointing'] else ''}, "
                f"peak {_gib(row['expected_peak_bytes'])}"
            )
        style = {"refused": "red", "forced": "yellow"}.get(row["verdict"])
        params = f"{row['params'] / 1e9:.2f}B" if row["params"] >= 1e8 else f"{row['params']:,}"
        table.add_row(
            row["key"] + (" (tiny)" if row["tiny"] else ""),
            params,
            row["verdict"],
            detail,
            ", ".join(f"{t} {v}" for t, v in exports.get(row["key"], {}).items()),
            style=style,
        )
    return table


MEMORY_PARTS = (
    ("weights", "base weights"),
    ("lora_weights", "LoRA weights (fp32)"),
    ("optimizer", "AdamW states (fp32)"),
    ("lora_grads", "LoRA gradients (fp32)"),
    ("activations", "LM activations"),
    ("logits", "logits and loss (fp32)"),
    ("vision_output", "image features"),
    ("vision_activations", "vision activations (LoRA on the tower)"),
    ("vision_peak", "vision tower forward peak (transient)"),
    ("overhead", "runtime and allocator"),
)


#: How the parts FSDP shards read in the memory table of a sharded plan.
SHARDED_PARTS = {
    "weights": "base weights (this process's shard, the root whole, 2 gathered layers)",
    "lora_weights": "LoRA weights (fp32, this process's shard)",
    "optimizer": "AdamW states (fp32, this process's shard)",
}


def _processes_row(plan: dict[str, Any]) -> str:
    processes, local = plan["processes"], plan.get("local_processes", plan["processes"])
    where = (
        "on this host"
        if local == processes
        else f"{local} on each of {processes // local} machines"
    )
    how = {
        "fsdp": "the base sharded with FSDP across them",
        "ddp": "data parallel (DDP): the whole base in each",
    }.get(plan.get("strategy", ""), plan.get("strategy", ""))
    return f"{processes} ({where}); {how}"


def document_plan_rows(report: dict[str, Any], *, max_examples: int = 40) -> list[Any]:
    """Rich renderables for a :func:`~dlm.hardware.doctor_report.document_report` dict."""
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = []
    base = report["base"]
    name = Path(report["document"]).name
    examples = Table(title=f"{name}: {len(report['examples'])} examples")
    for column in ("#", "origin", "kind", "images", "image tok", "text tok", "total"):
        examples.add_column(column, justify="right" if column not in ("origin", "kind") else "left")
    longest = (report.get("longest") or {}).get("index")
    for i, row in enumerate(report["examples"][:max_examples]):
        examples.add_row(
            str(i + 1),
            row["origin"],
            row["kind"],
            str(row["images"]) + (" (missing)" if row.get("missing_images") else ""),
            str(row["image_tokens"]),
            str(row["prompt_tokens"] + row["completion_tokens"]),
            str(row["total"]) + (" ← longest" if i == longest else ""),
            style="bold" if i == longest else None,
        )
    hidden = len(report["examples"]) - max_examples
    if hidden > 0:
        examples.add_row("…", f"{hidden} more (see --json)", "", "", "", "", "")
    out.append(examples)
    for image in report.get("images") or []:
        if image["becomes"]:
            width, height = image["pixels"]
            out.append(Text(f"image {image['path']}: {width}×{height} → {image['becomes']}"))
    missing = report.get("missing_images") or []
    for image in missing:
        out.append(
            Text(
                f"missing image: {image['path']} ({image['origin']}) is not there yet; "
                "planned at the base's largest image, text tokens estimated. `dlm train` "
                'needs it: drop the image at that path, or edit the ::image path="…":: fence',
                style="bold yellow",
            )
        )

    plan = report["plan"]
    if plan is not None:
        table = Table(title=f"plan for {base['key']}", show_header=False)
        table.add_column("setting", style="bold")
        table.add_column("value")
        table.add_row("precision", plan["precision"])
        if plan["processes"] > 1:
            table.add_row("processes", _processes_row(plan))
        table.add_row(
            "batch",
            f"micro-batch {plan['micro_batch']} x accumulation {plan['grad_accum']}"
            + (f" x {plan['processes']} processes" if plan["processes"] > 1 else "")
            + f" = effective batch {plan['effective_batch']}",
        )
        table.add_row("gradient checkpointing", "on" if plan["checkpointing"] else "off")
        table.add_row("attention", plan["attn_implementation"])
        table.add_row("sequence length", f"{plan['seq_len']} (longest example)")
        table.add_row(
            "expected peak",
            f"{_gib(plan['expected_peak_bytes'])} of {_gib(plan['usable_bytes'])} usable"
            + (" per process" if plan["processes"] > 1 else ""),
        )
        out.append(table)

        memory = Table(
            title="expected peak memory by part"
            + (" (per process)" if plan["processes"] > 1 else "")
        )
        memory.add_column("part")
        memory.add_column("size", justify="right")
        for key, label in MEMORY_PARTS:
            if plan["memory"][key]:
                if plan.get("strategy") == "fsdp" and key in SHARDED_PARTS:
                    label = SHARDED_PARTS[key]
                memory.add_row(label, _size(plan["memory"][key]))
        memory.add_row(
            Text("total", style="bold"), Text(_gib(plan["memory"]["total"]), style="bold")
        )
        out.append(memory)
        for note in plan["notes"]:
            out.append(Text(f"note: {note}", style="dim"))
        for warning in plan["warnings"]:
            out.append(Text(f"warning: {warning}", style="bold yellow"))

    verdict = report["verdict"]
    style = {"ok": "bold green", "forced": "bold yellow", "refused": "bold red"}[verdict]
    label = {
        "ok": "verdict: fits",
        "forced": "verdict: runs only because of --force",
        "refused": "verdict: refused",
    }[verdict]
    if missing and verdict != "refused":
        label += (
            " (once the missing image exists)"
            if len(missing) == 1
            else f" (once the {len(missing)} missing images exist)"
        )
    out.append(Text(label, style=style))
    return out


# ----------------------------------------------------------------- command


@click.command("doctor")
@click.argument(
    "doc",
    required=False,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="[DOC]",
)
@json_option("Machine-readable output (always all of it; docs/json.md).")
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="With DOC, also show the host's details, the plugins and every installed base "
    "(shown anyway without DOC).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Plan past the refusals --force lifts (real base on CPU, CUDA-first base on a "
    "large-memory Mac, a plan that does not fit); recorded in the plan.",
)
@click.option(
    "--assume",
    metavar="SPEC",
    help="Plan for another host instead of probing this one: cuda:24, cuda:16:sm75, "
    "cuda:80x8, mps:16, mps:64:bf16, cpu:32 (memory in GiB).",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Plan N training processes (one per GPU; CPU processes share the RAM); memory is "
    "shown per process, and FSDP sharding where one device cannot hold the base. [default: 1]",
)
@click.option(
    "--accelerate-config",
    metavar="FILE",
    help="Plan the run an accelerate config describes (processes, machines); `default` reads "
    "the one `accelerate config` wrote.",
)
def doctor(
    doc: Path | None,
    as_json: bool,
    show_all: bool,
    force: bool,
    assume: str | None,
    processes: int | None,
    accelerate_config: str | None,
) -> None:
    """Show the training plan for DOC and its verdict, or (without DOC, or with --all)
    the host, the plugins and whether each installed base could train here."""
    data = gather(
        doc,
        assume=assume,
        force=force,
        processes=processes,
        accelerate_config=accelerate_config,
    )
    document = data.get("document")
    refused = document is not None and document["verdict"] == "refused"
    if as_json:
        print_json(data)
        if refused:
            click.get_current_context().exit(1)
        return

    if document is not None:
        for renderable in document_plan_rows(document):
            console.print(renderable)
    if document is None or show_all:
        console.print(_host_table(data))
        console.print(_plugins_table(data["plugins"]))
        if data["bases"]:
            console.print(_bases_table(data["bases"], data["export_verdicts"]))
    else:
        console.print(_host_line(data), style="dim", markup=False, highlight=False)
        # A plugin that failed to load is said even in the short form: it may be
        # why a base is unknown.
        for row in data["plugins"]:
            if row["error"]:
                console.print(
                    f"plugin {row['name']} ({row['distribution']}) failed to load: {row['error']}",
                    style="red",
                    markup=False,
                    highlight=False,
                )
            for conflict in row["conflicts"]:
                console.print(
                    f"plugin {row['name']}: {conflict}", style="red", markup=False, highlight=False
                )
    if document is not None and refused:
        refusal = document["refusal"]
        text = PlanError(refusal["message"], hint=refusal["hint"]).render()
        err_console.print(text, style="bold red", markup=False, highlight=False)
        click.get_current_context().exit(1)
