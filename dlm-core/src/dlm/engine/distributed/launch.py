"""Start a run's processes, wait for them, and commit what rank 0 trained.

The launching ``dlm train`` is the one store writer. On machine 0 it holds
the store lock for the whole run (taken by :func:`dlm.engine.training.train.run_training`
before the ranks start), stores the images, and after every rank has exited
cleanly commits the adapter rank 0 wrote into the run's private folder
through the two-phase commit. The ranks never write the store except rank 0's
training log (``logs/train-*.jsonl``, under the launcher's lock); the other
machines' launchers write nothing to their stores.

Processes are started and watched by torch's elastic agent, the machinery
behind ``torchrun`` and ``accelerate launch`` (:func:`torch.distributed.run.config_from_args`
and :func:`torch.distributed.launcher.api.elastic_launch`), with no
restarts: when one rank dies the agent stops the others, and
:func:`rank_failure` turns what each rank left behind into one message that
names the rank that failed first and why.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import shutil
import signal
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from dlm.engine.distributed.topology import Topology
from dlm.engine.training.train_result import TrainInterrupted, TrainResult, nothing_committed
from dlm.errors import TrainError

if TYPE_CHECKING:
    from dlm.engine.document.prepare import PreparedDocument
    from dlm.hardware.plan import TrainingPlan

WORKER_MODULE = "dlm.engine.distributed.worker"
SPEC_FILE = "spec.json"
PLAN_FILE = "plan.pickle"
RESULT_FILE = "result.json"
ADAPTER_DIR = "adapter"
ERRORS_DIR = "errors"
RANK_LOGS_DIR = "rank-logs"

#: Seconds between the agent's looks at its processes.
MONITOR_INTERVAL_S = 0.5

ENV_RENDEZVOUS_TIMEOUT = "DLM_RENDEZVOUS_TIMEOUT"
#: Seconds machine 0 waits for the other machines to join (torch's default).
DEFAULT_RENDEZVOUS_TIMEOUT_S = 600


def rendezvous_timeout() -> int:
    raw = os.environ.get(ENV_RENDEZVOUS_TIMEOUT, "").strip()
    try:
        value = int(float(raw)) if raw else DEFAULT_RENDEZVOUS_TIMEOUT_S
    except ValueError:
        value = 0
    if value <= 0:
        raise TrainError(
            f"{ENV_RENDEZVOUS_TIMEOUT}={raw!r} is not a positive number of seconds",
            hint=f"set {ENV_RENDEZVOUS_TIMEOUT} to e.g. 600, or unset it",
        )
    return value


# ----------------------------------------------------------------- the spec


def write_spec(run_dir: Path, plan: Any, spec: dict[str, Any]) -> Path:
    """What every rank needs to rebuild the run: the spec (JSON) and the plan."""
    (run_dir / PLAN_FILE).write_bytes(pickle.dumps(plan))
    (run_dir / ERRORS_DIR).mkdir(exist_ok=True)
    path = run_dir / SPEC_FILE
    path.write_text(json.dumps({**spec, "run_dir": str(run_dir)}, indent=2))
    return path


# ----------------------------------------------------------------- launching


def torchrun_args(topology: Topology, spec_path: Path, run_id: str, verbose: bool) -> list[str]:
    """The ``torchrun`` command line of this machine's share of the run."""
    args = [
        "--nnodes",
        str(topology.machines),
        "--nproc-per-node",
        str(topology.local_processes),
        "--max-restarts",
        "0",
        "--monitor-interval",
        str(MONITOR_INTERVAL_S),
        "--log-dir",
        str(spec_path.parent / RANK_LOGS_DIR),
    ]
    if not verbose and topology.local_processes > 1:
        # Rank 0 shows progress; the others' output goes to files (their
        # errors come back through the error files, see rank_failure).
        quiet = ",".join(f"{r}:3" for r in range(1, topology.local_processes))
        first = "0:3" if not topology.main_machine else "0:0"
        args += ["--redirects", f"{first},{quiet}"]
    if topology.machines == 1:
        # torchrun --standalone: a rendezvous on a free local port
        args += ["--rdzv-backend", "c10d", "--rdzv-endpoint", "localhost:0", "--rdzv-id", run_id]
    else:
        args += [
            "--rdzv-backend",
            "static",
            "--master-addr",
            str(topology.main_address),
            "--master-port",
            str(topology.main_port),
            "--node-rank",
            str(topology.machine_rank),
            "--rdzv-conf",
            f"timeout={rendezvous_timeout()}",
        ]
    return [*args, "--module", WORKER_MODULE, str(spec_path)]


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _quiet_agent(verbose: bool) -> Iterator[None]:
    """The agent logs every start and stop; dlm reports failures itself."""
    if verbose:
        yield
        return
    # torch gives each of its elastic modules' loggers its own level: quiet them one by one
    names = [n for n in logging.root.manager.loggerDict if n.startswith("torch.distributed")]
    loggers = [logging.getLogger(n) for n in ("torch.distributed", *names)]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def launch_ranks(topology: Topology, spec_path: Path, *, run_id: str, kept: str) -> None:
    """Run this machine's ranks to the end; raise :class:`TrainError` if any fails."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args, get_args_parser

    from dlm.engine.quiet import verbose

    args = get_args_parser().parse_args(
        torchrun_args(topology, spec_path, run_id, verbose=verbose())
    )
    env = {
        "OMP_NUM_THREADS": os.environ.get(
            "OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // topology.local_processes))
        )
    }
    if topology.gpu_ids is not None:
        env["CUDA_VISIBLE_DEVICES"] = topology.gpu_ids
    with _environment(env), _quiet_agent(verbose()):
        config, command, command_args = config_from_args(args)
        try:
            elastic_launch(config, command)(*command_args)
        except ChildFailedError as exc:
            raise rank_failure(exc, spec_path.parent, topology, kept) from None
        except (KeyboardInterrupt, SignalException):
            raise TrainInterrupted(
                f"interrupted; every rank was stopped and nothing was committed, {kept}",
                hint="run `dlm train` again to start over",
            ) from None
        except Exception as exc:  # the agent could not start the ranks (rendezvous, ports)
            raise start_failure(exc, topology, kept) from exc


def start_failure(exc: BaseException, topology: Topology, kept: str) -> TrainError:
    """The ranks never started: most often the machines did not all meet."""
    if topology.machines == 1:
        return TrainError(
            f"could not start {topology.processes} processes: {type(exc).__name__}: {exc}; {kept}",
            hint="re-run with --verbose for the agent's log",
        )
    where = f"{topology.main_address}:{topology.main_port}"
    return TrainError(
        f"the {topology.machines} machines did not all meet at {where} within "
        f"{rendezvous_timeout()} s ({type(exc).__name__}: {exc}); nothing was trained, {kept}",
        hint="run the same `dlm train DOC --accelerate-config FILE` on every machine (each "
        f"with its machine_rank), check that machine 0's {where} is reachable from the "
        f"others; {ENV_RENDEZVOUS_TIMEOUT} sets how long machine 0 waits",
    )


# ----------------------------------------------------------------- failures


def _signal_name(exitcode: int) -> str | None:
    if exitcode >= 0:
        return None
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"


def _rank_error(run_dir: Path, rank: int) -> dict[str, Any] | None:
    path = run_dir / ERRORS_DIR / f"rank-{rank}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _describe(rank: int, failure: Any, error: dict[str, Any] | None) -> tuple[str, str | None]:
    """What happened to one rank, and the next step for the user."""
    if error is not None:
        where = f" on {error['host']}" if error.get("host") != socket.gethostname() else ""
        text = f"rank {rank} (pid {error.get('pid', failure.pid)}{where}) failed: "
        return text + str(error.get("message", "")), error.get("hint")
    name = _signal_name(failure.exitcode)
    if name is not None:
        hint = (
            "a process killed with SIGKILL was often stopped by the out-of-memory killer: "
            "check `dmesg`, and `dlm doctor DOC --processes N` for the memory per process"
            if name == "SIGKILL"
            else None
        )
        return f"rank {rank} (pid {failure.pid}) was killed by {name}", hint
    message = failure.message if isinstance(failure.message, str) else ""
    if isinstance(failure.message, dict):
        message = str(failure.message.get("message", ""))
    detail = f": {message}" if message and not message.startswith("To enable traceback") else ""
    return f"rank {rank} (pid {failure.pid}) exited with code {failure.exitcode}{detail}", None


#: Seconds after the first reported error from which a rank's death by a
#: signal is the agent's doing: it ends the survivors (SIGTERM, then SIGKILL
#: after 30 s for one that does not respond) once a rank has failed.
_AFTERMATH_S = 2.0


def _when(failure: Any, error: dict[str, Any] | None) -> float:
    """When the rank failed: its own report's time, else when the agent saw it."""
    if error is not None and isinstance(error.get("time"), int | float):
        return float(error["time"])
    return float(failure.timestamp)


