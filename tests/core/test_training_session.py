"""The training session's parts that need no model: the record a finished run
writes (training_run.json), the step tally, the result rank 0 hands the
launcher, and examples re-pointed at the stored images (built once)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import attrs
import pytest
from rich.console import Console

from dlm.engine.document.examples import with_image_refs
from dlm.engine.document.ingest import CheckedImage
from dlm.engine.training.run_record import TrainingRun, wall_clock_at
from dlm.engine.training.session import RunOutcome, TrainingSession
from dlm.engine.training.trackers import RunTrackers
from dlm.engine.training.train_result import TrainResult, nothing_committed
from dlm.format.document import Source, TrainingSettings
from dlm.plugins import get_registry
from dlm.records import ExampleKind, ImageRef, TrainingExample

#: The keys of training_run.json as every committed adapter has them.
TOP_LEVEL_KEYS = {
    "base",
    "data",
    "dlm_id",
    "document",
    "force",
    "held_out",
    "hyperparameters",
    "image_geometry",
    "image_settings",
    "plan",
    "results",
    "seed",
    "speed",
    "started_at",
    "finished_at",
    "strategy",
    "verdict",
    "versions",
    "world_size",
}


def _ref(sha: str, source: str, blob: str = "/doc/figures") -> ImageRef:
    return ImageRef(sha256=sha, blob_path=Path(blob) / source, source=source)


def _example(section: str, *refs: ImageRef) -> TrainingExample:
    return TrainingExample(
        section_id=section,
        origin="doc.dlm:1",
        kind=ExampleKind.QA if refs else ExampleKind.TEXT_QA,
        prompt="q",
        completion="a",
        images=refs,
    )


def _session(
    settings: TrainingSettings,
    examples: tuple[TrainingExample, ...],
    *,
    features: object = None,
    no_reuse: str | None = None,
    lengths: list[int] | None = None,
    started: float = 0.0,
) -> TrainingSession:
    """A session as set_up leaves it, with stand-ins where a model would be."""
    base = get_registry().base("tiny-qwen2-vl")
    prepared = SimpleNamespace(
        base=base,
        family=SimpleNamespace(lora_target_modules=["q_proj", "v_proj"]),
        doc=SimpleNamespace(
            path=Path("/docs/notes.dlm"),
            frontmatter=SimpleNamespace(dlm_id="01TESTID", training=settings),
        ),
    )
    inputs = SimpleNamespace(
        prepared=prepared,
        examples=examples,
        budget=SimpleNamespace(sequence_len=321),
        plan=SimpleNamespace(strategy="single", to_dict=lambda: {"micro_batch": 2}),
        assets=SimpleNamespace(image_settings={"fit": "pad"}),
        levers=SimpleNamespace(on=lambda: ["label_head", "feature_cache"]),
        force=True,
        started=started,
        held_out=(),
    )
    return TrainingSession(
        inputs=inputs,  # type: ignore[arg-type]
        console=None,  # type: ignore[arg-type]
        ranks=None,  # type: ignore[arg-type]
        accelerator=SimpleNamespace(num_processes=1),
        model=None,
        trainable=[],
        optimizer=None,
        scheduler=None,
        total_steps=4,
        adapter_bytes=0,
        previous=None,
        run_stamp="20260101T000000Z",
        trackers=RunTrackers((), "notes", "20260101T000000Z", Path("/store/logs"), Console()),
        features=features,
        no_reuse=no_reuse,
        lengths=lengths,
        batching=SimpleNamespace(note=lambda: "length-grouped batches"),
    )


def _finished(steps: int = 4, loss: float = 0.25) -> RunOutcome:
    outcome = RunOutcome(total_steps=steps, log_path=Path("/store/logs/train-x.jsonl"))
    for _ in range(steps):
        outcome.log_step(0, loss, examples=2, lr=1e-4)
    return outcome


def test_the_record_has_every_key_of_training_run_json():
    a, b = _ref("b" * 64, "b.png"), _ref("a" * 64, "a.png")
    examples = (_example("s2", a), _example("s1", b), _example("s1", a))
    settings = TrainingSettings(seed=7, sources=(Source(path="figures"),))
    session = _session(settings, examples, no_reuse="the vision tower trains", started=5.0)
    record = session.record(_finished())
    data = json.loads(record.to_json())

    assert set(data) == TOP_LEVEL_KEYS
    assert data["dlm_id"] == "01TESTID"
    assert data["document"] == "/docs/notes.dlm"
    assert data["base"] == {
        "key": "tiny-qwen2-vl",
        "hub_id": session.inputs.prepared.base.hub_id,
        "revision": session.inputs.prepared.base.revision,
        "architecture": session.inputs.prepared.base.architecture,
        "family": session.inputs.prepared.base.family,
    }
    assert data["image_geometry"] == json.loads(
        json.dumps(attrs.asdict(session.inputs.prepared.base.image))
    )
    assert data["image_settings"] == {"fit": "pad"}
    assert data["plan"] == {"micro_batch": 2}
    assert (data["force"], data["world_size"], data["strategy"], data["seed"]) == (
        True,
        1,
        "single",
        7,
    )
    # the images are in `data`; the sources that named them are not hyperparameters
    assert "sources" not in data["hyperparameters"]
    assert data["hyperparameters"]["sequence_len"] == 321
    assert data["hyperparameters"]["seed"] == 7
    assert data["data"] == {
        "examples": 3,
        "sections": ["s1", "s2"],  # sorted, each once
        "images": ["a" * 64, "b" * 64],
    }
    # nothing held out here; the verdict is the run's (none: _finished ran no loop)
    assert data["held_out"] == {
        "setting": "auto",
        "data": {"examples": 0, "sections": [], "images": []},
        "scores": [],
    }
    assert data["verdict"] is None
    assert data["results"]["steps"] == 4
    assert data["results"]["final_loss"] == 0.25
    assert data["results"]["log"] == "/store/logs/train-x.jsonl"
    assert data["versions"]["dlm-core"]


def test_target_modules_are_the_familys_unless_the_document_names_them():
    examples = (_example("s"),)
    by_family = _session(TrainingSettings(), examples).record(_finished())
    assert by_family.hyperparameters["target_modules"] == ["q_proj", "v_proj"]
    named = TrainingSettings(target_modules=("q_proj", "k_proj"))
    by_document = _session(named, examples).record(_finished())
    assert by_document.hyperparameters["target_modules"] == ["q_proj", "k_proj"]  # JSON list
    everything = _session(TrainingSettings(target_modules="all-linear"), examples)
    assert everything.record(_finished()).hyperparameters["target_modules"] == "all-linear"


def test_speed_notes_say_why_features_were_not_reused_and_only_report_levers_that_ran():
    examples = (_example("s"),)
    off = _session(TrainingSettings(), examples, no_reuse="the vision tower trains")
    speed = off.record(_finished()).speed
    assert speed.levers == ["label_head", "feature_cache"]
    assert speed.vision_features == "the vision tower trains"
    assert speed.batching is None  # no lengths: batches were not grouped
    features = SimpleNamespace(note=lambda: "vision features: 4 computed, 12 reused")
    on = _session(TrainingSettings(), examples, features=features, lengths=[3])
    speed = on.record(_finished()).speed
    assert speed.vision_features == "vision features: 4 computed, 12 reused"
    assert speed.batching == "length-grouped batches"


def test_the_record_times_the_run_from_dlm_train_starting():
    started = time.monotonic() - 60
    session = _session(TrainingSettings(), (_example("s"),), started=started)
    outcome = _finished()
    record = session.record(outcome)
    assert record.started_at == wall_clock_at(started)
    assert record.started_at < record.finished_at
    assert record.results.startup_to_first_step_s == pytest.approx(60, abs=5)
    assert record.results.seconds >= 0


def test_the_record_writes_sorted_indented_json():
    record = _session(TrainingSettings(), (_example("s"),)).record(_finished())
    text = record.to_json()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True)
    assert isinstance(record, TrainingRun)


def test_each_step_is_counted_and_logged():
    outcome = RunOutcome(total_steps=3, log_path=Path("log.jsonl"))
    assert outcome.first_step_at is None
    assert outcome.startup_seconds(0.0) == 0.0  # no step: no startup time
    first = outcome.log_step(0, 1.23456789, examples=4, lr=2e-4)
    second = outcome.log_step(1, 0.5, examples=3, lr=1e-4)
    assert (first["step"], first["epoch"], first["samples"], first["loss"]) == (1, 1, 4, 1.234568)
    assert (second["step"], second["epoch"], second["samples"], second["lr"]) == (2, 2, 7, 1e-4)
    assert set(first) == {"step", "epoch", "loss", "lr", "samples", "samples_per_s", "elapsed_s"}
    assert outcome.steps == 2 and outcome.final_loss == 0.5
    assert outcome.rows == [first, second]
    assert outcome.first_step_at is not None


def test_rank_zeros_summary_becomes_the_committed_result():
    trained = TrainResult(
        version="",
        steps=9,
        final_loss=0.125,
        seconds=3.5,
        startup_seconds=1.5,
        adapter_dir=Path("/run/adapter"),
        log_path=Path("/store/logs/train-x.jsonl"),
        plot_path=Path("/store/logs/train-x.png"),
        trackers={"tensorboard": "/store/logs/tensorboard/x", "mlflow": None},
    )
    summary = json.loads(json.dumps(trained.summary()))  # through result.json
    committed = TrainResult.committed(summary, "v0003", Path("/store/adapter/versions/v0003"))
    assert committed == attrs.evolve(
        trained, version="v0003", adapter_dir=Path("/store/adapter/versions/v0003")
    )
    no_plot = TrainResult.committed({**summary, "plot_path": None}, "v0003", Path("/a"))
    assert no_plot.plot_path is None
    elsewhere = TrainResult.elsewhere(seconds=2.0)
    assert elsewhere.version == "" and elsewhere.steps == 0 and elsewhere.seconds == 2.0


def test_a_failed_run_says_what_stays_current():
    assert nothing_committed("v0002") == "v0002 remains current"
    assert nothing_committed(None) == "no adapter was committed"


def _checked(index: int, sha: str, source: str) -> CheckedImage:
    return CheckedImage(
        section_index=index,
        source=source,
        path=Path("/doc") / source,
        sha256=sha,
        size=10,
        width=8,
        height=8,
    )


def test_examples_are_re_pointed_at_the_stored_images_not_rebuilt():
    sha_a, sha_b = "a" * 64, "b" * 64
    # the same picture twice under two names, and another one; a text-only example
    images = [
        _checked(0, sha_a, "a.png"),
        _checked(2, sha_a, "copy.png"),
        _checked(4, sha_b, "b.png"),
    ]
    examples = (
        _example("s0", _ref(sha_a, "a.png", "/doc")),
        _example("s2", _ref(sha_a, "copy.png", "/doc")),
        _example("s4", _ref(sha_b, "b.png", "/doc")),
        _example("t"),
    )
    stored = {
        image.section_index: ImageRef(
            image.sha256, Path("/store/blobs") / image.sha256, image.source
        )
        for image in images
    }
    moved = with_image_refs(examples, images, stored)
    assert [e.images for e in moved] == [
        (stored[0],),
        (stored[2],),  # keeps its own source, though the bytes are the same blob
        (stored[4],),
        (),
    ]
    # everything but where the bytes are read from stays as built
    assert [attrs.evolve(e, images=()) for e in moved] == [
        attrs.evolve(e, images=()) for e in examples
    ]
