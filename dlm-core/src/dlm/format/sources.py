"""Expand ``training.sources`` directives into image sections.

Each directive names a folder (relative to the document) and glob patterns
matched against paths relative to that folder. Every image found becomes an
:class:`~dlm.format.document.ImageSection` with ``alt`` = the file stem and,
when a ``<stem>.txt`` sidecar sits beside it, that text as the caption.
Order is deterministic: directives in document order, images sorted by their
relative POSIX path.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import attrs

from dlm.errors import DocumentError
from dlm.format.document import Document, ImageSection, Source
from dlm.format.globs import matches
from dlm.format.paths import resolve_document_path

SIDECAR_SUFFIX = ".txt"


def _walk(root: Path, doc: Document, source: Source) -> list[str]:
    """Relative POSIX paths of the files under ``root``; symlinked folders are
    followed once (a loop is cut where it would revisit a folder)."""
    found: list[str] = []
    seen: set[str] = set()

    def unreadable(exc: OSError) -> None:
        # A folder that cannot be listed would silently drop its images.
        raise DocumentError(
            doc.display_path,
            source.line,
            1,
            f"cannot read folder {exc.filename} of source '{source.path}': {exc.strerror or exc}",
        )

    for current, dirs, files in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        rel_dir = Path(current).relative_to(root).as_posix()
        for name in files:
            found.append(name if rel_dir == "." else f"{rel_dir}/{name}")
    return sorted(found)


def _caption(doc: Document, image_rel: str, source: Source, allow_outside: bool) -> str:
    stem, _ = posixpath.splitext(image_rel)
    sidecar_rel = stem + SIDECAR_SUFFIX
    sidecar = resolve_document_path(doc, sidecar_rel, source.line, allow_outside=allow_outside)
    if not sidecar.is_file():
        return ""
    try:
        text = sidecar.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DocumentError(
            doc.display_path,
            source.line,
            1,
            f"caption file '{sidecar_rel}' is not valid UTF-8 text",
            hint="save it as UTF-8",
        ) from None
    except OSError as exc:
        raise DocumentError(
            doc.display_path,
            source.line,
            1,
            f"cannot read caption file '{sidecar_rel}': {exc.strerror or exc}",
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def _expand_one(doc: Document, source: Source, allow_outside: bool) -> list[ImageSection]:
    folder = resolve_document_path(doc, source.path, source.line, allow_outside=allow_outside)
    if not folder.exists():
        raise DocumentError(
            doc.display_path,
            source.line,
            1,
            f"source folder '{source.path}' does not exist (looked in {folder})",
            hint="create it and put images in it, or fix training.sources",
        )
    if not folder.is_dir():
        raise DocumentError(
            doc.display_path,
            source.line,
            1,
            f"source '{source.path}' is not a folder",
            hint="training.sources lists folders; write single images as ::image:: sections",
        )
    base = posixpath.normpath(source.path.replace(os.sep, "/"))
    sections = []
    for rel in _walk(folder, doc, source):
        if rel.lower().endswith(SIDECAR_SUFFIX):
            continue  # captions, never images
        if not matches(rel, source.include) or matches(rel, source.exclude):
            continue
        image_rel = rel if base == "." else f"{base}/{rel}"
        # Refuses an image that is a symlink out of the document's folder.
        resolve_document_path(doc, image_rel, source.line, allow_outside=allow_outside)
        sections.append(
            ImageSection(
                path=image_rel,
                alt=posixpath.splitext(posixpath.basename(rel))[0],
                caption=_caption(doc, image_rel, source, allow_outside),
                line=source.line,
                from_source=source.path,
            )
        )
    return sections


def expand_sources(doc: Document, *, allow_outside: bool = False) -> Document:
    """``doc`` with one image section per file found by its source directives,
    after the authored sections. Expanding twice gives the same document."""
    authored = tuple(
        section
        for section in doc.sections
        if not (isinstance(section, ImageSection) and section.from_source is not None)
    )
    expanded: list[ImageSection] = []
    seen: set[str] = set()
    for source in doc.frontmatter.training.sources:
        for section in _expand_one(doc, source, allow_outside):
            # Two directives over the same folder would train an image twice.
            if section.path not in seen:
                seen.add(section.path)
                expanded.append(section)
    return attrs.evolve(doc, sections=authored + tuple(expanded))
