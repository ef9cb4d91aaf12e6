"""The built-in commands, in the order ``dlm --help`` lists them."""

from __future__ import annotations

import click

from dlm.cli.plugins_cmd import plugins

COMMANDS: list[click.Command] = [plugins]
