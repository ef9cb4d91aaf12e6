"""The probe: can the pinned llama.cpp convert a base's LM and its vision projector?

Verdicts come from the converter's own registrations (see
:mod:`dlm_export_gguf.registrations`): SUPPORTED when both sides convert,
PARTIAL when one does, UNSUPPORTED when neither. They are cached per llama.cpp
revision in ``$DLM_HOME/llama.cpp/probe-<revision>.json``. Before the pinned
converter is fetched, the probe reads ``pinned_registrations.json`` shipped in
this package (generated from that same source; a test keeps the two equal), so
listing targets never needs the network.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import attrs

from dlm.records import BaseSpec, ProbeResult, Verdict
from dlm_export_gguf.llama_cpp import (
    LLAMA_CPP_COMMIT,
    ConverterSource,
    llama_cpp_home,
    override_source,
    pinned_source,
    short,
)
from dlm_export_gguf.registrations import Registrations, read_registrations

SNAPSHOT = "pinned_registrations.json"


@attrs.frozen
class Route:
    """The converter architectures that convert each half of a base.

    Read from the base's declared :class:`dlm.records.ExportHints`, so the
    exporter knows no family: an empty hint means the base's own architecture.
    """

    text: str
    mmproj: str

    @classmethod
    def of(cls, base: BaseSpec) -> Route:
        hints = base.export_hints
        return cls(
            text=hints.text_architecture or base.architecture,
            mmproj=hints.mmproj_architecture or base.architecture,
        )


# ------------------------------------------------------------------ registrations


def snapshot_registrations() -> Registrations:
    text = resources.files("dlm_export_gguf").joinpath(SNAPSHOT).read_text(encoding="utf-8")
    return Registrations.from_json(json.loads(text))


def _cache_path(revision: str) -> Path:
    return llama_cpp_home() / f"probe-{revision}.json"


def _cacheable(revision: str) -> bool:
    # a dirty or unknown checkout can change under the same name
    return revision != "unknown" and not revision.endswith("-dirty")


def _read_cache(revision: str) -> dict[str, object] | None:
    path = _cache_path(revision)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("revision") == revision else None


def _write_cache(data: dict[str, object]) -> None:
    path = _cache_path(str(data["revision"]))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # a read-only home only costs a re-parse next time


def current_source() -> ConverterSource | None:
    """The converter the next export will use, if it is on disk."""
    return override_source() or pinned_source()


def registrations(source: ConverterSource | None = None) -> tuple[Registrations, str]:
    """What the converter registers, and where that came from (``cache``/``source``/``snapshot``)."""
    source = source or current_source()
    if source is None:
        return snapshot_registrations(), "snapshot"
    if _cacheable(source.revision):
        cached = _read_cache(source.revision)
        if cached is not None:
            return Registrations.from_json(cached), "cache"
    regs = read_registrations(source.root, source.revision)
    if _cacheable(source.revision):
        _write_cache(regs.to_json())
    return regs, "source"


# ------------------------------------------------------------------ verdicts


def verdict_for(base: BaseSpec, regs: Registrations) -> ProbeResult:
    return verdict_for_route(base.architecture, Route.of(base), regs)


def verdict_for_route(arch: str, route: Route, regs: Registrations) -> ProbeResult:
    """The verdict for architecture ``arch`` whose halves convert as ``route`` says."""
    text_ok = route.text in regs.text
    mmproj_ok = route.mmproj in regs.mmproj
    rev = short(regs.revision)
    detail = {
        "llama_cpp_revision": regs.revision,
        "architecture": arch,
        "text_architecture": route.text,
        "mmproj_architecture": route.mmproj,
        "text": text_ok,
        "mmproj": mmproj_ok,
    }
    if text_ok and mmproj_ok:
        own = route.text == route.mmproj == arch
        how = "" if own else f" (LM as {route.text}, mmproj as {route.mmproj})"
        return ProbeResult(
            Verdict.SUPPORTED, f"llama.cpp {rev} converts {arch}'s LM and mmproj{how}", detail
        )
    if text_ok or mmproj_ok:
        have, lack = ("LM", "vision projector (mmproj)") if text_ok else ("mmproj", "LM")
        return ProbeResult(
            Verdict.PARTIAL,
            f"llama.cpp {rev} converts {arch}'s {have} but not its {lack}",
            detail,
        )
    return ProbeResult(
        Verdict.UNSUPPORTED,
        f"llama.cpp {rev} has no converter for {arch} (neither its LM nor its mmproj)",
        detail,
    )


def probe(base: BaseSpec) -> ProbeResult:
    """The verdict for ``base`` at the converter in use, cached per revision."""
    source = current_source()
    revision = source.revision if source is not None else LLAMA_CPP_COMMIT
    cached = _read_cache(revision) if _cacheable(revision) else None
    route = Route.of(base)
    key = f"{base.architecture}|{route.text}|{route.mmproj}"
    verdicts = cached.get("verdicts") if cached is not None else None
    if isinstance(verdicts, dict) and isinstance(verdicts.get(key), dict):
        hit = verdicts[key]
        return ProbeResult(Verdict(hit["verdict"]), hit["reason"], dict(hit["detail"]))
    regs, origin = registrations(source)
    result = verdict_for_route(base.architecture, route, regs)
    result.detail["registrations_from"] = origin
    if _cacheable(revision):
        data = _read_cache(revision) or regs.to_json()
        stored = data.setdefault("verdicts", {})
        assert isinstance(stored, dict)
        stored[key] = {
            "verdict": result.verdict.value,
            "reason": result.reason,
            "detail": result.detail,
        }
        _write_cache(data)
    return result
