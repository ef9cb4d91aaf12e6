"""Everything about a document that can be known without loading a model.

Parse → resolve the base and family → expand ``training.sources`` → check
every image → build the examples. ``dlm train``, ``dlm show`` and
``dlm doctor`` all start here, so a bad document fails the same way, before
any model loads and before anything is written to the store.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from dlm.engine.document.examples import ExampleSet, build_examples
from dlm.engine.document.ingest import CheckedImage, check_images, refs_without_storing
from dlm.errors import DocumentError, UnknownBaseError
from dlm.family import Family
from dlm.format import expand_sources, parse_file
from dlm.format.document import Document
from dlm.plugins import get_registry
from dlm.records import BaseSpec
from dlm.store.paths import StorePaths


@attrs.frozen
class PreparedDocument:
    doc: Document  # sources expanded
    base: BaseSpec
    family: Family
    paths: StorePaths
    images: tuple[CheckedImage, ...]
    example_set: ExampleSet  # image refs point at the document's files


def _key_line(doc: Document, key: str) -> int:
    """The 1-based file line of a top-level frontmatter key (the body starts after ``---``)."""
    raw = doc.raw_frontmatter
    try:
        return int(raw.lc.key(key)[0]) + 2
    except (AttributeError, KeyError, TypeError):
        return 1


def prepare_document(
    doc_path: str | Path, *, allow_outside: bool = False, missing_ok: bool = False
) -> PreparedDocument:
    """Parse, expand sources, check images and build examples; nothing is written.

    ``missing_ok``: images that do not exist yet are kept (marked missing,
    see :func:`~dlm.engine.document.ingest.check_images`) so a new document can be planned.
    """
    doc = parse_file(Path(doc_path))
    registry = get_registry()
    try:
        base = registry.base(doc.frontmatter.base_model)
    except UnknownBaseError as exc:
        raise DocumentError(
            doc.display_path, _key_line(doc, "base_model"), 1, exc.message, hint=exc.hint
        ) from exc
    family = registry.family_for(base)
    expanded = expand_sources(doc, allow_outside=allow_outside)
    checked = check_images(expanded, allow_outside=allow_outside, missing_ok=missing_ok)
    notes = {image.section_index: image.notes for image in checked if image.notes}
    example_set = build_examples(expanded, family, refs_without_storing(checked), notes)
    return PreparedDocument(
        doc=expanded,
        base=base,
        family=family,
        paths=StorePaths.for_id(doc.frontmatter.dlm_id),
        images=tuple(checked),
        example_set=example_set,
    )
