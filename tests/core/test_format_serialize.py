"""The serializer: canonical text, comment-preserving write-back, round trips."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest

from dlm.errors import DocumentError
from dlm.format import (
    Document,
    ExportSettings,
    Frontmatter,
    ImageSection,
    InstructionSection,
    ProseSection,
    QAPair,
    Source,
    TrainingSettings,
    parse,
    render_new_document,
    serialize,
)

ULID = "01JZ8XKQ3M5N7P9R2S4T6V8W0Y"
SEED = Path("/work/shared/seed/multimodal-training.md")


def stable(text: str) -> str:
    """Serialize the parse of ``text``; check the result is a fixed point."""
    doc = parse(text)
    once = serialize(doc)
    assert parse(once) == doc
    assert serialize(parse(once)) == once
    return once


# ----------------------------------------------------------------- the seed's examples

SEED_IMAGE_BODY = """\
::image path="figures/architecture.png" alt="pipeline diagram"::
The retrieval pipeline: query → encoder → top-k → reranker → LLM.

::instruction::
### Q
What does this diagram show?

### A
A three-stage retrieval pipeline with reranking before the LLM.
"""

SEED_SOURCES_FRONTMATTER = f"""\
---
dlm_id: {ULID}
dlm_version: 10
base_model: paligemma-3b-mix-224
training:
  sources:
    - path: ./paper-figures
      include: ["**/*.png", "**/*.jpg"]
---
"""


def _seed_blocks() -> list[str]:
    if not SEED.exists():  # the examples are inlined above; the file only cross-checks
        return []
    return re.findall(r"```dlm\n(.*?)```", SEED.read_text(), flags=re.S)


def test_inlined_examples_match_the_seed() -> None:
    blocks = _seed_blocks()
    if blocks:
        assert blocks[0] == SEED_IMAGE_BODY
        assert "- path: ./paper-figures" in blocks[1]


def test_seed_image_example_round_trips_unchanged() -> None:
    text = f"---\ndlm_id: {ULID}\ndlm_version: 10\nbase_model: paligemma-3b-mix-224\n---\n\n"
    text += SEED_IMAGE_BODY
    assert stable(text) == text


def test_seed_sources_example_round_trips_unchanged() -> None:
    doc = parse(SEED_SOURCES_FRONTMATTER)
    assert doc.frontmatter.training.sources == (
        Source("./paper-figures", ("**/*.png", "**/*.jpg")),
    )
    assert stable(SEED_SOURCES_FRONTMATTER) == SEED_SOURCES_FRONTMATTER


def test_seed_sources_example_as_printed_gets_a_useful_error() -> None:
    # The cookbook page lost its indentation: 'sources' lands at the top level.
    flattened = (
        f"---\ndlm_id: {ULID}\ndlm_version: 10\nbase_model: paligemma-3b-mix-224\n"
        'training:\nsources:\n- path: ./paper-figures\ninclude: ["**/*.png", "**/*.jpg"]\n---\n'
    )
    with pytest.raises(DocumentError) as info:
        parse(flattened)
    assert (info.value.line, info.value.col) == (6, 1)
    assert info.value.hint == "'sources' belongs under 'training:' (indent it below that key)"


# ----------------------------------------------------------------- comments kept

COMMENTED = f"""\
---
# Figures from the 2024 paper.
dlm_id: {ULID}  # never change this
dlm_version: 10
base_model: "qwen2-vl-2b-instruct"

system_prompt: >-
  Answer briefly.
training:
  # small rank: few images
  lora_r: 8
  learning_rate: 2e-4   # from the sweep
  sources:
    - path: ./figs   # the scans
      include: ['**/*.png']
export:
  default_quant: Q8_0
