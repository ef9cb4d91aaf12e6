"""A full disk, told as one: which step, which filesystem, how much it needed.

Writers fail on a full disk with whatever their library raises: ``OSError``
errno 28 from Python, ``SafetensorError("... No space left on device")``
from safetensors, a wrapped error from transformers. :func:`disk_step`
turns any of them into :class:`DiskFullError` for the step it wraps;
:func:`as_disk_full` does the same, with less to say, for a failure no step
caught. The store's own writes are atomic or staged, so the error can
promise the store is as it was before the step.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dlm.errors import DiskFullError

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE_TEXT = ("no space left on device", "disk quota exceeded")

Needed = int | Callable[[], int | None] | None


def disk_full_cause(exc: BaseException) -> BaseException | None:
    """The exception in ``exc``'s chain that says the disk is full, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _NO_SPACE:
            return current
        text = str(current).lower()
        if any(marker in text for marker in _NO_SPACE_TEXT):
            return current
        current = current.__cause__ or current.__context__
    return None


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover - the loop always returns


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (a failed write may not have created it)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mount_point(path: Path) -> Path:
    path = _existing(path).resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(_existing(path)).free
    except OSError:
        return None


def tree_size(*roots: Path) -> int:
    """Bytes of the regular files under ``roots`` (files count as themselves)."""
    total = 0
    for root in roots:
        if root.is_file():
            total += root.stat().st_size
            continue
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                full = os.path.join(dirpath, name)
                if not os.path.islink(full):
                    total += os.stat(full).st_size
    return total


def disk_full_error(
    cause: BaseException, *, step: str | None, where: Path | None, needed: int | None
) -> DiskFullError:
    filename = getattr(cause, "filename", None)
    target = Path(where) if where is not None else Path(filename) if filename else None
    text = "no space left on device"
    if step:
        text += f" while {step}"
    hint = "free some space, then re-run; nothing half-written was kept"
    if target is not None:
        mount = mount_point(target)
        free = free_bytes(target)
        text += f": {target} (filesystem {mount}"
        text += f", {human_bytes(free)} free)" if free is not None else ")"
        hint = (
            f"free space on {mount} (or put DLM_HOME / --out on a larger disk), then re-run; "
            "nothing half-written was kept"
        )
    text += (
        f"; this step needs about {human_bytes(needed)}"
        if needed is not None
        else "; how much this step needs is not known in advance"
    )
    return DiskFullError(text, hint=hint)


def as_disk_full(exc: BaseException) -> DiskFullError | None:
    """A :class:`DiskFullError` for an uncaught failure that was a full disk, else None."""
    if isinstance(exc, DiskFullError):
        return exc
    cause = disk_full_cause(exc)
    if cause is None:
        return None
    return disk_full_error(cause, step=None, where=None, needed=None)


@contextmanager
def disk_step(step: str, where: Path, needed: Needed = None) -> Iterator[None]:
    """Run a writing step; a full disk inside it becomes :class:`DiskFullError`.

    ``needed`` is the bytes the step writes, or a callable that estimates them
    when the failure happens (so the estimate costs nothing on success).
    """
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        cause = disk_full_cause(exc)
        if cause is None:
            raise
        amount: int | None
        try:
            amount = needed() if callable(needed) else needed
        except Exception:  # an estimate must never hide the real error
            amount = None
        raise disk_full_error(cause, step=step, where=where, needed=amount) from exc
