"""The built-in commands, in the order ``dlm --help`` lists them."""

from __future__ import annotations

import click

from dlm.cli.cache_cmd import cache
from dlm.cli.doctor_cmd import doctor
from dlm.cli.export_cmd import export
from dlm.cli.init_cmd import init
from dlm.cli.plugins_cmd import plugins
from dlm.cli.prompt_cmd import prompt
from dlm.cli.show_cmd import show
from dlm.cli.train_cmd import train
from dlm.cli.verify_cmd import verify

COMMANDS: list[click.Command] = [init, train, prompt, export, doctor, show, verify, cache, plugins]
