"""A new user's first commands: `dlm init` and `dlm doctor` on what init wrote (issue 20)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from PIL import Image

from tests.conftest import REPO, run_dlm
from tests.e2e.recall import store_of


def test_dlm_core_does_not_depend_on_trl() -> None:
    # No dlm code imports trl; only benchmarks/train_throughput.py --trl does.
    project = tomllib.loads((REPO / "dlm-core" / "pyproject.toml").read_text())["project"]
    names = [
        dep.split(">")[0].split("=")[0].split("<")[0].strip() for dep in project["dependencies"]
    ]
    assert "trl" not in names
    assert "trl" in (REPO / "requirements-dev.txt").read_text().split()


def test_an_unknown_base_gets_the_closest_name(tmp_path: Path) -> None:
    result = run_dlm("init", tmp_path / "a.dlm", "--base", "tiny-qwen2")
    assert result.returncode == 2, result.stderr
    assert "init: unknown base 'tiny-qwen2'" in result.stderr
    assert "did you mean 'tiny-qwen2-vl'?" in result.stderr
    assert not (tmp_path / "a.dlm").exists()


def test_the_licence_refusal_offers_an_ungated_base(tmp_path: Path) -> None:
    for args in ((), ("--multimodal",)):
        result = run_dlm("init", tmp_path / "c.dlm", *args)
        assert result.returncode == 2, result.stderr
        assert (
            "license: base paligemma-3b-mix-224 is under the Gemma Terms of Use licence"
            in result.stderr
        )
        assert "--i-accept-license" in result.stderr
        assert "--base qwen2-vl-2b-instruct" in result.stderr
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "c.dlm").exists()


def test_init_never_creates_a_store_and_train_finds_the_acceptance(tmp_path: Path) -> None:
    doc = tmp_path / "a.dlm"
    result = run_dlm("init", doc, "--multimodal", "--i-accept-license")
    assert result.returncode == 0, result.stderr
    assert not store_of(doc).exists()  # deleting the document leaves nothing behind

    (tmp_path / "figures").mkdir()
    Image.new("RGB", (64, 64), "red").save(tmp_path / "figures" / "your-image.png")
    # The acceptance is found: the planner is what stops a real base on a CPU host.
    train = run_dlm("train", doc, "--assume", "cpu:16")
    assert train.returncode == 1, train.stderr
    assert "license:" not in train.stderr
    assert "is a real base" in train.stderr


def test_train_without_an_acceptance_names_the_ungated_bases(tmp_path: Path) -> None:
    doc = tmp_path / "a.dlm"
    assert run_dlm("init", doc, "--i-accept-license").returncode == 0
    other = tmp_path / "b.dlm"  # a copy under a new id: nothing accepted for it
    text = doc.read_text()
    old_id = text.split("dlm_id: ")[1].split()[0]
    other.write_text(text.replace(old_id, "01JZ8K2M3N4P5Q6R7S8T9V0W1Y"))
    (tmp_path / "figures").mkdir()
    Image.new("RGB", (64, 64), "red").save(tmp_path / "figures" / "your-image.png")
    train = run_dlm("train", other, "--assume", "cpu:16")
    assert train.returncode == 2, train.stderr
    assert "license: base paligemma-3b-mix-224" in train.stderr
    assert "base_model: qwen2-vl-2b-instruct" in train.stderr


def test_doctor_plans_a_fresh_scaffold_marking_the_missing_image(tmp_path: Path) -> None:
    doc = tmp_path / "new.dlm"
    assert run_dlm("init", doc, "--base", "tiny-qwen2-vl").returncode == 0

    doctor = run_dlm("doctor", doc)
    assert doctor.returncode == 0, doctor.stderr
    out = doctor.stdout
    assert out.startswith("new.dlm: 3 examples")  # the plan leads
    assert "1 (missing)" in out
    assert "missing image: figures/your-image.png (" in out
    assert "verdict: fits (once the missing image exists)" in out
    # the inventory waits for --all
    assert "bases on this host" not in out and "--all" in out
    assert "bases on this host" in run_dlm("doctor", doc, "--all").stdout

    data = json.loads(run_dlm("doctor", doc, "--json").stdout)
    assert data["bases"] and data["plugins"]  # --json stays complete
    missing = data["document"]["missing_images"]
    assert [m["path"] for m in missing] == ["figures/your-image.png"]
    assert [e["missing_images"] for e in data["document"]["examples"]] == [0, 1, 1]

    # training still needs the image, and says so as the seed does
    train = run_dlm("train", doc)
    assert train.returncode == 1
    assert "image not found: figures/your-image.png" in train.stderr
    assert not store_of(doc).exists()


def test_show_on_a_fresh_scaffold_marks_the_missing_image(tmp_path: Path) -> None:
    doc = tmp_path / "a.dlm"
    assert run_dlm("init", doc, "--base", "tiny-qwen2-vl").returncode == 0
    result = run_dlm("show", doc)
    assert result.returncode == 0, result.stderr
    assert "missing image: figures/your-image.png is not there yet" in result.stdout
    data = json.loads(run_dlm("show", doc, "--json").stdout)
    (image,) = data["images"]
    assert image["missing"] and image["becomes"] is None and image["sha256"] is None
    assert not store_of(doc).exists()


def test_show_says_what_each_image_becomes(tmp_path: Path) -> None:
    doc = tmp_path / "a.dlm"
    assert run_dlm("init", doc, "--base", "tiny-qwen2-vl").returncode == 0
    (tmp_path / "figures").mkdir()
    Image.new("RGB", (448, 224), "red").save(tmp_path / "figures" / "your-image.png")
    data = json.loads(run_dlm("show", doc, "--json").stdout)
    assert data["base"]["image_fit"] == "keep-aspect"
    (image,) = data["images"]
    assert image["prepared"] == [140, 56]
    assert image["becomes"] == "140×56, aspect kept (2 → 2.5), 10 image tokens"


def test_a_documents_unknown_base_gets_the_closest_name(tmp_path: Path) -> None:
    doc = tmp_path / "a.dlm"
    assert run_dlm("init", doc, "--base", "tiny-qwen2-vl").returncode == 0
    doc.write_text(doc.read_text().replace("base_model: tiny-qwen2-vl", "base_model: tiny-qwen2"))
    for command in ("show", "doctor"):
        result = run_dlm(command, doc)
        assert result.returncode != 0
        assert "unknown base 'tiny-qwen2'" in result.stderr
        assert "did you mean 'tiny-qwen2-vl'?" in result.stderr, (command, result.stderr)


def test_the_plan_says_what_each_image_becomes(tmp_path: Path) -> None:
    doc = tmp_path / "a.dlm"
    assert run_dlm("init", doc, "--base", "tiny-qwen2-vl").returncode == 0
    (tmp_path / "figures").mkdir()
    Image.new("RGB", (448, 224), "red").save(tmp_path / "figures" / "your-image.png")
    result = run_dlm("doctor", doc)
    assert result.returncode == 0, result.stderr
    assert (
        "image figures/your-image.png: 448×224 → 140×56, aspect kept (2 → 2.5), 10 image tokens"
        in " ".join(result.stdout.split())
    )
