"""dlm: fine-tune vision-language models from plain .dlm documents.

Plugins import :mod:`dlm.hookspecs` (``hookimpl``), :mod:`dlm.records`,
:mod:`dlm.family` and :mod:`dlm.errors`; everything else is core's own business.
Commands a plugin adds (``register_commands``) take ``--json`` the way core's
do with :func:`json_option` and :func:`print_json` from here.
"""

from typing import TYPE_CHECKING, Any

from dlm.hookspecs import hookimpl

if TYPE_CHECKING:
    from dlm.cli.output import json_option, print_json

__version__ = "0.1.0"

#: The modules a plugin may import: the whole contract (docs/plugins.md).
PUBLIC_API = ("dlm", "dlm.hookspecs", "dlm.records", "dlm.family", "dlm.errors")

__all__ = ["PUBLIC_API", "__version__", "hookimpl", "json_option", "print_json"]

_CLI_HELPERS = ("json_option", "print_json")


def __getattr__(name: str) -> Any:
    # Imported on first use: ``import dlm`` stays free of click and rich, which
    # training workers and plugins that add no commands never need.
    if name in _CLI_HELPERS:
        from dlm.cli import output

        return getattr(output, name)
    raise AttributeError(f"module 'dlm' has no attribute {name!r}")
