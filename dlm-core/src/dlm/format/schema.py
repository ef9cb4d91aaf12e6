"""The frontmatter schema: validate the raw YAML mapping into records, and back.

Everything here reads the one declaration of the keys, the ``setting``
metadata on the :mod:`dlm.format.document` records. Validation walks the
round-trip mapping (:func:`dlm.format.checks.check_mapping`) so every error
points at the line and column of the offending key or value; the checked
values are then structured into the records with cattrs. The reverse
direction (records → a clean mapping with defaults omitted) is what ``dlm
init`` writes; :func:`settings_table` writes the docs' field tables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn, override
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

from dlm.format import migrations
from dlm.format.checks import (
    Locator,
    Position,
    check_mapping,
    describe,
    is_int,
    is_required,
    required_keys,
    settings_of,
)
from dlm.format.document import CURRENT_VERSION, Frontmatter, TrainingSettings

# ----------------------------------------------------------------- records

_structure = cattrs.Converter()
_structure.register_structure_hook(
    str | int | float | tuple[str, ...],
    lambda value, _: tuple(value) if isinstance(value, list | tuple) else value,
)
_structure.register_structure_hook(
    str | tuple[str, ...] | None,
    lambda value, _: value if value is None or isinstance(value, str) else tuple(value),
)


def frontmatter_from_mapping(
    raw: Any, *, path: str = "<string>", first_line: int = 2
) -> tuple[Frontmatter, Any]:
    """Validate (and first migrate) a raw frontmatter mapping.

    ``first_line`` is the document line of the mapping's first YAML line, so
    errors carry real positions. Returns the record and the migrated mapping.
    """
    loc = Locator(path, first_line, root=Frontmatter)
    opening: Position = (max(first_line - 1, 1), 1)
    if not isinstance(raw, MutableMapping):
        message = (
            "the frontmatter is empty"
            if raw is None
            else f"the frontmatter must be a mapping of keys, got {describe(raw)}"
        )
        raise loc.error(
            opening if raw is None else (first_line, 1),
            message,
            f"write 'key: value' lines: {required_keys(Frontmatter)} are required",
        )
    if "dlm_version" not in raw:
        raise loc.error(
            opening,
            "the frontmatter is missing the required key 'dlm_version'",
            f"add 'dlm_version: {CURRENT_VERSION}' (the schema this document is written for)",
        )
    version = raw["dlm_version"]
    version_pos = loc.value(raw, "dlm_version", opening)
    if not is_int(version) or version < 1:
        raise loc.error(
            version_pos,
            f"dlm_version must be a positive integer (the schema version, "
            f"currently {CURRENT_VERSION}), got {describe(version)}",
        )
    try:
        raw = migrations.migrate(raw, int(version))
    except migrations.SchemaVersionError as exc:
        raise loc.error(version_pos, exc.message, exc.hint) from None
    fields = check_mapping(raw, Frontmatter, loc, name="", missing_pos=opening)
    return _structure.structure(fields, Frontmatter), raw


def training_from_mapping(raw: Any, *, path: str) -> TrainingSettings:
    """``training:`` keys and values from outside a document (a base's recommended
    settings), checked exactly as a document's ``training:`` is."""
    frontmatter, _ = frontmatter_from_mapping(
        {
            "dlm_version": CURRENT_VERSION,
            "dlm_id": "0" * 26,
            "base_model": "-",
            "training": dict(raw),
        },
        path=path,
    )
    return frontmatter.training


# ----------------------------------------------------------------- back to YAML


def _unstructure_settings(cls: type) -> Any:
    """Declared keys only (not ``line``), defaults left out unless the key is required."""
    declared = settings_of(cls)
    overrides: dict[str, Any] = {
        field.name: override(omit=True)
        if field.name not in declared
        else override(omit_if_default=not declared[field.name][1].required)
        for field in attrs.fields(cls)
    }
    return make_dict_unstructure_fn(cls, _emit, _cattrs_omit_if_default=True, **overrides)


_emit = cattrs.Converter()
_emit.register_unstructure_hook_factory(attrs.has, _unstructure_settings)


