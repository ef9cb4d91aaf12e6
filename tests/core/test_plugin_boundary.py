"""Every plugin in this repository keeps to the contract: core's public API only, cheap imports.

`lint-imports` (tests/core/test_import_contracts.py, nox -s lint) checks the imports;
these tests keep its contracts in step with the plugin packages and dlm.PUBLIC_API.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from importlib import metadata
from typing import Any

import pytest

import dlm
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


def _importlinter_config() -> dict[str, Any]:
    """pyproject.toml's [tool.importlinter]: what `lint-imports` checks."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]


def _contract(contract_id: str) -> dict[str, Any]:
    return next(c for c in _importlinter_config()["contracts"] if c["id"] == contract_id)


def test_the_import_contracts_cover_every_plugin_package() -> None:
    """A new plugin package is checked as soon as it exists, not when someone remembers."""
    plugins = {p.name for p in PLUGIN_PACKAGES}
    assert set(_importlinter_config()["root_packages"]) == {"dlm"} | plugins
    assert set(_contract("core-imports-no-plugin")["forbidden_modules"]) == plugins
    assert set(_contract("plugins-use-public-api")["source_modules"]) == plugins
    assert set(_contract("plugins-independent")["modules"]) == plugins


def test_plugins_may_import_exactly_the_public_api() -> None:
    """The forbidden list is every direct child of dlm that dlm.PUBLIC_API leaves out."""
    children = {f"dlm.{m.name}" for m in pkgutil.iter_modules(dlm.__path__)}
    assert set(PUBLIC_API) - {"dlm"} <= children
    forbidden = _contract("plugins-use-public-api")["forbidden_modules"]
    assert set(forbidden) == children - set(PUBLIC_API)


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
