"""The image-conditioned recall document, shared by every family's end-to-end tests.

Four bold, distinct figures; the same question bound to each with a
different answer. After `dlm train`, `dlm prompt --image X` must return X's
answer exactly, which is only possible if the adapter uses the image.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, run_dlm

sys.path.insert(0, str(REPO / "demo"))
from figures import FIGURES, RECALL_TRAINING, recall_body, write_figures


def write_recall_document(
    folder: Path,
    base: str,
    *,
    training: dict[str, object] | None = None,
    system_prompt: str | None = None,
    init_args: tuple[str, ...] = (),
) -> tuple[Path, list[tuple[str, str, str, str]]]:
    """`dlm init` a document on ``base`` and give it the recall body; returns (doc, rows)."""
    import attrs

    from dlm.format import parse_file, render_new_document

    doc_path = folder / "recall.dlm"
    result = run_dlm("init", doc_path, "--base", base, *init_args)
    assert result.returncode == 0, result.stderr
    rows = write_figures(folder / "figures")
    doc = parse_file(doc_path)
    settings = attrs.evolve(doc.frontmatter.training, **{**RECALL_TRAINING, **(training or {})})
    frontmatter = attrs.evolve(doc.frontmatter, training=settings, system_prompt=system_prompt)
    doc_path.write_text(render_new_document(frontmatter, recall_body("figures", rows)))
    return doc_path, rows


def assert_recall(doc_path: Path, rows: list[tuple[str, str, str, str]], folder: Path) -> None:
    """Every figure gets its own answer back, through the CLI."""
    answers = {}
    for file, _caption, question, answer in rows:
        result = run_dlm("prompt", doc_path, "--image", folder / "figures" / file, question)
        assert result.returncode == 0, result.stderr
        answers[file] = (result.stdout.strip(), answer)
    wrong = {f: got for f, got in answers.items() if got[0] != got[1]}
    assert not wrong, f"recall failed for {wrong}"


__all__ = ["FIGURES", "RECALL_TRAINING", "assert_recall", "write_recall_document"]


def store_of(doc: Path) -> Path:
    """The store directory of ``doc``'s ``dlm_id`` (under ``$DLM_HOME``)."""
    from dlm.format import parse_file
    from dlm.store.paths import StorePaths

    return StorePaths.for_id(parse_file(doc).frontmatter.dlm_id).root


def wait_for(predicate, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def start_long_run(doc: Path, *args: str, **env: str) -> tuple[subprocess.Popen[str], Path]:
    """``dlm train`` of ``doc``'s store (same ``dlm_id``) trained far longer, so it is
    surely mid-run; returned once it has logged its first step, with the store."""
    store = store_of(doc)
    logs_before = set((store / "logs").glob("train-*.jsonl"))
    slow = doc.with_name("slow.dlm")
    slow.write_text(doc.read_text().replace("num_epochs: 60", "num_epochs: 100000"))
    full_env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", **env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlm", "train", str(slow), *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def first_step_logged() -> bool:
        new = set((store / "logs").glob("train-*.jsonl")) - logs_before
        return any(p.read_text().strip() for p in new)

    try:
        wait_for(first_step_logged)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, store


def trained_recall(folder: Path, base: str, **training: object) -> tuple[Path, list]:
    """A recall document on ``base`` in ``folder``, trained once through the CLI."""
    doc, rows = write_recall_document(folder, base, training=dict(training) or None)
    result = run_dlm("train", doc)
    assert result.returncode == 0, result.stderr
    return doc, rows


def clean_error(result, code: int, subject: str) -> str:
    """The stderr of a failed command, checked for its exit code, subject and no traceback."""
    import re

    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert re.search(rf"(^|\n){re.escape(subject)}: ", result.stderr), result.stderr
    return result.stderr
