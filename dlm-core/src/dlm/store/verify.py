"""``dlm verify``: check a store against its manifest without changing it.

Errors are data the store claims to have but does not (missing, corrupt,
mismatched); warnings are harmless leftovers of interrupted work, which the
next writing command cleans up.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import attrs

from dlm.errors import StoreError
from dlm.store.adapters import current_version, list_versions, stale_staging
from dlm.store.atomic import TEMP_PREFIX
from dlm.store.blobs import SHA256_RE, BlobStore, hash_file, not_a_file
from dlm.store.exports import ASIDE_PREFIX, STAGING_PREFIX, is_stale_work_dir, work_dirs
from dlm.store.manifest import ExportEntry, FileEntry, Manifest, load_manifest
from dlm.store.paths import StorePaths

ERROR = "error"
WARNING = "warning"


@attrs.frozen
class Problem:
    """One finding. ``kind``: missing, corrupt, size, extra, unrecorded,
    current, manifest, interrupted or leftover."""

    kind: str
    path: str
    message: str
    severity: str = ERROR

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR


def verify_store(paths: StorePaths) -> list[Problem]:
    """Every problem found in the store; an empty list means it is clean."""
    problems: list[Problem] = []
    try:
        manifest = load_manifest(paths)
    except StoreError as exc:
        return [Problem("manifest", str(paths.manifest), exc.message)]
    if not paths.manifest.is_file() and paths.root.is_dir() and _has_content(paths):
        problems.append(
            Problem("manifest", str(paths.manifest), "the store has content but no manifest")
        )
    problems += _check_blobs(paths, manifest)
    problems += _check_adapters(paths, manifest)
    problems += _check_exports(paths, manifest)
    return problems


def _has_content(paths: StorePaths) -> bool:
    return any(
        d.is_dir() and any(d.iterdir()) for d in (paths.blobs, paths.versions, paths.exports)
    )


def check_files(
    root: Path, expected: dict[str, FileEntry], *, hasher: Callable[[Path], str] = hash_file
) -> list[Problem]:
    """Compare a directory with recorded files: missing, extra, size, hash."""
    problems: list[Problem] = []
    present: set[str] = set()
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            present.add((Path(dirpath) / name).relative_to(root).as_posix())
    for rel, entry in sorted(expected.items()):
        full = root / rel
        if rel not in present:
            odd = not_a_file(full) if os.path.lexists(full) else None  # e.g. now a directory
            kind, why = (
                ("corrupt", odd) if odd else ("missing", "recorded in the manifest but missing")
            )
            problems.append(Problem(kind, str(full), why))
            continue
        odd = not_a_file(full)
        if odd is not None:
            problems.append(Problem("corrupt", str(full), odd))
            continue
        size = full.stat().st_size
        if size != entry.size:
            problems.append(
                Problem("size", str(full), f"is {size} bytes, the manifest says {entry.size}")
            )
        elif hasher(full) != entry.sha256:
            problems.append(
                Problem("corrupt", str(full), "content does not match its recorded sha256")
            )
    for rel in sorted(present - set(expected)):
        problems.append(Problem("extra", str(root / rel), "not recorded in the manifest"))
    return problems


def _check_blobs(paths: StorePaths, manifest: Manifest) -> list[Problem]:
    problems: list[Problem] = []
    store = BlobStore(paths.blobs)
    on_disk = set(store.list())
    leftovers = {p.name for p in store.leftovers()}
    if paths.blobs.is_dir():
        for name in sorted(os.listdir(paths.blobs)):
            full = paths.blobs / name
            if name in leftovers:
                problems.append(
                    Problem("leftover", str(full), "partial copy of an interrupted ingest", WARNING)
                )
            elif not SHA256_RE.match(name) and not name.startswith(TEMP_PREFIX):
                problems.append(Problem("extra", str(full), "not a blob (name is not a sha256)"))
    for sha in sorted(on_disk):
        full = store.path_for(sha)
        odd = not_a_file(full)
        if odd is not None:
            problems.append(Problem("corrupt", str(full), odd))
            continue
        if hash_file(full) != sha:
            problems.append(Problem("corrupt", str(full), "content does not hash to its name"))
            continue
        entry = manifest.blobs.get(sha)
        if entry is None:
            problems.append(
                Problem("unrecorded", str(full), "blob not recorded in the manifest", WARNING)
            )
        elif entry.size != full.stat().st_size:
            problems.append(Problem("size", str(full), f"the manifest records {entry.size} bytes"))
    for sha in sorted(set(manifest.blobs) - on_disk):
        problems.append(
            Problem("missing", str(paths.blobs / sha), "recorded in the manifest but missing")
        )
    return problems


def _check_adapters(paths: StorePaths, manifest: Manifest) -> list[Problem]:
    problems: list[Problem] = []
    on_disk = list_versions(paths)
    for version in on_disk:
        directory = paths.version_dir(version)
        entry = manifest.adapters.get(version)
        if entry is None:
            problems.append(
                Problem(
                    "unrecorded",
                    str(directory),
                    "not recorded in the manifest, so it cannot be checked (an interrupted "
                    "commit leaves one; the next commit removes it)",
                    WARNING,
                )
            )
            continue
        problems += check_files(directory, entry.files)
    for version in sorted(set(manifest.adapters) - set(on_disk)):
        problems.append(
            Problem("missing", str(paths.versions / version), "recorded version is missing")
        )
    for leftover in stale_staging(paths):
        problems.append(
            Problem("leftover", str(leftover), "staging directory of an unfinished commit", WARNING)
        )
    try:
        current = current_version(paths)
    except StoreError as exc:
        return [*problems, Problem("current", str(paths.current_file), exc.message)]
    if current is not None:
        if current not in on_disk:
            problems.append(
                Problem("current", str(paths.current_file), f"points at missing version {current}")
            )
        elif current not in manifest.adapters:
            problems.append(
                Problem(
                    "current", str(paths.current_file), f"points at unrecorded version {current}"
                )
            )
    return problems


def _export_names(paths: StorePaths, manifest: Manifest) -> set[str]:
    names = set(manifest.exports) | set(manifest.pending_exports)
    if paths.exports.is_dir():
        names |= {n for n in os.listdir(paths.exports) if not n.startswith(".")}
    return names


def _check_exports(paths: StorePaths, manifest: Manifest) -> list[Problem]:
    problems: list[Problem] = []
    for name in sorted(_export_names(paths, manifest)):
        target = paths.exports / name
        expected: ExportEntry | None = manifest.exports.get(name)
        pending = manifest.pending_exports.get(name)
        if pending is not None and target.is_dir():
            if not (paths.exports / pending.staging).exists():  # swapped, not yet recorded
                expected = pending.entry
            problems.append(
                Problem(
                    "interrupted",
                    str(target),
                    "an export was interrupted; the next `dlm export` finishes or undoes it",
                    WARNING,
                )
            )
        if not target.is_dir():
            _staging, aside = work_dirs(paths.exports, name, locked=False)
            if aside and expected is not None:
                # Killed between "old aside" and "new in": the old export is
                # intact beside its place and the next export moves it back.
                problems.append(
                    Problem(
                        "interrupted",
                        str(target),
                        f"set aside as {aside[-1].name} by an interrupted export; "
                        "the next `dlm export` puts it back",
                        WARNING,
                    )
                )
                problems += check_files(aside[-1], expected.files)
            elif expected is not None:
                problems.append(Problem("missing", str(target), "recorded export is missing"))
            continue
        if expected is None:
            problems.append(
                Problem("unrecorded", str(target), "export not recorded in the manifest", WARNING)
            )
            continue
        problems += check_files(target, expected.files)
    if paths.exports.is_dir():
        for name in sorted(os.listdir(paths.exports)):
            full = paths.exports / name
            if name.startswith((STAGING_PREFIX, ASIDE_PREFIX)) and is_stale_work_dir(
                full, locked=False
            ):
                problems.append(
                    Problem(
                        "leftover", str(full), "work directory of an unfinished export", WARNING
                    )
                )
    return problems
