"""The export dispatcher: probe the target, fall back or refuse, stage, commit.

Every exporter writes into a staging directory; the store renames it into
place only when the exporter returns, so an interrupted export never
leaves a half-written directory behind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console
from rich.panel import Panel

from dlm.errors import ExportError, UsageError
from dlm.exporter import Exporter
from dlm.format import parse_file
from dlm.plugins import get_registry
from dlm.records import BaseSpec, ExportRequest, ExportResult, ProbeResult, Verdict
from dlm.store.adapters import current_version, list_versions
from dlm.store.exports import stage_export
from dlm.store.integrity import verify_adapter
from dlm.store.lock import StoreLock
from dlm.store.manifest import load_manifest
from dlm.store.paths import StorePaths, dlm_home
from dlm.store.space import disk_step, tree_size

FALLBACK_TARGET = "hf-snapshot"
# Options the dispatcher itself reads; every other key is the target's to take or refuse.
DISPATCHER_OPTIONS = frozenset({"strict"})
# Files a processor is saved from; everything else in a base folder is weights.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack")


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


def option_flag(key: str) -> str:
    return "--no-smoke" if key == "smoke" else f"--{key.replace('_', '-')}"


def check_options(exporter: Exporter, given: dict[str, Any]) -> list[str]:
    """The given option keys ``exporter`` does not take (empty: it takes them all)."""
    takes = exporter.takes_options
    if takes is None:  # a target that does not say: it sees every option, as before
        return []
    return sorted(key for key in given if key not in DISPATCHER_OPTIONS and key not in takes)


def export_version(paths: StorePaths, requested: str | None, doc_path: Path) -> str:
    """The adapter version to export: ``requested`` or the current one."""
    if requested is None:
        version = current_version(paths)
        if version is None:
            raise ExportError(
                f"nothing to export: {doc_path} has no trained adapter yet",
                hint=f"`dlm train {doc_path}` commits one; then export it",
            )
        return version
    if not re.fullmatch(r"v?\d{1,12}", requested):
        raise UsageError(
            f"invalid adapter version {requested!r}: expected vNNNN (e.g. v0002) or its number",
            hint="list the versions with `dlm show DOC`",
            subject="export",
        )
    wanted = f"v{int(requested.removeprefix('v')):04d}"
    known = list_versions(paths)
    if wanted not in known:
        raise UsageError(
            f"no adapter version {wanted}; committed versions: {', '.join(known) or 'none'}",
            hint="list them with `dlm show DOC`",
            subject="export",
        )
    return wanted


def trained_base(paths: StorePaths, version: str, training_run: dict[str, Any]) -> str | None:
    """The base key ``version`` was trained on (its run record, else its manifest entry)."""
    key = (training_run.get("base") or {}).get("key")
    if key:
        return str(key)
    entry = load_manifest(paths).adapters.get(version)
    meta_base = entry.meta.get("base") if entry is not None else None
    return str(meta_base) if meta_base else None


def export_space_needed(
    target: str, base_dir: Path | None, adapter_dir: Path
) -> Callable[[], int | None]:
    """An estimate of the bytes an export writes, computed only if the disk fills."""

    def estimate() -> int | None:
        adapter = tree_size(adapter_dir)
        if base_dir is None or not base_dir.is_dir():
            return adapter
        files = [p for p in base_dir.rglob("*") if p.is_file()]
        weights = sum(p.stat().st_size for p in files if p.name.endswith(_WEIGHT_SUFFIXES))
        processor = sum(p.stat().st_size for p in files) - weights
        if target == FALLBACK_TARGET:
            return adapter + processor + 64 * 1024  # README and manifest
        # Targets that merge write at least the merged weights once more.
        return adapter + processor + weights

    return estimate


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
    """Export ``doc_path``'s adapter; ``options`` are the ones the user gave (quant, smoke).

    An option the requested target does not take is refused (exit 2) rather
    than silently dropped; one the fallback target does not take is noted.
    """
    given = dict(options or {})
    doc_path = Path(doc_path)
    doc = parse_file(doc_path)
    registry = get_registry()
    base = registry.base(doc.frontmatter.base_model)
    family = registry.family_for(base)
    exporter = registry.exporter(target)
    refused = check_options(exporter, given)
    if refused:
        flags = ", ".join(f"{option_flag(k)}" for k in refused)
        raise UsageError(
            f"target {target} does not take {flags}",
            hint=f"drop {flags}, or pick a target that does (`dlm export --list-targets`)",
            subject="export",
        )
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
        for key in check_options(exporter, given):
            console.print(f"note: {option_flag(key)} is not used by {FALLBACK_TARGET}")

    paths = StorePaths.for_id(doc.frontmatter.dlm_id)
    version = export_version(paths, adapter_version, doc_path)
    adapter_dir = verify_adapter(paths, version)  # a tampered adapter is never exported
    training_run = _read_training_run(adapter_dir, version)
    check_same_base(paths, version, training_run, base)
    smoke_examples: tuple = ()
    if exporter.name != FALLBACK_TARGET:
        from dlm.engine.document.prepare import prepare_document

        prepared = prepare_document(doc_path, allow_outside=True)
        smoke_examples = tuple(e for e in prepared.example_set.examples if e.images)

    from dlm.engine.quiet import quiet_transformers

    quiet_transformers()
    # The document's export defaults, for targets that read them (hf-snapshot ignores them).
    options = {"strict": strict, **given}
    options.setdefault("quant", doc.frontmatter.export.default_quant)
    name = exporter.output_name(options)
    destination = out if out is not None else paths.export_dir(name)
    with StoreLock(paths.lock_file, command=f"dlm export --target {target}"):
        base_dir = family.materialize(base, dlm_home())
        needed = export_space_needed(target, base_dir, adapter_dir)
        with (
            disk_step(f"writing the {target} export", destination, needed),
            stage_export(paths, name, out=out, adapter_version=version) as staging,
        ):
            request = ExportRequest(
                document=doc_path.resolve(),
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
    return ExportOutcome(
        target=target,
        requested=requested,
        probe=probe,
        out_dir=destination,
        result=result,
        fell_back=fell_back,
    )


def _read_training_run(adapter_dir: Path, version: str) -> dict[str, Any]:
    run_file = adapter_dir / "training_run.json"
    if not run_file.is_file():
        return {}
    try:
        data = json.loads(run_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(
            f"adapter {version}'s training_run.json is unreadable ({exc})",
            hint="run `dlm verify DOC`; retrain with `dlm train DOC` to replace it",
        ) from None
    return data if isinstance(data, dict) else {}


def check_same_base(
    paths: StorePaths, version: str, training_run: dict[str, Any], base: BaseSpec
) -> None:
    """Refuse an adapter trained on another base than the document names now:
    the snapshot would describe one base and carry an adapter for another."""
    trained_on = trained_base(paths, version, training_run)
    if trained_on and trained_on != base.key:
        raise ExportError(
            f"adapter {version} was trained on {trained_on}, but the document now names {base.key}",
            hint=f"set base_model back to {trained_on}, or retrain with `dlm train`",
        )
