"""The product's spine, through the CLI only: init → train → prompt → export on tiny-qwen2-vl."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_dlm
from tests.e2e.recall import (
    RECALL_TRAINING,
    assert_recall,
    start_long_run,
    store_of,
    write_recall_document,
)

pytestmark = pytest.mark.slow

BASE = "tiny-qwen2-vl"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, session_home: Path):
    os.environ["DLM_HOME"] = str(session_home)
    folder = tmp_path_factory.mktemp("qwen2-recall")
    doc, rows = write_recall_document(
        folder, BASE, system_prompt="You answer questions about our figures."
    )
    result = run_dlm("train", doc)
    assert result.returncode == 0, result.stderr
    return folder, doc, rows, result


def test_train_reports_sections_plan_and_commit(trained) -> None:
    _folder, doc, _rows, result = trained
    assert "committed adapter v0001" in result.stdout
    assert "caption + 1 bound Q/A" in result.stderr
    assert "8 training examples" in result.stderr
    assert "plan" in result.stderr and "precision fp32" in result.stderr
    assert "micro-batch 4 × accumulation 1" in result.stderr
    store = store_of(doc)
    assert (store / "adapter" / "current.txt").read_text().strip() == "v0001"


def test_image_conditioned_recall(trained) -> None:
    folder, doc, rows, _ = trained
    assert_recall(doc, rows, folder)


def test_training_run_metadata_and_logs(trained) -> None:
    _folder, doc, _rows, _ = trained
    store = store_of(doc)
    run = json.loads((store / "adapter" / "versions" / "v0001" / "training_run.json").read_text())
    assert run["base"]["key"] == BASE and run["base"]["revision"]
    assert run["hyperparameters"]["learning_rate"] == RECALL_TRAINING["learning_rate"]
    assert run["hyperparameters"]["seed"] == 7
    assert run["image_settings"], "processor resolution must be saved with the adapter"
    assert run["image_geometry"]["tokens_per_image"] == 16
    assert len(run["data"]["images"]) == 4
    assert {"torch", "transformers", "peft"} <= set(run["versions"])
    logs = sorted((store / "logs").glob("train-*.jsonl"))
    rows = [json.loads(line) for line in logs[0].read_text().splitlines()]
    assert rows[0]["step"] == 1 and {"loss", "lr", "samples_per_s"} <= set(rows[0])
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert logs[0].with_suffix(".png").stat().st_size > 1000
    files = {p.name for p in (store / "adapter" / "versions" / "v0001").iterdir()}
    assert files == {"adapter_config.json", "adapter_model.safetensors", "training_run.json"}


def test_prompt_errors_as_the_seed_words_them(trained, tmp_path: Path) -> None:
    folder, doc, rows, _ = trained
    no_image = run_dlm("prompt", doc, "What is this?")
    assert no_image.returncode == 2
    assert f"base {BASE} is vision-language; pass at least one --image PATH" in no_image.stderr
    missing = run_dlm("prompt", doc, "--image", folder / "nope.png", "What is this?")
    assert missing.returncode == 2 and "image not found" in missing.stderr
    fresh, _ = write_recall_document(tmp_path, BASE)
    untrained = run_dlm("prompt", fresh, "--image", folder / "figures" / rows[0][0], "Q?")
    assert untrained.returncode == 1
    assert "no adapter under adapter/current.txt" in untrained.stderr
    assert "dlm train" in untrained.stderr
    for result in (no_image, missing, untrained):
        assert "Traceback" not in result.stderr


def test_question_from_stdin(trained) -> None:
    folder, doc, rows, _ = trained
    file, _caption, question, answer = rows[1]
    result = run_dlm("prompt", doc, "--image", folder / "figures" / file, input=question)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == answer


def test_hf_snapshot_loads_with_plain_transformers_and_peft(trained, session_home: Path) -> None:
    folder, doc, rows, _ = trained
    result = run_dlm("export", doc)
    assert result.returncode == 0, result.stderr
    snapshot = store_of(doc) / "exports" / "hf-snapshot"
    manifest = json.loads((snapshot / "snapshot_manifest.json").read_text())
    assert manifest["export_target"] == "hf_snapshot"
    assert manifest["base"]["revision"] and manifest["adapter_version"] == "v0001"
    for rel, entry in manifest["files"].items():
        assert _sha(snapshot / rel) == entry["sha256"], rel
    adapter_files = {p.name for p in (snapshot / "adapter").iterdir()}
    assert adapter_files == {"adapter_config.json", "adapter_model.safetensors"}

    file, _caption, question, answer = rows[2]
    script = f"""
