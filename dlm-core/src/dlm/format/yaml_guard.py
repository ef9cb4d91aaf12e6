"""Refuse frontmatter YAML that would make reading it slow, deep or unsafe.

ruamel.yaml builds whatever the YAML describes: aliases share nodes that
every later walk (float pinning, validation, serializing) visits once per
reference, so nine aliases of nine aliases… grow the work ×9 per level; a
tag can name any Python constructor; a merge key (``<<``) or ``!!omap``
builds nodes without line information; nesting a few hundred levels deep
exhausts Python's recursion limit in the composer; and a 5,000-digit
integer trips Python's int-string limit. None of that is a setting a
``.dlm`` document needs.

:func:`check_yaml` reads ruamel's *event* stream, which its parser produces
with an explicit state stack (no recursion, nothing constructed), and stops
at the first such construct with a :class:`DocumentError` at its line and
column, before anything is composed or walked. YAML syntax errors are left
to raise from here as ruamel's own errors, which the caller already places.
"""

from __future__ import annotations

from typing import Any

import attrs
from ruamel.yaml import YAML
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    MappingStartEvent,
    ScalarEvent,
)
from ruamel.yaml.nodes import ScalarNode

from dlm.errors import DocumentError

#: Deepest nesting accepted. The schema needs five levels (top → training →
#: sources → a source → its include list); the limit is far from both that
#: and the ~300 levels where ruamel's recursive composer fails.
MAX_DEPTH = 32
#: Most values (scalars and collections, each alias counted as the whole
#: value it repeats) one frontmatter may hold. Real ones hold tens.
MAX_VALUES = 10_000
#: Longest integer accepted, in digits. Settings top out at 2**32 - 1.
MAX_DIGITS = 100

_CORE = "tag:yaml.org,2002:"
#: Explicit tags with a plain meaning; anything else (``!!omap``, ``!!set``,
#: ``!!python/…``, local ``!tags``) would construct something no setting takes.
_ALLOWED_TAGS = frozenset(
    _CORE + name for name in ("str", "int", "float", "bool", "null", "map", "seq")
)
#: Implicitly resolved scalar types whose construction can fail on odd text
#: (``2001-13-45`` resolves as a timestamp that does not exist).
_CONSTRUCTED = frozenset(_CORE + name for name in ("int", "float", "bool", "null", "timestamp"))
_KINDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "null": "nothing",
    "timestamp": "a date",
}


@attrs.define
class _Open:
    """A collection whose end event has not come yet."""

    mapping: bool
    anchor: str | None
    size: int = 1  # itself plus everything under it, aliases expanded
    children: int = 0  # in a mapping, even counts mean the next child is a key


def _shown_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


def _explicit_tag(event: Any) -> str | None:
    tag = event.tag
    # '!' alone is the non-specific tag: "resolve as usual", like no tag.
    return None if tag is None or tag == "!" else str(tag)


