"""What one process of a multi-process run does differently inside the training loop.

:class:`Ranks` is the training loop's view of the run's processes. A
single-process run uses :meth:`Ranks.single`, whose every method is the
identity of what the loop did before (same batches, same weights, same
calls), so one process trains exactly as it always has.

With ``world`` processes:

- **Batches.** Every process draws the same epoch order from the same
  seeded generator, cut into *global* micro-batches of ``micro x world``
  examples: the micro-batches a single process would see at that size.
  Each process takes its contiguous share (:meth:`Ranks.shard`). A share
  can be empty at the end of an epoch; that process then runs one example
  with weight 0, so every process still takes part in every gradient
  collective.
- **Loss.** Each process's loss is the mean over its labelled tokens; it is
  weighted by its share of the global micro-batch's labelled tokens (one
  small all-reduce) times ``world`` (gradients are averaged over processes),
  so the summed gradient is that of the mean over the whole global
  micro-batch, exactly as one process computes it. Accumulation weights
  micro-batches by their examples, as before.
- **Strategy.** ``ddp``: Accelerate wraps the model in
  ``DistributedDataParallel``. ``fsdp``: dlm shards the model itself with
  FSDP2 (``torch.distributed.fsdp.fully_shard``), one unit per LM decoder
  layer plus the root (see :mod:`dlm.hardware.sharding`), on every backend;
  Accelerate 1.15 only turns on its own FSDP for GPUs, and sharding here
  keeps the CPU (gloo) path the same code as the CUDA one.
- **Collectives** time out after ``timeout_s`` (``DLM_COLLECTIVE_TIMEOUT``),
  so a process whose peer hangs fails instead of waiting forever.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from dlm.errors import TrainError, UsageError

ENV_TIMEOUT = "DLM_COLLECTIVE_TIMEOUT"
#: Seconds a collective may wait for the other processes. Long enough for the
#: slowest step of a large base (and rank 0 gathering the adapter at the end),
#: short enough that a stuck peer ends the run rather than hanging it.
DEFAULT_TIMEOUT_S = 900.0

IGNORE_INDEX = -100


def collective_timeout(env: dict[str, str] | None = None) -> float:
    raw = (os.environ if env is None else env).get(ENV_TIMEOUT, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise UsageError(
            f"{ENV_TIMEOUT}={raw!r} is not a positive number of seconds",
            hint=f"set {ENV_TIMEOUT} to e.g. 900, or unset it",
        )
    return value


def shard_bounds(n: int, world: int, rank: int) -> tuple[int, int]:
    """``[start, stop)`` of ``rank``'s contiguous share of ``n`` items, as even as possible."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def labelled_tokens(labels: Any) -> int:
    """Next-token predictions the loss scores (labels shifted by one)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def fsdp_units(model: Any) -> list[Any]:
    """The LM decoder layers: the model's ``_no_split_modules`` under its language model."""
    no_split: set[str] = set()
    for module in model.modules():
        names = getattr(module, "_no_split_modules", None)
        if names:
            no_split.update(names)
    units = []
    for name, module in model.named_modules():
        if type(module).__name__ in no_split and "language_model" in name.split("."):
            units.append(module)
    return units


