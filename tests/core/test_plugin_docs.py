"""docs/plugins.md documents the whole contract: every Family member and every record field."""

from __future__ import annotations

import attrs
import pytest

import dlm.records as records
from dlm.family import Family
from tests.conftest import REPO

DOC = (REPO / "docs" / "plugins.md").read_text()

RECORDS = sorted(
    (name, cls)
    for name, cls in vars(records).items()
    if isinstance(cls, type) and attrs.has(cls) and cls.__module__ == "dlm.records"
)


def test_every_family_member_is_documented() -> None:
    members = [name for name in vars(Family) if not name.startswith("_")]
    missing = [name for name in members if f"`{name}" not in DOC]
    assert not missing, f"Family members missing from docs/plugins.md: {missing}"


@pytest.mark.parametrize(("name", "cls"), RECORDS, ids=[name for name, _ in RECORDS])
def test_every_record_field_is_documented(name: str, cls: type) -> None:
    section = DOC.split("## Reference: the records", 1)[1]
    assert f"`{name}`" in section, f"{name} has no entry in the records reference"
    missing = [f.name for f in attrs.fields(cls) if f"`{f.name}`" not in section]
    assert not missing, f"{name} fields missing from docs/plugins.md: {missing}"
