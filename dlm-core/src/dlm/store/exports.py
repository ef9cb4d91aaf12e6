"""Staged exports: an export directory is replaced whole or not at all.

Inside the store (``exports/<name>``), :func:`stage_export` runs:

1. the caller writes into ``exports/.staging-<name>-<pid>``; it is fsync'ed
   and hashed; → ``export-staged``
2. the manifest records the new entry as *pending*, naming the staging
   directory; → ``export-pending``
3. the old ``exports/<name>`` (if any) is renamed to
   ``exports/.old-<name>-<pid>``; → ``export-aside``
4. the staging directory is renamed to ``exports/<name>``; → ``export-renamed``
5. the manifest promotes the pending entry to ``exports[name]``;
   → ``export-recorded``
6. the old directory is removed.

(The arrows name the test-only pause points, see
:func:`dlm.store._process.pause_point`.) A kill at any point leaves
``exports/<name>`` absent, old or new, never partial. The next export (or
:func:`recover_exports`) repairs the rest: a vanished staging directory
with a pending entry means step 4 happened, so the entry is promoted;
otherwise the pending entry is dropped and an old directory set aside is
put back.

With ``out=DIR`` the same dance happens beside ``DIR`` (no manifest): the
staging directory is ``.staging-<DIR name>-<pid>`` in DIR's parent, and a
``.dlm-export.json`` record (files and hashes) is written into the export.
An existing ``DIR`` is replaced only if it is empty or exactly as that record
describes it (no file added, edited or turned into a link since), so neither
a mistyped ``--out`` nor a re-export can delete what someone put there.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dlm.errors import ExportError, StoreError
from dlm.store._process import pause_point, pid_alive, pid_from_name
from dlm.store.adapters import current_version
from dlm.store.atomic import atomic_write_json, fsync_dir, fsync_tree
from dlm.store.blobs import hash_file
from dlm.store.lock import require_lock
from dlm.store.manifest import (
    ExportEntry,
    FileEntry,
    PendingExport,
    hash_tree,
    load_manifest,
    now_iso,
    save_manifest,
)
from dlm.store.paths import StorePaths, validate_export_name, validate_version

STAGING_PREFIX = ".staging-"
ASIDE_PREFIX = ".old-"
EXTERNAL_RECORD = ".dlm-export.json"

_active: set[str] = set()


def is_stale_work_dir(path: Path, *, locked: bool) -> bool:
    """Is this work directory left by an export that is no longer running?

    Under the store lock every work directory not in use by this process is
    stale (a pid check would be fooled by pid reuse); without it (``--out``
    exports) the writer's pid decides.
    """
    if str(path) in _active:
        return False
    if locked:
        return True
    pid = pid_from_name(path.name)
    return pid is None or pid == os.getpid() or not pid_alive(pid)


def work_dirs(parent: Path, name: str, *, locked: bool) -> tuple[list[Path], list[Path]]:
    """Stale staging and set-aside directories for ``name`` in ``parent``."""
    staging: list[Path] = []
    aside: list[Path] = []
    if not parent.is_dir():
        return staging, aside
    for entry in sorted(os.listdir(parent)):
        for prefix, bucket in ((STAGING_PREFIX, staging), (ASIDE_PREFIX, aside)):
            if entry.startswith(prefix) and entry[len(prefix) :].rsplit("-", 1)[0] == name:
                full = parent / entry
                if is_stale_work_dir(full, locked=locked):
                    bucket.append(full)
    return staging, aside


def _names_with_work(parent: Path) -> set[str]:
    names: set[str] = set()
    if parent.is_dir():
        for entry in os.listdir(parent):
            for prefix in (STAGING_PREFIX, ASIDE_PREFIX):
                if entry.startswith(prefix) and pid_from_name(entry) is not None:
                    names.add(entry[len(prefix) :].rsplit("-", 1)[0])
    return names


def _recover_name(parent: Path, name: str, paths: StorePaths | None) -> None:
    """Bring ``parent/name`` back to a committed state after a dead export."""
    target = parent / name
    staging, aside = work_dirs(parent, name, locked=paths is not None)
    changed = False
    restored = False
    if not target.exists() and aside:
        # Killed between setting the old export aside and moving the new in.
        os.rename(aside.pop(), target)
        changed = restored = True
    if paths is not None:
        manifest = load_manifest(paths)
        pending = manifest.pending_exports.get(name)
        if pending is not None and is_stale_work_dir(parent / pending.staging, locked=True):
            # The staging directory is renamed to the target in step 4 and
            # nowhere else (failures drop the pending entry before removing
            # it), so its absence means the new export is the one in place.
            swapped = not restored and target.is_dir() and not (parent / pending.staging).exists()
            if swapped:
                manifest.exports[name] = pending.entry
            del manifest.pending_exports[name]
            save_manifest(paths, manifest)
    for leftover in staging + aside:
        shutil.rmtree(leftover, ignore_errors=True)
        changed = True
    if changed:
        fsync_dir(parent)


def recover_exports(paths: StorePaths) -> None:
    """Finish or undo exports interrupted by a crash. Hold the store lock."""
    require_lock(paths.lock_file, "recovering exports")
    names = _names_with_work(paths.exports)
    if paths.manifest.is_file():
        names |= set(load_manifest(paths).pending_exports)
    for name in sorted(names):
        _recover_name(paths.exports, name, paths)


def _check_external_target(out: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ExportError(
            f"{out} exists and is not a directory",
            hint="choose a new folder for --out",
        )
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / EXTERNAL_RECORD).is_file():
        raise ExportError(
            f"refusing to replace {out}: it is not empty and was not written by `dlm export`",
            hint="choose an empty or new folder for --out, or remove it first",
        )
    foreign = _not_as_exported(out)
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise ExportError(
            f"refusing to replace {out}: files changed or added since `dlm export` wrote it "
            f"({shown})",
            hint="move those files out of the folder, or choose another --out",
        )


def _not_as_exported(out: Path) -> list[str]:
    """What replacing ``out`` would lose: entries the export record does not list
    (added files, folders, links) and listed files whose bytes changed.

    A re-export replaces the folder whole, so anything here that the previous
    export did not write is the user's and must not be deleted with it.
    """
    try:
        recorded = read_external_record(out)
    except StoreError:
        return [EXTERNAL_RECORD]  # an unreadable record vouches for nothing
    known_dirs = {p for rel in recorded for p in Path(rel).parents if p != Path(".")}
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(out):
        here = Path(dirpath)
        for name in sorted(dirnames):
            rel = (here / name).relative_to(out)
            if (here / name).is_symlink() or rel not in known_dirs:
                found.append(rel.as_posix() + "/")
        dirnames[:] = sorted(d for d in dirnames if (here / d).relative_to(out) in known_dirs)
        for name in sorted(filenames):
            full = here / name
            rel_name = full.relative_to(out).as_posix()
            if rel_name == EXTERNAL_RECORD:
                continue
            entry = recorded.get(rel_name)
            unchanged = (
                entry is not None
                and not full.is_symlink()
                and full.is_file()
                and full.stat().st_size == entry.size
                and hash_file(full) == entry.sha256
            )
            if not unchanged:
                found.append(rel_name)
    return found


@contextmanager
def stage_export(
    paths: StorePaths,
    name: str,
    *,
    adapter_version: str | None = None,
    out: Path | None = None,
) -> Iterator[Path]:
    """Yield a staging directory; on normal exit it becomes the export.

    ``name`` is the export target ("hf-snapshot"); ``adapter_version``
    defaults to the current version. Without ``out`` the export lands in
    ``exports/<name>`` and is recorded in the manifest (hold the store lock);
    with ``out`` it lands at that directory. On an exception nothing
    changes and the exception propagates.
    """
    validate_export_name(name)
    if adapter_version is None:
        adapter_version = current_version(paths)
    else:
        validate_version(adapter_version)
    if out is None:
        require_lock(paths.lock_file, "writing an export")
        paths.ensure()
        recover_exports(paths)
        parent, final_name = paths.exports, name
    else:
        out = Path(out).expanduser().absolute()
        parent, final_name = out.parent, out.name
        if not final_name or final_name.startswith("."):
            raise ExportError(f"--out {out} must name a visible folder")
        blocker = next((p for p in (parent, *parent.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise ExportError(
                f"cannot create --out {out}: {blocker} is a file, not a folder",
                hint="choose a folder in a writable place",
            )
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(
                f"cannot create --out {out}: {exc.strerror or exc}",
                hint="choose a folder in a writable place",
            ) from None
        _check_external_target(out)
        _recover_name(parent, final_name, None)
    staging = parent / f"{STAGING_PREFIX}{final_name}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    try:
        staging.mkdir()
    except OSError as exc:
        if out is None or getattr(exc, "errno", None) == errno.ENOSPC:
            raise
        raise ExportError(
            f"cannot write into {parent} for --out {out}: {exc.strerror or exc}",
            hint="choose a folder in a writable place",
        ) from None
    _active.add(str(staging))
    try:
        try:
            yield staging
            if not any(staging.iterdir()):
                raise ExportError(f"the {name} export wrote no files; nothing was exported")
            if out is not None:
                _write_external_record(staging, paths, name, adapter_version)
            fsync_tree(staging)
            files = hash_tree(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        pause_point("export-staged")
        entry = ExportEntry(created=now_iso(), adapter_version=adapter_version, files=files)
        if out is None:
            _swap_in_store(paths, name, staging, entry)
        else:
            _check_external_target(out)
            _drop(parent, _swap(parent, final_name, staging))
    except BaseException:
        # Undo whatever half of the swap happened (our own work dirs count as
        # dead once we stop tracking them), then re-raise.
        _active.discard(str(staging))
        with contextlib.suppress(Exception):  # keep the original error; next run recovers
            _recover_name(parent, final_name, paths if out is None else None)
        raise
    finally:
        _active.discard(str(staging))


def _swap(parent: Path, name: str, staging: Path) -> Path | None:
    """Steps 3-4: the old export aside, the new one in. Returns the set-aside
    directory (still to be removed), if there was an old export."""
    target = parent / name
    aside: Path | None = None
    if target.exists():
        aside = parent / f"{ASIDE_PREFIX}{name}-{os.getpid()}"
        if aside.exists():
            shutil.rmtree(aside)
        os.rename(target, aside)
        fsync_dir(parent)
        pause_point("export-aside")
    os.rename(staging, target)
    fsync_dir(parent)
    pause_point("export-renamed")
    return aside


def _drop(parent: Path, aside: Path | None) -> None:
    if aside is not None:
        shutil.rmtree(aside)
        fsync_dir(parent)


def _swap_in_store(paths: StorePaths, name: str, staging: Path, entry: ExportEntry) -> None:
    manifest = load_manifest(paths)
    manifest.pending_exports[name] = PendingExport(staging=staging.name, entry=entry)
    save_manifest(paths, manifest)
    pause_point("export-pending")
    aside = _swap(paths.exports, name, staging)
    manifest.exports[name] = entry
    del manifest.pending_exports[name]
    save_manifest(paths, manifest)
    pause_point("export-recorded")
    _drop(paths.exports, aside)


def _write_external_record(
    staging: Path, paths: StorePaths, name: str, adapter_version: str | None
) -> None:
    files = hash_tree(staging)
    record = {
        "dlm_id": paths.dlm_id,
        "export": name,
        "adapter_version": adapter_version,
        "created": now_iso(),
        "files": {rel: {"sha256": f.sha256, "size": f.size} for rel, f in files.items()},
    }
    atomic_write_json(staging / EXTERNAL_RECORD, record)


def read_external_record(out: Path) -> dict[str, FileEntry]:
    """The files an external export recorded about itself (for verification)."""
    record_path = Path(out) / EXTERNAL_RECORD
    try:
        data = json.loads(record_path.read_text(encoding="utf-8"))
        return {
            rel: FileEntry(sha256=f["sha256"], size=int(f["size"]))
            for rel, f in data["files"].items()
        }
    except FileNotFoundError:
        raise StoreError(
            f"{out} has no {EXTERNAL_RECORD}; it was not written by dlm export"
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"{record_path} is unreadable ({exc})") from None
