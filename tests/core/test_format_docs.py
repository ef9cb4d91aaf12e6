"""docs/format.md's key tables are generated from the records' declarations."""

from __future__ import annotations

import pytest

from dlm.format import ExportSettings, Frontmatter, Source, TrainingSettings
from dlm.format.schema import settings_table
from tests.conftest import REPO


@pytest.mark.parametrize("record", [Frontmatter, TrainingSettings, ExportSettings, Source])
def test_the_docs_show_the_declared_keys(record: type) -> None:
    table = settings_table(record)
    assert table in (REPO / "docs" / "format.md").read_text(), (
        f"docs/format.md is out of date: replace the table of {record.__name__}'s keys with\n"
        + table
    )


def test_the_table_shows_defaults_checks_and_requirements() -> None:
    rows = settings_table(TrainingSettings).splitlines()
    assert "| `learning_rate` | number `> 0` | `2e-4` | Peak learning rate. |" in rows
    assert "| `seed` | integer `0 … 4294967295` | `42` | Random seed. |" in rows
    assert "| `precision` | `bf16`, `fp16`, `fp32` | planner |" in "\n".join(rows)
    top = settings_table(Frontmatter)
    assert "| `dlm_version` | integer | required |" in top
    assert "| `system_prompt` | string | none |" in top
