"""One training run, in four parts: set up, run, record, commit.

:class:`TrainingSession` is the training itself, shared by both ways
``dlm train`` runs: in one process (:mod:`dlm.engine.training.train`) and as each
rank of a multi-process run (:mod:`dlm.engine.distributed.worker`, started by
:mod:`dlm.engine.distributed.launch`). Everything before it (parsing, budgets, the plan,
the store lock, the images) is the caller's; what differs between one
process and many is :class:`~dlm.engine.distributed.ranks.Ranks`.

- :meth:`TrainingSession.set_up`: seed, the accelerator, the model with its
  LoRA adapter, the vision-feature cache, the optimizer and its schedule.
- :meth:`TrainingSession.run`: the loop, with its progress bar and its log
  (``logs/train-*.jsonl``) and loss plot; failures become :class:`TrainError`.
- :meth:`TrainingSession.record`: the run's :class:`TrainingRun` record.
- :meth:`TrainingSession.commit`: the adapter and its record as the store's
  next version (or, on rank 0 of a launched run, :meth:`hand_over` into the
  launcher's folder: the launcher commits).

The order of the set-up steps is part of the result: each one that draws
from a random generator does so at the same point as before, so the same
seed gives the same adapter.
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

from dlm.engine.distributed.ranks import Ranks
from dlm.engine.document.budget import Budget
from dlm.engine.document.prepare import PreparedDocument
from dlm.engine.training.checkpoint import (
    CHECKPOINT_MINUTES,
    Checkpoint,
    Checkpoints,
    resume_hint,
    rng_state,
    run_fingerprint,
    set_rng_state,
)
from dlm.engine.training.levers import Levers
from dlm.engine.training.run_record import (
    BaseIdentity,
    DataSummary,
    HeldOutRecord,
    RunResults,
    SpeedNotes,
    TrainingRun,
    hyperparameters,
    library_versions,
    utc_now,
    wall_clock_at,
)
from dlm.engine.training.trackers import RunTrackers
from dlm.engine.training.train_result import TrainInterrupted, TrainResult, nothing_committed
from dlm.errors import DlmError, TrainError
from dlm.family import BoundBase
from dlm.hardware.plan import TrainingPlan
from dlm.records import TrainingExample
from dlm.store.adapters import commit_adapter, current_version
from dlm.store.paths import dlm_home
from dlm.store.space import disk_full_cause, disk_full_error, disk_step

# Room for a manifest rewrite or a training_run.json, and for one log row.
MANIFEST_BYTES = 64 * 1024
LOG_ROW_BYTES = 256


@attrs.frozen
class BaseAssets:
    """A base's weights on disk and its family bound to it: loaded once per process."""

    directory: Path
    bound: BoundBase  # its image settings are saved with the adapter: prompts size alike

    @property
    def processor(self) -> Any:
        return self.bound.processor

    @property
    def image_settings(self) -> dict[str, Any]:
        return self.bound.settings

    @classmethod
    def load(cls, prepared: PreparedDocument) -> BaseAssets:
        family, base = prepared.family, prepared.base
        directory = family.materialize(base, dlm_home())
        processor = family.load_processor(base, directory)
        fresh = family.bind(base, processor)
        return cls(directory, family.bind(base, processor, fresh.image_settings_to_save()))


@attrs.frozen
class SessionInputs:
    """Everything a session trains from, checked and planned by its caller."""

    prepared: PreparedDocument
    examples: tuple[TrainingExample, ...]  # image refs point at the bytes this process reads
    budget: Budget  # token counts of examples then held_out, in that order; the sequence_len
    plan: TrainingPlan
    assets: BaseAssets
    levers: Levers
    force: bool  # recorded: the run went ahead despite the plan's overridable refusals
    started: float  # time.monotonic() when `dlm train` started (for startup_to_first_step_s)
    held_out: tuple[TrainingExample, ...] = ()  # scored each epoch, never trained on
    resume: Checkpoint | None = None  # `--resume`: the checked checkpoint to continue from


