"""The plugin host: built-ins, third-party plugins from entry points, broken plugins, DLM_PLUGINS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_PLUGINS, run_dlm


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
    assert plugin["provides"] == ["base:test-community-vl", "base:tiny-community-vl"]
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
    from dlm.exporter import Exporter
    from dlm.plugins import get_plugin_manager, get_registry, reset
    from dlm.records import ProbeResult, Verdict

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


# ----------------------------------------------------------------- hostile plugins
# tests/plugins/dlm-hostile-plugins: one entry point per kind of misbehaviour;
# DLM_PLUGINS picks which load beside the real family plugins.


@pytest.fixture(scope="module")
def hostile_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("hostile-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(TEST_PLUGINS / "dlm-hostile-plugins"),
        ],
        check=True,
        capture_output=True,
    )
    return target


def _hostile(hostile_path: Path, *plugins: str) -> dict[str, str]:
    existing = os.environ.get("PYTHONPATH", "")
    return {
        "PYTHONPATH": os.pathsep.join(p for p in (str(hostile_path), existing) if p),
        "DLM_PLUGINS": ",".join(plugins),
    }


def test_a_plugin_calling_sys_exit_is_isolated(hostile_path: Path, tmp_path: Path) -> None:
    """Item 17: sys.exit(3) at import (or in a hook) used to end every command with status 3."""
    env = _hostile(hostile_path, "qwen2", "hostile_exit", "hostile_exit_in_hook")
    rows = {row["name"]: row for row in _plugins(env=env)}
    assert rows["hostile_exit"]["error"] == "SystemExit: the plugin called sys.exit(3)"
    assert rows["hostile_exit_in_hook"]["error"] == (
        "register_bases: SystemExit: the plugin called sys.exit(4)"
    )
    assert rows["qwen2"]["error"] is None and "base:tiny-qwen2-vl" in rows["qwen2"]["provides"]

    help_result = run_dlm("--help", env=env)
    assert help_result.returncode == 0 and "train" in help_result.stdout
    init = run_dlm("init", tmp_path / "a.dlm", "--base", "tiny-qwen2-vl", env=env)
    assert init.returncode == 0, init.stderr


def test_a_second_provider_of_a_base_is_a_conflict_not_a_silent_swap(
    hostile_path: Path, tmp_path: Path
) -> None:
    """Item 18: re-registering paligemma-3b-mix-224 with gated=False used to drop its gate."""
    env = _hostile(hostile_path, "qwen2", "paligemma", "shadow_bases")
    rows = {row["name"]: row for row in _plugins(env=env)}
    hostile = rows["shadow_bases"]
    assert (
        "conflict: base 'paligemma-3b-mix-224' is also registered by paligemma; neither is used"
        in (hostile["conflicts"])
    )
    assert any(
        "'tiny-qwen2-vl' is also registered by shadow_bases" in c
        for c in rows["qwen2"]["conflicts"]
    )
    assert "base:tiny-qwen2-vl" not in rows["qwen2"]["provides"]
    assert "base:qwen2-vl-2b-instruct" in rows["qwen2"]["provides"]  # uncontested: still there

    table = run_dlm("plugins", env=env)
    assert table.returncode == 0
    assert "base 'paligemma-3b-mix-224' is also registered by" in table.stderr

    doc = tmp_path / "gated.dlm"
    init = run_dlm("init", doc, "--base", "paligemma-3b-mix-224", env=env)
    assert init.returncode == 1, init.stdout + init.stderr
    assert "registered by more than one plugin (paligemma, shadow_bases)" in init.stderr
    assert "dlm will not guess" in init.stderr and "Traceback" not in init.stderr
    assert not doc.exists()


def test_dlm_doctor_shows_plugin_conflicts(hostile_path: Path) -> None:
    env = _hostile(hostile_path, "qwen2", "shadow_bases", "hostile_family")
    result = run_dlm("doctor", "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["plugins"]}
    conflict = "conflict: family 'qwen2-vl' is also registered by qwen2; neither is used"
    assert conflict in rows["hostile_family"]["conflicts"]
    text = run_dlm("doctor", "--all", env=env)
    assert text.returncode == 0, text.stderr
    assert "family 'qwen2-vl' is also registered by qwen2" in " ".join(text.stdout.split())


def test_a_contested_family_is_refused_where_it_is_needed(
    hostile_path: Path, tmp_path: Path
) -> None:
    env = _hostile(hostile_path, "qwen2", "hostile_family")
    doc = tmp_path / "notes.dlm"
    doc.write_text(
        "---\ndlm_id: 01JZ8K2M3N4P5Q6R7S8T9V0W1X\ndlm_version: 10\n"
        "base_model: tiny-qwen2-vl\n---\nSome prose.\n"
    )
    show = run_dlm("show", doc, env=env)
    assert show.returncode == 1, show.stdout + show.stderr
    assert "family 'qwen2-vl' is registered by more than one plugin" in show.stderr
    assert "Traceback" not in show.stderr


def test_exporters_core_keeps_its_own_and_a_plugin_clash_is_contested() -> None:
    """In process (the llm pattern): a plugin object claiming hf-snapshot, gguf and its own."""
    from dlm import hookimpl
    from dlm.errors import PluginError
    from dlm.exporter import Exporter
    from dlm.plugins import get_plugin_manager, get_registry, reset

    class Impostor(Exporter):
        description = "an impostor"

        def __init__(self, name: str) -> None:
            self.name = name

    class Plugin:
        @hookimpl
        def register_exporters(self, register):  # type: ignore[no-untyped-def]
            register(Impostor("hf-snapshot"))
            register(Impostor("gguf"))
            register(Impostor("mine"))

    pm, _ = get_plugin_manager()
    plugin = Plugin()
    pm.register(plugin, name="impostor")
    try:
        from dlm.plugins import registry as registry_module

        registry_module._registry = None
        registry = get_registry()
        assert type(registry.exporter("hf-snapshot")).__name__ == "HFSnapshotExporter"
        assert registry.provider["exporter:hf-snapshot"] == "dlm.builtins"
        assert registry.provider["exporter:mine"] == "impostor"
        with pytest.raises(PluginError, match=r"exporter 'gguf' is registered by more than one"):
            registry.exporter("gguf")
        assert "gguf" not in registry.exporters
        assert registry.contested["exporter:gguf"] == ["gguf", "impostor"]
    finally:
        pm.unregister(plugin)
        reset()
    assert type(get_registry().exporter("gguf")).__name__ != "Impostor"


def test_a_command_colliding_with_a_builtin_is_refused_and_reported(hostile_path: Path) -> None:
    """Item 19: a plugin's `train` used to replace core's (blank in `dlm --help`)."""
    from dlm.cli.train_cmd import train

    env = _hostile(hostile_path, "hostile_commands", "hostile_commands_twin")
    help_result = run_dlm("--help", env=env)
    assert help_result.returncode == 0, help_result.stderr
    lines = help_result.stdout.splitlines()
    train_line = next(line for line in lines if line.strip().startswith("train "))
    assert train_line.split(None, 1)[1].startswith(train.get_short_help_str(limit=30)[:25])
    assert "greet" in help_result.stdout and "hello" not in help_result.stdout

    rows = {row["name"]: row for row in _plugins(env=env)}
    refused = "refused: command 'train' is dlm-core's and cannot be replaced"
    assert refused in rows["hostile_commands"]["conflicts"]
    contested = "conflict: command 'hello' is also registered by hostile_commands; neither is used"
    assert contested in rows["hostile_commands_twin"]["conflicts"]

    greet = run_dlm("greet", env=env)
    assert (greet.returncode, greet.stdout) == (0, "greetings\n")
    hello = run_dlm("hello", env=env)
    assert hello.returncode == 1
    assert "command 'hello' is added by more than one plugin" in hello.stderr
    train_help = run_dlm("train", "--help", env=env)
    assert "impostor" not in train_help.stdout and "DOC" in train_help.stdout


def test_a_base_registered_twice_by_one_plugin_is_contested_too() -> None:
    import attrs

    from dlm import hookimpl
    from dlm.errors import PluginError
    from dlm.plugins import get_plugin_manager, get_registry, reset

    class Plugin:
        @hookimpl
        def register_bases(self, register):  # type: ignore[no-untyped-def]
            from dlm_vl_qwen2.bases import tiny_base

            twin = attrs.evolve(tiny_base(), key="twin-base")
            register(twin)
            register(attrs.evolve(twin, description="the other one"))

    pm, _ = get_plugin_manager()
    plugin = Plugin()
    pm.register(plugin, name="twice")
    try:
        from dlm.plugins import registry as registry_module

        registry_module._registry = None
        with pytest.raises(PluginError, match=r"registered by plugin twice twice"):
            get_registry().base("twin-base")
        assert get_registry().base("tiny-qwen2-vl").key == "tiny-qwen2-vl"
    finally:
        pm.unregister(plugin)
        reset()
