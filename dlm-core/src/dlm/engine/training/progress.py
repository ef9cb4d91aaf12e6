"""The training progress bar: step, loss, samples/s and ETA (rich)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainProgress:
    def __init__(self, console: Console, total_steps: int, done: int = 0):
        self._progress = Progress(
            TextColumn("[bold]training[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]} samples/s"),
            TextColumn("{task.fields[held_out]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task(
            "train", total=total_steps, completed=done, loss="—", rate="—", held_out=""
        )

    def __enter__(self) -> TrainProgress:
        self._progress.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.__exit__(exc_type, exc, tb)

    def advance(self, loss: float, samples_per_s: float | None) -> None:
        self._progress.update(
            self._task,
            advance=1,
            loss=f"{loss:.4f}",
            rate=f"{samples_per_s:.1f}" if samples_per_s else "—",
        )

    def held_out(self, loss: float | None, exact_match: float | None) -> None:
        """The last epoch's held-out score, kept on the line until the next one."""
        parts = []
        if loss is not None:
            parts.append(f"held-out loss {loss:.4f}")
        if exact_match is not None:
            parts.append(f"exact {exact_match:.0%}")
        self._progress.update(self._task, held_out=" ".join(parts))
