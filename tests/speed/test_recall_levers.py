"""`dlm train` with every lever on: image-conditioned recall, the cache across retrains, and
the same adapter as the plain step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_dlm
from tests.e2e.recall import assert_recall, store_of, write_recall_document

pytestmark = pytest.mark.slow

BASE = "tiny-qwen2-vl"


def _run(doc: Path, version: str) -> dict:
    path = store_of(doc) / "adapter" / "versions" / version / "training_run.json"
    return json.loads(path.read_text())


def _weights(doc: Path, version: str) -> dict:
    from safetensors.torch import load_file

    return load_file(
        str(store_of(doc) / "adapter" / "versions" / version / "adapter_model.safetensors")
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, session_home: Path):
    import os

    os.environ["DLM_HOME"] = str(session_home)
    folder = tmp_path_factory.mktemp("levers-recall")
    doc, rows = write_recall_document(folder, BASE)
    result = run_dlm("train", doc, env={"DLM_LEVERS": "all"})
    assert result.returncode == 0, result.stderr
    return folder, doc, rows, result


def test_recall_with_every_lever_on(trained) -> None:
    folder, doc, rows, result = trained
    assert "speed: LM head at labelled positions · vision features reused" in result.stderr
    run = _run(doc, "v0001")
    assert run["speed"]["levers"] == [
        "label_head",
        "feature_cache",
        "length_batching",
        "lora_recompute",
    ]
    assert "4 computed" in run["speed"]["vision_features"]
    assert "from start to first step" in result.stdout + result.stderr
    assert_recall(doc, rows, folder)


def test_a_retrain_reuses_cached_features_and_gives_the_same_adapter(trained) -> None:
    _folder, doc, _rows, _ = trained
    shown = run_dlm("cache", doc, "--json")
    assert shown.returncode == 0, shown.stderr
    usage = json.loads(shown.stdout)
    assert usage["entries"] == 4 and usage["stores"][0]["settings"][0]["base"] == BASE

    again = run_dlm("train", doc, env={"DLM_LEVERS": "all"})
    assert again.returncode == 0, again.stderr
    note = _run(doc, "v0002")["speed"]["vision_features"]
    assert "from disk" in note and "(0 from disk)" not in note, note
    first, second = _weights(doc, "v0001"), _weights(doc, "v0002")
    assert all((first[k] == second[k]).all() for k in first), "cached features changed the run"

    cleared = run_dlm("cache", "clear", doc)
    assert cleared.returncode == 0 and "cleared 4 image features" in cleared.stdout
    assert json.loads(run_dlm("cache", doc, "--json").stdout)["entries"] == 0


def test_levers_train_the_same_adapter_as_the_plain_step(tmp_path: Path) -> None:
    import torch

    plain_doc, _ = write_recall_document(tmp_path / "plain", BASE, training={"num_epochs": 10})
    fast_doc, _ = write_recall_document(tmp_path / "fast", BASE, training={"num_epochs": 10})
    plain = run_dlm("train", plain_doc, env={"DLM_LEVERS": "none"})
    # the same batches as the plain run: only the levers that change no batch
    fast = run_dlm("train", fast_doc, env={"DLM_LEVERS": "label_head,feature_cache"})
    assert plain.returncode == 0 and fast.returncode == 0, plain.stderr + fast.stderr
    assert "speed: none (plain step)" in plain.stderr
    a, b = _weights(plain_doc, "v0001"), _weights(fast_doc, "v0001")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-5), key


PROSE = (
    "The {name} sits between the ingestion queue and the serving tier. It keeps a rolling "
    "window of recent requests, evicts entries by age and size, and reports its hit rate "
    "every minute so operators can tell a cold start from a regression. When it restarts "
    "it warms itself from the last snapshot before it takes traffic again, which keeps the "
    "first minutes after a deploy from flooding the services behind it with repeated work."
)


def test_recall_with_prose_sections_batched_by_length(tmp_path: Path) -> None:
    """Long prose among short image examples: length-aware batches are used, recall holds."""
    from dlm.format import parse_file

    doc, rows = write_recall_document(tmp_path, BASE, training={"num_epochs": 40})
    text = doc.read_text()
    body_at = text.index("::image")
    prose = "\n\n".join(
        ("::prose::\n" if i else "") + PROSE.format(name=name)
        for i, name in enumerate(["cache", "router", "indexer", "scheduler"])
    )
    doc.write_text(text[:body_at] + prose + "\n\n" + text[body_at:])
    assert len([s for s in parse_file(doc).sections if s.kind == "prose"]) == 4
    result = run_dlm("train", doc, env={"DLM_LEVERS": "all"})
    assert result.returncode == 0, result.stderr
    note = _run(doc, "v0001")["speed"]["batching"]
    assert note.startswith("length-aware batches in ") and not note.startswith(
        "length-aware batches in 0/"
    ), note
    assert_recall(doc, rows, tmp_path)
