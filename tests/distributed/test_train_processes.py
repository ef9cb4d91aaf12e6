"""`dlm train --processes 2` on the CPU (gloo), through the CLI, on tiny-qwen2-vl.

Two processes train the recall document at the same effective batch as one
process: the loss curves must match, the one committed adapter must recall
every figure, FSDP (asked for through an accelerate config) must give the
same adapter, and a rank killed mid-run must end the run at once, named,
with the previous version still current.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import run_dlm
from tests.e2e.recall import (
    assert_recall,
    start_long_run,
    store_of,
    write_recall_document,
)

pytestmark = pytest.mark.slow

BASE = "tiny-qwen2-vl"

FSDP_CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: FSDP
num_machines: 1
num_processes: 2
machine_rank: 0
mixed_precision: 'no'
use_cpu: true
"""


def _losses(doc: Path) -> list[float]:
    logs = sorted((store_of(doc) / "logs").glob("train-*.jsonl"))
    assert len(logs) == 1, "one run, one log: only rank 0 writes it"
    return [json.loads(line)["loss"] for line in logs[0].read_text().splitlines()]


def _run_record(doc: Path, version: str = "v0001") -> dict:
    path = store_of(doc) / "adapter" / "versions" / version / "training_run.json"
    return json.loads(path.read_text())


