"""Consoles: results go to stdout, progress and messages to stderr."""

from __future__ import annotations

from rich.console import Console

# soft_wrap: paths and answers are printed whole, never folded at the terminal width
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