@attrs.define
class RunOutcome:
    """What :meth:`TrainingSession.run` did; filled in step by step."""

    total_steps: int
    log_path: Path
    loop_started: float = attrs.field(factory=time.monotonic)
    steps: int = 0
    seen: int = 0  # examples trained on, over every epoch
    seen_before: int = 0  # of those, before the checkpoint a resumed run began from
    final_loss: float = float("nan")
    first_step_at: float | None = None
    rows: list[dict[str, Any]] = attrs.field(factory=list)
    plot_path: Path | None = None
    held_out: list[dict[str, Any]] = attrs.field(factory=list)  # one score per epoch
    verdict: Any = None  # evaluation.Verdict, once the run ended
    checkpointed_at: float = attrs.field(factory=time.monotonic)  # or when the run began

    def restore(self, meta: dict[str, Any], state: dict[str, Any]) -> None:
        """Where a checkpoint left the run: its steps, its log rows, its held-out scores."""
        self.steps, self.seen = int(state["steps"]), int(state["seen"])
        self.seen_before = self.seen
        self.rows = list(meta["rows"])
        self.held_out = list(meta["held_out"])
        losses = [row["loss"] for row in self.rows if "loss" in row]
        self.final_loss = float(losses[-1]) if losses else float("nan")

    def log_held_out(self, epoch: int, score: Any) -> dict[str, Any]:
        """One epoch's held-out score; returns its ``train-*.jsonl`` row."""
        scored = score.to_dict()
        self.held_out.append({"step": self.steps, "epoch": epoch + 1, **scored})
        row = {"step": self.steps, "epoch": epoch + 1}
        row.update({f"held_out_{key}": value for key, value in scored.items()})
        self.rows.append(row)
        return row

    def log_step(self, epoch: int, loss: float, examples: int, lr: float) -> dict[str, Any]:
        """Count one optimizer step; returns its ``train-*.jsonl`` row."""
        self.steps += 1
        self.seen += examples
        if self.first_step_at is None:
            self.first_step_at = time.monotonic()
        elapsed = time.monotonic() - self.loop_started
        self.final_loss = loss
        row = {
            "step": self.steps,
            "epoch": epoch + 1,
            "loss": round(loss, 6),
            "lr": lr,
            "samples": self.seen,
            "samples_per_s": round((self.seen - self.seen_before) / elapsed, 3)
            if elapsed > 0
            else None,
            "elapsed_s": round(elapsed, 3),
        }
        self.rows.append(row)
        return row

    def startup_seconds(self, started: float) -> float:
        return (self.first_step_at - started) if self.first_step_at else 0.0


