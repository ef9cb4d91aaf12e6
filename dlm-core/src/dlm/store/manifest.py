"""``manifest.json``: what a store holds, with the hashes to check it.

Written only through :func:`save_manifest` (atomic) by a process holding
the store lock, read with :func:`load_manifest`. JSON through ``cattrs``,
keys sorted so the file is stable across runs.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import cattrs

from dlm.errors import StoreError
from dlm.store.atomic import atomic_write_json
from dlm.store.blobs import hash_file
from dlm.store.paths import StorePaths

MANIFEST_VERSION = 1


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@attrs.frozen
class FileEntry:
    sha256: str
    size: int


@attrs.define
class BlobEntry:
    size: int
    sources: list[str] = attrs.field(factory=list)  # paths as documents wrote them


@attrs.frozen
class AdapterEntry:
    created: str
    files: dict[str, FileEntry]
    meta: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ExportEntry:
    created: str
    adapter_version: str | None
    files: dict[str, FileEntry]


@attrs.frozen
class PendingExport:
    """An export between "staged" and "recorded" (see :mod:`dlm.store.exports`).

    ``staging`` is the staging directory's name: while it still exists the
    swap has not happened and the previous entry describes ``exports/<name>``;
    once it is gone, ``entry`` does.
    """

    staging: str
    entry: ExportEntry


@attrs.define
class Manifest:
    dlm_id: str
    created: str = attrs.field(factory=now_iso)
    updated: str = attrs.field(factory=now_iso)
    document: str | None = None  # absolute path of the .dlm as last seen
    base_model: str | None = None
    blobs: dict[str, BlobEntry] = attrs.field(factory=dict)
    adapters: dict[str, AdapterEntry] = attrs.field(factory=dict)
    exports: dict[str, ExportEntry] = attrs.field(factory=dict)
    pending_exports: dict[str, PendingExport] = attrs.field(factory=dict)
    # base key -> {"license", "accepted_at", "by"}
    license_acceptances: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    manifest_version: int = MANIFEST_VERSION

    def add_blob(self, sha: str, size: int, source: str) -> None:
        """Record a stored blob and one more path it was ingested from."""
        entry = self.blobs.get(sha)
        if entry is None:
            self.blobs[sha] = BlobEntry(size=size, sources=[source])
        elif source not in entry.sources:
            entry.sources.append(source)

    def record_license(self, base_key: str, license: str, *, by: str) -> dict[str, Any]:
        """Record that ``by`` (e.g. "dlm init --i-accept-license") accepted ``license``."""
        acceptance = {"license": license, "accepted_at": now_iso(), "by": by}
        self.license_acceptances[base_key] = acceptance
        return acceptance


_converter = cattrs.Converter(forbid_extra_keys=False)


def manifest_to_dict(manifest: Manifest) -> dict[str, Any]:
    data: dict[str, Any] = _converter.unstructure(manifest)
    return data


def manifest_from_dict(data: dict[str, Any]) -> Manifest:
    return _converter.structure(data, Manifest)


def load_manifest(paths: StorePaths) -> Manifest:
    """The store's manifest; a fresh one when the store has none yet."""
    hint = "run `dlm verify` to see what the store still holds"
    try:
        raw = paths.manifest.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Manifest(dlm_id=paths.dlm_id)
    except (OSError, UnicodeDecodeError) as exc:  # a directory, unreadable, not text
        reason = getattr(exc, "strerror", None) or exc
        raise StoreError(f"{paths.manifest} cannot be read ({reason})", hint=hint) from None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise StoreError(f"{paths.manifest} is not valid JSON ({exc})", hint=hint) from None
    if not isinstance(data, dict):
        raise StoreError(f"{paths.manifest} is not a JSON object", hint=hint)
    version = data.get("manifest_version", MANIFEST_VERSION)
    if not isinstance(version, int) or version > MANIFEST_VERSION:
        raise StoreError(
            f"{paths.manifest} has manifest_version {version!r}, newer than this dlm reads "
            f"({MANIFEST_VERSION})",
            hint="upgrade dlm-core",
        )
    try:
        manifest = manifest_from_dict(data)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        raise StoreError(
            f"{paths.manifest} does not match the manifest schema ({exc})", hint=hint
        ) from None
    if manifest.dlm_id != paths.dlm_id:
        raise StoreError(
            f"{paths.manifest} belongs to dlm_id {manifest.dlm_id}, not {paths.dlm_id}",
            hint="the store directory was copied or renamed by hand; move it back",
        )
    return manifest


def save_manifest(paths: StorePaths, manifest: Manifest) -> None:
    """Write the manifest atomically (stamping ``updated``). Hold the store lock."""
    manifest.updated = now_iso()
    paths.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(paths.manifest, manifest_to_dict(manifest))


def hash_tree(directory: Path) -> dict[str, FileEntry]:
    """Every regular file under ``directory``: POSIX relative path → hash and size."""
    root = Path(directory)
    entries: dict[str, FileEntry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            entries[rel] = FileEntry(sha256=hash_file(full), size=full.stat().st_size)
    return dict(sorted(entries.items()))
