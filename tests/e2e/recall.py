"""The image-conditioned recall document, shared by every family's end-to-end tests.

Four bold, distinct figures; the same question bound to each with a
different answer. After `dlm train`, `dlm prompt --image X` must return X's
answer exactly, which is only possible if the adapter uses the image.
"""

from __future__ import annotations

import sys
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
