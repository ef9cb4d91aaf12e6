"""A full disk, for real: DLM_HOME on a small tmpfs filled to eight levels.

Each level leaves a different amount free, so train and export run out of
space at a different step (the lock record, the images, the log, the loss
plot, the adapter commit, the export's files). Every failure must read
`disk full: …` with the filesystem, what is free and what the step needed,
without a traceback, and `dlm verify` must find the store intact after it.

Mounting needs root (CAP_SYS_ADMIN); elsewhere the test is skipped and
tests/core/test_store_space.py covers the mapping with an injected ENOSPC.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_dlm
from tests.e2e.recall import store_of, write_recall_document

pytestmark = pytest.mark.slow

BASE = "tiny-paligemma"
DISK_BYTES = 64 * 2**20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _fill(disk: Path, free: int) -> None:
    """Leave about ``free`` bytes free on ``disk`` (tmpfs counts whole pages)."""
    filler = disk / "filler"
    with contextlib.suppress(FileNotFoundError):
        filler.unlink()
    have = shutil.disk_usage(disk).free
    size = max(0, have - free)
    with open(filler, "wb") as f:
        chunk = b"\0" * 2**20
        while size > 0:
            written = f.write(chunk[: min(size, len(chunk))])
            size -= written


def _check(result, disk: Path, outcomes: list[str], label: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    if result.returncode == 0:
        outcomes.append(f"{label}: fits")
        return
    assert result.returncode == 1, result.stderr
    err = result.stderr
    assert "disk full: no space left on device" in err, err
    assert f"filesystem {disk}" in err, err  # where
    assert "free" in err and "needs about" in err, err  # how much
    message = err[err.index("disk full:") :].strip()
    outcomes.append(f"{label}: {message}")


def _verify_intact(doc: Path) -> None:
    result = run_dlm("verify", doc)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "intact" in result.stdout
    assert "✗" not in result.stdout


def test_a_full_disk_is_named_and_never_breaks_the_store(
    small_disk: Path, tmp_path: Path, session_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = small_disk / "home"
    home.mkdir()
    # The tiny base lives on the roomy disk: only the store is squeezed.
    (session_home / "bases").mkdir(parents=True, exist_ok=True)
    (home / "bases").symlink_to(session_home / "bases")
    monkeypatch.setenv("DLM_HOME", str(home))

    # What a train and an export write, measured with room to spare.
    probe_doc, _ = write_recall_document(tmp_path / "probe", BASE, training={"num_epochs": 1})
    assert run_dlm("train", probe_doc).returncode == 0
    store = store_of(probe_doc)
    train_bytes = _du(store)
    assert run_dlm("export", probe_doc).returncode == 0
    export_bytes = _du(store / "exports")
    assert train_bytes > 0 and export_bytes > 0

    outcomes: list[str] = []
    # Five train levels: nothing free, one page, and fractions of a train's writes.
    for i, free in enumerate([0, 4096, train_bytes // 4, train_bytes // 2, train_bytes * 9 // 10]):
        doc, _ = write_recall_document(tmp_path / f"t{i}", BASE, training={"num_epochs": 1})
        _fill(small_disk, free)
        _check(run_dlm("train", doc), small_disk, outcomes, f"train, {free} B free")
        if store_of(doc).exists():
            _verify_intact(doc)
        else:  # failed before the store existed: there is nothing to break
            assert "no store" in run_dlm("verify", doc).stderr
        (small_disk / "filler").unlink()

    # Three export levels, over the previous export (which must survive).
    previous = sorted(p.relative_to(store) for p in (store / "exports").rglob("*"))
    for free in [0, export_bytes // 2, export_bytes * 9 // 10]:
        _fill(small_disk, free)
        result = run_dlm("export", probe_doc)
        _check(result, small_disk, outcomes, f"export, {free} B free")
        _verify_intact(probe_doc)
        if result.returncode != 0:
            now = sorted(p.relative_to(store) for p in (store / "exports").rglob("*"))
            assert now == previous
        (small_disk / "filler").unlink()

    failed = [o for o in outcomes if not o.endswith(": fits")]
    print("\n".join(outcomes))
    assert len(outcomes) == 8
    assert len(failed) >= 6, outcomes  # most levels must really run out of space

    # With room again, the last document trains and the store stays clean.
    assert run_dlm("train", doc).returncode == 0
    _verify_intact(doc)
    assert os.listdir(small_disk) == ["home"]
