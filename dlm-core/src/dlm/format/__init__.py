"""The ``.dlm`` document format: parse, validate, serialize, expand sources.

See ``docs/format.md`` for the grammar users write.
"""

from dlm.format.document import (
    CURRENT_VERSION,
    DEFAULT_IMAGE_INCLUDE,
    Document,
    ExportSettings,
    Frontmatter,
    ImageSection,
    InstructionSection,
    ProseSection,
    QAPair,
    Section,
    Source,
    TrainingSettings,
    section_id,
)
from dlm.format.migrations import migrate, migration, oldest_supported_version
from dlm.format.parser import parse, parse_file
from dlm.format.paths import resolve_document_path
from dlm.format.schema import (
    frontmatter_from_mapping,
    frontmatter_position,
    frontmatter_to_mapping,
)
from dlm.format.serializer import render_new_document, serialize
from dlm.format.sources import expand_sources

__all__ = [
    "CURRENT_VERSION",
    "DEFAULT_IMAGE_INCLUDE",
    "Document",
    "ExportSettings",
    "Frontmatter",
    "ImageSection",
    "InstructionSection",
    "ProseSection",
    "QAPair",
    "Section",
    "Source",
    "TrainingSettings",
    "expand_sources",
    "frontmatter_from_mapping",
    "frontmatter_position",
    "frontmatter_to_mapping",
    "migrate",
    "migration",
    "oldest_supported_version",
    "parse",
    "parse_file",
    "render_new_document",
    "resolve_document_path",
    "section_id",
    "serialize",
]
