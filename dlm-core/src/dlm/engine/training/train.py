"""``dlm train``: a document → a committed LoRA adapter version.

Order matters for the user: everything that can fail on bad input
(document, images, base, licence, token budget, plan) fails before the
store lock is taken, before anything is written and before the model
loads. Then, under the lock for the whole run: blobs, model, training,
and the two-phase commit. An interrupted or crashed run never touches
``current.txt``: the last committed version stays current.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console

from dlm.engine.distributed.topology import Topology
from dlm.engine.document.budget import Budget, check_budget
from dlm.engine.document.examples import with_image_refs
from dlm.engine.document.ingest import store_images
from dlm.engine.document.prepare import PreparedDocument, prepare_document
from dlm.engine.training.checkpoint import (
    Checkpoint,
    Checkpoints,
    checkpoint_to_resume,
    run_fingerprint,
)
from dlm.engine.training.evaluation import held_out_of
from dlm.engine.training.levers import Levers, choose_levers
from dlm.engine.training.run_record import utc_now
from dlm.engine.training.session import MANIFEST_BYTES, BaseAssets, SessionInputs, train
from dlm.engine.training.trackers import check_installed, with_report_to
from dlm.engine.training.train_report import print_outcomes, print_plan
from dlm.engine.training.train_result import TrainInterrupted, TrainResult
from dlm.errors import TrainError
from dlm.hardware.host import HostFacts
from dlm.hardware.plan import TrainingPlan
from dlm.records import ImageRef, TrainingExample
from dlm.store.blobs import BlobStore
from dlm.store.lock import StoreLock
from dlm.store.manifest import load_manifest, save_manifest
from dlm.store.space import disk_step


@attrs.frozen
class TrainOptions:
    force: bool = False
    allow_outside: bool = False
    accept_license: bool = False
    assume: str | None = None  # plan for an assumed host (see dlm doctor --assume)
    processes: int | None = None  # data-parallel processes on this host (--processes)
    accelerate_config: str | None = None  # a multi-machine run (--accelerate-config)
    report_to: tuple[str, ...] | None = None  # --report-to (None: the document's report_to)
    resume: bool = False  # --resume: continue from the interrupted run's checkpoint


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
    return {"license": base.license, "accepted_at": utc_now(), "by": "dlm train --i-accept-license"}


def run_training(doc_path: str | Path, options: TrainOptions, console: Console) -> TrainResult:
    started = time.monotonic()
    prepared = with_report_to(
        prepare_document(doc_path, allow_outside=options.allow_outside), options.report_to
    )
    check_installed(prepared.doc.frontmatter.training.report_to)
    acceptance = check_license(prepared, options.accept_license)
    examples = _examples_to_train(prepared, console)
    split = held_out_of(prepared, examples)
    if split.note:
        console.print(f"  {split.note}")

    from dlm.engine.distributed.topology import resolve_topology
    from dlm.engine.quiet import quiet_transformers
    from dlm.hardware.host import assume_host, probe_host

    quiet_transformers()
    family, base = prepared.family, prepared.base
    host = assume_host(options.assume) if options.assume else probe_host()
    topology = resolve_topology(options.processes, options.accelerate_config)
    levers = choose_levers(host.backend)
    planner = _Planner(prepared, host, topology, levers, options.force)
    if not base.tiny:
        # Refuse what this host cannot train before downloading gigabytes of
        # weights: plan once on the family's token estimates (no processor).
        planner.plan(check_budget(prepared.doc, family.bind(base), split.train + split.held_out))
    with console.status(f"preparing base {base.key}…"):
        assets = BaseAssets.load(prepared)
    budget = check_budget(prepared.doc, assets.bound, split.train + split.held_out)
    plan = planner.plan(budget)
    print_plan(plan, budget, console)
    console.print(f"  speed: {levers.describe()}")

    if options.resume and topology.machines > 1:
        raise TrainError(
            "--resume continues runs on one machine; a run across machines starts over",
            hint=f"run `dlm train {doc_path} --accelerate-config FILE` without --resume",
        )
    if not topology.main_machine:
        # Another machine's share of the run: machine 0 holds the lock and commits.
        return _launch(doc_path, options, prepared, plan, topology, None, started, console)
    paths = prepared.paths
    with StoreLock(paths.lock_file, command="dlm train"):
        resume = _checkpoint_to_resume(doc_path, options, prepared, split, plan, topology, console)
        refs = _store_images(doc_path, prepared, acceptance)
        if topology.distributed:
            return _launch(
                doc_path, options, prepared, plan, topology, paths.blobs, started, console, resume
            )
        inputs = SessionInputs(
            prepared=prepared,
            examples=with_image_refs(split.train, prepared.images, refs),
            held_out=with_image_refs(split.held_out, prepared.images, refs),
            budget=budget,
            plan=plan,
            assets=assets,
            levers=levers,
            force=options.force,
            started=started,
            resume=resume,
        )
        return train(inputs, console)


def _checkpoint_to_resume(
    doc_path: str | Path,
    options: TrainOptions,
    prepared: PreparedDocument,
    split: Any,
    plan: TrainingPlan,
    topology: Topology,
    console: Console,
) -> Checkpoint | None:
    """``--resume``: the interrupted run's checkpoint, checked against this run.
    Without it, a checkpoint left by an interrupted run is discarded: this run
    starts over."""
    checkpoints = Checkpoints(prepared.paths.checkpoint)
    if not options.resume:
        dropped = checkpoints.clear()
        if dropped is not None:
            console.print(
                f"  note: starting over; the interrupted run's checkpoint (step {dropped}) "
                "was discarded (`dlm train --resume` continues one)"
            )
        return None
    if plan.strategy == "fsdp":
        raise TrainError(
            "--resume cannot continue an FSDP-sharded run: its weights and optimizer state "
            "are sharded across the processes, and dlm does not checkpoint them yet",
            hint=f"run `dlm train {doc_path}` without --resume to start over",
        )
    settings = prepared.doc.frontmatter.training
    fingerprint = run_fingerprint(split.train, split.held_out, prepared.base, settings, plan)
    return checkpoint_to_resume(prepared.paths.checkpoint, doc_path, fingerprint)


def _examples_to_train(prepared: PreparedDocument, console: Console) -> tuple[TrainingExample, ...]:
    """Report what each section became; refuse a document that trains nothing."""
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
    return examples


@attrs.frozen
class _Planner:
    """Plans this run on this host: the same arguments for the estimate made
    before a download and for the plan made from the processor's counts."""

    prepared: PreparedDocument
    host: HostFacts
    topology: Topology
    levers: Levers
    force: bool

    def plan(self, budget: Budget) -> TrainingPlan:
        from dlm.hardware.plan import plan_training

        labels = budget.counts if self.levers.label_head else None
        return plan_training(
            self.prepared.base,
            self.host,
            example_tokens=[c.total for c in budget.counts],
            example_images=[len(e.images) for e in self.prepared.example_set.examples],
            settings=self.prepared.doc.frontmatter.training,
            force=self.force,
            notes=[budget.note] if budget.note else [],
            # the label-position head computes logits at completion tokens only
            example_labels=[c.completion for c in labels] if labels is not None else None,
            lora_recompute=self.levers.lora_recompute,
            processes=self.topology.processes,
            local_processes=self.topology.local_processes,
            sharding=self.topology.sharding,
        )


