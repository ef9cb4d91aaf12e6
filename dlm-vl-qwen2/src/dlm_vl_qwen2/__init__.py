"""Qwen2-VL for dlm: the ``qwen2-vl`` family, ``qwen2-vl-2b-instruct`` and ``tiny-qwen2-vl``."""

__version__ = "0.1.0"
