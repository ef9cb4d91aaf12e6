"""Run llama.cpp's ``convert_hf_to_gguf.py`` in this (child) process, with one guarded fallback.

Usage: ``python _convert_driver.py ROOT [--pretokenizer=NAME] -- ARGS... [-- ARGS...]``

Each ``--`` starts one conversion (the converter's own command line); running
them in one process pays for importing torch and transformers once.

The converter identifies a BPE pre-tokenizer by hashing the token ids of a
fixed check text; a tokenizer with a small or retrained vocabulary (every
tiny base) hashes to nothing it knows, and no flag sets the answer. With
``--pretokenizer=NAME`` (passed only after the parent checked that the
tokenizer's normalizer and split pattern are exactly those of the llama.cpp
pre-tokenizer NAME, e.g. Qwen2's for ``qwen2``), that one error is answered
with NAME; every other failure, and that one without the flag, still fails.
This file is run as a script and must not import dlm.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

FALLBACK_MARKER = "dlm-gguf: pre-tokenizer fallback:"
JOB_MARKER = "dlm-gguf: conversion"
_UNRECOGNIZED = "pre-tokenizer was not recognized"


def _patch_pretokenizer(text_model: type, name: str) -> None:
    original = text_model.get_vocab_base_pre  # type: ignore[attr-defined]

    def get_vocab_base_pre(self: object, tokenizer: object) -> str:
        try:
            return str(original(self, tokenizer))
        except NotImplementedError as exc:
            if _UNRECOGNIZED not in str(exc):
                raise
            print(f"{FALLBACK_MARKER} {name}", file=sys.stderr, flush=True)
            return name

    text_model.get_vocab_base_pre = get_vocab_base_pre  # type: ignore[attr-defined]


def main(argv: list[str]) -> None:
    if "--" not in argv or argv[0] == "--":
        raise SystemExit(__doc__)
    split = argv.index("--")
    own = argv[:split]
    jobs: list[list[str]] = []
    for arg in argv[split:]:
        if arg == "--":
            jobs.append([])
        else:
            jobs[-1].append(arg)
    root = Path(own[0]).resolve()
    fallback = next((a.split("=", 1)[1] for a in own[1:] if a.startswith("--pretokenizer=")), "")

    sys.path.insert(0, str(root))
    sys.path.insert(1, str(root / "gguf-py"))  # the converter's matching gguf, not a wheel
    script = root / "convert_hf_to_gguf.py"
    spec = importlib.util.spec_from_file_location("convert_hf_to_gguf", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["convert_hf_to_gguf"] = module
    spec.loader.exec_module(module)

    if fallback:
        # newer checkouts define TextModel in conversion/base.py, older ones in the script
        holder = sys.modules.get("conversion.base", module)
        _patch_pretokenizer(holder.TextModel, fallback)

    for number, job in enumerate(jobs, 1):
        print(f"{JOB_MARKER} {number}/{len(jobs)}: {' '.join(job)}", file=sys.stderr, flush=True)
        sys.argv = [str(script), *job]
        module.main()


if __name__ == "__main__":
    main(sys.argv[1:])
