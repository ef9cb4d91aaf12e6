"""Hostile frontmatter YAML: alias bombs, odd tags, merge keys, deep nesting, huge
numbers. Each is a DocumentError at its line, found before anything walks the YAML."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from dlm.errors import DocumentError
from dlm.format import parse
from tests.conftest import run_dlm

ULID = "01JZ8XKQ3M5N7P9R2S4T6V8W0Y"
HEAD = f"---\ndlm_id: {ULID}\ndlm_version: 10\nbase_model: tiny-qwen2-vl\n"
FIRST = 5  # the document line of the first YAML line after HEAD


def billion_laughs(levels: int) -> str:
    """``a0`` holds nine strings; each ``aN`` nine aliases of ``a(N-1)``: 9**(levels+1) values."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * 9) + "]"]
    for n in range(1, levels + 1):
        lines.append(f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]")
    return "\n".join(lines) + "\nlast: key\n"


def error(yaml_lines: str) -> DocumentError:
    with pytest.raises(DocumentError) as info:
        parse(HEAD + yaml_lines + "---\nprose\n", "doc.dlm")
    return info.value


# ----------------------------------------------------------------- item 1: alias expansion


def test_alias_bomb_is_refused_quickly_at_the_alias_that_crosses_the_budget() -> None:
    started = time.perf_counter()
    exc = error(billion_laughs(8))  # 9**9 values once expanded; 12 s at 7 levels before
    assert time.perf_counter() - started < 1.0
    assert "more than 10,000 values" in exc.message
    # a0 on line 5, aN on line 5 + N: 9**5 > 10,000 first at a4's aliases.
    assert exc.line == FIRST + 4 and exc.col > 1
    assert "alias" in (exc.hint or "")


def test_a_few_aliases_still_read() -> None:
    doc = parse(
        HEAD + "training:\n  sources:\n    - path: a\n      include: &pngs ['*.png']\n"
        "    - path: b\n      include: *pngs\n---\n"
    )
    assert [s.include for s in doc.frontmatter.training.sources] == [("*.png",), ("*.png",)]


def test_an_alias_inside_its_own_value_is_refused() -> None:
    exc = error("training: &t\n  sources: [*t]\n")
    assert (exc.line, exc.col) == (FIRST + 1, 13)
    assert "inside the value it refers to" in exc.message


# ----------------------------------------------------------------- item 2: tags and merge keys


@pytest.mark.parametrize(
    ("yaml_lines", "line", "col", "words"),
    [
        ("system_prompt: !!omap [a: 1]\n", FIRST, 16, "'!!omap' is not allowed"),
        (
            "system_prompt: !!python/object/apply:os.system ['touch X']\n",
            FIRST,
            16,
            "'!!python/object/apply:os.system' is not allowed",
        ),
        ("training:\n  <<: {lora_r: 4}\n", FIRST + 1, 3, "merge keys ('<<')"),
        ("training: {lora_r: 4, <<: {lora_alpha: 8}}\n", FIRST, 23, "merge keys ('<<')"),
        ("system_prompt: !!set {a, b}\n", FIRST, 16, "'!!set' is not allowed"),
        ("system_prompt: !local x\n", FIRST, 16, "'!local' is not allowed"),
        ("system_prompt: !!bool maybe\n", FIRST, 16, "cannot be read as true or false"),
        ("system_prompt: 2001-13-45\n", FIRST, 16, "cannot be read as a date"),
    ],
)
def test_tags_and_merge_keys_are_placed_document_errors(
    yaml_lines: str, line: int, col: int, words: str, tmp_path: Path
) -> None:
    marker = tmp_path / "X"
    exc = error(yaml_lines.replace("touch X", f"touch {marker}"))
    assert (exc.line, exc.col) == (line, col), exc.render()
    assert words in exc.message
    assert not marker.exists()


def test_a_quoted_merge_key_is_just_an_unknown_key() -> None:
    exc = error("training:\n  '<<': 4\n")
    assert (exc.line, "unknown key '<<'") == (FIRST + 1, exc.message.split(" in ")[0])


# ----------------------------------------------------------------- item 3: depth and huge ints


@pytest.mark.parametrize(
    ("yaml_lines", "line"),
    [
        ("system_prompt: " + "[" * 300 + "]" * 300 + "\n", FIRST),
        ("system_prompt: " + "{a: " * 300 + "1" + "}" * 300 + "\n", FIRST),
        ("training:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(2000)), FIRST + 32),
    ],
    ids=["flow-lists", "flow-maps", "block-maps"],
)
def test_deep_nesting_is_a_placed_error(yaml_lines: str, line: int) -> None:
    exc = error(yaml_lines)
    assert exc.line == line and "nests more than 32 levels" in exc.message


@pytest.mark.parametrize("number", ["9" * 5000, "-" + "1_0" * 2000, "0x" + "f" * 5000])
def test_a_huge_integer_is_a_placed_error(number: str) -> None:
    exc = error(f"training:\n  lora_r: {number}\n")
    assert (exc.line, exc.col) == (FIRST + 1, 11)
    assert "digits; no setting takes more than 100" in exc.message


def test_a_forbidden_character_is_placed() -> None:
    exc = error("system_prompt: ab\x07c\n")
    assert (exc.line, exc.col) == (FIRST, 18)
    assert "U+0007" in exc.message


# ----------------------------------------------------------------- through the CLI


@pytest.mark.parametrize(
    ("kind", "yaml_lines", "line"),
    [
        ("billion laughs", billion_laughs(8), FIRST + 4),
        ("python tag", "system_prompt: !!python/object/apply:os.system ['true']\n", FIRST),
        ("merge key", "training:\n  <<: {lora_r: 4}\n", FIRST + 1),
        ("deep flow", "system_prompt: " + "[" * 500 + "]" * 500 + "\n", FIRST),
        ("huge int", "training:\n  lora_r: " + "9" * 5000 + "\n", FIRST + 1),
    ],
)
def test_dlm_show_reports_hostile_yaml_at_its_line(
    kind: str, yaml_lines: str, line: int, tmp_path: Path
) -> None:
    doc = tmp_path / "hostile.dlm"
    doc.write_text(HEAD + yaml_lines + "---\nprose\n")
    started = time.perf_counter()
    result = run_dlm("show", doc, timeout=60)
    assert time.perf_counter() - started < 30
    assert result.returncode == 1, result.stderr
    assert re.search(rf"{re.escape(str(doc))}:{line}:\d+: ", result.stderr), result.stderr
    assert "Traceback" not in result.stderr


def test_a_list_as_a_key_is_a_placed_error() -> None:
    # ruamel raised TypeError (unhashable CommentedSeq) for a list inside a key.
    exc = error("training: {[[1, 2]]: []}\n")
    assert (exc.line, exc.col) == (FIRST, 12)
    assert "cannot be a key" in exc.message


def test_an_anchor_defined_twice_is_a_placed_error() -> None:
    exc = error("system_prompt: &a one\nbase_model: &a two\n")
    assert (exc.line, exc.col) == (FIRST + 1, 13)
    assert "'&a' is defined twice" in exc.message
