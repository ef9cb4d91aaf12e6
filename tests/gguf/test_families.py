"""Every VL family's tiny base through the exporter, compared with transformers.

A random LoRA (nonzero B) is merged, converted, and asked about four figures.
Random-weight answers meet near ties, and which side of a tie a CPU lands on
depends on its SIMD kernels (AVX2, AVX-512, AMX), so answers are not compared
as text. Instead transformers' greedy answer is fed to llama.cpp token by token
(teacher forcing), and at every step the two next-token distributions must
agree within a tolerance: the same path, whatever the host. A wrong tokenizer,
chat template, rope setting or image-token count moves them far more than the
tolerance, which ``test_parity_catches_a_wrong_image_token_count`` shows.

Special tokens are banned on transformers' side so each answer runs its full
length (the random tiny models otherwise stop at once).

At the pinned converter the projector layers are mapped by vision-block index,
so Mistral 3 needs >= 3 vision layers and InternVL >= 4.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from tests.gguf import harness as h

pytestmark = pytest.mark.slow

# family tiny recipe module, vision config name, layer key, minimum depth at the pin
MIN_VISION_DEPTH = {
    "tiny-qwen2-vl": ("dlm_vl_qwen2.bases", "TINY_VISION_CONFIG", "depth", 3),
    "tiny-mistral3": ("dlm_vl_mistral.bases", "TINY_VISION_CONFIG", "num_hidden_layers", 3),
    "tiny-internvl": ("dlm_vl_internvl.bases", "TINY_VISION_CONFIG", "num_hidden_layers", 4),
}
# Largest |Δ log-probability| allowed over transformers' ten likeliest tokens, and the
# most by which llama.cpp may prefer another token over transformers' pick (a near tie).
# Measured on an AVX2 host (F16 LM, F16 mmproj, 40 steps): Qwen2-VL gap 0.074, Mistral
# 0.028, InternVL 0.128 (llama.cpp resamples its tiles with its own filter); ties at most
# 0.007. The bounds leave 3-4x for other kernels (AVX-512, AMX); a wrong image-token count
# gives a gap of 16 (test_parity_catches_a_wrong_image_token_count).
GAP = {"tiny-qwen2-vl": 0.25, "tiny-mistral3": 0.25, "tiny-internvl": 0.5}
TIE = 0.25
STEPS = 10


def _tiny(key: str, session_home: Path) -> h.Tiny:
    """The family's own tiny base: it must be deep enough for the pinned converter."""
    module_name, config_name, layer_key, depth = MIN_VISION_DEPTH[key]
    config = getattr(importlib.import_module(module_name), config_name)
    assert config[layer_key] >= depth, f"{key}'s vision tower is too shallow for the converter"
    return h.tiny(key, session_home)


def _export(key: str, session_home: Path, tmp_path: Path):
    from dlm_export_gguf.exporter import GGUFExporter

    t = _tiny(key, session_home)
    adapter = h.random_lora(t, tmp_path / "adapter")
    images = h.figures(tmp_path / "figures")
    out = tmp_path / "export"
    result = GGUFExporter().export(h.request(t, adapter, out, smoke_image=images[0]))
    return t, adapter, images, out, result.manifest


def _session(t: h.Tiny, out: Path, manifest: dict, bounds=None):
    files = {entry["role"]: out / name for name, entry in manifest["files"].items()}
    image = manifest["image"]
    if bounds is None and image["min_tokens"]:
        bounds = (image["min_tokens"], image["max_tokens"])
    return h.llama_session(files["model"], files["mmproj"], bounds, t.base.image.image_token)


@pytest.mark.parametrize("key", sorted(MIN_VISION_DEPTH))
def test_llama_cpp_follows_transformers(
    key: str, session_home: Path, tmp_path: Path, pinned_converter
) -> None:
    t, adapter, images, out, manifest = _export(key, session_home, tmp_path)
    assert manifest["smoke"]["answer"], "the smoke test must get an answer from llama.cpp"
    assert manifest["smoke"]["host"]["system_info"], "the manifest names the CPU features"
    assert not (out / ".work").exists()

    expected = h.transformers_greedy(t, adapter, images, h.QUESTION, None, STEPS)
    assert len({g.ids for g in expected}) == 4, "the four figures must get four different answers"
    got = h.llama_forced(
        _session(t, out, manifest),
        [h.prepared_png(t, i) for i in images],
        h.QUESTION,
        None,
        expected,
    )
    result = h.parity(expected, got, h.special_ids(t))
    print(f"{key}: {result}")
    # the export above ran in this process: its llama.cpp work must have run in children
    assert "llama_cpp" not in sys.modules, "llama.cpp was loaded into the test process"
    assert result.gap < GAP[key], str(result)
    assert result.tie < TIE, str(result)


def test_parity_catches_a_wrong_image_token_count(
    session_home: Path, tmp_path: Path, pinned_converter
) -> None:
    """The comparison is strict: the same export, read at 4x the image tokens, fails it."""
    key = "tiny-qwen2-vl"
    t, adapter, images, out, manifest = _export(key, session_home, tmp_path)
    trained = manifest["image"]["max_tokens"]
    expected = h.transformers_greedy(t, adapter, images, h.QUESTION, None, STEPS)
    pngs = [h.prepared_png(t, i) for i in images]
    right = h.parity(
        expected,
        h.llama_forced(_session(t, out, manifest), pngs, h.QUESTION, None, expected),
        h.special_ids(t),
    )
    wrong_session = _session(t, out, manifest, bounds=(trained * 4, trained * 4))
    wrong = h.parity(
        expected, h.llama_forced(wrong_session, pngs, h.QUESTION, None, expected), h.special_ids(t)
    )
    print(f"right: {right}; wrong image-token count: {wrong}")
    assert right.gap < GAP[key] and right.tie < TIE
    assert wrong.gap > 4 * GAP[key], str(wrong)