# end of settings
---
Intro.
"""


def test_write_back_keeps_comments_quotes_and_layout() -> None:
    assert stable(COMMENTED) == COMMENTED.replace("---\nIntro.", "---\n\nIntro.")


def test_changed_values_are_applied_and_comments_survive() -> None:
    doc = parse(COMMENTED)
    training = attrs.evolve(
        doc.frontmatter.training,
        lora_r=16,
        precision="bf16",
        sources=(Source("./figs", ("**/*.png",)), Source("extra", exclude=("tmp/**",))),
    )
    front = attrs.evolve(
        doc.frontmatter, system_prompt=None, training=training, export=ExportSettings()
    )
    new_doc = attrs.evolve(doc, frontmatter=front)
    text = serialize(new_doc)
    assert "# small rank: few images\n  lora_r: 16\n" in text
    assert "learning_rate: 2e-4   # from the sweep" in text
    assert "# Figures from the 2024 paper." in text
    assert "# never change this" in text
    assert "system_prompt" not in text
    # New keys go after their predecessors in schema order.
    assert text.index("precision: bf16") < text.index("sources:")
    assert "- path: extra" in text and 'exclude: ["tmp/**"]' in text
    assert "default_quant: Q4_K_M" in text  # the existing key keeps its place
    assert parse(text) == new_doc
    # The document's own mapping is untouched.
    assert doc.raw_frontmatter["training"]["lora_r"] == 8
    assert serialize(doc) == stable(COMMENTED)


def test_training_block_added_to_a_document_without_one() -> None:
    doc = parse(f"---\ndlm_id: {ULID}  # id\ndlm_version: 10\nbase_model: b\n---\n")
    front = attrs.evolve(doc.frontmatter, training=TrainingSettings(num_epochs=9))
    text = serialize(attrs.evolve(doc, frontmatter=front))
    assert text == (
        f"---\ndlm_id: {ULID}  # id\ndlm_version: 10\nbase_model: b\n"
        "training:\n  num_epochs: 9\n---\n"
    )


# ----------------------------------------------------------------- from records


def test_record_frontmatter_omits_defaults() -> None:
    doc = Document(Frontmatter(dlm_id=ULID, base_model="paligemma-3b-mix-224"))
    assert serialize(doc) == (
        f"---\ndlm_id: {ULID}\ndlm_version: 10\nbase_model: paligemma-3b-mix-224\n---\n"
    )


def test_record_frontmatter_writes_what_differs() -> None:
    front = Frontmatter(
        dlm_id=ULID,
        base_model="qwen2-vl-2b-instruct",
        system_prompt="Line one.\nLine two.",
        training=TrainingSettings(
            lora_r=4,
            target_modules=".*language_model.*\\.(q_proj|v_proj)",
            sources=(Source("figs"), Source("more", ("*.png",), ("x/**",))),
        ),
        export=ExportSettings(default_top_p=0.5),
    )
    text = serialize(Document(front))
    assert text == (
        f"---\ndlm_id: {ULID}\ndlm_version: 10\nbase_model: qwen2-vl-2b-instruct\n"
        "system_prompt: |-\n  Line one.\n  Line two.\n"
        "training:\n  lora_r: 4\n"
        "  target_modules: .*language_model.*\\.(q_proj|v_proj)\n"
        "  sources:\n    - path: figs\n    - path: more\n"
        '      include: ["*.png"]\n      exclude: ["x/**"]\n'
        "export:\n  default_top_p: 0.5\n---\n"
    )
    assert parse(text).frontmatter == front


# ----------------------------------------------------------------- sections


def test_sections_layout() -> None:
    front = Frontmatter(dlm_id=ULID, base_model="b")
    doc = Document(
        front,
        (
            ProseSection("first"),
            ImageSection('a "q" \\ b.png', alt="", caption=""),
            InstructionSection((QAPair("q1", "a1"), QAPair("q2\n\nmore", "a2"))),
            ProseSection("later"),
            ImageSection("c.png", caption="cap\n\n  text"),
            ImageSection("src/d.png", alt="d", line=7, from_source="src"),
        ),
    )
    text = serialize(doc)
    assert text.split("---\n", 2)[2] == (
        "\nfirst\n\n"
        '::image path="a \\"q\\" \\\\ b.png" alt=""::\n\n'
        "::instruction::\n### Q\nq1\n\n### A\na1\n\n### Q\nq2\n\nmore\n\n### A\na2\n\n"
        "::prose::\nlater\n\n"
        '::image path="c.png"::\ncap\n\n  text\n'
    )
    assert parse(text).sections == doc.sections[:-1]


def test_leading_prose_fence_becomes_bare_text() -> None:
    head = f"---\ndlm_id: {ULID}\ndlm_version: 10\nbase_model: b\n---\n"
    assert stable(head + "::prose::\nhello\n") == head + "\nhello\n"


def test_unrepresentable_documents_are_refused() -> None:
    front = Frontmatter(dlm_id=ULID, base_model="b")
    for sections in (
        (ProseSection("a\n::instruction::\nb"),),
        (ProseSection("\nleading blank"),),
        (ProseSection(""),),
        (ProseSection("x"), ProseSection("```\nunclosed")),
        (InstructionSection((QAPair("q\n### A\nx", "a"),)),),
        (InstructionSection(()),),
        (ImageSection("x.png", caption="::prose::"),),
    ):
        with pytest.raises(ValueError, match=r"cannot be written as \.dlm text"):
            serialize(Document(front, sections))
    with pytest.raises(ValueError, match="cannot be written"):
        serialize(Document(front, (ImageSection("a\nb.png"),)))
    with pytest.raises(ValueError, match="frontmatter"):
        serialize(Document(attrs.evolve(front, dlm_version=9)))
    bad = attrs.evolve(front, training=TrainingSettings(lora_r=0))
    with pytest.raises(ValueError, match="cannot be written"):
        serialize(Document(bad))


# ----------------------------------------------------------------- new documents


def test_render_new_document() -> None:
    front = Frontmatter(dlm_id=ULID, base_model="paligemma-3b-mix-224")
    text = render_new_document(front, "\n" + SEED_IMAGE_BODY + "\n\n")
    assert text == (
        f"---\ndlm_id: {ULID}\ndlm_version: 10\nbase_model: paligemma-3b-mix-224\n---\n\n"
        + SEED_IMAGE_BODY
    )
    doc = parse(text)
    assert doc.frontmatter == front
    assert [s.kind for s in doc.sections] == ["image", "instruction"]
    assert render_new_document(front, "") == serialize(Document(front))


def test_render_new_document_refuses_a_broken_body() -> None:
    front = Frontmatter(dlm_id=ULID, base_model="b")
    with pytest.raises(DocumentError, match="unknown fence"):
        render_new_document(front, '::imag path="x"::\n')
