"""Checkpoints of a run in progress: crash-safe writes, the fingerprint's words, the RNG."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dlm.engine.training.checkpoint import (
    Checkpoints,
    checkpoint_to_resume,
    differences,
    rng_state,
    set_rng_state,
)
from dlm.errors import TrainError
from tests.e2e.recall import wait_for


def _state(step: int) -> dict:
    import torch

    return {"weights": {"w": torch.full((2,), float(step))}, "steps": step}


def _write(folder: Path, step: int) -> None:
    Checkpoints(folder).write(
        step, {"steps": step, "fingerprint": {"a": 1}}, _state(step), [rng_state()]
    )


def test_only_the_latest_complete_checkpoint_is_kept(tmp_path: Path) -> None:
    folder = tmp_path / ".checkpoint"
    assert Checkpoints(folder).latest() is None
    _write(folder, 4)
    _write(folder, 8)
    latest = Checkpoints(folder).latest()
    assert latest is not None and latest.steps == 8
    assert float(latest.state()["weights"]["w"][0]) == 8.0
    assert sorted(p.name for p in folder.iterdir()) == ["latest.txt", "step-000008"]
    assert Checkpoints(folder).clear() == 8
    assert not folder.exists()


@pytest.mark.parametrize("file", ["state.pt", "rng-rank0.pt", "checkpoint.json"])
def test_a_changed_checkpoint_is_never_resumed_from(tmp_path: Path, file: str) -> None:
    folder = tmp_path / ".checkpoint"
    _write(folder, 4)
    checkpoint_to_resume(folder, "d.dlm", {"a": 1})  # as written: accepted
    path = folder / "step-000004" / file
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(TrainError, match=rf"changed after it was written \({file}\)"):
        checkpoint_to_resume(folder, "d.dlm", {"a": 1})


def test_a_writer_killed_mid_write_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / ".checkpoint"
    marker = tmp_path / "marker"
    child = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from pathlib import Path
        from tests.core.test_checkpoint import _write
        _write(Path({str(folder)!r}), 4)
        _write(Path({str(folder)!r}), 8)
        """
    )
    env = {
        **os.environ,
        "DLM_TEST_PAUSE_AT": "checkpoint-staged-8",
        "DLM_TEST_PAUSE_MARKER": str(marker),
    }
    proc = subprocess.Popen([sys.executable, "-c", child], env=env)
    try:
        wait_for(marker.exists, timeout=120)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # step 8 was written in full, but not yet renamed into place: step 4 stays the latest
    assert any(
        p.name.endswith("step-000008") and p.name.startswith(".tmp-") for p in folder.iterdir()
    )
    latest = Checkpoints(folder).latest()
    assert latest is not None and latest.steps == 4
    assert float(latest.state()["weights"]["w"][0]) == 4.0
    assert latest.rng(0)["torch"] is not None
    _write(folder, 12)  # the next checkpoint clears the dead writer's leftover
    assert sorted(p.name for p in folder.iterdir()) == ["latest.txt", "step-000012"]


def test_differences_name_what_changed() -> None:
    saved = {"examples": "a", "base_model": "tiny-a", "training.learning_rate": 0.003}
    now = {"examples": "b", "base_model": "tiny-b", "training.learning_rate": 0.001}
    assert differences(saved, now) == [
        "the document's training examples changed",
        "base_model changed tiny-a → tiny-b",
        "training.learning_rate changed 0.003 → 0.001",
    ]
    assert differences(saved, dict(saved)) == []


def test_resume_is_refused_without_a_checkpoint_or_with_a_change(tmp_path: Path) -> None:
    folder = tmp_path / ".checkpoint"
    with pytest.raises(TrainError, match="nothing to resume"):
        checkpoint_to_resume(folder, "doc.dlm", {"a": 1})
    _write(folder, 4)
    with pytest.raises(TrainError, match=r"cannot resume from step 4: a changed 1 → 2"):
        checkpoint_to_resume(folder, "doc.dlm", {"a": 2})
    assert checkpoint_to_resume(folder, "doc.dlm", {"a": 1}).steps == 4


def test_random_generators_come_back_as_they_were() -> None:
    import random

    import numpy as np
    import torch

    saved = rng_state()
    drawn = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    set_rng_state(saved)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == drawn


def test_a_checkpoint_is_due_every_n_steps_or_after_ten_minutes() -> None:
    import time
    from types import SimpleNamespace

    from dlm.engine.distributed.ranks import Ranks
    from dlm.engine.training.checkpoint import CHECKPOINT_MINUTES
    from dlm.engine.training.session import RunOutcome, TrainingSession

    settings = SimpleNamespace(checkpoint_every=4)
    inputs = SimpleNamespace(
        prepared=SimpleNamespace(
            doc=SimpleNamespace(frontmatter=SimpleNamespace(training=settings))
        )
    )
    session = SimpleNamespace(inputs=inputs, ranks=Ranks.single(), total_steps=20)

    def due(steps: int, minutes_ago: float = 0.0, **changes: object) -> bool:
        outcome = RunOutcome(20, Path("log.jsonl"), steps=steps)
        outcome.checkpointed_at = time.monotonic() - minutes_ago * 60
        return TrainingSession._checkpoint_due(
            SimpleNamespace(**{**vars(session), **changes}), outcome
        )  # type: ignore[arg-type]

    assert due(8) and not due(9)
    assert due(9, minutes_ago=CHECKPOINT_MINUTES + 0.1)
    assert not due(20), "the last step commits instead"
    assert not due(8, ranks=Ranks(world=2, strategy="fsdp")), "FSDP runs write none"


def test_a_failed_run_says_how_to_continue_once_it_checkpointed(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from dlm.engine.training.session import TrainingSession
    from dlm.errors import DiskFullError

    folder = tmp_path / ".checkpoint"
    prepared = SimpleNamespace(
        paths=SimpleNamespace(checkpoint=folder), doc=SimpleNamespace(path="notes.dlm")
    )
    session = SimpleNamespace(inputs=SimpleNamespace(prepared=prepared))
    session._resume_hint = lambda: TrainingSession._resume_hint(session)  # type: ignore[arg-type]

    def failed() -> str | None:
        error = DiskFullError("no space left on device", hint="free space, then re-run")
        return TrainingSession._with_resume(session, error).hint  # type: ignore[arg-type]

    assert failed() == "free space, then re-run"  # no checkpoint yet: nothing to continue
    _write(folder, 4)
    assert failed() == (
        "free space, then re-run; then `dlm train notes.dlm --resume` continues from step 4"
    )
