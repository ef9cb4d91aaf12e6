"""Property tests: every representable document survives serialize → parse, and
serializing a parse is a fixed point."""

from __future__ import annotations

import re

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlm.format import (
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
    parse,
    serialize,
)
from dlm.format.checks import ULID_ALPHABET
from dlm.format.document import DEFAULT_IMAGE_INCLUDE
from dlm.format.sections import code_mask, looks_like_fence

PROPERTY_SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# ----------------------------------------------------------------- text pieces

# Characters that stress the grammar: colons, hashes, quotes, backslashes, code
# fence marks, tabs, non-ASCII, and Unicode line separators (which are not
# newlines in a .dlm body).
_CHARS = st.one_of(
    st.sampled_from([*':#`~"\\ \t-*[]=/.', "é", "→", "日", "\x0c", "\u2028", "\x85"]),
    st.characters(codec="utf-8", exclude_characters="\n\r"),
)
_TRICKY_LINES = st.sampled_from(
    [
        "::instruction::",
        "::prose::",
        '::image path="x.png"::',
        "  ::instruction::",
        "    ::prose::",
        ":: instruction::",
        "::",
        ":::",
        "::123::",
        "### Q",
        "### A",
        "### Q2",
        "###Q",
        "```",
        "~~~",
        "---",
        "# heading",
        "key: value",
        "",
        "   ",
    ]
)
_CODE_MARK = re.compile(r" {0,3}(`{3,}|~{3,})")


def _is_blank(line: str) -> bool:
    return not line.strip(" \t")


def _plain_line(*, qa: bool) -> st.SearchStrategy[str]:
    """A line that reads as text where it stands (outside a code block)."""

    def ok(line: str) -> bool:
        stripped = line.lstrip(" \t")
        if looks_like_fence(line) or _CODE_MARK.match(line):
            return False
        if stripped.startswith("::") and stripped.rstrip(" \t").endswith("::"):
            return False  # an indented fence is an error, not text
        return not (qa and line.rstrip(" \t") in ("### Q", "### A"))

    return st.one_of(_TRICKY_LINES, st.text(_CHARS, max_size=30)).filter(ok)


@st.composite
def _code_block(draw: st.DrawFn) -> list[str]:
    mark = draw(st.sampled_from(["```", "````", "~~~"]))
    info = draw(st.sampled_from(["", "python", " yaml"]))
    inner = draw(
        st.lists(
            st.one_of(_TRICKY_LINES, st.text(_CHARS, max_size=20)).filter(
                lambda line: not _CODE_MARK.match(line)
            ),
            max_size=4,
        )
    )
    return [mark + info, *inner, mark]


@st.composite
def _text(draw: st.DrawFn, *, qa: bool = False, allow_empty: bool = False) -> str:
    chunks = draw(
        st.lists(
            st.one_of(_plain_line(qa=qa).map(lambda line: [line]), _code_block()),
            min_size=0 if allow_empty else 1,
            max_size=5,
        )
    )
    lines = [line for chunk in chunks for line in chunk]
    while lines and _is_blank(lines[0]):
        lines.pop(0)
    while lines and _is_blank(lines[-1]):
        lines.pop()
    if not lines and not allow_empty:
        lines = [draw(st.text(st.characters(codec="ascii", categories=("L",)), min_size=1))]
    return "\n".join(lines)


_ATTRIBUTE = st.text(_CHARS, max_size=20)


# ----------------------------------------------------------------- sections


@st.composite
def _section(draw: st.DrawFn) -> Section:
    kind = draw(st.sampled_from(["prose", "instruction", "image"]))
    if kind == "prose":
        return ProseSection(draw(_text()))
    if kind == "instruction":
        pairs = draw(st.lists(st.tuples(_text(qa=True), _text(qa=True)), min_size=1, max_size=3))
        return InstructionSection(tuple(QAPair(q, a) for q, a in pairs))
    return ImageSection(
        path=draw(_ATTRIBUTE.filter(lambda p: p.strip())),
        alt=draw(st.none() | _ATTRIBUTE),
        caption=draw(_text(allow_empty=True)),
    )


# ----------------------------------------------------------------- frontmatter

_ULID = st.builds(
    lambda first, rest: first + "".join(rest),
    st.sampled_from("01234567"),
    st.lists(st.sampled_from(ULID_ALPHABET), min_size=25, max_size=25),
)
_NAME = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), min_size=1, max_size=24
).filter(lambda s: s.strip())
_PROMPT = (
    st.lists(
        st.text(
            st.characters(
                codec="utf-8", exclude_characters="\r", categories=("L", "N", "P", "S", "Z")
            ),
            min_size=1,
            max_size=8,
        )
        | st.sampled_from(["\n", "\t", " ", "  ", "#", ": ", "---", "\n---\n", "|", "'", '"']),
        min_size=1,
        max_size=10,
    )
    .map("".join)
    .filter(lambda s: s.strip())
)
_GLOB = st.lists(
    st.sampled_from(["*", "**", "a", "b.png", "?", "[ab]", "[!c]", "*.JPG", "dir name"]),
    min_size=1,
    max_size=3,
).map("/".join)
_UNIT = st.floats(0, 1, exclude_max=True, allow_nan=False, allow_subnormal=False)


