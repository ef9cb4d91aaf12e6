"""``dlm train``: a document → a committed LoRA adapter version.

Order matters for the user: everything that can fail on bad input
(document, images, base, licence, token budget, plan) fails before the
store lock is taken, before anything is written and before the model
loads. Then, under the lock for the whole run: blobs, model, training,
and the two-phase commit. An interrupted or crashed run never touches
``current.txt``: the last committed version stays current.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console

from dlm.engine.budget import Budget, check_budget
from dlm.engine.distributed import Ranks
from dlm.engine.examples import ExampleSet, build_examples
from dlm.engine.ingest import store_images
from dlm.engine.levers import Levers, choose_levers
from dlm.engine.lora_recompute import lora_inputs_recomputed
from dlm.engine.prepare import PreparedDocument, prepare_document
from dlm.engine.report import print_outcomes, print_plan
from dlm.errors import DlmError, TrainError
from dlm.records import TokenCount, TrainingExample
from dlm.store.adapters import commit_adapter, current_version
from dlm.store.blobs import BlobStore
from dlm.store.lock import StoreLock
from dlm.store.manifest import load_manifest, save_manifest
from dlm.store.paths import dlm_home
from dlm.store.space import disk_full_cause, disk_full_error, disk_step


class TrainInterrupted(TrainError):
    exit_code = 130


@attrs.frozen
class TrainOptions:
    force: bool = False
    allow_outside: bool = False
    accept_license: bool = False
    assume: str | None = None  # plan for an assumed host (see dlm doctor --assume)
    processes: int | None = None  # data-parallel processes on this host (--processes)
    accelerate_config: str | None = None  # a multi-machine run (--accelerate-config)


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


# Room for a manifest rewrite or a training_run.json, and for one log row.
_MANIFEST_BYTES = 64 * 1024
_LOG_ROW_BYTES = 256


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_license(prepared: PreparedDocument, accept_license: bool) -> dict[str, Any] | None:
    """A gated base needs ``--i-accept-license`` (or an acceptance recorded at ``dlm init``)."""
    base = prepared.base
    if not base.gated:
        return None
    from dlm.plugins import get_registry
    from dlm.store.licenses import license_refusal, recorded_acceptance

    manifest = load_manifest(prepared.paths)
    recorded = manifest.license_acceptances.get(base.key) or recorded_acceptance(
        prepared.paths.dlm_id, base
    )
    if recorded:
        return dict(recorded)
    if not accept_license:
        installed = get_registry().bases.values()
        raise license_refusal(base, installed, switch="base_model: {}")
    return {"license": base.license, "accepted_at": _now(), "by": "dlm train --i-accept-license"}


def _library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for dist in ("dlm-core", "torch", "transformers", "peft", "accelerate", "trl"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _precision_dtype(precision: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _ImageCache:
    """Decoded, family-prepared images by blob sha: each image is decoded once per run."""

    def __init__(self, prepared: PreparedDocument, image_settings: dict[str, Any]):
        self._prepared = prepared
        self._settings = image_settings  # saved with the adapter: prompts size images alike
        self._images: dict[str, Any] = {}

    def get(self, example: TrainingExample) -> list[Any]:
        from PIL import Image

        out = []
        for ref in example.images:
            if ref.sha256 not in self._images:
                with Image.open(ref.blob_path) as img:
                    img.load()
                    self._images[ref.sha256] = self._prepared.family.prepare_image(
                        self._prepared.base, img, self._settings
                    )
            out.append(self._images[ref.sha256])
        return out


def _move(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}


def _plot_loss(log_rows: list[dict[str, Any]], out: Path, title: str) -> Path | None:
    if not log_rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([r["step"] for r in log_rows], [r["loss"] for r in log_rows], linewidth=1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def run_training(doc_path: str | Path, options: TrainOptions, console: Console) -> TrainResult:
    started = time.monotonic()
    prepared = prepare_document(doc_path, allow_outside=options.allow_outside)
    acceptance = check_license(prepared, options.accept_license)
    print_outcomes(prepared.example_set, console)
    if prepared.doc.frontmatter.system_prompt and not prepared.family.uses_system_prompt:
        console.print(
            f"note: system_prompt is not used: family {prepared.family.name} has no system turn"
        )
    examples = prepared.example_set.examples
    if not examples:
        raise TrainError(
            "nothing to train: no section of the document became a training example",
            hint="add a caption under an ::image:: fence, or an ::instruction:: right after it",
        )

    from dlm.engine.quiet import quiet_transformers
    from dlm.engine.topology import resolve_topology
    from dlm.hardware.host import assume_host, probe_host
    from dlm.hardware.plan import plan_training

    quiet_transformers()
    family, base = prepared.family, prepared.base
    host = assume_host(options.assume) if options.assume else probe_host()
    topology = resolve_topology(options.processes, options.accelerate_config)
    parallel: dict[str, Any] = {
        "processes": topology.processes,
        "local_processes": topology.local_processes,
        "sharding": topology.sharding,
    }
    settings = prepared.doc.frontmatter.training
    levers = choose_levers(host.backend)

    def labels(counts: Sequence[TokenCount]) -> list[int] | None:
        # the label-position head computes logits at completion tokens only
        return [c.completion for c in counts] if levers.label_head else None

    if not base.tiny:
        # Refuse what this host cannot train before downloading gigabytes of
        # weights: plan once on the family's token estimates (no processor).
        estimated = check_budget(prepared.doc, base, family, None, examples)
        plan_training(
            base,
            host,
            example_tokens=[c.total for c in estimated.counts],
            example_images=[len(e.images) for e in examples],
            settings=settings,
            force=options.force,
            example_labels=labels(estimated.counts),
            lora_recompute=levers.lora_recompute,
            **parallel,
        )
    with console.status(f"preparing base {base.key}…"):
        base_dir = family.materialize(base, dlm_home())
        processor = family.load_processor(base, base_dir)
        image_settings = family.image_settings(base, processor)
    budget = check_budget(prepared.doc, base, family, processor, examples)
    plan = plan_training(
        base,
        host,
        example_tokens=[c.total for c in budget.counts],
        example_images=[len(e.images) for e in examples],
        settings=settings,
        force=options.force,
        notes=[budget.note] if budget.note else [],
        example_labels=labels(budget.counts),
        lora_recompute=levers.lora_recompute,
        **parallel,
    )
    print_plan(plan, budget, console)
    console.print(f"  speed: {levers.describe()}")

    paths = prepared.paths
    if not topology.main_machine:
        # Another machine's share of the run: machine 0 holds the lock and commits.
        return _launch(doc_path, options, prepared, plan, topology, None, started, console)
    with StoreLock(paths.lock_file, command="dlm train"):
        image_bytes = sum(image.size for image in prepared.images) + _MANIFEST_BYTES
        with disk_step("copying the document's images into the store", paths.blobs, image_bytes):
            manifest = load_manifest(paths)
            manifest.document = str(Path(doc_path).resolve())
            manifest.base_model = base.key
            if not paths.manifest.is_file():
                # A new store gets its manifest before its first blob: a run killed
                # while copying images then leaves unrecorded blobs (a warning that
                # the next train clears), never a store with content and no manifest.
                save_manifest(paths, manifest)
            blobs = BlobStore(paths.blobs)
            refs = store_images(list(prepared.images), blobs)
            example_set = build_examples(prepared.doc, family, refs)
            for image in prepared.images:
                manifest.add_blob(image.sha256, image.size, image.source)
            if acceptance is not None:
                manifest.license_acceptances.setdefault(base.key, acceptance)
            save_manifest(paths, manifest)

        if topology.distributed:
            return _launch(
                doc_path, options, prepared, plan, topology, paths.blobs, started, console
            )
        return _train_and_commit(
            prepared=prepared,
            example_set=example_set,
            budget=budget,
            plan=plan,
            base_dir=base_dir,
            processor=processor,
            image_settings=image_settings,
            options=options,
            console=console,
            started=started,
            levers=levers,
        )


def _launch(
    doc_path: str | Path,
    options: TrainOptions,
    prepared: PreparedDocument,
    plan: Any,
    topology: Any,
    blob_root: Path | None,
    started: float,
    console: Console,
) -> TrainResult:
    from dlm.engine.launch import train_distributed

    result: TrainResult = train_distributed(
        document=Path(doc_path).resolve(),
        allow_outside=options.allow_outside,
        force=options.force,
        plan=plan,
        topology=topology,
        prepared=prepared,
        blob_root=blob_root,
        started=started,
        console=console,
    )
    return result


def _train_and_commit(
    *,
    prepared: PreparedDocument,
    example_set: ExampleSet,
    budget: Budget,
    plan: Any,
    base_dir: Path,
    processor: Any,
    image_settings: dict[str, Any],
    options: TrainOptions,
    console: Console,
    started: float,
    levers: Levers | None = None,
    ranks: Ranks | None = None,
    output_dir: Path | None = None,
) -> TrainResult:
    """Train and commit; or, as one rank of a multi-process run (``ranks``), train
    and leave the adapter in ``output_dir`` (rank 0) for the launcher to commit."""
    import torch
    from accelerate import Accelerator
    from transformers import get_scheduler

    from dlm.engine.batching import BatchingStats, epoch_micro_batches
    from dlm.engine.distributed import inputs_fingerprint
    from dlm.engine.feature_cache import VisionFeatures
    from dlm.engine.levers import compile_decoder_layers, make_optimizer
    from dlm.engine.lora import attach_lora
    from dlm.engine.progress import TrainProgress
    from dlm.engine.step import training_loss

    family, base, paths = prepared.family, prepared.base, prepared.paths
    settings = prepared.doc.frontmatter.training
    examples = list(example_set.examples)
    previous = current_version(paths)
    ranks = ranks if ranks is not None else Ranks.single()

    if base.tiny and plan.host.backend == "cpu":
        # Toy-sized matrices: threading overhead exceeds the work, and on a busy
        # host OpenMP spin-waiting made steps 20x slower (measured: 1.3 s vs 0.05 s).
        torch.set_num_threads(1)
    _seed_everything(settings.seed)
    if plan.precision == "fp32":
        torch.use_deterministic_algorithms(True, warn_only=True)
    mixed = {"bf16": "bf16", "fp16": "fp16"}.get(plan.precision, "no")
    accelerator = Accelerator(
        mixed_precision=mixed, cpu=plan.host.backend == "cpu", **ranks.accelerator_kwargs()
    )
    ranks.bind(accelerator)
    with console.status(f"loading {base.key}…"):
        model = family.load_model(base, base_dir, _precision_dtype(plan.precision), "cpu")
        if plan.checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
            model.enable_input_require_grads()
        _seed_everything(settings.seed)  # LoRA init draws from the RNG
        model = attach_lora(model, base, family, settings)
    # What the commit writes (before sharding splits the parameters), for a full disk's message.
    adapter_bytes = _MANIFEST_BYTES + sum(
        p.numel() * p.element_size() for p in model.parameters() if p.requires_grad
    )
    model.train()
    ranks.reseed(settings.seed)
    model = ranks.shard_model(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    levers = levers if levers is not None else choose_levers(plan.host.backend)
    features, no_reuse = None, None
    if levers.feature_cache:
        features, no_reuse = VisionFeatures.for_run(
            model,
            family,
            base,
            image_settings,
            precision=plan.precision,
            device_type=plan.host.backend,
            paths=paths if ranks.main else None,
        )
    if no_reuse:
        console.print(f"  note: vision features computed every step: {no_reuse}")
    if levers.compile:
        compile_decoder_layers(model)
    lengths = [c.total for c in budget.counts] if levers.length_batching else None
    if lengths is not None and len(lengths) != len(examples):
        lengths = None
    batching = BatchingStats()
    optimizer = make_optimizer(trainable, settings.learning_rate, levers)

    micro = plan.micro_batch
    accum = plan.grad_accum
    micro_batches_per_epoch = math.ceil(len(examples) / ranks.global_micro_batch(micro))
    steps_per_epoch = math.ceil(micro_batches_per_epoch / accum)
    total_steps = steps_per_epoch * settings.num_epochs
    scheduler = get_scheduler(
        settings.lr_scheduler,
        optimizer,
        num_warmup_steps=int(settings.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    model, optimizer, scheduler = ranks.prepare(accelerator, model, optimizer, scheduler)
    ranks.check_same_inputs(inputs_fingerprint(examples, plan, settings.seed))

    images = _ImageCache(prepared, image_settings)
    run_stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    if ranks.main:
        paths.logs.mkdir(parents=True, exist_ok=True)
    log_path = paths.logs / f"train-{run_stamp}.jsonl"
    log_rows: list[dict[str, Any]] = []
    generator = torch.Generator().manual_seed(settings.seed)
    step = 0
    seen = 0
    first_step_at: float | None = None
    loop_started = time.monotonic()
    last_loss = float("nan")

    try:
        log_file = log_path.open("w") if ranks.main else open(os.devnull, "w")  # noqa: SIM115
        recompute = lora_inputs_recomputed(model) if levers.lora_recompute else nullcontext()
        with log_file as log, TrainProgress(console, total_steps) as progress, recompute:
            for epoch in range(settings.num_epochs):
                chunks = epoch_micro_batches(
                    len(examples), ranks.global_micro_batch(micro), generator, lengths, batching
                )
                for group_start in range(0, len(chunks), accum):
                    group = chunks[group_start : group_start + accum]
                    group_examples = sum(len(c) for c in group)
                    step_loss = 0.0
                    for i, chunk in enumerate(group):
                        mine = ranks.shard(chunk)
                        # an empty share still runs (weight 0): every rank joins every collective
                        batch_examples = [examples[j] for j in (mine or chunk[:1])]
                        batch = family.collate(
                            base,
                            processor,
                            batch_examples,
                            [images.get(e) for e in batch_examples],
                        )
                        batch = _move(batch, accelerator.device)
                        weight = ranks.weight(chunk, mine, group_examples, batch)
                        is_last = i == len(group) - 1
                        ctx = ranks.no_sync(accelerator, model) if not is_last else nullcontext()
                        with ctx, accelerator.autocast():
                            loss = (
                                training_loss(
                                    model,
                                    batch,
                                    label_head=levers.label_head,
                                    features=features,
                                    image_keys=[r.sha256 for e in batch_examples for r in e.images],
                                )
                                * weight
                            )
                        accelerator.backward(loss)
                        step_loss += float(loss.detach())
                    step_loss = ranks.mean(step_loss)
                    accelerator.clip_grad_norm_(trainable, 1.0)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    seen += group_examples
                    if first_step_at is None:
                        first_step_at = time.monotonic()
                    elapsed = time.monotonic() - loop_started
                    last_loss = step_loss
                    row = {
                        "step": step,
                        "epoch": epoch + 1,
                        "loss": round(step_loss, 6),
                        "lr": scheduler.get_last_lr()[0],
                        "samples": seen,
                        "samples_per_s": round(seen / elapsed, 3) if elapsed > 0 else None,
                        "elapsed_s": round(elapsed, 3),
                    }
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                    log_rows.append(row)
                    progress.advance(step_loss, row["samples_per_s"])
    except KeyboardInterrupt:
        kept = f"{previous} remains current" if previous else "no adapter was committed"
        raise TrainInterrupted(
            f"interrupted at step {step}/{total_steps}; nothing was committed, {kept}",
            hint="run `dlm train` again to start over",
        ) from None
    except DlmError:
        raise
    except Exception as exc:
        kept = f"{previous} remains current" if previous else "no adapter was committed"
        full = disk_full_cause(exc)
        if full is not None:
            raise disk_full_error(
                full,
                step=f"training (step {step} of {total_steps}; {kept})",
                where=log_path,
                # the rest of the log, then the adapter
                needed=(total_steps - step) * _LOG_ROW_BYTES + adapter_bytes,
            ) from exc
        raise TrainError(
            f"training failed at step {step}: {type(exc).__name__}: {exc}; {kept}",
            hint="re-run with --verbose for the traceback",
        ) from exc

    with disk_step("drawing the loss plot", log_path.with_suffix(".png"), adapter_bytes):
        plot_path = (
            _plot_loss(log_rows, log_path.with_suffix(".png"), f"{base.key} · {paths.root.name}")
            if ranks.main
            else None
        )
    startup = (first_step_at - started) if first_step_at else 0.0
    unwrapped = accelerator.unwrap_model(model)
    training_run = {
        "dlm_id": prepared.doc.frontmatter.dlm_id,
        "document": str(prepared.doc.path),
        "base": {
            "key": base.key,
            "hub_id": base.hub_id,
            "revision": base.revision,
            "architecture": base.architecture,
            "family": base.family,
        },
        "image_geometry": attrs.asdict(base.image),
        "image_settings": image_settings,
        "hyperparameters": {
            **{k: v for k, v in attrs.asdict(settings).items() if k != "sources"},
            "target_modules": _jsonable(settings.target_modules)
            if settings.target_modules is not None
            else family.lora_target_modules(base),
            "sequence_len": budget.sequence_len,
        },
        "plan": plan.to_dict(),
        "force": options.force,
        "world_size": accelerator.num_processes,
        "strategy": plan.strategy,
        "speed": {
            "levers": levers.on(),
            "vision_features": features.note() if features is not None else no_reuse,
            "batching": batching.note() if lengths is not None else None,
        },
        "seed": settings.seed,
        "data": {
            "examples": len(examples),
            "sections": sorted({e.section_id for e in examples}),
            "images": sorted({ref.sha256 for e in examples for ref in e.images}),
        },
        "results": {
            "steps": step,
            "final_loss": last_loss,
            "seconds": round(time.monotonic() - loop_started, 3),
            "startup_to_first_step_s": round(startup, 3),
            "log": str(log_path),
        },
        "versions": _library_versions(),
        "started_at": _dt.datetime.fromtimestamp(
            time.time() - (time.monotonic() - started), _dt.UTC
        ).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "finished_at": _now(),
    }
    state = ranks.adapter_state(model)  # FSDP: gathered on every rank (a collective)
    if output_dir is not None:
        # a rank of a launched run: the launcher commits what rank 0 writes here
        if ranks.main:
            output_dir.mkdir(parents=True, exist_ok=True)
            _write_adapter(output_dir, unwrapped, state, training_run)
        version, adapter_dir = "", output_dir
    else:
        with (
            disk_step("committing the adapter", paths.versions, adapter_bytes),
            commit_adapter(paths, meta={"base": base.key, "steps": step}) as staging,
        ):
            _write_adapter(staging, unwrapped, state, training_run)
        committed = current_version(paths)
        assert committed is not None
        version, adapter_dir = committed, paths.version_dir(committed)
    return TrainResult(
        version=version,
        steps=step,
        final_loss=last_loss,
        seconds=time.monotonic() - loop_started,
        startup_seconds=startup,
        adapter_dir=adapter_dir,
        log_path=log_path,
        plot_path=plot_path,
    )


def _write_adapter(
    directory: Path, model: Any, state: dict[str, Any] | None, training_run: dict[str, Any]
) -> None:
    """The adapter's files; ``state`` holds the LoRA weights when they were sharded."""
    extra = {"state_dict": state} if state is not None else {}
    model.save_pretrained(str(directory), safe_serialization=True, **extra)
    # PEFT's model card: the snapshot export writes its own
    (directory / "README.md").unlink(missing_ok=True)
    (directory / "training_run.json").write_text(json.dumps(training_run, indent=2, sort_keys=True))


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
