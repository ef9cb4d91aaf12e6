"""Text → :class:`~dlm.format.document.Document`.

Parsing never touches the filesystem beyond reading the document itself:
image paths and ``training.sources`` are resolved later
(:mod:`dlm.format.paths`, :mod:`dlm.format.sources`).
"""

from __future__ import annotations

from pathlib import Path

from dlm.errors import DlmError, DocumentError
from dlm.format.document import Document
from dlm.format.frontmatter import load_yaml, normalize_newlines, split_document
from dlm.format.schema import frontmatter_from_mapping
from dlm.format.sections import parse_body


def parse(text: str, path: str | Path | None = None) -> Document:
    """Parse document text; ``path`` (where it came from) is used in errors and for
    resolving relative image paths."""
    doc_path = Path(path) if path is not None else None
    shown = str(doc_path) if doc_path is not None else "<string>"
    split = split_document(normalize_newlines(text), shown)
    raw = load_yaml(split, shown)
    frontmatter, raw = frontmatter_from_mapping(raw, path=shown, first_line=split.yaml_first_line)
    sections = parse_body(split.body_lines, split.body_first_line, shown)
    return Document(frontmatter, sections, path=doc_path, raw_frontmatter=raw)


def parse_file(path: str | Path) -> Document:
    """Read and parse a ``.dlm`` file (UTF-8)."""
    doc_path = Path(path)
    try:
        data = doc_path.read_bytes()
    except FileNotFoundError:
        raise DlmError(
            f"{doc_path}: no such file",
            hint="check the path, or create the document with `dlm init`",
            subject="document",
        ) from None
    except IsADirectoryError:
        raise DlmError(f"{doc_path} is a folder, not a .dlm document", subject="document") from None
    except OSError as exc:
        raise DlmError(
            f"cannot read {doc_path}: {exc.strerror or exc}", subject="document"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        line_start = before.rfind(b"\n") + 1
        col = len(before[line_start:].decode("utf-8", errors="replace")) + 1
        raise DocumentError(
            str(doc_path),
            line,
            col,
            "the document is not valid UTF-8 text",
            hint="save the file as UTF-8",
        ) from None
    return parse(text, doc_path)
