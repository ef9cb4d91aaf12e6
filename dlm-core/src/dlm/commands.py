"""``--json`` for every command that reports something, core's and plugins' alike.

A command declares the flag with :func:`json_option` (it arrives as
``as_json``) and prints its one object with :func:`print_json`; the CLI
group then also reports a failure as one ``{"error": …}`` object on stdout
(:func:`print_json_error`). Shapes are documented in docs/json.md.

Part of the public API: a plugin's ``register_commands`` uses it too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

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