def _store_images(
    doc_path: str | Path, prepared: PreparedDocument, acceptance: dict[str, Any] | None
) -> dict[int, ImageRef]:
    """Copy the document's images into the blob store and record them (and a
    licence acceptance) in the manifest; returns the stored images' refs."""
    paths, base = prepared.paths, prepared.base
    image_bytes = sum(image.size for image in prepared.images) + MANIFEST_BYTES
    with disk_step("copying the document's images into the store", paths.blobs, image_bytes):
        manifest = load_manifest(paths)
        manifest.document = str(Path(doc_path).resolve())
        manifest.base_model = base.key
        if not paths.manifest.is_file():
            # A new store gets its manifest before its first blob: a run killed
            # while copying images then leaves unrecorded blobs (a warning that
            # the next train clears), never a store with content and no manifest.
            save_manifest(paths, manifest)
        refs = store_images(list(prepared.images), BlobStore(paths.blobs))
        for image in prepared.images:
            manifest.add_blob(image.sha256, image.size, image.source)
        if acceptance is not None:
            manifest.license_acceptances.setdefault(base.key, acceptance)
        save_manifest(paths, manifest)
    return refs


def _launch(
    doc_path: str | Path,
    options: TrainOptions,
    prepared: PreparedDocument,
    plan: TrainingPlan,
    topology: Topology,
    blob_root: Path | None,
    started: float,
    console: Console,
    resume: Checkpoint | None = None,
) -> TrainResult:
    from dlm.engine.distributed.launch import train_distributed

    return train_distributed(
        document=Path(doc_path).resolve(),
        allow_outside=options.allow_outside,
        force=options.force,
        report_to=options.report_to,
        plan=plan,
        topology=topology,
        prepared=prepared,
        blob_root=blob_root,
        started=started,
        console=console,
        resume=resume.folder if resume is not None else None,
    )


__all__ = ["TrainInterrupted", "TrainOptions", "TrainResult", "check_license", "run_training"]
