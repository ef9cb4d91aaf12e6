"""``dlm export``: ship the adapter (HF snapshot by default; more targets from plugins)."""

from __future__ import annotations

from pathlib import Path

import click

from dlm.cli.options import adapter_version as check_adapter_version
from dlm.cli.output import console, err_console, json_option, print_json
from dlm.errors import UsageError


def _list_targets(doc: Path | None, as_json: bool) -> None:
    from rich.table import Table

    from dlm.format import parse_file
    from dlm.plugins import get_registry

    registry = get_registry()
    base = None
    if doc is not None:
        base = registry.base(parse_file(doc).frontmatter.base_model)
    if as_json:
        targets = []
        for name, exporter in sorted(registry.exporters.items()):
            probe = exporter.probe(base) if base else None
            targets.append(
                {
                    "target": name,
                    "plugin": registry.provider.get(f"exporter:{name}"),
                    "description": exporter.description,
                    "verdict": probe.verdict.value if probe else None,
                    "why": probe.reason if probe else None,
                }
            )
        print_json({"base": base.key if base else None, "targets": targets})
        return
    table = Table(
        title="export targets" + (f" for {base.key}" if base else ""), title_justify="left"
    )
    table.add_column("target")
    table.add_column("plugin")
    table.add_column("description", overflow="fold")
    if base:
        table.add_column("verdict")
        table.add_column("why", overflow="fold")
    for name, exporter in sorted(registry.exporters.items()):
        row = [name, registry.provider.get(f"exporter:{name}", "?"), exporter.description]
        if base:
            probe = exporter.probe(base)
            row += [probe.verdict.value, probe.reason]
        table.add_row(*row)
    console.print(table)


@click.command("export")
@click.argument("doc", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--target", default="hf-snapshot", show_default=True, help="Export target (--list-targets)."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write here instead of the store.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Fail instead of falling back when the target can't export this base.",
)
@click.option("--quant", help="Quantization for targets that quantize (e.g. F16, Q8_0, Q4_K_M).")
@click.option("--no-smoke", is_flag=True, help="Skip the exporter's load-and-answer smoke test.")
@click.option(
    "--adapter-version",
    metavar="vNNNN",
    callback=check_adapter_version,
    help="Export this version instead of the current one.",
)
@click.option(
    "--list-targets", is_flag=True, help="List targets (and their verdicts for DOC's base)."
)
@json_option()
def export(
    doc: Path | None,
    target: str,
    out: Path | None,
    strict: bool,
    quant: str | None,
    no_smoke: bool,
    adapter_version: str | None,
    list_targets: bool,
    as_json: bool,
) -> None:
    """Export DOC's adapter."""
    if list_targets:
        _list_targets(doc, as_json)
        return
    if doc is None:
        raise UsageError("missing DOC", hint="dlm export DOC [--target NAME]", subject="export")
    from dlm.engine.export.dispatch import run_export

    # Only what the user passed: the target refuses options it does not take.
    given: dict[str, object] = {}
    if quant is not None:
        given["quant"] = quant
    if no_smoke:
        given["smoke"] = False
    outcome = run_export(
        doc,
        target=target,
        out=out,
        strict=strict,
        adapter_version=adapter_version,
        options=given,
        console=err_console,
    )
    for note in outcome.result.notes:
        err_console.print(f"note: {note}")
    if as_json:
        from dlm.format import parse_file
        from dlm.store.exports import EXTERNAL_RECORD
        from dlm.store.paths import StorePaths

        # Files and hashes: the export's own record with --out, else the store's manifest.
        manifest_path = (
            outcome.out_dir / EXTERNAL_RECORD
            if out is not None
            else StorePaths.for_id(parse_file(doc).frontmatter.dlm_id).manifest
        )
        print_json(
            {
                "document": str(doc),
                "target": outcome.target,
                "requested": outcome.requested,
                "fell_back": outcome.fell_back,
                "verdict": outcome.probe.verdict.value,
                "out": str(outcome.out_dir),
                "primary": str(outcome.out_dir / outcome.result.primary),
                "files": list(outcome.result.files),
                "manifest": str(manifest_path) if manifest_path.is_file() else None,
                "details": outcome.result.manifest,
                "notes": list(outcome.result.notes),
            }
        )
        return
    console.print(f"exported {outcome.target} → {outcome.out_dir}")
    console.print(f"  {outcome.out_dir / outcome.result.primary}")
