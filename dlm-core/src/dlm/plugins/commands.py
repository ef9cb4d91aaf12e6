"""Commands plugins add to the ``dlm`` CLI, with collisions refused.

Each plugin's ``register_commands`` runs against a staging group of its own,
not the real CLI, so what it adds can be checked before anything is
replaced: a command named like a built-in (``train``) is refused and core's
stays (adding it straight to the CLI used to replace ``train``, which then
showed blank in ``dlm --help``); a name two plugins both add is contested and
neither is used; the rules are those of :func:`dlm.plugins.registry.settle_claims`.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any

import attrs
import click

from dlm.errors import PluginError
from dlm.plugins.manager import BUILTIN_PLUGINS, ISOLATED, broken, get_plugin_manager


@attrs.frozen
class PluginCommands:
    """What the plugins' commands came to: usable ones, and contested names."""

    commands: dict[str, click.Command]
    contested: dict[str, list[str]]  # "command:name" -> the plugins that all add it


_cache: PluginCommands | None = None


def plugin_commands(builtin: Mapping[str, click.Command]) -> PluginCommands:
    """Collect every plugin's commands once (cached); ``builtin`` are core's, by name."""
    global _cache
    if _cache is None:
        _cache = _collect(builtin)
    return _cache


def _collect(builtin: Mapping[str, click.Command]) -> PluginCommands:
    from dlm.plugins.registry import settle_claims

    pm, infos = get_plugin_manager()
    by_name = {info.name: info for info in infos}
    # Core's commands are claims by the built-in plugin, so core keeps them.
    claims: list[tuple[str, str, Any]] = [
        (name, BUILTIN_PLUGINS[0], command) for name, command in builtin.items()
    ]
    for impl in pm.hook.register_commands.get_hookimpls():
        staging = click.Group(name="dlm")
        try:
            impl.function(staging)
        except ISOLATED as exc:  # one plugin's bad command must not break the CLI
            info = by_name.get(impl.plugin_name)
            if info is not None and info.error is None:
                info.error = f"register_commands: {broken(exc)}"
                info.error_detail = traceback.format_exc()
            continue
        claims += [(name, impl.plugin_name, command) for name, command in staging.commands.items()]
    contested: dict[str, list[str]] = {}
    accepted = settle_claims("command", claims, by_name, contested)
    commands = {name: command for name, (_, command) in accepted.items() if name not in builtin}
    return PluginCommands(commands=commands, contested=contested)


def contested_command(name: str, providers: list[str]) -> click.Command:
    """A stand-in for a command two plugins add: running it says so, and exits 1."""

    def refuse(**_: Any) -> None:
        raise PluginError(
            f"command {name!r} is added by more than one plugin ({', '.join(providers)}); "
            "dlm will not guess which one to run",
            hint="uninstall one of them, or leave one out with DLM_PLUGINS "
            "(`dlm plugins` shows the conflict)",
        )

    return click.Command(
        name,
        callback=refuse,
        hidden=True,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )
