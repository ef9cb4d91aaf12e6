"""`lint-imports` keeps the import contracts (pyproject.toml [tool.importlinter]).

The contracts are only worth something if they can fail: each is broken on
purpose in a copy of the sources, and `lint-imports` must name it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(cwd: Path, pythonpath: str) -> subprocess.CompletedProcess[str]:
    # COLUMNS: one contract per line, however long its name.
    env = os.environ | {"PYTHONPATH": pythonpath, "COLUMNS": "400"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True
    )


def _verdicts(output: str) -> dict[str, str]:
    """Contract name -> KEPT or BROKEN, from lint-imports' summary."""
    return dict(re.findall(r"^(.+?) (KEPT|BROKEN)\b", output, flags=re.MULTILINE))


def test_the_repository_keeps_every_contract() -> None:
    out = _lint_imports(REPO, os.environ.get("PYTHONPATH", ""))
    assert out.returncode == 0, out.stdout + out.stderr
    verdicts = _verdicts(out.stdout)
    assert len(verdicts) == 4 and set(verdicts.values()) == {"KEPT"}, out.stdout


# (module to edit, line to add, the contract it breaks)
VIOLATIONS = {
    "store-imports-engine": (
        "dlm/store/paths.py",
        "import dlm.engine.training.train",
        "core layers",
    ),
    "format-imports-store": ("dlm/format/parser.py", "import dlm.store.paths", "core layers"),
    "core-imports-a-plugin": (
        "dlm/engine/export/dispatch.py",
        "import dlm_export_gguf",
        "core never imports a plugin",
    ),
    "plugin-imports-core-internals": (
        "dlm_vl_qwen2/family.py",
        "from dlm.store import paths",
        "plugins import only core's public API",
    ),
    "plugin-imports-a-plugin": (
        "dlm_vl_mistral/family.py",
        "import dlm_vl_qwen2",
        "no plugin imports another",
    ),
    "unlayered-subpackage": ("dlm/newthing/__init__.py", "", "core layers"),
}


@pytest.mark.parametrize("case", VIOLATIONS)
def test_each_contract_can_break(case: str, tmp_path: Path) -> None:
    for src in sorted(REPO.glob("dlm-*/src")):
        shutil.copytree(
            src, tmp_path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    module, line, contract = VIOLATIONS[case]
    path = tmp_path / module
    path.parent.mkdir(exist_ok=True)
    with path.open("a") as f:
        f.write(f"\n{line}\n")

    out = _lint_imports(tmp_path, str(tmp_path))

    assert out.returncode != 0, out.stdout + out.stderr
    broken = [name for name, verdict in _verdicts(out.stdout).items() if verdict == "BROKEN"]
    assert len(broken) == 1 and broken[0].startswith(contract), out.stdout
    offender = module.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    assert re.search(rf"^\s*-\s+{re.escape(offender)}\b", out.stdout, flags=re.MULTILINE), (
        out.stdout
    )
