"""Registers a family under a name another plugin owns (qwen2-vl)."""

from dlm import hookimpl


@hookimpl
def register_families(register):
    from dlm_vl_qwen2.family import Qwen2VLFamily

    register(Qwen2VLFamily())
