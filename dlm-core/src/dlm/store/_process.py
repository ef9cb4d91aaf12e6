"""Process helpers shared by the lock and the two-phase commits."""

from __future__ import annotations

import os
import re
import time

# Test-only instrumentation (see ``pause_point``).
PAUSE_AT_ENV = "DLM_TEST_PAUSE_AT"
PAUSE_MARKER_ENV = "DLM_TEST_PAUSE_MARKER"

_PID_SUFFIX_RE = re.compile(r"-(\d+)$")


def pid_alive(pid: int) -> bool:
    """Is there a process with this pid on this host (ours included)?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # It exists but belongs to someone else.
        return True
    return True


def pid_from_name(name: str) -> int | None:
    """The writer pid that hidden work directories carry as their last ``-N``."""
    match = _PID_SUFFIX_RE.search(name)
    return int(match.group(1)) if match else None


def pause_point(phase: str) -> None:
    """Fault-injection hook, for the crash tests only.

    When ``$DLM_TEST_PAUSE_AT`` equals ``phase``, write ``phase`` to the file
    named by ``$DLM_TEST_PAUSE_MARKER`` and sleep, so that a test can SIGKILL
    this process at exactly this point of a commit. Without that variable
    (always, outside tests) this is a no-op.
    """
    if os.environ.get(PAUSE_AT_ENV) != phase:
        return
    marker = os.environ.get(PAUSE_MARKER_ENV)
    if marker:
        tmp = f"{marker}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(phase)
        os.replace(tmp, marker)
    while True:  # the test kills us here
        time.sleep(60)
