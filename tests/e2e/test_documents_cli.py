"""Bad documents through the CLI: located errors, exit codes, no traceback, store untouched."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import run_dlm

ID = "01JZ8K2M3N4P5Q6R7S8T9V0W1X"
HEAD = f"---\ndlm_id: {ID}\ndlm_version: 10\nbase_model: tiny-qwen2-vl\n"

MALFORMED = {
    # kind: (document text, expected line)
    "yaml syntax": (HEAD + "system_prompt: [unclosed\n---\nprose\n", 5),
    "schema type": (HEAD + "training:\n  lora_r: many\n---\nprose\n", 6),
    "unknown key": (HEAD + "trainig:\n  lora_r: 8\n---\nprose\n", 5),
    "version too new": (HEAD.replace("dlm_version: 10", "dlm_version: 11") + "---\nx\n", 3),
    "unknown fence": (HEAD + '---\nprose\n\n::imagine path="a.png"::\ncaption\n', 8),
    "bad attribute": (HEAD + "---\n::image path=a.png::\ncaption\n", 6),
    "Q without A": (HEAD + "---\n::instruction::\n### Q\nWhat?\n", 7),
    "unterminated code block": (HEAD + "---\nprose\n```python\nx = 1\n", 7),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
@pytest.mark.parametrize("command", ["show", "train"])
def test_malformed_document_is_located_and_leaves_the_store_untouched(
    kind: str, command: str, tmp_path: Path, session_home: Path
) -> None:
    text, line = MALFORMED[kind]
    doc = tmp_path / "bad.dlm"
    doc.write_text(text)
    result = run_dlm(command, doc)
    assert result.returncode in (1, 2), result.stderr
    assert re.search(rf"{re.escape(str(doc))}:{line}:\d+: ", result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    assert not (session_home / "store" / ID).exists()


def _png(path: Path, colour: str) -> None:
    Image.new("RGB", (64, 64), colour).save(path)


def test_a_folder_of_images_sidecars_duplicates_and_a_corrupt_file(
    tmp_path: Path, session_home: Path
) -> None:
    figures = tmp_path / "figures"
    figures.mkdir()
    _png(figures / "a.png", "red")
    (figures / "a.txt").write_text("A red square.\n")
    shutil.copy(figures / "a.png", figures / "b.png")  # same bytes: one blob
    _png(figures / "c.png", "blue")
    (figures / "d.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    doc = tmp_path / "folder.dlm"
    doc.write_text(
        "---\ndlm_id: 01JZ8K2M3N4P5Q6R7S8T9V0W1Y\ndlm_version: 10\nbase_model: tiny-qwen2-vl\n"
        "training:\n  num_epochs: 1\n  sources:\n    - path: figures\n---\n"
    )
    store = session_home / "store" / "01JZ8K2M3N4P5Q6R7S8T9V0W1Y"

    corrupt = run_dlm("train", doc)
    assert corrupt.returncode == 1
    assert f"{doc}:8:" in corrupt.stderr and "figures/d.png" in corrupt.stderr
    assert "Traceback" not in corrupt.stderr
    assert not store.exists()

    (figures / "d.png").unlink()
    shown = json.loads(run_dlm("show", doc, "--json").stdout)
    images = {image["path"]: image for image in shown["images"]}
    assert sorted(images) == ["figures/a.png", "figures/b.png", "figures/c.png"]
    assert images["figures/a.png"]["alt"] == "a" and images["figures/a.png"]["caption"]
    assert not images["figures/b.png"]["caption"] and not images["figures/c.png"]["caption"]
    assert images["figures/a.png"]["sha256"] == images["figures/b.png"]["sha256"]
    untrained = [o for o in shown["training"]["outcomes"] if o["skipped"]]
    assert len(untrained) == 2, "images with no caption and no Q/A are reported as untrained"

    trained = run_dlm("train", doc)
    assert trained.returncode == 0, trained.stderr
    blobs = sorted(p.name for p in (store / "blobs").iterdir())
    assert blobs == sorted({images[p]["sha256"] for p in images})  # a.png and b.png stored once
    assert len(blobs) == 2
