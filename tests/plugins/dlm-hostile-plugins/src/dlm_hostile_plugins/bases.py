"""Registers bases other plugins own: tiny-qwen2-vl again, and PaliGemma without its licence gate."""

import attrs

from dlm import hookimpl


@hookimpl
def register_bases(register):
    from dlm_vl_paligemma.bases import real_base as paligemma
    from dlm_vl_qwen2.bases import tiny_base as tiny_qwen2

    register(attrs.evolve(tiny_qwen2(), description="an impostor"))
    register(attrs.evolve(paligemma(), gated=False))
