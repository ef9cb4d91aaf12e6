"""Consoles: results go to stdout, progress and messages to stderr.

``--json`` (every command that reports something; shapes in docs/json.md):
exactly one JSON object on stdout. :func:`json_option` declares the flag and
marks the run as JSON so that a failure is also one object on stdout
(:func:`print_json_error`, called by the group in ``dlm.cli.app``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

# soft_wrap: paths and answers are printed whole, never folded at the terminal width
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

_JSON_META = "dlm.json"
F = TypeVar("F", bound=Callable[..., Any])


def _mark_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[_JSON_META] = True  # meta is shared with the group's context
    return value


def json_option(
    help: str = "Machine-readable output (one JSON object; docs/json.md).",
) -> Callable[[F], F]:
    """The ``--json`` flag (passed as ``as_json``). Eager, so that a bad value of
    another option is already reported as JSON."""
    return click.option(
        "--json", "as_json", is_flag=True, is_eager=True, callback=_mark_json, help=help
    )


def json_requested(ctx: click.Context | None = None) -> bool:
    ctx = ctx or click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(_JSON_META))


def print_json(data: Any) -> None:
    """The command's one JSON object, on stdout."""
    click.echo(json.dumps(data, indent=2, default=str))


def print_json_error(subject: str, message: str, hint: str | None, exit_code: int) -> None:
    """A failure under ``--json``: the message is also on stderr, as without it."""
    print_json(
        {"error": {"subject": subject, "message": message, "hint": hint, "exit_code": exit_code}}
    )
