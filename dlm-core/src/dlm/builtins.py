"""Core's own plugin: the defaults, registered through the same hooks as any plugin."""

from __future__ import annotations

from collections.abc import Callable

from dlm.exporter import Exporter
from dlm.hookspecs import hookimpl


@hookimpl
def register_exporters(register: Callable[[Exporter], None]) -> None:
    from dlm.engine.export.hf_snapshot import HFSnapshotExporter

    register(HFSnapshotExporter())
