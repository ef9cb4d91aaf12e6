"""Fuzz the parser: whatever text it is given, it returns a Document or raises a
DocumentError, and it does so quickly.

Three sources of hostile text: arbitrary strings, mutations of a valid document
(fragments spliced in at random places), and frontmatter built from YAML's
special constructs (anchors/aliases, tags, merge keys, deep nesting, huge
numbers, odd unicode) under the keys the schema walks. The examples are
bounded (``max_examples``) so the module runs in seconds; each parse is also
bounded in time by a SIGALRM timer, so a hang fails instead of stalling CI.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlm.errors import DocumentError
from dlm.format import Document, parse

#: One parse of a hostile document must finish within this. The alias bombs
#: below took 12 s (7 levels) to over 60 s (8) before the guard; the slowest
#: input now (ruamel scanning a 1,000-bracket line) takes well under a second.
PARSE_BOUND_S = 5.0

FUZZ = settings(
    max_examples=100,
    # The bound is the SIGALRM timer below: hypothesis's deadline would flake
    # on a loaded CI machine, and could not stop a parse that never returns.
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples on every run: a failure reproduces
)

ULID = "01JZ8XKQ3M5N7P9R2S4T6V8W0Y"
SEED = f"""---
dlm_id: {ULID}
dlm_version: 10
base_model: tiny-qwen2-vl
system_prompt: |
  Be brief.
training:
  lora_r: 8
  learning_rate: 2.0e-4
  target_modules: [q_proj, v_proj]
  sources:
    - path: ./figures
      include: ["*.png"]
export:
  default_temperature: 0.7
---
Some prose.

::image path="figures/a.png" alt="a"::
A caption.

::instruction::
### Q
What is it?
### A
A square.

```text
::prose::
```
"""


def _laughs(levels: int) -> str:
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * 9) + "]"]
    lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


# Values that stress YAML and the schema walk behind it.
HOSTILE_VALUES = [
    "&a [1, 2]",
    "*a",
    "&a x",
    "&a {lora_r: 4}",
    "!!omap [a: 1]",
    "!!python/object/apply:os.system ['true']",
    "!!python/name:os.system",
    "!!binary aGk=",
    "!!set {a, b}",
    "!!int ''",
    "!!int x",
    "!!float x",
    "!!bool maybe",
    "!!null x",
    "!!str {a: 1}",
    "!!map 3",
    "!!seq x",
    "!!timestamp x",
    "!local x",
    "! x",
    "2001-13-45",
    "2001-02-29T25:61:61Z",
    "{<<: {lora_r: 4}}",
    "[" * 400 + "]" * 400,
    "{a: " * 400 + "1" + "}" * 400,
    "9" * 5000,
    "-" + "1_" * 3000 + "1",
    "0x" + "f" * 5000,
    "0o" + "7" * 5000,
    "1e" + "9" * 500,
    "." + "9" * 5000,
    "1." + "0" * 5000 + "1",
    ".nan",
    "-.inf",
    "0b",
    '"\\ud800"',
    '"\\x00\\u2028"',
    "\ufeff",
    "日本語",
    "''",
    '""',
    "~",
    "|",
    ">-",
    "? [a]",
    "[a, b]: c",
    "- x",
]
HOSTILE_LINES = [
    _laughs(6),
    _laughs(7),
    _laughs(8),
    "training:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(1200)),
    "<<: {lora_r: 4}",
    "training:\n  <<: {lora_r: 4}",
    "x: &r [*r]",
    "training: &t\n  sources: [*t]",
    "%YAML 1.1",
    "%TAG ! tag:example.com,2000:",
    "...",
    "---",
    "--- x",
    "? complex",
    ": orphan",
    '::image path="x.png" alt="é"::',
    "::image path=x.png::",
    "::instruction::",
    "::prose::",
    "::imagine::",
    ":: instruction::",
    '::image path="a" path="b"::',
    "### Q",
    "### A",
    "```",
    "~~~~",
    "\t- tab",
    "\x00",
    "\x07",
    "\x85",
    "\u2028",
    "\udc80",
    "\r",
    "\r\n",
    "\ufeff",
]
KEYS = [
    "dlm_id",
    "dlm_version",
    "base_model",
    "system_prompt",
    "training",
    "training:\n  lora_r",
    "training:\n  learning_rate",
    "training:\n  target_modules",
    "training:\n  sources",
    "training:\n  sources:\n    - path",
    "training:\n  sources:\n    - path: x\n      include",
    "export",
    "export:\n  default_top_p",
    "unknown",
    "&k key",
    "*k",
    "!!str 1",
    "<<",
    "? [a, b]\n",
]


@contextmanager
def _bounded(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in this (main) thread if the block runs past ``seconds``."""
    if not hasattr(signal, "setitimer"):  # pragma: no cover - not POSIX
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"parse ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(text: str) -> str:
    """``"ok"`` or ``"document-error"``; anything else propagates and fails the test."""
    started = time.perf_counter()
    with _bounded(PARSE_BOUND_S):
        try:
            result = parse(text, "fuzz.dlm")
        except DocumentError as exc:
            assert exc.line >= 1 and exc.col >= 1, exc.render()
            assert exc.render().startswith("fuzz.dlm:")
            return "document-error"
    assert isinstance(result, Document)
    assert time.perf_counter() - started < PARSE_BOUND_S
    return "ok"


