"""dlm plugin entry point: registers the PaliGemma family and its bases."""

from __future__ import annotations

from collections.abc import Callable

from dlm import hookimpl
from dlm.family import Family
from dlm.records import BaseSpec
from dlm_vl_paligemma.bases import all_bases
from dlm_vl_paligemma.family import PaliGemmaFamily


@hookimpl
def register_families(register: Callable[[Family], None]) -> None:
    register(PaliGemmaFamily())


@hookimpl
def register_bases(register: Callable[[BaseSpec], None]) -> None:
    for base in all_bases():
        register(base)
