"""The training plan: precision, batch, accumulation, checkpointing, and refusals.

:func:`plan_training` decides every training run before anything loads.
It picks the precision the host runs natively, the largest micro-batch
that fits up to the effective batch (accumulating gradients for the rest),
and gradient checkpointing only when nothing fits without it. Frontmatter
settings override its choices; the plan then warns when an override does
not fit.

The refusal matrix (each a :class:`~dlm.errors.PlanError` with the numbers
and the way out):

1. a real base on the CPU: refused unless ``force`` (tiny bases always run);
2. CUDA: a device smaller than the base needs at micro-batch 1 with
   checkpointing on a minimal example (one image, a short text);
3. Apple Silicon below 16 GiB unified memory (real bases);
4. a CUDA-first base on Apple Silicon, unless ``force`` *and* the unified
   memory holds the plan;
5. a document whose longest example does not fit even at micro-batch 1 with
   checkpointing, unless ``force`` (which proceeds with a loud warning).

Several processes (``processes``, ``local_processes`` of them on this host)
train data parallel: the plan is per process (one GPU each on CUDA; on the
CPU the processes share the host's RAM). When the base does not fit one
device at micro-batch 1, the plan shards it with FSDP across the processes
(:mod:`dlm.hardware.sharding`); otherwise each process holds the whole base
(DDP). The document's effective batch stays what it says: the planner
divides it between the processes and adjusts accumulation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from dlm.errors import PlanError, UsageError
from dlm.format.document import PRECISIONS, TrainingSettings
from dlm.hardware.host import GIB, HostFacts
from dlm.hardware.memory import LM_PROJECTIONS, MemoryEstimate, estimate_memory
from dlm.hardware.sharding import sharded_estimate
from dlm.records import BaseSpec

#: The effective batch when the document sets neither micro-batch nor accumulation.
DEFAULT_EFFECTIVE_BATCH = 4

#: Share of a host's memory a training run may plan to fill. The rest is for
#: whatever else the machine runs: other processes on a GPU, the OS and apps
#: sharing Apple Silicon's unified memory or a CPU host's RAM.
USABLE_FRACTION = {"cuda": 0.95, "mps": 0.85, "cpu": 0.85}

#: Apple Silicon below this much unified memory is refused for real bases.
MIN_MPS_MEMORY = 16 * GIB

#: Text tokens of the minimal example a base's own need is measured with,
#: and how many of them are the labelled completion.
MINIMAL_TEXT_TOKENS = 32
MINIMAL_COMPLETION_TOKENS = 16

ATTN_IMPLEMENTATION = "sdpa"

#: How the processes of a run share the model: one process; data parallel with
#: the whole base in each (DDP); or the base sharded across them (FSDP).
STRATEGIES = ("single", "ddp", "fsdp")

#: What the caller may ask for: the planner's choice, or one of the two.
SHARDING_CHOICES = ("auto", "ddp", "fsdp")

#: The document's precision names (``dlm.format.document.PRECISIONS``) and the
#: torch spellings callers of the planner may use for them.
_PRECISION_ALIASES = {
    **{name: name for name in PRECISIONS},
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float32": "fp32",
    "float": "fp32",
}


def gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


@attrs.frozen
class TrainingPlan:
    """How one training run uses the host, and why.

    ``micro_batch`` x ``grad_accum`` x ``processes`` = ``effective_batch``.
    ``expected_peak_bytes`` is ``memory.total`` for one process (one device);
    ``usable_bytes`` is what one process may fill. ``strategy`` is one of
    :data:`STRATEGIES`; ``local_processes`` of the ``processes`` run on this host.
    """

    base: str
    precision: str
    micro_batch: int
    grad_accum: int
    effective_batch: int
    checkpointing: bool
    attn_implementation: str
    seq_len: int
    images_per_example: int
    expected_peak_bytes: int
    usable_bytes: int
    memory: MemoryEstimate
    host: HostFacts
    forced: bool
    processes: int
    warnings: list[str] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)
    strategy: str = "single"
    local_processes: int = 1

    @property
    def fits(self) -> bool:
        return self.expected_peak_bytes <= self.usable_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "precision": self.precision,
            "micro_batch": self.micro_batch,
            "grad_accum": self.grad_accum,
            "effective_batch": self.effective_batch,
            "checkpointing": self.checkpointing,
            "attn_implementation": self.attn_implementation,
            "seq_len": self.seq_len,
            "images_per_example": self.images_per_example,
            "expected_peak_bytes": self.expected_peak_bytes,
            "usable_bytes": self.usable_bytes,
            "fits": self.fits,
            "forced": self.forced,
            "processes": self.processes,
            "local_processes": self.local_processes,
            "strategy": self.strategy,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "memory": self.memory.to_dict(),
            "host": self.host.to_dict(),
        }


def usable_bytes(host: HostFacts, local_processes: int = 1) -> int:
    """What one training process may fill; CPU processes share the host's RAM."""
    usable = int(host.memory_bytes * USABLE_FRACTION.get(host.backend, 0.85))
    if host.backend == "cpu":
        usable //= max(1, local_processes)
    return usable