# ----------------------------------------------------------------- strategies

_ODD_CHARS = st.one_of(
    st.characters(codec="utf-8"),
    st.sampled_from([*":#&*!|>-?{}[],'\"%@`\t\n\r~\\", "\x00", "\x85", "\u2028", "\udc80"]),
)
_FRAGMENTS = st.one_of(
    st.sampled_from(HOSTILE_VALUES),
    st.sampled_from(HOSTILE_LINES),
    st.text(_ODD_CHARS, max_size=20),
)


@st.composite
def mutated_documents(draw: st.DrawFn) -> str:
    """The seed document with a few fragments spliced in, lines cut or repeated."""
    text = SEED
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["insert", "replace-line", "delete", "repeat-line"]))
        lines = text.split("\n")
        if action == "insert":
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(_FRAGMENTS) + text[at:]
        elif action == "replace-line":
            index = draw(st.integers(0, len(lines) - 1))
            lines[index] = draw(_FRAGMENTS)
            text = "\n".join(lines)
        elif action == "delete":
            start = draw(st.integers(0, len(text)))
            text = text[:start] + text[start + draw(st.integers(1, 40)) :]
        else:
            index = draw(st.integers(0, len(lines) - 1))
            lines.insert(index, lines[index])
            text = "\n".join(lines)
    return text


@st.composite
def hostile_frontmatter(draw: st.DrawFn) -> str:
    """A valid head, then hostile values under the keys the schema walks."""
    head = SEED.split("system_prompt")[0]
    lines = [
        f"{draw(st.sampled_from(KEYS))}: {draw(st.sampled_from(HOSTILE_VALUES))}"
        for _ in range(draw(st.integers(1, 3)))
    ]
    lines += draw(st.lists(st.sampled_from(HOSTILE_LINES), max_size=2))
    body = draw(st.sampled_from(["", "prose\n", SEED.split("---\n")[2]]))
    return head + "\n".join(lines) + "\n---\n" + body


_yaml_scalars = st.one_of(
    st.sampled_from(HOSTILE_VALUES[:24]),
    st.text(_ODD_CHARS, max_size=8),
    st.integers().map(str),
    st.floats().map(repr),
)
_flow_yaml = st.recursive(
    _yaml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(inner, inner), max_size=3).map(
            lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
        ),
    ),
    max_leaves=30,
)


# ----------------------------------------------------------------- the properties

CASES: dict[str, Callable[[], st.SearchStrategy[str]]] = {
    "arbitrary": lambda: st.text(_ODD_CHARS, max_size=400),
    "arbitrary-after-fence": lambda: st.text(_ODD_CHARS, max_size=400).map(lambda t: "---\n" + t),
    "mutated": mutated_documents,
    "hostile-frontmatter": hostile_frontmatter,
    "flow-values": lambda: st.tuples(st.sampled_from(KEYS), _flow_yaml).map(
        lambda kv: SEED.split("system_prompt")[0] + f"{kv[0]}: {kv[1]}\n---\nprose\n"
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_parsing_hostile_text_gives_a_document_or_a_document_error(case: str) -> None:
    @FUZZ
    @given(CASES[case]())
    def check(text: str) -> None:
        outcome(text)

    check()


def test_the_seed_document_parses() -> None:
    assert outcome(SEED) == "ok"
