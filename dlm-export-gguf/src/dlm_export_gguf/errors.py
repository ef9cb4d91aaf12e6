"""The one error type this plugin raises for a failed export or a missing llama.cpp.

A plugin codes only against core's public API, which has no error type for
exporters, so this mirrors ``dlm.errors.DlmError``'s shape (``message``,
``hint``, ``subject``, ``exit_code``, ``render()``) for the dispatcher to show.
"""

from __future__ import annotations


class GGUFExportError(Exception):
    """An export step failed: ``message`` says what, ``hint`` what to do next."""

    exit_code = 1
    subject = "gguf"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"{self.subject}: {self.message}"
        if self.hint:
            text += f"\n  → {self.hint}"
        return text

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message
