"""A third party's base exports to GGUF through the generic exporter, by its declared hints.

``tiny-community-vl`` comes from tests/plugins/dlm-test-plugin, installed as a
package with a ``dlm`` entry point, as a user would install it. Nothing in
dlm-export-gguf names it (test_probe.py's source check keeps it so): the
route, the pre-tokenizer the converter falls back to and the pinned image
settings are read from its own BaseSpec.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gguf import harness as h

KEY = "tiny-community-vl"


@pytest.fixture
def installed(test_plugins_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test plugin on sys.path, loaded by the plugin manager from its entry point."""
    from dlm.plugins import reset

    monkeypatch.syspath_prepend(str(test_plugins_path))
    monkeypatch.delenv("DLM_PLUGINS", raising=False)
    importlib.invalidate_caches()
    reset()
    yield
    reset()


def test_the_plugin_base_declares_its_hints(installed) -> None:
    from dlm.plugins import get_registry

    registry = get_registry()
    base = registry.base(KEY)
    assert registry.provider[f"base:{KEY}"] == "test_plugin"
    assert base.export_hints.pretokenizer is not None
    assert base.export_hints.pretokenizer.name == "qwen2"
    assert dict(base.image_settings) == base.image_settings


@pytest.mark.slow
def test_plugin_base_exports_to_gguf_with_a_passing_smoke_test(
    installed, session_home: Path, tmp_path: Path, pinned_converter
) -> None:
    from dlm_export_gguf.exporter import GGUFExporter

    t = h.tiny(KEY, session_home)
    assert t.base.key == KEY and t.base.family == "qwen2-vl"
    adapter = h.random_lora(t, tmp_path / "adapter")
    image = h.figures(tmp_path / "figures")[0]
    out = tmp_path / "export"
    exporter = GGUFExporter()
    assert exporter.probe(t.base).verdict.value == "SUPPORTED"
    result = exporter.export(h.request(t, adapter, out, smoke_image=image))

    manifest = result.manifest
    roles = {entry["role"]: name for name, entry in manifest["files"].items()}
    assert {"model", "mmproj"} <= set(roles)
    assert (out / roles["model"]).stat().st_size > 0 and (out / roles["mmproj"]).stat().st_size > 0
    assert manifest["base"]["key"] == KEY
    # the retrained tokenizer's hash is unknown to the converter: the declared
    # pre-tokenizer was named because the tokenizer splits exactly like it
    assert manifest["pretokenizer_fallback"] == "qwen2"
    # the declared image settings: aspect kept within 112 x 112, 4 to 16 tokens
    assert (manifest["image"]["min_tokens"], manifest["image"]["max_tokens"]) == (4, 16)
    smoke = manifest["smoke"]
    assert smoke["answer"], "the smoke test must get an answer from llama.cpp"
    assert "skipped" not in smoke
