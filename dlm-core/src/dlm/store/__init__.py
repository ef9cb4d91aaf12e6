"""The store: per-document directories under ``$DLM_HOME`` holding image blobs,
committed adapter versions, exports and the manifest that describes them.

Writers hold :class:`StoreLock`; every durable change goes through an atomic
write or a two-phase commit, so a crash leaves the previous or the next
state, never a partial one.
"""

from __future__ import annotations

from dlm.store.adapters import (
    commit_adapter,
    current_version,
    gc_staging,
    list_versions,
    next_version,
    set_current,
    version_files,
)
from dlm.store.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text, fsync_tree
from dlm.store.blobs import BlobStore, hash_file
from dlm.store.exports import read_external_record, recover_exports, stage_export
from dlm.store.images import MAX_IMAGE_PIXELS, ImageError, ImageInfo, verify_image
from dlm.store.lock import StoreLock
from dlm.store.manifest import (
    AdapterEntry,
    BlobEntry,
    ExportEntry,
    FileEntry,
    Manifest,
    hash_tree,
    load_manifest,
    save_manifest,
)
from dlm.store.paths import StorePaths, bases_dir, cache_dir, dlm_home, stores_dir
from dlm.store.verify import Problem, verify_store

__all__ = [
    "MAX_IMAGE_PIXELS",
    "AdapterEntry",
    "BlobEntry",
    "BlobStore",
    "ExportEntry",
    "FileEntry",
    "ImageError",
    "ImageInfo",
    "Manifest",
    "Problem",
    "StoreLock",
    "StorePaths",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "bases_dir",
    "cache_dir",
    "commit_adapter",
    "current_version",
    "dlm_home",
    "fsync_tree",
    "gc_staging",
    "hash_file",
    "hash_tree",
    "list_versions",
    "load_manifest",
    "next_version",
    "read_external_record",
    "recover_exports",
    "save_manifest",
    "set_current",
    "stage_export",
    "stores_dir",
    "verify_image",
    "verify_store",
    "version_files",
]
