"""Mistral 3 for dlm: the ``mistral3`` family, ``mistral-small-3.1-24b-instruct`` and ``tiny-mistral3``."""

__version__ = "0.1.0"