def host_label(host: HostFacts) -> str:
    if host.backend == "cuda":
        return f"the CUDA device ({host.device_name})"
    if host.backend == "mps":
        return "this Mac's unified memory"
    return "this host's RAM"


# ----------------------------------------------------------------- settings


def normalize_precision(value: str) -> str:
    try:
        return _PRECISION_ALIASES[value.strip().lower()]
    except KeyError:
        raise PlanError(
            f"unknown training.precision {value!r}",
            hint=f"use {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}, "
            "or leave it unset for the planner to choose",
        ) from None


def native_precision(host: HostFacts) -> str:
    """bf16 where the host runs it natively, fp16 on older CUDA, fp32 elsewhere.

    MPS trains in fp32 unless bf16 is known to work there: fp16 on MPS needs
    loss scaling the stack does not reliably give it.
    """
    if host.backend == "cuda":
        return "bf16" if host.bf16 else "fp16"
    if host.backend == "mps" and host.bf16:
        return "bf16"
    return "fp32"


def _choose_precision(host: HostFacts, requested: str | None, warnings: list[str]) -> str:
    if requested is None:
        return native_precision(host)
    precision = normalize_precision(requested)
    unsupported = (
        (precision == "bf16" and not host.bf16)
        or (precision == "fp16" and not host.fp16)
        or (precision != "fp32" and host.backend == "cpu")
    )
    if unsupported:
        warnings.append(
            f"training.precision {precision} is not native on this host ({host.backend}, "
            f"{host.device_name}); it may run slowly or fail; the planner would use "
            f"{native_precision(host)}"
        )
    return precision


def lora_targets(target_modules: str | Sequence[str] | None) -> tuple[tuple[str, ...], bool]:
    """Which LM projections LoRA adapts, and whether it reaches the vision tower.

    ``None`` is the family default (the LM's seven linear layers, no vision).
    A regex names its projections; one that does not mention
    ``language_model`` may also match the tower's ``q_proj``... A list of
    plain names matches in every tower that uses them.
    """
    if target_modules is None:
        return LM_PROJECTIONS, False
    if isinstance(target_modules, str):
        text = target_modules
        on_vision = "language_model" not in text
    else:
        text = " ".join(target_modules)
        on_vision = True
    named = tuple(m for m in LM_PROJECTIONS if m in text)
    # an expression that names none of them ("all-linear", a custom regex):
    # assume the widest, like PEFT's all-linear
    return (named or LM_PROJECTIONS), on_vision


# ---------------------------------------------------------------- planning


def _batch_candidates(limit: int) -> list[int]:
    """Micro-batches up to ``limit`` that divide it (exact accumulation), largest first."""
    return [m for m in range(limit, 0, -1) if limit % m == 0]


