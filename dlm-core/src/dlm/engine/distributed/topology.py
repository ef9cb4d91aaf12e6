"""How many processes a run has, and where: ``--processes`` or an accelerate config.

``dlm train DOC --processes N`` runs N processes on this host. A standard
accelerate config (``accelerate config`` writes one; ``--accelerate-config
FILE``, or ``--accelerate-config default`` for the user's default file)
describes a run across machines: ``num_processes`` (in all),
``num_machines``, this machine's ``machine_rank``, ``main_process_ip`` and
``main_process_port`` and ``gpu_ids``. Its
``distributed_type: FSDP`` asks for sharding; ``MULTI_GPU``, ``MULTI_CPU``
and ``NO`` leave the choice to the planner. What the plan decides itself
(precision, batch, checkpointing) is not read from the config.

``dlm train`` never picks up a default config on its own: a plain
``dlm train DOC`` is one process, whatever else is configured on the
machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from dlm.errors import UsageError

DEFAULT_CONFIG = "default"

#: accelerate ``distributed_type`` values dlm runs, and the sharding each asks for.
_DISTRIBUTED_TYPES = {"NO": "auto", "MULTI_GPU": "auto", "MULTI_CPU": "auto", "FSDP": "fsdp"}

#: The rendezvous across machines. Static numbers the machines by their
#: ``machine_rank``, so global rank 0 (the one that writes) is on machine 0,
#: where the store lock is held; c10d would number them by arrival.
_RDZV_BACKEND = "static"


@attrs.frozen
class Topology:
    """The run's processes: ``processes`` in all, on ``machines`` machines."""

    processes: int = 1
    machines: int = 1
    machine_rank: int = 0
    main_address: str | None = None
    main_port: int | None = None
    gpu_ids: str | None = None
    sharding: str = "auto"  # "auto" | "fsdp"
    config_file: str | None = None

    @property
    def local_processes(self) -> int:
        return self.processes // self.machines

    @property
    def distributed(self) -> bool:
        return self.processes > 1

    @property
    def main_machine(self) -> bool:
        """The machine of rank 0: it holds the store lock and commits the adapter."""
        return self.machine_rank == 0

    def describe(self) -> str:
        if self.machines == 1:
            return f"{self.processes} processes on this host"
        return (
            f"{self.processes} processes, {self.local_processes} on each of {self.machines} "
            f"machines (this is machine {self.machine_rank})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "processes": self.processes,
            "machines": self.machines,
            "machine_rank": self.machine_rank,
            "local_processes": self.local_processes,
            "sharding": self.sharding,
            "config_file": self.config_file,
        }


def default_config_path() -> Path:
    """Where ``accelerate config`` keeps the user's default (honours ``HF_HOME``)."""
    from accelerate.commands.config.config_args import default_config_file

    return Path(default_config_file)


def resolve_topology(processes: int | None, accelerate_config: str | None) -> Topology:
    """The run's topology from ``--processes`` and ``--accelerate-config``."""
    if processes is not None and processes < 1:
        raise UsageError(f"--processes must be at least 1 (got {processes})")
    if accelerate_config is None:
        return Topology(processes=processes or 1)
    path = default_config_path() if accelerate_config == DEFAULT_CONFIG else Path(accelerate_config)
    topology = _from_config(path, processes)
    if processes is not None and processes != topology.processes:
        raise UsageError(
            f"--processes {processes} disagrees with num_processes {topology.processes} in {path}",
            hint="drop --processes (the config says how many) or fix the config",
        )
    return topology


def _from_config(path: Path, processes: int | None) -> Topology:
    if not path.is_file():
        hint = (
            "run `accelerate config` to write it, or pass --accelerate-config FILE"
            if path == default_config_path()
            else "pass the path of an accelerate config file (YAML or JSON)"
        )
        raise UsageError(f"accelerate config {path} does not exist", hint=hint)
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    try:
        config = load_config_from_file(str(path))
    except Exception as exc:  # yaml errors, a missing distributed_type, unknown keys
        raise UsageError(
            f"cannot read accelerate config {path}: {exc}",
            hint="check it with `accelerate env`, or write a new one with `accelerate config`",
        ) from None
    if not isinstance(config, ClusterConfig):
        raise UsageError(
            f"{path} is a {type(config).__name__}; dlm launches on local machines only",
            hint="use a config with compute_environment: LOCAL_MACHINE",
        )
    kind = str(getattr(config.distributed_type, "value", config.distributed_type)).upper()
    if kind not in _DISTRIBUTED_TYPES:
        raise UsageError(
            f"{path}: distributed_type {kind} is not supported by dlm",
            hint="use MULTI_GPU (data parallel, or FSDP where the planner needs it), FSDP, "
            "MULTI_CPU or NO",
        )
    total = int(config.num_processes)
    if total == -1:
        if processes is None:
            raise UsageError(
                f"{path} leaves num_processes to the command line", hint="pass --processes N"
            )
        total = processes
    machines = int(config.num_machines or 1)
    machine_rank = int(config.machine_rank or 0)
    if total < 1 or machines < 1 or total % machines:
        raise UsageError(
            f"{path}: num_processes {total} is not a multiple of num_machines {machines}",
            hint="every machine runs the same number of processes",
        )
    if not 0 <= machine_rank < machines:
        raise UsageError(f"{path}: machine_rank {machine_rank} is not below {machines}")
    backend = str(config.rdzv_backend or _RDZV_BACKEND)
    if machines > 1:
        if not config.main_process_ip or not config.main_process_port:
            raise UsageError(
                f"{path}: a run across {machines} machines needs main_process_ip and "
                "main_process_port (machine 0's address)",
            )
        if backend != _RDZV_BACKEND:
            raise UsageError(
                f"{path}: rdzv_backend {backend} is not supported: dlm needs rank 0 on "
                "machine 0, which holds the store lock",
                hint=f"use rdzv_backend: {_RDZV_BACKEND} (accelerate's default)",
            )
    gpu_ids = config.gpu_ids if config.gpu_ids not in (None, "all") else None
    return Topology(
        processes=total,
        machines=machines,
        machine_rank=machine_rank,
        main_address=config.main_process_ip,
        main_port=int(config.main_process_port) if config.main_process_port else None,
        gpu_ids=str(gpu_ids) if gpu_ids is not None else None,
        sharding=_DISTRIBUTED_TYPES[kind],
        config_file=str(path),
    )


__all__ = ["DEFAULT_CONFIG", "Topology", "default_config_path", "resolve_topology"]
