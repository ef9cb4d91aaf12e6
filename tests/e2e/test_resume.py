"""`dlm train DOC --resume`, through the CLI, on tiny-qwen2-vl.

A run is stopped right after a checkpoint (the crash tests' pause point,
then SIGINT or SIGKILL), resumed, and must commit exactly the adapter an
uninterrupted run of the same document commits: every tensor equal, and
the same losses step by step. In one process and in two (`--processes 2`).
A changed document or setting is refused, naming the change.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_dlm
from tests.e2e.recall import clean_error, store_of, wait_for, write_recall_document

pytestmark = pytest.mark.slow

BASE = "tiny-qwen2-vl"
#: 8 examples at micro-batch 4: 2 steps an epoch, 20 in all; a checkpoint every 4.
TRAINING = {"num_epochs": 10, "checkpoint_every": 4}


def _stopped_at_checkpoint(
    doc: Path, step: int, sig: int, *args: str, rank: int | None = None
) -> subprocess.CompletedProcess[str]:
    """`dlm train DOC ARGS` stopped with ``sig`` (sent to the command, or to its rank
    ``rank``) just after its checkpoint of ``step``; returned once its processes
    (ranks included) are gone."""
    import psutil

    marker = doc.parent / f"paused-{step}"
    marker.unlink(missing_ok=True)
    env = {
        **os.environ,
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "DLM_TEST_PAUSE_AT": f"checkpoint-{step}",
        "DLM_TEST_PAUSE_MARKER": str(marker),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlm", "train", str(doc), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(marker.exists)
        children = psutil.Process(proc.pid).children(recursive=True)
        if rank is None:
            proc.send_signal(sig)
        else:
            ranks = [c for c in children if c.environ().get("RANK") == str(rank)]
            assert len(ranks) == 1, ranks
            ranks[0].send_signal(sig)
        out, err = proc.communicate(timeout=120)
        # a rank whose launcher was killed exits by itself
        _gone, alive = psutil.wait_procs(children, timeout=60)
        assert not alive, "no rank may outlive its launcher"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _adapter(doc: Path, version: str) -> dict:
    from safetensors.torch import load_file

    path = store_of(doc) / "adapter" / "versions" / version / "adapter_model.safetensors"
    return load_file(str(path))


def _losses(log: Path) -> list[float]:
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


def _log_of(result: subprocess.CompletedProcess[str]) -> Path:
    line = next(ln for ln in result.stdout.splitlines() if ln.strip().startswith("log "))
    return Path(line.split()[-1])


def _assert_same_adapter(doc: Path, resumed: str, uninterrupted: str) -> None:
    import torch

    a, b = _adapter(doc, resumed), _adapter(doc, uninterrupted)
    assert sorted(a) == sorted(b)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"a resumed run must commit the same adapter; differs at {different}"


def test_interrupted_then_resumed_run_commits_the_uninterrupted_adapter(tmp_path: Path) -> None:
    doc, _rows = write_recall_document(tmp_path, BASE, training=TRAINING)
    store = store_of(doc)
    checkpoint = store / "adapter" / ".checkpoint"

    # Ctrl-C after the checkpoint of step 4: the message says how to go on.
    interrupted = _stopped_at_checkpoint(doc, 4, signal.SIGINT)
    assert interrupted.returncode == 130, interrupted.stderr
    err = " ".join(interrupted.stderr.split())
    assert "interrupted at step 4/20; nothing was committed" in err
    assert f"`dlm train {doc} --resume` continues from step 4" in err
    assert "Traceback" not in err

    # Resumed, then killed (-9) just after the checkpoint of step 8.
    killed = _stopped_at_checkpoint(doc, 8, signal.SIGKILL, "--resume")
    assert killed.returncode == -signal.SIGKILL
    assert (checkpoint / "latest.txt").read_text().split()[0] == "step-000008"
    assert not (store / "adapter" / "current.txt").exists()
    assert run_dlm("verify", doc).returncode == 0, "a checkpoint is no store damage"

    # What changed is named, and nothing is touched.
    original = doc.read_text()
    doc.write_text(original.replace("the cache layer", "the cache tier"))
    changed = clean_error(run_dlm("train", doc, "--resume"), 1, "train")
    assert "cannot resume from step 8: the document's training examples changed" in changed
    doc.write_text(original.replace("learning_rate: 0.003", "learning_rate: 0.001"))
    changed = " ".join(clean_error(run_dlm("train", doc, "--resume"), 1, "train").split())
    assert "training.learning_rate changed 0.003 → 0.001" in changed
    assert "without --resume to start over" in changed
    doc.write_text(original)

    resumed = run_dlm("train", doc, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from step 8/20 (epoch 4)" in " ".join(resumed.stderr.split())
    assert "committed adapter v0001: 20 steps" in resumed.stdout
    assert not checkpoint.exists(), "the commit removes the checkpoint"
    assert run_dlm("verify", doc).returncode == 0

    nothing = clean_error(run_dlm("train", doc, "--resume"), 1, "train")
    assert "nothing to resume" in nothing and "without --resume" in nothing

    uninterrupted = run_dlm("train", doc)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    assert "starting over" not in uninterrupted.stderr
    _assert_same_adapter(doc, "v0001", "v0002")
    # The resumed run's log starts with the rows before the checkpoint: the whole run.
    assert _losses(_log_of(resumed)) == _losses(_log_of(uninterrupted))
    assert len(_losses(_log_of(resumed))) == 20


def test_a_fresh_run_discards_the_checkpoint_saying_so(tmp_path: Path) -> None:
    doc, _rows = write_recall_document(tmp_path, BASE, training={**TRAINING, "num_epochs": 4})
    killed = _stopped_at_checkpoint(doc, 4, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    fresh = run_dlm("train", doc)
    assert fresh.returncode == 0, fresh.stderr
    err = " ".join(fresh.stderr.split())
    assert "starting over; the interrupted run's checkpoint (step 4) was discarded" in err
    assert not (store_of(doc) / "adapter" / ".checkpoint").exists()


def test_dropout_and_a_held_out_check_resume_bit_identically(tmp_path: Path) -> None:
    """Dropout draws from torch's generator every step: it is restored too. One image
    held out: 6 examples, 2 steps an epoch; the checkpoint of step 3 is mid-epoch, and
    the held-out scores of the epochs before and after it come out the same."""
    training = {**TRAINING, "num_epochs": 4, "lora_dropout": 0.1, "held_out": 1}
    doc, _rows = write_recall_document(tmp_path, BASE, training={**training, "checkpoint_every": 3})
    killed = _stopped_at_checkpoint(doc, 3, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert run_dlm("train", doc, "--resume").returncode == 0
    assert run_dlm("train", doc).returncode == 0
    _assert_same_adapter(doc, "v0001", "v0002")
    runs = [
        json.loads((store_of(doc) / "adapter" / "versions" / v / "training_run.json").read_text())
        for v in ("v0001", "v0002")
    ]
    scores = [run["held_out"]["scores"] for run in runs]
    assert len(scores[0]) == 4 and scores[0] == scores[1]
    assert runs[0]["verdict"] == runs[1]["verdict"]


def test_two_processes_killed_and_resumed_commit_the_uninterrupted_adapter(
    tmp_path: Path,
) -> None:
    doc, _rows = write_recall_document(tmp_path, BASE, training=TRAINING)
    # A dead rank (rank 1, killed -9) after rank 0's checkpoint of step 4: the run
    # ends naming it, and the way to continue.
    dead_rank = _stopped_at_checkpoint(doc, 4, signal.SIGKILL, "--processes", "2", rank=1)
    assert dead_rank.returncode == 1
    err = " ".join(dead_rank.stderr.split())
    assert "was killed by SIGKILL" in err
    assert f"`dlm train {doc} --resume` continues from step 4" in err
    # Resumed, then the launcher is killed (-9) while rank 0 sits just after its
    # checkpoint of step 8; the ranks see their launcher gone and exit.
    killed = _stopped_at_checkpoint(doc, 8, signal.SIGKILL, "--resume", "--processes", "2")
    assert killed.returncode == -signal.SIGKILL
    checkpoint = store_of(doc) / "adapter" / ".checkpoint"
    assert sorted(p.name for p in (checkpoint / "step-000008").iterdir()) == [
        "checkpoint.json",
        "rng-rank0.pt",
        "rng-rank1.pt",
        "state.pt",
    ]
    single = " ".join(clean_error(run_dlm("train", doc, "--resume"), 1, "train").split())
    assert "processes changed 2 → 1" in single

    resumed = run_dlm("train", doc, "--resume", "--processes", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from step 8/20" in " ".join(resumed.stderr.split())
    assert not checkpoint.exists()
    uninterrupted = run_dlm("train", doc, "--processes", "2")
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    _assert_same_adapter(doc, "v0001", "v0002")
    assert _losses(_log_of(resumed)) == _losses(_log_of(uninterrupted))


def test_an_fsdp_run_cannot_be_resumed_and_says_why(tmp_path: Path) -> None:
    from tests.distributed.test_train_processes import FSDP_CONFIG

    doc, _rows = write_recall_document(tmp_path, BASE, training=TRAINING)
    config = tmp_path / "fsdp.yaml"
    config.write_text(FSDP_CONFIG)
    refused = run_dlm("train", doc, "--resume", "--accelerate-config", config)
    err = " ".join(clean_error(refused, 1, "train").split())
    assert "--resume cannot continue an FSDP-sharded run" in err
    assert "sharded across the processes" in err
