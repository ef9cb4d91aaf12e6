"""The probe: verdicts from the pinned converter's own registrations."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dlm.records import Verdict
from tests.gguf.conftest import make_base


@pytest.fixture(autouse=True)
def _no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DLM_LLAMA_CPP", raising=False)


def test_verdicts_at_the_pin(pinned_converter) -> None:
    from dlm_export_gguf.probe import probe

    qwen = probe(make_base("Qwen2VLForConditionalGeneration"))
    assert qwen.verdict is Verdict.SUPPORTED
    assert qwen.detail["llama_cpp_revision"] == pinned_converter.revision
    assert probe(make_base("Mistral3ForConditionalGeneration")).verdict is Verdict.SUPPORTED
    pali = probe(make_base("PaliGemmaForConditionalGeneration"))
    assert pali.verdict is Verdict.UNSUPPORTED
    assert "PaliGemmaForConditionalGeneration" in pali.reason and "0c1e57098" in pali.reason
    # each half converts under the architecture the base declares (InternVL's hints)
    routed = probe(
        make_base(
            "InternVLForConditionalGeneration",
            text_architecture="Qwen2ForCausalLM",
            mmproj_architecture="InternVisionModel",
        )
    )
    assert routed.verdict is Verdict.SUPPORTED
    assert routed.detail["text_architecture"] == "Qwen2ForCausalLM"
    assert routed.detail["mmproj_architecture"] == "InternVisionModel"
    assert "LM as Qwen2ForCausalLM, mmproj as InternVisionModel" in routed.reason
    llama = make_base(
        "InternVLForConditionalGeneration",
        text_architecture="LlamaForCausalLM",
        mmproj_architecture="InternVisionModel",
    )
    assert probe(llama).detail["text_architecture"] == "LlamaForCausalLM"
    # without hints the converter has no InternVLForConditionalGeneration for either half
    assert probe(make_base("InternVLForConditionalGeneration")).verdict is Verdict.UNSUPPORTED


def test_registered_bases_probe_by_their_declared_hints(pinned_converter) -> None:
    """Every bundled base's verdict comes from its own declaration (no family table)."""
    from dlm_export_gguf.probe import probe

    from dlm.plugins import get_registry

    bases = get_registry().bases
    expected = {
        "tiny-qwen2-vl": ("Qwen2VLForConditionalGeneration", "Qwen2VLForConditionalGeneration"),
        "tiny-mistral3": ("Mistral3ForConditionalGeneration", "Mistral3ForConditionalGeneration"),
        "tiny-internvl": ("Qwen2ForCausalLM", "InternVisionModel"),
        "internvl3-2b": ("Qwen2ForCausalLM", "InternVisionModel"),
        "internvl2-2b": ("LlamaForCausalLM", "InternVisionModel"),
    }
    for key, (text, mmproj) in expected.items():
        result = probe(bases[key])
        assert result.verdict is Verdict.SUPPORTED, (key, result.reason)
        assert (result.detail["text_architecture"], result.detail["mmproj_architecture"]) == (
            text,
            mmproj,
        )
    assert probe(bases["tiny-paligemma"]).verdict is Verdict.UNSUPPORTED


def test_probe_reads_hints_not_family_names(pinned_converter) -> None:
    """A family and architecture the exporter has never seen route by their hints alone."""
    from dlm_export_gguf.probe import probe

    stranger = make_base(
        "NeverSeenVLForConditionalGeneration",
        family="never-seen-family",
        text_architecture="Qwen2ForCausalLM",
        mmproj_architecture="InternVisionModel",
    )
    result = probe(stranger)
    assert result.verdict is Verdict.SUPPORTED, result.reason
    assert result.detail["architecture"] == "NeverSeenVLForConditionalGeneration"
    assert result.detail["text_architecture"] == "Qwen2ForCausalLM"
    # the same family name with hints the converter lacks: the hints decide, not the name
    half = make_base(
        "NeverSeenVLForConditionalGeneration",
        family="never-seen-family",
        text_architecture="Qwen2ForCausalLM",
        mmproj_architecture="NoSuchVisionModel",
    )
    assert probe(half).verdict is Verdict.PARTIAL
    # a family the exporter does know, with hints that name nothing the converter has
    named_like_a_family = make_base("Qwen2VLForConditionalGeneration", family="qwen2-vl")
    assert probe(named_like_a_family).verdict is Verdict.SUPPORTED
    lost = make_base(
        "Qwen2VLForConditionalGeneration",
        family="qwen2-vl",
        text_architecture="NoSuchForCausalLM",
        mmproj_architecture="NoSuchVisionModel",
    )
    assert probe(lost).verdict is Verdict.UNSUPPORTED


