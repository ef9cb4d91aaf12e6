"""The store lock: one writer per store at a time.

``fcntl.flock`` on ``<store>/lock``: the kernel drops the lock when the
holding process dies, however it dies, so a crashed ``dlm train`` can never
leave the store blocked. The holder's ``{pid, command, host, started}`` is
written into the file so a second writer can say who is in the way, and so
the next holder can tell that the previous one died without releasing it.

The file is never deleted: unlinking a flock'ed path lets two processes
lock two different inodes under the same name.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from dlm.errors import LockHeldError, StoreError
from dlm.store._process import pid_alive
from dlm.store.space import disk_step

Notice = Callable[[str], None]

# Locks this process holds, by resolved path. flock would refuse a second
# acquisition through another file descriptor of the same process anyway,
# but it would blame "pid <ourselves>", which helps nobody.
_held: dict[str, str] = {}
_RECORD_BYTES = 4096  # one filesystem block holds the holder record
_held_guard = threading.Lock()


def _key(lock_file: Path) -> str:
    return os.path.realpath(lock_file)


def _stderr_notice(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False).print(f"[yellow]lock:[/] {escape(message)}")


def _read_holder(fd: int) -> dict[str, Any] | None:
    raw = os.pread(fd, 64 * 1024, 0)
    if not raw.strip():
        return None
    try:
        info = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return info if isinstance(info, dict) else None


def _since(started: object) -> str:
    if not isinstance(started, str):
        return "unknown time"
    try:
        when = datetime.fromisoformat(started)
    except ValueError:
        return started
    local = when.astimezone()
    if local.date() == datetime.now().astimezone().date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M:%S")


def _command(command: object) -> str:
    """``dlm train`` whether the holder recorded "train" or "dlm train"."""
    text = str(command) if command else "?"
    return text if text.startswith("dlm") else f"dlm {text}"


def describe_holder(info: dict[str, Any]) -> str:
    """``pid 1234 (dlm train, since 10:02:11)`` (plus the host when it is not ours)."""
    since = _since(info.get("started"))
    text = f"pid {info.get('pid', '?')} ({_command(info.get('command'))}, since {since})"
    host = info.get("host")
    if host and host != socket.gethostname():
        text += f" on {host}"
    return text


class StoreLock:
    """``with StoreLock(paths.lock_file, command="train"):`` — fail fast if taken.

    Raises :class:`dlm.errors.LockHeldError` at once (no waiting) when another
    process holds the lock, and also when this process already holds it
    (re-entrant use is a bug, reported rather than deadlocked). ``notice``
    receives a message when a previous holder died without releasing
    (default: printed to stderr).
    """

    def __init__(self, lock_file: Path, *, command: str, notice: Notice | None = None):
        self.lock_file = Path(lock_file)
        self.command = command
        self.notice: Notice = notice if notice is not None else _stderr_notice
        self._fd: int | None = None

    # ------------------------------------------------------------- queries

    @staticmethod
    def held_by(lock_file: Path) -> dict[str, Any] | None:
        """Who holds the lock, as recorded in the file, or ``None`` if nobody.

        Reads only (taking the lock to test it could make a starting writer
        fail), so a record left by a dead process on this host reads as free.
        """
        try:
            fd = os.open(lock_file, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            info = _read_holder(fd)
        finally:
            os.close(fd)
        if info is None:
            return None
        pid = info.get("pid")
        if info.get("host", socket.gethostname()) == socket.gethostname() and (
            not isinstance(pid, int) or not pid_alive(pid)
        ):
            return None
        return info

    @staticmethod
    def held_here(lock_file: Path) -> bool:
        """Does this process hold the lock on ``lock_file``?"""
        with _held_guard:
            return _key(Path(lock_file)) in _held

    # ------------------------------------------------------ acquire/release

    def acquire(self) -> StoreLock:
        key = _key(self.lock_file)
        # The record is one small write, but on a full disk it is the first to fail.
        with _held_guard, disk_step("taking the store lock", self.lock_file, _RECORD_BYTES):
            if key in _held:
                raise LockHeldError(
                    f"this process already holds the store lock ({_command(_held[key])}); "
                    f"cannot take it again for {_command(self.command)}",
                    hint="this is a bug in dlm or a plugin: report it with --verbose output",
                )
            self.lock_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                if holder is None:
                    # The holder has the flock but has not written its record
                    # yet; give it a moment rather than blaming nobody.
                    time.sleep(0.05)
                    holder = _read_holder(fd)
                os.close(fd)
                who = describe_holder(holder) if holder else "another process"
                raise LockHeldError(
                    f"store is locked by {who}",
                    hint="wait for it to finish, or stop it",
                ) from None
            except OSError as exc:
                os.close(fd)
                raise StoreError(
                    f"cannot lock {self.lock_file}: {exc.strerror or exc}",
                    hint="put DLM_HOME on a local filesystem that supports file locks",
                ) from None
            except BaseException:
                os.close(fd)
                raise
            try:
                previous = _read_holder(fd)
                self._write_record(fd)
            except BaseException:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                raise
            self._fd = fd
            _held[key] = self.command
        if previous is not None:
            self._report_takeover(previous)
        return self

    def release(self) -> None:
        fd = self._fd
        if fd is None:
            return
        self._fd = None
        with _held_guard:
            _held.pop(_key(self.lock_file), None)
        try:
            # An empty file means "released cleanly"; a record left behind
            # means the holder died, which the next holder reports.
            os.ftruncate(fd, 0)
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    # ------------------------------------------------------------ internals

    def _write_record(self, fd: int) -> None:
        record = {
            "pid": os.getpid(),
            "command": self.command,
            "host": socket.gethostname(),
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)

    def _report_takeover(self, previous: dict[str, Any]) -> None:
        pid = previous.get("pid", "?")
        what = f"{_command(previous.get('command'))}, since {_since(previous.get('started'))}"
        host = previous.get("host")
        if host and host != socket.gethostname():
            message = f"took over a lock left by pid {pid} on {host} ({what})"
        elif isinstance(pid, int) and pid_alive(pid) and pid != os.getpid():
            # The pid was reused by an unrelated process: the holder is gone.
            message = f"took over a lock left by pid {pid}, which no longer holds it ({what})"
        else:
            message = f"took over a lock left by dead pid {pid} ({what})"
        self.notice(message)


def require_lock(lock_file: Path, action: str) -> None:
    """Refuse to write the store without holding its lock (a programming error)."""
    if not StoreLock.held_here(lock_file):
        raise LockHeldError(
            f"{action} needs the store lock, and this process does not hold it",
            hint=f"wrap the call in `with StoreLock({lock_file}, command=...)`",
        )
