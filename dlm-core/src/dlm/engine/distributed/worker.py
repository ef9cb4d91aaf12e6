"""One rank of a multi-process ``dlm train``: ``python -m dlm.engine.distributed.worker SPEC``.

Started by :mod:`dlm.engine.distributed.launch` through torch's elastic agent, which
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address.
The rank rebuilds what the launcher already checked (the document, its
examples, the processor and the token budget: cheap, deterministic) and
takes the launcher's plan as is, then runs the same
:class:`~dlm.engine.training.session.TrainingSession` as a single process, with its
:class:`~dlm.engine.distributed.ranks.Ranks`. Rank 0 hands the adapter over in
the run folder; the launcher commits it.

A failure is written to ``errors/rank-N.json`` in the run folder (message,
hint, traceback, and whether it only reports a lost peer) so the launcher
can name the rank that failed first. A rank whose launcher has gone exits
by itself rather than train on unsupervised.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from dlm.store.atomic import atomic_write_text

#: Text of errors that only say another process went away or stalled.
PEER_LOST_PATTERNS = (
    "connection closed by peer",
    "connection reset by peer",
    "broken pipe",
    "socket closed",
    "timed out",
    "timeout",
    "nccl communicator was aborted",
    "nccl error",
    "watchdog caught collective operation timeout",
    "connection refused",
)


def _peer_lost(exc: BaseException) -> bool:
    texts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(texts) < 8:
        texts.append(str(current).lower())
        current = current.__cause__ or current.__context__
    return any(p in text for text in texts for p in PEER_LOST_PATTERNS)


def write_error(run_dir: Path, rank: int, exc: BaseException) -> None:
    from dlm.errors import DlmError

    data = {
        "rank": rank,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "type": type(exc).__name__,
        "message": exc.message if isinstance(exc, DlmError) else f"{type(exc).__name__}: {exc}",
        "hint": exc.hint if isinstance(exc, DlmError) else None,
        "traceback": "".join(traceback.format_exception(exc)),
        "peer_lost": _peer_lost(exc),
        "time": time.time(),
    }
    atomic_write_text(run_dir / "errors" / f"rank-{rank}.json", json.dumps(data, indent=2))


def _watch_launcher(launcher_pid: int, interval: float = 1.0) -> None:
    """Exit when the launcher is gone (it was killed): nobody would commit the result."""

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != launcher_pid:
                os._exit(70)

    threading.Thread(target=watch, name="dlm-launcher-watch", daemon=True).start()


def _image_refs(prepared: Any, blob_root: str | None) -> dict[int, Any]:
    """Refs to the launcher's stored blobs (machine 0), else to the document's files."""
    from dlm.records import ImageRef

    refs = {}
    for image in prepared.images:
        path = Path(blob_root) / image.sha256 if blob_root else image.path
        refs[image.section_index] = ImageRef(
            sha256=image.sha256, blob_path=path, source=image.source
        )
    return refs


def run_rank(spec: dict[str, Any]) -> None:
    from rich.console import Console

    from dlm.engine.distributed.ranks import Ranks
    from dlm.engine.document.budget import check_budget
    from dlm.engine.document.examples import with_image_refs
    from dlm.engine.document.prepare import prepare_document
    from dlm.engine.quiet import quiet_transformers
    from dlm.engine.training.checkpoint import Checkpoint
    from dlm.engine.training.evaluation import held_out_of
    from dlm.engine.training.levers import choose_levers
    from dlm.engine.training.session import BaseAssets, SessionInputs, train
    from dlm.engine.training.trackers import with_report_to
    from dlm.hardware.plan import lora_targets

    quiet_transformers()
    run_dir = Path(spec["run_dir"])
    plan = pickle.loads((run_dir / "plan.pickle").read_bytes())
    prepared = prepare_document(spec["document"], allow_outside=spec["allow_outside"])
    report_to = spec.get("report_to")
    prepared = with_report_to(prepared, tuple(report_to) if report_to is not None else None)
    settings = prepared.doc.frontmatter.training
    ranks = Ranks.from_environment(
        plan.strategy, find_unused=lora_targets(settings.target_modules)[1]
    )
    console = Console(stderr=True, highlight=False) if ranks.main else Console(quiet=True)
    assets = BaseAssets.load(prepared)
    refs = _image_refs(prepared, spec["blob_root"])
    # the same split on every rank: seeded by the document
    split = held_out_of(prepared, prepared.example_set.examples)
    examples = with_image_refs(split.train, prepared.images, refs)
    held_out = with_image_refs(split.held_out, prepared.images, refs)
    inputs = SessionInputs(
        prepared=prepared,
        examples=examples,
        held_out=held_out,
        budget=check_budget(prepared.doc, assets.bound, examples + held_out),
        plan=plan,
        assets=assets,
        levers=choose_levers(plan.host.backend),
        force=bool(spec["force"]),
        started=time.monotonic() - (time.time() - float(spec["started_wall"])),
        # --resume: the launcher checked it against this run (every rank reads it)
        resume=Checkpoint(Path(spec["resume"])) if spec.get("resume") else None,
    )
    result = train(inputs, console, ranks=ranks, output_dir=run_dir / "adapter")
    if ranks.main:
        atomic_write_text(run_dir / "result.json", json.dumps(result.summary()))


def main(argv: list[str] | None = None) -> int:
    from dlm.engine.quiet import quiet_environment, verbose

    quiet_environment()
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    rank = int(os.environ.get("RANK", "0"))
    _watch_launcher(int(spec["launcher_pid"]))
    try:
        run_rank(spec)
        _leave_together()
    except BaseException as exc:  # every failure is reported to the launcher, then exits
        write_error(Path(spec["run_dir"]), rank, exc)
        if verbose():
            traceback.print_exc()
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    finally:
        _destroy_process_group()
    return 0


def _leave_together() -> None:
    """Wait for every rank before tearing the process group down.

    Rank 0 still writes the adapter after the last collective; a rank that
    closed its gloo connections then could be aborted by a peer's teardown
    racing its own (seen once as SIGABRT on rank 1 of an FSDP run on CPU).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _destroy_process_group() -> None:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # the run's outcome is already decided; never mask it
        pass


if __name__ == "__main__":
    sys.exit(main())