def _adapter(doc: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(
        str(store_of(doc) / "adapter" / "versions" / "v0001" / "adapter_model.safetensors")
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, session_home: Path):
    os.environ["DLM_HOME"] = str(session_home)
    docs = {}
    for name in ("single", "ddp", "fsdp"):
        folder = tmp_path_factory.mktemp(f"recall-{name}")
        docs[name], rows = write_recall_document(folder, BASE)
    config = docs["fsdp"].parent / "fsdp.yaml"
    config.write_text(FSDP_CONFIG)
    results = {
        "single": run_dlm("train", docs["single"]),
        "ddp": run_dlm("train", docs["ddp"], "--processes", "2"),
        "fsdp": run_dlm("train", docs["fsdp"], "--accelerate-config", config),
    }
    for name, result in results.items():
        assert result.returncode == 0, f"{name}: {result.stderr}"
    return docs, rows, results


def test_two_processes_commit_one_adapter_that_recalls(runs) -> None:
    docs, rows, results = runs
    result = results["ddp"]
    assert "committed adapter v0001" in result.stdout
    assert "launching 2 processes on this host: data parallel (DDP)" in result.stderr
    assert "micro-batch 2 × accumulation 1 × 2 processes = effective batch 4" in result.stderr
    assert result.stderr.count("120/120") == 1, "progress comes from rank 0 only"
    versions = store_of(docs["ddp"]) / "adapter" / "versions"
    assert sorted(p.name for p in versions.iterdir()) == ["v0001"]
    assert_recall(docs["ddp"], rows, docs["ddp"].parent)
    assert run_dlm("verify", docs["ddp"]).returncode == 0


def test_the_run_records_world_size_and_strategy(runs) -> None:
    docs, _rows, _results = runs
    run = _run_record(docs["ddp"])
    assert run["world_size"] == 2 and run["strategy"] == "ddp"
    plan = run["plan"]
    assert (plan["processes"], plan["micro_batch"], plan["grad_accum"]) == (2, 2, 1)
    assert plan["effective_batch"] == _run_record(docs["single"])["plan"]["effective_batch"] == 4


def test_loss_curve_matches_one_process_at_the_same_effective_batch(runs) -> None:
    docs, _rows, _results = runs
    single, ddp = _losses(docs["single"]), _losses(docs["ddp"])
    assert len(single) == len(ddp) == 120
    for step, (a, b) in enumerate(zip(single, ddp, strict=True), 1):
        assert abs(a - b) <= 1e-4 + 1e-3 * abs(a), f"step {step}: {a} vs {b}"
    assert ddp[-1] < ddp[0] / 100


def test_fsdp_sharded_run_commits_the_same_adapter(runs) -> None:
    docs, rows, results = runs
    result = results["fsdp"]
    assert "FSDP across 2 processes, as asked" in result.stderr
    assert "launching 2 processes on this host: FSDP-sharded" in result.stderr
    run = _run_record(docs["fsdp"])
    assert run["world_size"] == 2 and run["strategy"] == "fsdp"
    single, sharded = _adapter(docs["single"]), _adapter(docs["fsdp"])
    assert sorted(single) == sorted(sharded)
    scale = max(float(t.abs().max()) for t in single.values())
    worst = max(float((single[k] - sharded[k]).abs().max()) for k in single)
    assert worst < 1e-3 * scale, f"sharded adapter differs by {worst} (scale {scale})"
    assert_recall(docs["fsdp"], rows, docs["fsdp"].parent)
    assert run_dlm("verify", docs["fsdp"]).returncode == 0


def test_doctor_plans_per_process(runs) -> None:
    docs, _rows, _results = runs
    result = run_dlm("doctor", docs["ddp"], "--processes", "2", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    plan = data["document"]["plan"]
    assert (plan["processes"], plan["local_processes"], plan["strategy"]) == (2, 2, "ddp")
    assert plan["usable_bytes"] == data["host"]["usable_bytes"] // 2  # CPU ranks share the RAM
    assert data["topology"]["processes"] == 2
    table = run_dlm("doctor", docs["ddp"], "--processes", "2")
    assert "data parallel (DDP)" in table.stdout and "per process" in table.stdout


def _ranks(launcher: int) -> dict[int, object]:
    import psutil

    found = {}
    for child in psutil.Process(launcher).children(recursive=True):
        try:
            env = child.environ()
            command = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "dlm.engine.distributed.worker" in command and "RANK" in env:
            found[int(env["RANK"])] = child
    return found


def test_killing_a_rank_ends_the_run_naming_it(runs) -> None:
    import psutil

    docs, _rows, _results = runs
    proc, store = start_long_run(docs["ddp"], "--processes", "2")
    try:
        # The launching command holds the store lock: a second writer is refused, naming it.
        second = run_dlm("train", docs["ddp"])
        assert second.returncode == 1 and f"pid {proc.pid}" in second.stderr
        ranks = _ranks(proc.pid)
        assert sorted(ranks) == [0, 1]
        victim = ranks[1]
        killed_at = time.monotonic()
        victim.send_signal(signal.SIGKILL)
        _out, err = proc.communicate(timeout=120)
        ended = time.monotonic() - killed_at
        err = " ".join(err.split())  # the console wraps long messages
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    assert ended < 60, f"the run took {ended:.0f} s to end after a rank died"
    assert f"rank 1 (pid {victim.pid}) was killed by SIGKILL" in err
    assert "nothing was committed, v0001 remains current" in err
    assert "Traceback" not in err
    _gone, alive = psutil.wait_procs(list(ranks.values()), timeout=30)
    assert not alive, "no rank may outlive the run"
    assert (store / "adapter" / "current.txt").read_text().strip() == "v0001"
    assert run_dlm("verify", docs["ddp"]).returncode == 0


def test_a_rank_that_hangs_ends_the_run_through_the_collective_timeout(runs) -> None:
    import psutil

    docs, _rows, _results = runs
    proc, store = start_long_run(docs["ddp"], "--processes", "2", DLM_COLLECTIVE_TIMEOUT="10")
    try:
        ranks = _ranks(proc.pid)
        stuck = ranks[1]
        stuck.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        _out, err = proc.communicate(timeout=180)
        ended = time.monotonic() - stopped_at
        err = " ".join(err.split())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    # 10 s for the others to give up on it, then the agent's 30 s grace before SIGKILL
    assert ended < 90, f"the run took {ended:.0f} s to end after a rank hung"
    assert f"rank 1 (pid {stuck.pid}) stopped responding" in err
    assert "nothing was committed, v0001 remains current" in err
    _gone, alive = psutil.wait_procs(list(ranks.values()), timeout=30)
    assert not alive
    assert (store / "adapter" / "current.txt").read_text().strip() == "v0001"
    assert run_dlm("verify", docs["ddp"]).returncode == 0