def check_yaml(yaml: YAML, text: str, *, path: str, first_line: int) -> None:
    """Raise :class:`DocumentError` at the first construct dlm refuses in ``text``."""

    def fail(event: Any, message: str, hint: str) -> DocumentError:
        mark = event.start_mark
        return DocumentError(path, first_line + mark.line, mark.column + 1, message, hint=hint)

    stack: list[_Open] = []
    sizes: dict[str, int] = {}  # anchor → size of what it names, aliases expanded
    total = 0

    def count(event: Any, size: int, *, alias: bool = False) -> None:
        nonlocal total
        total += size
        if total > MAX_VALUES:
            raise fail(
                event,
                f"the frontmatter {'expands to' if alias else 'holds'} more than "
                f"{MAX_VALUES:,} values"
                + (" (an alias counts as all the values it repeats)" if alias else ""),
                "write the values out, without aliases ('*name')"
                if alias
                else "a .dlm frontmatter holds a few settings; move data into sections",
            )

    def child(size: int) -> None:
        if stack:
            stack[-1].size += size
            stack[-1].children += 1

    for event in yaml.parse(text):
        if isinstance(event, ScalarEvent | CollectionStartEvent):
            tag = _explicit_tag(event)
            if tag is not None and tag not in _ALLOWED_TAGS:
                raise fail(
                    event,
                    f"the YAML tag '{_shown_tag(tag)}' is not allowed in the frontmatter",
                    "remove the tag: settings are plain text, numbers, lists and mappings",
                )
        anchor = None if isinstance(event, AliasEvent) else getattr(event, "anchor", None)
        if anchor is not None and (anchor in sizes or any(f.anchor == anchor for f in stack)):
            # ruamel only warns, and an alias then means the later value.
            raise fail(
                event, f"the anchor '&{anchor}' is defined twice", "give each anchor its own name"
            )
        if isinstance(event, CollectionStartEvent):
            parent = stack[-1] if stack else None
            if parent is not None and parent.mapping and parent.children % 2 == 0:
                # ruamel cannot hash a key holding a list, and no setting has such keys.
                raise fail(
                    event,
                    "a list or mapping cannot be a key in the frontmatter",
                    "keys are plain names like 'training' or 'lora_r'",
                )
            if len(stack) >= MAX_DEPTH:
                raise fail(
                    event,
                    f"the frontmatter nests more than {MAX_DEPTH} levels deep",
                    "no setting nests that deep; check the brackets and indentation",
                )
            count(event, 1)
            stack.append(_Open(isinstance(event, MappingStartEvent), event.anchor))
        elif isinstance(event, CollectionEndEvent):
            closed = stack.pop()
            if closed.anchor is not None:
                sizes[closed.anchor] = closed.size
            child(closed.size)
        elif isinstance(event, AliasEvent):
            if any(frame.anchor == event.anchor for frame in stack):
                raise fail(
                    event,
                    f"the alias '*{event.anchor}' is inside the value it refers to",
                    "a value cannot contain itself; write it out instead",
                )
            # An unknown alias counts as one value; composing it raises ruamel's
            # own placed "found undefined alias" error.
            size = sizes.get(event.anchor, 1)
            count(event, size, alias=True)
            child(size)
        elif isinstance(event, ScalarEvent):
            _check_scalar(yaml, event, stack[-1] if stack else None, fail)
            if event.anchor is not None:
                sizes[event.anchor] = 1
            count(event, 1)
            child(1)


def _check_scalar(yaml: YAML, event: ScalarEvent, parent: _Open | None, fail: Any) -> None:
    tag = _explicit_tag(event)
    is_key = parent is not None and parent.mapping and parent.children % 2 == 0
    if is_key and tag is None and event.style is None and event.value == "<<":
        raise fail(
            event,
            "merge keys ('<<') are not supported in the frontmatter",
            "write the merged settings out under this key",
        )
    resolved = event.ctag if tag is not None else None
    if resolved is None:
        resolved = yaml.resolver.resolve(ScalarNode, event.value, event.implicit)
    name = str(resolved)
    if name not in _CONSTRUCTED:
        return
    kind = _KINDS[name[len(_CORE) :]]
    hint = (
        f"remove the '{_shown_tag(tag)}' tag, or write a value it accepts"
        if tag is not None
        else "quote it if it is meant as text"
    )
    digits = len(event.value.replace("_", "").lstrip("+-"))  # hex and octal digits too
    if name == _CORE + "int" and digits > MAX_DIGITS:
        raise fail(
            event,
            f"this number has {digits:,} digits; no setting takes more than {MAX_DIGITS}",
            hint,
        )
    node = ScalarNode(resolved, event.value, event.start_mark, event.end_mark, style=event.style)
    try:
        yaml.constructor.construct_non_recursive_object(node)
    except Exception as exc:  # whatever ruamel raises, the value is the document's mistake
        shown = event.value if len(event.value) <= 40 else event.value[:37] + "…"
        reason = getattr(exc, "problem", None) or str(exc) or type(exc).__name__
        raise fail(
            event,
            f"'{shown}' cannot be read as {kind}: {str(reason).splitlines()[0]}",
            hint,
        ) from None
