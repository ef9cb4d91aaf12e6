"""The frontmatter schema: validate the raw YAML mapping into records, and back.

Validation walks the round-trip mapping so every error points at the line and
column of the offending key or value. The checked values are then structured
into the :mod:`dlm.format.document` records with cattrs; the reverse direction
(records → a clean mapping with defaults omitted) is what ``dlm init`` writes.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any, NoReturn

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn, override
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

from dlm.errors import DocumentError
from dlm.format import migrations
from dlm.format.document import (
    CURRENT_VERSION,
    ExportSettings,
    Frontmatter,
    Source,
    TrainingSettings,
)
from dlm.format.globs import glob_to_regex

ADAPTERS = ("lora",)
LR_SCHEDULERS = ("cosine", "linear", "constant")
PRECISIONS = ("bf16", "fp16", "fp32")
ULID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_ULID_RE = re.compile(f"[0-7][{ULID_ALPHABET}]{{25}}")
_MAX_SEED = 2**32 - 1

Position = tuple[int, int]


# ----------------------------------------------------------------- locating


@attrs.frozen
class _Locator:
    """Turns ruamel's 0-based positions inside the YAML into document positions."""

    path: str
    first_line: int

    def _pos(self, line0: int, col0: int) -> Position:
        return (self.first_line + line0, col0 + 1)

    def key(self, node: Any, key: Any, fallback: Position) -> Position:
        try:
            line0, col0 = node.lc.key(key)
        except (AttributeError, KeyError, TypeError):
            return fallback
        return self._pos(line0, col0)

    def value(self, node: Any, key: Any, fallback: Position) -> Position:
        key_pos = self.key(node, key, fallback)
        if node.get(key) is None:
            # ruamel places an empty value at the next token, often the next line.
            return key_pos
        try:
            line0, col0 = node.lc.value(key)
        except (AttributeError, KeyError, TypeError):
            return key_pos
        return self._pos(line0, col0)

    def item(self, node: Any, index: int, fallback: Position) -> Position:
        try:
            line0, col0 = node.lc.item(index)
        except (AttributeError, KeyError, TypeError, IndexError):
            return fallback
        return self._pos(line0, col0)

    def error(self, pos: Position, message: str, hint: str | None = None) -> DocumentError:
        return DocumentError(self.path, pos[0], pos[1], message, hint=hint)


@attrs.frozen
class _Ctx:
    """One value under validation: its dotted name and where it is written."""

    loc: _Locator
    name: str
    pos: Position

    def fail(self, message: str, hint: str | None = None) -> NoReturn:
        raise self.loc.error(self.pos, message, hint)


Check = Callable[[Any, _Ctx], Any]


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if _is_bool(value):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, Sequence):
        return "a list"
    return str(value)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool | ScalarBoolean)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not _is_bool(value)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and not _is_bool(value)


# ----------------------------------------------------------------- value checks


def _int_at_least(minimum: int, what: str, maximum: int | None = None) -> Check:
    def check(value: Any, ctx: _Ctx) -> int:
        if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
            ctx.fail(f"{ctx.name} must be {what}, got {_describe(value)}")
        return int(value)

    return check


_positive_int = _int_at_least(1, "a positive integer")


def _optional(check: Check) -> Check:
    def optional(value: Any, ctx: _Ctx) -> Any:
        return None if value is None else check(value, ctx)

    return optional


def _number_in(low: float, high: float | None, *, low_open: bool, high_open: bool) -> Check:
    low_sign = "<" if low_open else "<="
    if high is None:
        what = f"a number {'>' if low_open else '>='} {low:g}"
    else:
        high_sign = "<" if high_open else "<="
        what = f"a number with {low:g} {low_sign} x {high_sign} {high:g}"

    def check(value: Any, ctx: _Ctx) -> float:
        ok = _is_number(value) and math.isfinite(value)
        if ok:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            ctx.fail(f"{ctx.name} must be {what}, got {_describe(value)}")
        return float(value)

    return check


def _choice(options: Sequence[str], *, nullable: bool = False) -> Check:
    listed = ", ".join(options)

    def check(value: Any, ctx: _Ctx) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str) or value not in options:
            hint = None
            if isinstance(value, str):
                close = difflib.get_close_matches(value.lower(), options, n=1, cutoff=0.5)
                hint = f"did you mean '{close[0]}'?" if close else None
            suffix = " (or leave it out)" if nullable else ""
            ctx.fail(f"{ctx.name} must be one of: {listed}{suffix}; got {_describe(value)}", hint)
        return str(value)

    return check


def _text(*, nullable: bool = False) -> Check:
    def check(value: Any, ctx: _Ctx) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value.strip():
            hint = "quote it" if _is_number(value) or _is_bool(value) else None
            ctx.fail(f"{ctx.name} must be a non-empty string, got {_describe(value)}", hint)
        return str(value)

    return check


