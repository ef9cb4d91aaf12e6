"""Loading plugins: built-ins first, then the ``dlm`` entry-point group.

A plugin that fails to import is recorded with its error and skipped; the
CLI and every other plugin keep working. That includes a plugin that calls
``sys.exit()`` while importing (``SystemExit`` is not an ``Exception``). ``DLM_PLUGINS`` restricts which
entry-point plugins load (comma-separated entry-point or distribution
names; set but empty means built-ins only).
"""

from __future__ import annotations

import importlib
import os
import traceback
from importlib import metadata

import attrs
import pluggy

from dlm import hookspecs

ENTRY_POINT_GROUP = "dlm"
BUILTIN_PLUGINS = ("dlm.builtins",)


@attrs.define
class PluginInfo:
    """One plugin as ``dlm plugins`` shows it."""

    name: str
    distribution: str
    version: str
    builtin: bool = False
    hooks: list[str] = attrs.field(factory=list)
    error: str | None = None
    error_detail: str | None = None
    #: Names this plugin registered that another plugin (or core) also claims;
    #: see :mod:`dlm.plugins.registry`. Shown beside ``error``.
    conflicts: list[str] = attrs.field(factory=list)

    @property
    def problems(self) -> list[str]:
        """Everything wrong with this plugin, for the error column of a table."""
        return ([self.error] if self.error else []) + self.conflicts


@attrs.define
class _State:
    pm: pluggy.PluginManager
    infos: list[PluginInfo]


_state: _State | None = None


def _wanted() -> set[str] | None:
    raw = os.environ.get("DLM_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


#: What a plugin may raise and still be isolated: its own errors, and
#: ``sys.exit()`` (``SystemExit``), which would otherwise end every command.
#: ``KeyboardInterrupt`` is the user's and still stops dlm.
ISOLATED = (Exception, SystemExit)


def broken(exc: BaseException) -> str:
    """One line for a plugin's failure, as ``dlm plugins`` shows it."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: the plugin called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def _hook_names(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    return sorted(
        caller.name
        for caller in (pm.get_hookcallers(plugin) or [])
        if not caller.name.startswith("_")
    )


def _load() -> _State:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []

    from dlm import __version__

    for module_name in BUILTIN_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
        infos.append(
            PluginInfo(
                name=module_name,
                distribution="dlm-core",
                version=__version__,
                builtin=True,
                hooks=_hook_names(pm, module),
            )
        )

    wanted = _wanted()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        if wanted is not None and ep.name not in wanted and dist not in wanted:
            continue
        if pm.has_plugin(ep.name):
            continue
        info = PluginInfo(name=ep.name, distribution=dist, version=version)
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
            info.hooks = _hook_names(pm, plugin)
        except ISOLATED as exc:  # a broken plugin must not break the CLI
            info.error = broken(exc)
            info.error_detail = traceback.format_exc()
        infos.append(info)
    return _State(pm=pm, infos=infos)


def get_plugin_manager() -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """The process-wide plugin manager and what was loaded (cached)."""
    global _state
    if _state is None:
        _state = _load()
    return _state.pm, _state.infos


def reset() -> None:
    """Forget loaded plugins (tests change ``DLM_PLUGINS`` or install plugins)."""
    global _state
    _state = None
    from dlm.plugins import commands, registry

    registry._registry = None
    commands._cache = None
