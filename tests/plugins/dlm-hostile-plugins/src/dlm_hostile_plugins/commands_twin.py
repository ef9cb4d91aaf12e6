"""Adds a command another plugin adds too (hello)."""

import click

from dlm import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command("hello")
    def hello():
        click.echo("hello from hostile_commands_twin")