def plan_training(
    base: BaseSpec,
    host: HostFacts,
    *,
    example_tokens: list[int],
    example_images: list[int],
    settings: TrainingSettings,
    force: bool = False,
    processes: int = 1,
    notes: Sequence[str] = (),
    local_processes: int | None = None,
    sharding: str = "auto",
    example_labels: Sequence[int] | None = None,
    lora_recompute: bool = False,
) -> TrainingPlan:
    """Plan a training run of ``base`` on ``host`` for these examples.

    ``example_tokens[i]`` is example i's full length (image + text tokens, as
    the family's processor counts them) and ``example_images[i]`` its number
    of images. ``example_labels[i]`` is its labelled (completion) tokens when
    the step runs the LM head at labelled positions only (dlm's
    ``label_head`` lever); ``None`` plans the plain head over every position.
    ``lora_recompute`` plans dlm's recomputed LoRA inputs (that lever). ``notes`` from the caller (e.g. how the token budget set
    ``sequence_len``) are kept in the plan. Raises :class:`PlanError` for
    every refusal; ``force`` turns the overridable ones into warnings.

    ``processes`` is the run's world size, ``local_processes`` (default: all
    of them) how many run on this host. ``sharding`` is ``"auto"`` (FSDP only
    when the base does not fit one device at micro-batch 1), ``"fsdp"`` or
    ``"ddp"``.
    """
    local = _check_processes(host, processes, local_processes, sharding)
    strategy = "single" if processes == 1 else "ddp"
    if not example_tokens:
        raise PlanError(
            "the document yields no training examples to plan for",
            hint="add a caption under an ::image:: fence, or an ::instruction:: right after it",
        )
    if len(example_images) != len(example_tokens):
        raise ValueError("example_tokens and example_images must have one entry per example")
    if example_labels is not None and len(example_labels) != len(example_tokens):
        raise ValueError("example_labels must have one entry per example")

    warnings: list[str] = []
    plan_notes = list(notes)
    precision = _choose_precision(host, settings.precision, warnings)
    seq_len = max(example_tokens)
    longest = example_tokens.index(seq_len)
    images = max(example_images)
    # the worst micro-batch: every example as long as the longest completion
    logit_positions = max(example_labels) if example_labels else None
    usable = usable_bytes(host, local)
    modules, on_vision = lora_targets(settings.target_modules)

    def estimate(
        micro: int,
        checkpointing: bool,
        seq: int = seq_len,
        n_images: int = images,
        on: str | None = None,
    ) -> MemoryEstimate:
        """Per process, as the chosen strategy runs it; ``on="cuda"`` estimates
        the same run on a bf16 GPU (for advice)."""
        one = unsharded(micro, checkpointing, seq, n_images, on)
        return sharded_estimate(one, base, processes) if strategy == "fsdp" else one

    def unsharded(
        micro: int, checkpointing: bool, seq: int, n_images: int, on: str | None
    ) -> MemoryEstimate:
        return estimate_memory(
            base,
            precision=precision if on is None else "bf16",
            micro_batch=micro,
            seq_len=seq,
            images_per_example=n_images,
            lora_r=settings.lora_r,
            checkpointing=checkpointing,
            lora_on_vision=on_vision,
            lora_dropout=settings.lora_dropout,
            lora_modules=modules,
            backend=on or host.backend,
            logit_positions=logit_positions,
            lora_recompute=lora_recompute,
        )

    if settings.sequence_len is not None and seq_len > settings.sequence_len:
        image_tokens = example_images[longest] * base.image.max_image_tokens()
        plan_notes.append(
            f"sequence_len raised from {settings.sequence_len} to {seq_len} so the longest "
            f"example's {image_tokens} image tokens are never truncated"
        )
    if seq_len > base.context_length:
        warnings.append(
            f"the longest example has {seq_len} tokens, more than {base.key}'s context "
            f"length of {base.context_length}"
        )

    if processes > 1:
        strategy = _choose_strategy(
            base, sharding, processes, usable, estimate(1, True), plan_notes
        )
    minimum = estimate(1, True)
    _check_refusals(
        base,
        host,
        precision,
        minimum,
        usable,
        force,
        warnings,
        estimate,
        seq_len,
        strategy,
        processes,
    )

    micro, accum, checkpointing = _choose_batch(
        settings, processes, usable, estimate, warnings, plan_notes
    )
    final = estimate(micro, checkpointing)
    if base.tiny:
        plan_notes.append(f"{base.key} is a tiny offline base: any host trains it")

    return TrainingPlan(
        base=base.key,
        precision=precision,
        micro_batch=micro,
        grad_accum=accum,
        effective_batch=micro * accum * processes,
        checkpointing=checkpointing,
        attn_implementation=ATTN_IMPLEMENTATION,
        seq_len=seq_len,
        images_per_example=images,
        expected_peak_bytes=final.total,
        usable_bytes=usable,
        memory=final,
        host=host,
        forced=force,
        processes=processes,
        warnings=warnings,
        notes=plan_notes,
        strategy=strategy,
        local_processes=local,
    )


def _check_processes(
    host: HostFacts, processes: int, local_processes: int | None, sharding: str
) -> int:
    """How many of the run's processes are on this host (misuse raises UsageError)."""
    if processes < 1:
        raise UsageError(f"--processes must be at least 1 (got {processes})")
    local = processes if local_processes is None else local_processes
    if local < 1 or local > processes or processes % local:
        raise UsageError(
            f"{processes} processes cannot be spread as {local} per host",
            hint="every host runs the same number of processes (num_processes / num_machines)",
        )
    if sharding not in SHARDING_CHOICES:
        raise UsageError(
            f"unknown sharding {sharding!r}", hint=f"use one of {', '.join(SHARDING_CHOICES)}"
        )
    if host.backend == "cuda" and local > max(1, host.device_count):
        raise UsageError(
            f"--processes {local} on this host needs {local} CUDA devices; it has "
            f"{host.device_count}",
            hint="use at most one process per GPU",
        )
    if host.backend == "mps" and local > 1:
        raise UsageError(
            f"--processes {local} needs several devices; Apple Silicon has one GPU",
            hint="drop --processes (one process trains on this Mac)",
        )
    return local


def _choose_strategy(
    base: BaseSpec,
    sharding: str,
    processes: int,
    usable: int,
    one_device: MemoryEstimate,
    notes: list[str],
) -> str:
    """DDP when the base fits one device at micro-batch 1, else FSDP (or as asked)."""
    if sharding != "auto":
        notes.append(f"{sharding.upper()} across {processes} processes, as asked")
        return sharding
    if one_device.total <= usable:
        return "ddp"
    sharded = sharded_estimate(one_device, base, processes)
    notes.append(
        f"FSDP: {base.key} needs {gib(one_device.total)} per process unsharded at micro-batch 1 "
        f"with checkpointing, {gib(usable)} usable; sharded across {processes} processes "
        f"it needs {gib(sharded.total)}"
    )
    return "fsdp"


def _check_refusals(
    base: BaseSpec,
    host: HostFacts,
    precision: str,
    minimum: MemoryEstimate,
    usable: int,
    force: bool,
    warnings: list[str],
    estimate: Callable[..., MemoryEstimate],
    seq_len: int,
    strategy: str = "single",
    processes: int = 1,
) -> None:
    need = minimum.total
    at_minimum = f"at micro-batch 1 with gradient checkpointing in {precision}"
    if strategy == "fsdp":
        at_minimum += f", sharded with FSDP across {processes} processes"

    if host.backend == "mps" and not base.tiny and host.memory_bytes < MIN_MPS_MEMORY:
        raise PlanError(
            f"Apple Silicon with {gib(host.memory_bytes)} unified memory is below the "
            f"{gib(MIN_MPS_MEMORY)} that training a vision-language base needs "
            f"({base.key} needs {gib(need)} {at_minimum})",
            hint="use a Mac with at least 16 GB, a CUDA GPU (plan for one with --assume cuda:24), "
            "or a tiny base to try the pipeline",
        )

    if host.backend == "mps" and base.cuda_first and not base.tiny:
        on_gpu = gib(estimate(1, True, on="cuda").total / USABLE_FRACTION["cuda"])
        numbers = (
            f"it needs {gib(need)} {at_minimum}; this Mac has "
            f"{gib(host.memory_bytes)} unified memory ({gib(usable)} usable)"
        )
        if not force:
            raise PlanError(
                f"{base.key} is a CUDA-first base and is refused on Apple Silicon: {numbers}",
                hint=(
                    "train it on a CUDA GPU, or pass --force to try it on this large-memory Mac"
                    if need <= usable
                    else f"train it on a CUDA GPU with at least {on_gpu}; even --force needs a "
                    f"Mac whose unified memory holds {gib(need / USABLE_FRACTION['mps'])}"
                ),
            )
        if need > usable:
            raise PlanError(
                f"{base.key} does not fit this Mac even with --force: {numbers}",
                hint=f"train it on a CUDA GPU with at least {on_gpu}, or on a Mac with "
                f"{gib(need / USABLE_FRACTION['mps'])} or more unified memory",
            )
        warnings.append(
            f"FORCED: {base.key} is CUDA-first; training it on Apple Silicon is slow and "
            f"untested ({numbers})"
        )

    if host.backend == "cpu" and not base.tiny:
        params = base.params.total / 1e9
        numbers = (
            f"training it needs about {gib(need)} {at_minimum} ({gib(host.memory_bytes)} RAM "
            f"here, {gib(usable)} usable) and takes hours per epoch"
        )
        if not force:
            raise PlanError(
                f"{base.key} is a real base ({params:.1f}B parameters) and this host has no GPU: "
                f"{numbers}",
                hint="train on a CUDA GPU or Apple Silicon (plan for one with --assume cuda:24), "
                "use a tiny base to try the pipeline, or pass --force to train on the CPU anyway",
            )
        warnings.append(f"FORCED: training {base.key} on the CPU: {numbers}")

    if host.backend == "cuda" and not base.tiny:
        tokens = base.image.tokens_per_image + MINIMAL_TEXT_TOKENS
        base_need = estimate(1, True, seq=tokens, n_images=1).total
        if base_need > usable:
            shard_hint = ""
            if strategy == "fsdp":
                shard_hint = ", shard it across more GPUs (--processes)"
            elif processes == 1 and host.device_count > 1:
                shard_hint = (
                    f", shard it with FSDP across this host's {host.device_count} GPUs "
                    f"(--processes {host.device_count})"
                )
            raise PlanError(
                f"{base.key} needs at least {gib(base_need)} on "
                f"{'each' if strategy == 'fsdp' else 'one'} CUDA device to train at all "
                f"(weights {gib(minimum.weights)} in {precision}; one image and "
                f"{MINIMAL_TEXT_TOKENS} text tokens {at_minimum}); this GPU "
                f"({host.device_name}) has {gib(host.memory_bytes)} ({gib(usable)} usable)",
                hint=f"use a GPU with at least {gib(base_need / USABLE_FRACTION['cuda'])} "
                f"(plan for one with --assume cuda:N){shard_hint}, or a smaller base",
            )

    if need > usable:
        numbers = (
            f"the longest example ({seq_len} tokens, {minimum.images_per_example} image(s)) needs "
            f"{gib(need)} {at_minimum}; {host_label(host)} offers {gib(usable)} usable of "
            f"{gib(host.memory_bytes)}"
        )
        if not force:
            raise PlanError(
                f"this document does not fit: {numbers}",
                hint="shorten the longest example or give it fewer images, use a smaller base, "
                "a host with more memory (plan with --assume), or pass --force to try anyway",
            )
        warnings.append(f"FORCED: {numbers}; expect an out-of-memory failure")


