"""Adapter versions and their two-phase commit.

``adapter/versions/vNNNN/`` directories are immutable once renamed into
place; ``adapter/current.txt`` names the live one. A commit:

1. the caller writes into a hidden staging directory
   (``versions/.staging-vNNNN-<pid>``), which is fsync'ed as a tree;
2. ``staged`` → the staging directory is renamed to ``versions/vNNNN``
   and ``versions/`` is fsync'ed;
3. ``renamed`` → the manifest records the version's files, hashes and meta
   (atomic write);
4. ``manifest`` → ``current.txt`` is replaced atomically. **This flip is
   the commit point**;
5. ``flipped``.

A crash anywhere leaves ``current.txt`` naming either the old version or
the new, complete one. Version numbers only grow (the highest number seen
anywhere, staging directories included, plus one), so a directory left by
a crash is never reused or overwritten. What crashed commits leave behind
is removed by :func:`gc_staging` at the start of the next commit.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dlm.errors import StoreError
from dlm.store._process import pause_point, pid_alive, pid_from_name
from dlm.store.atomic import atomic_write_text, fsync_dir, fsync_tree
from dlm.store.lock import StoreLock, require_lock
from dlm.store.manifest import AdapterEntry, hash_tree, load_manifest, now_iso, save_manifest
from dlm.store.paths import VERSION_RE, StorePaths, validate_version

STAGING_PREFIX = ".staging-"

# Staging directories of commits in progress in this process (never collected).
_active_staging: set[str] = set()


def _number(version: str) -> int:
    match = VERSION_RE.match(version)
    assert match is not None
    return int(match.group(1))


def format_version(number: int) -> str:
    return f"v{number:04d}"


def current_version(paths: StorePaths) -> str | None:
    """The committed live version (``None`` before the first commit)."""
    hint = (
        "run `dlm verify`; write a listed version (e.g. v0001) into it to recover, "
        "or delete it if no version is listed"
    )
    try:
        text = paths.current_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise StoreError(f"{paths.current_file} cannot be read ({reason})", hint=hint) from None
    if not text:
        # Commits write it whole (atomic replace), so empty is damage, not
        # "nothing trained yet": that is the file's absence.
        raise StoreError(f"{paths.current_file} is empty, not an adapter version", hint=hint)
    if not VERSION_RE.match(text):
        raise StoreError(
            f"{paths.current_file} holds {text[:40]!r}, not an adapter version", hint=hint
        )
    return text


def list_versions(paths: StorePaths) -> list[str]:
    """Version directories renamed into place, oldest first (staging excluded)."""
    if not paths.versions.is_dir():
        return []
    found = [
        name
        for name in os.listdir(paths.versions)
        if VERSION_RE.match(name) and (paths.versions / name).is_dir()
    ]
    return sorted(found, key=_number)


def next_version(paths: StorePaths) -> str:
    """One past the highest version number seen in a directory, a staging
    directory, the manifest or ``current.txt``."""
    highest = 0
    if paths.versions.is_dir():
        for name in os.listdir(paths.versions):
            candidate = name
            if name.startswith(STAGING_PREFIX):
                candidate = name[len(STAGING_PREFIX) :].rsplit("-", 1)[0]
            if VERSION_RE.match(candidate):
                highest = max(highest, _number(candidate))
    if paths.manifest.is_file():
        for version in load_manifest(paths).adapters:
            if VERSION_RE.match(version):
                highest = max(highest, _number(version))
    current = current_version(paths)
    if current is not None:
        highest = max(highest, _number(current))
    return format_version(highest + 1)


def stale_staging(paths: StorePaths) -> list[Path]:
    """Staging directories left by commits whose process is gone.

    While this process holds the store lock, every staging directory it is
    not using is stale; otherwise the pid in the name decides.
    """
    if not paths.versions.is_dir():
        return []
    locked = StoreLock.held_here(paths.lock_file)
    stale = []
    for name in sorted(os.listdir(paths.versions)):
        if not name.startswith(STAGING_PREFIX):
            continue
        full = paths.versions / name
        if str(full) in _active_staging:
            continue
        pid = pid_from_name(name)
        if locked or pid is None or pid == os.getpid() or not pid_alive(pid):
            stale.append(full)
    return stale


def unrecorded_versions(paths: StorePaths) -> list[str]:
    """Version directories a crashed commit left between rename and manifest.

    Such a directory has no manifest entry, is not current, and is numbered
    above every recorded version (numbers only grow). Anything else without
    an entry (say a manifest restored from a backup) is left alone.
    """
    versions = list_versions(paths)
    if not versions:
        return []
    recorded = load_manifest(paths).adapters
    current = current_version(paths)
    newest = max((_number(v) for v in recorded if VERSION_RE.match(v)), default=0)
    return [v for v in versions if v not in recorded and v != current and _number(v) > newest]


def gc_staging(paths: StorePaths) -> list[Path]:
    """Remove what crashed commits left; returns the removed directories.

    Always: staging directories of dead processes. Under the store lock
    also the unrecorded versions of :func:`unrecorded_versions` (no commit
    can be between its rename and its manifest write then).
    """
    removed = stale_staging(paths)
    if StoreLock.held_here(paths.lock_file):
        removed += [paths.version_dir(v) for v in unrecorded_versions(paths)]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    if removed:
        fsync_dir(paths.versions)
    return removed


def version_files(paths: StorePaths, version: str) -> Path:
    """The directory of a committed version, checked to exist."""
    directory = paths.version_dir(version)
    if not directory.is_dir():
        raise StoreError(
            f"adapter version {version} is missing ({directory})",
            hint="run `dlm verify`; `dlm train` commits a new version",
        )
    return directory


@contextmanager
def commit_adapter(paths: StorePaths, *, meta: dict[str, Any]) -> Iterator[Path]:
    """Yield a staging directory to write an adapter into; commit it on exit.

    The caller must hold the store lock. On an exception the staging
    directory is removed, ``current.txt`` is untouched and the exception
    propagates. After a normal exit :func:`current_version` is the new
    version.
    """
    require_lock(paths.lock_file, "committing an adapter")
    try:
        json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"adapter meta is not plain JSON ({exc})") from None
    paths.ensure()
    # Numbered before the clean-up, so a crashed commit's number is skipped.
    version = next_version(paths)
    gc_staging(paths)
    staging = paths.versions / f"{STAGING_PREFIX}{version}-{os.getpid()}"
    staging.mkdir()
    _active_staging.add(str(staging))
    try:
        yield staging
        if not any(staging.iterdir()):
            raise StoreError("the adapter commit wrote no files; nothing was committed")
        fsync_tree(staging)
        files = hash_tree(staging)
        pause_point("staged")
        final = paths.version_dir(version)
        if final.exists():  # next_version never hands out a taken number
            raise StoreError(f"{final} already exists; refusing to overwrite it")
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        _active_staging.discard(str(staging))
    fsync_dir(paths.versions)
    pause_point("renamed")
    manifest = load_manifest(paths)
    manifest.adapters[version] = AdapterEntry(created=now_iso(), files=files, meta=dict(meta))
    save_manifest(paths, manifest)
    pause_point("manifest")
    atomic_write_text(paths.current_file, version + "\n")
    pause_point("flipped")


def set_current(paths: StorePaths, version: str) -> None:
    """Point ``current.txt`` at an existing, recorded version (rollback)."""
    require_lock(paths.lock_file, "changing the current adapter")
    validate_version(version)
    version_files(paths, version)
    if version not in load_manifest(paths).adapters:
        raise StoreError(f"adapter version {version} is not recorded in the manifest")
    atomic_write_text(paths.current_file, version + "\n")
