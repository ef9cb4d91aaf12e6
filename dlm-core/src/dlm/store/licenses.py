"""Licence acceptances made before a document has a store.

``dlm init --i-accept-license`` must not create a store (a document that is
never trained, or is deleted, would leave one behind), yet ``dlm train``
has to find the acceptance. It is kept in one small file,
``$DLM_HOME/licenses.json``, keyed by the document's ``dlm_id`` and the
base: the acceptance stays per document, as one given to ``dlm train
--i-accept-license`` (which the store's manifest records) is.

The refusal both commands print lives here too, so it reads the same
wherever a gated base stops.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dlm.errors import UsageError
from dlm.records import BaseSpec
from dlm.store.atomic import atomic_write_json
from dlm.store.manifest import now_iso
from dlm.store.paths import dlm_home, normalize_dlm_id


def licenses_file() -> Path:
    return dlm_home() / "licenses.json"


def _load() -> dict[str, Any]:
    try:
        data = json.loads(licenses_file().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        # An unreadable record only means the licence is asked for again.
        return {}
    return data if isinstance(data, dict) else {}


def record_acceptance(dlm_id: str, base: BaseSpec, *, by: str, document: Path) -> dict[str, Any]:
    """Record that ``by`` accepted ``base``'s licence for the document ``dlm_id``."""
    acceptance = {
        "license": base.license,
        "accepted_at": now_iso(),
        "by": by,
        "document": str(document.resolve()),
    }
    data = _load()
    data.setdefault(normalize_dlm_id(dlm_id), {})[base.key] = acceptance
    licenses_file().parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(licenses_file(), data)
    return acceptance


def recorded_acceptance(dlm_id: str, base: BaseSpec) -> dict[str, Any] | None:
    """The acceptance ``dlm init`` recorded for this document and base, if any.

    One given for another licence text (the base's licence changed since)
    does not count.
    """
    entry = _load().get(normalize_dlm_id(dlm_id), {})
    acceptance = entry.get(base.key) if isinstance(entry, dict) else None
    if isinstance(acceptance, dict) and acceptance.get("license") == base.license:
        return acceptance
    return None


def license_refusal(
    base: BaseSpec, installed: Iterable[BaseSpec], *, switch: str = "--base {}"
) -> UsageError:
    """The refusal for a gated ``base``, offering the installed ungated bases beside it.

    ``switch`` says how the command at hand picks another base (``--base {}``
    for ``dlm init``; the document's ``base_model: {}`` for ``dlm train``).
    """
    # Tiny bases are toys and CUDA-first ones are no first choice: leave them out.
    ungated = sorted(
        other.key
        for other in installed
        if not (other.gated or other.tiny or other.cuda_first) and other.key != base.key
    )
    hint = "re-run with --i-accept-license once you have read and accepted it"
    if ungated:
        hint += ", or use an ungated base: " + " or ".join(switch.format(key) for key in ungated)
    return UsageError(
        f"base {base.key} is under the {base.license} licence, which must be accepted"
        + (f" ({base.license_url})" if base.license_url else ""),
        hint=hint,
        subject="license",
    )
