"""``training_run.json``: what a committed adapter was trained from, and how.

One typed record, filled in from a finished run by
:meth:`dlm.engine.training.session.TrainingSession.record`, written beside the
adapter's weights. ``dlm train --json``, ``dlm show`` and the tests read it
back as JSON, so its keys and values are part of what users see: a field
renamed here renames it in every committed adapter from now on.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import attrs

from dlm.records import BaseSpec, TrainingExample

#: The distributions whose versions a run records (``dlm doctor`` lists its own).
RECORDED_LIBRARIES = ("dlm-core", "torch", "transformers", "peft", "accelerate", "trl")

_STAMP = "%Y-%m-%dT%H:%M:%SZ"


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime(_STAMP)


def wall_clock_at(monotonic: float) -> str:
    """The UTC time at which ``time.monotonic()`` read ``monotonic``."""
    when = time.time() - (time.monotonic() - monotonic)
    return _dt.datetime.fromtimestamp(when, _dt.UTC).strftime(_STAMP)


def library_versions() -> dict[str, str]:
    """Installed versions of :data:`RECORDED_LIBRARIES`; a missing one is left out."""
    versions = {}
    for dist in RECORDED_LIBRARIES:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


@attrs.frozen
class BaseIdentity:
    """The pinned base the adapter belongs to."""

    key: str
    hub_id: str
    revision: str
    architecture: str
    family: str

    @classmethod
    def of(cls, base: BaseSpec) -> BaseIdentity:
        return cls(base.key, base.hub_id, base.revision, base.architecture, base.family)


@attrs.frozen
class SpeedNotes:
    """Which speed levers were on, and what the two that report (feature reuse,
    length batching) did; ``None`` where the lever was off."""

    levers: list[str]
    vision_features: str | None
    batching: str | None


@attrs.frozen
class DataSummary:
    """What the run trained on: example count, section ids and image blobs (sorted)."""

    examples: int
    sections: list[str]
    images: list[str]

    @classmethod
    def of(cls, examples: Sequence[TrainingExample]) -> DataSummary:
        return cls(
            examples=len(examples),
            sections=sorted({e.section_id for e in examples}),
            images=sorted({ref.sha256 for e in examples for ref in e.images}),
        )


@attrs.frozen
class HeldOutRecord:
    """The held-out check: the ``training.held_out`` setting, what it set
    aside, and its score after each epoch (loss, exact match, F1)."""

    setting: Any
    data: DataSummary
    scores: list[dict[str, Any]]


@attrs.frozen
class RunResults:
    steps: int
    final_loss: float
    seconds: float  # the training loop, rounded to ms
    startup_to_first_step_s: float  # from `dlm train` starting to the first optimizer step
    log: str  # the run's logs/train-*.jsonl


@attrs.frozen
class TrainingRun:
    """The contents of ``training_run.json``; ``to_json`` gives the file's text."""

    dlm_id: str
    document: str
    base: BaseIdentity
    image_geometry: dict[str, Any]  # the base's ImageGeometry
    image_settings: dict[str, Any]  # what prompts must size images by
    hyperparameters: dict[str, Any]  # the document's training settings, as trained
    plan: dict[str, Any]  # TrainingPlan.to_dict()
    force: bool
    world_size: int
    strategy: str
    speed: SpeedNotes
    seed: int
    data: DataSummary
    held_out: HeldOutRecord
    verdict: dict[str, Any] | None  # evaluation.Verdict: did the run learn
    results: RunResults
    versions: dict[str, str]
    started_at: str
    finished_at: str

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def hyperparameters(settings: Any, target_modules: Any, sequence_len: int) -> dict[str, Any]:
    """The document's ``training:`` settings as trained: without ``sources`` (the
    images are in ``data``), with the LoRA targets the run used and the
    ``sequence_len`` the token budget settled on."""
    return {
        **{k: v for k, v in attrs.asdict(settings).items() if k != "sources"},
        "target_modules": list(target_modules)
        if isinstance(target_modules, tuple)
        else target_modules,
        "sequence_len": sequence_len,
    }


__all__ = [
    "BaseIdentity",
    "DataSummary",
    "HeldOutRecord",
    "RunResults",
    "SpeedNotes",
    "TrainingRun",
    "hyperparameters",
    "library_versions",
    "utc_now",
    "wall_clock_at",
]
