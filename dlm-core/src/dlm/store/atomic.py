"""Crash-safe file writes.

A reader (or a process started after a crash) sees either the old content
or the new content of a file, never a torn mix: the bytes go to a temporary
file in the same directory (same filesystem, so the rename is atomic), are
flushed and fsync'ed, ``os.replace`` swaps the name, and the directory is
fsync'ed so the rename itself survives a power loss.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

TEMP_PREFIX = ".tmp-"


def temp_name(target_name: str) -> str:
    """A hidden sibling name for ``target_name``; the pid lets a later run tell
    a dead writer's leftover from a live writer's file."""
    return f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{target_name}"


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a directory's entries (creates, renames, deletes) durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def share_modes(path: str | os.PathLike[str]) -> None:
    """Give every file and directory under ``path`` the mode a plain ``open``
    or ``mkdir`` would (``0666``/``0777`` less the umask).

    Libraries that write through a temporary file (safetensors does, via
    mkstemp) leave 0600 behind: the adapter of an export would be the one
    file in it a colleague cannot read. Executable bits are kept.
    """
    mask = current_umask()
    for dirpath, _dirnames, filenames in os.walk(path):
        entries = [(dirpath, True)] + [(os.path.join(dirpath, n), False) for n in filenames]
        for full, is_dir in entries:
            if os.path.islink(full):
                continue
            mode = stat.S_IMODE(os.stat(full).st_mode)
            base = 0o777 if is_dir or mode & stat.S_IXUSR else 0o666
            if mode != base & ~mask:
                os.chmod(full, base & ~mask)


def fsync_tree(path: str | os.PathLike[str], *, modes: bool = True) -> None:
    """Make a finished tree (an adapter version, an export) ready to publish:
    modes as :func:`share_modes` gives them (unless ``modes=False``), then
    fsync of every file and directory under ``path`` (and ``path`` itself).

    Bottom-up, so by the time a directory is synced its children are too.
    Symlinks are not followed.
    """
    if modes:
        share_modes(path)
    for dirpath, _dirnames, filenames in os.walk(path, topdown=False):
        for name in filenames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                fsync_file(full)
        fsync_dir(dirpath)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    target = Path(path)
    directory = target.parent
    tmp = directory / temp_name(target.name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """Stable JSON: sorted keys and fixed indentation, so equal data gives equal
    bytes and diffs of the manifest stay readable."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj))
