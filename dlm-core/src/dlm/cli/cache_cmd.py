"""``dlm cache``: show or clear the vision-feature cache of one store, or of all.

``dlm train`` keeps each image's frozen vision features in the document's
store (``<store>/cache/features``) so a retrain skips the vision tower; see
:mod:`dlm.engine.training.feature_cache`. Imports no torch: it only reads sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dlm.cli.output import console, json_option, print_json
from dlm.errors import DlmError, LockHeldError, UsageError


def _mib(n: int) -> str:
    if n < 2**20:
        return f"{n / 2**10:.1f} KiB"
    return f"{n / 2**20:.1f} MiB"


def _parse(args: tuple[str, ...]) -> tuple[bool, Path | None]:
    clear = bool(args) and args[0] == "clear"
    rest = args[1:] if clear else args
    if len(rest) > 1:
        raise UsageError(
            f"too many arguments: {' '.join(rest)}",
            hint="usage: dlm cache [DOC] [--json]  |  dlm cache clear [DOC]",
        )
    if not rest:
        return clear, None
    doc = Path(rest[0])
    if not doc.is_file():
        raise UsageError(
            f"document not found: {doc}",
            hint="pass a .dlm file, or nothing for every store",
        )
    return clear, doc


def _stores(doc: Path | None) -> list[Any]:
    from dlm.store.paths import StorePaths, stores_dir

    if doc is not None:
        from dlm.format import parse_file

        return [StorePaths.for_id(parse_file(doc).frontmatter.dlm_id)]
    root = stores_dir()
    if not root.is_dir():
        return []
    found = []
    for entry in sorted(root.iterdir()):
        if not entry.is_dir():
            continue
        try:
            found.append(StorePaths.for_id(entry.name))
        except DlmError:
            continue  # not a store (a stray folder)
    return found


def _document(paths: Any) -> str | None:
    from dlm.store.manifest import load_manifest

    if not paths.manifest.exists():
        return None
    try:
        return load_manifest(paths).document
    except DlmError:
        return None


@click.command("cache")
@click.argument("args", nargs=-1, metavar="[clear] [DOC]")
@json_option()
def cache(args: tuple[str, ...], as_json: bool) -> None:
    """Show (or `clear`) the vision features kept for retraining, for DOC or every store.

    Features are kept per image while LoRA leaves the vision tower frozen,
    keyed by the image, the base and its revision, the processor's image
    settings, dtype, device and library versions. The disk cache is bounded
    per store by DLM_FEATURE_CACHE_MB (default 4096; 0 keeps none), least
    recently used first out.
    """
    from dlm.engine.training.feature_cache import FeatureStore, max_bytes_from_env

    clear, doc = _parse(args)
    bound = max_bytes_from_env()
    stores = _stores(doc)
    if clear:
        _clear(stores, as_json)
        return
    rows = []
    for paths in stores:
        usage = FeatureStore.for_paths(paths, bound).usage()
        if doc is None and not usage.entries:
            continue
        rows.append(
            {
                "dlm_id": paths.dlm_id,
                "document": _document(paths),
                "path": str(paths.root / "cache" / "features"),
                "entries": usage.entries,
                "bytes": usage.bytes,
                "settings": list(usage.settings),
            }
        )
    total_entries = sum(r["entries"] for r in rows)
    total_bytes = sum(r["bytes"] for r in rows)
    if as_json:
        out = {
            "bound_bytes": bound,
            "entries": total_entries,
            "bytes": total_bytes,
            "stores": rows,
        }
        print_json(out)
        return
    if not rows:
        where = "this document's store" if doc is not None else "any store"
        console.print(f"no vision features cached in {where} (bound {_mib(bound)} per store)")
        return
    for row in rows:
        label = row["document"] or row["dlm_id"]
        console.print(
            f"{label}: {row['entries']} image features, {_mib(row['bytes'])} "
            f"(bound {_mib(bound)})  {row['path']}"
        )
        for s in row["settings"]:
            console.print(
                f"  {s['digest']}  {s['base']} @ {str(s['revision'])[:12]} · "
                f"{s['precision']} · {s['device']}: {s['entries']} entries, {_mib(s['bytes'])}"
            )
    if len(rows) > 1:
        console.print(f"total: {total_entries} image features, {_mib(total_bytes)}")


def _clear(stores: list[Any], as_json: bool) -> None:
    from dlm.engine.training.feature_cache import FeatureStore
    from dlm.store.lock import StoreLock

    cleared = []
    busy = []
    for paths in stores:
        store = FeatureStore.for_paths(paths, 0)
        if not store.root.exists():
            continue
        try:
            with StoreLock(paths.lock_file, command="dlm cache clear"):
                before = store.clear()
        except LockHeldError as exc:
            busy.append((paths, exc.message))
            continue
        cleared.append({"dlm_id": paths.dlm_id, "entries": before.entries, "bytes": before.bytes})
    if as_json:
        print_json({"cleared": cleared, "busy": [{"dlm_id": p.dlm_id, "why": w} for p, w in busy]})
    else:
        for row in cleared:
            console.print(
                f"cleared {row['entries']} image features ({_mib(row['bytes'])}) "
                f"from store {row['dlm_id']}"
            )
        if not cleared and not busy:
            console.print("nothing to clear")
    if busy:
        names = ", ".join(p.dlm_id for p, _ in busy)
        raise DlmError(
            f"not cleared: {names} ({busy[0][1]})",
            hint="wait for the running command to finish, then run `dlm cache clear` again",
            subject="cache",
        )