def _kind(failure: Any, error: dict[str, Any] | None, first_error_at: float | None) -> str:
    """``cause``, ``lost`` (it only lost a peer), ``stopped`` (ended by the agent after
    another rank failed) or ``unresponsive`` (it had to be killed, long after the others
    gave up on it)."""
    if error is not None:
        return "lost" if error.get("peer_lost") else "cause"
    if failure.exitcode == -signal.SIGTERM:
        return "stopped"
    late = first_error_at is not None and _when(failure, error) >= first_error_at + _AFTERMATH_S
    if failure.exitcode < 0 and late:
        return "unresponsive"
    return "cause"


def rank_failure(exc: Any, run_dir: Path, topology: Topology, kept: str) -> TrainError:
    """One message for a failed run: the rank that failed first and why, then the others."""
    from dlm.engine.distributed.ranks import ENV_TIMEOUT

    failures: dict[int, Any] = dict(exc.failures)
    errors = {rank: _rank_error(run_dir, rank) for rank in failures}
    reported = [_when(failures[r], e) for r, e in errors.items() if e is not None]
    first_error_at = min(reported) if reported else None
    kinds = {r: _kind(failures[r], errors[r], first_error_at) for r in failures}
    rank_of = {"cause": 0, "unresponsive": 1, "lost": 2, "stopped": 3}
    ranks = sorted(failures, key=lambda r: (rank_of[kinds[r]], _when(failures[r], errors[r])))
    first = ranks[0]
    if kinds[first] == "unresponsive":
        message = (
            f"rank {first} (pid {failures[first].pid}) stopped responding: the other ranks "
            f"timed out waiting for it ({ENV_TIMEOUT} sets how long) and it had to be killed"
        )
        hint: str | None = "a stuck process: check that machine's load, GPU and disk"
    else:
        message, hint = _describe(first, failures[first], errors[first])
    others = []
    for rank in ranks[1:]:
        if kinds[rank] in ("stopped", "unresponsive"):
            others.append(f"rank {rank} was stopped")
        elif kinds[rank] == "lost":
            others.append(f"rank {rank} lost contact with it")
        else:
            others.append(_describe(rank, failures[rank], errors[rank])[0])
    text = f"{message}; the run was stopped and nothing was committed, {kept}"
    if others:
        text += " (" + "; ".join(others) + ")"
    if kinds[first] == "lost" and topology.machines > 1:
        # Only lost peers here: the cause is in another machine's output.
        hint = "a process on another machine probably failed first: see that machine's output"
    return TrainError(text, hint=hint or "re-run with --verbose for every rank's output")


