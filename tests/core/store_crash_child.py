"""Child process for the store's crash and lock tests, and the helpers that drive it.

Run as a script: ``python store_crash_child.py ACTION DLM_ID [ARG]`` with
``DLM_HOME`` set. ``DLM_TEST_PAUSE_AT`` / ``DLM_TEST_PAUSE_MARKER`` make a
commit stop at a phase so the test can SIGKILL it there.

Actions: ``hold-lock`` (take the lock, write the marker, sleep),
``try-lock`` (exit 3 and print the error if the lock is held),
``commit TAG`` (commit an adapter with :func:`adapter_files`),
``export TAG`` (export into the store), ``export-out TAG DIR`` (export to DIR).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def _payload(tag: str, label: str, size: int) -> bytes:
    seed = hashlib.sha256(f"{tag}/{label}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def adapter_files(tag: str) -> dict[str, bytes]:
    """What the commit of ``tag`` writes: distinct bytes per tag, nested paths,
    one file big enough that a torn copy would show."""
    return {
        "adapter_model.safetensors": _payload(tag, "weights", 300_000),
        "adapter_config.json": f'{{"tag": "{tag}"}}'.encode(),
        "processor/tokenizer.json": _payload(tag, "tok", 5_000),
    }


def export_files(tag: str) -> dict[str, bytes]:
    return {
        "adapter/adapter_model.safetensors": _payload(tag, "export-weights", 200_000),
        "README.md": f"export {tag}\n".encode(),
    }


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def read_tree(root: Path, *, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() not in skip
    }


# --------------------------------------------------------------- driving


def spawn(action: str, dlm_id: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE), action, dlm_id, *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_marker(proc: subprocess.Popen[str], marker: Path, timeout: float = 30.0) -> str:
    """Wait until the child reached its pause point; return the phase it wrote."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.exists():
            return marker.read_text()
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"child exited {proc.returncode} before the marker:\n{out}\n{err}")
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("child never reached its pause point")


def kill_at(action: str, dlm_id: str, *args: str, home: Path, phase: str) -> int:
    """Run the child until it pauses at ``phase``, SIGKILL it; return its pid."""
    marker = home / f"marker-{phase}"
    marker.unlink(missing_ok=True)
    env = {
        "DLM_HOME": str(home),
        "DLM_TEST_PAUSE_AT": phase,
        "DLM_TEST_PAUSE_MARKER": str(marker),
    }
    proc = spawn(action, dlm_id, *args, env=env)
    try:
        assert wait_for_marker(proc, marker) == phase
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return proc.pid


# ------------------------------------------------------------ the child


def main(argv: list[str]) -> int:
    from dlm.errors import LockHeldError
    from dlm.store import StoreLock, StorePaths, commit_adapter, stage_export

    action, dlm_id, *rest = argv
    paths = StorePaths.for_id(dlm_id)
    if action == "try-lock":
        try:
            with StoreLock(paths.lock_file, command="prompt"):
                return 0
        except LockHeldError as exc:
            print(exc.render())
            return 3
    with StoreLock(paths.lock_file, command="train" if action == "hold-lock" else action):
        if action == "hold-lock":
            Path(os.environ["DLM_TEST_PAUSE_MARKER"]).write_text("hold-lock")
            while True:
                time.sleep(60)
        elif action == "commit":
            with commit_adapter(paths, meta={"tag": rest[0]}) as staging:
                write_tree(staging, adapter_files(rest[0]))
        elif action == "export":
            with stage_export(paths, "hf-snapshot") as staging:
                write_tree(staging, export_files(rest[0]))
        elif action == "export-out":
            with stage_export(paths, "hf-snapshot", out=Path(rest[1])) as staging:
                write_tree(staging, export_files(rest[0]))
        else:
            raise SystemExit(f"unknown action {action}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
