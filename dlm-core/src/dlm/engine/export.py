"""The export dispatcher: probe the target, fall back or refuse, stage, commit.

Every exporter writes into a staging directory; the store renames it into
place only when the exporter returns, so an interrupted export never
leaves a half-written directory behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console
from rich.panel import Panel

from dlm.engine.prompting import resolve_version
from dlm.errors import ExportError
from dlm.format import parse_file
from dlm.plugins import get_registry
from dlm.records import ExportRequest, ExportResult, ProbeResult, Verdict
from dlm.store.exports import stage_export
from dlm.store.lock import StoreLock
from dlm.store.paths import StorePaths, dlm_home

FALLBACK_TARGET = "hf-snapshot"


@attrs.frozen
class ExportOutcome:
    target: str  # the target that actually ran
    requested: str
    probe: ProbeResult
    out_dir: Path
    result: ExportResult
    fell_back: bool


def probe_banner(target: str, base_key: str, architecture: str, probe: ProbeResult) -> str:
    return f"{target}: {base_key} ({architecture}) is {probe.verdict.value}" + (
        f" — {probe.reason}" if probe.reason else ""
    )


def run_export(
    doc_path: str | Path,
    *,
    target: str = FALLBACK_TARGET,
    out: Path | None = None,
    strict: bool = False,
    adapter_version: str | None = None,
    options: dict[str, Any] | None = None,
    console: Console,
) -> ExportOutcome:
    options = dict(options or {})
    doc = parse_file(Path(doc_path))
    # The document's export defaults, for targets that read them (hf-snapshot ignores them).
    options.setdefault("quant", doc.frontmatter.export.default_quant)
    registry = get_registry()
    base = registry.base(doc.frontmatter.base_model)
    family = registry.family_for(base)
    exporter = registry.exporter(target)
    probe = exporter.probe(base)
    requested = target
    fell_back = False
    if probe.verdict is not Verdict.SUPPORTED:
        banner = probe_banner(target, base.key, base.architecture, probe)
        if strict:
            raise ExportError(
                banner,
                hint=f"drop --strict to fall back to {FALLBACK_TARGET}, or pick another base",
            )
        console.print(
            Panel(
                f"{banner}\nfalling back to {FALLBACK_TARGET}",
                title="export fallback",
                border_style="yellow",
            )
        )
        exporter = registry.exporter(FALLBACK_TARGET)
        target = FALLBACK_TARGET
        fell_back = True

    paths = StorePaths.for_id(doc.frontmatter.dlm_id)
    version = resolve_version(paths, adapter_version)
    adapter_dir = paths.version_dir(version)
    run_file = adapter_dir / "training_run.json"
    training_run = json.loads(run_file.read_text()) if run_file.is_file() else {}
    smoke_examples: tuple = ()
    if exporter.name != FALLBACK_TARGET:
        from dlm.engine.prepare import prepare_document

        prepared = prepare_document(doc_path, allow_outside=True)
        smoke_examples = tuple(e for e in prepared.example_set.examples if e.images)

    from dlm.engine.quiet import quiet_transformers

    quiet_transformers()
    name = exporter.output_name(options)
    with StoreLock(paths.lock_file, command=f"dlm export --target {target}"):
        base_dir = family.materialize(base, dlm_home())
        with stage_export(paths, name, out=out, adapter_version=version) as staging:
            request = ExportRequest(
                document=Path(doc_path).resolve(),
                dlm_id=doc.frontmatter.dlm_id,
                base=base,
                family=family,
                base_dir=base_dir,
                adapter_dir=adapter_dir,
                adapter_version=version,
                training_run=training_run,
                out_dir=staging,
                system_prompt=doc.frontmatter.system_prompt,
                export_settings=attrs.asdict(doc.frontmatter.export),
                options=options,
                smoke_examples=smoke_examples,
            )
            console.print(f"exporting {target} from adapter {version}…")
            result = exporter.export(request)
    final = out if out is not None else paths.export_dir(name)
    return ExportOutcome(
        target=target,
        requested=requested,
        probe=probe,
        out_dir=final,
        result=result,
        fell_back=fell_back,
    )