def _choose_batch(
    settings: TrainingSettings,
    processes: int,
    usable: int,
    estimate: Callable[..., MemoryEstimate],
    warnings: list[str],
    notes: list[str],
) -> tuple[int, int, bool]:
    """Micro-batch, accumulation and checkpointing for the effective batch."""

    def fits(micro: int, checkpointing: bool) -> bool:
        return estimate(micro, checkpointing).total <= usable

    def largest(limit: int) -> tuple[int, bool]:
        for checkpointing in (False, True):
            for micro in _batch_candidates(limit):
                if fits(micro, checkpointing):
                    return micro, checkpointing
        return 1, True  # nothing fits: only reachable under --force

    user_micro, user_accum = settings.micro_batch_size, settings.grad_accum
    share = math.ceil(DEFAULT_EFFECTIVE_BATCH / processes)

    if user_micro is not None:
        doc_accum = (
            user_accum
            if user_accum is not None
            else max(1, math.ceil(DEFAULT_EFFECTIVE_BATCH / user_micro))
        )
        per = _share(user_micro * doc_accum, processes, notes)
        micro = next(m for m in _batch_candidates(per) if m <= user_micro)
        accum = per // micro
        _note_split(micro, accum, processes, notes)
        checkpointing = not fits(micro, False)
        if checkpointing and not fits(micro, True):
            best, best_ckpt = largest(micro)
            warnings.append(
                f"training.micro_batch_size {micro} does not fit: it needs "
                f"{gib(estimate(micro, True).total)} even with gradient checkpointing, "
                f"{gib(usable)} usable; micro-batch {best} would"
                f"{' (with checkpointing)' if best_ckpt else ''}"
            )
        elif checkpointing:
            notes.append(
                f"gradient checkpointing on: micro-batch {micro} needs "
                f"{gib(estimate(micro, False).total)} without it, {gib(usable)} usable"
            )
        return micro, accum, checkpointing

    if user_accum is not None:
        target = max(1, math.ceil(DEFAULT_EFFECTIVE_BATCH / user_accum))
        if processes == 1:
            micro, checkpointing = largest(target)
            return micro, user_accum, checkpointing
        per = _share(target * user_accum, processes, notes)
        micro, checkpointing = largest(per)
        _note_split(micro, per // micro, processes, notes)
        return micro, per // micro, checkpointing

    micro, checkpointing = largest(share)
    accum = share // micro
    if share * processes != DEFAULT_EFFECTIVE_BATCH:
        notes.append(
            f"effective batch {share * processes}: {DEFAULT_EFFECTIVE_BATCH} rounded up to a "
            f"multiple of {processes} processes"
        )
    if micro < share:
        notes.append(
            f"micro-batch {micro} x accumulation {accum}: micro-batch {share} would need "
            f"{gib(estimate(share, checkpointing).total)}, {gib(usable)} usable"
        )
    if checkpointing:
        notes.append(
            f"gradient checkpointing on: micro-batch 1 needs {gib(estimate(1, False).total)} "
            f"without it, {gib(usable)} usable"
        )
    return micro, accum, checkpointing


def _share(effective: int, processes: int, notes: list[str]) -> int:
    """Examples per optimizer step of one of ``processes`` processes that together
    make the document's ``effective`` batch (rounded up to a multiple of them)."""
    per = math.ceil(effective / processes)
    if per * processes != effective:
        notes.append(
            f"effective batch {per * processes}: the document's {effective} rounded up to a "
            f"multiple of {processes} processes"
        )
    return per


def _note_split(micro: int, accum: int, processes: int, notes: list[str]) -> None:
    if processes > 1:
        notes.append(
            f"effective batch {micro * accum * processes}: micro-batch {micro} x accumulation "
            f"{accum} in each of {processes} processes"
        )
