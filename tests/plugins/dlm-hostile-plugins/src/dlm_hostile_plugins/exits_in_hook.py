"""Imports fine, then calls sys.exit() inside a hook."""

import sys

from dlm import hookimpl


@hookimpl
def register_bases(register):
    sys.exit(4)
