"""``dlm verify``: re-hash the store against its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import click

from dlm.cli.output import console, err_console, json_option, print_json
from dlm.errors import DlmError, StoreError


def _checked(paths: Any) -> dict[str, int] | None:
    """What the manifest lists (what was re-hashed); None when it cannot be read."""
    from dlm.store.manifest import load_manifest

    try:
        manifest = load_manifest(paths)
    except DlmError:
        return None
    return {
        "blobs": len(manifest.blobs),
        "adapters": len(manifest.adapters),
        "exports": len(manifest.exports),
    }


@click.command("verify")
@click.argument("doc", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option()
def verify(doc: Path, as_json: bool) -> None:
    """Re-hash blobs, adapter versions and exports; exit 1 on any mismatch."""
    from dlm.format import parse_file
    from dlm.store.adapters import list_versions
    from dlm.store.paths import StorePaths
    from dlm.store.verify import verify_store

    document = parse_file(doc)
    paths = StorePaths.for_id(document.frontmatter.dlm_id)
    if not paths.exists():
        # Nothing to check is not the same as nothing wrong: a script gating
        # on `dlm verify` must not pass a document that was never trained.
        raise StoreError(
            f"no store for {doc}: {paths.root} does not exist",
            hint=f"`dlm train {doc}` creates it (is DLM_HOME the one you trained with?)",
            subject="verify",
        )
    problems = verify_store(paths)
    errors = [p for p in problems if p.is_error]
    failure = (
        DlmError(
            f"{len(errors)} problem{'s' if len(errors) != 1 else ''} in {paths.root}",
            hint="retrain (`dlm train`) or re-export (`dlm export`) to replace damaged files",
            subject="verify",
        )
        if errors
        else None
    )
    if as_json:
        print_json(
            {
                "document": str(doc),
                "dlm_id": paths.dlm_id,
                "store": str(paths.root),
                "ok": not errors,
                "problems": [attrs.asdict(p) for p in problems],
                "errors": len(errors),
                "leftovers": len(problems) - len(errors),
                "checked": _checked(paths),
                "versions": list_versions(paths),
            }
        )
        if failure is not None:  # the report is the result; the message and exit 1 as ever
            err_console.print(failure.render(), style="bold red", markup=False, highlight=False)
            click.get_current_context().exit(failure.exit_code)
        return
    for problem in problems:
        mark = "[red]✗[/red]" if problem.is_error else "[yellow]![/yellow]"
        console.print(f"{mark} {problem.kind}: {problem.path}: {problem.message}")
    if failure is not None:
        raise failure
    leftovers = len(problems) - len(errors)
    suffix = (
        f" ({leftovers} leftover{'s' if leftovers != 1 else ''} of interrupted work, cleaned by the next command)"
        if leftovers
        else ""
    )
    if not list_versions(paths):
        suffix += "; no adapter trained yet"
    console.print(f"[green]✓[/green] store {paths.root} is intact{suffix}")
