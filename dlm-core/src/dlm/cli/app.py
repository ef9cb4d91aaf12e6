"""The click group: plugin commands, and turning errors into messages and exit codes."""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from dlm.cli.output import err_console, json_requested, print_json_error
from dlm.errors import DlmError


class DlmGroup(click.Group):
    """Adds plugin commands on first use and renders :class:`DlmError` without tracebacks."""

    _plugin_commands_loaded = False

    def _load_plugin_commands(self) -> None:
        if self._plugin_commands_loaded:
            return
        self._plugin_commands_loaded = True
        from dlm.plugins.commands import contested_command, plugin_commands

        # Collisions with a built-in or between plugins are refused and reported
        # there (dlm.plugins.commands); what comes back is safe to add.
        found = plugin_commands(dict(self.commands))
        for name, command in found.commands.items():
            self.add_command(command, name)
        for key, providers in found.contested.items():
            name = key.split(":", 1)[1]
            self.add_command(contested_command(name, providers), name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self._load_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        import os

        from dlm.engine.quiet import quiet_environment

        verbose = "--verbose" in sys.argv or "-v" in sys.argv[1:2]
        if verbose:
            os.environ["DLM_VERBOSE"] = "1"
        quiet_environment()
        try:
            return super().invoke(ctx)
        except DlmError as exc:
            verbose = verbose or bool((ctx.obj or {}).get("verbose"))
            if verbose:
                err_console.print(traceback.format_exc(), markup=False, highlight=False)
            err_console.print(exc.render(), style="bold red", markup=False, highlight=False)
            if json_requested(ctx):
                print_json_error(exc.subject, exc.message, exc.hint, exc.exit_code)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            err_console.print("interrupted", style="bold red")
            ctx.exit(130)
        except click.exceptions.Exit:
            raise
        except click.ClickException as exc:
            if json_requested(ctx):  # a bad option value; click prints the usage on stderr
                subject = ctx.invoked_subcommand or "usage"
                print_json_error(subject, exc.format_message(), None, exc.exit_code)
            raise
        except Exception as exc:  # an unexpected failure: still no traceback by default
            verbose = verbose or bool((ctx.obj or {}).get("verbose"))
            if verbose:
                err_console.print(traceback.format_exc(), markup=False, highlight=False)
            from dlm.store.space import as_disk_full

            full = as_disk_full(exc)  # a full disk in a write no step wraps: still say so
            if full is not None:
                err_console.print(full.render(), style="bold red", markup=False, highlight=False)
                if json_requested(ctx):
                    print_json_error(full.subject, full.message, full.hint, full.exit_code)
                ctx.exit(full.exit_code)
            command = ctx.invoked_subcommand or "dlm"
            err_console.print(
                f"{command}: {type(exc).__name__}: {exc}\n  → re-run with --verbose for the traceback",
                style="bold red",
                markup=False,
                highlight=False,
            )
            if json_requested(ctx):
                print_json_error(
                    command, f"{type(exc).__name__}: {exc}", "re-run with --verbose", 1
                )
            ctx.exit(1)


def load_plugin_commands() -> None:
    """Collect plugin commands now (``dlm plugins`` and ``dlm doctor`` show their conflicts)."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().command if ctx is not None else None
    if isinstance(root, DlmGroup):
        root._load_plugin_commands()
