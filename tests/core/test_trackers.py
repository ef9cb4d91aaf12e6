"""Experiment trackers (`training.report_to`, `dlm train --report-to`), issue 16.

TensorBoard is tested for real: `dlm train` on tiny-qwen2-vl writes event
files under the store, and TensorBoard's own reader gives back the numbers
of the run's JSONL log, step by step. The other trackers' packages are not
installed here: choosing one is refused with the pip command, before
anything is written to the store.
"""

from __future__ import annotations

import importlib.util
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from dlm.engine.training.trackers import (
    KINDS,
    RunTrackers,
    check_installed,
    numbers,
    scalar_config,
)
from dlm.errors import DocumentError, TrainError
from dlm.format import parse
from dlm.format.document import TRACKERS
from tests.conftest import REPO, run_dlm
from tests.e2e.recall import store_of, write_recall_document

BASE = "tiny-qwen2-vl"
ULID = "01JZ8XKQ3M5N7P9R2S4T6V8W0Y"
HEAD = f"---\ndlm_id: {ULID}\ndlm_version: 10\nbase_model: {BASE}\n"
#: Eight steps whose learning rate moves (warm-up, then cosine), so the lr is checked too.
SHORT = {"num_epochs": 2, "micro_batch_size": 2, "lr_scheduler": "cosine", "warmup_ratio": 0.25}


# ----------------------------------------------------------------- the names


