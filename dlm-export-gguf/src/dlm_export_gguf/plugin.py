"""The dlm plugin: the ``gguf`` and ``ollama`` export targets and the ``dlm gguf`` commands.

Importing this module stays cheap (no torch, no llama.cpp): the CLI loads it
for ``dlm --help`` and ``dlm plugins``. Errors are :class:`GGUFExportError`
(a ``dlm.errors.DlmError``): the CLI prints them, as JSON too under ``--json``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlm import hookimpl

if TYPE_CHECKING:
    import click

    from dlm.exporter import Exporter
    from dlm_export_gguf.llama_cpp import ConverterSource


@hookimpl
def register_exporters(register: Callable[[Exporter], None]) -> None:
    from dlm_export_gguf.exporter import GGUFExporter, OllamaExporter

    register(GGUFExporter())
    register(OllamaExporter())


@hookimpl
def register_commands(cli: click.Group) -> None:
    import click

    from dlm.commands import json_option, print_json

    @cli.group("gguf")
    def gguf() -> None:
        """The pinned llama.cpp behind `dlm export --target gguf|ollama`."""

    @gguf.command("fetch")
    @click.option(
        "--sdist",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Use this llama-cpp-python sdist instead of downloading it with pip.",
    )
    @json_option()
    def fetch(sdist: Path | None, as_json: bool) -> None:
        """Put the pinned converter under $DLM_HOME/llama.cpp/<commit>/."""
        from dlm_export_gguf.llama_cpp import fetch_converter

        # with --json, stdout is the one object: progress goes to stderr
        log = (lambda line: click.echo(line, err=True)) if as_json else click.echo
        source = fetch_converter(sdist=sdist, log=log)
        if as_json:
            print_json(_source_record(source))
        else:
            click.echo(f"converter ready: {source.describe()} at {source.root}")

    @gguf.command("status")
    @json_option()
    def status(as_json: bool) -> None:
        """Show the pinned revision, the converter in use, the runtime and this host."""
        report = _status()
        if as_json:
            print_json(report)
            return
        pinned = report["pinned"]
        click.echo(
            f"pinned: llama.cpp {pinned['llama_cpp']} "
            f"(llama-cpp-python=={pinned['llama_cpp_python']})"
        )
        converter = report["converter"]
        if converter is None:
            click.echo(
                "converter: not fetched (run `dlm gguf fetch`; exports fetch it on first use)"
            )
        elif converter["origin"] == "pinned":
            click.echo(f"converter: {converter['describe']} at {converter['root']}")
        else:
            click.echo(f"converter: {converter['describe']} (overrides the pin)")
        runtime = report["runtime"]
        if not runtime["usable"]:
            click.echo(f"runtime: unusable: {runtime['error']}")
            return
        mark = "" if runtime["matches_pin"] else f" (expected {pinned['llama_cpp_python']})"
        click.echo(f"runtime: llama-cpp-python {runtime['version']}{mark}, multimodal (libmtmd)")
        host = report["host"]
        click.echo(f"host: {host['cpu']}")
        click.echo(f"host: llama.cpp system info: {host['system_info']}")
        click.echo(
            f"host: extra buffer types (AMX/repacked weights) "
            f"{'on' if host['extra_bufts'] else 'off'} ({host['setting_env']}={host['setting']})"
        )

    @gguf.command("probe")
    @click.argument("architectures", nargs=-1)
    @json_option()
    def probe_cmd(architectures: tuple[str, ...], as_json: bool) -> None:
        """GGUF verdicts for ARCHITECTURES, each converted under its own name for both halves
        (default: every architecture the converter makes a vision projector of). A base's
        verdict with its declared export hints: dlm export DOC --list-targets."""
        from rich.console import Console
        from rich.table import Table

        from dlm_export_gguf.probe import Route, registrations, verdict_for_route

        regs, origin = registrations()
        verdicts = [
            (arch, verdict_for_route(arch, Route(text=arch, mmproj=arch), regs))
            for arch in architectures or sorted(regs.mmproj)
        ]
        if as_json:
            print_json(
                {
                    "revision": regs.revision,
                    "origin": origin,
                    "verdicts": [
                        {"architecture": arch, "verdict": r.verdict.value, "why": r.reason}
                        for arch, r in verdicts
                    ],
                }
            )
            return
        table = Table(
            title=f"GGUF verdicts at llama.cpp {regs.revision[:9]} (from {origin})",
            title_justify="left",
        )
        for column in ("architecture", "verdict", "why"):
            table.add_column(column, overflow="fold")
        for arch, result in verdicts:
            table.add_row(arch, result.verdict.value, result.reason)
        Console().print(table)

    @gguf.command("verify")
    @click.argument("export_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @json_option()
    def verify(export_dir: Path, as_json: bool) -> None:
        """Check a GGUF export's files against its manifest (sizes and sha256)."""
        from dlm_export_gguf.manifest import verify_export

        problems = verify_export(export_dir)
        for problem in problems:
            click.echo(f"{export_dir}: {problem}", err=True)
        if as_json:
            print_json({"export_dir": str(export_dir), "ok": not problems, "problems": problems})
        elif not problems:
            click.echo(f"{export_dir}: every file matches export_manifest.json")
        if problems:
            raise SystemExit(1)


def _source_record(source: ConverterSource) -> dict[str, Any]:
    return {
        "origin": source.origin,
        "revision": source.revision,
        "root": str(source.root),
        "describe": source.describe(),
    }


def _status() -> dict[str, Any]:
    """What `dlm gguf status` reports, as one record (its text and its --json)."""
    from dlm_export_gguf import isolated
    from dlm_export_gguf.llama_cpp import (
        LLAMA_CPP_COMMIT,
        LLAMA_CPP_PYTHON_VERSION,
        override_source,
        pinned_source,
        runtime_info,
    )

    source = override_source() or pinned_source()
    info = runtime_info()
    usable = info.installed and not info.error
    host = None
    if usable:
        machine = isolated.host()
        host = {
            **machine.as_record(),
            "amx": machine.amx,
            "setting_env": isolated.EXTRA_BUFTS_ENV,
            "setting": os.environ.get(isolated.EXTRA_BUFTS_ENV, "auto"),
        }
    return {
        "pinned": {"llama_cpp": LLAMA_CPP_COMMIT, "llama_cpp_python": LLAMA_CPP_PYTHON_VERSION},
        "converter": None if source is None else _source_record(source),
        "runtime": {
            "usable": usable,
            "installed": info.installed,
            "version": info.version,
            "matches_pin": info.matches_pin,
            "error": info.error,
        },
        "host": host,
    }
