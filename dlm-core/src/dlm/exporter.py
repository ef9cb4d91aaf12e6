"""The export-target interface: what an exporter plugin implements.

Subclass :class:`Exporter`, register an instance through the
``register_exporters`` hook, and ``dlm export --target NAME`` runs it. The
records it is given and returns (:class:`~dlm.records.ExportRequest`,
:class:`~dlm.records.ExportResult`, :class:`~dlm.records.ProbeResult`) live in
:mod:`dlm.records`; this module holds the behaviour, as :mod:`dlm.family`
does for families.
"""

from __future__ import annotations

from typing import Any

from dlm.records import BaseSpec, ExportRequest, ExportResult, ProbeResult, Verdict


class Exporter:
    """Base class for export targets (register through ``register_exporters``)."""

    name: str = ""
    description: str = ""
    #: The ``dlm export`` options this target reads (keys of ``ExportRequest.options``:
    #: "quant", "smoke"); the CLI refuses others. ``None`` takes every option.
    takes_options: tuple[str, ...] | None = None

    def output_name(self, options: dict[str, Any]) -> str:
        """The folder under ``exports/`` this export writes (e.g. ``gguf-q4_k_m``)."""
        return self.name

    def probe(self, base: BaseSpec) -> ProbeResult:
        """Can this target export ``base``? Must be cheap and offline."""
        return ProbeResult(Verdict.SUPPORTED)

    def export(self, request: ExportRequest) -> ExportResult:  # pragma: no cover - interface
        raise NotImplementedError
