"""The parsed form of a ``.dlm`` document; its frontmatter records declare the schema.

:mod:`dlm.format.parser` builds these records, :mod:`dlm.format.serializer`
writes them back. Source positions (``line``) are kept for error messages
but do not take part in equality, so ``parse(serialize(doc)) == doc``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import attrs

from dlm.format import checks
from dlm.format.checks import setting

CURRENT_VERSION = 10

DEFAULT_IMAGE_INCLUDE = ("**/*.png", "**/*.jpg", "**/*.jpeg", "**/*.webp", "**/*.gif", "**/*.bmp")

ADAPTERS = ("lora",)
LR_SCHEDULERS = ("cosine", "linear", "constant")
PRECISIONS = ("bf16", "fp16", "fp32")
#: The experiment trackers ``training.report_to`` can name: accelerate's tracker
#: names (dlm.engine.training.trackers says what each needs installed).
TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")
_MAX_SEED = 2**32 - 1

# ----------------------------------------------------------------- frontmatter
#
# Each frontmatter key is declared once, here: its default is the field's, its
# check and its line in docs/format.md are the field's `setting` metadata
# (dlm.format.checks). The parser validates with them, the serializer leaves
# defaults out by them, and docs/format.md's key tables are generated from them
# (dlm.format.schema.settings_table; tests/core/test_format_docs.py).


@attrs.frozen
class Source:
    """One ``training.sources`` entry: a folder of images to ingest."""

    path: str = attrs.field(
        metadata=setting(
            checks.text(),
            "A folder, relative to the document (same safety rules as image paths).",
        )
    )
    include: tuple[str, ...] = attrs.field(
        default=DEFAULT_IMAGE_INCLUDE,
        metadata=setting(
            checks.glob_patterns,
            "Files to take, matched against their path relative to the folder.",
            flow="quoted",
        ),
    )
    exclude: tuple[str, ...] = attrs.field(
        default=(),
        metadata=setting(
            checks.glob_patterns, "Files to leave out, even when included.", flow="quoted"
        ),
    )
    line: int = attrs.field(default=0, eq=False, repr=False)


@attrs.frozen
class TrainingSettings:
    """``training:`` in the frontmatter. ``None`` means "the planner decides"."""

    adapter: str = attrs.field(
        default="lora", metadata=setting(checks.choice(ADAPTERS), "The adapter kind.")
    )
    lora_r: int = attrs.field(default=16, metadata=setting(checks.positive_int, "LoRA rank."))
    lora_alpha: int = attrs.field(
        default=32, metadata=setting(checks.positive_int, "LoRA scaling (`alpha / r`).")
    )
    lora_dropout: float = attrs.field(
        default=0.05,
        metadata=setting(
            checks.number(0.0, 1.0, low_open=False, high_open=True), "Dropout on the LoRA path."
        ),
    )
    target_modules: str | tuple[str, ...] | None = attrs.field(
        default=None,
        metadata=setting(
            checks.target_modules,
            "Which modules get LoRA. A string is a Python regular expression matched against "
            "full module names (e.g. `.*language_model.*\\.(q_proj\\|v_proj)`); a list names "
            "module suffixes (`[q_proj, v_proj]`, which on several families also hits the "
            "vision tower).",
            doc_default="the family's choice",
            flow=True,
        ),
    )
    sequence_len: int | None = attrs.field(
        default=None,
        metadata=setting(
            checks.optional(checks.positive_int),
            "Token budget per example. Left out, dlm sizes it to the longest example (never "
            "cutting image tokens), up to the base's context length. A number is a hard "
            "budget: an example that does not fit is an error.",
            doc_default="fit the longest example",
        ),
    )
    micro_batch_size: int | None = attrs.field(
        default=None,
        metadata=setting(
            checks.optional(checks.positive_int),
            "Examples per step on the device. Left out, the hardware planner chooses.",
            doc_default="planner",
        ),
    )
    grad_accum: int | None = attrs.field(
        default=None,
        metadata=setting(
            checks.optional(checks.positive_int),
            "Gradient accumulation steps. Left out, the planner chooses.",
            doc_default="planner",
        ),
    )
    learning_rate: float = attrs.field(
        default=2e-4,
        metadata=setting(
            checks.number(0.0, None, low_open=True, high_open=False), "Peak learning rate."
        ),
    )
    num_epochs: int = attrs.field(
        default=3, metadata=setting(checks.positive_int, "Passes over the training examples.")
    )
    lr_scheduler: str = attrs.field(
        default="cosine",
        metadata=setting(checks.choice(LR_SCHEDULERS), "Learning-rate schedule after warm-up."),
    )
    warmup_ratio: float = attrs.field(
        default=0.1,
        metadata=setting(
            checks.number(0.0, 1.0, low_open=False, high_open=True),
            "Fraction of steps spent warming up.",
        ),
    )
    precision: str | None = attrs.field(
        default=None,
        metadata=setting(
            checks.choice(PRECISIONS, nullable=True),
            "Training precision. Left out, the planner picks what the device supports.",
            doc_default="planner",
        ),
    )
    seed: int = attrs.field(
        default=42, metadata=setting(checks.integer(0, _MAX_SEED), "Random seed.")
    )
    held_out: str | int | float | tuple[str, ...] = attrs.field(
        default="auto",
        metadata=setting(
            checks.held_out,
            "Examples set aside to check the run on (see [The held-out check]"
            "(#the-held-out-check)): `auto` holds out 10% of the images of a document with "
            "20 or more (none of a smaller one), `none` none; a whole number is a count of "
            "images, a number below 1 a fraction of them, a list names image paths. Every "
            "example about a held-out image is held out with it.",
            flow=True,
        ),
    )
    checkpoint_every: int = attrs.field(
        default=50,
        metadata=setting(
            checks.positive_int,
            "Optimizer steps between checkpoints of the run (also written every 10 minutes), "
            "from which `dlm train --resume` continues an interrupted run (see [Resuming a "
            "run](#resuming-a-run)).",
        ),
    )
    report_to: tuple[str, ...] = attrs.field(
        default=(),
        metadata=setting(
            checks.choices(TRACKERS, off="none"),
            "Experiment trackers the run reports its log to, as it trains (each an optional "
            "extra: `pip install 'dlm-core[tensorboard]'`). `dlm train --report-to` overrides "
            "it. See [Watching a run](cookbook.md#5-watching-a-run).",
            doc_default="none",
            flow=True,
        ),
    )
    sources: tuple[Source, ...] = attrs.field(
        default=(),
        metadata=setting(
            checks.folder_list(Source),
            "Folders of images to ingest (see [Sources](#the-trainingsources-directive)).",
        ),
    )


@attrs.frozen
class ExportSettings:
    """``export:`` in the frontmatter."""

    default_quant: str = attrs.field(
        default="Q4_K_M",
        metadata=setting(
            checks.text(),
            "Quantization used by `dlm export` when none is given (for exporters that quantize).",
        ),
    )
    default_temperature: float = attrs.field(
        default=0.7,
        metadata=setting(
            checks.number(0.0, None, low_open=False, high_open=False),
            "Default sampling temperature for the exported model (e.g. in an Ollama Modelfile).",
        ),
    )
    default_top_p: float = attrs.field(
        default=0.9,
        metadata=setting(
            checks.number(0.0, 1.0, low_open=True, high_open=False),
            "Default nucleus-sampling `top_p` for the exported model.",
        ),
    )


@attrs.frozen(kw_only=True)
class Frontmatter:
    """The whole frontmatter. Keyword-only, so the fields keep the documents' key order."""

    dlm_id: str = attrs.field(
        metadata=setting(
            checks.ulid,
            "The document's identity: a 26-character [ULID](https://github.com/ulid/spec) in "
            "upper-case Crockford base32. Its store is `~/.dlm/store/<dlm_id>/` (`DLM_HOME` "
            "overrides). Never change it by hand: a new id means a new, empty store.",
        )
    )
    dlm_version: int = attrs.field(
        default=CURRENT_VERSION,
        metadata=setting(
            checks.exactly(CURRENT_VERSION),
            f"The schema version the document is written for (currently `{CURRENT_VERSION}`).",
            required=True,
        ),
    )
    base_model: str = attrs.field(
        metadata=setting(
            checks.text(),
            "The base model key, e.g. `paligemma-3b-mix-224`, `qwen2-vl-2b-instruct` "
            "(`dlm plugins` lists them).",
        )
    )
    system_prompt: str | None = attrs.field(
        default=None,
        metadata=setting(
            checks.text(nullable=True),
            "A system prompt used in training and prompting, where the base's chat template "
            "has one.",
        ),
    )
    training: TrainingSettings = attrs.field(
        default=TrainingSettings(),
        metadata=setting(
            checks.record(TrainingSettings), "Training settings.", doc_default="defaults below"
        ),
    )
    export: ExportSettings = attrs.field(
        default=ExportSettings(),
        metadata=setting(
            checks.record(ExportSettings), "Export defaults.", doc_default="defaults below"
        ),
    )


