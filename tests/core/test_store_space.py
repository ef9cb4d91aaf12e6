"""A full disk becomes one message: the step, the filesystem, free and needed bytes.

ENOSPC is injected here, so this runs anywhere; tests/e2e/test_disk_full.py
fills a real (tmpfs) filesystem where mounting one is allowed.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from dlm.errors import DiskFullError, ExportError, TrainError
from dlm.store.exports import stage_export
from dlm.store.lock import StoreLock
from dlm.store.manifest import load_manifest
from dlm.store.paths import StorePaths
from dlm.store.space import as_disk_full, disk_step, human_bytes
from dlm.store.verify import verify_store

DLM_ID = "01J9Z6M8Q5X2V7K3T4R1N0PBCE"


def _enospc(path: Path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


class SafetensorError(Exception):
    """Stands in for safetensors' error type, which carries only a message."""


@pytest.mark.parametrize(
    "raised",
    [
        lambda p: _enospc(p),
        lambda p: SafetensorError(
            "Error while serializing: IoError(Os { code: 28, kind: "
            'StorageFull, message: "No space left on device" })'
        ),
        lambda p: TrainError("training failed at step 3"),  # chained below
    ],
    ids=["oserror", "safetensors", "wrapped"],
)
def test_disk_step_names_step_filesystem_free_and_needed(tmp_path: Path, raised) -> None:
    exc = raised(tmp_path / "x")
    with pytest.raises(DiskFullError) as info, disk_step("writing things", tmp_path, 5 * 2**20):
        if isinstance(exc, TrainError):
            try:
                raise _enospc(tmp_path / "x")
            except OSError as inner:
                raise exc from inner
        raise exc
    text = info.value.render()
    assert text.startswith("disk full: no space left on device while writing things: ")
    assert str(tmp_path) in text and "filesystem /" in text and " free)" in text
    assert "this step needs about 5.0 MiB" in text
    assert info.value.exit_code == 1


def test_other_errors_pass_through_untouched(tmp_path: Path) -> None:
    with pytest.raises(PermissionError), disk_step("writing", tmp_path, 1):
        raise PermissionError(errno.EACCES, "Permission denied")
    with pytest.raises(ExportError), disk_step("writing", tmp_path, 1):
        raise ExportError("something else")


def test_a_needed_estimate_that_fails_does_not_hide_the_disk_full(tmp_path: Path) -> None:
    def broken() -> int:
        raise RuntimeError("estimate failed")

    with (
        pytest.raises(DiskFullError, match="not known in advance"),
        disk_step("w", tmp_path, broken),
    ):
        raise _enospc(tmp_path)


def test_an_uncaught_full_disk_is_still_recognised(tmp_path: Path) -> None:
    full = as_disk_full(_enospc(tmp_path / "somewhere" / "file"))
    assert full is not None and str(tmp_path / "somewhere" / "file") in full.message
    assert as_disk_full(ValueError("nope")) is None
    assert human_bytes(512) == "512 B" and human_bytes(3 * 2**30) == "3.0 GiB"


def test_an_export_that_hits_enospc_keeps_the_previous_export(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DLM_HOME", str(tmp_path / "home"))
    paths = StorePaths.for_id(DLM_ID)
    with StoreLock(paths.lock_file, command="t", notice=lambda m: None):
        with stage_export(paths, "hf-snapshot") as staging:
            (staging / "README.md").write_text("old")
        with (
            pytest.raises(DiskFullError, match=r"needs about 1\.0 KiB"),
            disk_step("writing the export", paths.exports, 1024),
            stage_export(paths, "hf-snapshot") as staging,
        ):
            (staging / "README.md").write_text("half")
            raise _enospc(staging / "adapter.safetensors")
    assert (paths.export_dir("hf-snapshot") / "README.md").read_text() == "old"
    assert load_manifest(paths).pending_exports == {}
    assert verify_store(paths) == []
