"""The one error type this plugin raises: a failed export or an unusable llama.cpp.

A :class:`dlm.errors.ExportError`, so the CLI prints it as
``gguf: message`` plus the next step, exit code 1, no traceback.
"""

from __future__ import annotations

from dlm.errors import ExportError


class GGUFExportError(ExportError):
    """An export step failed: ``message`` says what, ``hint`` what to do next."""

    subject = "gguf"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
