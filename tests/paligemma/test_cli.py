"""PaliGemma through the CLI only: train, recall, skipped text sections, snapshot, licence gate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_dlm
from tests.e2e.recall import assert_recall, store_of, write_recall_document

pytestmark = pytest.mark.slow

BASE = "tiny-paligemma"
UNBOUND = """\
Our figures stand for the components of the retrieval system.

::instruction::
### Q
What does the system do?

### A
It answers questions about documents.

"""


def _add_unbound_sections(doc: Path) -> None:
    """Prose and an ::instruction:: before the first image: PaliGemma cannot train them."""
    text = doc.read_text()
    at = text.index("::image ")
    doc.write_text(text[:at] + UNBOUND + text[at:])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, session_home: Path):
    os.environ["DLM_HOME"] = str(session_home)
    folder = tmp_path_factory.mktemp("paligemma-recall")
    doc, rows = write_recall_document(
        folder, BASE, system_prompt="You answer questions about our figures."
    )
    _add_unbound_sections(doc)
    result = run_dlm("train", doc)
    assert result.returncode == 0, result.stderr
    return folder, doc, rows, result


def test_train_skips_and_reports_the_unbound_text_sections(trained) -> None:
    _folder, doc, _rows, result = trained
    report = " ".join(result.stderr.split())
    assert "8 training examples" in report
    assert "2 sections not trained" in report
    assert report.count("skipped: family paligemma cannot train without an image") == 2
    assert "caption + 1 bound Q/A" in report
    assert "committed adapter v0001" in result.stdout
    assert (store_of(doc) / "adapter" / "current.txt").read_text().strip() == "v0001"


def test_image_conditioned_recall(trained) -> None:
    folder, doc, rows, _ = trained
    assert_recall(doc, rows, folder)


def test_caption_task_prefix_recalls_the_caption(trained) -> None:
    folder, doc, rows, _ = trained
    file, caption, _question, _answer = rows[3]
    result = run_dlm("prompt", doc, "--image", folder / "figures" / file, "caption en")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == caption


def test_hf_snapshot_loads_with_plain_transformers_and_peft(trained, session_home: Path) -> None:
    folder, doc, rows, _ = trained
    result = run_dlm("export", doc)
    assert result.returncode == 0, result.stderr
    snapshot = store_of(doc) / "exports" / "hf-snapshot"
    assert {p.name for p in (snapshot / "adapter").iterdir()} == {
        "adapter_config.json",
        "adapter_model.safetensors",
    }
    assert not list(snapshot.rglob("model*.safetensors")), "base weights must never be exported"

    file, _caption, question, answer = rows[1]
    # PaliGemma's own usage: "<image>" + task prefix, no chat template, no system prompt
    script = f"""
import sys
from PIL import Image
from peft import PeftModel
from transformers import AutoModelForImageTextToText, AutoProcessor
base = AutoModelForImageTextToText.from_pretrained({str(session_home / "bases" / BASE)!r})
model = PeftModel.from_pretrained(base, {str(snapshot / "adapter")!r}).eval()
processor = AutoProcessor.from_pretrained({str(snapshot / "processor")!r})
image = Image.open({str(folder / "figures" / file)!r}).convert("RGB")
inputs = processor(text="<image>answer en " + {question!r}, images=image, return_tensors="pt")
out = model.generate(**inputs, max_new_tokens=32, do_sample=False)
print(processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip())
assert not any(name == "dlm" or name.startswith("dlm.") for name in sys.modules)
"""
    plain = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert plain.returncode == 0, plain.stderr
    via_dlm = run_dlm("prompt", doc, "--image", folder / "figures" / file, question)
    assert plain.stdout.strip() == via_dlm.stdout.strip() == answer


def test_the_real_base_needs_the_licence_then_a_download(tmp_path: Path) -> None:
    doc, _rows = write_recall_document(
        tmp_path, "paligemma-3b-mix-224", init_args=("--i-accept-license",)
    )
    store = store_of(doc)
    # accepted at init: recorded in the store. This CPU host is refused before any
    # download; with --force, train goes on to fetch the weights and fails offline.
    refused = run_dlm("train", doc)
    assert refused.returncode == 1
    assert "GiB" in refused.stderr and "--force" in refused.stderr
    offline = run_dlm("train", doc, "--force")
    assert offline.returncode == 1
    assert "google/paligemma-3b-mix-224 @ d1d8734c9c3a" in offline.stderr
    assert "Traceback" not in offline.stderr
    assert not (store / "adapter" / "current.txt").exists()

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    refused = run_dlm("init", fresh / "doc.dlm", "--base", "paligemma-3b-mix-224")
    assert refused.returncode == 2
    assert "Gemma Terms of Use" in refused.stderr and "--i-accept-license" in refused.stderr
