"""Resolve paths written in a document, refusing ones that leave its folder.

A document is a recipe other people run: an image path that is absolute, climbs
out with ``..``, or goes through a symlink to somewhere else would make
training read files the author of the folder never shared. Those are refused
unless the user passes ``--allow-outside``. Existence is not checked here.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from dlm.errors import DocumentError
from dlm.format.document import Document

OUTSIDE_HINT = "pass --allow-outside to allow it"


def _resolve(path: Path, shown: str, doc: Document, line: int, col: int) -> Path:
    try:
        return path.resolve()
    except (RuntimeError, OSError) as exc:  # a symlink loop (RuntimeError before 3.13)
        raise DocumentError(
            doc.display_path, line, col, f"cannot resolve '{shown}': {exc}"
        ) from None


def resolve_document_path(
    doc: Document, rel: str, line: int, *, allow_outside: bool = False, col: int = 1
) -> Path:
    """The absolute path of ``rel`` (relative to ``doc.folder``), symlinks resolved.

    Raises :class:`~dlm.errors.DocumentError` at ``line`` if ``rel`` is empty,
    or, unless ``allow_outside``, absolute, escaping with ``..``, or a symlink
    (or under one) that resolves outside the document's folder.
    """
    where = doc.display_path
    if not rel.strip():
        raise DocumentError(where, line, col, "empty path")
    if "\x00" in rel:
        raise DocumentError(where, line, col, f"path {rel!r} contains a NUL character")
    folder = _resolve(doc.folder, str(doc.folder), doc, line, col)
    target = Path(rel)
    if target.is_absolute():
        if not allow_outside:
            raise DocumentError(
                where,
                line,
                col,
                f"path '{rel}' is absolute; paths in a document are relative to its folder",
                hint=f"move the file under {folder} and write it relative to it, or "
                + OUTSIDE_HINT,
            )
        return _resolve(target, rel, doc, line, col)

    resolved = _resolve(folder / target, rel, doc, line, col)
    if allow_outside or resolved.is_relative_to(folder):
        return resolved
    lexical = posixpath.normpath(rel.replace(os.sep, "/"))
    if lexical == ".." or lexical.startswith("../"):
        message = f"path '{rel}' uses '..' to leave the document's folder ({folder})"
    else:
        message = (
            f"path '{rel}' goes through a symlink to {resolved}, "
            f"outside the document's folder ({folder})"
        )
    raise DocumentError(where, line, col, message, hint=OUTSIDE_HINT)
