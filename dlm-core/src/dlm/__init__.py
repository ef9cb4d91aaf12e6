"""dlm: fine-tune vision-language models from plain .dlm documents.

Plugins import :mod:`dlm.hookspecs` (``hookimpl``), :mod:`dlm.records`,
:mod:`dlm.family`, :mod:`dlm.exporter`, :mod:`dlm.errors` and :mod:`dlm.kit`
(the plugin author's kit); everything else is core's own business. Commands a
plugin adds (``register_commands``) take ``--json`` the way core's do, with
:mod:`dlm.commands`.
"""

from dlm.hookspecs import hookimpl

__version__ = "0.1.0"

#: The modules a plugin may import: the whole contract (docs/plugins.md).
PUBLIC_API = (
    "dlm",
    "dlm.hookspecs",
    "dlm.records",
    "dlm.family",
    "dlm.exporter",
    "dlm.errors",
    "dlm.commands",
    "dlm.kit",
)

__all__ = ["PUBLIC_API", "__version__", "hookimpl"]
