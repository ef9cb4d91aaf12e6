"""Experiment trackers: a run's log rows, as it trains, in TensorBoard, W&B, MLflow or trackio.

``training.report_to`` in the frontmatter (or ``dlm train --report-to``)
names them; none by default. They run through accelerate's tracking API
(its tracker classes, ``Accelerator(log_with=…)``, ``init_trackers``,
``log``), in the main process only: the other ranks of a multi-process run
report nothing. Each tracker needs its own package, an optional extra of
dlm-core; :func:`check_installed` refuses a run whose tracker does not
import, before any model loads and before anything is written to the store.

Where they write (the run stamp is the one in ``logs/train-<stamp>.jsonl``):

- TensorBoard: event files in ``<store>/logs/tensorboard/<stamp>/``;
- Weights & Biases: its local files in ``<store>/logs/wandb/<stamp>/``, the
  run in a project named after the document;
- MLflow and trackio: where their own settings say (``MLFLOW_TRACKING_URI``,
  ``TRACKIO_DIR``), an experiment/project named after the document, a run
  named by the stamp.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from rich.console import Console

from dlm.errors import TrainError

if TYPE_CHECKING:
    from dlm.engine.document.prepare import PreparedDocument


@attrs.frozen
class TrackerKind:
    """One tracker ``report_to`` can name (:data:`dlm.format.document.TRACKERS`)."""

    name: str  # in report_to, and accelerate's name for it (its LoggerType)
    title: str  # as people call it
    module: str  # the import it needs
    extra: str  # dlm-core's optional extra that installs that package
    local: bool  # its files go under <store>/logs/<name>/<stamp>/

    @property
    def install(self) -> str:
        return f"pip install 'dlm-core[{self.extra}]'"

    def tracker(self, project: str, stamp: str, folder: Path | None) -> Any:
        """accelerate's tracker object for one run, writing where dlm keeps it."""
        from accelerate import tracking

        if self.name == "tensorboard":
            assert folder is not None
            # TensorBoardTracker writes to <logging_dir>/<run_name>
            return tracking.TensorBoardTracker(stamp, folder.parent)
        if self.name == "wandb":
            return tracking.WandBTracker(project, name=stamp, dir=str(folder))
        if self.name == "mlflow":
            return tracking.MLflowTracker(experiment_name=project, run_name=stamp)
        if self.name == "trackio":
            return tracking.TrackioTracker(project, name=stamp)
        raise ValueError(f"no tracker named {self.name!r}")


KINDS: dict[str, TrackerKind] = {
    kind.name: kind
    for kind in (
        TrackerKind("tensorboard", "TensorBoard", "tensorboard", "tensorboard", local=True),
        TrackerKind("wandb", "Weights & Biases", "wandb", "wandb", local=True),
        TrackerKind("mlflow", "MLflow", "mlflow", "mlflow", local=False),
        TrackerKind("trackio", "trackio", "trackio", "trackio", local=False),
    )
}


# ----------------------------------------------------------------- before the run


def with_report_to(prepared: PreparedDocument, names: tuple[str, ...] | None) -> PreparedDocument:
    """The document with ``--report-to``'s choice in place of its own (``None``: its own),
    so the run, its record (``hyperparameters.report_to``) and every rank read one choice."""
    if names is None:
        return prepared
    frontmatter = prepared.doc.frontmatter
    training = attrs.evolve(frontmatter.training, report_to=tuple(names))
    doc = attrs.evolve(prepared.doc, frontmatter=attrs.evolve(frontmatter, training=training))
    return attrs.evolve(prepared, doc=doc)


def check_installed(names: tuple[str, ...]) -> None:
    """Every chosen tracker's package imports; else a :class:`TrainError` with the pip command."""
    for name in names:
        kind = KINDS[name]
        try:
            importlib.import_module(kind.module)
        except ImportError as exc:
            raise TrainError(
                f"report_to names {kind.title}, but its package '{kind.module}' does not import "
                f"({exc}); nothing was trained",
                hint=f"install it: {kind.install} (or train without it: --report-to none)",
            ) from None


# ----------------------------------------------------------------- the run


def project_name(prepared: PreparedDocument) -> str:
    """The tracker project a document's runs go to: its file name (W&B and MLflow
    refuse some characters), else its ``dlm_id``."""
    doc = prepared.doc
    stem = doc.path.stem if doc.path is not None else ""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-") or doc.frontmatter.dlm_id


