"""The ``dlm`` command line.

Each command lives in its own module; heavy libraries (torch,
transformers) are imported inside the commands that need them, so
``dlm --help`` stays fast. Errors are printed as ``subject: message`` and
the next step; tracebacks only with ``--verbose``.
"""

from __future__ import annotations

import sys

import click

from dlm import __version__
from dlm.cli.app import DlmGroup
from dlm.cli.commands import COMMANDS


@click.group(cls=DlmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dlm")
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks and debug detail on errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Fine-tune vision-language models from plain .dlm documents."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


for _command in COMMANDS:
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="dlm", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
