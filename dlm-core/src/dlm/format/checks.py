"""Checks for frontmatter values, and the walk that applies a record's checks.

A record in :mod:`dlm.format.document` declares each frontmatter key once, as
a field whose metadata is a :func:`setting`: its check (below), whether it is
required, and its line in the docs. :func:`check_mapping` walks a raw YAML
mapping against those declarations, so every error points at the line and
column of the offending key or value. A :class:`Check` also says, in the
docs' words, what it accepts: the field table in docs/format.md is generated
from the same declaration (:func:`dlm.format.schema.settings_table`).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import attrs
from ruamel.yaml.scalarbool import ScalarBoolean

from dlm.errors import DocumentError
from dlm.format.globs import glob_to_regex

ULID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_ULID_RE = re.compile(f"[0-7][{ULID_ALPHABET}]{{25}}")

Position = tuple[int, int]

# ----------------------------------------------------------------- locating


@attrs.frozen
class Locator:
    """Turns ruamel's 0-based positions inside the YAML into document positions.

    ``root`` is the record the whole mapping is checked against (``Frontmatter``):
    an unknown key's hint looks there for the section the key belongs to.
    """

    path: str
    first_line: int
    root: type | None = None

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
class Ctx:
    """One value under validation: its dotted name and where it is written."""

    loc: Locator
    name: str
    pos: Position

    def fail(self, message: str, hint: str | None = None) -> NoReturn:
        raise self.loc.error(self.pos, message, hint)


@attrs.frozen
class Check:
    """Validates one raw value (raising at its position) and returns it cleaned.

    ``doc`` is what it accepts, as the docs' "type" column says it. A value
    that holds records names their class: ``section`` for a nested mapping of
    settings (``training:``), ``items`` for a list of them (``sources:``).
    """

    run: Callable[[Any, Ctx], Any]
    doc: str
    section: type | None = None
    items: type | None = None

    def __call__(self, value: Any, ctx: Ctx) -> Any:
        return self.run(value, ctx)


# ----------------------------------------------------------------- declaring


@attrs.frozen
class Setting:
    """A frontmatter key, as a record field declares it (see :func:`setting`)."""

    check: Check
    doc: str
    required: bool = False
    #: The docs' "default" column where the field's default does not say it
    #: (``None`` that means "the planner decides", a nested record).
    doc_default: str | None = None
    #: A list the serializer writes on one line (``[a, b]``); ``"quoted"``
    #: also double-quotes its strings, as the docs write glob patterns.
    flow: bool | str = False


_SETTING = "dlm.setting"


def setting(
    check: Check,
    doc: str,
    *,
    required: bool = False,
    doc_default: str | None = None,
    flow: bool | str = False,
) -> dict[str, Setting]:
    """Field metadata declaring a frontmatter key: ``attrs.field(default=…, metadata=setting(…))``.

    A field without a default is required; ``required=True`` makes one with a
    default required too (``dlm_version``: written always, never assumed).
    """
    return {_SETTING: Setting(check, doc, required, doc_default, flow)}


def settings_of(cls: type) -> dict[str, tuple[attrs.Attribute[Any], Setting]]:
    """The declared keys of a record, in declaration order; other fields are not keys."""
    return {
        field.name: (field, field.metadata[_SETTING])
        for field in attrs.fields(cls)
        if _SETTING in field.metadata
    }


def is_required(field: attrs.Attribute[Any], declared: Setting) -> bool:
    return declared.required or field.default is attrs.NOTHING


def required_keys(cls: type) -> str:
    """``cls``'s required keys, for a hint: "dlm_id, dlm_version and base_model"."""
    keys = [
        key for key, (field, declared) in settings_of(cls).items() if is_required(field, declared)
    ]
    return ", ".join(keys[:-1]) + " and " + keys[-1] if len(keys) > 1 else "".join(keys)


# ----------------------------------------------------------------- describing values


def describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if is_bool(value):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, Sequence):
        return "a list"
    return str(value)


def is_bool(value: Any) -> bool:
    return isinstance(value, bool | ScalarBoolean)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not is_bool(value)


def _is_number(value: Any) -> bool:
    return (is_int(value) or isinstance(value, float)) and not is_bool(value)


# ----------------------------------------------------------------- value checks


def integer(minimum: int, maximum: int | None = None) -> Check:
    if maximum is None and minimum == 1:
        what, doc = "a positive integer", "positive integer"
    elif maximum is None:
        what, doc = f"an integer >= {minimum}", f"integer `>= {minimum}`"
    else:
        what, doc = f"an integer from {minimum} to {maximum}", f"integer `{minimum} … {maximum}`"

    def check(value: Any, ctx: Ctx) -> int:
        if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
            ctx.fail(f"{ctx.name} must be {what}, got {describe(value)}")
        return int(value)

    return Check(check, doc)