def numbers(row: Mapping[str, Any], prefix: str = "") -> dict[str, float | int]:
    """A log row's numbers, by name: ``None``, text and flags left out, nested
    mappings flattened as ``outer/inner`` (TensorBoard groups by the prefix)."""
    out: dict[str, float | int] = {}
    for key, value in row.items():
        if isinstance(value, Mapping):
            out.update(numbers(value, f"{prefix}{key}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = value
    return out


def scalar_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters as trackers store them: numbers, text, flags or nothing
    (TensorBoard's hparams refuse lists)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value)
        elif isinstance(value, Mapping):
            value = str(dict(value))
        out[key] = value
    return out


@attrs.define
class RunTrackers:
    """The trackers of one run: none unless chosen, and none off the main process.

    Build it before the accelerator (:meth:`log_with` goes into it), then
    wrap the loop in :meth:`running` and :meth:`log` each row.
    """

    kinds: tuple[TrackerKind, ...]
    project: str
    stamp: str
    logs: Path  # the store's logs/
    console: Console
    _accelerator: Any = attrs.field(default=None, init=False)

    @classmethod
    def for_run(
        cls, prepared: PreparedDocument, stamp: str, console: Console, *, main: bool
    ) -> RunTrackers:
        names = prepared.doc.frontmatter.training.report_to if main else ()
        kinds = tuple(KINDS[name] for name in names)
        return cls(kinds, project_name(prepared), stamp, prepared.paths.logs, console)

    def folder(self, kind: TrackerKind) -> Path | None:
        return self.logs / kind.name / self.stamp if kind.local else None

    def where(self) -> dict[str, str | None]:
        """Each tracker's folder under the store (``None``: it keeps its own)."""
        return {
            kind.name: str(folder) if (folder := self.folder(kind)) else None for kind in self.kinds
        }

    def log_with(self) -> list[Any] | None:
        """``Accelerator(log_with=…)``: accelerate's tracker objects, built here so
        each writes where dlm keeps it; ``None`` when nothing reports."""
        if not self.kinds:
            return None
        return [kind.tracker(self.project, self.stamp, self.folder(kind)) for kind in self.kinds]

    @contextmanager
    def running(self, accelerator: Any, config: Mapping[str, Any]) -> Iterator[RunTrackers]:
        """Start the trackers with the run's settings; finish them however the run ends."""
        if not self.kinds:
            yield self
            return
        for kind in self.kinds:
            folder = self.folder(kind)
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
        try:
            accelerator.init_trackers(self.project, config=scalar_config(config))
        except Exception as exc:
            self._accelerator = accelerator
            self._finish()
            titles = ", ".join(kind.title for kind in self.kinds)
            raise TrainError(
                f"could not start {titles}: {type(exc).__name__}: {exc}; nothing was trained",
                hint="check the tracker's own set-up (e.g. `wandb login`), "
                "or train without it: --report-to none",
            ) from exc
        self._accelerator = accelerator
        for kind in self.kinds:
            folder = self.folder(kind)
            place = f"{folder}" if folder else f"project {self.project}, run {self.stamp}"
            self.console.print(f"  reporting to {kind.title}: {place}")
        try:
            yield self
        finally:
            self._finish()

    def log(self, row: Mapping[str, Any], step: int) -> None:
        """One row's numbers at ``step`` (``row["step"]`` itself is the axis, not a value)."""
        if self._accelerator is None:
            return
        values = numbers({k: v for k, v in row.items() if k != "step"})
        if values:
            self._accelerator.log(values, step=step)

    def _finish(self) -> None:
        """Close each tracker. Not ``accelerator.end_training()``: that also tears down
        the process group, which a multi-process run still needs to hand its adapter
        over. A tracker that fails to close costs its last rows, never the run."""
        accelerator, self._accelerator = self._accelerator, None
        for tracker in getattr(accelerator, "trackers", []):
            try:
                tracker.finish()
            except Exception as exc:
                self.console.print(f"  warning: {tracker.name} did not close: {exc}")


__all__ = [
    "KINDS",
    "RunTrackers",
    "TrackerKind",
    "check_installed",
    "numbers",
    "project_name",
    "scalar_config",
    "with_report_to",
]
