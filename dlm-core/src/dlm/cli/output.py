"""Consoles: results go to stdout, progress and messages to stderr.

``--json`` (every command that reports something; shapes in docs/json.md)
lives in :mod:`dlm.commands`, public so that plugin commands take it too;
it is re-exported here for core's commands.
"""

from __future__ import annotations

from rich.console import Console

from dlm.commands import json_option, json_requested, print_json, print_json_error

__all__ = [
    "console",
    "err_console",
    "json_option",
    "json_requested",
    "print_json",
    "print_json_error",
]

# soft_wrap: paths and answers are printed whole, never folded at the terminal width
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