positive_int = integer(1)


def optional(check: Check) -> Check:
    """``check``, or nothing (``None``: the planner decides)."""
    return Check(lambda value, ctx: None if value is None else check(value, ctx), check.doc)


def number(low: float, high: float | None, *, low_open: bool, high_open: bool) -> Check:
    low_sign = "<" if low_open else "<="
    if high is None:
        bound = f"{'>' if low_open else '>='} {low:g}"
        what, doc = f"a number {bound}", f"number `{bound}`"
    else:
        high_sign = "<" if high_open else "<="
        bound = f"{low:g} {low_sign} x {high_sign} {high:g}"
        what, doc = f"a number with {bound}", f"number, `{bound}`"

    def check(value: Any, ctx: Ctx) -> float:
        ok = _is_number(value) and math.isfinite(value)
        if ok:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            ctx.fail(f"{ctx.name} must be {what}, got {describe(value)}")
        return float(value)

    return Check(check, doc)


def did_you_mean(value: str, options: Sequence[str]) -> str | None:
    """A hint naming the option closest to a mistyped ``value``, if one is close."""
    close = difflib.get_close_matches(value.lower(), options, n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'?" if close else None


def choice(options: Sequence[str], *, nullable: bool = False) -> Check:
    listed = ", ".join(options)

    def check(value: Any, ctx: Ctx) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str) or value not in options:
            hint = did_you_mean(value, options) if isinstance(value, str) else None
            suffix = " (or leave it out)" if nullable else ""
            ctx.fail(f"{ctx.name} must be one of: {listed}{suffix}; got {describe(value)}", hint)
        return str(value)

    return Check(check, ", ".join(f"`{option}`" for option in options))


def choices(options: Sequence[str], *, off: str) -> Check:
    """Any of ``options``: one name or a list of them (duplicates dropped, order kept).
    ``off`` alone, an empty list or nothing choose none."""
    listed = ", ".join(options)

    def check(value: Any, ctx: Ctx) -> tuple[str, ...]:
        if value is None or value == off:
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, Sequence) or isinstance(items, Mapping):
            ctx.fail(f"{ctx.name} must be a name or a list of names, got {describe(value)}")
        chosen: list[str] = []
        for index, item in enumerate(items):
            if isinstance(item, str) and item in options:
                if item not in chosen:
                    chosen.append(item)
                continue
            pos = ctx.pos if isinstance(value, str) else ctx.loc.item(items, index, ctx.pos)
            where = ctx.name if isinstance(value, str) else f"{ctx.name}[{index}]"
            raise ctx.loc.error(
                pos,
                f"{where} must be one of: {listed} (or '{off}'); got {describe(item)}",
                did_you_mean(item, options) if isinstance(item, str) else None,
            )
        return tuple(chosen)

    return Check(check, "name or list of: " + ", ".join(f"`{o}`" for o in options))


def text(*, nullable: bool = False) -> Check:
    def check(value: Any, ctx: Ctx) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value.strip():
            hint = "quote it" if _is_number(value) or is_bool(value) else None
            ctx.fail(f"{ctx.name} must be a non-empty string, got {describe(value)}", hint)
        return str(value)

    return Check(check, "string")


def _ulid(value: Any, ctx: Ctx) -> str:
    if isinstance(value, str) and _ULID_RE.fullmatch(value):
        return str(value)
    hint = "`dlm init` writes a fresh one; or run: python -c 'import ulid; print(ulid.ULID())'"
    if isinstance(value, str) and _ULID_RE.fullmatch(value.upper()):
        hint = f"ULIDs are written in upper case: {value.upper()}"
    ctx.fail(f"dlm_id must be a 26-character ULID (Crockford base32), got {describe(value)}", hint)


ulid = Check(_ulid, "string")


def exactly(version: int) -> Check:
    """The schema version: the raw mapping was migrated first, so only the current one is left."""

    def check(value: Any, ctx: Ctx) -> int:
        if value != version:
            ctx.fail(f"{ctx.name} must be {version}, got {describe(value)}")
        return version

    return Check(check, "integer")


