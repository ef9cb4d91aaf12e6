"""Through the CLI (issue 13, items 7 and 12-16): odd images are refused or
noted the way `dlm train` does it, and nothing from a tampered store is used.

Every command that reads an adapter or a blob checks it against the manifest
first: `prompt` and `export` refuse a tampered adapter, `train` a tampered
blob, each with `subject: message`, the way out and exit 1, and the store as
it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import run_dlm
from tests.core.test_images_hostile import hostile_images, portrait_photo
from tests.e2e.recall import clean_error, store_of, trained_recall, write_recall_document

pytestmark = pytest.mark.slow

BASE = "tiny-paligemma"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, session_home: Path):
    os.environ["DLM_HOME"] = str(session_home)
    folder = tmp_path_factory.mktemp("tamper")
    doc, rows = trained_recall(folder, BASE, num_epochs=1)
    return folder, doc, rows


@contextlib.contextmanager
def flipped(path: Path) -> Iterator[None]:
    """One byte of ``path`` flipped (size and mtime kept), restored after."""
    original = path.read_bytes()
    mode, st = stat.S_IMODE(path.stat().st_mode), path.stat()
    os.chmod(path, 0o644)
    path.write_bytes(original[:-100] + bytes([original[-100] ^ 0x01]) + original[-99:])
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    try:
        yield
    finally:
        path.write_bytes(original)
        os.chmod(path, mode)


def _adapter(doc: Path) -> Path:
    store = store_of(doc)
    current = (store / "adapter" / "current.txt").read_text().strip()
    return store / "adapter" / "versions" / current / "adapter_model.safetensors"


def _question(folder: Path, rows) -> tuple[str, str, str]:
    file, _caption, question, answer = rows[0]
    return str(folder / "figures" / file), question, answer


# ---------------------------------------------------------------- item 15


def test_prompt_refuses_a_tampered_adapter(trained) -> None:
    folder, doc, rows = trained
    image, question, _answer = _question(folder, rows)
    assert run_dlm("prompt", doc, "--image", image, question).returncode == 0
    with flipped(_adapter(doc)):
        refused = run_dlm("prompt", doc, "--image", image, question)
        err = clean_error(refused, 1, "store")
        assert "adapter_model.safetensors" in err and "does not match the manifest" in err
        assert "dlm verify" in err and refused.stdout == ""
    assert run_dlm("prompt", doc, "--image", image, question).returncode == 0


def test_export_refuses_a_tampered_adapter_and_records_nothing(trained) -> None:
    _folder, doc, _rows = trained
    manifest = store_of(doc) / "manifest.json"
    before = json.loads(manifest.read_text())["exports"]
    with flipped(_adapter(doc)):
        refused = run_dlm("export", doc)
        err = clean_error(refused, 1, "store")
        assert "does not match the manifest" in err
    assert json.loads(manifest.read_text())["exports"] == before == {}
    assert not (store_of(doc) / "exports" / "hf-snapshot").exists()


def test_train_refuses_a_tampered_blob(trained) -> None:
    _folder, doc, _rows = trained
    store = store_of(doc)
    current = (store / "adapter" / "current.txt").read_text()
    blob = next(p for p in (store / "blobs").iterdir() if not p.name.startswith("."))
    with flipped(blob):
        refused = run_dlm("train", doc)
        err = clean_error(refused, 1, "store")
        assert f"blob {blob.name[:12]}" in err and "figures/" in err
        assert f"remove {blob}" in err
        assert "loading" not in err, "refused before the model loads"
    assert (store / "adapter" / "current.txt").read_text() == current
    assert run_dlm("verify", doc).returncode == 0


# ---------------------------------------------------------------- item 16


def test_export_files_are_readable_like_the_rest(trained) -> None:
    folder, doc, _rows = trained
    out = folder / "for-a-colleague"
    result = run_dlm("export", doc, "--out", out)
    assert result.returncode == 0, result.stderr
    umask = os.umask(0o022)
    os.umask(umask)
    modes = {str(p.relative_to(out)): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*")}
    expected = {rel: (0o777 if (out / rel).is_dir() else 0o666) & ~umask for rel in modes}
    assert modes == expected
    assert modes["adapter/adapter_model.safetensors"] == 0o666 & ~umask
    version_dir = _adapter(doc).parent
    assert stat.S_IMODE(_adapter(doc).stat().st_mode) == 0o666 & ~umask, version_dir


# ---------------------------------------------------------------- item 14


def test_verify_reports_an_empty_current_and_a_blob_turned_directory(trained) -> None:
    _folder, doc, _rows = trained
    store = store_of(doc)
    current_file = store / "adapter" / "current.txt"
    current = current_file.read_text()
    try:
        current_file.write_text("")
        empty = run_dlm("verify", doc)
        assert empty.returncode == 1 and "Traceback" not in empty.stderr
        assert "current.txt" in empty.stdout + empty.stderr
        assert "empty" in empty.stdout + empty.stderr
    finally:
        current_file.write_text(current)
    blob = next(p for p in (store / "blobs").iterdir() if not p.name.startswith("."))
    data = blob.read_bytes()
    blob.unlink()
    blob.mkdir()
    try:
        turned = run_dlm("verify", doc)
        assert turned.returncode == 1 and "Traceback" not in turned.stderr, turned.stderr
        assert blob.name[:12] in turned.stdout + turned.stderr
        assert "directory" in turned.stdout + turned.stderr
    finally:
        blob.rmdir()
        blob.write_bytes(data)
        os.chmod(blob, 0o444)
    assert run_dlm("verify", doc).returncode == 0


# ---------------------------------------------------------------- item 7


def test_prompt_refuses_odd_images_before_loading_anything(tmp_path: Path) -> None:
    # Never trained: a refusal here can only come from the image check, which
    # runs before the adapter or the model is looked at.
    doc, _rows = write_recall_document(tmp_path, BASE)
    for kind, (path, words) in hostile_images(tmp_path / "odd").items():
        started = time.monotonic()
        result = run_dlm("prompt", doc, "--image", path, "What is this?")
        err = clean_error(result, 2, "prompt")
        assert f"{path}: " in err and words in err, (kind, err)
        assert "no adapter" not in err, kind
        assert time.monotonic() - started < 30, kind


# ---------------------------------------------------------------- items 12, 13


def test_show_reports_upright_sizes_and_notes_what_is_lost(tmp_path: Path) -> None:
    # sequence_len 20: `dlm train` prints what each section became, then refuses
    # (images never fit) before loading a model
    doc, _rows = write_recall_document(tmp_path, BASE, training={"sequence_len": 20})
    figures = tmp_path / "figures"
    portrait_photo(figures / "phone.jpg")
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(figures / "anim.gif", save_all=True, append_images=frames[1:])
    Image.new("RGBA", (16, 16), (0, 0, 0, 0)).save(figures / "clear.png")
    with doc.open("a") as fh:
        for name in ("phone.jpg", "anim.gif", "clear.png"):
            fh.write(f'\n::image path="figures/{name}" alt="{name}"::\nA {name}.\n')
    shown = run_dlm("show", doc, "--json")
    assert shown.returncode == 0, shown.stderr
    images = {Path(i["path"]).name: i for i in json.loads(shown.stdout)["images"]}
    assert (images["phone.jpg"]["width"], images["phone.jpg"]["height"]) == (20, 40)
    assert images["anim.gif"]["notes"] == ["animated (2 frames): only the first frame is used"]
    assert images["clear.png"]["notes"] == ["transparent: flattened onto a white background"]
    assert images["phone.jpg"]["notes"] == []
    human = run_dlm("show", doc)
    assert "only the first frame is used" in human.stdout
    assert "flattened onto a white background" in human.stdout
    # what `dlm train` prints before it starts says the same, per section
    training = run_dlm("train", doc)
    assert training.returncode == 1 and "sequence_len is 20" in training.stderr
    assert "only the first frame is used" in training.stderr
    assert "flattened onto a white background" in training.stderr
