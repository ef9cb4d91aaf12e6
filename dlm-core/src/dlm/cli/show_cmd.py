"""``dlm show``: what a document holds, what will train, and the store's state.

Imports no torch: it must answer in well under a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import click

from dlm.cli.output import console, json_option, print_json


def _store_state(prepared: Any) -> dict[str, Any]:
    from dlm.errors import StoreError
    from dlm.store.adapters import current_version, list_versions
    from dlm.store.lock import StoreLock
    from dlm.store.manifest import load_manifest

    paths = prepared.paths
    manifest = load_manifest(paths) if paths.manifest.exists() else None
    try:
        current = current_version(paths) if paths.root.exists() else None
    except StoreError as exc:  # show what is there; `dlm verify` says what to do
        current = f"unreadable ({exc.message})"
    return {
        "path": str(paths.root),
        "exists": paths.root.exists(),
        "current": current,
        "versions": list_versions(paths) if paths.root.exists() else [],
        "exports": sorted(manifest.exports) if manifest else [],
        "blobs": len(manifest.blobs) if manifest else 0,
        "locked_by": StoreLock.held_by(paths.lock_file) if paths.root.exists() else None,
    }


@click.command("show")
@click.argument("doc", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option()
@click.option(
    "--allow-outside", is_flag=True, help="Allow image paths outside the document's folder."
)
def show(doc: Path, as_json: bool, allow_outside: bool) -> None:
    """Show a document: id, base, sections, images, what will train, store state."""
    from dlm.engine.document.prepare import prepare_document

    # A new document names images not dropped in yet: show it, marking them.
    prepared = prepare_document(doc, allow_outside=allow_outside, missing_ok=True)
    base, family = prepared.base, prepared.family
    fm = prepared.doc.frontmatter
    counts: dict[str, int] = {}
    for section in prepared.doc.sections:
        counts[section.kind] = counts.get(section.kind, 0) + 1
    images = []
    for image in prepared.images:
        section = prepared.doc.sections[image.section_index]
        missing = image.missing
        images.append(
            {
                "path": image.source,
                "missing": missing,
                "sha256": None if missing else image.sha256,
                "size": None if missing else image.size,
                "width": None if missing else image.width,
                "height": None if missing else image.height,
                # what training does to it (the base's image settings for a new run)
                "prepared": None
                if missing
                else list(family.bind(base).prepared_size(image.width, image.height)),
                "becomes": None
                if missing
                else family.bind(base).describe_image(image.width, image.height),
                "notes": list(image.notes),
                "alt": getattr(section, "alt", None),
                "caption": bool(getattr(section, "caption", "").strip()),
                "from_source": getattr(section, "from_source", None),
            }
        )
    data = {
        "document": str(doc),
        "dlm_id": fm.dlm_id,
        "dlm_version": fm.dlm_version,
        "base": {
            "key": base.key,
            "family": base.family,
            "hub_id": base.hub_id,
            "revision": base.revision,
            "image_fit": base.image.resize
            if base.image.resize != "pinned"
            else family.bind(base).image_fit(),
        },
        "sections": counts,
        "images": images,
        "training": {
            "examples": len(prepared.example_set.examples),
            "by_kind": _by_kind(prepared),
            "outcomes": [attrs.asdict(o) for o in prepared.example_set.outcomes],
        },
        "store": _store_state(prepared),
    }
    if as_json:
        print_json(data)
        return
    _print_human(data, prepared)


def _by_kind(prepared: Any) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for example in prepared.example_set.examples:
        kinds[example.kind.value] = kinds.get(example.kind.value, 0) + 1
    return kinds


def _print_human(data: dict[str, Any], prepared: Any) -> None:
    from rich.table import Table

    from dlm.engine.training.train_report import outcomes_table

    base = data["base"]
    console.print(
        f"[bold]{data['document']}[/bold]  id {data['dlm_id']}  schema v{data['dlm_version']}"
    )
    console.print(f"base {base['key']} ({base['hub_id']} @ {base['revision'][:12]})")
    console.print("sections: " + ", ".join(f"{n} {k}" for k, n in sorted(data["sections"].items())))
    if data["images"]:
        table = Table(title="images", title_justify="left")
        for column in ("path", "sha256", "size", "pixels", "becomes", "caption"):
            table.add_column(column, overflow="fold" if column == "becomes" else "ellipsis")
        noted = any(image["notes"] for image in data["images"])
        if noted:
            table.add_column("note", overflow="fold")
        for image in data["images"]:
            if image["missing"]:
                row = [image["path"], "[bold yellow]missing[/bold yellow]", "", "", ""]
            else:
                row = [
                    image["path"],
                    image["sha256"][:12],
                    f"{image['size']:,} B",
                    f"{image['width']}×{image['height']}",
                    image["becomes"],
                ]
            row.append("yes" if image["caption"] else "no")
            if noted:
                row.append("; ".join(image["notes"]))
            table.add_row(*row)
        console.print(table)
        for image in data["images"]:
            if image["missing"]:
                console.print(
                    f"[bold yellow]missing image: {image['path']} is not there yet; `dlm train` "
                    'needs it: drop the image at that path, or edit the ::image path="…":: '
                    "fence[/bold yellow]"
                )
    console.print(outcomes_table(prepared.example_set))
    store = data["store"]
    if not store["exists"]:
        console.print(f"store: {store['path']} (not created yet: `dlm train` creates it)")
        return
    console.print(
        f"store: {store['path']} · current {store['current'] or 'none'} · "
        f"versions {', '.join(store['versions']) or 'none'} · "
        f"exports {', '.join(store['exports']) or 'none'} · {store['blobs']} blobs"
    )
    if store["locked_by"]:
        holder = store["locked_by"]
        console.print(
            f"[yellow]locked by pid {holder.get('pid')} ({holder.get('command')})[/yellow]"
        )
