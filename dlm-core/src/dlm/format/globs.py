"""Glob patterns for ``training.sources`` (``include`` / ``exclude``).

Python 3.11 has no glob matcher that understands ``**`` on relative paths
without touching the filesystem, so patterns are compiled to regexes here.
"""

from __future__ import annotations

import re
from functools import lru_cache


def _class_end(pattern: str, start: int) -> int:
    """Index of the ``]`` closing the class opened at ``start`` (-1: not a class)."""
    index = start + 1
    if pattern[index : index + 1] in ("!", "^"):
        index += 1
    if pattern[index : index + 1] == "]":
        index += 1  # a leading ']' is a literal member
    return pattern.find("]", index)


@lru_cache(maxsize=256)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob over POSIX relative paths.

    ``*`` and ``?`` stay inside one path segment, ``[...]`` is a character
    class (``[!...]`` negated), and a ``**`` segment matches any number of
    folders, including none. Matching ignores case, so ``*.jpg`` finds
    ``IMG_0001.JPG`` too.
    """
    while pattern.startswith("./"):
        pattern = pattern[2:]
    out: list[str] = []
    index, n = 0, len(pattern)
    while index < n:
        char = pattern[index]
        at_segment_start = index == 0 or pattern[index - 1] == "/"
        if pattern.startswith("**", index) and at_segment_start:
            after = index + 2
            if after == n:
                out.append(".*")
                index = after
                continue
            if pattern[after] == "/":
                out.append("(?:[^/]*/)*")
                index = after + 1
                continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            close = _class_end(pattern, index)
            if close == -1:
                out.append(re.escape(char))
            else:
                body = pattern[index + 1 : close]
                negate = body[:1] in ("!", "^")
                if negate:
                    body = body[1:]
                body = "".join("\\" + c if c in "\\[" else c for c in body)
                out.append(f"[^/{body}]" if negate else f"[{body}]")
                index = close + 1
                continue
        else:
            out.append(re.escape(char))
        index += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def matches(rel_posix: str, patterns: tuple[str, ...]) -> bool:
    return any(glob_to_regex(pattern).fullmatch(rel_posix) for pattern in patterns)
