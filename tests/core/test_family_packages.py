"""Each family is its own package: installing one adds its bases, removing it removes only them."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import run_dlm

FAMILIES = {
    # distribution: (entry point, family, tiny base)
    "dlm-vl-qwen2": ("qwen2", "qwen2-vl", "tiny-qwen2-vl"),
    "dlm-vl-paligemma": ("paligemma", "paligemma", "tiny-paligemma"),
    "dlm-vl-mistral": ("mistral", "mistral3", "tiny-mistral3"),
    "dlm-vl-internvl": ("internvl", "internvl", "tiny-internvl"),
}


@pytest.mark.parametrize("distribution", sorted(FAMILIES))
def test_a_family_package_needs_only_dlm_core(distribution: str) -> None:
    requires = metadata.requires(distribution) or []
    dlm_deps = {
        r.split(">")[0].split("=")[0].split("<")[0].strip() for r in requires if r.startswith("dlm")
    }
    assert dlm_deps == {"dlm-core"}


@pytest.mark.parametrize("distribution", sorted(FAMILIES))
def test_with_only_one_family_its_bases_work_and_no_others_exist(
    distribution: str, tmp_path: Path
) -> None:
    entry_point, family, tiny = FAMILIES[distribution]
    env = {"DLM_PLUGINS": entry_point}  # the loader sees only this family's package
    rows = {row["name"]: row for row in json.loads(run_dlm("plugins", "--json", env=env).stdout)}
    assert set(rows) == {"dlm.builtins", entry_point}
    provided = rows[entry_point]["provides"]
    assert f"family:{family}" in provided and f"base:{tiny}" in provided

    doc = tmp_path / "one.dlm"
    assert run_dlm("init", doc, "--base", tiny, env=env).returncode == 0
    for other, (_ep, _family, other_tiny) in FAMILIES.items():
        if other == distribution:
            continue
        refused = run_dlm("init", tmp_path / f"{other}.dlm", "--base", other_tiny, env=env)
        assert refused.returncode == 2
        assert f"pip install {other}" in refused.stderr
