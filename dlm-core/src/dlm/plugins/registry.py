"""What the plugins registered: bases, families, exporters, with who provided each.

Each plugin's hook is called on its own, so one plugin raising inside a
hook is recorded against that plugin and the others still register.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import attrs

from dlm.errors import PluginError, UnknownBaseError
from dlm.family import Family
from dlm.plugins.manager import PluginInfo, get_plugin_manager
from dlm.records import BaseSpec, Exporter

#: Where a base key comes from when its plugin is not installed: a hint
#: for the user, not an import. Third-party bases are simply not listed.
KNOWN_BASE_PACKAGES: dict[str, str] = {
    "qwen2-vl-2b-instruct": "dlm-vl-qwen2",
    "tiny-qwen2-vl": "dlm-vl-qwen2",
    "paligemma-3b-mix-224": "dlm-vl-paligemma",
    "tiny-paligemma": "dlm-vl-paligemma",
    "mistral-small-3.1-24b-instruct": "dlm-vl-mistral",
    "tiny-mistral3": "dlm-vl-mistral",
    "internvl2-2b": "dlm-vl-internvl",
    "internvl3-2b": "dlm-vl-internvl",
    "tiny-internvl": "dlm-vl-internvl",
}


@attrs.define
class Registry:
    bases: dict[str, BaseSpec] = attrs.field(factory=dict)
    families: dict[str, Family] = attrs.field(factory=dict)
    exporters: dict[str, Exporter] = attrs.field(factory=dict)
    provider: dict[str, str] = attrs.field(factory=dict)  # "base:key" -> plugin name
    plugins: list[PluginInfo] = attrs.field(factory=list)

    # ------------------------------------------------------------ lookups

    def base(self, key: str) -> BaseSpec:
        if key in self.bases:
            return self.bases[key]
        installed = ", ".join(sorted(self.bases)) or "none"
        package = KNOWN_BASE_PACKAGES.get(key)
        hint = (
            f"`pip install {package}` provides it"
            if package
            else "install the plugin that provides it (`dlm plugins` lists what is installed)"
        )
        raise UnknownBaseError(f"unknown base {key!r}; installed bases: {installed}", hint=hint)

    def family_for(self, base: BaseSpec) -> Family:
        try:
            return self.families[base.family]
        except KeyError:
            raise PluginError(
                f"base {base.key!r} names family {base.family!r}, which no installed plugin registers",
                hint="reinstall the plugin that provides this base",
            ) from None

    def exporter(self, name: str) -> Exporter:
        if name in self.exporters:
            return self.exporters[name]
        known = ", ".join(sorted(self.exporters)) or "none"
        hint = (
            "`pip install dlm-export-gguf` adds gguf and ollama"
            if name in ("gguf", "ollama")
            else None
        )
        raise UnknownBaseError(
            f"unknown export target {name!r}; installed: {known}", hint=hint, subject="export"
        )


def _collect() -> Registry:
    pm, infos = get_plugin_manager()
    reg = Registry(plugins=infos)
    by_name = {info.name: info for info in infos}

    def call_each(hook_name: str, make_register: Callable[[str], Callable[[Any], None]]) -> None:
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            try:
                impl.function(make_register(impl.plugin_name))
            except Exception as exc:
                info = by_name.get(impl.plugin_name)
                if info is not None and info.error is None:
                    info.error = f"{hook_name}: {type(exc).__name__}: {exc}"
                    info.error_detail = traceback.format_exc()

    def base_register(plugin: str) -> Callable[[BaseSpec], None]:
        def register(spec: BaseSpec) -> None:
            if not isinstance(spec, BaseSpec):
                raise TypeError(f"register_bases expects BaseSpec, got {type(spec).__name__}")
            reg.bases[spec.key] = spec
            reg.provider[f"base:{spec.key}"] = plugin

        return register

    def family_register(plugin: str) -> Callable[[Family], None]:
        def register(family: Family) -> None:
            if not isinstance(family, Family) or not family.name:
                raise TypeError("register_families expects a named dlm.family.Family instance")
            reg.families[family.name] = family
            reg.provider[f"family:{family.name}"] = plugin

        return register

    def exporter_register(plugin: str) -> Callable[[Exporter], None]:
        def register(exporter: Exporter) -> None:
            if not isinstance(exporter, Exporter) or not exporter.name:
                raise TypeError("register_exporters expects a named dlm.records.Exporter instance")
            reg.exporters[exporter.name] = exporter
            reg.provider[f"exporter:{exporter.name}"] = plugin

        return register

    call_each("register_families", family_register)
    call_each("register_bases", base_register)
    call_each("register_exporters", exporter_register)
    return reg


_registry: Registry | None = None


def get_registry() -> Registry:
    """Bases, families and exporters from every loaded plugin (cached)."""
    global _registry
    if _registry is None:
        _registry = _collect()
    return _registry
