"""The dlm plugin: the ``gguf`` and ``ollama`` export targets and the ``dlm gguf`` commands.

Importing this module stays cheap (no torch, no llama.cpp): the CLI loads it
for ``dlm --help`` and ``dlm plugins``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from dlm import hookimpl

if TYPE_CHECKING:
    import click

    from dlm.records import Exporter

T = TypeVar("T")


@hookimpl
def register_exporters(register: Callable[[Exporter], None]) -> None:
    from dlm_export_gguf.exporter import GGUFExporter, OllamaExporter

    register(GGUFExporter())
    register(OllamaExporter())


@hookimpl
def register_commands(cli: click.Group) -> None:
    import click

    @cli.group("gguf")
    def gguf() -> None:
        """The pinned llama.cpp behind `dlm export --target gguf|ollama`."""

    @gguf.command("fetch")
    @click.option(
        "--sdist",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Use this llama-cpp-python sdist instead of downloading it with pip.",
    )
    def fetch(sdist: Path | None) -> None:
        """Put the pinned converter under $DLM_HOME/llama.cpp/<commit>/."""
        from dlm_export_gguf.llama_cpp import fetch_converter

        source = _or_exit(lambda: fetch_converter(sdist=sdist, log=click.echo))
        click.echo(f"converter ready: {source.describe()} at {source.root}")

    @gguf.command("status")
    def status() -> None:
        """Show the pinned revision, the converter in use and the runtime."""
        from dlm_export_gguf.llama_cpp import (
            LLAMA_CPP_COMMIT,
            LLAMA_CPP_PYTHON_VERSION,
            override_source,
            pinned_source,
            runtime_info,
        )

        click.echo(
            f"pinned: llama.cpp {LLAMA_CPP_COMMIT} (llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION})"
        )
        override = _or_exit(override_source)
        pinned = pinned_source()
        if override is not None:
            click.echo(f"converter: {override.describe()} (overrides the pin)")
        elif pinned is not None:
            click.echo(f"converter: {pinned.describe()} at {pinned.root}")
        else:
            click.echo(
                "converter: not fetched (run `dlm gguf fetch`; exports fetch it on first use)"
            )
        info = runtime_info()
        if not info.installed or info.error:
            click.echo(f"runtime: unusable: {info.error}")
        else:
            mark = "" if info.matches_pin else f" (expected {LLAMA_CPP_PYTHON_VERSION})"
            click.echo(f"runtime: llama-cpp-python {info.version}{mark}, multimodal (libmtmd)")
            from dlm_export_gguf import isolated

            machine = _or_exit(isolated.host)
            setting = os.environ.get(isolated.EXTRA_BUFTS_ENV, "auto")
            click.echo(f"host: {machine.cpu}")
            click.echo(f"host: llama.cpp system info: {machine.system_info}")
            click.echo(
                f"host: extra buffer types (AMX/repacked weights) "
                f"{'on' if machine.extra_bufts else 'off'} "
                f"({isolated.EXTRA_BUFTS_ENV}={setting})"
            )

    @gguf.command("probe")
    @click.argument("architectures", nargs=-1)
    def probe_cmd(architectures: tuple[str, ...]) -> None:
        """GGUF verdicts for ARCHITECTURES, each converted under its own name for both halves
        (default: every architecture the converter makes a vision projector of). A base's
        verdict with its declared export hints: dlm export DOC --list-targets."""
        from rich.console import Console
        from rich.table import Table

        from dlm_export_gguf.probe import Route, registrations, verdict_for_route

        regs, origin = registrations()
        table = Table(
            title=f"GGUF verdicts at llama.cpp {regs.revision[:9]} (from {origin})",
            title_justify="left",
        )
        for column in ("architecture", "verdict", "why"):
            table.add_column(column, overflow="fold")
        for arch in architectures or sorted(regs.mmproj):
            result = verdict_for_route(arch, Route(text=arch, mmproj=arch), regs)
            table.add_row(arch, result.verdict.value, result.reason)
        Console().print(table)

    @gguf.command("verify")
    @click.argument("export_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
    def verify(export_dir: Path) -> None:
        """Check a GGUF export's files against its manifest (sizes and sha256)."""
        from dlm_export_gguf.manifest import verify_export

        problems = verify_export(export_dir)
        for problem in problems:
            click.echo(f"{export_dir}: {problem}", err=True)
        if problems:
            raise SystemExit(1)
        click.echo(f"{export_dir}: every file matches export_manifest.json")


def _or_exit(fn: Callable[[], T]) -> T:
    """Run ``fn``; a GGUFExportError becomes a one-line message and exit 1."""
    import click

    from dlm_export_gguf.errors import GGUFExportError

    try:
        return fn()
    except GGUFExportError as exc:
        click.echo(exc.render(), err=True)
        raise SystemExit(exc.exit_code) from None