# ----------------------------------------------------------------- sections


@attrs.frozen
class ProseSection:
    """Free text between fences."""

    text: str
    line: int = attrs.field(default=0, eq=False, repr=False)

    kind = "prose"


@attrs.frozen
class QAPair:
    question: str
    answer: str
    line: int = attrs.field(default=0, eq=False, repr=False)


@attrs.frozen
class InstructionSection:
    """``::instruction::`` with one or more ``### Q`` / ``### A`` pairs."""

    pairs: tuple[QAPair, ...]
    line: int = attrs.field(default=0, eq=False, repr=False)

    kind = "instruction"


@attrs.frozen
class ImageSection:
    """``::image path="…" alt="…"::`` and its caption (the body text).

    ``path`` is relative to the document's folder. Sections expanded from a
    ``training.sources`` directive carry ``from_source`` (the directive's
    path) and are never written back by the serializer.
    """

    path: str
    alt: str | None = None
    caption: str = ""
    line: int = attrs.field(default=0, eq=False, repr=False)
    from_source: str | None = attrs.field(default=None, eq=False, repr=False)

    kind = "image"


Section = ProseSection | InstructionSection | ImageSection


@attrs.frozen
class Document:
    frontmatter: Frontmatter
    sections: tuple[Section, ...] = ()
    #: Where the document was read from (``None`` for text parsed in memory).
    path: Path | None = attrs.field(default=None, eq=False, repr=False)
    #: The frontmatter as ruamel.yaml read it, for a comment-preserving write-back.
    raw_frontmatter: Any = attrs.field(default=None, eq=False, repr=False)

    @property
    def folder(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    @property
    def display_path(self) -> str:
        return str(self.path) if self.path is not None else "<string>"


# ----------------------------------------------------------------- identity


def _normalize(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def section_id(section: Section, blob_sha: str | None = None) -> str:
    """A stable identity: hash of the section type and its normalized content.

    For images the content is the path and the sha256 of the image bytes
    (``blob_sha``), so replacing the picture behind a path changes the id.
    """
    if isinstance(section, ProseSection):
        content = _normalize(section.text)
    elif isinstance(section, InstructionSection):
        content = "\n\x1e\n".join(
            f"{_normalize(p.question)}\n\x1f\n{_normalize(p.answer)}" for p in section.pairs
        )
    else:
        content = f"{section.path}\n\x1f\n{blob_sha or ''}"
    digest = hashlib.sha256(f"{section.kind}\n\x1d\n{content}".encode()).hexdigest()
    return digest[:16]
