"""What the plugins registered: bases, families, exporters, with who provided each.

Each plugin's hook is called on its own, so one plugin raising inside a
hook is recorded against that plugin and the others still register.

A name belongs to one provider. When two plugins register the same base
key, family name or exporter name, neither is used: the name is
*contested*, both plugins show the conflict (``dlm plugins``, ``dlm
doctor``), and a command that needs the name refuses instead of guessing
(a later registration used to win silently; a copy of a gated base with
``gated=False`` removed its licence gate). Core's own names (built-in
plugins) cannot be replaced: core keeps them and the other plugin's claim
is refused and reported.
"""

from __future__ import annotations

import difflib
import traceback
from collections.abc import Callable
from typing import Any

import attrs

from dlm.errors import PluginError, UnknownBaseError, UnknownTargetError
from dlm.exporter import Exporter
from dlm.family import Family
from dlm.plugins.manager import ISOLATED, PluginInfo, broken, get_plugin_manager
from dlm.records import BaseSpec

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
    #: "base:key" -> the plugins that all register it (so none is used).
    contested: dict[str, list[str]] = attrs.field(factory=dict)

    # ------------------------------------------------------------ lookups

    def refuse_contested(self, kind: str, name: str) -> None:
        """Raise :class:`PluginError` if more than one plugin provides ``kind:name``."""
        providers = self.contested.get(f"{kind}:{name}")
        if not providers:
            return
        if len(providers) > 1:
            who = f"more than one plugin ({', '.join(providers)})"
            hint = "uninstall one of them, or leave one out with DLM_PLUGINS"
        else:
            who = f"plugin {providers[0]} twice"
            hint = f"report it to the authors of {providers[0]}, or leave it out with DLM_PLUGINS"
        raise PluginError(
            f"{kind} {name!r} is registered by {who}; dlm will not guess which one to use",
            hint=f"{hint} (`dlm plugins` shows the conflict)",
        )

    def base(self, key: str) -> BaseSpec:
        self.refuse_contested("base", key)
        if key in self.bases:
            return self.bases[key]
        installed = ", ".join(sorted(self.bases)) or "none"
        package = KNOWN_BASE_PACKAGES.get(key)
        # Same cutoff as the frontmatter's unknown-key hints (format.schema). A
        # known base whose plugin is missing keeps the `pip install` hint.
        close = difflib.get_close_matches(key, list(self.bases), n=1, cutoff=0.6)
        if package:
            hint = f"`pip install {package}` provides it"
        elif close:
            hint = f"did you mean '{close[0]}'?"
        else:
            hint = "install the plugin that provides it (`dlm plugins` lists what is installed)"
        raise UnknownBaseError(f"unknown base {key!r}; installed bases: {installed}", hint=hint)

    def family_for(self, base: BaseSpec) -> Family:
        self.refuse_contested("family", base.family)
        try:
            return self.families[base.family]
        except KeyError:
            raise PluginError(
                f"base {base.key!r} names family {base.family!r}, which no installed plugin registers",
                hint="reinstall the plugin that provides this base",
            ) from None

    def exporter(self, name: str) -> Exporter:
        self.refuse_contested("exporter", name)
        if name in self.exporters:
            return self.exporters[name]
        known = ", ".join(sorted(self.exporters)) or "none"
        close = difflib.get_close_matches(name, list(self.exporters), n=1)
        if name in ("gguf", "ollama"):
            hint: str | None = "`pip install dlm-export-gguf` adds gguf and ollama"
        elif close:
            hint = f"did you mean {close[0]!r}? (`dlm export --list-targets` lists them)"
        else:
            hint = "`dlm export --list-targets` lists the targets and their verdicts"
        raise UnknownTargetError(f"unknown export target {name!r}; installed: {known}", hint=hint)