def inputs_fingerprint(examples: Sequence[Any], plan: Any, seed: int) -> str:
    """What every process must agree on before training together."""
    from dlm.engine.document.examples import identity_rows

    data = {
        "examples": identity_rows(examples),
        "micro_batch": plan.micro_batch,
        "grad_accum": plan.grad_accum,
        "strategy": plan.strategy,
        "precision": plan.precision,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@attrs.define
class Ranks:
    """This process's place in the run, and the loop's distributed operations."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    strategy: str = "single"  # "single" | "ddp" | "fsdp"
    timeout_s: float = DEFAULT_TIMEOUT_S
    find_unused: bool = False
    _accelerator: Any = None

    @classmethod
    def single(cls) -> Ranks:
        return cls()

    @classmethod
    def from_environment(cls, strategy: str, *, find_unused: bool = False) -> Ranks:
        """The process started by the launcher (torch elastic sets RANK, WORLD_SIZE...)."""
        env = os.environ
        return cls(
            world=int(env.get("WORLD_SIZE", "1")),
            rank=int(env.get("RANK", "0")),
            local_rank=int(env.get("LOCAL_RANK", "0")),
            strategy=strategy,
            timeout_s=collective_timeout(),
            find_unused=find_unused,
        )

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the only process that writes logs, progress and the adapter."""
        return self.rank == 0

    # ------------------------------------------------------------ set-up

    def accelerator_kwargs(self) -> dict[str, Any]:
        """Extra ``Accelerator(...)`` arguments; none for one process."""
        if not self.distributed:
            return {}
        from accelerate import DataLoaderConfiguration
        from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

        return {
            "kwargs_handlers": [
                InitProcessGroupKwargs(timeout=_dt.timedelta(seconds=self.timeout_s)),
                DistributedDataParallelKwargs(find_unused_parameters=self.find_unused),
            ],
            # Each process's batches are its share of a global batch the loop
            # cuts itself: the scheduler steps once per optimizer step, not
            # once per process.
            "dataloader_config": DataLoaderConfiguration(split_batches=True),
        }

    def bind(self, accelerator: Any) -> None:
        """Check that Accelerate sees the same run, and keep it for the collectives."""
        self._accelerator = accelerator
        if accelerator.num_processes != self.world or accelerator.process_index != self.rank:
            raise TrainError(
                f"the launcher started rank {self.rank} of {self.world}, but Accelerate sees "
                f"process {accelerator.process_index} of {accelerator.num_processes}",
                hint="launch through `dlm train --processes N` or `--accelerate-config FILE`",
            )

    def reseed(self, seed: int) -> None:
        """After the (identical) LoRA init: a different dropout stream on every rank."""
        if self.rank > 0:
            import torch

            torch.manual_seed(seed + self.rank)

    def check_same_inputs(self, fingerprint: str) -> None:
        """Every process trains the same examples with the same plan, or none starts."""
        if not self.distributed:
            return
        import torch.distributed as dist

        seen: list[Any] = [None] * self.world
        dist.all_gather_object(seen, fingerprint)
        differing = [rank for rank, value in enumerate(seen) if value != seen[0]]
        if differing:
            raise TrainError(
                f"rank(s) {', '.join(map(str, differing))} see a different document, images "
                f"or plan than rank 0",
                hint="every machine needs the same .dlm file, images, dlm version and GPU type",
            )

    def shard_model(self, model: Any) -> Any:
        """FSDP: shard ``model`` in place (LM decoder layers, then the root)."""
        if self.strategy != "fsdp" or not self.distributed:
            return model
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        device = self._accelerator.device if self._accelerator is not None else None
        device_type = device.type if device is not None else "cpu"
        mesh = init_device_mesh(device_type, (self.world,))
        units = fsdp_units(model)
        if not units:
            raise TrainError(
                "FSDP found no decoder layers to shard in this model",
                hint="train with --processes and sharding off (ddp), or report the base",
            )
        for unit in units:
            fully_shard(unit, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model

    def prepare(self, accelerator: Any, model: Any, optimizer: Any, scheduler: Any) -> Any:
        """``accelerator.prepare``; an FSDP-sharded model is not wrapped again."""
        if self.strategy == "fsdp" and self.distributed:
            optimizer, scheduler = accelerator.prepare(optimizer, scheduler)
            return model, optimizer, scheduler
        return accelerator.prepare(model, optimizer, scheduler)

    def eval_model(self, accelerator: Any, model: Any) -> Any:
        """The model to score and generate with: unwrapped (DDP's wrapper would sync
        buffers on every forward), or the FSDP-sharded model itself, whose forward
        every rank then runs in step."""
        if self.strategy == "fsdp" and self.distributed:
            return model
        return accelerator.unwrap_model(model)

    @contextlib.contextmanager
    def whole_model(self, model: Any) -> Iterator[None]:
        """FSDP: the root's own parameters gathered whole while generating.

        ``generate`` calls the wrapped model's inner forward, not the root's,
        so the root's hooks never gather its parameters (the vision tower's,
        the embeddings'); the decoder layers gather their own as they run.
        Every rank enters in step (the gather is a collective). Nothing to
        do otherwise.
        """
        if self.strategy != "fsdp" or not self.distributed:
            yield
            return
        model.unshard()
        try:
            yield
        finally:
            model.reshard()

    # ------------------------------------------------------------ the loop

    def global_micro_batch(self, micro: int) -> int:
        return micro * self.world

    def shard(self, chunk: Sequence[int]) -> list[int]:
        """This rank's examples of a global micro-batch."""
        if not self.distributed:
            return list(chunk)
        start, stop = shard_bounds(len(chunk), self.world, self.rank)
        return list(chunk[start:stop])

    def weight(
        self, chunk: Sequence[int], mine: Sequence[int], group_examples: int, batch: Any
    ) -> float:
        """The factor on this rank's micro-batch loss (see the module docstring)."""
        share = len(chunk) / group_examples
        if not self.distributed:
            return share
        local = labelled_tokens(batch["labels"]) if mine else 0
        total = self._sum(float(local))
        if total <= 0:
            return 0.0
        return local / total * share * self.world

    def mean(self, value: float) -> float:
        """The mean of a per-rank number over the ranks (the step's loss)."""
        if not self.distributed:
            return value
        return self._sum(value) / self.world

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any rank (every rank gets the same answer)."""
        if not self.distributed:
            return flag
        return self._sum(1.0 if flag else 0.0) > 0

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order (on every rank)."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        seen: list[Any] = [None] * self.world
        dist.all_gather_object(seen, value)
        return seen

    def no_sync(self, accelerator: Any, model: Any) -> Any:
        """Accumulate without communicating (all but the last micro-batch of a step)."""
        if self.strategy == "fsdp" and self.distributed:
            return _fsdp_no_sync(model)
        return accelerator.no_sync(model)

    def _sum(self, value: float) -> float:
        import torch

        accelerator = self._accelerator
        tensor = torch.tensor([value], dtype=torch.float64, device=accelerator.device)
        return float(accelerator.reduce(tensor, reduction="sum").item())

    # ------------------------------------------------------------ the end

    def adapter_state(self, model: Any) -> dict[str, Any] | None:
        """FSDP: the LoRA weights gathered whole (a collective; the dict on rank 0 only).

        ``None`` otherwise: the unwrapped model saves its own weights.
        """
        if self.strategy != "fsdp" or not self.distributed:
            return None
        state: dict[str, Any] = {}
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            full = param.full_tensor() if hasattr(param, "full_tensor") else param
            if self.main:
                state[name] = full.detach().to("cpu").clone()
        return state if self.main else None


@contextlib.contextmanager
def _fsdp_no_sync(model: Any) -> Iterator[None]:
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ENV_TIMEOUT",
    "Ranks",
    "collective_timeout",
    "fsdp_units",
    "inputs_fingerprint",
    "labelled_tokens",
    "shard_bounds",
]
