"""The pinned llama.cpp: fetching the converter, the override, the CLI commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_dlm


def test_a_wrong_sdist_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dlm_export_gguf.errors import GGUFExportError
    from dlm_export_gguf.llama_cpp import cached_sdist

    monkeypatch.setenv("DLM_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    fake.write_bytes(b"not the release")
    with pytest.raises(GGUFExportError, match="sha256"):
        cached_sdist(fake)
    assert not list((tmp_path / "cache").glob("*.tar.gz"))


def test_fetch_replaces_an_incomplete_copy(pinned_converter, tmp_path: Path) -> None:
    from dlm_export_gguf.llama_cpp import LLAMA_CPP_COMMIT, fetch_converter, pinned_source

    home = tmp_path / "home"
    broken = home / "llama.cpp" / LLAMA_CPP_COMMIT
    broken.mkdir(parents=True)
    (broken / "convert_hf_to_gguf.py").write_text("# cut short by a crash\n")
    assert pinned_source(home) is None  # no completion record: not trusted
    source = fetch_converter(home)  # from the user cache: no download
    assert source.revision == LLAMA_CPP_COMMIT and source.origin == "pinned"
    assert (source.root / "conversion" / "qwenvl.py").is_file()
    assert (source.gguf_py / "gguf" / "__init__.py").is_file()
    assert "ModelBase" in source.script.read_text()
    assert not (source.root / "ggml").exists(), "only the converter is unpacked"
    assert fetch_converter(home) == source  # idempotent


def test_status_and_probe_commands(pinned_converter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DLM_LLAMA_CPP", raising=False)
    status = run_dlm("gguf", "status")
    assert status.returncode == 0, status.stderr
    assert "0c1e57098bba43ac29e6e3b677cdceebdd22334f" in status.stdout
    assert "runtime: llama-cpp-python 0.3.36, multimodal" in status.stdout
    probe = run_dlm(
        "gguf", "probe", "PaliGemmaForConditionalGeneration", "Qwen2VLForConditionalGeneration"
    )
    assert probe.returncode == 0, probe.stderr
    lines = [line for line in probe.stdout.splitlines() if "ForConditional" in line]
    assert "UNSUPPORTED" in lines[0] and "SUPPORTED" in lines[1]


def test_bad_override_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    result = run_dlm("gguf", "status", env={"DLM_LLAMA_CPP": str(tmp_path)})
    assert result.returncode == 1
    assert "has no convert_hf_to_gguf.py" in result.stderr
    assert "Traceback" not in result.stderr


def _one_object(result) -> dict:
    import json

    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)  # exactly one object: json.loads refuses anything after it


def test_gguf_commands_take_json(pinned_converter, tmp_path: Path) -> None:
    """`dlm gguf fetch|status|probe|verify --json`: one object on stdout (docs/json.md)."""
    fetched = _one_object(run_dlm("gguf", "fetch", "--json"))
    assert fetched["origin"] == "pinned" and Path(fetched["root"]).is_dir()

    status = _one_object(run_dlm("gguf", "status", "--json"))
    assert status["pinned"]["llama_cpp"] == "0c1e57098bba43ac29e6e3b677cdceebdd22334f"
    assert status["converter"]["root"] == fetched["root"]
    assert status["runtime"]["usable"] is True and status["runtime"]["version"] == "0.3.36"
    assert {"cpu", "system_info", "extra_bufts", "amx", "setting"} <= status["host"].keys()

    probe = _one_object(
        run_dlm("gguf", "probe", "PaliGemmaForConditionalGeneration", "NoSuchArch", "--json")
    )
    verdicts = {v["architecture"]: v["verdict"] for v in probe["verdicts"]}
    assert verdicts == {
        "PaliGemmaForConditionalGeneration": "UNSUPPORTED",
        "NoSuchArch": "UNSUPPORTED",
    }

    export = tmp_path / "export"
    export.mkdir()
    (export / "a.gguf").write_bytes(b"GGUF")
    import hashlib
    import json

    digest = hashlib.sha256(b"GGUF").hexdigest()
    manifest = {"files": {"a.gguf": {"size": 4, "sha256": digest}}}
    (export / "export_manifest.json").write_text(json.dumps(manifest))
    ok = run_dlm("gguf", "verify", export, "--json")
    assert ok.returncode == 0 and _one_object(ok) == {
        "export_dir": str(export), "ok": True, "problems": []
    }  # fmt: skip
    (export / "a.gguf").write_bytes(b"GGUX")
    bad = run_dlm("gguf", "verify", export, "--json")
    assert bad.returncode == 1
    assert _one_object(bad)["problems"] == ["a.gguf: sha256 differs from the manifest"]


def test_a_gguf_command_error_under_json_is_one_object(tmp_path: Path) -> None:
    result = run_dlm("gguf", "status", "--json", env={"DLM_LLAMA_CPP": str(tmp_path)})
    assert result.returncode == 1
    error = _one_object(result)["error"]
    assert error["subject"] == "gguf" and "has no convert_hf_to_gguf.py" in error["message"]
    assert "has no convert_hf_to_gguf.py" in result.stderr and "Traceback" not in result.stderr
