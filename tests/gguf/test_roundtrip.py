"""The GGUF round trip through the CLI on tiny-qwen2-vl: train → export → llama.cpp answers.

The recall document binds four bold figures to the same question with four
answers; after `dlm train`, the exported GGUF + mmproj must answer each
figure as transformers (`dlm prompt`'s engine) does, in-process in llama.cpp.
"""

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
from tests.e2e.recall import store_of, write_recall_document

pytestmark = pytest.mark.slow

BASE = "tiny-qwen2-vl"
SYSTEM = "You answer questions about our figures."


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, session_home: Path, pinned_converter):
    os.environ["DLM_HOME"] = str(session_home)
    folder = tmp_path_factory.mktemp("gguf-recall")
    doc, rows = write_recall_document(folder, BASE, system_prompt=SYSTEM)
    result = run_dlm("train", doc)
    assert result.returncode == 0, result.stderr
    return folder, doc, rows


@pytest.fixture(scope="module")
def f16(trained):
    _folder, doc, _rows = trained
    result = run_dlm("export", doc, "--target", "gguf", "--quant", "F16")
    assert result.returncode == 0, result.stderr
    out = store_of(doc) / "exports" / "gguf-f16"
    manifest = json.loads((out / "export_manifest.json").read_text())
    return out, manifest, result


def _role(out: Path, manifest: dict, role: str) -> Path:
    return out / next(n for n, e in manifest["files"].items() if e["role"] == role)


def test_f16_export_files_manifest_and_modelfile(trained, f16) -> None:
    from dlm_export_gguf.llama_cpp import LLAMA_CPP_COMMIT

    _folder, doc, _rows = trained
    out, manifest, result = f16
    model, mmproj = _role(out, manifest, "model"), _role(out, manifest, "mmproj")
    assert {p.name for p in out.iterdir()} == {
        model.name,
        mmproj.name,
        "Modelfile",
        "README.md",
        "export_manifest.json",
    }
    assert str(model) in result.stdout.replace("\n", "")  # the primary artifact is shown
    for name, entry in manifest["files"].items():
        assert (out / name).stat().st_size == entry["size"], name
        assert _sha(out / name) == entry["sha256"], name
    assert manifest["llama_cpp"]["revision"] == LLAMA_CPP_COMMIT
    assert manifest["llama_cpp"]["runtime"]["version"] == "0.3.36"
    assert manifest["quant"] == "F16" and manifest["mmproj_quant"] == "F16"
    assert manifest["base"]["key"] == BASE and manifest["base"]["revision"]
    assert manifest["adapter"]["version"] == "v0001" and manifest["adapter"]["lora_modules"] > 0
    assert (manifest["image"]["min_tokens"], manifest["image"]["max_tokens"]) == (16, 16)
    assert manifest["pretokenizer_fallback"] == "qwen2"
    smoke = manifest["smoke"]
    assert smoke["answer"] == smoke["expected"] and smoke["matches_expected"] is True

    modelfile = (out / "Modelfile").read_text()
    assert f"FROM ./{model.name}\nFROM ./{mmproj.name}\n" in modelfile
    assert f'SYSTEM """{SYSTEM}"""' in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "PARAMETER temperature 0.7" in modelfile and "PARAMETER top_p 0.9" in modelfile
    assert 'TEMPLATE """{{ if .System }}<|im_start|>system\n{{ .System }}' in modelfile
    readme = (out / "README.md").read_text()
    assert "--image-min-tokens 16 --image-max-tokens 16" in readme
    assert f"--mmproj {mmproj.name}" in readme and "ollama create" in readme

    assert run_dlm("gguf", "verify", out).returncode == 0
    assert run_dlm("verify", doc).returncode == 0


def test_gguf_metadata(f16) -> None:
    """The files are what llama.cpp expects: a qwen2vl LM and a qwen2vl_merger projector."""
    from dlm_export_gguf.runtime import captured_stderr, require_runtime

    out, manifest, _ = f16
    llama_cpp = require_runtime()
    with captured_stderr():
        llm = llama_cpp.Llama(str(_role(out, manifest, "model")), n_ctx=64, verbose=False)
    try:
        assert llm.metadata["general.architecture"] == "qwen2vl"
        assert llm.metadata["tokenizer.ggml.pre"] == "qwen2"
        assert "<|im_start|>" in llm.metadata["tokenizer.chat_template"]
    finally:
        with captured_stderr():
            llm.close()


def test_llama_cpp_recall_equals_transformers(trained, f16) -> None:
    """Each figure: llama.cpp's greedy answer equals transformers' greedy answer."""
    import io

    from dlm_export_gguf.runtime import VisionChat
    from PIL import Image

    from dlm.engine.prompting import generate, load_adapter_for

    folder, doc, rows = trained
    out, manifest, _ = f16
    loaded = load_adapter_for(doc)
    stops = loaded.family.stop_tokens(loaded.base, loaded.processor)
    compared = []
    with VisionChat(
        _role(out, manifest, "model"),
        _role(out, manifest, "mmproj"),
        image_tokens=(manifest["image"]["min_tokens"], manifest["image"]["max_tokens"]),
        image_token=loaded.base.image.image_token,
        n_ctx=2048,
    ) as chat:
        for file, caption, question, answer in rows:
            path = folder / "figures" / file
            with Image.open(path) as img:
                prepared = loaded.family.prepare_image(loaded.base, img)
                png = io.BytesIO()
                prepared.save(png, format="PNG")
            for q, trained_answer in ((question, answer), (loaded.family.caption_prompt, caption)):
                hf = generate(loaded, [path], q, max_tokens=32)
                ll = chat.ask(q, [png.getvalue()], system=SYSTEM, stop=stops, max_tokens=32)
                compared.append((file, q, trained_answer, hf, ll.text.strip()))
    matches = sum(hf == ll for *_, hf, ll in compared)
    print(f"{matches}/{len(compared)} llama.cpp answers equal transformers'")
    for row in compared:
        print(row)
    assert matches == len(compared), compared
    recall = [ll for _f, q, _a, _hf, ll in compared if q != loaded.family.caption_prompt]
    assert len(set(recall)) == 4, "each figure must get its own answer"


