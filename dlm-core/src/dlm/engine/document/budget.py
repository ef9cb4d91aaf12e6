"""Token budgets, checked before any model loads.

Image tokens are never truncated: an example either fits ``sequence_len``
whole, or the run stops and names the example and the numbers. When the
document leaves ``sequence_len`` unset, it is raised to fit the longest
example (up to the base's context length) and the plan says so.
"""

from __future__ import annotations

import attrs

from dlm.errors import DocumentError
from dlm.family import BoundBase
from dlm.format.document import Document
from dlm.records import TokenCount, TrainingExample


@attrs.frozen
class Budget:
    counts: tuple[TokenCount, ...]
    sequence_len: int
    longest: int  # index of the longest example
    note: str | None  # set when sequence_len was chosen or raised


def _path_line(origin: str) -> tuple[str, int]:
    path, _, line = origin.rpartition(":")
    return path, int(line) if line.isdigit() else 1


def check_budget(
    doc: Document,
    bound: BoundBase,
    examples: tuple[TrainingExample, ...],
) -> Budget:
    """Count every example (exactly when ``bound`` has a processor) and check
    it fits ``training.sequence_len`` or the base's context length."""
    base = bound.base
    counts = tuple(bound.count_tokens(example) for example in examples)
    longest = max(range(len(counts)), key=lambda i: counts[i].total)
    need = counts[longest].total
    requested = doc.frontmatter.training.sequence_len
    limit = requested if requested is not None else base.context_length
    for example, count in zip(examples, counts, strict=True):
        if count.total <= limit:
            continue
        path, line = _path_line(example.origin)
        what = "training.sequence_len" if requested is not None else f"{base.key}'s context length"
        raise DocumentError(
            path,
            line,
            1,
            f"{example.kind.value} example needs {count.total} tokens "
            f"({count.image} image + {count.prompt} prompt + {count.completion} completion) "
            f"but {what} is {limit}; image tokens are never truncated",
            hint=(
                f"raise training.sequence_len to at least {count.total}, or shorten this section"
                if requested is not None
                else "shorten this section or split it into several"
            ),
        )
    if requested is None:
        note = (
            f"sequence_len set to {need} to fit the longest example "
            f"({counts[longest].image} image tokens never truncated)"
        )
        return Budget(counts, need, longest, note)
    return Budget(counts, requested, longest, None)