@attrs.define
class TrainingSession:
    """A set-up run: build one with :meth:`set_up`, then :meth:`run` it."""

    inputs: SessionInputs
    console: Console
    ranks: Ranks
    accelerator: Any
    model: Any
    trainable: list[Any]  # the LoRA parameters (clipped each step)
    optimizer: Any
    scheduler: Any
    total_steps: int
    adapter_bytes: int  # what the commit writes, for a full disk's message
    previous: str | None  # the version current before this run
    run_stamp: str  # names the run's log, plot and tracker folders
    trackers: RunTrackers  # training.report_to's (none off the main process)
    features: Any = None  # VisionFeatures, when vision features are reused
    no_reuse: str | None = None  # why they are not, when the lever is on
    lengths: list[int] | None = None  # token lengths, when batches group by length
    batching: Any = None  # BatchingStats

    # ------------------------------------------------------------- set up

    @classmethod
    def set_up(
        cls, inputs: SessionInputs, console: Console, ranks: Ranks | None = None
    ) -> TrainingSession:
        """Seed, create the accelerator, load the model with LoRA, and build the
        optimizer and schedule; a rank also joins the others here."""
        from transformers import get_scheduler

        from dlm.engine.distributed.ranks import inputs_fingerprint
        from dlm.engine.training.batching import BatchingStats
        from dlm.engine.training.levers import compile_decoder_layers, make_optimizer

        ranks = ranks if ranks is not None else Ranks.single()
        plan, levers = inputs.plan, inputs.levers
        settings = inputs.prepared.doc.frontmatter.training
        previous = current_version(inputs.prepared.paths)
        run_stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        trackers = RunTrackers.for_run(inputs.prepared, run_stamp, console, main=ranks.main)
        accelerator = _accelerator(inputs, ranks, trackers)
        model, adapter_bytes = _model_with_lora(inputs, console)
        model.train()
        ranks.reseed(settings.seed)
        model = ranks.shard_model(model)
        trainable = [p for p in model.parameters() if p.requires_grad]
        features, no_reuse = _vision_features(inputs, model, ranks)
        if no_reuse:
            console.print(f"  note: vision features computed every step: {no_reuse}")
        if levers.compile:
            compile_decoder_layers(model)
        # the budget counts the training examples first, then the held-out ones
        counts = inputs.budget.counts[: len(inputs.examples)]
        lengths = [c.total for c in counts] if levers.length_batching else None
        if lengths is not None and len(lengths) != len(inputs.examples):
            lengths = None
        batching = BatchingStats()
        optimizer = make_optimizer(trainable, settings.learning_rate, levers)
        micro_batches = math.ceil(len(inputs.examples) / ranks.global_micro_batch(plan.micro_batch))
        total_steps = math.ceil(micro_batches / plan.grad_accum) * settings.num_epochs
        scheduler = get_scheduler(
            settings.lr_scheduler,
            optimizer,
            num_warmup_steps=int(settings.warmup_ratio * total_steps),
            num_training_steps=total_steps,
        )
        model, optimizer, scheduler = ranks.prepare(accelerator, model, optimizer, scheduler)
        ranks.check_same_inputs(inputs_fingerprint(list(inputs.examples), plan, settings.seed))
        return cls(
            inputs=inputs,
            console=console,
            ranks=ranks,
            accelerator=accelerator,
            model=model,
            trainable=trainable,
            optimizer=optimizer,
            scheduler=scheduler,
            total_steps=total_steps,
            adapter_bytes=adapter_bytes,
            previous=previous,
            run_stamp=run_stamp,
            trackers=trackers,
            features=features,
            no_reuse=no_reuse,
            lengths=lengths,
            batching=batching,
        )

    # ------------------------------------------------------------- run

    def run(self) -> RunOutcome:
        """Train every epoch; Ctrl-C and failures leave the store's current version as is."""
        import torch

        from dlm.engine.training.lora_recompute import lora_inputs_recomputed
        from dlm.engine.training.progress import TrainProgress

        paths, ranks = self.inputs.prepared.paths, self.ranks
        settings = self.inputs.prepared.doc.frontmatter.training
        if ranks.main:
            paths.logs.mkdir(parents=True, exist_ok=True)
        outcome = RunOutcome(self.total_steps, paths.logs / f"train-{self.run_stamp}.jsonl")
        generator = torch.Generator().manual_seed(settings.seed)
        images = _ImageCache(self.inputs.assets.bound)
        first_epoch, done_in_epoch, generators = 0, 0, None
        if self.inputs.resume is not None:
            first_epoch, done_in_epoch = self._restore(self.inputs.resume, outcome, generator)
            generators = self.inputs.resume.rng(self.ranks.rank)
        try:
            log_file = outcome.log_path.open("w") if ranks.main else open(os.devnull, "w")  # noqa: SIM115
            recompute = (
                lora_inputs_recomputed(self.model)
                if self.inputs.levers.lora_recompute
                else nullcontext()
            )
            evaluator = self._evaluator(images)
            with (
                log_file as log,
                self.trackers.running(self.accelerator, self._hyperparameters()) as trackers,
                TrainProgress(self.console, self.total_steps, done=outcome.steps) as progress,
                recompute,
            ):
                for row in outcome.rows:  # a resumed run's log starts with the run so far
                    log.write(json.dumps(row) + "\n")
                    trackers.log(row, row["step"])
                if generators is not None:  # last: nothing set up above draws from them
                    set_rng_state(generators)
                for epoch in range(first_epoch, settings.num_epochs):
                    epoch_order = generator.get_state()  # a checkpoint draws the epoch again
                    for index, group in enumerate(self._optimizer_steps(generator)):
                        if epoch == first_epoch and index < done_in_epoch:
                            continue  # done before the checkpoint this run resumed from
                        loss = self._optimizer_step(group, images)
                        examples = sum(len(chunk) for chunk in group)
                        lr = self.scheduler.get_last_lr()[0]
                        row = outcome.log_step(epoch, loss, examples, lr)
                        log.write(json.dumps(row) + "\n")
                        log.flush()
                        trackers.log(row, row["step"])
                        progress.advance(loss, row["samples_per_s"])
                        if self._checkpoint_due(outcome):
                            self._checkpoint(outcome, epoch, index + 1, epoch_order)
                    if self.inputs.held_out:
                        score = evaluator.score(self.inputs.held_out)
                        row = outcome.log_held_out(epoch, score)
                        log.write(json.dumps(row) + "\n")
                        log.flush()
                        trackers.log(row, row["step"])
                        progress.held_out(score.loss, score.exact_match)
                outcome.verdict = self._verdict(outcome, evaluator)
        except KeyboardInterrupt:
            raise TrainInterrupted(
                f"interrupted at step {outcome.steps}/{self.total_steps}; nothing was committed, "
                f"{nothing_committed(self.previous)}",
                hint=self._resume_hint()
                or "no checkpoint was written yet: run `dlm train` again to start over",
            ) from None
        except DlmError as exc:
            self._with_resume(exc)
            raise
        except Exception as exc:
            raise self._with_resume(self._failure(exc, outcome)) from exc
        outcome.plot_path = self._plot(outcome)
        return outcome

    # ------------------------------------------------------------- checkpoints

    def _checkpoint_due(self, outcome: RunOutcome) -> bool:
        """Every ``checkpoint_every`` steps, or after CHECKPOINT_MINUTES; never at the
        last step (the commit follows), nor in an FSDP run (see _checkpoint)."""
        if outcome.steps >= self.total_steps or self.ranks.strategy == "fsdp":
            return False
        every = self.inputs.prepared.doc.frontmatter.training.checkpoint_every
        late = time.monotonic() - outcome.checkpointed_at >= CHECKPOINT_MINUTES * 60
        # every rank takes part in a checkpoint: they agree on the clock's say too
        return outcome.steps % every == 0 or self.ranks.any(late)

    def _fingerprint(self) -> dict[str, Any]:
        inputs = self.inputs
        settings = inputs.prepared.doc.frontmatter.training
        return run_fingerprint(
            inputs.examples, inputs.held_out, inputs.prepared.base, settings, inputs.plan
        )

    def _trainable_named(self) -> dict[str, Any]:
        unwrapped = self.accelerator.unwrap_model(self.model)
        return {n: p for n, p in unwrapped.named_parameters() if p.requires_grad}

    def _checkpoint(
        self, outcome: RunOutcome, epoch: int, done_in_epoch: int, epoch_order: Any
    ) -> None:
        """Save what the rest of the run depends on (see :mod:`.checkpoint`).

        DDP: the weights, optimizer and schedule are the same on every rank, so
        rank 0's are saved; each rank's random generators are gathered to it.
        FSDP runs write none: their weights and optimizer state are sharded.
        """
        generators = self.ranks.gather(rng_state())
        if not self.ranks.main:
            return
        paths = self.inputs.prepared.paths
        state = {
            "weights": {
                n: p.detach().to("cpu").clone() for n, p in self._trainable_named().items()
            },
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "data_order": epoch_order,
            "epoch": epoch,
            "done_in_epoch": done_in_epoch,
            "steps": outcome.steps,
            "seen": outcome.seen,
        }
        meta = {
            "fingerprint": self._fingerprint(),
            "steps": outcome.steps,
            "total_steps": self.total_steps,
            "epoch": epoch + 1,
            "rows": outcome.rows,
            "held_out": outcome.held_out,
            "written_at": utc_now(),
        }
        with disk_step("writing a checkpoint", paths.checkpoint, self.adapter_bytes * 3):
            Checkpoints(paths.checkpoint).write(outcome.steps, meta, state, generators)
        outcome.checkpointed_at = time.monotonic()

    def _restore(
        self, checkpoint: Checkpoint, outcome: RunOutcome, generator: Any
    ) -> tuple[int, int]:
        """Continue where ``checkpoint`` left off: weights, optimizer, schedule, random
        generators, data order and the log so far; returns (epoch, its steps done)."""
        import torch

        state = checkpoint.state()
        with torch.no_grad():
            for name, param in self._trainable_named().items():
                param.copy_(state["weights"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["data_order"])
        outcome.restore(checkpoint.meta, state)
        self.console.print(
            f"  resuming from step {outcome.steps}/{self.total_steps} (epoch "
            f"{int(state['epoch']) + 1}), checkpoint of {checkpoint.meta['written_at']}"
        )
        return int(state["epoch"]), int(state["done_in_epoch"])

    def _with_resume(self, error: DlmError) -> DlmError:
        """A failed run's error, ending with how to continue it (a full disk, a crash)."""
        resume = self._resume_hint()
        if resume and resume not in (error.hint or ""):
            error.hint = f"{error.hint}; then {resume}" if error.hint else resume
        return error

    def _resume_hint(self) -> str | None:
        doc = self.inputs.prepared.doc
        return resume_hint(self.inputs.prepared.paths.checkpoint, doc.path or doc.display_path)

    def _evaluator(self, images: _ImageCache) -> Any:
        """Scores examples on this run's model, every rank in step (see evaluation)."""
        from dlm.engine.training.evaluation import Evaluator

        return Evaluator(
            self.ranks.eval_model(self.accelerator, self.model),
            self.inputs.assets.bound,
            images,
            device=self.accelerator.device,
            micro_batch=self.inputs.plan.micro_batch,
            autocast=self.accelerator.autocast,
            whole_model=self.ranks.whole_model,
        )

    def _verdict(self, outcome: RunOutcome, evaluator: Any) -> Any:
        """Did the run learn: its losses, held-out scores, and a few training answers asked back."""
        from dlm.engine.training.evaluation import recall_probes, verdict

        settings = self.inputs.prepared.doc.frontmatter.training
        probes = recall_probes(self.inputs.examples, settings.seed)
        recalled = evaluator.recalled(probes)
        return verdict(
            [row["loss"] for row in outcome.rows if "loss" in row],
            recalled,
            len(probes),
            outcome.held_out,
            steps=outcome.steps,
            num_epochs=settings.num_epochs,
            learning_rate=settings.learning_rate,
        )

    def _optimizer_steps(self, generator: Any) -> list[list[list[int]]]:
        """One epoch's optimizer steps: each a group of ``grad_accum`` micro-batches
        of example indices, in the seeded order (grouped by length with that lever)."""
        from dlm.engine.training.batching import epoch_micro_batches

        plan = self.inputs.plan
        chunks = epoch_micro_batches(
            len(self.inputs.examples),
            self.ranks.global_micro_batch(plan.micro_batch),
            generator,
            self.lengths,
            self.batching,
        )
        return [
            chunks[start : start + plan.grad_accum]
            for start in range(0, len(chunks), plan.grad_accum)
        ]

    def _optimizer_step(self, group: Sequence[Sequence[int]], images: _ImageCache) -> float:
        """Accumulate the group's micro-batches, then step; returns the step's mean loss."""
        from dlm.engine.training.step import training_loss

        accelerator, model, ranks = self.accelerator, self.model, self.ranks
        examples = self.inputs.examples
        group_examples = sum(len(c) for c in group)
        step_loss = 0.0
        for i, chunk in enumerate(group):
            mine = ranks.shard(chunk)
            # an empty share still runs (weight 0): every rank joins every collective
            batch_examples = [examples[j] for j in (mine or chunk[:1])]
            batch = self.inputs.assets.bound.collate(
                batch_examples, [images.get(e) for e in batch_examples]
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
                        label_head=self.inputs.levers.label_head,
                        features=self.features,
                        image_keys=[r.sha256 for e in batch_examples for r in e.images],
                    )
                    * weight
                )
            accelerator.backward(loss)
            step_loss += float(loss.detach())
        step_loss = ranks.mean(step_loss)
        accelerator.clip_grad_norm_(self.trainable, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return step_loss

    def _failure(self, exc: Exception, outcome: RunOutcome) -> DlmError:
        """A failed step as the user reads it: a full disk, or the error and the step."""
        kept = nothing_committed(self.previous)
        full = disk_full_cause(exc)
        if full is not None:
            return disk_full_error(
                full,
                step=f"training (step {outcome.steps} of {self.total_steps}; {kept})",
                where=outcome.log_path,
                # the rest of the log, then the adapter
                needed=(self.total_steps - outcome.steps) * LOG_ROW_BYTES + self.adapter_bytes,
            )
        return TrainError(
            f"training failed at step {outcome.steps}: {type(exc).__name__}: {exc}; {kept}",
            hint="re-run with --verbose for the traceback",
        )

    def _plot(self, outcome: RunOutcome) -> Path | None:
        out = outcome.log_path.with_suffix(".png")
        with disk_step("drawing the loss plot", out, self.adapter_bytes):
            if not self.ranks.main:
                return None
            from dlm.engine.training.plot import plot_run

            doc = self.inputs.prepared.doc
            title = f"{doc.path.name if doc.path else doc.display_path} · {self.inputs.prepared.base.key}"
            return plot_run(outcome.rows, out, title)

    # ------------------------------------------------------------- record

    def _hyperparameters(self) -> dict[str, Any]:
        """The document's training settings as trained (the record's, and the trackers')."""
        prepared = self.inputs.prepared
        settings = prepared.doc.frontmatter.training
        targets: Any = settings.target_modules
        if targets is None:
            targets = prepared.family.lora_target_modules
        return hyperparameters(settings, targets, self.inputs.budget.sequence_len)

    def record(self, outcome: RunOutcome) -> TrainingRun:
        """The run's ``training_run.json``."""
        inputs = self.inputs
        prepared, plan, levers = inputs.prepared, inputs.plan, inputs.levers
        base, settings = prepared.base, prepared.doc.frontmatter.training
        return TrainingRun(
            dlm_id=prepared.doc.frontmatter.dlm_id,
            document=str(prepared.doc.path),
            base=BaseIdentity.of(base),
            image_geometry=attrs.asdict(base.image),
            image_settings=inputs.assets.image_settings,
            hyperparameters=self._hyperparameters(),
            plan=plan.to_dict(),
            force=inputs.force,
            world_size=self.accelerator.num_processes,
            strategy=plan.strategy,
            speed=SpeedNotes(
                levers=levers.on(),
                vision_features=self.features.note()
                if self.features is not None
                else self.no_reuse,
                batching=self.batching.note() if self.lengths is not None else None,
            ),
            seed=settings.seed,
            data=DataSummary.of(inputs.examples),
            held_out=HeldOutRecord(
                setting=settings.held_out,
                data=DataSummary.of(inputs.held_out),
                scores=outcome.held_out,
            ),
            verdict=outcome.verdict.to_dict() if outcome.verdict is not None else None,
            results=RunResults(
                steps=outcome.steps,
                final_loss=outcome.final_loss,
                seconds=round(time.monotonic() - outcome.loop_started, 3),
                startup_to_first_step_s=round(outcome.startup_seconds(inputs.started), 3),
                log=str(outcome.log_path),
            ),
            versions=library_versions(),
            started_at=wall_clock_at(inputs.started),
            finished_at=utc_now(),
        )

    # ------------------------------------------------------------- commit

    def commit(self, outcome: RunOutcome, record: TrainingRun) -> TrainResult:
        """Write the adapter and its record as the store's next version (two-phase)."""
        paths = self.inputs.prepared.paths
        unwrapped = self.accelerator.unwrap_model(self.model)
        state = self.ranks.adapter_state(self.model)
        with (
            disk_step("committing the adapter", paths.versions, self.adapter_bytes),
            commit_adapter(
                paths, meta={"base": self.inputs.prepared.base.key, "steps": outcome.steps}
            ) as staging,
        ):
            write_adapter(staging, unwrapped, state, record)
        Checkpoints(paths.checkpoint).clear()  # the run is committed: nothing to resume
        committed = current_version(paths)
        assert committed is not None
        return self._result(outcome, committed, paths.version_dir(committed))

    def hand_over(self, outcome: RunOutcome, record: TrainingRun, output_dir: Path) -> TrainResult:
        """A rank of a launched run: rank 0 writes the adapter into ``output_dir``,
        which the launcher commits once every rank has exited cleanly."""
        unwrapped = self.accelerator.unwrap_model(self.model)
        state = self.ranks.adapter_state(self.model)  # FSDP: gathered on every rank (a collective)
        if self.ranks.main:
            output_dir.mkdir(parents=True, exist_ok=True)
            write_adapter(output_dir, unwrapped, state, record)
        return self._result(outcome, "", output_dir)

    def _result(self, outcome: RunOutcome, version: str, adapter_dir: Path) -> TrainResult:
        return TrainResult(
            version=version,
            steps=outcome.steps,
            final_loss=outcome.final_loss,
            seconds=time.monotonic() - outcome.loop_started,
            startup_seconds=outcome.startup_seconds(self.inputs.started),
            adapter_dir=adapter_dir,
            log_path=outcome.log_path,
            plot_path=outcome.plot_path,
            trackers=self.trackers.where(),
        )


def train(
    inputs: SessionInputs,
    console: Console,
    *,
    ranks: Ranks | None = None,
    output_dir: Path | None = None,
) -> TrainResult:
    """Set up, run, record and commit; a rank of a launched run hands its
    adapter over in ``output_dir`` instead of committing it."""
    session = TrainingSession.set_up(inputs, console, ranks)
    outcome = session.run()
    record = session.record(outcome)
    if output_dir is not None:
        return session.hand_over(outcome, record, output_dir)
    return session.commit(outcome, record)


# ----------------------------------------------------------------- set-up steps


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _precision_dtype(precision: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def _accelerator(inputs: SessionInputs, ranks: Ranks, trackers: RunTrackers) -> Any:
    """Threads, seed and determinism for this run, then its accelerator (joined to the
    ranks, and reporting to the run's trackers)."""
    import torch
    from accelerate import Accelerator

    plan = inputs.plan
    if inputs.prepared.base.tiny and plan.host.backend == "cpu":
        # Toy-sized matrices: threading overhead exceeds the work, and on a busy
        # host OpenMP spin-waiting made steps 20x slower (measured: 1.3 s vs 0.05 s).
        torch.set_num_threads(1)
    _seed_everything(inputs.prepared.doc.frontmatter.training.seed)
    if plan.precision == "fp32":
        torch.use_deterministic_algorithms(True, warn_only=True)
    mixed = {"bf16": "bf16", "fp16": "fp16"}.get(plan.precision, "no")
    accelerator = Accelerator(
        mixed_precision=mixed,
        cpu=plan.host.backend == "cpu",
        log_with=trackers.log_with(),
        **ranks.accelerator_kwargs(),
    )
    ranks.bind(accelerator)
    return accelerator


def _model_with_lora(inputs: SessionInputs, console: Console) -> tuple[Any, int]:
    """The base model with a fresh LoRA adapter, and the bytes its commit will write
    (counted before sharding splits the parameters)."""
    from dlm.engine.lora import attach_lora

    prepared, plan = inputs.prepared, inputs.plan
    family, base = prepared.family, prepared.base
    settings = prepared.doc.frontmatter.training
    with console.status(f"loading {base.key}…"):
        model = family.load_model(
            base, inputs.assets.directory, _precision_dtype(plan.precision), "cpu"
        )
        if plan.checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
            model.enable_input_require_grads()
        _seed_everything(settings.seed)  # LoRA init draws from the RNG
        model = attach_lora(model, base, family, settings)
    adapter_bytes = MANIFEST_BYTES + sum(
        p.numel() * p.element_size() for p in model.parameters() if p.requires_grad
    )
    return model, adapter_bytes


def _vision_features(inputs: SessionInputs, model: Any, ranks: Ranks) -> tuple[Any, str | None]:
    """The vision-feature cache when that lever is on: ``(features, None)``, or
    ``(None, why not)`` when this model's features cannot be reused."""
    from dlm.engine.training.feature_cache import VisionFeatures

    if not inputs.levers.feature_cache:
        return None, None
    prepared, plan = inputs.prepared, inputs.plan
    return VisionFeatures.for_run(
        model,
        prepared.family,
        prepared.base,
        inputs.assets.image_settings,
        precision=plan.precision,
        device_type=plan.host.backend,
        paths=prepared.paths if ranks.main else None,
    )


# ----------------------------------------------------------------- run helpers


class _ImageCache:
    """Decoded, family-prepared images by blob sha: each image is decoded once per run."""

    def __init__(self, bound: BoundBase):
        self._bound = bound
        self._images: dict[str, Any] = {}

    def get(self, example: TrainingExample) -> list[Any]:
        out = []
        for ref in example.images:
            if ref.sha256 not in self._images:
                # the same opening and preparation `dlm prompt` gives an image
                self._images[ref.sha256] = self._bound.open_image(ref.blob_path)
            out.append(self._images[ref.sha256])
        return out


def _move(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}


def write_adapter(
    directory: Path, model: Any, state: dict[str, Any] | None, record: TrainingRun
) -> None:
    """The adapter's files; ``state`` holds the LoRA weights when they were sharded."""
    extra = {"state_dict": state} if state is not None else {}
    model.save_pretrained(str(directory), safe_serialization=True, **extra)
    # PEFT's model card: the snapshot export writes its own
    (directory / "README.md").unlink(missing_ok=True)
    (directory / "training_run.json").write_text(record.to_json())


__all__ = [
    "LOG_ROW_BYTES",
    "MANIFEST_BYTES",
    "BaseAssets",
    "RunOutcome",
    "SessionInputs",
    "TrainingSession",
    "train",
    "write_adapter",
]
