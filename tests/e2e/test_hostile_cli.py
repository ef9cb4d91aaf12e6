"""Hostile or careless command lines: each gets `subject: message`, the right exit
code and no traceback, and leaves the store (and the user's folders) as they were."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import run_dlm
from tests.e2e.recall import clean_error, store_of, trained_recall

pytestmark = pytest.mark.slow

BASE = "tiny-paligemma"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, session_home: Path):
    os.environ["DLM_HOME"] = str(session_home)
    folder = tmp_path_factory.mktemp("hostile")
    doc, rows = trained_recall(folder, BASE, num_epochs=1)
    return folder, doc, rows


# ---------------------------------------------------------------- item 4


def test_export_refuses_an_adapter_trained_on_another_base(trained) -> None:
    folder, doc, _rows = trained
    other = folder / "rebased.dlm"  # same dlm_id, so the same store and adapter
    other.write_text(doc.read_text().replace(f"base_model: {BASE}", "base_model: tiny-qwen2-vl"))
    exports = store_of(doc) / "exports"
    before = sorted(p.name for p in exports.iterdir()) if exports.is_dir() else []

    prompt = run_dlm("prompt", other, "--image", folder / "figures" / "red-circle.png", "what?")
    assert "trained on tiny-paligemma" in clean_error(prompt, 1, "prompt")

    exported = run_dlm("export", other)
    err = clean_error(exported, 1, "export")
    assert "trained on tiny-paligemma" in err and "tiny-qwen2-vl" in err
    after = sorted(p.name for p in exports.iterdir()) if exports.is_dir() else []
    assert after == before, "nothing may be exported for the wrong base"
    out = folder / "rebased-out"
    assert run_dlm("export", other, "--out", out).returncode == 1
    assert not out.exists()


# ---------------------------------------------------------------- item 5


def test_verify_of_a_never_trained_document_says_there_is_no_store(tmp_path: Path) -> None:
    doc = tmp_path / "fresh.dlm"
    assert run_dlm("init", doc, "--base", BASE).returncode == 0
    result = run_dlm("verify", doc)
    err = clean_error(result, 1, "verify")
    assert "no store" in err and "dlm train" in err
    assert "intact" not in result.stdout


# ---------------------------------------------------------------- item 6


def test_prompt_refuses_a_temperature_that_is_not_a_number(trained) -> None:
    folder, doc, _rows = trained
    image = folder / "figures" / "red-circle.png"
    for value in ("nan", "NaN", "-nan", "inf"):
        result = run_dlm("prompt", doc, "--image", image, "--temp", value, "what?")
        assert result.returncode == 2, (value, result.stderr)
        assert "--temp" in result.stderr and "Traceback" not in result.stderr


def test_export_refuses_options_the_target_does_not_take(trained) -> None:
    folder, doc, _rows = trained
    for args, flag in ((("--quant", "bogus"), "--quant"), (("--no-smoke",), "--no-smoke")):
        out = folder / f"opt{flag}"
        result = run_dlm("export", doc, "--target", "hf-snapshot", *args, "--out", out)
        err = clean_error(result, 2, "export")
        assert f"does not take {flag}" in err
        assert not out.exists()


@pytest.mark.parametrize("command", ["export", "prompt"])
@pytest.mark.parametrize("version", ["../../etc", "v1/../../x", "vabc", "-1", ""])
def test_a_malformed_adapter_version_is_a_usage_error(trained, command: str, version: str) -> None:
    folder, doc, _rows = trained
    extra = ["--image", str(folder / "figures" / "red-circle.png"), "what?"]
    result = run_dlm(
        command, doc, f"--adapter-version={version}", *(extra if command == "prompt" else [])
    )
    assert result.returncode == 2, result.stderr
    assert "--adapter-version" in result.stderr
    assert "Traceback" not in result.stderr and "ValueError" not in result.stderr


def test_an_unknown_adapter_version_names_the_ones_there_are(trained) -> None:
    _folder, doc, _rows = trained
    result = run_dlm("export", doc, "--adapter-version", "v0099")
    assert "v0001" in clean_error(result, 2, "export")


@pytest.mark.parametrize("out", ["/proc/nope/x", "/proc/x", "/dev/null/x"])
def test_an_impossible_out_folder_is_a_clean_error(trained, out: str) -> None:
    _folder, doc, _rows = trained
    result = run_dlm("export", doc, "--out", out)
    err = clean_error(result, 1, "export")
    assert out in err
    assert "FileNotFoundError" not in err and "Errno" not in err


# ---------------------------------------------------------------- item 8


def test_export_before_training_speaks_as_export(tmp_path: Path) -> None:
    doc = tmp_path / "untrained.dlm"
    assert run_dlm("init", doc, "--base", BASE).returncode == 0
    result = run_dlm("export", doc)
    err = clean_error(result, 1, "export")
    assert "prompt:" not in err and "dlm train" in err
    assert not store_of(doc).exists()


@pytest.mark.parametrize(
    ("target", "suggestion"), [("hf-snapshots", "hf-snapshot"), ("gguff", "gguf")]
)
def test_an_unknown_export_target_is_misuse_with_the_closest_name(
    trained, target: str, suggestion: str
) -> None:
    _folder, doc, _rows = trained
    before = sorted(p.name for p in (store_of(doc) / "exports").glob("*"))
    err = clean_error(run_dlm("export", doc, "--target", target), 2, "export")
    assert f"unknown export target {target!r}" in err and f"did you mean {suggestion!r}" in err
    assert sorted(p.name for p in (store_of(doc) / "exports").glob("*")) == before


def test_an_image_error_names_the_image_once(tmp_path: Path) -> None:
    (tmp_path / "figures").mkdir()
    bad = tmp_path / "figures" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    doc = tmp_path / "broken.dlm"
    doc.write_text(
        f"---\ndlm_id: 01JZ8K2M3N4P5Q6R7S8T9V0W2A\ndlm_version: 10\nbase_model: {BASE}\n---\n"
        '::image path="figures/broken.png" alt="x"::\nA caption.\n'
    )
    result = run_dlm("train", doc)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    message = result.stderr.split("\n  →")[0]
    assert message.count("broken.png") == 1, message
    assert f"{doc}:6:" in message


# ---------------------------------------------------------------- item 9


def test_re_export_refuses_to_delete_files_added_to_the_out_folder(trained) -> None:
    folder, doc, _rows = trained
    out = folder / "exp3"
    first = run_dlm("export", doc, "--out", out)
    assert first.returncode == 0, first.stderr
    again = run_dlm("export", doc, "--out", out)  # untouched: replaced as before
    assert again.returncode == 0, again.stderr

    (out / "MY_NOTES.txt").write_text("notes\n")
    refused = run_dlm("export", doc, "--out", out)
    err = clean_error(refused, 1, "export")
    assert "MY_NOTES.txt" in err
    assert (out / "MY_NOTES.txt").read_text() == "notes\n"
    assert (out / "README.md").is_file(), "the previous export stays too"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "no work dirs left"

    (out / "MY_NOTES.txt").unlink()
    (out / "README.md").write_text("my edits\n")
    edited = run_dlm("export", doc, "--out", out)
    assert "README.md" in clean_error(edited, 1, "export")
    assert (out / "README.md").read_text() == "my edits\n"

    (out / "README.md").unlink()  # a deleted file loses nothing: replaced
    (out / "drafts").mkdir()  # an empty folder of the user's is theirs
    assert "drafts/" in clean_error(run_dlm("export", doc, "--out", out), 1, "export")
    (out / "drafts").rmdir()
    redone = run_dlm("export", doc, "--out", out)
    assert redone.returncode == 0, redone.stderr
    assert (out / "README.md").is_file()
