"""Every plugin in this repository keeps to the contract: core's public API only, cheap imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from dlm import PUBLIC_API
from tests.conftest import REPO

PLUGIN_PACKAGES = sorted(
    src
    for folder in sorted(REPO.glob("dlm-*"))
    if folder.name != "dlm-core" and (folder / "pyproject.toml").is_file()
    for src in (folder / "src").iterdir()
    if src.is_dir() and (src / "__init__.py").is_file()
)


def test_every_plugin_package_is_found() -> None:
    names = {p.name for p in PLUGIN_PACKAGES}
    assert {"dlm_vl_qwen2", "dlm_vl_paligemma", "dlm_vl_mistral", "dlm_vl_internvl"} <= names


@pytest.mark.parametrize("package", PLUGIN_PACKAGES, ids=lambda p: p.name)
def test_plugin_imports_only_the_public_core_api(package: Path) -> None:
    for module in sorted(package.rglob("*.py")):
        tree = ast.parse(module.read_text(), filename=str(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                if name == "dlm" or name.startswith("dlm."):
                    assert name in PUBLIC_API, f"{module.relative_to(REPO)} imports {name}"


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(
        (
            ep
            for ep in metadata.entry_points(group="dlm")
            if ep.value.split(".")[0].startswith("dlm_")
        ),
        key=lambda ep: ep.name,
    )


@pytest.mark.parametrize("entry_point", _entry_points(), ids=lambda ep: ep.name)
def test_loading_a_plugin_imports_no_torch(entry_point: metadata.EntryPoint) -> None:
    """`dlm --help` and `dlm plugins` load every plugin: they must stay cheap."""
    code = (
        "import sys, importlib\n"
        f"importlib.import_module({entry_point.value.split(':')[0]!r})\n"
        "print(sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
