"""Sections → training examples, by the rules users rely on (design.md).

- An image section's body is its caption: (image, caption prompt) → caption.
- ``::instruction::`` directly after an image section binds its Q/A pairs to
  that image: (image, Q) → A.
- Unbound prose and Q/A train text-only where the family supports it and
  are skipped (and reported) where it cannot.
- An image with no caption and no bound Q/A is reported as untrained.

Nothing is dropped silently: every section gets a :class:`SectionOutcome`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from dlm.engine.document.ingest import CheckedImage
from dlm.family import Family
from dlm.format.document import (
    Document,
    ImageSection,
    InstructionSection,
    ProseSection,
    Section,
    section_id,
)
from dlm.records import ExampleKind, ImageRef, TrainingExample


@attrs.frozen
class SectionOutcome:
    """What one section became, for ``dlm train`` and ``dlm show``."""

    origin: str  # path:line
    kind: str  # section kind
    label: str  # short description (image path, first words)
    examples: int
    detail: str  # "2 Q/A bound to figures/a.png", "skipped: ..."
    skipped: bool = False


@attrs.frozen
class ExampleSet:
    examples: tuple[TrainingExample, ...]
    outcomes: tuple[SectionOutcome, ...]

    @property
    def skipped(self) -> tuple[SectionOutcome, ...]:
        return tuple(o for o in self.outcomes if o.skipped)


def _origin(doc: Document, section: Section) -> str:
    return f"{doc.display_path}:{section.line}"


def _first_words(text: str, limit: int = 40) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def build_examples(
    doc: Document,
    family: Family,
    images: dict[int, ImageRef],
    image_notes: dict[int, tuple[str, ...]] | None = None,
) -> ExampleSet:
    """Build the examples of ``doc`` (sources already expanded).

    ``images`` maps the index of each image section in ``doc.sections`` to
    its blob (see :func:`dlm.engine.document.ingest.ingest_images`); ``image_notes``
    what is lost in using an image (an animation's other frames, its
    transparency), said in the image's outcome rather than done silently.
    """
    system_prompt = doc.frontmatter.system_prompt
    examples: list[TrainingExample] = []
    outcomes: list[SectionOutcome] = []
    sections = doc.sections
    bound: set[int] = set()  # instruction sections bound to the image before them

    for index, section in enumerate(sections):
        origin = _origin(doc, section)
        if isinstance(section, ImageSection):
            ref = images[index]
            sid = section_id(section, ref.sha256)
            made = 0
            parts: list[str] = []
            if section.caption.strip():
                examples.append(
                    TrainingExample(
                        section_id=sid,
                        origin=origin,
                        kind=ExampleKind.CAPTION,
                        prompt=family.caption_prompt,
                        completion=section.caption.strip(),
                        images=(ref,),
                        system_prompt=system_prompt,
                    )
                )
                made += 1
                parts.append("caption")
            following = sections[index + 1] if index + 1 < len(sections) else None
            if isinstance(following, InstructionSection):
                bound.add(index + 1)
                qa_sid = section_id(following)
                for pair in following.pairs:
                    examples.append(
                        TrainingExample(
                            section_id=qa_sid,
                            origin=f"{doc.display_path}:{pair.line or following.line}",
                            kind=ExampleKind.QA,
                            prompt=pair.question.strip(),
                            completion=pair.answer.strip(),
                            images=(ref,),
                            system_prompt=system_prompt,
                        )
                    )
                made += len(following.pairs)
                parts.append(f"{len(following.pairs)} bound Q/A")
            label = section.path + (f" ({section.alt})" if section.alt else "")
            notes = "".join(f"; {note}" for note in (image_notes or {}).get(index, ()))
            if made:
                outcomes.append(
                    SectionOutcome(origin, "image", label, made, " + ".join(parts) + notes)
                )
            else:
                outcomes.append(
                    SectionOutcome(
                        origin,
                        "image",
                        label,
                        0,
                        "untrained: no caption and no ::instruction:: bound to it",
                        skipped=True,
                    )
                )
        elif isinstance(section, InstructionSection):
            if index in bound:
                continue  # reported with its image
            label = _first_words(section.pairs[0].question)
            if family.supports_text_only:
                sid = section_id(section)
                for pair in section.pairs:
                    examples.append(
                        TrainingExample(
                            section_id=sid,
                            origin=f"{doc.display_path}:{pair.line or section.line}",
                            kind=ExampleKind.TEXT_QA,
                            prompt=pair.question.strip(),
                            completion=pair.answer.strip(),
                            system_prompt=system_prompt,
                        )
                    )
                outcomes.append(
                    SectionOutcome(
                        origin, "instruction", label, len(section.pairs), "text-only Q/A"
                    )
                )
            else:
                outcomes.append(
                    SectionOutcome(
                        origin,
                        "instruction",
                        label,
                        0,
                        f"skipped: family {family.name} cannot train without an image "
                        "(put the ::instruction:: directly after an ::image::)",
                        skipped=True,
                    )
                )
        elif isinstance(section, ProseSection):
            label = _first_words(section.text)
            if family.supports_text_only:
                examples.append(
                    TrainingExample(
                        section_id=section_id(section),
                        origin=origin,
                        kind=ExampleKind.TEXT,
                        prompt="",
                        completion=section.text.strip(),
                        system_prompt=None,
                    )
                )
                outcomes.append(SectionOutcome(origin, "prose", label, 1, "text-only prose"))
            else:
                outcomes.append(
                    SectionOutcome(
                        origin,
                        "prose",
                        label,
                        0,
                        f"skipped: family {family.name} cannot train without an image",
                        skipped=True,
                    )
                )
    return ExampleSet(tuple(examples), tuple(outcomes))


def identity_rows(examples: Sequence[TrainingExample]) -> list[list[Any]]:
    """What makes the examples what they are, in order (section, prompt, answer, image
    hashes): hashed where processes must agree on them or a resumed run must match."""
    return [[e.section_id, e.prompt, e.completion, [r.sha256 for r in e.images]] for e in examples]


def with_image_refs(
    examples: Sequence[TrainingExample],
    images: Sequence[CheckedImage],
    refs: Mapping[int, ImageRef],
) -> tuple[TrainingExample, ...]:
    """The same examples, each image replaced by its ref in ``refs``.

    Examples are built once, from the document, with their images at the
    document's files (:func:`~dlm.engine.document.prepare.prepare_document`);
    training reads the stored copies, so the examples are re-pointed rather
    than built again. ``refs`` maps an image section's index to its new ref,
    as :func:`build_examples` takes them; ``images`` are the document's
    checked images the examples were built from.
    """
    new = {(image.sha256, image.source): refs[image.section_index] for image in images}
    return tuple(
        attrs.evolve(example, images=tuple(new[r.sha256, r.source] for r in example.images))
        for example in examples
    )
