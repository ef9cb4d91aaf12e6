"""Typed errors. The CLI prints ``subject: message`` plus the next step.

Exit codes: :class:`DlmError` and its runtime subclasses exit 1; misuse of
the command line (:class:`UsageError`) exits 2. No traceback is shown unless
``--verbose``.
"""

from __future__ import annotations


class DlmError(Exception):
    """A failure the user can act on."""

    exit_code = 1
    subject = "dlm"

    def __init__(self, message: str, *, hint: str | None = None, subject: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if subject is not None:
            self.subject = subject

    def render(self) -> str:
        text = f"{self.subject}: {self.message}"
        if self.hint:
            text += f"\n  → {self.hint}"
        return text


class UsageError(DlmError):
    """The command line asked for something that cannot be done as asked (exit 2)."""

    exit_code = 2
    subject = "usage"


class DocumentError(DlmError):
    """A problem in a .dlm document, located as ``file:line:col``."""

    subject = "document"

    def __init__(
        self,
        path: str,
        line: int,
        col: int,
        message: str,
        *,
        hint: str | None = None,
    ):
        super().__init__(message, hint=hint)
        self.path = str(path)
        self.line = line
        self.col = col

    def render(self) -> str:
        text = f"{self.path}:{self.line}:{self.col}: {self.message}"
        if self.hint:
            text += f"\n  → {self.hint}"
        return text


class StoreError(DlmError):
    subject = "store"


class LockHeldError(StoreError):
    """Another live process holds the store lock."""

    subject = "lock"


class PluginError(DlmError):
    subject = "plugins"


class UnknownBaseError(DlmError):
    subject = "base"


class UnknownTargetError(UsageError):
    """``--target`` names an export target no installed plugin provides (exit 2)."""

    subject = "export"


class PlanError(DlmError):
    """The hardware planner refuses the run (numbers in the message)."""

    subject = "doctor"


class TrainError(DlmError):
    subject = "train"


class PromptError(DlmError):
    subject = "prompt"


class ExportError(DlmError):
    subject = "export"


class DiskFullError(StoreError):
    """A write ran out of space (ENOSPC); the message says where and how much was needed."""

    subject = "disk full"
