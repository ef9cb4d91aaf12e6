"""PaliGemma for dlm: the ``paligemma`` family, ``paligemma-3b-mix-224`` and ``tiny-paligemma``."""

__version__ = "0.1.0"