import sys
from PIL import Image
from peft import PeftModel
from transformers import AutoModelForImageTextToText, AutoProcessor
base = AutoModelForImageTextToText.from_pretrained({str(session_home / "bases" / BASE)!r})
model = PeftModel.from_pretrained(base, {str(snapshot / "adapter")!r}).eval()
processor = AutoProcessor.from_pretrained({str(snapshot / "processor")!r})
messages = [{{"role": "system", "content": [{{"type": "text", "text": "You answer questions about our figures."}}]}},
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
    assert run_dlm("verify", doc).returncode == 0


def test_verify_detects_a_damaged_blob(trained) -> None:
    _folder, doc, _rows, _ = trained
    blob = next((store_of(doc) / "blobs").iterdir())
    original = blob.read_bytes()
    try:
        blob.write_bytes(original[:-10] + b"0123456789")
        result = run_dlm("verify", doc)
        assert result.returncode == 1
        assert blob.name[:12] in result.stdout + result.stderr
    finally:
        blob.write_bytes(original)
    assert run_dlm("verify", doc).returncode == 0


def test_kill_mid_run_keeps_v0001_then_retrain_is_v0002_and_bit_identical(trained) -> None:
    _folder, doc, _rows, _ = trained
    # The same store (same dlm_id), trained far longer, so it is surely mid-run when killed.
    proc, store = start_long_run(doc)
    # While it runs, a second writer fails at once, naming the holder.
    started = time.monotonic()
    second = run_dlm("train", doc)
    assert proc.poll() is None, "the long run must still be running"
    assert second.returncode == 1
    assert f"pid {proc.pid}" in second.stderr
    assert time.monotonic() - started < 30
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (store / "adapter" / "current.txt").read_text().strip() == "v0001"
    assert run_dlm("verify", doc).returncode == 0

    again = run_dlm("train", doc)
    assert again.returncode == 0, again.stderr
    current = (store / "adapter" / "current.txt").read_text().strip()
    assert current == "v0002"
    v1 = store / "adapter" / "versions" / "v0001" / "adapter_model.safetensors"
    vn = store / "adapter" / "versions" / current / "adapter_model.safetensors"
    assert _sha(v1) == _sha(vn), "same document + seed on CPU must give a bit-identical adapter"


def test_bad_documents_fail_before_any_model_loads(tmp_path: Path) -> None:
    doc, _rows = write_recall_document(tmp_path, BASE, training={"sequence_len": 20})
    store = store_of(doc)
    oversize = run_dlm("train", doc)
    assert oversize.returncode == 1
    assert f"{doc}:" in oversize.stderr and "sequence_len is 20" in oversize.stderr
    assert "image" in oversize.stderr and "never truncated" in oversize.stderr
    assert "loading" not in oversize.stderr
    assert not store.exists(), "a refused document must leave the store untouched"

    text = doc.read_text().replace("sequence_len: 20", "sequence_len: 2048")
    doc.write_text(text.replace("figures/red-circle.png", "figures/missing.png"))
    missing = run_dlm("train", doc)
    assert missing.returncode == 1
    line = next(i for i, ln in enumerate(doc.read_text().splitlines(), 1) if "missing.png" in ln)
    assert f"{doc}:{line}:1: image not found: figures/missing.png" in missing.stderr
    assert not store.exists()

    doc.write_text(text.replace(f"base_model: {BASE}", "base_model: no-such-base"))
    unknown = run_dlm("train", doc)
    assert unknown.returncode == 1
    assert f"{doc}:" in unknown.stderr and "unknown base 'no-such-base'" in unknown.stderr
    assert not store.exists()
    for result in (oversize, missing, unknown):
        assert "Traceback" not in result.stderr
