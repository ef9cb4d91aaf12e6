""":class:`~dlm.format.document.Document` → canonical ``.dlm`` text.

The frontmatter is written back through ruamel.yaml from the mapping the
parser read (comments, order and quoting kept) with the record's values
applied, or, for a document built in code, as a clean mapping with defaults
omitted. Sections are written in one canonical layout; sections expanded from
``training.sources`` are left out (the directive recreates them).

Every result is parsed back before it is returned: text that would read back
as a different document is refused instead of written.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import attrs

from dlm.errors import DocumentError
from dlm.format.checks import settings_of
from dlm.format.document import (
    Document,
    Frontmatter,
    ImageSection,
    InstructionSection,
    ProseSection,
    Section,
)
from dlm.format.frontmatter import dump_yaml
from dlm.format.parser import parse
from dlm.format.schema import frontmatter_from_mapping, frontmatter_to_mapping, to_yaml
from dlm.format.schema import section_mapping as _section_mapping
from dlm.format.sections import ANSWER, QUESTION


def escape_attribute(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def render_section(section: Section, *, first: bool = False) -> str:
    if isinstance(section, ProseSection):
        return section.text if first else f"::prose::\n{section.text}"
    if isinstance(section, InstructionSection):
        pairs = "\n\n".join(
            f"{QUESTION}\n{pair.question}\n\n{ANSWER}\n{pair.answer}" for pair in section.pairs
        )
        return f"::instruction::\n{pairs}"
    fence = f'::image path="{escape_attribute(section.path)}"'
    if section.alt is not None:
        fence += f' alt="{escape_attribute(section.alt)}"'
    fence += "::"
    return f"{fence}\n{section.caption}" if section.caption else fence


def render_body(sections: Sequence[Section]) -> str:
    return "\n\n".join(
        render_section(section, first=index == 0) for index, section in enumerate(sections)
    )


def authored_sections(doc: Document) -> tuple[Section, ...]:
    """The sections written in the document (not expanded from a source directive)."""
    return tuple(
        section
        for section in doc.sections
        if not (isinstance(section, ImageSection) and section.from_source is not None)
    )


# ----------------------------------------------------------------- frontmatter


def _place(node: MutableMapping[str, Any], key: str, value: Any, order: Sequence[str]) -> None:
    """Set ``key``, inserting a new key after its predecessors in schema order."""
    if key in node:
        node[key] = value
        return
    keys = list(node)
    predecessors = order[: order.index(key)]
    position = max((keys.index(k) + 1 for k in predecessors if k in keys), default=0)
    node.insert(position, key, value)  # type: ignore[attr-defined]


def _apply(node: MutableMapping[str, Any], old: Any, new: Any, order: Sequence[str]) -> None:
    """Write the keys where ``new`` differs from ``old`` (what ``node`` says) into it."""
    for name, (field, declared) in settings_of(type(new)).items():
        old_value, new_value = getattr(old, name), getattr(new, name)
        if old_value == new_value:
            continue
        if attrs.has(type(new_value)):
            if isinstance(node.get(name), Mapping):
                _apply(node[name], old_value, new_value, list(settings_of(type(new_value))))
            elif new_value == field.default:
                node.pop(name, None)
            else:
                _place(node, name, _section_mapping(new_value), order)
        elif new_value is None:
            node.pop(name, None)
        elif declared.check.items is not None:
            _place(node, name, to_yaml([_section_mapping(s) for s in new_value]), order)
        else:
            _place(node, name, to_yaml(new_value, key=name), order)


def frontmatter_text(doc: Document) -> str:
    """The YAML between the ``---`` lines (ends with a newline)."""
    raw = doc.raw_frontmatter
    if isinstance(raw, MutableMapping):
        raw = copy.deepcopy(raw)
        try:
            old, raw = frontmatter_from_mapping(raw)
        except DocumentError:
            raw = None  # not a mapping this schema reads: write the record instead
        else:
            _apply(raw, old, doc.frontmatter, list(settings_of(Frontmatter)))
            return dump_yaml(raw)
    return dump_yaml(frontmatter_to_mapping(doc.frontmatter))


# ----------------------------------------------------------------- documents


def _assemble(front: str, body: str) -> str:
    return f"---\n{front}---\n" + (f"\n{body}\n" if body.strip() else "")


def _verify(text: str, frontmatter: Frontmatter, sections: tuple[Section, ...]) -> None:
    try:
        reread = parse(text)
    except DocumentError as exc:
        raise ValueError(
            f"the document cannot be written as .dlm text: line {exc.line} of the "
            f"output would read as an error ({exc.message})"
        ) from None
    if reread.frontmatter != frontmatter:
        raise ValueError(
            "the document cannot be written as .dlm text: its frontmatter would read "
            "back differently (is dlm_version current?)"
        )
    if reread.sections == sections:
        return
    index = next(
        (
            i
            for i, (want, got) in enumerate(zip(sections, reread.sections, strict=False))
            if want != got
        ),
        min(len(sections), len(reread.sections)),
    )
    raise ValueError(
        f"the document cannot be written as .dlm text: section {index + 1} would read "
        "back differently (its text holds a fence or '### Q'/'### A' line, an unclosed "
        "code block, leading/trailing blank lines, or is empty)"
    )


def serialize(doc: Document) -> str:
    """Canonical text for ``doc``; ``parse(serialize(doc)) == doc`` (sources unexpanded)."""
    sections = authored_sections(doc)
    text = _assemble(frontmatter_text(doc), render_body(sections))
    _verify(text, doc.frontmatter, sections)
    return text


def render_new_document(frontmatter: Frontmatter, body: str) -> str:
    """A new document: ``frontmatter`` written from the record, then ``body`` as given.

    The result is parsed before it is returned, so a scaffold that would not
    read back raises :class:`~dlm.errors.DocumentError` here, not on first use.
    """
    text = _assemble(dump_yaml(frontmatter_to_mapping(frontmatter)), body.strip("\n"))
    parse(text)
    return text
