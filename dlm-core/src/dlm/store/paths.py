"""Where things live under ``$DLM_HOME`` (default ``~/.dlm``).

One store per document, keyed by its ``dlm_id`` (a ULID)::

    $DLM_HOME/
      store/<dlm_id>/
        blobs/<sha256>            content-addressed image bytes
        manifest.json             what the store holds, with hashes
        adapter/versions/vNNNN/   committed adapters (immutable)
        adapter/current.txt       the live version, e.g. ``v0002``
        adapter/.checkpoint/      the last checkpoint of a run in progress (``--resume``)
        exports/<target>/         exported artefacts
        logs/
        lock                      held while a command writes the store
      bases/                      tiny bases built locally by family plugins
      cache/                      reserved for caches

Every name that becomes a path component is validated here, so a crafted
``dlm_id``, version or export name can never point outside the store.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import attrs

from dlm.errors import StoreError

# Crockford base32, 26 characters; the first character is 0-7 because a
# ULID is 128 bits and 26 * 5 = 130.
_ULID_RE = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
VERSION_RE = re.compile(r"^v(\d{4,})$")
# Export names are plugin target names ("hf-snapshot", "gguf"). No leading
# dot, so they can never collide with the hidden staging/aside directories.
_EXPORT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def dlm_home() -> Path:
    """``$DLM_HOME`` if set (and not empty), else ``~/.dlm``; always absolute."""
    raw = os.environ.get("DLM_HOME")
    home = Path(raw).expanduser() if raw else Path.home() / ".dlm"
    return home.absolute()


def stores_dir() -> Path:
    return dlm_home() / "store"


def bases_dir() -> Path:
    return dlm_home() / "bases"


def cache_dir() -> Path:
    return dlm_home() / "cache"


def normalize_dlm_id(dlm_id: str) -> str:
    """Return the canonical (upper-case) ULID or raise :class:`StoreError`.

    ULIDs decode case-insensitively, so ``01hx…`` and ``01HX…`` name the same
    document and must map to the same store directory.
    """
    canonical = dlm_id.strip().upper() if isinstance(dlm_id, str) else ""
    if not _ULID_RE.match(canonical):
        raise StoreError(
            f"invalid dlm_id {dlm_id!r}: expected a 26-character ULID "
            "(Crockford base32, e.g. 01J9Z6M8Q5X2V7K3T4R1N0PBCD)",
            hint="fix `dlm_id` in the document's frontmatter, or run `dlm init` to get a new one",
        )
    return canonical


def validate_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise StoreError(
            f"invalid adapter version {version!r}: expected v followed by digits, e.g. v0002",
            hint="list the versions with `dlm show`",
        )
    return version


def validate_export_name(name: str) -> str:
    if not isinstance(name, str) or not _EXPORT_NAME_RE.match(name):
        raise StoreError(
            f"invalid export name {name!r}: use letters, digits, '.', '_' or '-', "
            "not starting with '.'",
        )
    return name


@attrs.frozen
class StorePaths:
    """The paths of one document's store. Nothing is created until :meth:`ensure`."""

    dlm_id: str
    root: Path

    @classmethod
    def for_id(cls, dlm_id: str) -> StorePaths:
        canonical = normalize_dlm_id(dlm_id)
        return cls(dlm_id=canonical, root=stores_dir() / canonical)

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def versions(self) -> Path:
        return self.adapter / "versions"

    @property
    def checkpoint(self) -> Path:
        """The checkpoints of a run in progress (hidden: never a version)."""
        return self.adapter / ".checkpoint"

    @property
    def current_file(self) -> Path:
        return self.adapter / "current.txt"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def lock_file(self) -> Path:
        return self.root / "lock"

    def version_dir(self, version: str) -> Path:
        return self.versions / validate_version(version)

    def export_dir(self, name: str) -> Path:
        return self.exports / validate_export_name(name)

    def exists(self) -> bool:
        return self.root.is_dir()

    def ensure(self) -> StorePaths:
        """Create the store's directories (idempotent); returns ``self``."""
        for directory in (self.blobs, self.versions, self.exports, self.logs):
            directory.mkdir(parents=True, exist_ok=True)
        return self
