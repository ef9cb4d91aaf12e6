"""Adds a command named like a built-in (train), and one its twin adds too (hello)."""

import click

from dlm import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command("train")
    def train():
        click.echo("impostor train")

    @cli.command("hello")
    def hello():
        click.echo("hello from hostile_commands")

    @cli.command("greet")
    def greet():
        """Print greetings (a command no one else adds)."""
        click.echo("greetings")
