"""`--json` on every command that reports something: one JSON object on stdout,
in the shape docs/json.md documents (issue 20)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import click
import pytest

from dlm.cli import cli
from tests.conftest import REPO, run_dlm
from tests.e2e.recall import write_recall_document

BASE = "tiny-qwen2-vl"


def _json(result: Any, code: int = 0) -> dict[str, Any]:
    assert result.returncode == code, result.stderr
    data = json.loads(result.stdout)  # exactly one object: json.loads refuses anything after it
    assert isinstance(data, dict | list)
    return data


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, session_home: Path) -> Any:
    os.environ["DLM_HOME"] = str(session_home)
    folder = tmp_path_factory.mktemp("json")
    doc, rows = write_recall_document(folder, BASE, training={"num_epochs": 1})
    data = _json(run_dlm("train", doc, "--json"))
    return folder, doc, rows, data


def test_train(trained: Any) -> None:
    _folder, _doc, _rows, data = trained
    assert {
        "document", "dlm_id", "committed", "adapter_version", "adapter", "training_run", "log",
        "loss_plot", "trackers", "steps", "final_loss", "seconds", "startup_seconds", "world_size",
        "strategy", "levers", "vision_features", "examples",
    } <= data.keys()  # fmt: skip
    assert data["committed"] is True
    assert re.fullmatch(r"v\d{4}", data["adapter_version"])
    assert Path(data["training_run"]).is_file()
    assert data["steps"] > 0 and isinstance(data["final_loss"], float)
    assert isinstance(data["levers"], list)
    assert data["trackers"] == {}  # report_to is off by default


def test_verify_show_cache_doctor(trained: Any) -> None:
    _folder, doc, _rows, train = trained
    verified = _json(run_dlm("verify", doc, "--json"))
    assert verified["ok"] is True and verified["problems"] == []
    assert verified["dlm_id"] == train["dlm_id"]
    assert verified["checked"]["adapters"] >= 1
    assert {"document", "store", "errors", "leftovers", "versions"} <= verified.keys()

    shown = _json(run_dlm("show", doc, "--json"))
    assert {"document", "dlm_id", "base", "sections", "images", "training", "store"} <= set(shown)
    assert shown["store"]["current"] == train["adapter_version"]

    cached = _json(run_dlm("cache", doc, "--json"))
    assert {"bound_bytes", "entries", "bytes", "stores"} <= cached.keys()

    planned = _json(run_dlm("doctor", doc, "--json"))
    assert {"document", "host", "plugins", "bases"} <= planned.keys()

    plugins = _json(run_dlm("plugins", "--json"))
    assert isinstance(plugins, list) and {"name", "hooks", "provides"} <= plugins[0].keys()


def test_prompt(trained: Any) -> None:
    folder, doc, rows, train = trained
    file, _caption, question, _answer = rows[0]
    image = folder / "figures" / file
    data = _json(run_dlm("prompt", doc, "--image", image, question, "--json"))
    assert isinstance(data["answer"], str)
    assert data["question"] == question
    assert data["images"] == [str(image)]
    assert data["adapter_version"] == train["adapter_version"]
    assert data["base"] == BASE


def test_export(trained: Any, tmp_path: Path) -> None:
    _folder, doc, _rows, _train = trained
    out = tmp_path / "snapshot"
    data = _json(run_dlm("export", doc, "--out", out, "--json"))
    assert data["target"] == "hf-snapshot" and data["out"] == str(out)
    assert Path(data["primary"]).exists()
    assert data["files"] and isinstance(data["notes"], list)
    assert Path(data["manifest"]).is_file()
    targets = _json(run_dlm("export", doc, "--list-targets", "--json"))
    assert targets["base"] == BASE
    assert any(t["target"] == "hf-snapshot" for t in targets["targets"])


def test_init_and_errors(tmp_path: Path) -> None:
    doc = tmp_path / "new.dlm"
    data = _json(run_dlm("init", doc, "--base", BASE, "--json"))
    assert data["document"] == str(doc) and data["base"] == BASE and data["dlm_id"]

    # An error: the message on stderr as ever, the exit code, and one object on stdout.
    again = run_dlm("init", doc, "--base", BASE, "--json")
    error = _json(again, 2)["error"]
    assert error["subject"] == "init" and "already exists" in error["message"]
    assert error["exit_code"] == 2 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr

    never = run_dlm("verify", doc, "--json")  # no store yet
    assert _json(never, 1)["error"]["subject"] == "verify"
    bad = run_dlm("prompt", doc, "--adapter-version", "../x", "q", "--json")
    assert _json(bad, 2)["error"]["exit_code"] == 2


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    """Every command under ``group``, subcommands of groups (``gguf status``) included."""
    ctx = click.Context(group)
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix}{name} ")
    return found


def test_every_json_option_is_documented() -> None:
    """A command with --json missing from docs/json.md fails here."""
    text = (REPO / "docs" / "json.md").read_text()
    names = [
        name
        for name, command in _commands(cli)
        if any("--json" in getattr(p, "opts", ()) for p in command.params)
    ]
    assert {
        "show",
        "doctor",
        "plugins",
        "cache",
        "verify",
        "export",
        "train",
        "prompt",
        "init",
        "gguf fetch",
        "gguf status",
        "gguf probe",
        "gguf verify",
    } <= set(names)
    missing = [n for n in names if f"## `dlm {n}" not in text]
    assert not missing, f"docs/json.md has no section for: {missing}"


def test_every_reporting_command_takes_json() -> None:
    """Only commands that print nothing of their own may lack --json."""
    silent = {"gguf"}  # a group: its subcommands report
    lacking = [
        name
        for name, command in _commands(cli)
        if name not in silent
        and not any("--json" in getattr(p, "opts", ()) for p in command.params)
    ]
    assert not lacking, f"commands without --json: {lacking}"
