"""The parsed form of a ``.dlm`` document.

Records only: :mod:`dlm.format.parser` builds them, :mod:`dlm.format.serializer`
writes them back. Source positions (``line``) are kept for error messages
but do not take part in equality, so ``parse(serialize(doc)) == doc``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import attrs

CURRENT_VERSION = 10

DEFAULT_IMAGE_INCLUDE = ("**/*.png", "**/*.jpg", "**/*.jpeg", "**/*.webp", "**/*.gif", "**/*.bmp")


@attrs.frozen
class Source:
    """One ``training.sources`` entry: a folder of images to ingest."""

    path: str
    include: tuple[str, ...] = DEFAULT_IMAGE_INCLUDE
    exclude: tuple[str, ...] = ()
    line: int = attrs.field(default=0, eq=False, repr=False)


@attrs.frozen
class TrainingSettings:
    """``training:`` in the frontmatter. ``None`` means "the planner decides"."""

    adapter: str = "lora"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str | tuple[str, ...] | None = None
    #: ``None``: fit the longest example (never truncating image tokens), up
    #: to the base's context length. A number is a hard budget: an example
    #: that does not fit is an error.
    sequence_len: int | None = None
    micro_batch_size: int | None = None
    grad_accum: int | None = None
    learning_rate: float = 2e-4
    num_epochs: int = 3
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    precision: str | None = None
    seed: int = 42
    sources: tuple[Source, ...] = ()


@attrs.frozen
class ExportSettings:
    """``export:`` in the frontmatter."""

    default_quant: str = "Q4_K_M"
    default_temperature: float = 0.7
    default_top_p: float = 0.9


@attrs.frozen
class Frontmatter:
    dlm_id: str
    base_model: str
    dlm_version: int = CURRENT_VERSION
    system_prompt: str | None = None
    training: TrainingSettings = TrainingSettings()
    export: ExportSettings = ExportSettings()


# ----------------------------------------------------------------- sections


@attrs.frozen
class ProseSection:
    """Free text between fences."""

    text: str
    line: int = attrs.field(default=0, eq=False, repr=False)

    kind = "prose"


@attrs.frozen
class QAPair:
    question: str
    answer: str
    line: int = attrs.field(default=0, eq=False, repr=False)


@attrs.frozen
class InstructionSection:
    """``::instruction::`` with one or more ``### Q`` / ``### A`` pairs."""

    pairs: tuple[QAPair, ...]
    line: int = attrs.field(default=0, eq=False, repr=False)

    kind = "instruction"


@attrs.frozen
class ImageSection:
    """``::image path="…" alt="…"::`` and its caption (the body text).

    ``path`` is relative to the document's folder. Sections expanded from a
    ``training.sources`` directive carry ``from_source`` (the directive's
    path) and are never written back by the serializer.
    """

    path: str
    alt: str | None = None
    caption: str = ""
    line: int = attrs.field(default=0, eq=False, repr=False)
    from_source: str | None = attrs.field(default=None, eq=False, repr=False)

    kind = "image"


Section = ProseSection | InstructionSection | ImageSection


@attrs.frozen
class Document:
    frontmatter: Frontmatter
    sections: tuple[Section, ...] = ()
    #: Where the document was read from (``None`` for text parsed in memory).
    path: Path | None = attrs.field(default=None, eq=False, repr=False)
    #: The frontmatter as ruamel.yaml read it, for a comment-preserving write-back.
    raw_frontmatter: Any = attrs.field(default=None, eq=False, repr=False)

    @property
    def folder(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    @property
    def display_path(self) -> str:
        return str(self.path) if self.path is not None else "<string>"


# ----------------------------------------------------------------- identity


def _normalize(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def section_id(section: Section, blob_sha: str | None = None) -> str:
    """A stable identity: hash of the section type and its normalized content.

    For images the content is the path and the sha256 of the image bytes
    (``blob_sha``), so replacing the picture behind a path changes the id.
    """
    if isinstance(section, ProseSection):
        content = _normalize(section.text)
    elif isinstance(section, InstructionSection):
        content = "\n\x1e\n".join(
            f"{_normalize(p.question)}\n\x1f\n{_normalize(p.answer)}" for p in section.pairs
        )
    else:
        content = f"{section.path}\n\x1f\n{blob_sha or ''}"
    digest = hashlib.sha256(f"{section.kind}\n\x1d\n{content}".encode()).hexdigest()
    return digest[:16]