def test_quantized_lms_load_and_answer(trained, f16, tmp_path: Path) -> None:
    """Q8_0 and Q4_K_M LMs from llama.cpp's quantizer load beside the F16 mmproj and answer."""
    import io

    from dlm_export_gguf.runtime import VisionChat, quantize
    from PIL import Image

    folder, _doc, rows = trained
    out, manifest, _ = f16
    f16_model = _role(out, manifest, "model")
    file, _caption, question, answer = rows[0]
    with Image.open(folder / "figures" / file) as img:
        png = io.BytesIO()
        img.convert("RGB").resize((112, 112)).save(png, format="PNG")
    for quant, ftype in (("Q8_0", 7), ("Q4_K_M", 15)):
        target = tmp_path / f"lm-{quant}.gguf"
        quantize(f16_model, target, quant)
        assert target.stat().st_size < f16_model.stat().st_size
        with VisionChat(
            target,
            _role(out, manifest, "mmproj"),
            image_tokens=(16, 16),
            image_token="<|image_pad|>",
        ) as chat:
            assert chat._llm.metadata["general.file_type"] == str(ftype)
            reply = chat.ask(question, [png.getvalue()], system=SYSTEM, stop=["<|im_end|>"])
        print(f"{quant}: {reply.text!r} (trained: {answer!r})")
        assert reply.text.strip()


def test_ollama_target_quantizes_and_leads_with_the_modelfile(trained) -> None:
    _folder, doc, _rows = trained
    result = run_dlm("export", doc, "--target", "ollama", "--quant", "Q4_K_M")
    assert result.returncode == 0, result.stderr
    out = store_of(doc) / "exports" / "ollama-q4_k_m"
    assert str(out / "Modelfile") in result.stdout.replace("\n", "")
    manifest = json.loads((out / "export_manifest.json").read_text())
    assert manifest["target"] == "ollama" and manifest["quant"] == "Q4_K_M"
    assert "answer" in manifest["smoke"]
    model = _role(out, manifest, "model")
    assert model.name.endswith("-Q4_K_M.gguf")
    assert f"FROM ./{model.name}" in (out / "Modelfile").read_text()
    assert run_dlm("gguf", "verify", out).returncode == 0


FAILING_CONVERTER = """
import sys
from pathlib import Path


class gguf:
    class MODEL_ARCH:
        MMPROJ = "MMPROJ"
        QWEN2VL = "QWEN2VL"


class ModelBase:
    @classmethod
    def register(cls, *names):
        return lambda c: c


class TextModel(ModelBase):
    model_arch = gguf.MODEL_ARCH.QWEN2VL

    def get_vocab_base_pre(self, tokenizer):
        return "qwen2"


class MmprojModel(ModelBase):
    model_arch = gguf.MODEL_ARCH.MMPROJ


@ModelBase.register("Qwen2VLForConditionalGeneration")
class Text(TextModel):
    pass


@ModelBase.register("Qwen2VLForConditionalGeneration")
class Vision(MmprojModel):
    pass


def main():
    out = Path(sys.argv[sys.argv.index("--outfile") + 1])
    out.write_bytes(b"GGUF half written")
    raise RuntimeError("simulated converter crash halfway through the tensors")
"""


def _no_export_left(store: Path, name: str) -> None:
    exports = store / "exports"
    assert not (exports / name).exists()
    leftovers = [p.name for p in exports.iterdir() if name in p.name] if exports.exists() else []
    assert not [n for n in leftovers if not n.startswith(".staging")], leftovers


def test_failed_conversion_fails_the_export_and_leaves_nothing(trained, tmp_path: Path) -> None:
    _folder, doc, _rows = trained
    checkout = tmp_path / "llama.cpp"
    checkout.mkdir()
    (checkout / "convert_hf_to_gguf.py").write_text(FAILING_CONVERTER)
    result = run_dlm(
        "export", doc, "--target", "gguf", "--quant", "BF16", env={"DLM_LLAMA_CPP": str(checkout)}
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "simulated converter crash" in result.stderr
    assert "converting the language model failed" in result.stderr
    store = store_of(doc)
    _no_export_left(store, "gguf-bf16")
    assert not [p for p in (store / "exports").iterdir() if p.name.startswith(".staging")]
    assert run_dlm("verify", doc).returncode == 0


def test_killed_mid_conversion_leaves_no_export(trained) -> None:
    _folder, doc, _rows = trained
    store = store_of(doc)
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlm", "export", str(doc), "--target", "gguf", "--quant", "Q8_0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the converter child dies with it
    )
    deadline = time.monotonic() + 300
    while not list((store / "exports").glob(".staging-gguf-q8_0-*/.work/convert.log")):
        assert proc.poll() is None, "the export ended before the conversion started"
        assert time.monotonic() < deadline, "the conversion never started"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    _no_export_left(store, "gguf-q8_0")
    assert run_dlm("verify", doc).returncode == 0
