"""Developer sessions. Run inside the project's .venv (scripts/bootstrap makes it):

    .venv/bin/nox --no-venv -s tests      # the whole test suite
    .venv/bin/nox --no-venv -s demo       # the offline demo
    .venv/bin/nox --no-venv -s lint typecheck
    .venv/bin/nox --no-venv -s bench      # benchmarks (print figures, not tests)

Sessions reuse the current interpreter (no per-session venvs): torch alone is
several GB, and scripts/bootstrap already pins the whole stack.
"""

from __future__ import annotations

import sys

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "typecheck", "tests"]

PY = sys.executable
SOURCES = ["dlm-core", "tests", "benchmarks", "demo", "noxfile.py"]


def _packages() -> list[str]:
    from pathlib import Path

    return sorted(str(p.parent) for p in Path(".").glob("dlm-*/pyproject.toml"))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, then the import contracts (pyproject.toml [tool.importlinter])."""
    from pathlib import Path

    paths = [*SOURCES, *[p for p in _packages() if p != "dlm-core"]]
    session.run(PY, "-m", "ruff", "check", *paths)
    # lint-imports sits beside the interpreter; CI does not put .venv/bin on PATH.
    session.run(str(Path(PY).parent / "lint-imports"), "--no-cache")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy over core and every plugin."""
    session.run(PY, "-m", "mypy", *[f"{p}/src" for p in _packages()])


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (unit, property, end-to-end on tiny bases)."""
    session.run(PY, "-m", "pytest", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Offline demo: init → generated figures → train → prompt → export on tiny-qwen2-vl."""
    session.run(PY, "demo/run_demo.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks on tiny bases; they print JSON figures."""
    session.run(PY, "benchmarks/train_throughput.py", "--config", "tiny", *session.posargs)
