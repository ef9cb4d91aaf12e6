"""Start-up stays light, and `dlm cache` shows and clears a store's vision features."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_dlm

HEAVY = ("torch", "transformers", "peft", "accelerate", "trl", "numpy")

_PROBE = """
import json, runpy, sys
args, watched = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
sys.argv = ["dlm", *args]
code = 0
try:
    runpy.run_module("dlm", run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & watched)
print("\\n" + json.dumps({"code": code, "heavy": heavy}))
"""


def _imports(*args: str) -> dict[str, object]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(list(args)), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [("--help",), ("train", "--help"), ("cache",)])
def test_commands_that_import_no_torch(args: tuple[str, ...]) -> None:
    result = _imports(*args)
    assert result == {"code": 0, "heavy": []}


def test_show_imports_no_torch(tmp_path: Path) -> None:
    from tests.e2e.recall import write_recall_document

    doc, _rows = write_recall_document(tmp_path, "tiny-qwen2-vl")
    result = _imports("show", str(doc))
    assert result == {"code": 0, "heavy": []}


def test_cache_usage_errors(tmp_path: Path) -> None:
    missing = run_dlm("cache", tmp_path / "nope.dlm")
    assert missing.returncode == 2 and "document not found" in missing.stderr
    extra = run_dlm("cache", "clear", "a.dlm", "b.dlm")
    assert extra.returncode == 2 and "too many arguments" in extra.stderr
    bad_bound = run_dlm("cache", env={"DLM_FEATURE_CACHE_MB": "lots"})
    assert bad_bound.returncode == 2 and "DLM_FEATURE_CACHE_MB" in bad_bound.stderr
    for result in (missing, extra, bad_bound):
        assert "Traceback" not in result.stderr
