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
    # Qwen2-VL keeps the aspect ratio: any shape from 56² (4 tokens) up to the pinned 112²
    assert (manifest["image"]["min_tokens"], manifest["image"]["max_tokens"]) == (4, 16)
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
    assert "--image-min-tokens 4 --image-max-tokens 16" in readme
    assert f"--mmproj {mmproj.name}" in readme and "ollama create" in readme

    assert run_dlm("gguf", "verify", out).returncode == 0
    assert run_dlm("verify", doc).returncode == 0


def test_gguf_metadata(f16) -> None:
    """The files are what llama.cpp expects: a qwen2vl LM and a qwen2vl_merger projector."""
    from dlm_export_gguf import isolated

    out, manifest, _ = f16
    meta = isolated.metadata(_role(out, manifest, "model"))["metadata"]
    assert meta["general.architecture"] == "qwen2vl"
    assert meta["tokenizer.ggml.pre"] == "qwen2"
    assert "<|im_start|>" in meta["tokenizer.chat_template"]
    host = manifest["smoke"]["host"]
    assert host["system_info"].startswith("CPU :") and isinstance(host["extra_bufts"], bool)


def _png(path: Path, family, base) -> bytes:
    import io

    from PIL import Image

    with Image.open(path) as img:
        prepared = family.bind(base).prepare_image(img)
        png = io.BytesIO()
        prepared.save(png, format="PNG")
    return png.getvalue()


def test_llama_cpp_recall_equals_transformers(trained, f16) -> None:
    """Each figure: llama.cpp's greedy answer equals transformers' greedy answer.

    Exact text is safe here, unlike with random weights: the trained answers win
    by a wide margin, far beyond the kernels' disagreement.
    """
    from dlm_export_gguf import isolated

    from dlm.engine.prompting import generate, load_adapter_for

    folder, doc, rows = trained
    out, manifest, _ = f16
    loaded = load_adapter_for(doc)
    stops = tuple(loaded.family.bind(loaded.base, loaded.processor).stop_tokens())
    asked = []
    for file, caption, question, answer in rows:
        path = folder / "figures" / file
        for q, trained_answer in ((question, answer), (loaded.family.caption_prompt, caption)):
            hf = generate(loaded, [path], q, max_tokens=32)
            asked.append((file, q, trained_answer, hf, _png(path, loaded.family, loaded.base)))
    session = isolated.Session(
        _role(out, manifest, "model"),
        _role(out, manifest, "mmproj"),
        image_tokens=(manifest["image"]["min_tokens"], manifest["image"]["max_tokens"]),
        image_token=loaded.base.image.image_token,
        n_ctx=2048,
    )
    questions = [
        isolated.Question(q, (png,), system=SYSTEM, stop=stops, max_tokens=32)
        for _f, q, _a, _hf, png in asked
    ]
    got, _host, _fallback = isolated.answers(session, questions)
    compared = [
        (file, q, trained_answer, hf, str(ll["text"]).strip())
        for (file, q, trained_answer, hf, _png_bytes), ll in zip(asked, got, strict=True)
    ]
    matches = sum(hf == ll for *_, hf, ll in compared)
    print(f"{matches}/{len(compared)} llama.cpp answers equal transformers'")
    for row in compared:
        print(row)
    assert matches == len(compared), compared
    recall = [ll for _f, q, _a, _hf, ll in compared if q != loaded.family.caption_prompt]
    assert len(set(recall)) == 4, "each figure must get its own answer"


# Quantized LMs against transformers, teacher-forced along transformers' greedy answers
# to the four figures (tests/gguf/harness.py). Measured on an AVX2 host (32 steps): the
# largest |Δ log-probability| over transformers' ten likeliest tokens is 0.017 (F16),
# 0.117 (Q8_0) and 0.499 (Q4_K_M); the bounds leave about 4x for other kernels.
QUANT_GAP = {"F16": 0.25, "Q8_0": 0.5, "Q4_K_M": 2.0}


def test_quantized_lms_follow_transformers(
    trained, f16, session_home: Path, tmp_path: Path
) -> None:
    """Q8_0 and Q4_K_M LMs from llama.cpp's quantizer, compared with transformers.

    Each LM is fed transformers' greedy answer token by token; its next-token
    distributions must stay within the quant's tolerance of transformers', and
    the trained answer must stay llama.cpp's own greedy pick. The Q4_K_M
    answer is also asked for freely and compared with the F16 LM's answer.
    """
    from dlm_export_gguf import isolated

    from tests.gguf import harness as h

    folder, doc, rows = trained
    out, manifest, _ = f16
    f16_model = _role(out, manifest, "model")
    t = h.tiny(BASE, session_home)
    adapter = store_of(doc) / "adapter" / "versions" / "v0001"
    images = [folder / "figures" / file for file, *_ in rows]
    question = rows[0][2]
    processor = t.family.load_processor(t.base, t.base_dir)
    tokenizer = getattr(processor, "tokenizer", processor)
    n = max(len(tokenizer(answer, add_special_tokens=False)["input_ids"]) for *_, answer in rows)
    expected = h.transformers_greedy(t, adapter, images, question, SYSTEM, n)
    pngs = [h.prepared_png(t, image) for image in images]
    banned = h.special_ids(t)

    lms = {"F16": f16_model}
    for quant, ftype in (("Q8_0", 7), ("Q4_K_M", 15)):
        target = tmp_path / f"lm-{quant}.gguf"
        isolated.quantize(f16_model, target, quant)
        assert target.stat().st_size < f16_model.stat().st_size
        assert isolated.metadata(target)["metadata"]["general.file_type"] == str(ftype)
        lms[quant] = target
    free = {}
    for quant, lm in lms.items():
        session = h.llama_session(lm, _role(out, manifest, "mmproj"), (16, 16), "<|image_pad|>")
        result = h.parity(
            expected, h.llama_forced(session, pngs, question, SYSTEM, expected), banned
        )
        asked = isolated.Question(question, (pngs[0],), system=SYSTEM, stop=("<|im_end|>",))
        (reply,), _host, _fallback = isolated.answers(session, [asked])
        free[quant] = str(reply["text"]).strip()
        print(f"{quant}: {result}; answer {free[quant]!r}")
        assert result.gap < QUANT_GAP[quant], f"{quant}: {result}"
        assert result.tie < 0.25, f"{quant}: {result}"
    distance = _edit_distance(free["Q4_K_M"], free["F16"])
    print(f"Q4_K_M answer {free['Q4_K_M']!r}, {distance} edits from F16's {free['F16']!r}")
    assert free["F16"] == rows[0][3]
    assert distance == 0, (free["Q4_K_M"], free["F16"])


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


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


