"""Checkpoints of a run in progress, so ``dlm train DOC --resume`` can continue it.

A checkpoint holds everything the rest of the run depends on: the LoRA
weights, the optimizer and the schedule, every process's random
generators, the data order's generator as it stood when the epoch began
(its steps are drawn again and the ones done skipped), where the run
stood (epoch, steps), its log rows and held-out scores so far, and the
run's *fingerprint*: what was trained, on what, how. A resumed run whose
fingerprint differs is refused, naming the difference; one that matches
ends with the adapter an uninterrupted run commits, bit for bit on CPU.

Layout, in the store's hidden ``adapter/.checkpoint/`` (no version, so
``dlm verify`` and the commit's clean-up never take it for one)::

    adapter/.checkpoint/
      step-000012/
        checkpoint.json     the fingerprint, where the run stood, its log rows
        state.pt            weights, optimizer, schedule, data order (tensors only)
        rng-rank0.pt        each process's random generators
      latest.txt            names the complete one and its checkpoint.json's sha256

Tamper-evident: ``checkpoint.json`` holds the sha256 of every other file
and ``latest.txt`` the sha256 of ``checkpoint.json``; ``--resume`` checks
them all before it loads anything (:meth:`Checkpoint.verify`).

Crash-safe: a new checkpoint is written into a temporary folder, synced,
renamed into place, and only then named in ``latest.txt`` (an atomic
replace); the older one goes after that. A process killed at any point
leaves ``latest.txt`` naming a complete checkpoint (or none yet). The
checkpoint is removed when the run's adapter commits, and by a
``dlm train`` that starts over.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from dlm.errors import TrainError
from dlm.store._process import pause_point
from dlm.store.atomic import TEMP_PREFIX, atomic_write_text, fsync_dir, fsync_tree

#: A run also checkpoints when this many minutes passed since its last checkpoint
#: (or its start), however many steps that was: a slow base loses at most this much.
CHECKPOINT_MINUTES = 10.0

META_FILE = "checkpoint.json"
STATE_FILE = "state.pt"
LATEST_FILE = "latest.txt"
_STEP_PREFIX = "step-"

#: Training settings that do not change what is trained.
_NOT_FINGERPRINTED = ("report_to", "checkpoint_every", "sources")


# ----------------------------------------------------------------- fingerprint


def _examples_hash(examples: Sequence[Any]) -> str:
    from dlm.engine.document.examples import identity_rows

    return hashlib.sha256(json.dumps(identity_rows(examples)).encode()).hexdigest()


def run_fingerprint(
    examples: Sequence[Any], held_out: Sequence[Any], base: Any, settings: Any, plan: Any
) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one, each part named as the
    refusal names it: the examples (in order), the base, the training settings and
    how the run is laid out over processes."""
    trained = {
        f"training.{key}": value
        for key, value in attrs.asdict(settings).items()
        if key not in _NOT_FINGERPRINTED
    }
    parts = {
        "examples": _examples_hash(examples),
        "held_out examples": _examples_hash(held_out),
        "base_model": base.key,
        "base revision": base.revision,
        **trained,
        "processes": plan.processes,
        "strategy": plan.strategy,
        "micro-batch": plan.micro_batch,
        "accumulation": plan.grad_accum,
        "precision": plan.precision,
    }
    return dict(json.loads(json.dumps(parts)))  # tuples as lists: as read back


def differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What changed between the checkpoint's fingerprint and this run's, in words."""
    changed = []
    for key in [*now, *(k for k in saved if k not in now)]:
        old, new = saved.get(key), now.get(key)
        if old == new:
            continue
        if key == "examples":
            changed.append("the document's training examples changed")
        elif key == "held_out examples":
            changed.append("the held-out examples changed")
        else:
            changed.append(f"{key} changed {_show(old)} → {_show(new)}")
    return changed


def _show(value: Any) -> str:
    return "none" if value is None else str(value)


# ----------------------------------------------------------------- random generators


def rng_state() -> dict[str, Any]:
    """This process's random generators (Python, NumPy, torch CPU, CUDA when present)."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [version, list(py_state), py_gauss],
        "numpy": [kind, torch.tensor(np.asarray(keys, dtype=np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ----------------------------------------------------------------- the checkpoint


@attrs.frozen
class Checkpoint:
    """One complete checkpoint on disk."""

    folder: Path
    #: ``checkpoint.json``'s sha256 as ``latest.txt`` recorded it (``None``: not recorded).
    meta_sha256: str | None = None

    def verify(self) -> None:
        """Refuse a checkpoint whose files changed after they were written: its
        ``checkpoint.json`` against ``latest.txt``, every other file against the
        hashes ``checkpoint.json`` holds. A resumed run never loads tampered state."""
        from dlm.store.blobs import hash_file

        changed = []
        if self.meta_sha256 is None or hash_file(self.folder / META_FILE) != self.meta_sha256:
            changed.append(META_FILE)
        else:
            for name, digest in (self.meta.get("files") or {}).items():
                path = self.folder / name
                if "/" in name or not path.is_file() or hash_file(path) != digest:
                    changed.append(name)
            if not self.meta.get("files"):
                changed.append(STATE_FILE)
        if changed:
            raise TrainError(
                f"the checkpoint at {self.folder.name} changed after it was written "
                f"({', '.join(changed)}); dlm will not resume from it",
                hint="run `dlm train DOC` without --resume to start over "
                "(the checkpoint is then discarded)",
            )

    @property
    def meta(self) -> dict[str, Any]:
        data = json.loads((self.folder / META_FILE).read_text())
        assert isinstance(data, dict)
        return data

    @property
    def steps(self) -> int:
        return int(self.meta["steps"])

    def state(self) -> dict[str, Any]:
        import torch

        loaded = torch.load(self.folder / STATE_FILE, map_location="cpu", weights_only=True)
        assert isinstance(loaded, dict)
        return loaded

    def rng(self, rank: int) -> dict[str, Any]:
        import torch

        loaded = torch.load(self.folder / f"rng-rank{rank}.pt", weights_only=True)
        assert isinstance(loaded, dict)
        return loaded


@attrs.frozen
class Checkpoints:
    """A store's checkpoint folder (``StorePaths.checkpoint``): at most one complete
    checkpoint, named by ``latest.txt``."""

    folder: Path

    def latest(self) -> Checkpoint | None:
        """The last complete checkpoint, if any (a broken one reads as none)."""
        try:
            name, _, digest = (self.folder / LATEST_FILE).read_text().strip().partition(" ")
        except OSError:
            return None
        found = Checkpoint(self.folder / name, digest or None)
        if not name.startswith(_STEP_PREFIX) or not (found.folder / META_FILE).is_file():
            return None
        return found

    def write(
        self,
        steps: int,
        meta: dict[str, Any],
        state: dict[str, Any],
        rng: Sequence[dict[str, Any]],
    ) -> Checkpoint:
        """Write a complete checkpoint, then make it the latest (see the module docstring)."""
        import torch

        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{_STEP_PREFIX}{steps:06d}"
        tmp = self.folder / f"{TEMP_PREFIX}{os.getpid()}-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        from dlm.store.blobs import hash_file

        torch.save(state, tmp / STATE_FILE)
        for rank, generators in enumerate(rng):
            torch.save(generators, tmp / f"rng-rank{rank}.pt")
        files = {p.name: hash_file(p) for p in sorted(tmp.iterdir())}
        (tmp / META_FILE).write_text(json.dumps({**meta, "files": files}))
        meta_sha256 = hash_file(tmp / META_FILE)
        fsync_tree(tmp, modes=False)
        pause_point(f"checkpoint-staged-{steps}")  # crash tests: killed mid-write
        final = self.folder / name
        if final.exists():  # the same step again (a resumed run): the new copy wins
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_dir(self.folder)
        atomic_write_text(self.folder / LATEST_FILE, f"{name} {meta_sha256}\n")
        pause_point(f"checkpoint-{steps}")  # crash tests: killed right after a checkpoint
        for other in self.folder.iterdir():  # older checkpoints, a dead writer's leftovers
            if other.name not in (name, LATEST_FILE) and other.is_dir():
                shutil.rmtree(other, ignore_errors=True)
        return Checkpoint(final, meta_sha256)

    def clear(self) -> int | None:
        """Remove every checkpoint; returns the step of the latest one there was."""
        latest = self.latest()
        steps = latest.steps if latest is not None else None
        if self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)
        return steps


def resume_hint(folder: Path, doc: Any) -> str | None:
    """How to continue an interrupted run, when it left a checkpoint."""
    latest = Checkpoints(folder).latest()
    if latest is None:
        return None
    return f"`dlm train {doc} --resume` continues from step {latest.steps}"


def checkpoint_to_resume(folder: Path, doc: Any, fingerprint: dict[str, Any]) -> Checkpoint:
    """The checkpoint ``--resume`` continues from, checked against this run; refused
    when there is none or when what is trained changed."""
    latest = Checkpoints(folder).latest()
    if latest is None:
        raise TrainError(
            f"nothing to resume: {doc} has no checkpoint of an interrupted run",
            hint=f"run `dlm train {doc}` without --resume to train from the start",
        )
    latest.verify()
    changed = differences(latest.meta["fingerprint"], fingerprint)
    if changed:
        raise TrainError(
            f"cannot resume from step {latest.steps}: " + "; ".join(changed),
            hint=f"undo the change to resume, or run `dlm train {doc}` without --resume "
            "to start over (the checkpoint is then discarded)",
        )
    return latest


__all__ = [
    "CHECKPOINT_MINUTES",
    "Checkpoint",
    "Checkpoints",
    "checkpoint_to_resume",
    "differences",
    "resume_hint",
    "rng_state",
    "run_fingerprint",
    "set_rng_state",
]
