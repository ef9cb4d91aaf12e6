"""Content-addressed blobs: image bytes stored once, named by their sha256.

A blob appears under its final name only by an atomic rename of a complete,
fsync'ed, verified temporary file, so ``blobs/<sha>`` is always whole. A
writer killed mid-copy leaves a hidden ``.tmp-<pid>-…`` file that the next
:meth:`BlobStore.put_file` removes.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import re
import stat
from pathlib import Path

from dlm.errors import StoreError
from dlm.store._process import pid_alive
from dlm.store.atomic import TEMP_PREFIX, fsync_dir, temp_name
from dlm.store.images import ImageError, verify_image

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def not_a_file(path: Path) -> str | None:
    """Why ``path`` is not a plain file the store could have written, or ``None``.

    The store writes only regular files: a directory, symlink, pipe or device
    under a recorded name is damage (and reading a pipe would hang).
    """
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return "is missing"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if stat.S_ISLNK(mode):
        return "is a symlink, not a file the store wrote"
    return "is not a regular file (a pipe, socket or device)"


def _check_sha(sha: str) -> str:
    if not isinstance(sha, str) or not SHA256_RE.match(sha):
        raise StoreError(f"invalid blob name {sha!r}: expected 64 lower-case hex digits")
    return sha


class BlobStore:
    """The ``blobs/`` directory of one store (``BlobStore(paths.blobs)``)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._swept = False

    def path_for(self, sha: str) -> Path:
        return self.root / _check_sha(sha)

    def has(self, sha: str) -> bool:
        return self.path_for(sha).is_file()

    def size(self, sha: str) -> int:
        try:
            return self.path_for(sha).stat().st_size
        except FileNotFoundError:
            raise StoreError(
                f"blob {sha} is missing from {self.root}",
                hint="run `dlm verify`, then `dlm train` to re-ingest the images",
            ) from None

    def verify(self, sha: str) -> bool:
        """Do the stored bytes still hash to their name?"""
        path = self.path_for(sha)
        if not_a_file(path) is not None:
            return False
        try:
            return hash_file(path) == sha
        except FileNotFoundError:
            return False

    def list(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(name for name in os.listdir(self.root) if SHA256_RE.match(name))

    def put_file(self, path: Path) -> str:
        """Store the image at ``path``; return its sha256.

        The copy is verified (fully decoded) rather than the source, so the
        bytes in the store are exactly the bytes that passed. Raises
        :class:`ImageError` naming ``path`` when it is not a usable image.
        """
        source = Path(path)
        self.root.mkdir(parents=True, exist_ok=True)
        self._sweep_once()
        tmp = self.root / temp_name("blob")
        try:
            digest = hashlib.sha256()
            try:
                src = open(source, "rb")  # noqa: SIM115 - closed below, errors mapped
            except FileNotFoundError:
                raise ImageError(
                    source, "image not found", hint="check the path, relative to the document"
                ) from None
            except IsADirectoryError:
                raise ImageError(source, "is a directory, not an image file") from None
            except PermissionError:
                raise ImageError(
                    source, "permission denied", hint="make the file readable"
                ) from None
            with src, open(tmp, "xb") as dst:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            try:
                verify_image(tmp)
            except ImageError as exc:
                raise ImageError(source, exc.reason, hint=exc.hint) from None
            sha = digest.hexdigest()
            final = self.root / sha
            odd = not_a_file(final) if os.path.lexists(final) else None
            if odd is not None and odd != "is missing":
                # Replacing a directory would mean deleting what someone put there.
                raise StoreError(
                    f"{final} {odd}: the store was changed outside dlm",
                    hint=f"remove {final} and run again; `dlm verify` lists any other damage",
                )
            if final.is_file() and self.verify(sha):
                tmp.unlink()  # identical bytes already stored
                return sha
            # Absent, or present but damaged: the fresh copy replaces it.
            os.chmod(tmp, 0o444)  # blobs are immutable
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(self.root)
        return sha

    def leftovers(self) -> builtins.list[Path]:
        """Temporary files left by writers that died mid-copy."""
        found: builtins.list[Path] = []
        if not self.root.is_dir():
            return found
        for name in os.listdir(self.root):
            if not name.startswith(TEMP_PREFIX):
                continue
            pid = name[len(TEMP_PREFIX) :].split("-", 1)[0]
            if not pid.isdigit() or not pid_alive(int(pid)):
                found.append(self.root / name)
        return sorted(found)

    def _sweep_once(self) -> None:
        if self._swept:
            return
        self._swept = True
        for leftover in self.leftovers():
            leftover.unlink(missing_ok=True)