def _ulid(value: Any, ctx: _Ctx) -> str:
    if isinstance(value, str) and _ULID_RE.fullmatch(value):
        return str(value)
    hint = "`dlm init` writes a fresh one; or run: python -c 'import ulid; print(ulid.ULID())'"
    if isinstance(value, str) and _ULID_RE.fullmatch(value.upper()):
        hint = f"ULIDs are written in upper case: {value.upper()}"
    ctx.fail(f"dlm_id must be a 26-character ULID (Crockford base32), got {_describe(value)}", hint)


def _version(value: Any, ctx: _Ctx) -> int:
    # The raw mapping was migrated before validation, so only the current one is left.
    if value != CURRENT_VERSION:
        ctx.fail(f"dlm_version must be {CURRENT_VERSION}, got {_describe(value)}")
    return CURRENT_VERSION


def _string_list(value: Any, ctx: _Ctx, *, what: str) -> tuple[str, ...]:
    """A non-empty list of non-empty strings; a single string is a list of one."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not value:
        ctx.fail(f"{ctx.name} must be {what}, got {_describe(value)}")
    out = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            pos = ctx.loc.item(value, index, ctx.pos)
            raise ctx.loc.error(
                pos, f"{ctx.name}[{index}] must be a non-empty string, got {_describe(item)}"
            )
        out.append(str(item))
    return tuple(out)


def _target_modules(value: Any, ctx: _Ctx) -> str | tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            ctx.fail("training.target_modules must not be empty")
        try:
            re.compile(value)
        except re.error as exc:
            ctx.fail(
                f"training.target_modules is not a valid regular expression: {exc.msg}",
                hint="write a Python regex matched against full module names, "
                "or a list of module names",
            )
        return str(value)
    return _string_list(value, ctx, what="a regular expression or a list of module names")


def _patterns(value: Any, ctx: _Ctx) -> tuple[str, ...]:
    if isinstance(value, Sequence) and not isinstance(value, str) and not value:
        return ()
    patterns = _string_list(value, ctx, what="a glob pattern or a list of glob patterns")
    for index, pattern in enumerate(patterns):
        pos = ctx.pos if isinstance(value, str) else ctx.loc.item(value, index, ctx.pos)
        if pattern.startswith("/") or pattern.startswith("../") or pattern == "..":
            raise ctx.loc.error(
                pos,
                f"{ctx.name} pattern '{pattern}' is not relative to the source folder",
                hint="patterns match paths inside the source folder, like '**/*.png'",
            )
        try:
            glob_to_regex(pattern)
        except re.error as exc:
            raise ctx.loc.error(
                pos, f"{ctx.name} has an invalid glob pattern '{pattern}': {exc.msg}"
            ) from None
    return patterns


def _sources(value: Any, ctx: _Ctx) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        ctx.fail(
            f"training.sources must be a list of folders, got {_describe(value)}",
            hint="write each source as a list item: '- path: ./figures'",
        )
    out = []
    for index, item in enumerate(value):
        pos = ctx.loc.item(value, index, ctx.pos)
        name = f"training.sources[{index}]"
        if not isinstance(item, Mapping):
            raise ctx.loc.error(
                pos,
                f"{name} must be a mapping with a 'path', got {_describe(item)}",
                hint="write it as '- path: ./figures'",
            )
        fields = _check_mapping(
            item, _SOURCE_SPEC, ctx.loc, name=name, missing_pos=pos, required=("path",)
        )
        fields["line"] = ctx.loc.key(item, "path", pos)[0]
        out.append(fields)
    return tuple(out)


# ----------------------------------------------------------------- mappings


def _nested(spec: Mapping[str, Check], required: Sequence[str] = ()) -> Check:
    def check(value: Any, ctx: _Ctx) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            ctx.fail(f"{ctx.name} must be a mapping of settings, got {_describe(value)}")
        return _check_mapping(
            value, spec, ctx.loc, name=ctx.name, missing_pos=ctx.pos, required=required
        )

    return check


def _unknown_key_hint(key: Any, known: Sequence[str], name: str) -> str:
    text = str(key)
    close = difflib.get_close_matches(text, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    homes = [
        (home, spec)
        for home, spec in (("training", _TRAINING_SPEC), ("export", _EXPORT_SPEC))
        if home != name
    ]
    for home, spec in homes:
        if text in spec:
            return f"'{text}' belongs under '{home}:' (indent it below that key)"
    if name != "" and text in _TOP_SPEC:
        return f"'{text}' is a top-level key (move it out of '{name}:')"
    return "known keys: " + ", ".join(known)


def _check_mapping(
    node: Mapping[Any, Any],
    spec: Mapping[str, Check],
    loc: _Locator,
    *,
    name: str,
    missing_pos: Position,
    required: Sequence[str] = (),
) -> dict[str, Any]:
    prefix = f"{name}." if name else ""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in spec:
            where = f"in '{name}'" if name else "in the frontmatter"
            raise loc.error(
                loc.key(node, key, missing_pos),
                f"unknown key '{key}' {where}",
                _unknown_key_hint(key, list(spec), name),
            )
        ctx = _Ctx(loc, prefix + key, loc.value(node, key, missing_pos))
        out[key] = spec[key](value, ctx)
    for key in required:
        if key not in node:
            where = name or "the frontmatter"
            raise loc.error(
                missing_pos,
                f"{where} is missing the required key '{key}'",
                "every document needs dlm_id, dlm_version and base_model; `dlm init` writes them"
                if not name
                else f"add '{key}: …' to it",
            )
    return out


_SOURCE_SPEC: dict[str, Check] = {
    "path": _text(),
    "include": _patterns,
    "exclude": _patterns,
}

_TRAINING_SPEC: dict[str, Check] = {
    "adapter": _choice(ADAPTERS),
    "lora_r": _positive_int,
    "lora_alpha": _positive_int,
    "lora_dropout": _number_in(0.0, 1.0, low_open=False, high_open=True),
    "target_modules": _target_modules,
    "sequence_len": _optional(_positive_int),
    "micro_batch_size": _optional(_positive_int),
    "grad_accum": _optional(_positive_int),
    "learning_rate": _number_in(0.0, None, low_open=True, high_open=False),
    "num_epochs": _positive_int,
    "lr_scheduler": _choice(LR_SCHEDULERS),
    "warmup_ratio": _number_in(0.0, 1.0, low_open=False, high_open=True),
    "precision": _choice(PRECISIONS, nullable=True),
    "seed": _int_at_least(0, f"an integer from 0 to {_MAX_SEED}", _MAX_SEED),
    "sources": _sources,
}

_EXPORT_SPEC: dict[str, Check] = {
    "default_quant": _text(),
    "default_temperature": _number_in(0.0, None, low_open=False, high_open=False),
    "default_top_p": _number_in(0.0, 1.0, low_open=True, high_open=False),
}

_TOP_SPEC: dict[str, Check] = {
    "dlm_id": _ulid,
    "dlm_version": _version,
    "base_model": _text(),
    "system_prompt": _text(nullable=True),
    "training": _nested(_TRAINING_SPEC),
    "export": _nested(_EXPORT_SPEC),
}

_REQUIRED = ("dlm_id", "dlm_version", "base_model")


# ----------------------------------------------------------------- records

_structure = cattrs.Converter()
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
    loc = _Locator(path, first_line)
    opening: Position = (max(first_line - 1, 1), 1)
    if not isinstance(raw, MutableMapping):
        message = (
            "the frontmatter is empty"
            if raw is None
            else f"the frontmatter must be a mapping of keys, got {_describe(raw)}"
        )
        raise loc.error(
            opening if raw is None else (first_line, 1),
            message,
            "write 'key: value' lines: dlm_id, dlm_version and base_model are required",
        )
    if "dlm_version" not in raw:
        raise loc.error(
            opening,
            "the frontmatter is missing the required key 'dlm_version'",
            f"add 'dlm_version: {CURRENT_VERSION}' (the schema this document is written for)",
        )
    version = raw["dlm_version"]
    version_pos = loc.value(raw, "dlm_version", opening)
    if not _is_int(version) or version < 1:
        raise loc.error(
            version_pos,
            f"dlm_version must be a positive integer (the schema version, "
            f"currently {CURRENT_VERSION}), got {_describe(version)}",
        )
    try:
        raw = migrations.migrate(raw, int(version))
    except migrations.SchemaVersionError as exc:
        raise loc.error(version_pos, exc.message, exc.hint) from None
    fields = _check_mapping(raw, _TOP_SPEC, loc, name="", missing_pos=opening, required=_REQUIRED)
    return _structure.structure(fields, Frontmatter), raw


# ----------------------------------------------------------------- back to YAML

_emit = cattrs.Converter()
_EMIT_OVERRIDES: tuple[tuple[type, dict[str, Any]], ...] = (
    (Source, {"line": override(omit=True)}),
    (TrainingSettings, {}),
    (ExportSettings, {}),
    (Frontmatter, {"dlm_version": override(omit_if_default=False)}),
)
for _cls, _overrides in _EMIT_OVERRIDES:
    _emit.register_unstructure_hook(
        _cls,
        make_dict_unstructure_fn(_cls, _emit, _cattrs_omit_if_default=True, **_overrides),
    )

_TOP_ORDER = ("dlm_id", "dlm_version", "base_model", "system_prompt", "training", "export")
_FLOW_LISTS = ("include", "exclude", "target_modules")
_QUOTED_LISTS = ("include", "exclude")


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
    data = _emit.unstructure(frontmatter)
    ordered = {key: data[key] for key in _TOP_ORDER if key in data}
    return to_yaml(ordered)


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
    loc = _Locator("<string>", first_line)
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
