"""Keep library chatter (progress bars, advisory warnings) off the user's screen.

dlm shows its own progress; transformers' "Loading weights" bars and
deprecation warnings from the stack are noise unless the user asked for
``--verbose`` (which sets ``DLM_VERBOSE=1``).
"""

from __future__ import annotations

import os
import warnings


def verbose() -> bool:
    return os.environ.get("DLM_VERBOSE", "") not in ("", "0")


def quiet_environment() -> None:
    """Before any ML import: environment switches the libraries read at import time."""
    if verbose():
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)


def quiet_transformers() -> None:
    """Once transformers is needed anyway: turn off its tqdm bars."""
    if verbose():
        return
    quiet_environment()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