def test_exporter_source_names_no_family_or_architecture() -> None:
    """No string in dlm-export-gguf names a registered family, base or architecture.

    What differs between bases is read from their declared ExportHints; a table
    keyed by a family's names (the old ROUTES, KNOWN_VL_ARCHITECTURES,
    KNOWN_PRETOKENIZERS, _TEXT_ARCHITECTURES) would show up here.
    """
    import ast

    import dlm_export_gguf

    from dlm.plugins import get_registry

    names: set[str] = set()
    for base in get_registry().bases.values():
        hints = base.export_hints
        names |= {base.key, base.family, base.architecture}
        names |= {hints.text_architecture, hints.mmproj_architecture}
        names.add(hints.mmproj_token_embedding)
        if hints.pretokenizer is not None:
            names |= {hints.pretokenizer.name, hints.pretokenizer.split_pattern}
        names |= {new for _old, new in hints.mmproj_renames}
    names.discard("")
    found = []
    for path in sorted(Path(dlm_export_gguf.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value in names
            ):
                found.append(f"{path.name}:{node.lineno}: {node.value}")
    assert not found, "the exporter names families' things:\n" + "\n".join(found)


def test_verdicts_are_cached_per_revision(pinned_converter, session_home: Path) -> None:
    from dlm_export_gguf.probe import probe

    base = make_base("Qwen2VLForConditionalGeneration")
    probe(base)
    cache = session_home / "llama.cpp" / f"probe-{pinned_converter.revision}.json"
    data = json.loads(cache.read_text())
    assert data["revision"] == pinned_converter.revision
    assert "Qwen2VLForConditionalGeneration" in data["text"]
    arch = "Qwen2VLForConditionalGeneration"
    stored = data["verdicts"][f"{arch}|{arch}|{arch}"]
    assert stored["verdict"] == "SUPPORTED"
    # a cached verdict is served from the file (tampering shows it is read)
    stored["reason"] = "from the cache"
    cache.write_text(json.dumps(data))
    assert probe(base).reason == "from the cache"


def test_shipped_snapshot_equals_the_pinned_source(pinned_converter) -> None:
    from dlm_export_gguf.probe import snapshot_registrations
    from dlm_export_gguf.registrations import read_registrations

    parsed = read_registrations(pinned_converter.root, pinned_converter.revision)
    assert snapshot_registrations() == parsed


def test_probe_without_a_fetched_converter_uses_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlm_export_gguf.probe import probe

    monkeypatch.setenv("DLM_HOME", str(tmp_path))
    result = probe(make_base("Qwen2VLForConditionalGeneration"))
    assert result.verdict is Verdict.SUPPORTED
    assert result.detail["registrations_from"] == "snapshot"


@pytest.mark.slow
def test_parsed_registrations_match_what_the_converter_imports(pinned_converter) -> None:
    """The AST reading agrees with the converter's own registry (imported, with torch)."""
    from dlm_export_gguf.registrations import read_registrations

    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path[:0] = [{str(pinned_converter.root)!r}, {str(pinned_converter.gguf_py)!r}]
        from conversion import TEXT_MODEL_MAP, MMPROJ_MODEL_MAP, ModelBase, ModelType, load_all_models
        load_all_models()
        classes = ModelBase._model_classes
        print(json.dumps({{
            "text": sorted(a for a in TEXT_MODEL_MAP if a in classes[ModelType.TEXT]),
            "mmproj": sorted(a for a in MMPROJ_MODEL_MAP if a in classes[ModelType.MMPROJ]),
        }}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    truth = json.loads(out.stdout.strip().splitlines()[-1])
    parsed = read_registrations(pinned_converter.root, pinned_converter.revision)
    assert sorted(parsed.text) == truth["text"]
    assert sorted(parsed.mmproj) == truth["mmproj"]


FAKE_BASE = """
class ModelBase:
    @classmethod
    def register(cls, *names):
        return lambda c: c

class TextModel(ModelBase):
    model_arch = "LLAMA"

class MmprojModel(ModelBase):
    model_arch = gguf.MODEL_ARCH.MMPROJ
"""


def _fake_checkout(root: Path, *, package: bool) -> None:
    """A converter that registers Foo for both halves and Bar for the LM only."""
    root.mkdir(parents=True)
    classes = textwrap.dedent(
        """
        @ModelBase.register("FooForConditionalGeneration", "BarForConditionalGeneration")
        class FooText(TextModel):
            pass

        class VisionBase(MmprojModel):
            pass

        @ModelBase.register("FooForConditionalGeneration")
        class FooVision(VisionBase):
            pass
        """
    )
    if package:
        (root / "convert_hf_to_gguf.py").write_text("from conversion import ModelBase\n")
        pkg = root / "conversion"
        pkg.mkdir()
        (pkg / "base.py").write_text(FAKE_BASE)
        (pkg / "foo.py").write_text(
            "from .base import ModelBase, TextModel, MmprojModel\n" + classes
        )
        (pkg / "__init__.py").write_text(
            textwrap.dedent(
                """
                TEXT_MODEL_MAP: dict[str, str] = {
                    "FooForConditionalGeneration": "foo",
                    "BarForConditionalGeneration": "foo",
                    "GhostForCausalLM": "foo",
                }
                MMPROJ_MODEL_MAP: dict[str, str] = {"FooForConditionalGeneration": "foo"}
                """
            )
        )
    else:
        (root / "convert_hf_to_gguf.py").write_text(FAKE_BASE + classes)


@pytest.mark.parametrize("package", [True, False], ids=["conversion-package", "single-file"])
def test_partial_and_layouts(tmp_path: Path, package: bool) -> None:
    from dlm_export_gguf.probe import verdict_for
    from dlm_export_gguf.registrations import read_registrations

    _fake_checkout(tmp_path / "llama.cpp", package=package)
    regs = read_registrations(tmp_path / "llama.cpp", "abc")
    assert regs.text == {"FooForConditionalGeneration", "BarForConditionalGeneration"}
    assert regs.mmproj == {"FooForConditionalGeneration"}  # a subclass of an MmprojModel subclass
    assert verdict_for(make_base("FooForConditionalGeneration"), regs).verdict is Verdict.SUPPORTED
    bar = verdict_for(make_base("BarForConditionalGeneration"), regs)
    assert bar.verdict is Verdict.PARTIAL
    assert "LM but not its vision projector" in bar.reason


def test_user_checkout_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dlm_export_gguf.llama_cpp import override_source
    from dlm_export_gguf.probe import probe

    checkout = tmp_path / "llama.cpp"
    _fake_checkout(checkout, package=True)
    git = ["git", "-C", str(checkout)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run(
        [*git, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], check=True
    )
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    monkeypatch.setenv("DLM_LLAMA_CPP", str(checkout))
    source = override_source()
    assert source is not None and source.revision == head and source.origin == "DLM_LLAMA_CPP"
    result = probe(make_base("FooForConditionalGeneration"))
    assert result.verdict is Verdict.SUPPORTED and result.detail["llama_cpp_revision"] == head
    assert probe(make_base("Qwen2VLForConditionalGeneration")).verdict is Verdict.UNSUPPORTED

    (checkout / "conversion" / "foo.py").write_text("# emptied\n")
    assert override_source().revision == f"{head}-dirty"  # type: ignore[union-attr]
    # a dirty checkout is re-read, never served from a cache
    assert probe(make_base("FooForConditionalGeneration")).verdict is Verdict.UNSUPPORTED


def test_override_without_converter_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlm_export_gguf.errors import GGUFExportError
    from dlm_export_gguf.llama_cpp import override_source

    monkeypatch.setenv("DLM_LLAMA_CPP", str(tmp_path))
    with pytest.raises(GGUFExportError, match=r"has no convert_hf_to_gguf\.py"):
        override_source()


def test_paligemma_strict_export_fails_naming_architecture_and_revision(tmp_path: Path) -> None:
    from tests.conftest import run_dlm

    doc = tmp_path / "p.dlm"
    assert run_dlm("init", doc, "--base", "tiny-paligemma").returncode == 0
    strict = run_dlm("export", doc, "--target", "gguf", "--strict")
    assert strict.returncode == 1
    flat = " ".join(strict.stderr.split())
    assert "PaliGemmaForConditionalGeneration" in flat and "UNSUPPORTED" in flat
    assert "llama.cpp 0c1e57098" in flat and "Traceback" not in flat
    listed = run_dlm("export", doc, "--list-targets")
    assert listed.returncode == 0
    rows = [line for line in listed.stdout.splitlines() if line.startswith(("│ gguf", "│ ollama"))]
    assert len(rows) == 2 and all("UNSUPPORTED" in row for row in rows)


@pytest.mark.slow
def test_paligemma_export_falls_back_to_the_hf_snapshot_with_a_banner(tmp_path: Path) -> None:
    from dlm.format import parse_file
    from dlm.store.paths import StorePaths
    from tests.conftest import run_dlm
    from tests.e2e.recall import write_recall_document

    doc, _rows = write_recall_document(tmp_path, "tiny-paligemma", training={"num_epochs": 1})
    trained = run_dlm("train", doc)
    assert trained.returncode == 0, trained.stderr
    result = run_dlm("export", doc, "--target", "gguf")
    assert result.returncode == 0, result.stderr
    flat = " ".join(result.stderr.split())
    assert "PaliGemmaForConditionalGeneration" in flat and "UNSUPPORTED" in flat
    assert "falling back to hf-snapshot" in flat and "0c1e57098" in flat
    root = StorePaths.for_id(parse_file(doc).frontmatter.dlm_id).root / "exports"
    assert (root / "hf-snapshot" / "snapshot_manifest.json").is_file()
    assert not any(p.name.startswith("gguf") for p in root.iterdir())
    weights = sorted(p.name for p in (root / "hf-snapshot").rglob("*.safetensors"))
    assert weights == ["adapter_model.safetensors"], "no base weights in any export"
