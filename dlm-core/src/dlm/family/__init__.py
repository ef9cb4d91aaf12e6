"""The family contract: what a base family plugin implements (public API).

- :mod:`dlm.family.contract`: :class:`Family`, the declarations and hooks a
  plugin writes (the contract; ``docs/plugins.md`` documents every member).
- :mod:`dlm.family.prompt_format`: :class:`PromptFormat`, the prompt-layout
  strategy a family picks, and :class:`ChatTemplate`, the default.
- :mod:`dlm.family.bound`: :class:`BoundBase`, a family bound to one base
  (``family.bind(base, processor)``): what the engine calls. Core machinery.
"""

from dlm.family.bound import FIT_KEEP_ASPECT, FIT_KEY, FIT_STRETCH, BoundBase, fit_within
from dlm.family.contract import LANGUAGE_MODEL_LINEAR_REGEX, Family
from dlm.family.prompt_format import ChatTemplate, PromptFormat, estimate_tokens
from dlm.store.bases import DOWNLOAD_PATTERNS, TINY_MARKER

__all__ = [
    "DOWNLOAD_PATTERNS",
    "FIT_KEEP_ASPECT",
    "FIT_KEY",
    "FIT_STRETCH",
    "LANGUAGE_MODEL_LINEAR_REGEX",
    "TINY_MARKER",
    "BoundBase",
    "ChatTemplate",
    "Family",
    "PromptFormat",
    "estimate_tokens",
    "fit_within",
]
