from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from dlm.errors import LockHeldError, StoreError
from dlm.store.lock import StoreLock
from dlm.store.paths import StorePaths
from tests.core import store_crash_child as child

DLM_ID = "01J9Z6M8Q5X2V7K3T4R1N0PBCD"


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StorePaths:
    monkeypatch.setenv("DLM_HOME", str(tmp_path))
    return StorePaths.for_id(DLM_ID)


def test_acquire_writes_record_and_release_clears_it(paths: StorePaths) -> None:
    notices: list[str] = []
    with StoreLock(paths.lock_file, command="train", notice=notices.append):
        record = json.loads(paths.lock_file.read_text())
        assert record["pid"] == os.getpid()
        assert record["command"] == "train"
        assert record["host"] == socket.gethostname()
        assert "T" in record["started"]
        assert StoreLock.held_here(paths.lock_file)
        assert StoreLock.held_by(paths.lock_file) == record
    assert paths.lock_file.read_text() == ""
    assert not StoreLock.held_here(paths.lock_file)
    assert StoreLock.held_by(paths.lock_file) is None
    assert notices == []  # a clean release leaves nothing to take over
    with StoreLock(paths.lock_file, command="export", notice=notices.append):
        pass
    assert notices == []


def test_held_by_without_lock_file(paths: StorePaths) -> None:
    assert StoreLock.held_by(paths.lock_file) is None


def test_reentrant_use_is_an_error_not_a_deadlock(paths: StorePaths) -> None:
    with StoreLock(paths.lock_file, command="train"):
        start = time.monotonic()
        with pytest.raises(LockHeldError, match="this process already holds"):
            # through a different spelling of the same path
            StoreLock(paths.root / "." / "lock", command="export").acquire()
        assert time.monotonic() - start < 1
        assert StoreLock.held_here(paths.lock_file)
    # the failed attempt did not break the real holder's release
    with StoreLock(paths.lock_file, command="export"):
        pass


def test_second_process_fails_at_once_naming_the_holder(paths: StorePaths) -> None:
    with StoreLock(paths.lock_file, command="train"):
        start = time.monotonic()
        proc = child.spawn("try-lock", DLM_ID, env={"DLM_HOME": os.environ["DLM_HOME"]})
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - start
    assert proc.returncode == 3, err
    assert f"store is locked by pid {os.getpid()} (dlm train, since " in out
    assert "wait for it to finish, or stop it" in out
    assert elapsed < 10  # interpreter start-up, no waiting for the lock


def test_lock_held_by_another_process(paths: StorePaths) -> None:
    marker = paths.root.parent / "marker-lock"
    proc = child.spawn(
        "hold-lock",
        DLM_ID,
        env={"DLM_HOME": os.environ["DLM_HOME"], "DLM_TEST_PAUSE_MARKER": str(marker)},
    )
    try:
        child.wait_for_marker(proc, marker)
        holder = StoreLock.held_by(paths.lock_file)
        assert holder is not None and holder["pid"] == proc.pid
        with pytest.raises(LockHeldError) as info:
            StoreLock(paths.lock_file, command="prompt").acquire()
        assert f"pid {proc.pid} (dlm train, since" in info.value.message
        assert info.value.hint == "wait for it to finish, or stop it"
        assert not StoreLock.held_here(paths.lock_file)
    finally:
        proc.kill()
        proc.communicate()


def test_lock_of_killed_process_is_taken_over_with_notice(paths: StorePaths) -> None:
    marker = paths.root.parent / "marker-lock"
    proc = child.spawn(
        "hold-lock",
        DLM_ID,
        env={"DLM_HOME": os.environ["DLM_HOME"], "DLM_TEST_PAUSE_MARKER": str(marker)},
    )
    child.wait_for_marker(proc, marker)
    proc.kill()
    proc.communicate()
    # the dead holder's record is still in the file, but nobody holds the lock
    assert json.loads(paths.lock_file.read_text())["pid"] == proc.pid
    assert StoreLock.held_by(paths.lock_file) is None
    notices: list[str] = []
    with StoreLock(paths.lock_file, command="train", notice=notices.append):
        assert json.loads(paths.lock_file.read_text())["pid"] == os.getpid()
    assert len(notices) == 1
    assert notices[0].startswith(f"took over a lock left by dead pid {proc.pid} (dlm train, since")


def test_default_notice_goes_to_stderr(
    paths: StorePaths, capsys: pytest.CaptureFixture[str]
) -> None:
    paths.root.mkdir(parents=True)
    paths.lock_file.write_text(
        json.dumps(
            {
                "pid": 999_999_999,
                "command": "train",
                "host": socket.gethostname(),
                "started": "2024-01-02T10:02:11+00:00",
            }
        )
    )
    with StoreLock(paths.lock_file, command="train"):
        pass
    err = capsys.readouterr().err
    assert "took over a lock left by dead pid 999999999 (dlm train, since 2024-01-02" in err


def test_filesystem_without_locks_is_a_store_error(
    paths: StorePaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import fcntl

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(StoreError, match=r"cannot lock .*No locks available") as info:
        StoreLock(paths.lock_file, command="train").acquire()
    assert "local filesystem" in (info.value.hint or "")
    assert not StoreLock.held_here(paths.lock_file)
