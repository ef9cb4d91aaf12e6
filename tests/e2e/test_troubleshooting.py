"""docs/troubleshooting.md, tried as written: each message it quotes is the one dlm prints.

Every heading that quotes a message is listed here with the scenario that
produces it (or, for the few that need a crash, a full disk or a model on a
GPU, the test that produces it elsewhere). A heading whose text drifts from
the real message, or a new heading with no scenario, fails here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, run_dlm

DOC = REPO / "docs" / "troubleshooting.md"
TINY = "tiny-qwen2-vl"


def _headings() -> list[str]:
    return [line[4:] for line in DOC.read_text().splitlines() if line.startswith("### ")]


def _init(folder: Path, *args: str) -> Path:
    doc = folder / "doc.dlm"
    result = run_dlm("init", doc, "--base", TINY, *args)
    assert result.returncode == 0, result.stderr
    return doc


def _with_image(folder: Path, frontmatter: str = "", body: str | None = None) -> Path:
    from PIL import Image

    doc = _init(folder)
    (folder / "figures").mkdir()
    Image.new("RGB", (64, 48), "red").save(folder / "figures" / "your-image.png")
    text = doc.read_text()
    if frontmatter:
        text = text.replace("---\n\n", f"{frontmatter}\n---\n\n", 1)
    if body is not None:
        text = text.split("---\n\n", 1)[0] + "---\n\n" + body
    doc.write_text(text)
    return doc


def unknown_base(tmp_path: Path, env: dict[str, str]) -> str:
    return run_dlm("init", tmp_path / "a.dlm", "--base", "tiny-qwen2").stderr


def licence(tmp_path: Path, env: dict[str, str]) -> str:
    return run_dlm("init", tmp_path / "a.dlm").stderr  # the default base, PaliGemma, is gated


def broken_plugin(tmp_path: Path, env: dict[str, str]) -> str:
    planned = run_dlm("doctor", _with_image(tmp_path), env=env)  # dlm-broken-plugin installed
    return planned.stdout + planned.stderr


def missing_image(tmp_path: Path, env: dict[str, str]) -> str:
    return run_dlm("train", _init(tmp_path)).stderr


def real_base_on_cpu(tmp_path: Path, env: dict[str, str]) -> str:
    doc = _with_image(tmp_path)
    doc.write_text(
        doc.read_text().replace(f"base_model: {TINY}", "base_model: qwen2-vl-2b-instruct")
    )
    return run_dlm("doctor", doc).stderr + run_dlm("doctor", doc).stdout


def sequence_too_short(tmp_path: Path, env: dict[str, str]) -> str:
    doc = _with_image(tmp_path)
    # `dlm init` wrote the base's recommended `training:` section: the budget goes in it
    text = doc.read_text()
    assert "\ntraining:\n" in text
    doc.write_text(text.replace("\ntraining:\n", "\ntraining:\n  sequence_len: 8\n", 1))
    return run_dlm("train", doc).stderr


def nothing_to_train(tmp_path: Path, env: dict[str, str]) -> str:
    from PIL import Image

    doc = _with_image(tmp_path, body='::image path="figures/your-image.png"::\n')
    Image.new("RGB", (64, 48), "red").save(tmp_path / "figures" / "your-image.png")
    return run_dlm("train", doc).stderr


def no_adapter(tmp_path: Path, env: dict[str, str]) -> str:
    doc = _with_image(tmp_path)
    return run_dlm("prompt", doc, "--image", tmp_path / "figures" / "your-image.png", "q").stderr


def no_image(tmp_path: Path, env: dict[str, str]) -> str:
    return run_dlm("prompt", _with_image(tmp_path), "q").stderr


#: heading → (the words of the message that must be printed as written, the scenario)
Scenario = Callable[[Path, dict[str, str]], str]
SCENARIOS: dict[str, tuple[list[str], Scenario]] = {
    "init: unknown base": (["init: unknown base 'tiny-qwen2'; installed bases: "], unknown_base),
    "license: base paligemma": (
        [
            "license: base paligemma-3b-mix-224 is under the Gemma Terms of Use licence, "
            "which must be accepted"
        ],
        licence,
    ),
    "plugin dlm_vl_": (["failed to load: "], broken_plugin),
    '"image not found': (["image not found: figures/your-image.png"], missing_image),
    "doctor: qwen2-vl-2b-instruct": (
        ["qwen2-vl-2b-instruct is a real base (2.2B parameters) and this host has no GPU: "],
        real_base_on_cpu,
    ),
    "… example needs": (
        [
            " example needs ",
            " tokens (",
            " image + ",
            " prompt + ",
            " completion) but ",
            "training.sequence_len is ",
            "; image tokens are never truncated",
        ],
        sequence_too_short,
    ),
    "train: nothing to train": (
        ["train: nothing to train: no section of the document became a training example"],
        nothing_to_train,
    ),
    '"no adapter under': (["no adapter under adapter/current.txt"], no_adapter),
    '"base {} is vision-language': (
        ["is vision-language; pass at least one --image PATH"],
        no_image,
    ),
}

#: headings whose message is produced by another test (a crash, a full disk, a trained store)
ELSEWHERE = {
    "MPS out-of-memory": "not reproducible here: no Apple Silicon (advice from the seed)",
    "lock: store is locked": "tests/core/test_store_lock.py",
    "disk full:": "tests/e2e/test_disk_full.py",
    '"InternVL-family runtime': "a message of an earlier tool, kept so a search finds dlm's answer",
    "… adapter v0001 was trained on": "tests/e2e/test_hostile_cli.py",
    "export: refusing to replace": "tests/core/test_store_exports.py",
    "An export that fell back": "tests/gguf/test_probe.py",
    "gguf: llama.cpp crashed": "tests/gguf/test_roundtrip.py",
    "store: … does not match the manifest": "tests/e2e/test_tamper.py",
}


def _scenario_for(heading: str) -> str | None:
    stripped = heading.strip("`")
    for key in (*SCENARIOS, *ELSEWHERE):
        if stripped.startswith(key) or heading.startswith(key):
            return key
    return None


def test_every_heading_has_a_scenario() -> None:
    unmatched = [h for h in _headings() if _scenario_for(h) is None]
    assert not unmatched, f"troubleshooting headings with no scenario: {unmatched}"


@pytest.mark.parametrize("key", sorted(SCENARIOS))
def test_the_message_is_the_one_printed(
    key: str, tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    heading = next(h for h in _headings() if _scenario_for(h) == key)
    words, scenario = SCENARIOS[key]
    for fragment in words:  # the doc says it ...
        assert fragment.strip() in heading.replace("`", "").replace('"', ""), (fragment, heading)
    printed = re.sub(r"\s+", " ", scenario(tmp_path, plugin_env))
    for fragment in words:  # ... and dlm prints it
        assert fragment in printed, (fragment, printed[-2000:])
    assert "Traceback" not in printed
