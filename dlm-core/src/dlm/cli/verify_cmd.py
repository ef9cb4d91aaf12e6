"""``dlm verify``: re-hash the store against its manifest."""

from __future__ import annotations

from pathlib import Path

import click

from dlm.cli.output import console
from dlm.errors import DlmError


@click.command("verify")
@click.argument("doc", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def verify(doc: Path) -> None:
    """Re-hash blobs, adapter versions and exports; exit 1 on any mismatch."""
    from dlm.format import parse_file
    from dlm.store.paths import StorePaths
    from dlm.store.verify import verify_store

    document = parse_file(doc)
    paths = StorePaths.for_id(document.frontmatter.dlm_id)
    problems = verify_store(paths)
    if problems:
        for problem in problems:
            console.print(f"[red]✗[/red] {problem.kind}: {problem.path}: {problem.message}")
        raise DlmError(
            f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {paths.root}",
            hint="retrain (`dlm train`) or re-export (`dlm export`) to replace damaged files",
            subject="verify",
        )
    console.print(f"[green]✓[/green] store {paths.root} is intact")
