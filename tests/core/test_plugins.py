"""The plugin host: built-ins, third-party plugins from entry points, broken plugins, DLM_PLUGINS."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_dlm


def _plugins(env: dict[str, str] | None = None) -> list[dict]:
    result = run_dlm("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_builtin_plugin_registers_hf_snapshot() -> None:
    rows = {row["name"]: row for row in _plugins(env={"DLM_PLUGINS": ""})}
    assert set(rows) == {"dlm.builtins"}
    builtin = rows["dlm.builtins"]
    assert builtin["builtin"] is True
    assert builtin["distribution"] == "dlm-core"
    assert "register_exporters" in builtin["hooks"]
    assert "exporter:hf-snapshot" in builtin["provides"]


def test_third_party_plugin_is_listed_with_hooks(plugin_env: dict[str, str]) -> None:
    rows = {row["name"]: row for row in _plugins(env=plugin_env)}
    plugin = rows["test_plugin"]
    assert plugin["distribution"] == "dlm-test-plugin"
    assert plugin["version"] == "0.0.1"
    assert plugin["hooks"] == ["register_bases"]
    assert plugin["provides"] == ["base:test-community-vl"]
    assert plugin["error"] is None


def test_broken_plugin_is_reported_and_cli_keeps_working(
    plugin_env: dict[str, str], tmp_path: Path
) -> None:
    rows = {row["name"]: row for row in _plugins(env=plugin_env)}
    broken = rows["broken_plugin"]
    assert broken["distribution"] == "dlm-broken-plugin"
    assert "ImportError" in broken["error"] and "deliberately" in broken["error"]
    assert broken["hooks"] == []

    help_result = run_dlm("--help", env=plugin_env)
    assert help_result.returncode == 0 and "train" in help_result.stdout

    doc = tmp_path / "notes.dlm"
    init = run_dlm("init", doc, "--base", "test-community-vl", env=plugin_env)
    assert init.returncode == 0, init.stderr
    assert "base_model: test-community-vl" in doc.read_text()

    (tmp_path / "figures").mkdir()
    from PIL import Image

    Image.new("RGB", (32, 32), "red").save(tmp_path / "figures" / "your-image.png")
    show = run_dlm("show", doc, "--json", env=plugin_env)
    assert show.returncode == 0, show.stderr
    assert json.loads(show.stdout)["base"]["key"] == "test-community-vl"


def test_dlm_plugins_env_restricts_loading(plugin_env: dict[str, str]) -> None:
    env = {**plugin_env, "DLM_PLUGINS": "test_plugin"}
    names = {row["name"] for row in _plugins(env=env)}
    assert names == {"dlm.builtins", "test_plugin"}
    env = {**plugin_env, "DLM_PLUGINS": "dlm-broken-plugin"}  # distribution names work too
    names = {row["name"] for row in _plugins(env=env)}
    assert names == {"dlm.builtins", "broken_plugin"}


def test_init_accepts_third_party_base_only_when_installed(
    plugin_env: dict[str, str], tmp_path: Path
) -> None:
    without = run_dlm(
        "init", tmp_path / "a.dlm", "--base", "test-community-vl", env={"DLM_PLUGINS": ""}
    )
    assert without.returncode == 2
    assert "unknown base 'test-community-vl'" in without.stderr
    assert "Traceback" not in without.stderr
    with_plugin = run_dlm("init", tmp_path / "b.dlm", "--base", "test-community-vl", env=plugin_env)
    assert with_plugin.returncode == 0, with_plugin.stderr


def test_unknown_base_names_the_package_that_provides_it(tmp_path: Path) -> None:
    result = run_dlm(
        "init", tmp_path / "a.dlm", "--base", "paligemma-3b-mix-224", env={"DLM_PLUGINS": ""}
    )
    assert result.returncode == 2
    assert "pip install dlm-vl-paligemma" in result.stderr


def test_plugin_registered_in_process_and_unregistered() -> None:
    """The llm-style test pattern: register a plugin object, use it, unregister it."""
    from dlm import hookimpl
    from dlm.plugins import get_plugin_manager, get_registry, reset
    from dlm.records import Exporter, ProbeResult, Verdict

    class Dummy(Exporter):
        name = "dummy"
        description = "test"

        def probe(self, base):  # type: ignore[no-untyped-def]
            return ProbeResult(Verdict.PARTIAL, "only half")

    class Plugin:
        __name__ = "dummy-plugin"

        @hookimpl
        def register_exporters(self, register):  # type: ignore[no-untyped-def]
            register(Dummy())

    pm, _ = get_plugin_manager()
    plugin = Plugin()
    pm.register(plugin, name="dummy-plugin")
    try:
        from dlm.plugins import registry as registry_module

        registry_module._registry = None
        assert "dummy" in get_registry().exporters
        assert get_registry().provider["exporter:dummy"] == "dummy-plugin"
    finally:
        pm.unregister(plugin)
        reset()
    assert "dummy" not in get_registry().exporters
