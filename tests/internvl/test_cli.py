"""tiny-internvl through the CLI only: init → train → prompt (recall) → HF snapshot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_dlm
from tests.e2e.recall import assert_recall, store_of, write_recall_document

pytestmark = pytest.mark.slow

BASE = "tiny-internvl"
SYSTEM = "You answer questions about our figures."


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, session_home: Path):
    os.environ["DLM_HOME"] = str(session_home)
    folder = tmp_path_factory.mktemp("internvl-recall")
    doc, rows = write_recall_document(folder, BASE, system_prompt=SYSTEM)
    result = run_dlm("train", doc)
    assert result.returncode == 0, result.stderr
    return folder, doc, rows, result


def test_train_commits_with_exact_image_budgets(trained) -> None:
    _folder, doc, _rows, result = trained
    assert "committed adapter v0001" in result.stdout
    assert "8 training examples" in result.stderr
    # 224² figures: 2 x 2 tiles + thumbnail, 4 tokens each, plus <img> and </img>
    assert "22 image tokens never truncated" in result.stderr
    run = json.loads(
        (store_of(doc) / "adapter" / "versions" / "v0001" / "training_run.json").read_text()
    )
    assert run["image_settings"] == {
        "size": {"height": 56, "width": 56},
        "min_patches": 1,
        "max_patches": 4,
    }
    assert run["image_geometry"]["resize"] == "tiles"


def test_image_conditioned_recall(trained) -> None:
    folder, doc, rows, _ = trained
    assert_recall(doc, rows, folder)


def test_hf_snapshot_loads_with_plain_transformers_and_peft(trained, session_home: Path) -> None:
    folder, doc, rows, _ = trained
    result = run_dlm("export", doc)
    assert result.returncode == 0, result.stderr
    snapshot = store_of(doc) / "exports" / "hf-snapshot"
    file, _caption, question, answer = rows[3]
    script = f"""
import sys
from PIL import Image
from peft import PeftModel
from transformers import AutoModelForImageTextToText, AutoProcessor
base = AutoModelForImageTextToText.from_pretrained({str(session_home / "bases" / BASE)!r})
model = PeftModel.from_pretrained(base, {str(snapshot / "adapter")!r}).eval()
processor = AutoProcessor.from_pretrained({str(snapshot / "processor")!r})
assert processor.image_processor.max_patches == 4
messages = [{{"role": "system", "content": [{{"type": "text", "text": {SYSTEM!r}}}]}},
            {{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": {question!r}}}]}}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
image = Image.open({str(folder / "figures" / file)!r}).convert("RGB")
inputs = processor(text=[prompt], images=[image], return_tensors="pt")
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