def _store_untouched(doc: Path, before: dict[str, str]) -> None:
    """No staging left, the earlier exports byte-identical, the lock free, verify clean."""
    store = store_of(doc)
    exports = store / "exports"
    assert not [p.name for p in exports.iterdir() if p.name.startswith(".")], list(
        exports.iterdir()
    )
    assert _exports_now(doc) == before
    verify = run_dlm("verify", doc)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "took over a lock" not in verify.stderr


def _exports_now(doc: Path) -> dict[str, str]:
    exports = store_of(doc) / "exports"
    return {str(p.relative_to(exports)): _sha(p) for p in sorted(exports.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("fault", "quant", "step"),
    [
        ("answer:crash", "Q8_0", "while smoke-testing"),
        ("quantize:crash", "Q4_K_M", "while quantizing lm-f16.gguf to Q4_K_M"),
    ],
)
def test_a_llama_cpp_crash_is_a_clean_error(
    trained, f16, fault: str, quant: str, step: str
) -> None:
    """A segfault inside llama.cpp: a message naming step, file and signal; nothing kept."""
    _folder, doc, _rows = trained
    before = _exports_now(doc)
    result = run_dlm(
        "export", doc, "--target", "gguf", "--quant", quant, env={"DLM_TEST_LLAMA_FAULT": fault}
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "llama.cpp crashed (SIGSEGV: Segmentation fault)" in result.stderr, result.stderr
    assert step in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    if fault.startswith("answer"):
        assert "--no-smoke" in result.stderr and "DLM_LLAMA_EXTRA_BUFTS=off" in result.stderr
    else:
        assert "try another --quant" in result.stderr
    assert not (store_of(doc) / "exports" / f"gguf-{quant.lower()}").exists()
    _store_untouched(doc, before)


def test_a_hung_llama_cpp_is_stopped(trained, f16) -> None:
    _folder, doc, _rows = trained
    before = _exports_now(doc)
    start = time.monotonic()
    result = run_dlm(
        "export",
        doc,
        "--target",
        "gguf",
        "--quant",
        "Q8_0",
        env={"DLM_TEST_LLAMA_FAULT": "answer:hang", "DLM_LLAMA_TIMEOUT": "20"},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "did not finish smoke-testing" in result.stderr, result.stderr
    assert "within 20 s" in result.stderr and "DLM_LLAMA_TIMEOUT" in result.stderr
    assert time.monotonic() - start < 240
    _store_untouched(doc, before)


def test_extra_buffer_types_are_off_on_amx_hosts() -> None:
    from dlm_export_gguf.isolated import extra_bufts_choice

    amx = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 |"
    plain = "CPU : SSE3 = 1 | AVX2 = 1 | REPACK = 1 |"
    assert extra_bufts_choice(amx, "auto") is False
    assert extra_bufts_choice(plain, "auto") is True
    assert extra_bufts_choice(plain, "off") is False and extra_bufts_choice(amx, "on") is True


def test_extra_buffer_types_setting_reaches_llama_cpp(f16, tmp_path: Path) -> None:
    """Off means llama.cpp loads no repacked (or AMX) weight buffer; on, this CPU repacks Q4_0."""
    from dlm_export_gguf import isolated

    out, manifest, _ = f16
    q4 = tmp_path / "lm-Q4_0.gguf"
    isolated.quantize(_role(out, manifest, "model"), q4, "Q4_0")
    off = isolated.metadata(q4, extra_bufts=False)["buffers"]
    print(f"extra buffer types off: {off}")
    assert off and not any("REPACK" in line or "AMX" in line for line in off), off
    machine = isolated.host()
    # on an AMX host "on" is the configuration that can crash: only the off side is checked there
    if "REPACK = 1" in machine.system_info and not machine.amx:
        on = isolated.metadata(q4, extra_bufts=True)["buffers"]
        print(f"extra buffer types on: {on}")
        assert any("REPACK" in line for line in on), on


def test_quantized_export_answers_with_extra_buffer_types_off(trained, tmp_path: Path) -> None:
    """What an AMX host runs (extra buffer types off), forced here on any CPU: Q8_0 end to end."""
    _folder, doc, _rows = trained
    out = tmp_path / "q8-no-extra-bufts"
    result = run_dlm(
        "export",
        doc,
        "--target",
        "gguf",
        "--quant",
        "Q8_0",
        "--out",
        out,
        env={"DLM_LLAMA_EXTRA_BUFTS": "off"},
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "export_manifest.json").read_text())
    smoke = manifest["smoke"]
    assert smoke["host"]["extra_bufts"] is False
    assert smoke["answer"] == smoke["expected"], smoke


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
