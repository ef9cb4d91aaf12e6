"""What the exporter refuses, and what a failed export leaves behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gguf import harness as h

pytestmark = pytest.mark.slow


def test_vision_lora_is_refused_before_any_conversion(
    session_home: Path, tmp_path: Path, pinned_converter
) -> None:
    from dlm_export_gguf.errors import GGUFExportError
    from dlm_export_gguf.exporter import GGUFExporter

    t = h.tiny("tiny-qwen2-vl", session_home)
    adapter = h.random_lora(
        t,
        tmp_path / "adapter",
        target_modules=r".*(visual\.blocks\.0\.attn\.qkv|language_model.*\.q_proj)",
    )
    out = tmp_path / "export"
    with pytest.raises(GGUFExportError) as caught:
        GGUFExporter().export(h.request(t, adapter, out))
    assert "outside the language model" in caught.value.message
    assert "visual.blocks.0.attn.qkv" in caught.value.message
    assert "hf-snapshot" in (caught.value.hint or "")
    assert not (out / ".work").exists()
    assert not list(out.glob("*.gguf"))


def test_unknown_quant_is_refused() -> None:
    from dlm_export_gguf.errors import GGUFExportError
    from dlm_export_gguf.exporter import GGUFExporter, resolve_quant

    assert resolve_quant({}, {"default_quant": "q8_0"}) == "Q8_0"
    assert resolve_quant({"quant": "q4-k-m"}, {"default_quant": "Q8_0"}) == "Q4_K_M"
    assert GGUFExporter().output_name({"quant": "Q4_K_M"}) == "gguf-q4_k_m"
    with pytest.raises(GGUFExportError, match="unknown quantization"):
        resolve_quant({"quant": "Q3_WHATEVER"}, {})
