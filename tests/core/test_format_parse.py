"""The body grammar: sections, fences, code blocks, Q/A, and where errors point."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlm.errors import DlmError, DocumentError
from dlm.format import (
    ImageSection,
    InstructionSection,
    ProseSection,
    QAPair,
    parse,
    parse_file,
)

ULID = "01JZ8XKQ3M5N7P9R2S4T6V8W0Y"
HEAD = f"---\ndlm_id: {ULID}\ndlm_version: 10\nbase_model: paligemma-3b-mix-224\n---\n"
BODY_LINE = HEAD.count("\n") + 1  # the document line of the body's first line (6)


def body(text: str):
    return parse(HEAD + text).sections


def error(text: str, path: str = "doc.dlm") -> DocumentError:
    with pytest.raises(DocumentError) as info:
        parse(text, path)
    return info.value


def body_error(text: str) -> DocumentError:
    return error(HEAD + text)


def at(exc: DocumentError) -> tuple[int, int, str]:
    return exc.line, exc.col, exc.message


# ----------------------------------------------------------------- sections


def test_seed_image_and_instruction_example() -> None:
    sections = body(
        '::image path="figures/architecture.png" alt="pipeline diagram"::\n'
        "The retrieval pipeline: query → encoder → top-k → reranker → LLM.\n"
        "\n"
        "::instruction::\n"
        "### Q\n"
        "What does this diagram show?\n"
        "\n"
        "### A\n"
        "A three-stage retrieval pipeline with reranking before the LLM.\n"
    )
    assert sections == (
        ImageSection(
            path="figures/architecture.png",
            alt="pipeline diagram",
            caption="The retrieval pipeline: query → encoder → top-k → reranker → LLM.",
        ),
        InstructionSection(
            (
                QAPair(
                    "What does this diagram show?",
                    "A three-stage retrieval pipeline with reranking before the LLM.",
                ),
            )
        ),
    )
    assert sections[0].line == BODY_LINE
    assert sections[1].line == BODY_LINE + 3
    assert sections[1].pairs[0].line == BODY_LINE + 4


def test_text_before_first_fence_is_prose_and_blank_preamble_is_dropped() -> None:
    assert body("\n\n  intro line\nsecond\n\n::prose::\nmore\n") == (
        ProseSection("  intro line\nsecond"),
        ProseSection("more"),
    )
    assert body("\n   \n::prose::\nonly\n") == (ProseSection("only"),)
    assert body("") == ()
    assert body("\n\n\t\n") == ()


def test_first_prose_section_line_is_its_first_text_line() -> None:
    (section,) = body("\n\nhello\n")
    assert section.line == BODY_LINE + 2


def test_section_text_keeps_internal_formatting() -> None:
    (section,) = body("\n  indented\n\n\nafter gaps   \n- list\n\n")
    assert section.text == "  indented\n\n\nafter gaps   \n- list"


def test_fence_with_trailing_whitespace_is_still_a_fence() -> None:
    sections = body('prose\n\n::instruction:: \t\n### Q\nq\n### A\na\n::image path="x.png"::  \n')
    assert [s.kind for s in sections] == ["prose", "instruction", "image"]


def test_image_fence_attributes_and_escapes() -> None:
    (image,) = body('::image path="a \\"b\\" \\\\c.png"   alt="x::y"  ::\n')
    assert image.path == 'a "b" \\c.png'
    assert image.alt == "x::y"
    assert image.caption == ""
    (image,) = body('::image alt="" path="p.png"::\ncaption\n')
    assert (image.alt, image.path, image.caption) == ("", "p.png", "caption")
    (image,) = body('::image path="p.png"::\n')
    assert image.alt is None


def test_image_caption_may_hold_markdown_headers() -> None:
    (image,) = body('::image path="p.png"::\n### Q\nnot a question here\n')
    assert image.caption == "### Q\nnot a question here"


def test_instruction_with_several_pairs() -> None:
    (section,) = body(
        "::instruction::\n\n### Q\n  first q\n\nline 2\n### A\nfirst a\n\n### Q   \nq2\n### A\na2\n\n"
    )
    assert section.pairs == (
        QAPair("  first q\n\nline 2", "first a"),
        QAPair("q2", "a2"),
    )
    assert [p.line for p in section.pairs] == [BODY_LINE + 2, BODY_LINE + 9]


def test_code_blocks_hide_fences_and_markers() -> None:
    sections = body(
        "intro\n"
        "```python\n"
        "::instruction::\n"
        "### Q\n"
        "```\n"
        "::instruction::\n"
        "### Q\n"
        "q\n"
        "~~~~\n"
        "### A\n"
        "~~~\n"
        "~~~~~\n"
        "### A\n"
        "a\n"
    )
    assert sections == (
        ProseSection("intro\n```python\n::instruction::\n### Q\n```"),
        InstructionSection((QAPair("q\n~~~~\n### A\n~~~\n~~~~~", "a"),)),
    )


def test_indented_and_unrelated_colon_lines_are_prose() -> None:
    text = "    ::notafence::\n:: spaced is not a fence name\n:::\n::::\n::123::\n"
    assert body(text) == (ProseSection(text.rstrip("\n")),)


def test_crlf_and_bom_are_normalized() -> None:
    text = "\ufeff" + (HEAD + "hello\r\n\r\n::prose::\r\nworld\r\n").replace("\n", "\r\n")
    assert parse(text).sections == (ProseSection("hello"), ProseSection("world"))


# ----------------------------------------------------------------- fence errors


def test_unknown_fence_name() -> None:
    exc = body_error('ok\n::imag path="x"::\n')
    assert at(exc) == (BODY_LINE + 1, 3, "unknown fence '::imag::'")
    assert "did you mean '::image::'?" in (exc.hint or "")
    assert exc.render().startswith(f"doc.dlm:{BODY_LINE + 1}:3: unknown fence")


def test_preference_fence_is_not_supported() -> None:
    assert at(body_error("::preference::\n"))[2] == "unknown fence '::preference::'"


def test_space_after_opening_colons() -> None:
    assert at(body_error(":: instruction::\n")) == (BODY_LINE, 3, "unexpected space after '::'")


def test_unclosed_fence() -> None:
    exc = body_error('::image path="x.png"\n')
    assert at(exc) == (BODY_LINE, 21, "fence '::image' is not closed")


def test_text_after_closing_colons() -> None:
    assert at(body_error("::instruction::x\n")) == (
        BODY_LINE,
        16,
        "unexpected text after the closing '::'",
    )


def test_attribute_errors_point_at_the_token() -> None:
    assert at(body_error('::image path="x.png" src="y"::\n')) == (
        BODY_LINE,
        22,
        "unknown attribute 'src' on '::image::'",
    )
    assert at(body_error('::image path="x" path="y"::\n')) == (
        BODY_LINE,
        18,
        "duplicate attribute 'path'",
    )
    assert at(body_error('::image alt="x"::\n')) == (
        BODY_LINE,
        1,
        "'::image::' needs a 'path' attribute",
    )
    assert at(body_error("::image path=x.png::\n")) == (
        BODY_LINE,
        14,
        "the value of 'path' must be in double quotes",
    )
    assert at(body_error('::image path ="x"::\n')) == (
        BODY_LINE,
        13,
        "expected '=' right after the attribute name 'path'",
    )
    assert at(body_error('::image path="x::\n')) == (
        BODY_LINE,
        14,
        "the value of 'path' is missing its closing quote",
    )
    assert at(body_error('::image path="a\\tb"::\n')) == (
        BODY_LINE,
        16,
        "unknown escape '\\t' in the value of 'path'",
    )
    assert at(body_error('::image path="x"alt="y"::\n')) == (
        BODY_LINE,
        17,
        "unexpected character 'a' in the fence",
    )
    assert at(body_error('::image path="  "::\n')) == (
        BODY_LINE,
        14,
        "the 'path' attribute of '::image::' is empty",
    )
    assert at(body_error('::image 9="x"::\n')) == (
        BODY_LINE,
        9,
        "expected an attribute (name=\"value\") or the closing '::'",
    )


def test_fences_without_attributes_refuse_them() -> None:
    assert at(body_error('::instruction kind="x"::\n')) == (
        BODY_LINE,
        15,
        "'::instruction::' takes no attributes",
    )


def test_indented_known_fence_is_an_error_not_prose() -> None:
    assert at(body_error("text\n  ::instruction::\n")) == (
        BODY_LINE + 1,
        1,
        "a fence must start at column 1",
    )


def test_empty_prose_fence() -> None:
    assert at(body_error("::prose::\n\n::prose::\nx\n")) == (
        BODY_LINE,
        1,
        "'::prose::' section is empty",
    )


def test_unterminated_code_block_points_at_its_opening() -> None:
    exc = body_error("one\n\n   ~~~text\n::instruction::\n")
    assert at(exc) == (BODY_LINE + 2, 4, "code block opened with ~~~ is never closed")
    # A shorter closing fence does not close a longer opening one.
    exc = body_error("````\ncode\n```\n")
    assert at(exc) == (BODY_LINE, 1, "code block opened with ```` is never closed")


# ----------------------------------------------------------------- Q/A errors


def test_text_before_first_question() -> None:
    assert at(body_error("::instruction::\n\n   hello\n### Q\nq\n### A\na\n")) == (
        BODY_LINE + 2,
        4,
        "text before the first '### Q' in '::instruction::'",
    )


def test_question_without_answer() -> None:
    assert at(body_error("::instruction::\n### Q\nq1\n### Q\nq2\n### A\na\n")) == (
        BODY_LINE + 1,
        1,
        "'### Q' has no '### A'",
    )
    assert at(body_error("::instruction::\n### Q\nq\n\n::prose::\nx\n")) == (
        BODY_LINE + 1,
        1,
        "'### Q' has no '### A'",
    )


def test_answer_without_question() -> None:
    assert at(body_error("::instruction::\n### Q\nq\n### A\na\n### A\nb\n")) == (
        BODY_LINE + 5,
        1,
        "'### A' without a '### Q' before it",
    )
    assert at(body_error("::instruction::\n### A\nb\n")) == (
        BODY_LINE + 1,
        1,
        "'### A' without a '### Q' before it",
    )


def test_empty_question_and_answer() -> None:
    assert at(body_error("::instruction::\n### Q\n\n  \n### A\na\n")) == (
        BODY_LINE + 1,
        1,
        "empty question",
    )
    assert at(body_error("::instruction::\n### Q\nq\n### A\n\n### Q\nq2\n### A\na\n")) == (
        BODY_LINE + 3,
        1,
        "empty answer",
    )


def test_instruction_without_pairs() -> None:
    assert at(body_error("::instruction::\n\n\n::prose::\nx\n")) == (
        BODY_LINE,
        1,
        "'::instruction::' has no '### Q' / '### A' pairs",
    )


# ----------------------------------------------------------------- documents and files


def test_document_must_open_and_close_frontmatter() -> None:
    assert at(error("")) == (1, 1, "document is empty")
    assert at(error("dlm_id: x\n")) == (
        1,
        1,
        "expected '---' on the first line to open the frontmatter",
    )
    assert at(error(f"---\ndlm_id: {ULID}\n")) == (
        1,
        1,
        "the frontmatter opened on line 1 is never closed",
    )


def test_body_dashes_are_prose() -> None:
    assert body("a\n---\nb\n") == (ProseSection("a\n---\nb"),)


def test_parse_file_reads_utf8_and_keeps_the_path(tmp_path: Path) -> None:
    doc_path = tmp_path / "d.dlm"
    doc_path.write_text(HEAD + "héllo\n", encoding="utf-8")
    doc = parse_file(doc_path)
    assert doc.path == doc_path
    assert doc.folder == tmp_path
    assert doc.display_path == str(doc_path)
    assert doc.sections == (ProseSection("héllo"),)


def test_parse_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DlmError) as info:
        parse_file(tmp_path / "missing.dlm")
    assert info.value.subject == "document"
    assert "no such file" in info.value.message
    assert not isinstance(info.value, DocumentError)

    with pytest.raises(DlmError) as info:
        parse_file(tmp_path)
    assert info.value.subject == "document"

    bad = tmp_path / "bad.dlm"
    bad.write_bytes((HEAD + "ok\nab\xff\n").encode("latin-1"))
    with pytest.raises(DocumentError) as doc_info:
        parse_file(bad)
    assert at(doc_info.value) == (BODY_LINE + 1, 3, "the document is not valid UTF-8 text")


def test_error_path_defaults_to_string_marker() -> None:
    with pytest.raises(DocumentError) as info:
        parse(HEAD + "::nope::\n")
    assert info.value.render().startswith(f"<string>:{BODY_LINE}:3: unknown fence")
