"""Two "machines" on this host: two `dlm train --accelerate-config` launchers, one rank each.

They meet over TCP by the static rendezvous a multi-host accelerate config
describes (main_process_ip 127.0.0.1). Machine 0 holds the lock and
commits; machine 1 writes nothing to the store. When machine 1 goes away,
machine 0 ends and points at the other machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_dlm
from tests.e2e.recall import store_of, write_recall_document

pytestmark = pytest.mark.slow

BASE = "tiny-qwen2-vl"


@pytest.fixture(autouse=True)
def _bounded_rendezvous(monkeypatch: pytest.MonkeyPatch) -> None:
    # a machine that never comes must fail the test in minutes, not hang it
    monkeypatch.setenv("DLM_RENDEZVOUS_TIMEOUT", "120")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _configs(folder: Path) -> list[Path]:
    port = _free_port()
    paths = []
    for rank in (0, 1):
        path = folder / f"machine{rank}.yaml"
        path.write_text(
            "compute_environment: LOCAL_MACHINE\n"
            "distributed_type: MULTI_CPU\n"
            "num_machines: 2\n"
            "num_processes: 2\n"
            f"machine_rank: {rank}\n"
            "main_process_ip: 127.0.0.1\n"
            f"main_process_port: {port}\n"
            "use_cpu: true\n"
        )
        paths.append(path)
    return paths


def _start(doc: Path, config: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.Popen(
        [sys.executable, "-m", "dlm", "train", str(doc), "--accelerate-config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_machines_train_and_machine_0_commits(tmp_path: Path, session_home: Path) -> None:
    doc, _rows = write_recall_document(tmp_path, BASE)
    first, second = _configs(tmp_path)
    follower = _start(doc, second)
    main = run_dlm("train", doc, "--accelerate-config", first)
    out, err = follower.communicate(timeout=300)
    assert main.returncode == 0, main.stderr
    assert follower.returncode == 0, err
    assert "committed adapter v0001" in main.stdout
    assert "2 processes, 1 on each of 2 machines (this is machine 0)" in main.stderr
    assert "machine 0 commits the adapter" in out
    store = store_of(doc)
    assert (store / "adapter" / "current.txt").read_text().strip() == "v0001"
    assert len(list((store / "logs").glob("train-*.jsonl"))) == 1
    run = json.loads((store / "adapter" / "versions" / "v0001" / "training_run.json").read_text())
    assert run["world_size"] == 2 and run["plan"]["effective_batch"] == 4

    # Machine 1 goes away mid-run: machine 0 ends, names its rank, commits nothing.
    slow = doc.with_name("slow.dlm")
    slow.write_text(doc.read_text().replace("num_epochs: 60", "num_epochs: 100000"))
    logs = set((store / "logs").glob("train-*.jsonl"))
    follower = _start(slow, second)
    main_run = _start(slow, first)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            new = set((store / "logs").glob("train-*.jsonl")) - logs
            if any(p.read_text().strip() for p in new):
                break
            time.sleep(0.2)
        follower.send_signal(signal.SIGKILL)
        follower.wait(timeout=30)
        killed_at = time.monotonic()
        _out, err = main_run.communicate(timeout=120)
        ended = time.monotonic() - killed_at
        err = " ".join(err.split())  # the console wraps long messages
    finally:
        for proc in (follower, main_run):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert main_run.returncode == 1
    assert ended < 60
    assert "rank 0 (pid" in err and "nothing was committed, v0001 remains current" in err
    assert "another machine" in err
    assert (store / "adapter" / "current.txt").read_text().strip() == "v0001"
    assert run_dlm("verify", doc).returncode == 0


def test_machines_that_see_different_documents_do_not_train(
    tmp_path: Path, session_home: Path
) -> None:
    doc, rows = write_recall_document(tmp_path, BASE)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copytree(tmp_path / "figures", other / "figures")
    answer = rows[0][3]
    changed = other / "recall.dlm"
    changed.write_text(doc.read_text().replace(answer, answer + " (edited)"))
    first, second = _configs(tmp_path)
    follower = _start(changed, second)
    main = run_dlm("train", doc, "--accelerate-config", first)
    _out, err = follower.communicate(timeout=300)
    message = " ".join(main.stderr.split())
    assert main.returncode == 1 and follower.returncode == 1
    assert "rank(s) 1 see a different document, images or plan than rank 0" in message
    assert "every machine needs the same .dlm file" in message
    assert "Traceback" not in main.stderr + err
    assert not (store_of(doc) / "adapter" / "current.txt").exists()


def test_machine_0_alone_gives_up_after_the_rendezvous_timeout(
    tmp_path: Path, session_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DLM_RENDEZVOUS_TIMEOUT", "5")
    doc, _rows = write_recall_document(tmp_path, BASE)
    first, _second = _configs(tmp_path)
    started = time.monotonic()
    result = run_dlm("train", doc, "--accelerate-config", first)
    message = " ".join(result.stderr.split())
    assert result.returncode == 1
    assert time.monotonic() - started < 120
    assert "the 2 machines did not all meet at 127.0.0.1:" in message
    assert "within 5 s" in message and "nothing was trained" in message
    assert not (store_of(doc) / "adapter" / "current.txt").exists()
