"""The plugin host: finds plugins through entry points and collects what they register."""

from dlm.plugins.manager import ENTRY_POINT_GROUP, PluginInfo, get_plugin_manager, reset
from dlm.plugins.registry import Registry, get_registry

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "Registry",
    "get_plugin_manager",
    "get_registry",
    "reset",
]
