"""What a command reads from the store is checked against the manifest first.

``dlm verify`` checks everything; ``prompt``, ``export`` and ``train`` check
the adapter version or the blobs they are about to read, and refuse, with
the way out, when those were changed outside dlm: a tampered adapter never
answers a prompt or ends up in an export that records its hash as correct.

This guards against accidents (a bad disk, a hand edit, a careless sync),
not against someone who can also rewrite the manifest.

Hashes are cached in ``<store>/cache/hashes.json`` by
(size, mtime_ns, ctime_ns, inode): any write to a file changes its ctime,
which ``touch`` cannot set back, so a changed file is always re-hashed.
Files changed within the last 2 s are not cached (a write in the same clock
tick as the stat could go unseen). Measured on a busy 2-core host
(~280 MB/s): sha256 of a 74 MB adapter (Qwen2-VL-2B, r=16) 0.27 s, of a
375 MB one (Mistral Small 3.1, r=16) 1.0 s; the cached check 0.1 ms. The
first command after a commit pays the hash once; loading the base costs
seconds anyway.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from dlm.errors import StoreError
from dlm.store.adapters import version_files
from dlm.store.atomic import atomic_write_json
from dlm.store.blobs import hash_file, not_a_file
from dlm.store.manifest import load_manifest
from dlm.store.paths import StorePaths
from dlm.store.verify import Problem, check_files

CACHE_FILE = "hashes.json"
_RACY_NS = 2_000_000_000
_SHOWN = 3  # problems named in one refusal; `dlm verify` lists them all


class TamperedError(StoreError):
    """Store content that no longer matches the manifest; nothing of it is used."""


class HashCache:
    """sha256 of store files, remembered per (size, mtime, ctime, inode)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.file = self.root / "cache" / CACHE_FILE
        self._entries: dict[str, Any] | None = None
        self._dirty = False

    def _load(self) -> dict[str, Any]:
        if self._entries is None:
            try:
                data = json.loads(self.file.read_text(encoding="utf-8"))
                self._entries = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._entries = {}  # a cache: unreadable means empty
        return self._entries

    def sha256(self, path: Path) -> str:
        # stat before reading: a write during the hash changes ctime, so the
        # entry recorded here can never match the changed file.
        st = path.stat()
        key = path.relative_to(self.root).as_posix()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        entries = self._load()
        hit = entries.get(key)
        if (
            isinstance(hit, dict)
            and hit.get("stamp") == stamp
            and isinstance(hit.get("sha256"), str)
        ):
            return str(hit["sha256"])
        sha = hash_file(path)
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _RACY_NS:
            entries[key] = {"stamp": stamp, "sha256": sha}
            self._dirty = True
        return sha

    def save(self) -> None:
        """Best effort: a read-only or full store just hashes again next time."""
        if not self._dirty or self._entries is None:
            return
        entries = {k: v for k, v in self._entries.items() if os.path.lexists(self.root / k)}
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.file, entries)
        except OSError:
            return
        self._dirty = False


def _refusal(what: str, problems: list[Problem], hint: str) -> TamperedError:
    shown = "; ".join(f"{Path(p.path).name} {p.message}" for p in problems[:_SHOWN])
    more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
    return TamperedError(
        f"{what} does not match the manifest, so it is not used: {shown}{more}", hint=hint
    )


def verify_adapter(paths: StorePaths, version: str) -> Path:
    """The directory of ``version``, checked file by file against the manifest.

    Raises :class:`TamperedError` on any missing, extra, resized or changed
    file, or when the version is not recorded at all.
    """
    directory = version_files(paths, version)
    hint = (
        "the store was changed outside dlm; `dlm verify DOC` lists the damage. "
        "Use another version (--adapter-version vNNNN), or `dlm train DOC` to commit a fresh one"
    )
    entry = load_manifest(paths).adapters.get(version)
    if entry is None:
        raise TamperedError(
            f"adapter {version} is not recorded in the manifest, so it cannot be checked "
            "and is not used",
            hint=hint,
        )
    cache = HashCache(paths.root)
    try:
        problems = check_files(directory, entry.files, hasher=cache.sha256)
    except OSError as exc:
        raise TamperedError(
            f"adapter {version} cannot be read ({exc.strerror or exc})", hint=hint
        ) from None
    cache.save()
    if problems:
        raise _refusal(f"adapter {version}", problems, hint)
    return directory


def blob_problem(path: Path, sha: str, cache: HashCache) -> str | None:
    """Why the stored blob at ``path`` cannot be used as ``sha``, or ``None``."""
    odd = not_a_file(path)
    if odd is not None:
        return odd
    try:
        if cache.sha256(path) != sha:
            return "content no longer hashes to its name"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def check_blob(path: Path, sha: str, *, source: str, cache: HashCache) -> None:
    """Refuse a stored blob (``source``: the image it was ingested from) that
    was changed; an absent blob is fine (it is about to be stored)."""
    if not os.path.lexists(path):
        return
    problem = blob_problem(path, sha, cache)
    if problem is not None:
        raise TamperedError(
            f"blob {sha[:12]} ({source}) {problem}: the store was changed outside dlm, "
            "so it is not used",
            hint=(
                f"remove {path} and run the command again: it stores a fresh copy of "
                f"{source}; `dlm verify DOC` lists any other damage"
            ),
        )