# ----------------------------------------------------------------- the run


def train_distributed(
    *,
    document: Path,
    allow_outside: bool,
    force: bool,
    report_to: tuple[str, ...] | None,
    plan: TrainingPlan,
    topology: Topology,
    prepared: PreparedDocument,
    blob_root: Path | None,
    started: float,
    console: Console,
    resume: Path | None = None,
) -> TrainResult:
    """Launch the ranks; on machine 0, commit rank 0's adapter (the caller holds the lock).
    ``resume``: the checked checkpoint folder every rank continues from."""
    from dlm.engine.training.checkpoint import Checkpoints, resume_hint
    from dlm.store.adapters import commit_adapter, current_version

    paths = prepared.paths
    if topology.main_machine:
        kept = nothing_committed(current_version(paths))
    else:
        kept = "machine 0 keeps its current adapter"
    run_id = f"dlm-{prepared.doc.frontmatter.dlm_id}-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="dlm-train-") as tmp:
        run_dir = Path(tmp)
        spec_path = write_spec(
            run_dir,
            plan,
            {
                "document": str(document),
                "allow_outside": allow_outside,
                "force": force,
                # --report-to (null: the document's); only rank 0 reports
                "report_to": list(report_to) if report_to is not None else None,
                "blob_root": str(blob_root) if blob_root is not None else None,
                "launcher_pid": os.getpid(),
                "started_wall": time.time() - (time.monotonic() - started),
                "topology": topology.to_dict(),
                "resume": str(resume) if resume is not None else None,
            },
        )
        console.print(
            f"launching {topology.describe()}: "
            + ("FSDP-sharded" if plan.strategy == "fsdp" else "data parallel (DDP)")
            + ("; rank 0 reports" if topology.main_machine else "")
        )
        try:
            launch_ranks(topology, spec_path, run_id=run_id, kept=kept)
        except TrainError as exc:
            resume_from = resume_hint(paths.checkpoint, document) if topology.main_machine else None
            if resume_from:  # rank 0 checkpointed before the run stopped
                exc.hint = (
                    resume_from
                    if isinstance(exc, TrainInterrupted)
                    else (f"{exc.hint}; {resume_from}" if exc.hint else resume_from)
                )
            raise
        if not topology.main_machine:
            return TrainResult.elsewhere(seconds=time.monotonic() - started)
        result = _read_result(run_dir)
        adapter = run_dir / ADAPTER_DIR
        with commit_adapter(paths, meta={"base": plan.base, "steps": result["steps"]}) as staging:
            for item in sorted(adapter.iterdir()):
                shutil.copy2(item, staging / item.name)
        Checkpoints(paths.checkpoint).clear()  # the run is committed: nothing to resume
    version = current_version(paths)
    assert version is not None
    return TrainResult.committed(result, version, paths.version_dir(version))


def _read_result(run_dir: Path) -> dict[str, Any]:
    adapter = run_dir / ADAPTER_DIR
    try:
        result = json.loads((run_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        result = None
    if not isinstance(result, dict) or not adapter.is_dir() or not any(adapter.iterdir()):
        raise TrainError(
            "every rank exited cleanly but rank 0 left no adapter; nothing was committed",
            hint="this is a bug in dlm: report it with the --verbose output",
        )
    return result


__all__ = [
    "launch_ranks",
    "rank_failure",
    "torchrun_args",
    "train_distributed",
    "write_spec",
]
