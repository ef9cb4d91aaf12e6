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


def test_the_minimal_family_runs_as_written() -> None:
    """The Families section's paste-able family is real code: it defines a
    Family, registers it through the hook, and binds to a base."""
    from dlm.records import ExampleKind, TrainingExample
    from tests.hardware.bases import QWEN2_VL_2B

    section = DOC.split("### Families", 1)[1]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(compile(block, "docs/plugins.md", "exec"), namespace)
    registered: list[Family] = []
    namespace["register_families"](registered.append)  # type: ignore[operator]
    (family,) = registered
    assert isinstance(family, Family) and family.name == "my-family"
    base = attrs.evolve(QWEN2_VL_2B, family=family.name)
    bound = family.bind(base)
    assert bound.stop_tokens() == ["<|im_end|>", "<|endoftext|>"]
    example = TrainingExample("s", "doc.dlm:3", ExampleKind.QA, "What is it?", "A cat.")
    count = bound.count_tokens(example)  # planning without a processor: an estimate
    assert count.prompt >= family.chat_overhead_tokens and count.completion > 0