def _maybe(value: st.SearchStrategy, default: object) -> st.SearchStrategy:
    return st.one_of(st.just(default), value)


_SOURCE = st.builds(
    Source,
    path=_NAME,
    include=_maybe(st.lists(_GLOB, min_size=1, max_size=3).map(tuple), DEFAULT_IMAGE_INCLUDE),
    exclude=_maybe(st.lists(_GLOB, min_size=1, max_size=2).map(tuple), ()),
)
_POSITIVE = st.integers(1, 10**6)

_TRAINING = st.builds(
    TrainingSettings,
    adapter=st.just("lora"),
    lora_r=_maybe(_POSITIVE, 16),
    lora_alpha=_maybe(_POSITIVE, 32),
    lora_dropout=_maybe(_UNIT, 0.05),
    target_modules=_maybe(
        st.sampled_from([".*language_model.*\\.(q_proj|v_proj)", "q_proj", "^a$"])
        | st.lists(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), min_size=1, max_size=3).map(
            tuple
        ),
        None,
    ),
    sequence_len=_maybe(_POSITIVE, None),
    micro_batch_size=_maybe(_POSITIVE, None),
    grad_accum=_maybe(_POSITIVE, None),
    learning_rate=_maybe(st.floats(1e-12, 10, allow_nan=False, allow_subnormal=False), 2e-4),
    num_epochs=_maybe(_POSITIVE, 3),
    lr_scheduler=st.sampled_from(["cosine", "linear", "constant"]),
    warmup_ratio=_maybe(_UNIT, 0.1),
    precision=st.sampled_from([None, "bf16", "fp16", "fp32"]),
    seed=_maybe(st.integers(0, 2**32 - 1), 42),
    sources=_maybe(st.lists(_SOURCE, min_size=1, max_size=3).map(tuple), ()),
)
_EXPORT = st.builds(
    ExportSettings,
    default_quant=_maybe(_NAME, "Q4_K_M"),
    default_temperature=_maybe(st.floats(0, 5, allow_nan=False, allow_subnormal=False), 0.7),
    default_top_p=_maybe(
        st.floats(0, 1, exclude_min=True, allow_nan=False, allow_subnormal=False), 0.9
    ),
)
_FRONTMATTER = st.builds(
    Frontmatter,
    dlm_id=_ULID,
    base_model=_NAME,
    system_prompt=st.none() | _PROMPT,
    training=_maybe(_TRAINING, TrainingSettings()),
    export=_maybe(_EXPORT, ExportSettings()),
)
_DOCUMENT = st.builds(
    Document,
    frontmatter=_FRONTMATTER,
    sections=st.lists(_section(), max_size=5).map(tuple),
)


# ----------------------------------------------------------------- properties


@PROPERTY_SETTINGS
@given(_DOCUMENT)
def test_parse_of_serialize_is_the_document(doc: Document) -> None:
    text = serialize(doc)
    assert parse(text) == doc
    assert serialize(parse(text)) == text


def _noisy(text: str) -> str:
    """The same document written less tidily: comments, spare blank lines,
    trailing blanks after fences, an explicit leading ``::prose::``."""
    head, body = text[4:].split("\n---\n", 1)
    head = "# a comment\n" + head.replace("\n", "  # note\n", 1)
    lines = body.split("\n")
    in_code = code_mask(lines, 1, "<test>")
    out = []
    for line, code in zip(lines, in_code, strict=True):
        if not code and looks_like_fence(line):
            out += ["", line + " \t"]
        elif not code and not out and line:
            out += ["::prose::", line]
        else:
            out.append(line)
    return "---\n" + head + "\n---\n\n" + "\n".join(out) + "\n\n"


@PROPERTY_SETTINGS
@given(_DOCUMENT)
def test_serialize_of_parse_is_stable(doc: Document) -> None:
    noisy = _noisy(serialize(doc))
    parsed = parse(noisy)
    assert parsed == doc
    once = serialize(parsed)
    assert "# a comment" in once and "# note" in once
    assert parse(once) == doc
    assert serialize(parse(once)) == once


@PROPERTY_SETTINGS
@given(_FRONTMATTER, _FRONTMATTER)
def test_write_back_applies_any_new_frontmatter(old: Frontmatter, new: Frontmatter) -> None:
    doc = parse(_noisy(serialize(Document(old))))
    changed = attrs.evolve(doc, frontmatter=new)
    text = serialize(changed)
    assert parse(text) == changed
    assert "# a comment" in text
