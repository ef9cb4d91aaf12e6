"""Schema versions: the migration registry, v9 → v10, and refused versions."""

from __future__ import annotations

from typing import Any

import pytest

from dlm.errors import DocumentError
from dlm.format import CURRENT_VERSION, migrations, parse, serialize

ULID = "01JZ8XKQ3M5N7P9R2S4T6V8W0Y"


def doc_text(version: object, extra: str = "") -> str:
    return (
        f"---\n# written for an older dlm\ndlm_id: {ULID}\n"
        f"dlm_version: {version}  # schema\nbase_model: paligemma-3b-mix-224\n{extra}---\n"
        "::instruction::\n### Q\nq\n### A\na\n"
    )


def test_current_version_is_ten_and_nine_is_the_oldest() -> None:
    assert CURRENT_VERSION == 10
    assert migrations.oldest_supported_version() == 9
    assert 9 in migrations.MIGRATIONS


def test_v9_document_migrates_to_v10_keeping_comments() -> None:
    doc = parse(doc_text(9, "training:\n  lora_r: 4  # small\n"))
    assert doc.frontmatter.dlm_version == 10
    assert doc.frontmatter.training.lora_r == 4
    assert doc.raw_frontmatter["dlm_version"] == 10
    text = serialize(doc)
    assert "dlm_version: 10" in text
    assert "# written for an older dlm" in text
    assert "# schema" in text
    assert "lora_r: 4  # small" in text
    assert parse(text) == doc


def test_v9_equals_the_same_document_written_as_v10() -> None:
    assert parse(doc_text(9)) == parse(doc_text(10))


def test_newer_version_is_refused_naming_the_supported_one() -> None:
    with pytest.raises(DocumentError) as info:
        parse(doc_text(11), "new.dlm")
    exc = info.value
    assert (exc.line, exc.col) == (4, 14)
    assert "this dlm supports schema up to 10; upgrade dlm" in exc.message
    assert exc.render().startswith("new.dlm:4:14: dlm_version 11 is newer than this dlm")


def test_version_without_migration_path_is_refused() -> None:
    with pytest.raises(DocumentError) as info:
        parse(doc_text(8), "old.dlm")
    exc = info.value
    assert (exc.line, exc.col) == (4, 14)
    assert exc.message == (
        "dlm_version 8 is too old: there is no migration from it (this dlm reads schema 9 to 10)"
    )
    assert "rewrite the frontmatter for schema 10" in (exc.hint or "")


# ----------------------------------------------------------------- the registry


def test_registering_twice_or_out_of_range_fails() -> None:
    with pytest.raises(ValueError, match="already registered"):
        migrations.migration(from_version=9)(lambda raw: raw)
    with pytest.raises(ValueError, match="cannot register"):
        migrations.migration(from_version=CURRENT_VERSION)(lambda raw: raw)
    with pytest.raises(ValueError, match="cannot register"):
        migrations.migration(from_version=0)(lambda raw: raw)


def test_steps_run_in_order_up_to_the_current_version(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def step(version: int):
        def run(raw: dict[str, Any]) -> dict[str, Any]:
            calls.append(version)
            raw.setdefault("trail", []).append(version)
            raw["dlm_version"] = version + 1
            return raw

        return run

    monkeypatch.setattr(migrations, "CURRENT_VERSION", 12)
    monkeypatch.setattr(migrations, "MIGRATIONS", dict(migrations.MIGRATIONS))
    migrations.migration(from_version=11)(step(11))
    migrations.migration(from_version=10)(step(10))
    monkeypatch.setitem(migrations.MIGRATIONS, 9, step(9))

    raw = migrations.migrate({"dlm_version": 9}, 9)
    assert calls == [9, 10, 11]
    assert raw == {"dlm_version": 12, "trail": [9, 10, 11]}
    assert migrations.migrate({"dlm_version": 12}, 12) == {"dlm_version": 12}


def test_a_step_that_forgets_the_bump_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(migrations.MIGRATIONS, 9, lambda raw: raw)
    with pytest.raises(RuntimeError, match="produced dlm_version 9, expected 10"):
        migrations.migrate({"dlm_version": 9}, 9)


def test_a_gap_in_the_chain_limits_the_oldest_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrations, "MIGRATIONS", {7: lambda raw: raw})
    assert migrations.oldest_supported_version() == 10
    with pytest.raises(migrations.SchemaVersionError, match="too old"):
        migrations.check_version(9)
