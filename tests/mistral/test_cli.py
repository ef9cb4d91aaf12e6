"""tiny-mistral3 through the CLI: train → image-conditioned recall → HF snapshot answers alike."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_dlm
from tests.e2e.recall import assert_recall, write_recall_document

pytestmark = pytest.mark.slow

BASE = "tiny-mistral3"
SYSTEM = "You answer questions about our figures."


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, session_home: Path) -> Any:
    os.environ["DLM_HOME"] = str(session_home)
    folder = tmp_path_factory.mktemp("mistral3-recall")
    doc, rows = write_recall_document(folder, BASE, system_prompt=SYSTEM)
    result = run_dlm("train", doc)
    assert result.returncode == 0, result.stderr
    return folder, doc, rows, result


def test_train_fits_sequence_len_to_the_image_tokens(trained: Any) -> None:
    _folder, _doc, _rows, result = trained
    assert "committed adapter v0001" in result.stdout
    assert "8 training examples" in result.stderr
    assert "20 image tokens never truncated" in " ".join(result.stderr.split())


def test_image_conditioned_recall(trained: Any) -> None:
    folder, doc, rows, _ = trained
    assert_recall(doc, rows, folder)


def test_hf_snapshot_answers_like_dlm_prompt(trained: Any, session_home: Path) -> None:
    from dlm.format import parse_file
    from dlm.store.paths import StorePaths

    folder, doc, rows, _ = trained
    result = run_dlm("export", doc)
    assert result.returncode == 0, result.stderr
    store = StorePaths.for_id(parse_file(doc).frontmatter.dlm_id).root
    snapshot = store / "exports" / "hf-snapshot"
    file, _caption, question, answer = rows[3]
    # Plain transformers + peft. Mistral's template writes <s> itself, so the
    # processor must not add another; the image goes in at the pinned size.
    script = f"""
import sys
from PIL import Image
from peft import PeftModel
from transformers import AutoModelForImageTextToText, AutoProcessor
base = AutoModelForImageTextToText.from_pretrained({str(session_home / "bases" / BASE)!r})
model = PeftModel.from_pretrained(base, {str(snapshot / "adapter")!r}).eval()
processor = AutoProcessor.from_pretrained({str(snapshot / "processor")!r})
messages = [{{"role": "system", "content": [{{"type": "text", "text": {SYSTEM!r}}}]}},
            {{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": {question!r}}}]}}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
side = processor.image_processor.size["longest_edge"]
image = Image.open({str(folder / "figures" / file)!r}).convert("RGB").resize((side, side), Image.BICUBIC)
inputs = processor(text=[prompt], images=[image], return_tensors="pt", add_special_tokens=False)
out = model.generate(**inputs, max_new_tokens=32, do_sample=False)
print(processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip())
assert not any(name == "dlm" or name.startswith("dlm.") for name in sys.modules)
"""
    plain = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert plain.returncode == 0, plain.stderr
    via_dlm = run_dlm("prompt", doc, "--image", folder / "figures" / file, question)
    assert via_dlm.returncode == 0, via_dlm.stderr
    assert plain.stdout.strip() == via_dlm.stdout.strip() == answer