def _flow_lists(cls: type, quoted: bool) -> frozenset[str]:
    """Keys (in ``cls`` or the records below it) whose lists are written on one line."""
    names: set[str] = set()
    for name, (_, declared) in settings_of(cls).items():
        if declared.flow and (declared.flow == "quoted" or not quoted):
            names.add(name)
        nested = declared.check.section or declared.check.items
        if nested is not None:
            names |= _flow_lists(nested, quoted)
    return frozenset(names)


_FLOW_LISTS = _flow_lists(Frontmatter, quoted=False)
_QUOTED_LISTS = _flow_lists(Frontmatter, quoted=True)


def _block_text_ok(text: str) -> bool:
    # Literal blocks cannot carry control characters or Unicode line separators.
    return all(char in "\n\t" or char.isprintable() for char in text)


def to_yaml(value: Any, *, key: str | None = None) -> Any:
    """Plain data → ruamel round-trip nodes in the house style."""
    if isinstance(value, Mapping):
        node = CommentedMap()
        for child_key, child in value.items():
            node[child_key] = to_yaml(child, key=child_key)
        return node
    if isinstance(value, list | tuple):
        if key not in _FLOW_LISTS:
            return CommentedSeq(to_yaml(item) for item in value)
        # Glob patterns are quoted like the docs write them; ruamel would also
        # emit a leading '?' bare in a flow list, which reads back as a mapping.
        seq = CommentedSeq(
            DoubleQuotedScalarString(item)
            if isinstance(item, str) and (key in _QUOTED_LISTS or item.startswith("?"))
            else to_yaml(item)
            for item in value
        )
        seq.fa.set_flow_style()
        return seq
    if isinstance(value, str) and "\n" in value and _block_text_ok(value):
        return LiteralScalarString(value)
    return value


def frontmatter_to_mapping(frontmatter: Frontmatter) -> CommentedMap:
    """The record as a clean mapping: required keys always, other defaults omitted."""
    return to_yaml(_emit.unstructure(frontmatter))


def section_mapping(record: Any) -> Any:
    """One record (training, export, a source) as YAML with defaults omitted."""
    return to_yaml(_emit.unstructure(record))


# ----------------------------------------------------------------- positions for callers

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def frontmatter_position(raw: Any, dotted: str, *, first_line: int = 2) -> Position:
    """Where ``dotted`` (``"training.sequence_len"``, ``"training.sources[1].path"``)
    is written in the frontmatter, as a document ``(line, col)``.

    For a key that is present, the position of its value (or of the key when
    the value is empty); for one that is absent, the position of its closest
    written parent; ``(1, 1)`` (the opening ``---``) when nothing is known.
    Lets code outside the parser report :class:`DocumentError` at the right place.
    """
    loc = Locator("<string>", first_line)
    pos: Position = (max(first_line - 1, 1), 1)
    node = raw
    for match in _STEP.finditer(dotted):
        key, index = match.group(1), match.group(2)
        if key is not None:
            if not isinstance(node, Mapping) or key not in node:
                return pos
            pos = loc.value(node, key, pos)
            node = node[key]
        else:
            item = int(index)
            if not isinstance(node, list) or item >= len(node):
                return pos
            pos = loc.item(node, item, pos)
            node = node[item]
    return pos


# ----------------------------------------------------------------- the docs' field tables


def _doc_value(value: Any) -> str:
    if isinstance(value, float) and 0 < abs(value) < 1e-3:
        mantissa, exponent = f"{value:.0e}".split("e")
        return f"`{mantissa}e{int(exponent)}`"  # 2e-4, as people write learning rates
    if isinstance(value, tuple):
        return f"`{json.dumps(list(value))}`"
    return f"`{value}`"


def settings_table(cls: type) -> str:
    """The keys ``cls`` declares as the Markdown table docs/format.md shows for them."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, (field, declared) in settings_of(cls).items():
        if declared.doc_default is not None:
            default = declared.doc_default
        elif is_required(field, declared):
            default = "required"
        elif field.default in (None, ()):
            default = "none"
        else:
            default = _doc_value(field.default)
        rows.append(f"| `{name}` | {declared.check.doc} | {default} | {declared.doc} |")
    return "\n".join(rows) + "\n"