def test_every_tracker_is_one_accelerate_supports_with_an_extra() -> None:
    from accelerate.utils import LoggerType

    assert tuple(KINDS) == TRACKERS
    extras = tomllib.loads((REPO / "dlm-core" / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for name, kind in KINDS.items():
        assert LoggerType(name).value == name
        assert kind.extra in extras
        assert kind.install == f"pip install 'dlm-core[{kind.extra}]'"


def test_ci_installs_tensorboard_pinned() -> None:
    # the TensorBoard test below must run in CI, never be skipped
    assert "tensorboard==" in (REPO / "constraints.txt").read_text()
    assert '-e "dlm-core[tensorboard]"' in (REPO / "scripts" / "bootstrap").read_text()
    assert importlib.util.find_spec("tensorboard") is not None


def _report_to(yaml: str) -> tuple[str, ...]:
    return parse(HEAD + f"training:\n  report_to: {yaml}\n---\n").frontmatter.training.report_to


def test_report_to_takes_a_name_a_list_or_none() -> None:
    assert parse(HEAD + "---\n").frontmatter.training.report_to == ()
    assert _report_to("tensorboard") == ("tensorboard",)
    assert _report_to("[tensorboard, wandb, tensorboard]") == ("tensorboard", "wandb")
    for off in ("none", "[]", "null"):
        assert _report_to(off) == ()


def test_an_unknown_tracker_is_located_with_the_closest_name() -> None:
    with pytest.raises(DocumentError) as info:
        parse(HEAD + "training:\n  report_to: [wandb, tensorbord]\n---\n", "doc.dlm")
    exc = info.value
    assert (exc.line, exc.col) == (6, 22)
    assert exc.message.startswith("training.report_to[1] must be one of: tensorboard, wandb")
    assert exc.hint == "did you mean 'tensorboard'?"
    with pytest.raises(DocumentError) as info:
        parse(HEAD + "training:\n  report_to: {a: 1}\n---\n", "doc.dlm")
    assert "must be a name or a list of names" in info.value.message


# ----------------------------------------------------------------- what is logged


def test_only_numbers_are_logged_nested_ones_by_path() -> None:
    row = {
        "step": 3,
        "loss": 1.5,
        "samples_per_s": None,
        "note": "text",
        "flag": True,
        "heldout": {"loss": 2.0, "f1": None},
    }
    assert numbers(row) == {"step": 3, "loss": 1.5, "heldout/loss": 2.0}


def test_hyperparameters_become_scalars() -> None:
    config = {"lr": 2e-4, "target_modules": ["q_proj", "v_proj"], "precision": None, "r": 8}
    assert scalar_config(config) == {
        "lr": 2e-4,
        "target_modules": "q_proj, v_proj",
        "precision": None,
        "r": 8,
    }


class _Accelerator:
    """What RunTrackers calls on accelerate's Accelerator, recorded."""

    def __init__(self) -> None:
        self.logged: list[tuple[dict[str, Any], int]] = []
        self.trackers: list[Any] = []
        self.finished = 0

    def init_trackers(self, project: str, config: dict[str, Any]) -> None:
        self.project, self.config = project, config
        self.trackers = [self]
        self.name = "fake"

    def log(self, values: dict[str, Any], step: int) -> None:
        self.logged.append((values, step))

    def finish(self) -> None:
        self.finished += 1


def _trackers(tmp_path: Path, *names: str) -> RunTrackers:
    from rich.console import Console

    kinds = tuple(KINDS[name] for name in names)
    return RunTrackers(kinds, "doc", "20260101T000000Z", tmp_path / "logs", Console(quiet=True))


def test_trackers_start_log_the_rows_and_finish_even_on_failure(tmp_path: Path) -> None:
    accelerator = _Accelerator()
    trackers = _trackers(tmp_path, "tensorboard")
    with pytest.raises(KeyboardInterrupt), trackers.running(accelerator, {"a": [1, 2]}):
        trackers.log({"step": 1, "loss": 0.5, "samples_per_s": None}, 1)
        raise KeyboardInterrupt
    assert accelerator.config == {"a": "1, 2"}
    assert accelerator.logged == [({"loss": 0.5}, 1)]
    assert accelerator.finished == 1
    trackers.log({"loss": 0.1}, 2)  # after the end: nothing
    assert len(accelerator.logged) == 1
    assert trackers.where() == {"tensorboard": str(tmp_path / "logs/tensorboard/20260101T000000Z")}


def test_a_tracker_that_cannot_start_stops_the_run_with_the_way_out(tmp_path: Path) -> None:
    accelerator = _Accelerator()

    def refuse(project: str, config: dict[str, Any]) -> None:
        accelerator.trackers = [accelerator]  # started, then failed: still closed
        raise RuntimeError("api_key not configured")

    accelerator.init_trackers = refuse  # type: ignore[method-assign]
    trackers = _trackers(tmp_path, "wandb")
    with pytest.raises(TrainError) as info, trackers.running(accelerator, {}):
        pytest.fail("the run must not start")
    assert info.value.message.startswith("could not start Weights & Biases: RuntimeError")
    assert "--report-to none" in (info.value.hint or "")
    assert accelerator.finished == 1


def test_no_trackers_log_nothing(tmp_path: Path) -> None:
    accelerator = _Accelerator()
    trackers = _trackers(tmp_path)
    assert trackers.log_with() is None
    with trackers.running(accelerator, {}):
        trackers.log({"loss": 1.0}, 1)
    assert accelerator.logged == [] and not hasattr(accelerator, "project")
    assert not (tmp_path / "logs").exists()


def test_a_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import attrs

    monkeypatch.setitem(
        KINDS, "tensorboard", attrs.evolve(KINDS["tensorboard"], module="no_such_module_x")
    )
    with pytest.raises(TrainError) as info:
        check_installed(("tensorboard",))
    assert "its package 'no_such_module_x' does not import" in info.value.message
    assert "pip install 'dlm-core[tensorboard]'" in (info.value.hint or "")
    check_installed(())


# ----------------------------------------------------------------- dlm train, for real


def _doc(folder: Path, **training: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc, _rows = write_recall_document(folder, BASE, training={**SHORT, **training})
    return doc


def _train(doc: Path, *args: str) -> dict[str, Any]:
    result = run_dlm("train", doc, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _log_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(data["log"]).read_text().splitlines()]


def _assert_tensorboard_matches_the_log(data: dict[str, Any]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = Path(data["trackers"]["tensorboard"])
    store = Path(data["adapter"]).parents[2]
    stamp = Path(data["log"]).stem.removeprefix("train-")
    assert folder == store / "logs" / "tensorboard" / stamp
    events = EventAccumulator(str(folder))
    events.Reload()
    rows = _log_rows(data)
    assert len(rows) == data["steps"] == 8
    for tag in ("loss", "lr", "epoch", "samples"):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [r["step"] for r in rows], tag
        for scalar, row in zip(scalars, rows, strict=True):
            # event files hold float32
            assert scalar.value == pytest.approx(row[tag], rel=1e-6, abs=1e-9), (tag, row)
    assert len({r["lr"] for r in rows}) > 3, "the schedule moved the lr"


def _report_to_recorded(data: dict[str, Any]) -> list[str]:
    run = json.loads(Path(data["training_run"]).read_text())
    return list(run["hyperparameters"]["report_to"])


@pytest.mark.slow
def test_frontmatter_tensorboard_reads_back_the_logged_numbers(tmp_path: Path) -> None:
    data = _train(_doc(tmp_path / "fm", report_to=("tensorboard",)))
    _assert_tensorboard_matches_the_log(data)
    assert _report_to_recorded(data) == ["tensorboard"]


@pytest.mark.slow
def test_tensorboard_reads_back_the_held_out_scores(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = _train(_doc(tmp_path / "held", report_to=("tensorboard",), held_out=1))
    events = EventAccumulator(data["trackers"]["tensorboard"])
    events.Reload()
    held = [row for row in _log_rows(data) if "held_out_loss" in row]
    assert held and [s["loss"] for s in data["held_out"]["scores"]] == [
        row["held_out_loss"] for row in held
    ]
    for tag in ("held_out_loss", "held_out_exact_match", "held_out_f1"):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [row["step"] for row in held], tag
        for scalar, row in zip(scalars, held, strict=True):
            assert scalar.value == pytest.approx(row[tag], rel=1e-6, abs=1e-9), (tag, row)


@pytest.mark.slow
def test_report_to_on_the_command_line_overrides_the_document(tmp_path: Path) -> None:
    plain = _doc(tmp_path / "plain")
    turned_on = _train(plain, "--report-to", "tensorboard")
    _assert_tensorboard_matches_the_log(turned_on)
    assert _report_to_recorded(turned_on) == ["tensorboard"]

    chosen = _doc(tmp_path / "chosen", report_to=("tensorboard",))
    turned_off = _train(chosen, "--report-to", "none")
    assert turned_off["trackers"] == {}
    assert _report_to_recorded(turned_off) == []
    assert not (store_of(chosen) / "logs" / "tensorboard").exists()


@pytest.mark.slow
def test_two_processes_report_from_rank_0_only(tmp_path: Path) -> None:
    data = _train(_doc(tmp_path / "ddp"), "--processes", "2", "--report-to", "tensorboard")
    assert data["world_size"] == 2
    _assert_tensorboard_matches_the_log(data)
    runs = list((Path(data["trackers"]["tensorboard"])).parent.iterdir())
    assert len(runs) == 1, "one run folder: only rank 0 writes"


def test_a_tracker_not_installed_is_refused_before_the_store_is_touched(tmp_path: Path) -> None:
    assert importlib.util.find_spec("wandb") is None, "this test needs wandb not installed"
    doc = _doc(tmp_path / "wandb", report_to=("wandb",))
    result = run_dlm("train", doc)
    assert result.returncode == 1, result.stderr
    assert "train: report_to names Weights & Biases, but its package 'wandb'" in result.stderr
    assert "pip install 'dlm-core[wandb]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not store_of(doc).exists(), "nothing written: no adapter, no logs, no blobs"
    # the command line's choice is checked the same way
    result = run_dlm("train", _doc(tmp_path / "cli"), "--report-to", "tensorboard,mlflow")
    assert result.returncode == 1 and "pip install 'dlm-core[mlflow]'" in result.stderr


def test_unknown_names_are_refused_with_the_closest_one(tmp_path: Path) -> None:
    doc = _doc(tmp_path / "typo")
    store = store_of(doc)
    text = doc.read_text().replace("training:\n", "training:\n  report_to: [tensorbord]\n", 1)
    doc.write_text(text)
    line = text.splitlines().index("  report_to: [tensorbord]") + 1
    result = run_dlm("train", doc)
    # a document error, as for any other setting (exit 1, file:line:col)
    assert result.returncode == 1, result.stderr
    assert f"{doc}:{line}:15: training.report_to[0] must be one of" in result.stderr
    assert "did you mean 'tensorboard'?" in result.stderr
    assert not store.exists()

    for value, message in (
        (
            "tensorbard",
            "'tensorbard' is not a tracker: choose from tensorboard, wandb, mlflow, "
            "trackio, or none (did you mean 'tensorboard'?)",
        ),
        ("none,wandb", "none turns every tracker off"),
        (",", "name a tracker, or none"),
    ):
        result = run_dlm("train", doc, "--report-to", value)
        assert result.returncode == 2, (value, result.stderr)
        assert message in result.stderr, (value, result.stderr)
