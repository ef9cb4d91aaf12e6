"""Split a document into frontmatter and body; read and write the YAML.

The frontmatter is YAML between a first line ``---`` and the next ``---``
line. It is read with ruamel.yaml in round-trip mode so comments, key order
and quoting survive a write-back; YAML errors are reported at their real line
in the document, not the line inside the YAML snippet.
"""

from __future__ import annotations

import io
import math
import re
from typing import Any

import attrs
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarfloat import ScalarFloat

from dlm.errors import DocumentError
from dlm.format.yaml_guard import check_yaml

FENCE = "---"


@attrs.frozen
class SplitDocument:
    """The two parts of a document, with the line numbers they start at (1-based)."""

    yaml_text: str
    yaml_first_line: int
    body_lines: tuple[str, ...]
    body_first_line: int


def normalize_newlines(text: str) -> str:
    """One newline convention (``\\n``) and no byte-order mark, so columns are honest."""
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


def split_document(text: str, path: str) -> SplitDocument:
    """Cut ``text`` (newlines already normalized) at its frontmatter fences."""
    lines = text.split("\n")
    if not text.strip():
        raise DocumentError(
            path,
            1,
            1,
            "document is empty",
            hint="a .dlm document starts with '---', the frontmatter keys, and '---'",
        )
    if lines[0].rstrip(" \t") != FENCE:
        raise DocumentError(
            path,
            1,
            1,
            "expected '---' on the first line to open the frontmatter",
            hint="start the document with '---', then dlm_id, dlm_version and base_model, then '---'",
        )
    for index in range(1, len(lines)):
        if lines[index].rstrip(" \t") == FENCE:
            return SplitDocument(
                yaml_text="\n".join(lines[1:index]) + "\n",
                yaml_first_line=2,
                body_lines=tuple(lines[index + 1 :]),
                body_first_line=index + 2,
            )
    raise DocumentError(
        path,
        1,
        1,
        "the frontmatter opened on line 1 is never closed",
        hint="add a '---' line after the last frontmatter key",
    )


class WrittenFloat(float):
    """A float read from the frontmatter, written back exactly as it was spelled.

    ruamel re-renders the floats it reads from a remembered layout, which can
    change the last digit (``5.960464477539063e-08`` → ``…062e-08``) or the
    spelling (``1_000.5`` → ``01000.5``); keeping the source text avoids both.
    """

    text: str

    def __new__(cls, value: float, text: str) -> WrittenFloat:
        obj = super().__new__(cls, value)
        obj.text = text
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (WrittenFloat, (float(self), self.text))


class _Representer(RoundTripRepresenter):
    pass


def _represent_written_float(representer: RoundTripRepresenter, data: WrittenFloat) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:float", data.text)


_Representer.add_representer(WrittenFloat, _represent_written_float)

_FLOAT_TEXT = re.compile(
    r"[-+]?(?:\.(?:inf|Inf|INF)|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
    r"|[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?)|\.(?:nan|NaN|NAN)"
)


def _source_float(value: float, lines: list[str], pos: tuple[int, int]) -> float:
    line, col = pos
    match = _FLOAT_TEXT.match(lines[line], col) if 0 <= line < len(lines) else None
    if match is None:
        return float(value)
    text = match.group(0)
    plain = text.replace("_", "").lower().lstrip("+")
    number = {".inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}.get(plain)
    if number is None:
        try:
            number = float(plain)
        except ValueError:
            return float(value)
    same = number == value or (math.isnan(number) and math.isnan(value))
    return WrittenFloat(value, text) if same else float(value)


def _pin_floats(node: Any, lines: list[str], seen: set[int] | None = None) -> None:
    """Swap every float ruamel read for one that remembers its source text."""
    # An alias shares its node: visit each node once (check_yaml bounded the total).
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if not isinstance(node, CommentedMap | CommentedSeq):
        return
    # A node ruamel built without positions (lc.data None) still gets its floats swapped.
    placed = node.lc.data or {}
    if isinstance(node, CommentedMap):
        entries = [(key, node.lc.value(key) if key in placed else None) for key in node]
    elif isinstance(node, CommentedSeq):
        entries = [(i, node.lc.item(i) if i in placed else None) for i in range(len(node))]
    for key, pos in entries:
        value = node[key]
        if isinstance(value, ScalarFloat):
            node[key] = _source_float(value, lines, pos) if pos is not None else float(value)
        else:
            _pin_floats(value, lines, seen)


def yaml_round_trip() -> YAML:
    """The one ruamel.yaml configuration used to read and write frontmatter."""
    yaml = YAML(typ="rt")
    yaml.Representer = _Representer
    yaml.preserve_quotes = True
    # Block sequences indented under their key, the common hand-written style.
    yaml.indent(mapping=2, sequence=4, offset=2)
    # Never fold long values: a folded line could start with '---' and close
    # the frontmatter early.
    yaml.width = 1_000_000
    return yaml


def load_yaml(split: SplitDocument, path: str) -> Any:
    """The frontmatter as a round-trip mapping (or whatever the YAML holds)."""
    yaml = yaml_round_trip()
    try:
        # Before anything is composed or walked: see dlm.format.yaml_guard.
        check_yaml(yaml_round_trip(), split.yaml_text, path=path, first_line=split.yaml_first_line)
        data = yaml.load(split.yaml_text)
    except DuplicateKeyError as exc:
        mark = exc.problem_mark
        key = exc.problem.split('"')[1] if exc.problem and '"' in exc.problem else "?"
        raise DocumentError(
            path,
            split.yaml_first_line + (mark.line if mark is not None else 0),
            (mark.column if mark is not None else 0) + 1,
            f"duplicate key '{key}' in the frontmatter",
            hint="keep one of them",
        ) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        ended = exc.problem or ""
        if exc.context_mark is not None and ("<stream end>" in ended or "end of stream" in ended):
            # An unclosed bracket or quote is only noticed at the end of the
            # frontmatter; the line that opened it is the one to fix.
            mark = exc.context_mark
            problem = f"{exc.context} that is never closed"
        # ruamel's duplicate-key message carries a paragraph of advice; keep the fact.
        problem = problem.split("\n")[0]
        line = split.yaml_first_line + (mark.line if mark is not None else 0)
        col = (mark.column if mark is not None else 0) + 1
        raise DocumentError(
            path,
            line,
            col,
            f"invalid YAML in the frontmatter: {problem}",
            hint="check the indentation and quoting of this line",
        ) from None
    except ReaderError as exc:
        # A character YAML forbids (most control characters): placed by its offset.
        before = split.yaml_text[: exc.position]
        char = exc.character
        shown = f"U+{char:04X}" if isinstance(char, int) else repr(char)
        raise DocumentError(
            path,
            split.yaml_first_line + before.count("\n"),
            len(before) - (before.rfind("\n") + 1) + 1,
            f"the frontmatter contains a character YAML does not allow ({shown})",
            hint='delete it, or write it as an escape inside double quotes ("\\uXXXX")',
        ) from None
    except YAMLError as exc:
        raise DocumentError(
            path,
            split.yaml_first_line,
            1,
            f"invalid YAML in the frontmatter: {exc}",
        ) from None
    _pin_floats(data, split.yaml_text.split("\n"))
    return data


def dump_yaml(mapping: Any) -> str:
    buffer = io.StringIO()
    yaml_round_trip().dump(mapping, buffer)
    return buffer.getvalue()
