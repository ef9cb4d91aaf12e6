"""Does a run say whether it learnt? Defaults that learn, the verdict, the held-out check.

Through the real CLI on tiny-qwen2-vl: `dlm init`'s settings (the base's
recommended ones) learn the recall document; a starved run ends with a
warning that names the setting to change; held-out scores reach the JSONL
log, `training_run.json`, the plot and `dlm train --json`.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_dlm
from tests.e2e.recall import FIGURES, store_of, write_recall_document

BASE = "tiny-qwen2-vl"


def _recall_body_under_init_settings(folder: Path) -> tuple[Path, list]:
    """The recall figures and body under exactly what `dlm init` wrote."""
    import sys

    from dlm.format import parse_file, render_new_document
    from tests.conftest import REPO

    sys.path.insert(0, str(REPO / "demo"))
    from figures import recall_body, write_figures

    doc_path = folder / "recall.dlm"
    assert run_dlm("init", doc_path, "--base", BASE).returncode == 0
    rows = write_figures(folder / "figures")
    frontmatter = parse_file(doc_path).frontmatter
    doc_path.write_text(render_new_document(frontmatter, recall_body("figures", rows)))
    return doc_path, rows


def test_init_writes_the_bases_recommended_training(tmp_path: Path) -> None:
    from dlm.format import parse_file
    from dlm.kit import TINY_TRAINING

    doc = tmp_path / "new.dlm"
    assert run_dlm("init", doc, "--base", BASE).returncode == 0
    training = parse_file(doc).frontmatter.training
    for key, value in TINY_TRAINING.items():
        assert getattr(training, key) == value, key
    assert "learning_rate: 0.003" in doc.read_text()  # visible, and the user's to change


def test_default_settings_on_a_tiny_base_learn(tmp_path: Path) -> None:
    doc, rows = _recall_body_under_init_settings(tmp_path)
    result = run_dlm("train", doc, "--json")
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)["verdict"]
    assert verdict["learnt"], verdict
    assert "warning" not in result.stderr
    right = 0
    for file, _caption, question, answer in rows:
        got = run_dlm("prompt", doc, "--image", tmp_path / "figures" / file, question)
        assert got.returncode == 0, got.stderr
        right += got.stdout.strip() == answer
    assert right >= 3, f"recalled {right}/{len(FIGURES)} under dlm init's settings"


def test_a_starved_run_ends_with_the_warning(tmp_path: Path) -> None:
    doc, _rows = write_recall_document(
        tmp_path, BASE, training={"num_epochs": 1, "micro_batch_size": 8}
    )
    result = run_dlm("train", doc)
    assert result.returncode == 0, result.stderr  # committed: a warning, not a failure
    assert "committed adapter v0001: 1 steps" in result.stdout
    assert "learnt little" in result.stdout
    assert "warning: this run learnt little. Likely cause: too few steps (1)" in result.stderr
    assert "raise training.num_epochs (now 1" in result.stderr
    run = json.loads((store_of(doc) / "adapter/versions/v0001/training_run.json").read_text())
    assert run["verdict"]["learnt"] is False and run["verdict"]["probed"] == 4


def test_held_out_scores_reach_the_log_the_record_the_plot_and_json(tmp_path: Path) -> None:
    from PIL import Image

    doc, _rows = write_recall_document(tmp_path, BASE, training={"num_epochs": 3, "held_out": 1})
    result = run_dlm("train", doc, "--json")
    assert result.returncode == 0, result.stderr
    assert "held out 2 example(s) for the held-out check: 1 of 4 images" in result.stderr
    out = json.loads(result.stdout)
    scores = out["held_out"]["scores"]
    assert out["held_out"]["examples"] == 2 and [s["epoch"] for s in scores] == [1, 2, 3]
    for score in scores:
        assert score["loss"] > 0 and score["questions"] == 1
        assert score["exact_match"] in (0.0, 1.0) and 0.0 <= score["f1"] <= 1.0
    run = json.loads(Path(out["training_run"]).read_text())
    assert run["held_out"]["scores"] == scores
    assert run["held_out"]["setting"] == 1 and run["held_out"]["data"]["examples"] == 2
    assert run["data"]["examples"] == 6  # the held-out image's caption and question never train
    logged = [json.loads(line) for line in Path(out["log"]).read_text().splitlines()]
    held = [row for row in logged if "held_out_loss" in row]
    assert [row["held_out_loss"] for row in held] == [s["loss"] for s in scores]
    assert [row["held_out_f1"] for row in held] == [s["f1"] for s in scores]
    with Image.open(out["loss_plot"]) as plot:
        assert plot.size == (700, 700)  # three panels: loss, held-out scores, learning rate


def test_an_impossible_held_out_is_a_document_error(tmp_path: Path) -> None:
    doc, _rows = write_recall_document(tmp_path, BASE, training={"held_out": 4})
    result = run_dlm("train", doc)
    assert result.returncode == 1, result.stderr  # a document error, like a token budget's
    assert "recall.dlm:14:13: training.held_out would hold out every one" in result.stderr
    assert "recall.dlm:" in result.stderr and "nothing would be left to train on" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (store_of(doc) / "adapter").exists()
