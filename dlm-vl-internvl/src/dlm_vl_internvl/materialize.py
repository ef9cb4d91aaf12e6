"""Converted real bases: download the original checkpoint once, convert it once, cache it.

The result lives in ``$DLM_HOME/bases/<key>/`` beside the tiny bases. It
appears atomically (built in a staging folder, then renamed) under a lock,
and carries a marker naming the hub revision and converter version it was
made from; a stale or half-made folder is never used.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from dlm.family import file_lock
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


def is_current(target: Path, base: BaseSpec) -> bool:
    try:
        data = json.loads((target / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(data == _marker(base))


def materialize_converted(base: BaseSpec, bases_dir: Path, download: Callable[[], Path]) -> Path:
    """The native checkpoint of ``base`` in ``bases_dir/<key>``, converting on first use.

    ``download`` returns the original checkpoint's folder (the generic
    pinned-revision download); it is only called when no current conversion
    exists.
    """
    target = bases_dir / base.key
    if is_current(target, base):
        return target
    bases_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(bases_dir / f".{base.key}.lock"):
        if is_current(target, base):
            return target
        source = download()
        staging = Path(tempfile.mkdtemp(prefix=f".{base.key}.convert-", dir=bases_dir))
        try:
            try:
                convert_checkpoint(source, staging)
            except ConversionError as exc:
                raise RuntimeError(
                    f"cannot convert {base.hub_id} @ {base.revision[:12]} to transformers' "
                    f"native InternVL layout: {exc}. The checkpoint in {source} is not the "
                    f"pinned one dlm-vl-internvl knows; reinstall or upgrade the plugin"
                ) from exc
            marker = json.dumps(_marker(base), indent=2) + "\n"
            (staging / MARKER).write_text(marker, encoding="utf-8")
            if target.exists():  # an older conversion: replace it
                stale = Path(tempfile.mkdtemp(prefix=f".{base.key}.stale-", dir=bases_dir))
                os.replace(target, stale / base.key)
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return target
