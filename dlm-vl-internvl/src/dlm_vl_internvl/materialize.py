"""Converted real bases: download the original checkpoint once, convert it once, cache it.

The result lives in ``$DLM_HOME/bases/<key>/`` beside the tiny bases. It
appears atomically (built in a staging folder, then renamed) under a lock,
and carries a marker naming the hub revision and converter version it was
made from; a stale or half-made folder is never used.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dlm.kit import build_once
from dlm.records import BaseSpec
from dlm_vl_internvl.convert import CONVERTER_VERSION, ConversionError, convert_checkpoint

MARKER = "dlm-converted.json"


def _marker(base: BaseSpec) -> dict[str, object]:
    return {
        "key": base.key,
        "hub_id": base.hub_id,
        "revision": base.revision,
        "converter": CONVERTER_VERSION,
    }


def materialize_converted(base: BaseSpec, bases_dir: Path, download: Callable[[], Path]) -> Path:
    """The native checkpoint of ``base`` in ``bases_dir/<key>``, converting on first use.

    ``download`` returns the original checkpoint's folder (the generic
    pinned-revision download); it is only called when no current conversion
    exists.
    """

    def convert(staging: Path) -> None:
        source = download()
        try:
            convert_checkpoint(source, staging)
        except ConversionError as exc:
            raise RuntimeError(
                f"cannot convert {base.hub_id} @ {base.revision[:12]} to transformers' "
                f"native InternVL layout: {exc}. The checkpoint in {source} is not the "
                f"pinned one dlm-vl-internvl knows; reinstall or upgrade the plugin"
            ) from exc

    return build_once(bases_dir / base.key, MARKER, _marker(base), convert)
