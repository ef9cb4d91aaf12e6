"""What a ``dlm train`` run hands back, whichever path trained it.

Shared by the single-process path (:mod:`dlm.engine.training.train`), a rank of a
multi-process run (:mod:`dlm.engine.distributed.worker`) and the launcher that commits
rank 0's adapter (:mod:`dlm.engine.distributed.launch`). It imports none of them, so
they need not import each other for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from dlm.errors import TrainError


class TrainInterrupted(TrainError):
    exit_code = 130


@attrs.frozen
class TrainResult:
    version: str  # "" on a rank, or on a machine other than machine 0: nothing committed here
    steps: int
    final_loss: float
    seconds: float
    startup_seconds: float
    adapter_dir: Path
    log_path: Path
    plot_path: Path | None
    #: training.report_to's trackers, each with its folder under the store (None: its own)
    trackers: dict[str, str | None] = attrs.field(factory=dict)

    def summary(self) -> dict[str, Any]:
        """What rank 0 tells the launcher (``result.json``); the launcher adds the version."""
        return {
            "steps": self.steps,
            "final_loss": self.final_loss,
            "seconds": self.seconds,
            "startup_seconds": self.startup_seconds,
            "log_path": str(self.log_path),
            "plot_path": str(self.plot_path) if self.plot_path else None,
            "trackers": self.trackers,
        }

    @classmethod
    def committed(cls, summary: dict[str, Any], version: str, adapter_dir: Path) -> TrainResult:
        """Rank 0's :meth:`summary`, once the launcher committed its adapter as ``version``."""
        return cls(
            version=version,
            steps=int(summary["steps"]),
            final_loss=float(summary["final_loss"]),
            seconds=float(summary["seconds"]),
            startup_seconds=float(summary["startup_seconds"]),
            adapter_dir=adapter_dir,
            log_path=Path(summary["log_path"]),
            plot_path=Path(summary["plot_path"]) if summary.get("plot_path") else None,
            trackers=dict(summary.get("trackers") or {}),
        )

    @classmethod
    def elsewhere(cls, seconds: float) -> TrainResult:
        """A machine other than machine 0: its ranks trained, machine 0 commits."""
        return cls(
            version="",
            steps=0,
            final_loss=float("nan"),
            seconds=seconds,
            startup_seconds=0.0,
            adapter_dir=Path(),
            log_path=Path(),
            plot_path=None,
        )


def nothing_committed(previous: str | None) -> str:
    """The end of a failed run's message: what stays current."""
    return f"{previous} remains current" if previous else "no adapter was committed"


__all__ = ["TrainInterrupted", "TrainResult", "nothing_committed"]
