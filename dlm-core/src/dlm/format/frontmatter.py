"""Split a document into frontmatter and body; read and write the YAML.

The frontmatter is YAML between a first line ``---`` and the next ``---``
line. It is read with ruamel.yaml in round-trip mode so comments, key order
and quoting survive a write-back; YAML errors are reported at their real line
in the document, not the line inside the YAML snippet.
"""

from __future__ import annotations

import io
from typing import Any

import attrs
from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from dlm.errors import DocumentError

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


def yaml_round_trip() -> YAML:
    """The one ruamel.yaml configuration used to read and write frontmatter."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    # Block sequences indented under their key, the common hand-written style.
    yaml.indent(mapping=2, sequence=4, offset=2)
    # Never fold long values: a folded line could start with '---' and close
    # the frontmatter early.
    yaml.width = 1_000_000
    return yaml


def load_yaml(split: SplitDocument, path: str) -> Any:
    """The frontmatter as a round-trip mapping (or whatever the YAML holds)."""
    try:
        return yaml_round_trip().load(split.yaml_text)
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
    except YAMLError as exc:
        raise DocumentError(
            path,
            split.yaml_first_line,
            1,
            f"invalid YAML in the frontmatter: {exc}",
        ) from None


def dump_yaml(mapping: Any) -> str:
    buffer = io.StringIO()
    yaml_round_trip().dump(mapping, buffer)
    return buffer.getvalue()