def _string_list(value: Any, ctx: Ctx, *, what: str) -> tuple[str, ...]:
    """A non-empty list of non-empty strings; a single string is a list of one."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not value:
        ctx.fail(f"{ctx.name} must be {what}, got {describe(value)}")
    out = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            pos = ctx.loc.item(value, index, ctx.pos)
            raise ctx.loc.error(
                pos, f"{ctx.name}[{index}] must be a non-empty string, got {describe(item)}"
            )
        out.append(str(item))
    return tuple(out)


def _target_modules(value: Any, ctx: Ctx) -> str | tuple[str, ...] | None:
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


target_modules = Check(_target_modules, "regex string, or list of names")


def _held_out(value: Any, ctx: Ctx) -> str | int | float | tuple[str, ...]:
    if value in ("auto", "none"):
        return str(value)
    if is_int(value):
        if value < 0:
            ctx.fail(f"{ctx.name} must not be negative, got {value}")
        return int(value)
    if isinstance(value, float) and not is_bool(value):
        if not (0.0 < value < 1.0):
            ctx.fail(
                f"{ctx.name} as a number with a point is a fraction of the images "
                f"(0 < x < 1), got {value}",
                hint="for a count of images write a whole number (held_out: 2)",
            )
        return float(value)
    if isinstance(value, str) or (isinstance(value, Sequence) and not isinstance(value, str)):
        if isinstance(value, str):
            close = difflib.get_close_matches(value.lower(), ["auto", "none"], n=1, cutoff=0.6)
            if close:
                ctx.fail(
                    f"{ctx.name} must be auto, none, a count, a fraction or a list of image "
                    f"paths; got {describe(value)}",
                    f"did you mean '{close[0]}'?",
                )
        return _string_list(value, ctx, what="a list of image paths")
    ctx.fail(
        f"{ctx.name} must be auto, none, a count of images, a fraction of them (0 < x < 1) "
        f"or a list of image paths; got {describe(value)}"
    )


held_out = Check(_held_out, "`auto`, `none`, count, fraction or list of image paths")


def _patterns(value: Any, ctx: Ctx) -> tuple[str, ...]:
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


glob_patterns = Check(_patterns, "glob or list of globs")


# ----------------------------------------------------------------- records


def record(cls: type) -> Check:
    """A nested mapping of ``cls``'s settings (``training:``, ``export:``)."""

    def check(value: Any, ctx: Ctx) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            ctx.fail(f"{ctx.name} must be a mapping of settings, got {describe(value)}")
        return check_mapping(value, cls, ctx.loc, name=ctx.name, missing_pos=ctx.pos)

    return Check(check, "mapping", section=cls)


def folder_list(cls: type) -> Check:
    """``training.sources``: a list of ``cls`` mappings, each remembering its line."""

    def check(value: Any, ctx: Ctx) -> tuple[dict[str, Any], ...]:
        if value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, Sequence):
            ctx.fail(
                f"{ctx.name} must be a list of folders, got {describe(value)}",
                hint="write each source as a list item: '- path: ./figures'",
            )
        out = []
        for index, item in enumerate(value):
            pos = ctx.loc.item(value, index, ctx.pos)
            name = f"{ctx.name}[{index}]"
            if not isinstance(item, Mapping):
                raise ctx.loc.error(
                    pos,
                    f"{name} must be a mapping with a 'path', got {describe(item)}",
                    hint="write it as '- path: ./figures'",
                )
            fields = check_mapping(item, cls, ctx.loc, name=name, missing_pos=pos)
            fields["line"] = ctx.loc.key(item, "path", pos)[0]
            out.append(fields)
        return tuple(out)

    return Check(check, "list of sources", items=cls)


def _unknown_key_hint(key: Any, known: Sequence[str], name: str, root: type | None) -> str:
    text = str(key)
    close = difflib.get_close_matches(text, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    top = settings_of(root) if root is not None else {}
    for home, (_, declared) in top.items():
        section = declared.check.section
        if section is not None and home != name and text in settings_of(section):
            return f"'{text}' belongs under '{home}:' (indent it below that key)"
    if name != "" and text in top:
        return f"'{text}' is a top-level key (move it out of '{name}:')"
    return "known keys: " + ", ".join(known)


def check_mapping(
    node: Mapping[Any, Any], cls: type, loc: Locator, *, name: str, missing_pos: Position
) -> dict[str, Any]:
    """Check ``node`` against the settings ``cls`` declares; the checked values by key."""
    declared = settings_of(cls)
    prefix = f"{name}." if name else ""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in declared:
            where = f"in '{name}'" if name else "in the frontmatter"
            raise loc.error(
                loc.key(node, key, missing_pos),
                f"unknown key '{key}' {where}",
                _unknown_key_hint(key, list(declared), name, loc.root),
            )
        ctx = Ctx(loc, prefix + key, loc.value(node, key, missing_pos))
        out[key] = declared[key][1].check(value, ctx)
    for key, (field, setting_) in declared.items():
        if is_required(field, setting_) and key not in node:
            where = name or "the frontmatter"
            raise loc.error(
                missing_pos,
                f"{where} is missing the required key '{key}'",
                f"every document needs {required_keys(cls)}; `dlm init` writes them"
                if not name
                else f"add '{key}: …' to it",
            )
    return out