def settle_claims(
    kind: str,
    claims: list[tuple[str, str, Any]],
    by_name: dict[str, PluginInfo],
    contested: dict[str, list[str]],
) -> dict[str, tuple[str, Any]]:
    """Give each claimed ``kind`` name to its one provider, or to nobody.

    ``claims`` are ``(name, plugin, thing)`` in registration order; the
    result maps each usable name to ``(plugin, thing)``. A name
    claimed once is accepted; one claimed by core (a built-in plugin) and
    others goes to core; one claimed by several plugins (or twice by one)
    goes to none of them and is recorded in ``contested``. Each losing or
    contesting plugin gets a line in its :attr:`PluginInfo.conflicts`.
    """
    accepted: dict[str, tuple[str, Any]] = {}
    by_key: dict[str, list[tuple[str, Any]]] = {}
    for name, plugin, thing in claims:
        by_key.setdefault(name, []).append((plugin, thing))

    def note(plugin: str, line: str) -> None:
        info = by_name.get(plugin)
        if info is not None and line not in info.conflicts:
            info.conflicts.append(line)

    for name, providers in by_key.items():
        plugins = [plugin for plugin, _ in providers]
        if len(providers) == 1:
            accepted[name] = providers[0]
            continue
        core = [(p, t) for p, t in providers if (info := by_name.get(p)) and info.builtin]
        if core:
            accepted[name] = core[0]
            for plugin in plugins:
                if plugin != core[0][0]:
                    note(plugin, f"refused: {kind} {name!r} is dlm-core's and cannot be replaced")
            continue
        contested[f"{kind}:{name}"] = sorted(set(plugins))
        for plugin in set(plugins):
            others = sorted({p for p in plugins if p != plugin})
            also = f"also registered by {', '.join(others)}" if others else "registered twice"
            note(plugin, f"conflict: {kind} {name!r} is {also}; neither is used")
    return accepted


def _collect() -> Registry:
    pm, infos = get_plugin_manager()
    reg = Registry(plugins=infos)
    by_name = {info.name: info for info in infos}

    def call_each(hook_name: str, make_register: Callable[[str], Callable[[Any], None]]) -> None:
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            try:
                impl.function(make_register(impl.plugin_name))
            except ISOLATED as exc:  # see dlm.plugins.manager.ISOLATED
                info = by_name.get(impl.plugin_name)
                if info is not None and info.error is None:
                    info.error = f"{hook_name}: {broken(exc)}"
                    info.error_detail = traceback.format_exc()

    # Claims are gathered first and settled after every plugin has spoken, so
    # the outcome does not depend on the order plugins happen to load in.
    claims: dict[str, list[tuple[str, str, Any]]] = {"base": [], "family": [], "exporter": []}

    def base_register(plugin: str) -> Callable[[BaseSpec], None]:
        def register(spec: BaseSpec) -> None:
            if not isinstance(spec, BaseSpec):
                raise TypeError(f"register_bases expects BaseSpec, got {type(spec).__name__}")
            claims["base"].append((spec.key, plugin, spec))

        return register

    def family_register(plugin: str) -> Callable[[Family], None]:
        def register(family: Family) -> None:
            if not isinstance(family, Family) or not family.name:
                raise TypeError("register_families expects a named dlm.family.Family instance")
            claims["family"].append((family.name, plugin, family))

        return register

    def exporter_register(plugin: str) -> Callable[[Exporter], None]:
        def register(exporter: Exporter) -> None:
            if not isinstance(exporter, Exporter) or not exporter.name:
                raise TypeError("register_exporters expects a named dlm.exporter.Exporter instance")
            claims["exporter"].append((exporter.name, plugin, exporter))

        return register

    call_each("register_families", family_register)
    call_each("register_bases", base_register)
    call_each("register_exporters", exporter_register)

    tables: dict[str, dict[str, Any]] = {
        "base": reg.bases,
        "family": reg.families,
        "exporter": reg.exporters,
    }
    for kind, table in tables.items():
        for name, (plugin, thing) in settle_claims(
            kind, claims[kind], by_name, reg.contested
        ).items():
            table[name] = thing
            reg.provider[f"{kind}:{name}"] = plugin
    return reg


_registry: Registry | None = None


def get_registry() -> Registry:
    """Bases, families and exporters from every loaded plugin (cached)."""
    global _registry
    if _registry is None:
        _registry = _collect()
    return _registry
