"""dlm: fine-tune vision-language models from plain .dlm documents.

Plugins import :mod:`dlm.hookspecs` (``hookimpl``), :mod:`dlm.records`,
:mod:`dlm.family` and :mod:`dlm.errors`; everything else is core's own business.
"""

from dlm.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
