"""Shared fixtures: an isolated DLM_HOME, a CLI runner, installed test plugins.

Every test runs offline. Tiny bases are built once per session into a
shared DLM_HOME (their build is deterministic, and each document has its
own dlm_id, so stores never collide).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_PLUGINS = REPO / "tests" / "plugins"


@pytest.fixture(scope="session")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dlm-home")


@pytest.fixture(autouse=True)
def _isolated_home(session_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("DLM_HOME", str(session_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.delenv("DLM_PLUGINS", raising=False)
    from dlm.plugins import reset

    reset()
    yield session_home
    reset()


def run_dlm(
    *args: str | os.PathLike[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a fresh process (exit codes, stdout/stderr as a user sees them)."""
    full_env = dict(os.environ)
    full_env.update({"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "dlm", *map(str, args)],
        cwd=cwd,
        env=full_env,
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def test_plugins_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The third-party test plugins, pip-installed into a folder put on PYTHONPATH."""
    target = tmp_path_factory.mktemp("plugins-site")
    for name in ("dlm-test-plugin", "dlm-broken-plugin"):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--target",
                str(target),
                str(TEST_PLUGINS / name),
            ],
            check=True,
            capture_output=True,
        )
    return target


@pytest.fixture
def plugin_env(test_plugins_path: Path) -> dict[str, str]:
    existing = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(test_plugins_path), existing) if p)}
