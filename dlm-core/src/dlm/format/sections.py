"""The body grammar: fences, code blocks, and the sections they delimit.

A fence is a line starting at column 1 of the form ``::name::`` or
``::name key="value" …::`` (trailing spaces allowed). Lines inside ``` or
~~~ code blocks are never fences nor ``### Q``/``### A`` markers. Every
mistake is reported at its line and column; nothing silently becomes prose.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

import attrs

from dlm.errors import DocumentError
from dlm.format.document import ImageSection, InstructionSection, ProseSection, QAPair, Section

#: Fence name → the attributes it accepts, and which of them are required.
FENCES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "instruction": ((), ()),
    "prose": ((), ()),
    "image": (("path", "alt"), ("path",)),
}
QUESTION = "### Q"
ANSWER = "### A"

_BLANKS = " \t"
_FENCE_START = re.compile(r"::[A-Za-z]")
_SPACED_FENCE = re.compile(r"::[ \t]+[A-Za-z]")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_ATTR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_CODE_OPEN = re.compile(r"( {0,3})(`{3,}|~{3,})(.*)")
_FENCE_HINT = 'known fences: ::instruction::, ::image path="…" alt="…"::, ::prose::'


@attrs.frozen
class Fence:
    name: str
    attributes: dict[str, str]
    line: int


def is_blank(line: str) -> bool:
    return not line.strip(_BLANKS)


def trim_blank_lines(lines: Sequence[str]) -> str:
    """Section text: the lines without leading and trailing blank lines, joined."""
    start, end = 0, len(lines)
    while start < end and is_blank(lines[start]):
        start += 1
    while end > start and is_blank(lines[end - 1]):
        end -= 1
    return "\n".join(lines[start:end])


def code_mask(lines: Sequence[str], first_line: int, path: str) -> list[bool]:
    """For each line, whether it belongs to a code block (its fences included)."""
    mask = [False] * len(lines)
    index = 0
    while index < len(lines):
        opener = _CODE_OPEN.fullmatch(lines[index])
        if opener is None or (opener.group(2)[0] == "`" and "`" in opener.group(3)):
            index += 1
            continue
        indent, marks = opener.group(1), opener.group(2)
        closer = re.compile(rf" {{0,3}}{re.escape(marks[0])}{{{len(marks)},}}[ \t]*")
        end = index + 1
        while end < len(lines) and closer.fullmatch(lines[end]) is None:
            end += 1
        if end == len(lines):
            raise DocumentError(
                path,
                first_line + index,
                len(indent) + 1,
                f"code block opened with {marks} is never closed",
                hint=f"add a closing {marks} line",
            )
        for covered in range(index, end + 1):
            mask[covered] = True
        index = end + 1
    return mask


def looks_like_fence(line: str) -> bool:
    """Whether a line is meant as a fence (and so must be a valid one)."""
    text = line.rstrip(_BLANKS)
    if _FENCE_START.match(text):
        return True
    # ":: name::" is a fence with a stray space, not prose that happens to use colons.
    return _SPACED_FENCE.match(text) is not None and text.endswith("::")


def _known_fence_indented(line: str) -> bool:
    stripped = line.lstrip(_BLANKS)
    if stripped == line or not stripped.rstrip(_BLANKS).endswith("::"):
        return False
    match = _NAME.match(stripped, 2) if stripped.startswith("::") else None
    return match is not None and match.group(0) in FENCES


def parse_fence(line: str, line_no: int, path: str) -> Fence:
    """Read one fence line (known to start with ``::``) into its name and attributes."""
    text = line.rstrip(_BLANKS)

    def fail(col: int, message: str, hint: str | None = None) -> DocumentError:
        return DocumentError(path, line_no, col, message, hint=hint)

    if text[2] in _BLANKS:
        raise fail(3, "unexpected space after '::'", "write the fence name right after '::'")
    name_match = _NAME.match(text, 2)
    assert name_match is not None  # guaranteed by looks_like_fence
    name = name_match.group(0)
    if name not in FENCES:
        close = difflib.get_close_matches(name.lower(), list(FENCES), n=1, cutoff=0.6)
        hint = f"did you mean '::{close[0]}::'? " if close else ""
        raise fail(
            3,
            f"unknown fence '::{name}::'",
            hint + _FENCE_HINT + " (to write the line as text, indent it)",
        )
    allowed, required = FENCES[name]

    attributes: dict[str, str] = {}
    pos = name_match.end()
    n = len(text)
    while True:
        gap_start = pos
        while pos < n and text[pos] in _BLANKS:
            pos += 1
        if text.startswith("::", pos):
            if pos + 2 == n:
                break
            raise fail(pos + 3, "unexpected text after the closing '::'")
        if pos >= n:
            raise fail(
                n + 1,
                f"fence '::{name}' is not closed",
                "end the fence line with '::' (to write the line as text, indent it)",
            )
        if pos == gap_start:
            raise fail(pos + 1, f"unexpected character {text[pos]!r} in the fence")
        key_col = pos + 1
        key_match = _ATTR_NAME.match(text, pos)
        if key_match is None:
            raise fail(key_col, "expected an attribute (name=\"value\") or the closing '::'")
        key = key_match.group(0)
        pos = key_match.end()
        if not text.startswith("=", pos):
            raise fail(pos + 1, f"expected '=' right after the attribute name '{key}'")
        pos += 1
        if not text.startswith('"', pos):
            raise fail(
                pos + 1, f"the value of '{key}' must be in double quotes", f'write {key}="…"'
            )
        quote_col = pos + 1
        pos += 1
        chars: list[str] = []
        while True:
            if pos >= n:
                raise fail(quote_col, f"the value of '{key}' is missing its closing quote")
            char = text[pos]
            if char == "\\":
                escaped = text[pos + 1 : pos + 2]
                if escaped not in ('"', "\\"):
                    raise fail(
                        pos + 1,
                        f"unknown escape '\\{escaped}' in the value of '{key}'",
                        'inside a value write \\" for a quote and \\\\ for a backslash',
                    )
                chars.append(escaped)
                pos += 2
                continue
            if char == '"':
                pos += 1
                break
            chars.append(char)
            pos += 1
        if key not in allowed:
            if not allowed:
                raise fail(key_col, f"'::{name}::' takes no attributes")
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise fail(
                key_col,
                f"unknown attribute '{key}' on '::{name}::'",
                hint + "allowed: " + ", ".join(allowed),
            )
        if key in attributes:
            raise fail(key_col, f"duplicate attribute '{key}'")
        if not "".join(chars).strip() and key in required:
            raise fail(quote_col, f"the '{key}' attribute of '::{name}::' is empty")
        attributes[key] = "".join(chars)
    for key in required:
        if key not in attributes:
            raise fail(1, f"'::{name}::' needs a '{key}' attribute", f'write ::{name} {key}="…"::')
    return Fence(name, attributes, line_no)


def _instruction(fence: Fence, lines: Sequence[str], mask: Sequence[bool], path: str) -> Section:
    first = fence.line + 1
    pairs: list[QAPair] = []
    question_line = answer_line = 0
    question: list[str] = []
    answer: list[str] = []
    state = "start"  # → "question" → "answer" → "question" …

    def close_pair() -> None:
        q_text, a_text = trim_blank_lines(question), trim_blank_lines(answer)
        if not q_text:
            raise DocumentError(
                path, question_line, 1, "empty question", hint="write the question below '### Q'"
            )
        if not a_text:
            raise DocumentError(
                path, answer_line, 1, "empty answer", hint="write the answer below '### A'"
            )
        pairs.append(QAPair(q_text, a_text, line=question_line))

    def unanswered() -> DocumentError:
        return DocumentError(
            path,
            question_line,
            1,
            "'### Q' has no '### A'",
            hint="add a '### A' line and the answer after the question",
        )

    for offset, line in enumerate(lines):
        line_no = first + offset
        marker = None if mask[offset] else line.rstrip(_BLANKS)
        if marker == QUESTION:
            if state == "question":
                raise unanswered()
            if state == "answer":
                close_pair()
            state, question_line, question = "question", line_no, []
        elif marker == ANSWER:
            if state != "question":
                raise DocumentError(
                    path,
                    line_no,
                    1,
                    "'### A' without a '### Q' before it",
                    hint="start each pair with a '### Q' line and the question",
                )
            state, answer_line, answer = "answer", line_no, []
        elif state == "start":
            if not is_blank(line):
                col = len(line) - len(line.lstrip(_BLANKS)) + 1
                raise DocumentError(
                    path,
                    line_no,
                    col,
                    "text before the first '### Q' in '::instruction::'",
                    hint="start with a '### Q' line; put free text in a '::prose::' section",
                )
        elif state == "question":
            question.append(line)
        else:
            answer.append(line)
    if state == "question":
        raise unanswered()
    if state == "answer":
        close_pair()
    if not pairs:
        raise DocumentError(
            path,
            fence.line,
            1,
            "'::instruction::' has no '### Q' / '### A' pairs",
            hint="write '### Q', the question, '### A', the answer",
        )
    return InstructionSection(tuple(pairs), line=fence.line)


def parse_body(lines: Sequence[str], first_line: int, path: str) -> tuple[Section, ...]:
    """The sections of a body whose first line is document line ``first_line``."""
    mask = code_mask(lines, first_line, path)
    fences: list[tuple[int, Fence]] = []
    for index, line in enumerate(lines):
        if mask[index]:
            continue
        line_no = first_line + index
        if looks_like_fence(line):
            fences.append((index, parse_fence(line, line_no, path)))
        elif _known_fence_indented(line):
            raise DocumentError(
                path,
                line_no,
                1,
                "a fence must start at column 1",
                hint="remove the spaces before '::', or put the line in a code block",
            )

    sections: list[Section] = []
    preamble_end = fences[0][0] if fences else len(lines)
    preamble = trim_blank_lines(lines[:preamble_end])
    if preamble:
        first_text = next(i for i in range(preamble_end) if not is_blank(lines[i]))
        sections.append(ProseSection(preamble, line=first_line + first_text))
    for number, (index, fence) in enumerate(fences):
        end = fences[number + 1][0] if number + 1 < len(fences) else len(lines)
        body, body_mask = lines[index + 1 : end], mask[index + 1 : end]
        if fence.name == "instruction":
            sections.append(_instruction(fence, body, body_mask, path))
        elif fence.name == "image":
            sections.append(
                ImageSection(
                    path=fence.attributes["path"],
                    alt=fence.attributes.get("alt"),
                    caption=trim_blank_lines(body),
                    line=fence.line,
                )
            )
        else:
            text = trim_blank_lines(body)
            if not text:
                raise DocumentError(
                    path,
                    fence.line,
                    1,
                    "'::prose::' section is empty",
                    hint="write text after it, or remove the fence",
                )
            sections.append(ProseSection(text, line=fence.line))
    return tuple(sections)
