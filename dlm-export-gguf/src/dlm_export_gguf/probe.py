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
    """The converter architectures that convert each half of a VL architecture.

    ``text`` lists the LM architectures a checkpoint of this kind may name
    (the probe requires all of them unless the base says which one, in
    ``BaseSpec.extra["text_architecture"]``); ``config_patch`` says the
    exporter must write these names into the staged ``config.json``, because
    the checkpoint's own config does not name them.
    """

    text: tuple[str, ...]
    mmproj: str
    config_patch: bool = False
    #: what the mmproj converter needs staged (see convert.stage_mmproj_input):
    #: tensor-name prefixes to rewrite, and a token whose LM embedding it reads
    mmproj_rename: dict[str, str] | None = None
    mmproj_token_embedding: str | None = None


# Most VL architectures are registered under their own name for both halves.
# InternVL is not:
ROUTES: dict[str, Route] = {
    # Remote-code InternVL (InternVL2/3 "chat" checkpoints): the converter renames
    # `llm_config` to `text_config` and converts the LM by its `architectures`
    # (InternLM2ForCausalLM in InternVL2-2B, Qwen2ForCausalLM in InternVL3), and
    # the mmproj by `vision_config.architectures` = InternVisionModel.
    "InternVLChatModel": Route(
        text=("InternLM2ForCausalLM", "Qwen2ForCausalLM"), mmproj="InternVisionModel"
    ),
    # transformers-native InternVL (dlm converts InternVL2/3 to it: a Qwen2 LM for
    # InternVL3, a Llama LM for InternVL2's InternLM2): same route, but its config
    # names neither half, so the exporter writes the two names in (the LM's by its
    # text_config.model_type) before converting. InternVisionModel's tensor map
    # covers the native names (added for Intern-S1, which uses the same layout).
    "InternVLForConditionalGeneration": Route(
        text=("Qwen2ForCausalLM", "LlamaForCausalLM"),
        mmproj="InternVisionModel",
        config_patch=True,
        mmproj_rename={
            "vision_tower.": "model.vision_tower.",
            "multi_modal_projector.": "model.multi_modal_projector.",
        },
    ),
    # Mistral 3: both halves under its own name; the Pixtral mmproj also needs
    # the [IMG_BREAK] embedding from the LM, which the HF layout hides from it.
    "Mistral3ForConditionalGeneration": Route(
        text=("Mistral3ForConditionalGeneration",),
        mmproj="Mistral3ForConditionalGeneration",
        mmproj_token_embedding="[IMG_BREAK]",
    ),
}


#: What `dlm gguf probe` lists by default: the VL architectures of dlm's families.
KNOWN_VL_ARCHITECTURES = (
    "Qwen2VLForConditionalGeneration",
    "Mistral3ForConditionalGeneration",
    "InternVLForConditionalGeneration",
    "InternVLChatModel",
    "PaliGemmaForConditionalGeneration",
)


def route_for_arch(architecture: str, text_architecture: str | None = None) -> Route:
    route = ROUTES.get(architecture)
    if route is None:
        return Route(text=(architecture,), mmproj=architecture)
    if text_architecture:
        return attrs.evolve(route, text=(text_architecture,))
    return route


def route_for(base: BaseSpec) -> Route:
    named = base.extra.get("text_architecture")
    return route_for_arch(base.architecture, named if isinstance(named, str) else None)


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
    named = base.extra.get("text_architecture")
    return verdict_for_arch(base.architecture, named if isinstance(named, str) else None, regs)


def verdict_for_arch(arch: str, text_architecture: str | None, regs: Registrations) -> ProbeResult:
    route = route_for_arch(arch, text_architecture)
    text_ok = all(arch in regs.text for arch in route.text)
    mmproj_ok = route.mmproj in regs.mmproj
    rev = short(regs.revision)
    detail = {
        "llama_cpp_revision": regs.revision,
        "architecture": arch,
        "text_architectures": list(route.text),
        "mmproj_architecture": route.mmproj,
        "text": text_ok,
        "mmproj": mmproj_ok,
    }
    lm = " or ".join(route.text)
    if text_ok and mmproj_ok:
        how = "" if route.text == (arch,) else f" (LM as {lm}, mmproj as {route.mmproj})"
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
    key = f"{base.architecture}|{base.extra.get('text_architecture', '')}"
    verdicts = cached.get("verdicts") if cached is not None else None
    if isinstance(verdicts, dict) and isinstance(verdicts.get(key), dict):
        hit = verdicts[key]
        return ProbeResult(Verdict(hit["verdict"]), hit["reason"], dict(hit["detail"]))
    regs, origin = registrations(source)
    result = verdict_for(base, regs)
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
